//! Creates the template's tables in DynamoDB (Local), under the names the config gives them.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, LocalSecondaryIndex, Projection,
    ProjectionType, PutRequest, ScalarAttributeType, StreamSpecification, StreamViewType, TableDescription,
    TimeToLiveSpecification, WriteRequest,
};
use shared::config::TableNames;
use shared::store::schema;

use crate::template::{self, TableDefinition, TemplateError};

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("template.yaml defines table {0}, which the code does not know")]
    UnknownTable(String),
    #[error("invalid table definition {0}: {1}")]
    Invalid(String, String),
    #[error("DynamoDB refused table {0}: {1}")]
    Dynamo(String, String),
}

/// The configured name of the table with this logical id in `template.yaml`.
pub fn table_name<'a>(names: &'a TableNames, logical_id: &str) -> Option<&'a str> {
    match logical_id {
        id if id == schema::SESSIONS.logical_id => Some(&names.sessions),
        id if id == schema::MESSAGES.logical_id => Some(&names.messages),
        id if id == schema::IDEMPOTENCY.logical_id => Some(&names.idempotency),
        id if id == schema::MEMORIES.logical_id => Some(&names.memories),
        id if id == schema::LIMITS.logical_id => Some(&names.limits),
        id if id == schema::CHARACTERS.logical_id => Some(&names.characters),
        id if id == schema::CONNECTIONS.logical_id => Some(&names.connections),
        _ => None,
    }
}

/// Whether tables get the template's streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Streams {
    /// As the template declares them: what AWS runs, and what the dev server's fan-out reads.
    AsTemplate,
    /// None: for measurements that need no stream. DynamoDB Local's stream emulation makes every
    /// write to a streamed table slower as the stream records it holds grow, across all its tables
    /// (a transaction: 2–5 ms on a fresh instance, 180 ms after a smoke benchmark's writes; a table
    /// without a stream stays at 2–5 ms). AWS's streams add nothing to a write's latency.
    Off,
}

/// Creates every table of the template that does not exist yet. Returns the names it created.
pub async fn create_tables(client: &Client, names: &TableNames) -> Result<Vec<String>, TableError> {
    create_tables_with(client, names, Streams::AsTemplate).await
}

/// The same, with or without the template's streams.
pub async fn create_tables_with(
    client: &Client,
    names: &TableNames,
    streams: Streams,
) -> Result<Vec<String>, TableError> {
    let mut created = Vec::new();
    for mut definition in template::tables()? {
        if streams == Streams::Off {
            definition.stream_specification = None;
        }
        let name = table_name(names, &definition.logical_id)
            .ok_or_else(|| TableError::UnknownTable(definition.logical_id.clone()))?;
        match client.describe_table().table_name(name).send().await {
            Ok(described) => {
                if let Some(table) = described.table {
                    upgrade_table(client, name, &definition, &table).await?;
                }
                continue;
            }
            Err(_) => {
                create_table(client, name, &definition).await?;
                created.push(name.to_owned());
            }
        }
    }
    Ok(created)
}

/// Brings a table an older checkout created up to the template: a missing stream is switched
/// on; a missing local index can only come with the table, so the table is rebuilt with its items
/// (local data is small; this is the dev server's persistent data, never AWS's).
async fn upgrade_table(
    client: &Client,
    name: &str,
    definition: &TableDefinition,
    table: &TableDescription,
) -> Result<(), TableError> {
    let dynamo = |error: String| TableError::Dynamo(name.to_owned(), error);
    let has_index =
        |wanted: &str| table.local_secondary_indexes().iter().any(|index| index.index_name() == Some(wanted));
    if definition.local_secondary_indexes.iter().any(|index| !has_index(&index.index_name)) {
        let mut items = Vec::new();
        let mut pages = client.scan().table_name(name).into_paginator().items().send();
        while let Some(item) = pages.next().await {
            items.push(
                item.map_err(|error| dynamo(format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(error))))?,
            );
        }
        client
            .delete_table()
            .table_name(name)
            .send()
            .await
            .map_err(|error| dynamo(format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(error))))?;
        create_table(client, name, definition).await?;
        for chunk in items.chunks(25) {
            let writes = chunk
                .iter()
                .map(|item| {
                    let put = PutRequest::builder().set_item(Some(item.clone())).build();
                    put.map(|put| WriteRequest::builder().put_request(put).build())
                        .map_err(|error| dynamo(error.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            client
                .batch_write_item()
                .request_items(name, writes)
                .send()
                .await
                .map_err(|error| dynamo(format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(error))))?;
        }
        tracing::info!(table = name, items = items.len(), "rebuilt with the template's local indexes");
        return Ok(());
    }
    if let Some(stream) = &definition.stream_specification
        && table.stream_specification().is_none_or(|spec| !spec.stream_enabled())
    {
        client
            .update_table()
            .table_name(name)
            .stream_specification(stream_specification(stream).map_err(dynamo)?)
            .send()
            .await
            .map_err(|error| dynamo(format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(error))))?;
    }
    Ok(())
}

fn stream_specification(stream: &template::StreamSpecification) -> Result<StreamSpecification, String> {
    StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::from(stream.stream_view_type.as_str()))
        .build()
        .map_err(|error| error.to_string())
}

async fn create_table(client: &Client, name: &str, definition: &TableDefinition) -> Result<(), TableError> {
    let invalid = |reason: String| TableError::Invalid(definition.logical_id.clone(), reason);
    let dynamo = |error: String| TableError::Dynamo(name.to_owned(), error);
    let attributes = definition
        .attribute_definitions
        .iter()
        .map(|attribute| {
            AttributeDefinition::builder()
                .attribute_name(&attribute.attribute_name)
                .attribute_type(ScalarAttributeType::from(attribute.attribute_type.as_str()))
                .build()
                .map_err(|error| invalid(error.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let indexes = definition
        .global_secondary_indexes
        .iter()
        .map(|index| {
            let (keys, projection) = index_parts(index).map_err(&invalid)?;
            GlobalSecondaryIndex::builder()
                .index_name(&index.index_name)
                .set_key_schema(Some(keys))
                .projection(projection)
                .build()
                .map_err(|error| invalid(error.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let local_indexes = definition
        .local_secondary_indexes
        .iter()
        .map(|index| {
            let (keys, projection) = index_parts(index).map_err(&invalid)?;
            LocalSecondaryIndex::builder()
                .index_name(&index.index_name)
                .set_key_schema(Some(keys))
                .projection(projection)
                .build()
                .map_err(|error| invalid(error.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(definition.billing_mode.as_str()))
        .set_attribute_definitions(Some(attributes))
        .set_key_schema(Some(key_schema(&definition.key_schema).map_err(invalid)?))
        .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
        .set_local_secondary_indexes((!local_indexes.is_empty()).then_some(local_indexes))
        .set_stream_specification(
            definition.stream_specification.as_ref().map(stream_specification).transpose().map_err(invalid)?,
        )
        .send()
        .await
        .map_err(|error| dynamo(format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(error))))?;
    if let Some(ttl) = definition.time_to_live_specification.as_ref().filter(|ttl| ttl.enabled) {
        let specification = TimeToLiveSpecification::builder()
            .attribute_name(&ttl.attribute_name)
            .enabled(true)
            .build()
            .map_err(|error| TableError::Invalid(definition.logical_id.clone(), error.to_string()))?;
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(specification)
            .send()
            .await
            .map_err(|error| dynamo(format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(error))))?;
    }
    Ok(())
}

/// An index's key schema and projection, shared by global and local indexes.
fn index_parts(index: &template::IndexDefinition) -> Result<(Vec<KeySchemaElement>, Projection), String> {
    let projection =
        Projection::builder().projection_type(ProjectionType::from(index.projection.projection_type.as_str())).build();
    Ok((key_schema(&index.key_schema)?, projection))
}

fn key_schema(elements: &[template::KeyElement]) -> Result<Vec<KeySchemaElement>, String> {
    elements
        .iter()
        .map(|element| {
            KeySchemaElement::builder()
                .attribute_name(&element.attribute_name)
                .key_type(KeyType::from(element.key_type.as_str()))
                .build()
                .map_err(|error| error.to_string())
        })
        .collect()
}
