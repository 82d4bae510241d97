//! `apna serve` as a separate process that a test can `kill -9`.
//!
//! A bench (or test) binary re-executes itself with [`CHILD_ENV`] set; the
//! child calls [`serve_if_child`] first thing in `main` and then does what
//! the `apna serve` command does (`functions/src/main.rs`): bind, build the
//! local server, start the hibernation sweep, print the URL, serve. Running
//! the very code under test this way needs no separately built `apna`
//! binary that could be stale.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Set in the child's environment: "be the server".
pub const CHILD_ENV: &str = "APNA_TEST_CHILD_SERVER";

/// In a child started by [`ServerProcess::start`]: serves until killed and
/// never returns. Elsewhere: returns at once.
pub fn serve_if_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let code = match child_main() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("apna: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn child_main() -> anyhow::Result<()> {
    let filter = tracing_subscriber_filter();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut config = apna::config::Config::from_env()?;
        let listener =
            tokio::net::TcpListener::bind(std::net::SocketAddr::new(config.bind, config.port))
                .await?;
        config.port = listener.local_addr()?.port();
        let port = config.port;
        let server = apna::server::build(config, &|_| {}).await?;
        apna::server::spawn_hibernation_sweep(server.state.clone());
        println!("Apna is running at http://localhost:{port}/");
        axum::serve(listener, server.router.clone()).await?;
        anyhow::Ok(())
    })
}

fn tracing_subscriber_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// A running child server.
pub struct ServerProcess {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// When it was spawned.
    pub started: Instant,
}

impl ServerProcess {
    /// Starts this executable as a server with `envs` (on top of a clean
    /// environment plus PATH and HOME), its stderr appended to `log`, and
    /// waits until it prints its URL.
    pub fn start(envs: &[(&str, String)], log: &Path, timeout: Duration) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut cmd = Command::new(exe);
        cmd.env_clear()
            .env(CHILD_ENV, "1")
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().context("starting the server process")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("Apna is running at http://localhost:") {
                    let _ = tx.send(url.trim_end_matches('/').parse::<u16>().ok());
                }
            }
        });
        match rx.recv_timeout(timeout) {
            Ok(Some(port)) => Ok(ServerProcess {
                child,
                port,
                started,
            }),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!(
                    "the server did not start ({other:?}); see {}",
                    log.display()
                )
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`, then reaps it.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://localhost:{}", self.port)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of a process and of all its descendants, in bytes:
/// (the process itself, the descendants together).
pub fn rss_tree(pid: u32) -> (u64, u64) {
    let mut children: std::collections::HashMap<u32, Vec<u32>> = Default::default();
    let mut rss: std::collections::HashMap<u32, u64> = Default::default();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // fields[1] = ppid, fields[21] = rss in pages.
            let (Some(ppid), Some(pages)) = (
                fields.get(1).and_then(|v| v.parse::<u32>().ok()),
                fields.get(21).and_then(|v| v.parse::<u64>().ok()),
            ) else {
                continue;
            };
            children.entry(ppid).or_default().push(p);
            rss.insert(p, pages * 4096);
        }
    }
    let own = rss.get(&pid).copied().unwrap_or(0);
    let mut total = 0;
    let mut stack = children.get(&pid).cloned().unwrap_or_default();
    while let Some(p) = stack.pop() {
        total += rss.get(&p).copied().unwrap_or(0);
        if let Some(c) = children.get(&p) {
            stack.extend(c.iter().copied());
        }
    }
    (own, total)
}
