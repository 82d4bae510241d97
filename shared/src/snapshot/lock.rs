//! Maintenance holds on a project's run lock.
//!
//! Hibernate, wake, restore and light sleep each take the project's run lock (the one a
//! generation holds), so none of them overlaps a run or each other: a run cannot
//! edit files between a snapshot and the sandbox's removal, and a wake cannot
//! restore into a sandbox that a hibernation is about to destroy. The holder id
//! is `{kind}-{epoch ms}-{random}`, never a run id (run ids are UUIDs), so a
//! hold left behind by a crashed process is recognisable and [`release_stale_lock`]
//! can clear it after [`LOCK_TTL`].

use std::time::Duration;

use crate::domain::now;
use crate::error::Result;
use crate::store::Store;

/// How old a maintenance hold must be before it counts as abandoned. Far above
/// the longest legitimate hold (a wake's `npm install` is capped at 5 minutes).
pub const LOCK_TTL: Duration = Duration::from_secs(15 * 60);

const KINDS: &[&str] = &["hibernate", "wake", "restore", "edit", "sleep"];

/// A maintenance hold on a project's run lock.
#[derive(Debug)]
pub(crate) struct MaintenanceLock {
    project_id: String,
    holder: String,
}

impl MaintenanceLock {
    /// Takes the project's run lock for `kind`, or `None` with the current holder.
    pub(crate) async fn acquire(
        store: &dyn Store,
        project_id: &str,
        kind: &'static str,
    ) -> Result<std::result::Result<MaintenanceLock, Option<String>>> {
        let holder = format!(
            "{kind}-{}-{:08x}",
            now().timestamp_millis(),
            rand::random::<u32>()
        );
        if store.acquire_run_lock(project_id, &holder).await? {
            return Ok(Ok(MaintenanceLock {
                project_id: project_id.to_string(),
                holder,
            }));
        }
        Ok(Err(store.run_lock_holder(project_id).await?))
    }

    /// Releases the hold. Errors are logged, not returned: the work is done,
    /// and a hold that stays behind expires after [`LOCK_TTL`].
    pub(crate) async fn release(self, store: &dyn Store) {
        if let Err(e) = store.release_run_lock(&self.project_id, &self.holder).await {
            tracing::warn!(project_id = %self.project_id, error = %e, "releasing maintenance lock failed");
        }
    }
}

/// When `holder` is a maintenance hold, its age.
fn maintenance_age(holder: &str) -> Option<Duration> {
    let mut parts = holder.splitn(3, '-');
    let kind = parts.next()?;
    let ms: i64 = parts.next()?.parse().ok()?;
    parts.next()?;
    if !KINDS.contains(&kind) {
        return None;
    }
    let age = now().timestamp_millis().saturating_sub(ms).max(0);
    Some(Duration::from_millis(age as u64))
}

/// Whether the project's run lock is held by light sleep stopping the dev
/// server: a hold of well under a second, worth waiting out rather than
/// refusing a run.
pub fn is_sleep_holder(holder: &str) -> bool {
    holder.starts_with("sleep-") && is_maintenance_holder(holder)
}

/// Whether the project's run lock is a maintenance hold (not a run).
pub fn is_maintenance_holder(holder: &str) -> bool {
    maintenance_age(holder).is_some()
}

/// Releases the project's run lock if a hibernate, wake or restore has held it
/// for at least `max_age` (its process died). Run holds are never touched.
/// Returns whether it released one.
pub async fn release_stale_lock(
    store: &dyn Store,
    project_id: &str,
    max_age: Duration,
) -> Result<bool> {
    let Some(holder) = store.run_lock_holder(project_id).await? else {
        return Ok(false);
    };
    match maintenance_age(&holder) {
        Some(age) if age >= max_age => {
            let released = store.release_run_lock(project_id, &holder).await?;
            if released {
                tracing::warn!(project_id = %project_id, holder = %holder, "released an abandoned maintenance lock");
            }
            Ok(released)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_maintenance_holders_only() {
        let h = format!("wake-{}-0000beef", now().timestamp_millis() - 5000);
        assert!(maintenance_age(&h).unwrap() >= Duration::from_secs(5));
        assert!(is_maintenance_holder(&h));
        assert!(!is_maintenance_holder(&crate::domain::new_run_id()));
        assert!(!is_maintenance_holder("build-1-2"));
        assert!(!is_maintenance_holder("wake-x-2"));
        assert!(!is_sleep_holder(&h));
        let sleep = format!("sleep-{}-0000beef", now().timestamp_millis());
        assert!(is_sleep_holder(&sleep) && is_maintenance_holder(&sleep));
        assert!(!is_sleep_holder("sleep-x-2"));
    }
}
