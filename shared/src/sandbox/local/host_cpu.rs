//! How busy the host's CPUs have been, from `/proc/stat`: what lets the warm
//! spares refill "when idle CPU allows" instead of taking cores from a burst
//! of generations.

use std::path::PathBuf;

/// Busy and total CPU time (clock ticks, all CPUs) since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Times {
    busy: u64,
    total: u64,
}

/// Parses the aggregate `cpu` line of `/proc/stat`. Idle and I/O wait are
/// idle; guest time is already counted in user time, so it is left out.
pub(super) fn parse(stat: &str) -> Option<Times> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    let idle = v[3] + v[4];
    Some(Times {
        busy: total - idle,
        total,
    })
}

/// Samples the host's CPU time; each [`HostCpu::busy_share`] covers the time since the last.
pub(super) struct HostCpu {
    path: PathBuf,
    last: Option<Times>,
}

impl HostCpu {
    /// Reads `/proc/stat`.
    pub(super) fn new() -> HostCpu {
        HostCpu::at(PathBuf::from("/proc/stat"))
    }

    /// Reads a file shaped like `/proc/stat` (tests).
    pub(super) fn at(path: PathBuf) -> HostCpu {
        let mut cpu = HostCpu { path, last: None };
        cpu.last = cpu.read();
        cpu
    }

    fn read(&self) -> Option<Times> {
        parse(&std::fs::read_to_string(&self.path).ok()?)
    }

    /// The share (0–1) of CPU time that was busy since the last call; `None`
    /// when it cannot be known (no `/proc`, or no time has passed).
    pub(super) fn busy_share(&mut self) -> Option<f64> {
        let now = self.read()?;
        let before = self.last.replace(now)?;
        let total = now.total.checked_sub(before.total).filter(|t| *t > 0)?;
        let busy = now.busy.saturating_sub(before.busy);
        Some(busy as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 5 50 800 20 3 2 0 7 0\ncpu0 50 2 25 400 10 1 1 0 0 0\nintr 1 2\n";

    #[test]
    fn parses_the_aggregate_line() {
        // busy = user + nice + system + irq + softirq + steal; guest is inside user.
        assert_eq!(
            parse(STAT),
            Some(Times {
                busy: 160,
                total: 980
            })
        );
        assert_eq!(parse("cpu0 1 2 3 4 5\n"), None);
        assert_eq!(parse("cpu  1 2 x 4 5\n"), None);
        assert_eq!(parse("cpu  1 2 3\n"), None);
    }

    #[test]
    fn busy_share_covers_the_time_since_the_last_look() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stat");
        std::fs::write(&file, "cpu  100 0 0 100 0 0 0 0\n").unwrap();
        let mut cpu = HostCpu::at(file.clone());
        // No time passed.
        assert_eq!(cpu.busy_share(), None);
        std::fs::write(&file, "cpu  175 0 0 125 0 0 0 0\n").unwrap();
        assert_eq!(cpu.busy_share(), Some(0.75));
        std::fs::write(&file, "cpu  180 0 0 220 0 0 0 0\n").unwrap();
        assert_eq!(cpu.busy_share(), Some(0.05));
        std::fs::remove_file(&file).unwrap();
        assert_eq!(cpu.busy_share(), None);
    }

    #[test]
    fn reads_this_host() {
        let mut cpu = HostCpu::new();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let share = cpu.busy_share().expect("/proc/stat on Linux");
        assert!((0.0..=1.0).contains(&share), "{share}");
    }
}
