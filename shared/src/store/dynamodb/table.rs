//! The table's definition, kept as data in `infra/dynamodb-table.json`: the
//! SAM template's table must match it (`tests/checks/sam.sh` compares them),
//! and [`create_table`] builds it on emulators and in tests.

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The definition, as `CreateTable` takes it (plus the TTL attribute).
pub const TABLE_JSON: &str = include_str!("../../../../infra/dynamodb-table.json");

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TableSpec {
    pub key_schema: Vec<KeySpec>,
    pub attribute_definitions: Vec<AttributeSpec>,
    pub global_secondary_indexes: Vec<IndexSpec>,
    pub time_to_live_attribute: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct KeySpec {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AttributeSpec {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct IndexSpec {
    pub index_name: String,
    pub key_schema: Vec<KeySpec>,
    pub projection: ProjectionSpec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ProjectionSpec {
    pub projection_type: String,
}

pub(super) fn spec() -> Result<TableSpec> {
    serde_json::from_str(TABLE_JSON)
        .map_err(|e| Error::Internal(format!("infra/dynamodb-table.json: {e}")))
}

fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> Error {
    Error::Internal(format!("table definition: {e}"))
}

fn key_schema(keys: &[KeySpec]) -> Result<Vec<KeySchemaElement>> {
    keys.iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .map_err(build_err)
        })
        .collect()
}

/// Creates the table (on-demand) and waits until it is active, then turns on
/// TTL where the server supports it (dynalite does not). For emulators and
/// tests: deployments get the table from the SAM template.
pub async fn create_table(client: &Client, name: &str) -> Result<()> {
    let spec = spec()?;
    let attributes = spec
        .attribute_definitions
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(&a.attribute_name)
                .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                .build()
                .map_err(build_err)
        })
        .collect::<Result<Vec<_>>>()?;
    let indexes = spec
        .global_secondary_indexes
        .iter()
        .map(|i| {
            GlobalSecondaryIndex::builder()
                .index_name(&i.index_name)
                .set_key_schema(Some(key_schema(&i.key_schema)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            i.projection.projection_type.as_str(),
                        ))
                        .build(),
                )
                .build()
                .map_err(build_err)
        })
        .collect::<Result<Vec<_>>>()?;
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&spec.key_schema)?))
        .set_attribute_definitions(Some(attributes))
        .set_global_secondary_indexes(Some(indexes))
        .send()
        .await
        .map_err(|e| Error::Store(format!("create table {name}: {}", super::describe(&e))))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| Error::Store(format!("describe table {name}: {}", super::describe(&e))))?
            .table
            .and_then(|t| t.table_status);
        if status == Some(TableStatus::Active) {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Store(format!("table {name} did not become active")));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ttl = TimeToLiveSpecification::builder()
        .attribute_name(&spec.time_to_live_attribute)
        .enabled(true)
        .build()
        .map_err(build_err)?;
    match client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(ttl)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("UnknownOperationException") => {
            tracing::debug!(
                table = name,
                "this DynamoDB server has no TTL; events will not expire"
            );
            Ok(())
        }
        Err(e) => Err(Error::Store(format!(
            "turn on TTL for {name}: {}",
            super::describe(&e)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::dynamodb::item::*;

    /// The store writes the attributes the definition indexes, by the same names.
    #[test]
    fn the_definition_matches_the_store() {
        let spec = spec().unwrap();
        assert_eq!(spec.time_to_live_attribute, EXPIRES_AT);
        let keys: Vec<_> = spec
            .key_schema
            .iter()
            .map(|k| k.attribute_name.as_str())
            .collect();
        assert_eq!(keys, [PK, SK]);
        let index = |name: &str| {
            let i = spec
                .global_secondary_indexes
                .iter()
                .find(|i| i.index_name == name)
                .unwrap_or_else(|| panic!("no index {name}"));
            (
                i.key_schema
                    .iter()
                    .map(|k| k.attribute_name.clone())
                    .collect::<Vec<_>>(),
                i.projection.projection_type.clone(),
            )
        };
        use crate::store::dynamodb::{BY_OWNER, BY_PROJECT, BY_SPENDER, BY_STATE};
        assert_eq!(
            index(BY_OWNER),
            (vec![OWNER_KEY.into(), ACTIVITY_KEY.into()], "ALL".into())
        );
        assert_eq!(
            index(BY_PROJECT),
            (
                vec![PROJECT_KEY.into(), CREATED_KEY.into()],
                "KEYS_ONLY".into()
            )
        );
        assert_eq!(
            index(BY_SPENDER),
            (
                vec![SPEND_OWNER.into(), SPEND_AT.into()],
                "KEYS_ONLY".into()
            )
        );
        assert_eq!(
            index(BY_STATE),
            (vec![STATE_KEY.into(), STATE_AT.into()], "KEYS_ONLY".into())
        );
        assert_eq!(spec.global_secondary_indexes.len(), 4);
        for a in &spec.attribute_definitions {
            let want = if [SPEND_AT, STATE_AT].contains(&a.attribute_name.as_str()) {
                "N"
            } else {
                "S"
            };
            assert_eq!(a.attribute_type, want, "{}", a.attribute_name);
        }
    }
}
