//! Items over DynamoDB's 400 KB item limit keep their large attributes in the
//! blob store, behind a pointer (`spill`) in the item.
//!
//! Only items that are written once and never updated spill (message
//! batches, events, step results, versions, history events), so a pointer
//! never changes and its blob is deleted exactly when its item is: by
//! `purge_project`, which reads each item's pointer before deleting it. Blob
//! keys carry a fresh id, so two writers racing for one item (the loser of a
//! first-write-wins step result) never overwrite each other's blob.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;

use super::item::{s, size, Attrs, Item, SPILL};
use crate::blob::BlobStore;
use crate::error::{Error, Result};

/// Items estimated above this spill. DynamoDB refuses items over 400 KB; the
/// margin covers the keys and index attributes added after the estimate.
pub(super) const SPILL_ABOVE: usize = 350 * 1024;

/// The blob store handle and where in it this table's spilled attributes live.
pub(super) struct Overflow {
    blobs: Arc<dyn BlobStore>,
    prefix: String,
}

impl Overflow {
    /// Spilled attributes of `table` go under `dynamodb/{table}/`.
    pub(super) fn new(blobs: Arc<dyn BlobStore>, table: &str) -> Self {
        Overflow {
            blobs,
            prefix: format!("dynamodb/{}", safe_segment(table)),
        }
    }

    /// If `item` is too large, moves its `payload` attributes (string
    /// attributes holding JSON) to a blob under `owner` (a project, run or
    /// execution id) and leaves the blob's key in their place. Returns the key.
    pub(super) async fn spill(
        &self,
        item: &mut Item,
        owner: &str,
        payload: &[&str],
    ) -> Result<Option<String>> {
        if size(item) <= SPILL_ABOVE {
            return Ok(None);
        }
        let mut moved = HashMap::new();
        for name in payload {
            if let Some(AttributeValue::S(v)) = item.remove(*name) {
                moved.insert(name.to_string(), v);
            }
        }
        let body = serde_json::to_vec(&moved)
            .map_err(|e| Error::Internal(format!("serialize spilled attributes: {e}")))?;
        let key = format!(
            "{}/{}/{}.json",
            self.prefix,
            safe_segment(owner),
            uuid::Uuid::now_v7()
        );
        self.blobs.put(&key, Bytes::from(body)).await?;
        item.insert(SPILL.to_string(), s(&key));
        Ok(Some(key))
    }

    /// Puts an item's spilled attributes back in place.
    pub(super) async fn restore(&self, item: &mut Item) -> Result<()> {
        let Some(key) = item.opt_s(SPILL) else {
            return Ok(());
        };
        let body = self.blobs.get(&key).await?;
        let moved: HashMap<String, String> = serde_json::from_slice(&body)
            .map_err(|e| Error::Store(format!("corrupt spilled attributes in {key}: {e}")))?;
        item.remove(SPILL);
        item.extend(moved.into_iter().map(|(k, v)| (k, AttributeValue::S(v))));
        Ok(())
    }

    /// [`Overflow::restore`] for many items at once.
    pub(super) async fn restore_all(&self, items: &mut [Item]) -> Result<()> {
        futures::future::try_join_all(items.iter_mut().map(|i| self.restore(i))).await?;
        Ok(())
    }

    /// Deletes a spilled blob (absent is fine: a purge may be finishing).
    pub(super) async fn delete(&self, key: &str) -> Result<()> {
        self.blobs.delete(key).await.map(|_| ())
    }
}

/// A blob-key segment from an id: only characters every blob store takes.
fn safe_segment(id: &str) -> String {
    let cleaned: String = id
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match cleaned.as_str() {
        "" | "." | ".." => "_".into(),
        _ => cleaned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::FsBlobStore;

    #[tokio::test]
    async fn large_items_spill_and_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn BlobStore> = Arc::new(FsBlobStore::new(dir.path()).await.unwrap());
        let overflow = Overflow::new(blobs.clone(), "apna");
        let mut small: Item = HashMap::from([("data".into(), s("{}"))]);
        assert_eq!(
            overflow.spill(&mut small, "r", &["data"]).await.unwrap(),
            None
        );

        let big = format!("\"{}\"", "x".repeat(500 * 1024));
        let mut item: Item = HashMap::from([("data".into(), s(&big)), ("kind".into(), s("text"))]);
        let key = overflow
            .spill(&mut item, "../run 1", &["data"])
            .await
            .unwrap()
            .unwrap();
        assert!(key.starts_with("dynamodb/apna/.._run_1/"), "{key}");
        assert!(!item.contains_key("data"));
        assert!(size(&item) < 1024);
        overflow.restore(&mut item).await.unwrap();
        assert_eq!(item.get_s("data").unwrap(), big);
        assert!(!item.contains_key(SPILL));
        overflow.delete(&key).await.unwrap();
        overflow.delete(&key).await.unwrap();
        assert!(blobs.head(&key).await.unwrap().is_none());
    }
}
