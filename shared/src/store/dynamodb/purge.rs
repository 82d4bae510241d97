//! Purging a deleted project, in an order that any interruption leaves
//! finishable.
//!
//! A project's items span its own partition and one run and one execution
//! partition per run, often thousands of items: more than one transaction
//! holds (100). So the purge deletes children before the item that leads to
//! them — each execution's history before the execution, each run's events
//! and step results before the run (whose `by_project` entry is how the purge
//! finds it), the project's lock, messages and versions before the project —
//! and the project item last. Until that last delete the project is still
//! listed by `deleted_projects`, and a later call starts over on what is left.
//! Spilled blobs are deleted before the item that points at them.

use std::time::Duration;

use aws_sdk_dynamodb::types::{DeleteRequest, ReturnConsumedCapacity, WriteRequest};

use super::item::*;
use super::{store_err, DynamoStore, BY_PROJECT};
use crate::error::{Error, Result};

/// How far [`DynamoStore::purge_project_within`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeProgress {
    /// The project is not deleted, or is already purged: nothing was removed.
    NotDeleted,
    /// The budget ran out after `deleted` items; the project item is left, so
    /// the project stays due and the next purge carries on.
    Partial {
        /// Items deleted by this call.
        deleted: usize,
    },
    /// Everything about the project is gone, its own item last.
    Done {
        /// Items deleted by this call.
        deleted: usize,
    },
}

impl DynamoStore {
    /// Purges a deleted project, deleting at most `budget` items (a sweep
    /// near its deadline stops there; tests interrupt a purge this way). The
    /// trait's `purge_project` is this without a budget.
    pub async fn purge_project_within(&self, id: &str, budget: usize) -> Result<PurgeProgress> {
        let project = project_pk(id);
        match self.get(&project, PROJECT_ROOT).await? {
            Some(p) if p.contains_key("deleted_at") => {}
            _ => return Ok(PurgeProgress::NotDeleted),
        }
        let mut purge = Purge {
            store: self,
            left: budget,
            deleted: 0,
        };
        let runs = self
            .query_index(BY_PROJECT, PROJECT_KEY, id, None, true, usize::MAX)
            .await?;
        for run in runs.iter().filter_map(|r| r.opt_s(PK)) {
            let run_id = id_of(&run);
            // A generation's execution is named by its run id.
            let partitions = [(exec_pk(run_id), EXEC_ROOT), (run_pk(run_id), RUN_ROOT)];
            for (pk, root) in partitions {
                if !purge.partition(&pk, root).await? {
                    return Ok(PurgeProgress::Partial {
                        deleted: purge.deleted,
                    });
                }
            }
        }
        // Its slugs live in their own partitions: free them first.
        self.release_project_slugs(id).await?;
        if !purge.partition(&project, PROJECT_ROOT).await? {
            return Ok(PurgeProgress::Partial {
                deleted: purge.deleted,
            });
        }
        tracing::debug!(project_id = %id, items = purge.deleted, "purged");
        Ok(PurgeProgress::Done {
            deleted: purge.deleted,
        })
    }
}

struct Purge<'a> {
    store: &'a DynamoStore,
    left: usize,
    deleted: usize,
}

impl Purge<'_> {
    /// Deletes a partition's items, the one with sort key `root` after all the
    /// others; `false` if the budget ran out first.
    async fn partition(&mut self, pk: &str, root: &str) -> Result<bool> {
        let q = self
            .store
            .query()
            .key_condition_expression("#pk = :pk")
            .projection_expression("#pk, #sk, #spill")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_names("#spill", SPILL)
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true);
        let items = self.store.query_items(q, usize::MAX).await?;
        let (roots, children): (Vec<Item>, Vec<Item>) = items
            .into_iter()
            .partition(|i| i.opt_s(SK).as_deref() == Some(root));
        for batch in children.chunks(25).chain(roots.chunks(1)) {
            let take = batch.len().min(self.left);
            if take > 0 {
                self.delete(&batch[..take]).await?;
            }
            if take < batch.len() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Deletes up to 25 items (their spilled blobs first) in one batch.
    async fn delete(&mut self, items: &[Item]) -> Result<()> {
        for item in items {
            if let Some(blob) = item.opt_s(SPILL) {
                self.store.overflow.delete(&blob).await?;
            }
        }
        let mut requests = Vec::with_capacity(items.len());
        for item in items {
            let (Some(pk), Some(sk)) = (item.opt_s(PK), item.opt_s(SK)) else {
                continue;
            };
            let delete = DeleteRequest::builder()
                .set_key(Some(key(pk, sk)))
                .build()
                .map_err(|e| Error::Internal(format!("delete request: {e}")))?;
            requests.push(WriteRequest::builder().delete_request(delete).build());
        }
        let mut backoff = Duration::from_millis(10);
        while !requests.is_empty() {
            let resp = self
                .store
                .client
                .batch_write_item()
                .request_items(&self.store.table, std::mem::take(&mut requests))
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| store_err("batch delete", &e))?;
            for c in resp.consumed_capacity() {
                self.store.meter.write(Some(c));
            }
            requests = resp
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.store.table))
                .unwrap_or_default();
            if !requests.is_empty() {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
        self.left -= items.len();
        self.deleted += items.len();
        Ok(())
    }
}
