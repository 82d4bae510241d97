//! Slugs: the DNS label a site is served under (`{slug}.{APNA_APPS_DOMAIN}`).
//!
//! A slug is chosen by the person or made from the project's name; it must be
//! a valid DNS label of 3–63 characters, not on the reserved list, and free
//! (the store holds one claim per slug across all users).

use rand::Rng;

use crate::error::{Error, Result};

/// Names kept for the service itself or likely to mislead visitors.
pub const RESERVED: &[&str] = &[
    "www",
    "api",
    "admin",
    "administrator",
    "app",
    "apps",
    "apna",
    "assets",
    "auth",
    "billing",
    "blog",
    "cdn",
    "dashboard",
    "dev",
    "dns",
    "docs",
    "email",
    "ftp",
    "help",
    "imap",
    "internal",
    "localhost",
    "login",
    "logout",
    "mail",
    "mx",
    "ns",
    "ns1",
    "ns2",
    "pop",
    "preview",
    "root",
    "security",
    "signin",
    "signup",
    "smtp",
    "sso",
    "staging",
    "static",
    "status",
    "support",
    "test",
    "webmail",
];

/// Shortest slug accepted.
pub const MIN_LEN: usize = 3;
/// Longest slug accepted (a DNS label).
pub const MAX_LEN: usize = 63;

/// [`check`]'s rule as an OpenAPI (ECMA-262) pattern, with `minLength`
/// [`MIN_LEN`] and `maxLength` [`MAX_LEN`]: lower-case letters, digits and
/// inner hyphens, no `--` in the third and fourth place, not reserved.
pub fn pattern() -> String {
    format!(
        "^(?!(?:{})$)(?![a-z0-9]{{2}}--)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$",
        RESERVED.join("|")
    )
}

/// Checks a requested slug; the error says what to send instead.
pub fn check(slug: &str) -> Result<()> {
    let refuse = |why: &str| {
        Err(Error::InvalidInput(format!(
            "slug {:?} refused: {why}; use 3–63 lower-case letters, digits and hyphens, such as \"my-app\"",
            slug.chars().take(80).collect::<String>()
        )))
    };
    if slug.len() < MIN_LEN {
        return refuse("it is too short");
    }
    if slug.len() > MAX_LEN {
        return refuse("it is too long");
    }
    if !slug
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return refuse("it may hold only a-z, 0-9 and -");
    }
    if slug.starts_with('-') || slug.ends_with('-') {
        return refuse("it may not start or end with a hyphen");
    }
    // `xn--` is punycode: a label that displays as other letters.
    if slug.get(2..4) == Some("--") {
        return refuse("a hyphen pair in the third and fourth place is reserved for punycode");
    }
    if RESERVED.contains(&slug) {
        return refuse("it is reserved");
    }
    Ok(())
}

/// A slug made from a project name, with a random suffix so that it is
/// rarely taken: `"Habit Tracker!"` → `habit-tracker-k3x9`.
pub fn generate(name: &str) -> String {
    let mut base = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            base.push(c.to_ascii_lowercase());
        } else if !base.ends_with('-') && !base.is_empty() {
            base.push('-');
        }
        if base.len() >= 40 {
            break;
        }
    }
    let base = base.trim_matches('-');
    let base = if base.len() < MIN_LEN { "site" } else { base };
    let mut rng = rand::thread_rng();
    let suffix: String = (0..4)
        .map(|_| {
            let n = rng.gen_range(0..36u8);
            char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 })
        })
        .collect();
    let slug = format!("{base}-{suffix}");
    // A name that happens to produce a refused label (a punycode-like start)
    // falls back to a neutral one.
    if check(&slug).is_ok() {
        slug
    } else {
        format!("site-{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels_only() {
        for ok in ["my-app", "abc", "a1b2c3", &"a".repeat(63)] {
            assert!(check(ok).is_ok(), "{ok} refused");
        }
        for bad in [
            "",
            "ab",
            "-abc",
            "abc-",
            "ABC",
            "a_b",
            "a.b",
            "héllo",
            "xn--abc",
            "ab--c",
            "www",
            "api",
            "admin",
            &"a".repeat(64),
            "a b",
        ] {
            assert!(check(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn generated_slugs_are_valid() {
        for name in [
            "Habit Tracker!",
            "",
            "x",
            "Ünïcödé only",
            "xn--zz",
            "www",
            &"long ".repeat(30),
        ] {
            let s = generate(name);
            assert!(check(&s).is_ok(), "{name:?} → {s:?}");
        }
        assert!(generate("Habit Tracker!").starts_with("habit-tracker-"));
    }
}
