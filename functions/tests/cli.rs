//! The `apna` binary as a person runs it: `serve` prints its URL and answers
//! `/healthz`; a bad setting is one line naming the variable.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn apna() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_apna"));
    for var in [
        "DATABASE_URL",
        "ANTHROPIC_API_KEY",
        "S3_BUCKET",
        "APNA_JWT_SECRET",
    ] {
        c.env_remove(var);
    }
    c
}

#[test]
fn bad_config_is_one_line_naming_the_variable() {
    for (var, value) in [
        ("DATABASE_URL", "nonsense"),
        ("PORT", "eighty"),
        ("POD_TTL_HOURS", "0"),
    ] {
        let out = apna().arg("serve").env(var, value).output().unwrap();
        assert!(!out.status.success(), "{var}={value} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{var}: expected one line, got {err:?}");
        assert!(lines[0].contains(var), "{var}: {err:?}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
}

#[test]
fn unreachable_postgres_is_a_clear_error() {
    let out = apna()
        .arg("serve")
        .env("DATABASE_URL", "postgres://nobody:x@127.0.0.1:1/nothing")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PostgreSQL"), "{err}");
}

#[test]
fn serve_prints_url_and_answers_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = apna()
        .arg("serve")
        .env("PORT", "0")
        .env("APNA_DATA_DIR", dir.path())
        .env(
            "APNA_TEMPLATE_CACHE",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../target/apna-test-cache"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("no URL printed");
        if let Some(i) = line.find("http://") {
            break line[i..].trim().to_string();
        }
    };
    let health = ureq_get(&format!("{url}healthz"));
    let page = ureq_get(&url);
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["store"]["backend"], "sqlite");
    assert_eq!(v["blob"]["backend"], "fs");
    assert_eq!(v["model_configured"], false);
    assert!(
        page.contains("<html") && page.contains("app.js"),
        "the UI is served at /: {page}"
    );
}

/// A tiny blocking HTTP GET over a raw socket, to keep this test free of an HTTP client.
fn ureq_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (hostport, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap();
    let addr = hostport.replace("localhost", "127.0.0.1");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}
