//! Issue #15: multi-user mode (`APNA_JWT_SECRET`) refuses to start without
//! working bubblewrap, with one clear line, unless `APNA_ALLOW_UNSANDBOXED=1`.
//!
//! Its own test binary: it hides `bwrap` by emptying PATH before the
//! process-wide detection runs.

use apna::testing::fixtures::config;

#[tokio::test]
async fn multi_user_mode_needs_bubblewrap() {
    let empty = tempfile::tempdir().unwrap();
    // SAFETY: the only test in this binary, before any other thread reads the environment.
    unsafe { std::env::set_var("PATH", empty.path()) };
    let data = tempfile::tempdir().unwrap();
    let secret = [("APNA_JWT_SECRET", "s3cret"), ("PORT", "0")];
    let err = match apna::server::build(config(data.path(), &secret), &|_| {}).await {
        Ok(_) => panic!("multi-user mode started without bubblewrap"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.starts_with("APNA_JWT_SECRET: multi-user mode needs bubblewrap"),
        "{err}"
    );
    assert!(err.contains("APNA_ALLOW_UNSANDBOXED=1"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");

    // The escape hatch gets past the check (and then fails for want of npm on this PATH).
    let mut vars = secret.to_vec();
    vars.push(("APNA_ALLOW_UNSANDBOXED", "1"));
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path(), &vars);
    cfg.template_cache = data.path().join("no-cache");
    if let Err(e) = apna::server::build(cfg, &|_| {}).await {
        assert!(!e.to_string().contains("needs bubblewrap"), "{e}");
    }
    // Single-user mode never needed it.
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path(), &[("PORT", "0")]);
    cfg.template_cache = data.path().join("no-cache");
    if let Err(e) = apna::server::build(cfg, &|_| {}).await {
        assert!(!e.to_string().contains("needs bubblewrap"), "{e}");
    }
}
