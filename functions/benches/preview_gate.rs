//! What the preview gate costs a request: the real Caddy with the
//! repository's Caddyfile in front of a loopback stand-in for Vite, once
//! without the gate and once with `apna preview-gate` as its forward_auth,
//! N requests each over one kept-alive connection (as a browser loads a
//! page's modules). Prints p50/p90/p99 per setup and the p50 the gate adds.
//!
//! `cargo bench -p apna-functions --bench preview_gate` (N: `GATE_BENCH_N`, default 2000).

#[path = "../tests/gate_support/mod.rs"]
mod gate_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use apna::domain::Project;
use apna::preview::access::{PreviewKeys, TokenUse, COOKIE};
use gate_support::{start_caddy, start_gate, Upstream, DOMAIN, SECRET};

/// One kept-alive HTTP/1.1 connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        Conn {
            reader: BufReader::new(s.try_clone().expect("clone")),
            writer: s,
        }
    }

    /// GETs `path` on `host`; the status.
    fn get(&mut self, host: &str, path: &str, extra: &str) -> u16 {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n");
        self.writer.write_all(req.as_bytes()).expect("write");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).expect("header");
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).expect("body");
        status
    }
}

fn measure(n: usize, mut one: impl FnMut() -> u16, want: u16) -> Vec<Duration> {
    for _ in 0..n / 10 {
        assert_eq!(one(), want, "warm-up");
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let status = one();
        times.push(t.elapsed());
        assert_eq!(status, want);
    }
    times.sort();
    times
}

fn pct(times: &[Duration], p: f64) -> Duration {
    times[((times.len() as f64 - 1.0) * p).round() as usize]
}

fn report(what: &str, times: &[Duration]) -> Duration {
    let p50 = pct(times, 0.5);
    println!(
        "{what:<44} p50 {:>7.1} µs  p90 {:>7.1} µs  p99 {:>7.1} µs",
        p50.as_secs_f64() * 1e6,
        pct(times, 0.9).as_secs_f64() * 1e6,
        pct(times, 0.99).as_secs_f64() * 1e6
    );
    p50
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("GATE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite://{}", dir.path().join("apna.db").display());
    let rt = tokio::runtime::Runtime::new()?;
    let mut private = Project::new("alice", "bench", "app");
    private.preview_public = false;
    let mut public = Project::new("alice", "bench", "app");
    public.preview_public = true;
    rt.block_on(async {
        let store = apna::store::connect(&db).await?;
        store.create_project(&private).await?;
        store.create_project(&public).await?;
        anyhow::Ok(())
    })?;
    let session = PreviewKeys::new(SECRET)
        .issue(&private.id, "alice", TokenUse::Session, 3600)?
        .0;
    let cookie = format!("Cookie: theme=dark; {COOKIE}={session}\r\n");

    let upstream = Upstream::start();
    let (_gate, gate_port) = start_gate(&db, dir.path(), 2000);
    let (_open, open_port) = start_caddy(upstream.port, None, dir.path());
    let (_gated, gated_port) = start_caddy(upstream.port, Some(gate_port), dir.path());
    let private_host = format!("{}.{DOMAIN}", private.id);
    let public_host = format!("{}.{DOMAIN}", public.id);

    println!("preview gate: {n} GETs per setup, one kept-alive connection, loopback");
    let mut c = Conn::open(gate_port);
    let fwd = format!("X-Forwarded-Uri: /src/App.tsx\r\nX-Forwarded-Method: GET\r\n{cookie}");
    report(
        "gate alone (GET /check, private + cookie)",
        &measure(n, || c.get(&private_host, "/check", &fwd), 204),
    );
    let mut c = Conn::open(open_port);
    let base = report(
        "caddy → dev server, no gate",
        &measure(n, || c.get(&public_host, "/src/App.tsx", ""), 200),
    );
    let mut c = Conn::open(gated_port);
    let public_p50 = report(
        "caddy → gate → dev server (public)",
        &measure(n, || c.get(&public_host, "/src/App.tsx", ""), 200),
    );
    let mut c = Conn::open(gated_port);
    let private_p50 = report(
        "caddy → gate → dev server (private + cookie)",
        &measure(n, || c.get(&private_host, "/src/App.tsx", &cookie), 200),
    );
    let mut c = Conn::open(gated_port);
    report(
        "caddy → gate, refused (private, no cookie)",
        &measure(n, || c.get(&private_host, "/src/App.tsx", ""), 401),
    );
    let added = |p: Duration| (p.as_secs_f64() - base.as_secs_f64()) * 1e6;
    println!(
        "added by the gate at p50: public {:.1} µs, private + cookie {:.1} µs",
        added(public_p50),
        added(private_p50)
    );
    Ok(())
}
