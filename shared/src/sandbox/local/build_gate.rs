//! The build gate: at most `APNA_MAX_BUILDS` Verify checks and package
//! installs at once on this host (default: the cores available to the
//! process), so twenty runs reaching Verify together queue for the CPU
//! instead of all thrashing it. Each Verify is CPU-bound (`tsc`, Vite), so more
//! of them than cores only adds context switches and memory.
//!
//! One gate per [`super::workspace::Toolchain`]: the local driver's projects
//! share it; in a pod sandboxd has its own, sized by the pod's CPU limit
//! (`available_parallelism` reads the cgroup's quota).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Counts permits in use (and the most ever in use) next to the semaphore.
#[derive(Debug)]
pub struct BuildGate {
    permits: Arc<Semaphore>,
    limit: usize,
    in_use: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    queued: AtomicUsize,
}

/// Held while one build-class job runs; frees its place when dropped.
#[derive(Debug)]
pub struct BuildPermit {
    _permit: Option<OwnedSemaphorePermit>,
    in_use: Arc<AtomicUsize>,
}

impl Drop for BuildPermit {
    fn drop(&mut self) {
        self.in_use.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The default limit: the cores this process may use.
pub fn default_max_builds() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl BuildGate {
    /// A gate letting `limit` jobs run at once (at least one).
    pub fn new(limit: usize) -> BuildGate {
        let limit = limit.max(1);
        BuildGate {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            in_use: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
            queued: AtomicUsize::new(0),
        }
    }

    /// Waits for a place.
    pub async fn acquire(&self) -> BuildPermit {
        let waited = self.permits.available_permits() == 0;
        if waited {
            self.queued.fetch_add(1, Ordering::SeqCst);
        }
        // The semaphore is never closed, so the error arm cannot happen; the
        // job then runs ungated rather than not at all.
        let permit = self.permits.clone().acquire_owned().await.ok();
        let now = self.in_use.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        BuildPermit {
            _permit: permit,
            in_use: self.in_use.clone(),
        }
    }

    /// How many jobs may run at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many run now.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::SeqCst)
    }

    /// The most that ever ran at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// How many jobs found the gate full and had to wait.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_most_limit_hold_a_permit_and_the_rest_wait() {
        let gate = Arc::new(BuildGate::new(2));
        let a = gate.acquire().await;
        let _b = gate.acquire().await;
        assert_eq!(gate.in_use(), 2);
        let third = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _p = gate.acquire().await;
                gate.in_use()
            })
        };
        while gate.queued() == 0 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!third.is_finished());
        drop(a);
        assert_eq!(third.await.unwrap(), 2);
        assert_eq!(gate.peak(), 2);
        assert_eq!(gate.queued(), 1);
        assert_eq!(BuildGate::new(0).limit(), 1);
    }
}
