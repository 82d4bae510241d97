//! What the preview proxy has seen of each project: when its last request
//! came and how many WebSocket connections (Vite's HMR client: an open tab)
//! are open now. Light sleep ([`crate::light_sleep`]) reads it to find
//! previews nobody is looking at.
//!
//! It lives in the memory of the process that proxies previews (`apna
//! serve`); where the proxy does not see previews (Caddy straight to a pod),
//! the pod's `apna sandboxd` reports the same thing ([`Activity`]) from the
//! dev server's connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A preview's recent use, as one observer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// WebSocket connections (HMR clients) open now.
    pub open_sockets: u32,
    /// Seconds since the last request or since the last socket closed;
    /// `None` when this observer has seen none.
    pub quiet_secs: Option<u64>,
}

impl Activity {
    /// Whether this shows no use for at least `idle`: no open socket, and the
    /// last request (if any was seen) at least `idle` ago.
    pub fn quiet_for(&self, idle: Duration) -> bool {
        self.open_sockets == 0 && self.quiet_secs.is_none_or(|s| s >= idle.as_secs())
    }
}

#[derive(Debug)]
struct Entry {
    last: Instant,
    open: u32,
}

/// Per-project request and socket counts of one proxy; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PreviewActivity {
    projects: Arc<Mutex<HashMap<String, Entry>>>,
}

impl PreviewActivity {
    fn projects(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.projects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a request for the project's preview now.
    pub fn request(&self, project_id: &str) {
        let mut all = self.projects();
        let e = all.entry(project_id.to_string()).or_insert(Entry {
            last: Instant::now(),
            open: 0,
        });
        e.last = Instant::now();
    }

    /// Counts one open WebSocket until the returned guard is dropped.
    pub fn open_socket(&self, project_id: &str) -> SocketGuard {
        {
            let mut all = self.projects();
            let e = all.entry(project_id.to_string()).or_insert(Entry {
                last: Instant::now(),
                open: 0,
            });
            e.open += 1;
            e.last = Instant::now();
        }
        SocketGuard {
            activity: self.clone(),
            project_id: project_id.to_string(),
        }
    }

    /// What was seen of the project (nothing yet: no sockets, no requests).
    pub fn of(&self, project_id: &str) -> Activity {
        match self.projects().get(project_id) {
            Some(e) => Activity {
                open_sockets: e.open,
                quiet_secs: Some(e.last.elapsed().as_secs()),
            },
            None => Activity {
                open_sockets: 0,
                quiet_secs: None,
            },
        }
    }
}

/// One open WebSocket of a preview; closing it (dropping this) counts as activity.
#[derive(Debug)]
pub struct SocketGuard {
    activity: PreviewActivity,
    project_id: String,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let mut all = self.activity.projects();
        if let Some(e) = all.get_mut(&self.project_id) {
            e.open = e.open.saturating_sub(1);
            e.last = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_keep_a_preview_awake_until_closed() {
        let a = PreviewActivity::default();
        let idle = Duration::ZERO;
        assert!(a.of("p").quiet_for(idle), "never seen: quiet");
        let s1 = a.open_socket("p");
        let s2 = a.open_socket("p");
        assert_eq!(a.of("p").open_sockets, 2);
        assert!(!a.of("p").quiet_for(idle));
        drop(s1);
        assert!(!a.of("p").quiet_for(idle));
        drop(s2);
        assert!(a.of("p").quiet_for(idle));
        assert!(!a.of("p").quiet_for(Duration::from_secs(60)), "just closed");
        a.request("q");
        assert!(!a.of("q").quiet_for(Duration::from_secs(60)));
        assert!(a.of("other").quiet_for(Duration::from_secs(60)));
    }
}
