//! The processes of the preview gate's tests and bench: the real Caddy with
//! the repository's Caddyfile, `apna preview-gate`, and a loopback server
//! standing in for Vite that records every request it receives.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The preview domain Caddy and the gate serve.
pub const DOMAIN: &str = "preview.example.test";
/// The preview secret the gate checks tokens with.
pub const SECRET: &str = "gate-test-preview-secret";

/// One request as the stand-in dev server saw it: request line and headers
/// (names lower-cased).
pub type Seen = (String, Vec<(String, String)>);

pub struct Upstream {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || serve_one(conn, log));
            }
        });
        Upstream { port, seen }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

/// Answers one request: WebSocket upgrades with 101 and then an echo,
/// anything else with 200 "from vite" (connection closed after).
pub fn serve_one(mut conn: TcpStream, log: Arc<Mutex<Vec<Seen>>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let upgrade = headers
        .iter()
        .any(|(k, v)| k == "upgrade" && v.eq_ignore_ascii_case("websocket"));
    log.lock().unwrap().push((line.trim().to_string(), headers));
    if upgrade {
        let _ = conn.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        );
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    }
    let body = "from vite";
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_listening(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited: {status}");
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on {port}");
}

/// `apna preview-gate` on a free loopback port over the store `db`,
/// keeping owners for `cache_ms`.
pub fn start_gate(db: &str, data_dir: &Path, cache_ms: u64) -> (Proc, u16) {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_apna"))
        .arg("preview-gate")
        .env_remove("APNA_JWT_SECRET")
        .env_remove("S3_BUCKET")
        .env("DATABASE_URL", db)
        .env("APNA_DATA_DIR", data_dir)
        .env("APNA_PREVIEW_SECRET", SECRET)
        .env("CADDY_DOMAIN", DOMAIN)
        .env("APNA_PREVIEW_GATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("APNA_PREVIEW_GATE_CACHE_MS", cache_ms.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port, &mut child, "apna preview-gate");
    (Proc(child), port)
}

/// The real Caddy with the repository's Caddyfile, previews going to
/// `upstream`, checked by the gate on port `gate` (`None`: no gate).
pub fn start_caddy(upstream: u16, gate: Option<u16>, dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let caddyfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Caddyfile");
    let log = std::fs::File::create(dir.join(format!("caddy-{port}.log"))).unwrap();
    let mut child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .env("CADDY_DOMAIN", DOMAIN)
        .env("CADDY_SCHEME", "http")
        .env("CADDY_BIND", "127.0.0.1")
        .env("CADDY_HTTP_PORT", port.to_string())
        .env("APNA_PREVIEW_UPSTREAM_FROM", "env")
        .env("APNA_PREVIEW_UPSTREAM", format!("127.0.0.1:{upstream}"))
        .env(
            "APNA_PREVIEW_GATE",
            if gate.is_some() { "on" } else { "off" },
        )
        .env(
            "APNA_PREVIEW_GATE_ADDR",
            format!("127.0.0.1:{}", gate.unwrap_or(9)),
        )
        .env("APNA_API_ORIGIN", "https://api.example.test")
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("HOME", dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("caddy (Debian package `caddy`; tests/run installs it)");
    wait_listening(port, &mut child, "caddy");
    (Proc(child), port)
}
