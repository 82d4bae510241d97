//! The dev server's open TCP connections, as a pod sees them: how `apna
//! sandboxd` tells whether anyone uses the preview when Caddy routes
//! previews straight to the pod and no proxy of ours sees them.
//!
//! Every [`SAMPLE_EVERY`] the watcher reads the pod's `/proc/net/tcp` and
//! `/proc/net/tcp6` (the pod has its own network namespace, so these are the
//! pod's connections only) and keeps the established connections to the dev
//! server's port. A connection seen in two samples in a row is in use (Vite's
//! HMR WebSocket lives as long as the tab; Node closes idle keep-alive
//! connections after 5 s). One seen once is not counted: the kubelet's
//! readiness probe opens one every 2 s for a few milliseconds.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sandbox::activity::Activity;

/// How often the connection table is read.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// The remote ends (`address:port`, as `/proc` writes them) of established
/// connections to local `port` in `/proc/net/tcp`-format text (header lines,
/// which have no `:` in that column, are skipped).
pub fn established_to(table: &str, port: u16) -> HashSet<String> {
    table
        .lines()
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let _slot = cols.next()?;
            let local = cols.next()?;
            let remote = cols.next()?;
            let state = cols.next()?;
            let (_, local_port) = local.rsplit_once(':')?;
            let local_port = u16::from_str_radix(local_port, 16).ok()?;
            // 01 = TCP_ESTABLISHED.
            (local_port == port && state == "01").then(|| remote.to_string())
        })
        .collect()
}

struct Seen {
    previous: HashSet<String>,
    open: u32,
    last_use: Instant,
}

/// Watches the connections to one port; cheap to clone.
#[derive(Clone)]
pub struct ConnectionWatch {
    port: u16,
    seen: Arc<Mutex<Seen>>,
}

impl ConnectionWatch {
    /// A watcher of `port` that has seen nothing yet (quiet since now).
    pub fn new(port: u16) -> ConnectionWatch {
        ConnectionWatch {
            port,
            seen: Arc::new(Mutex::new(Seen {
                previous: HashSet::new(),
                open: 0,
                last_use: Instant::now(),
            })),
        }
    }

    /// Samples every [`SAMPLE_EVERY`] until the runtime ends (sandboxd's lifetime).
    pub fn spawn(port: u16) -> ConnectionWatch {
        let watch = ConnectionWatch::new(port);
        let w = watch.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tick.tick().await;
                let mut table = String::new();
                for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
                    if let Ok(t) = tokio::fs::read_to_string(f).await {
                        table.push_str(&t);
                        table.push('\n');
                    }
                }
                w.sample(&table);
            }
        });
        watch
    }

    /// Takes one sample of `/proc/net/tcp`-format text (tables one after
    /// another, each with its header line).
    pub fn sample(&self, tables: &str) {
        let now = established_to(tables, self.port);
        let mut s = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let kept = now.intersection(&s.previous).count() as u32;
        if kept > 0 {
            s.last_use = Instant::now();
        }
        s.open = kept;
        s.previous = now;
    }

    /// The preview's use as seen so far.
    pub fn activity(&self) -> Activity {
        let s = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        Activity {
            open_sockets: s.open,
            quiet_secs: Some(s.last_use.elapsed().as_secs()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Port 5173 = 0x1435; state 01 established, 0A listening, 06 time-wait.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1435 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0000000000000000 100 0 0 10 0
   1: 0A000005:1435 0A000009:C350 01 00000000:00000000 00:00000000 00000000  1000        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0A000005:1435 0A000001:D000 06 00000000:00000000 00:00000000 00000000  1000        0 3 1 0000000000000000 20 4 30 10 -1
   3: 0A000005:1B9E 0A000009:C351 01 00000000:00000000 00:00000000 00000000  1000        0 4 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1435 00000000000000000000000001000000:A000 01 00000000:00000000 00:00000000 00000000  1000        0 5 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn counts_established_connections_to_the_port_only() {
        let c = established_to(TCP, 5173);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(c.contains("0A000009:C350"));
        assert_eq!(established_to(TCP6, 5173).len(), 1);
        assert!(established_to(TCP, 80).is_empty());
    }

    #[test]
    fn a_connection_counts_once_it_lasts_two_samples() {
        let w = ConnectionWatch::new(5173);
        let both = format!("{TCP}\n{TCP6}");
        w.sample(&both);
        assert_eq!(w.activity().open_sockets, 0, "one sample is a probe");
        w.sample(&both);
        assert_eq!(w.activity().open_sockets, 2);
        assert_eq!(w.activity().quiet_secs, Some(0));
        w.sample(TCP);
        assert_eq!(w.activity().open_sockets, 1, "the v6 one closed");
        w.sample("");
        assert_eq!(w.activity().open_sockets, 0);
        assert!(w.activity().quiet_for(Duration::ZERO));
        assert!(!w.activity().quiet_for(Duration::from_secs(60)));
    }
}
