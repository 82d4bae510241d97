//! CPU seconds of a process tree, by kind of process (issue #16).
//!
//! CPU time does not depend on how many runs share the cores, so it says
//! where a generation's cost goes when wall-clock times on a shared machine
//! cannot. [`CpuLedger`] samples `/proc/<pid>/stat` of every descendant of a
//! server often enough to see most short-lived processes (`tsc` lives a few
//! hundred ms), files each under a [`kind`] read from its command line (or
//! its nearest classified ancestor's: a bubblewrap wrapper names the command
//! it wraps). What a process does between its last sample and its exit is
//! not counted (the kernel's reaped-children counters would have it, but
//! processes re-parented out of the tree take theirs elsewhere).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS: f64 = 100.0;

/// How often the tree is sampled.
const EVERY: Duration = Duration::from_millis(40);

/// The kind a command line belongs to: the headings of the ledger.
pub fn kind(cmdline: &str) -> Option<&'static str> {
    let c = cmdline.to_ascii_lowercase();
    if c.contains("chrom") || c.contains("headless_shell") {
        Some(if c.contains("--type=renderer") {
            "browser check: Chromium renderers"
        } else if c.contains("--type=gpu") {
            "browser check: Chromium GPU (software) process"
        } else if c.contains("--type=") {
            "browser check: Chromium utility/zygote processes"
        } else {
            "browser check: Chromium browser process"
        })
    } else if c.contains("tsc") || c.contains("typescript") {
        Some("Verify: tsc")
    } else if c.contains("vite") {
        Some("dev server (Vite)")
    } else if c.contains("npm") || c.contains("npx") {
        Some("npm")
    } else if c.contains("node") || c.contains("bwrap") || c.contains("git") {
        Some("other project commands")
    } else {
        None
    }
}

#[derive(Debug, Clone, Copy)]
struct Proc {
    ppid: u32,
    start: u64,
    own: u64,
}

fn read_proc(pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state(0) ppid(1) … utime(11) stime(12) …
    // starttime(19).
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(Proc {
        ppid: n(1)? as u32,
        own: n(11)? + n(12)?,
        start: n(19)?,
    })
}

fn all_procs() -> HashMap<u32, Proc> {
    let mut out = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                if let Some(p) = read_proc(pid) {
                    out.insert(pid, p);
                }
            }
        }
    }
    out
}

fn descendants(root: u32, procs: &HashMap<u32, Proc>) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, p) in procs {
        children.entry(p.ppid).or_default().push(*pid);
    }
    let mut out = Vec::new();
    let mut stack = children.get(&root).cloned().unwrap_or_default();
    while let Some(p) = stack.pop() {
        out.push(p);
        if let Some(c) = children.get(&p) {
            stack.extend(c.iter().copied());
        }
    }
    out
}

#[derive(Default)]
struct Seen {
    /// (pid, start time) → (kind, ticks when first seen in this window, last ticks).
    procs: HashMap<(u32, u64), (&'static str, u64, u64)>,
    kinds: HashMap<u32, &'static str>,
}

/// A window of CPU accounting over one server's process tree.
pub struct CpuLedger {
    root: u32,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    sampler: Option<std::thread::JoinHandle<()>>,
    root_own_at_start: u64,
}

/// CPU seconds by kind over a window.
#[derive(Debug, Clone)]
pub struct CpuReport {
    /// Seconds and processes per kind, largest first; "apna (the server)"
    /// is the server's own.
    pub by_kind: Vec<(&'static str, f64, usize)>,
    /// The sum: the server and every process it started.
    pub total: f64,
    /// Processes seen; each may have run up to one sampling interval
    /// after its last sample, uncounted.
    pub processes: usize,
}

impl CpuLedger {
    /// Starts sampling the descendants of `root` now.
    pub fn start(root: u32) -> CpuLedger {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let procs = all_procs();
        let root_own_at_start = procs.get(&root).map_or(0, |p| p.own);
        sample(root, &procs, &seen, true);
        let sampler = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EVERY);
                    sample(root, &all_procs(), &seen, false);
                }
            })
        };
        CpuLedger {
            root,
            stop,
            seen,
            sampler: Some(sampler),
            root_own_at_start,
        }
    }

    /// Ends the window and sums it up.
    pub fn finish(mut self) -> CpuReport {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.sampler.take() {
            let _ = s.join();
        }
        let procs = all_procs();
        sample(self.root, &procs, &self.seen, false);
        let root_own = procs
            .get(&self.root)
            .map_or(0, |p| p.own)
            .saturating_sub(self.root_own_at_start);
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut by: HashMap<&'static str, (u64, usize)> = HashMap::new();
        for (kind, first, last) in seen.procs.values() {
            let e = by.entry(kind).or_default();
            e.0 += last.saturating_sub(*first);
            e.1 += 1;
        }
        by.insert("apna (the server)", (root_own, 1));
        let mut by_kind: Vec<(&'static str, f64, usize)> = by
            .into_iter()
            .map(|(k, (t, n))| (k, t as f64 / TICKS, n))
            .collect();
        by_kind.sort_by(|a, b| b.1.total_cmp(&a.1));
        CpuReport {
            total: by_kind.iter().map(|k| k.1).sum(),
            processes: seen.procs.len(),
            by_kind,
        }
    }
}

fn sample(root: u32, procs: &HashMap<u32, Proc>, seen: &Mutex<Seen>, baseline: bool) {
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    // Parents before children, so a child can inherit its parent's kind.
    let mut order = descendants(root, procs);
    order.sort_by_key(|p| procs.get(p).map_or(0, |x| x.start));
    for pid in order {
        let Some(p) = procs.get(&pid) else { continue };
        let key = (pid, p.start);
        if let Some(e) = seen.procs.get_mut(&key) {
            e.2 = e.2.max(p.own);
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let k = kind(&cmd)
            .or_else(|| seen.kinds.get(&p.ppid).copied())
            .unwrap_or("other project commands");
        seen.kinds.insert(pid, k);
        // A process already running when the window opens counts from here.
        let first = if baseline { p.own } else { 0 };
        seen.procs.insert(key, (k, first, p.own));
    }
}

impl CpuReport {
    /// One line per kind, `per` dividing each (e.g. per generation).
    pub fn lines(&self, per: f64) -> Vec<String> {
        let mut out: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, s, n)| format!("  {k}: {:.2} s ({:.2} s each), {n} processes", s, s / per))
            .collect();
        out.push(format!(
            "  total: {:.2} s ({:.2} s each); up to {:.2} s uncounted ({} processes × {} ms after their last sample)",
            self.total,
            self.total / per,
            self.processes as f64 * EVERY.as_secs_f64(),
            self.processes,
            EVERY.as_millis()
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_command_lines() {
        assert_eq!(
            kind("bwrap --die-with-parent -- node /app/node_modules/typescript/bin/tsc --incremental"),
            Some("Verify: tsc")
        );
        assert_eq!(
            kind("node /app/node_modules/vite/bin/vite.js --port 5173"),
            Some("dev server (Vite)")
        );
        assert_eq!(
            kind("/usr/lib/chromium/chromium --type=renderer"),
            Some("browser check: Chromium renderers")
        );
        assert_eq!(kind("cat"), None);
    }

    #[test]
    fn a_busy_child_is_counted() {
        let me = std::process::id();
        let ledger = CpuLedger::start(me);
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .spawn()
            .unwrap();
        child.wait().unwrap();
        let r = ledger.finish();
        assert!(r.total > 0.05, "{r:?}");
    }
}
