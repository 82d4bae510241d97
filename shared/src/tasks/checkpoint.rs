//! The checkpoints the generation's own tasks keep with
//! `Store::put_step_result` (the agent's are in `agent::checkpoint`).

use serde_json::Value;

use crate::error::Result;
use crate::store::Store;

/// The key of one task checkpoint of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKey {
    /// `verify:{attempt}` — Verify's answer for one attempt.
    Verify(u32),
    /// `smoke:{attempt}` — Smoke's answer after the build check `attempt`
    /// (Verify's count, 1-based) passed, with its screenshots.
    Smoke(u32),
    /// `fix:{step}` — the diagnostics text step `step` starts from.
    Fix(u32),
    /// `finalize:version` — the version number Finalize recorded.
    FinalizeVersion,
    /// `visual` — the visual check was asked for (Smoke's attempt, the
    /// step that looks, the screenshot's image); at most once per run.
    Visual,
    /// `visual:looked` — what the model said when it looked at the page.
    Looked,
}

impl std::fmt::Display for TaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskKey::Verify(n) => write!(f, "verify:{n}"),
            TaskKey::Smoke(n) => write!(f, "smoke:{n}"),
            TaskKey::Fix(n) => write!(f, "fix:{n}"),
            TaskKey::FinalizeVersion => f.write_str("finalize:version"),
            TaskKey::Visual => f.write_str("visual"),
            TaskKey::Looked => f.write_str("visual:looked"),
        }
    }
}

impl TaskKey {
    /// The stored value under this key for `run_id`, if any.
    pub async fn get(self, store: &dyn Store, run_id: &str) -> Result<Option<Value>> {
        store.get_step_result(run_id, &self.to_string()).await
    }

    /// Stores `value` unless something is stored already; returns what is stored.
    pub async fn put(self, store: &dyn Store, run_id: &str, value: &Value) -> Result<Value> {
        store
            .put_step_result(run_id, &self.to_string(), value)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_stored_names() {
        assert_eq!(TaskKey::Verify(0).to_string(), "verify:0");
        assert_eq!(TaskKey::Fix(4).to_string(), "fix:4");
        assert_eq!(TaskKey::Smoke(2).to_string(), "smoke:2");
        assert_eq!(TaskKey::FinalizeVersion.to_string(), "finalize:version");
        assert_eq!(TaskKey::Visual.to_string(), "visual");
        assert_eq!(TaskKey::Looked.to_string(), "visual:looked");
    }
}
