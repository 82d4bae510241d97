//! Published sites and slugs in the one table.
//!
//! | entity | `pk` | `sk` |
//! |---|---|---|
//! | a project's site | `PROJECT#{id}` | `SITE` |
//! | a slug's claim | `SLUG#{slug}` | `SLUG` |
//! | the same claim, seen from the project | `PROJECT#{id}` | `SLUG#{slug}` |
//!
//! The site item carries the publish in progress as a top-level `job`
//! attribute, so saving it is one conditional put. A claim is a conditional
//! put on the slug's own partition (unique across users); the marker in the
//! project's partition lets a purge find and free the project's slugs. The
//! marker is written before the claim and removed after the release, so a
//! claim never exists without one.

use aws_sdk_dynamodb::types::ReturnConsumedCapacity;

use super::item::*;
use super::{store_err, DynamoStore};
use crate::domain::Site;
use crate::error::Result;

/// Sort key of a project's site.
pub(super) const SITE: &str = "SITE";
/// Sort key prefix of a project's slug markers, and the sort key of a claim.
pub(super) const SLUG: &str = "SLUG";

fn slug_pk(slug: &str) -> String {
    format!("SLUG#{slug}")
}

fn marker_sk(slug: &str) -> String {
    format!("SLUG#{slug}")
}

impl DynamoStore {
    pub(super) async fn site_get(&self, project_id: &str) -> Result<Option<Site>> {
        self.get(&project_pk(project_id), SITE)
            .await?
            .as_ref()
            .map(|i| i.get_json("site"))
            .transpose()
    }

    pub(super) async fn site_save(&self, site: &Site, expected_job: Option<&str>) -> Result<bool> {
        let mut item = key(project_pk(&site.project_id), SITE);
        item.insert("site".into(), json(site)?);
        if let Some(job) = &site.job {
            item.insert("job".into(), s(job.as_str()));
        }
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .expression_attribute_names("#job", "job")
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        put = match expected_job {
            None => put.condition_expression("attribute_not_exists(#job)"),
            Some(j) => put
                .condition_expression("#job = :job")
                .expression_attribute_values(":job", s(j)),
        };
        self.conditional(
            put.send().await,
            |r| r.consumed_capacity.as_ref(),
            "put site",
        )
    }

    pub(super) async fn slug_claim(&self, slug: &str, project_id: &str) -> Result<bool> {
        let mut marker = key(project_pk(project_id), marker_sk(slug));
        marker.insert("slug".into(), s(slug));
        self.put_plain(marker).await?;
        let mut claim = key(slug_pk(slug), SLUG);
        claim.insert("project_id".into(), s(project_id));
        let claimed = self
            .put_unless_held(claim, "project_id", project_id, "put slug")
            .await?;
        if !claimed {
            self.delete_plain(&project_pk(project_id), &marker_sk(slug))
                .await?;
        }
        Ok(claimed)
    }

    pub(super) async fn slug_release(&self, slug: &str, project_id: &str) -> Result<bool> {
        let released = self
            .delete_if_held(
                key(slug_pk(slug), SLUG),
                "project_id",
                project_id,
                "delete slug",
            )
            .await?;
        if released {
            self.delete_plain(&project_pk(project_id), &marker_sk(slug))
                .await?;
        }
        Ok(released)
    }

    pub(super) async fn slug_owner_of(&self, slug: &str) -> Result<Option<String>> {
        Ok(self
            .get(&slug_pk(slug), SLUG)
            .await?
            .and_then(|i| i.opt_s("project_id")))
    }

    /// Frees every slug a project's markers name (a purge, before the
    /// project's partition goes).
    pub(super) async fn release_project_slugs(&self, project_id: &str) -> Result<()> {
        for marker in self
            .query_prefix(&project_pk(project_id), &format!("{SLUG}#"))
            .await?
        {
            if let Some(slug) = marker.opt_s("slug") {
                self.slug_release(&slug, project_id).await?;
            }
        }
        Ok(())
    }

    async fn put_plain(&self, item: Item) -> Result<()> {
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| store_err("put", &e))?;
        self.meter.write(r.consumed_capacity.as_ref());
        Ok(())
    }

    async fn delete_plain(&self, pk: &str, sk: &str) -> Result<()> {
        let r = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| store_err("delete", &e))?;
        self.meter.write(r.consumed_capacity.as_ref());
        Ok(())
    }
}
