//! Write units of transactions as DynamoDB bills them.
//!
//! DynamoDB Local's `ConsumedCapacity` is realistic for single-item calls, batches and queries, but
//! not for `TransactWriteItems`: it reports 4 units per table for one small item or for ten (AWS
//! bills 2 per KB per item). So the meter keeps which items each transaction wrote, and after the
//! measured phase this module sizes them — a put by the item it sent, an update by reading the
//! item back — and applies the documented rules: 2 write units per
//! started KB of each item the transaction names; and for each secondary index the write touches,
//! 1 unit per started KB of the index entry — the attributes the index projects, not the whole
//! item — twice when an update changes the entry's key (the old entry is deleted, a new one
//! written). An index is touched when the item enters it, leaves it or changes its key, or when a
//! write changes an attribute the index projects: a keys-only index is not touched by an update
//! that leaves its keys alone.
//!
//! The rule until 2026-12 charged each index entry like a transactional item of the whole item's
//! size (2 per KB of the item) whatever the projection; [`Billed::earlier_rule`] keeps that figure
//! so the two can be compared.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::BoxError;

/// One item a committed transaction wrote, as the request named it.
#[derive(Clone, Debug)]
pub struct Written {
    table: String,
    action: Action,
}

#[derive(Clone, Debug)]
enum Action {
    Put {
        item: Value,
    },
    /// `names`: the attribute names the update expression refers to.
    Update {
        key: Value,
        names: Vec<String>,
    },
    Delete {
        key: Value,
    },
    ConditionCheck {
        key: Value,
    },
}

/// The items of a `TransactWriteItems` request body.
pub fn transaction_items(body: &serde_json::Map<String, Value>) -> Vec<Written> {
    let Some(Value::Array(items)) = body.get("TransactItems") else { return Vec::new() };
    items
        .iter()
        .filter_map(|entry| {
            let (kind, spec) = entry.as_object()?.iter().next()?;
            let table = spec.get("TableName")?.as_str()?.to_owned();
            let key = || spec.get("Key").cloned().unwrap_or(Value::Null);
            let action = match kind.as_str() {
                "Put" => Action::Put { item: spec.get("Item")?.clone() },
                "Update" => Action::Update {
                    key: key(),
                    names: spec
                        .get("ExpressionAttributeNames")
                        .and_then(Value::as_object)
                        .map(|names| names.values().filter_map(Value::as_str).map(str::to_owned).collect())
                        .unwrap_or_default(),
                },
                "Delete" => Action::Delete { key: key() },
                _ => Action::ConditionCheck { key: key() },
            };
            Some(Written { table, action })
        })
        .collect()
}

struct Shape {
    key: Vec<String>,
    indexes: Vec<IndexShape>,
}

#[derive(Clone)]
struct IndexShape {
    /// Key attribute names of the index (global or local).
    key: Vec<String>,
    keys_only: bool,
}

/// Billed write units of a set of transactions, by today's rule and by the earlier one.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Billed {
    pub units: f64,
    pub earlier_rule: f64,
}

/// Reads written items back (uncounted) to size them.
pub struct Auditor {
    client: Client,
    shapes: Mutex<HashMap<String, Shape>>,
}

impl Auditor {
    pub fn new(client: Client) -> Self {
        Self { client, shapes: Mutex::default() }
    }

    /// Billable write units of one committed transaction.
    pub async fn write_units(&self, written: &[Written]) -> Result<Billed, BoxError> {
        let mut billed = Billed::default();
        for item in written {
            let (key_names, indexes) = self.shape(&item.table).await?;
            let key = match &item.action {
                Action::Put { item } => {
                    key_names.iter().filter_map(|name| Some((name.clone(), item.get(name)?.clone()))).collect()
                }
                Action::Update { key, .. } | Action::Delete { key } | Action::ConditionCheck { key } => key.clone(),
            };
            // A put is billed by the item it wrote (a reply's placeholder, not the reply it
            // became); an update or delete by the item as it is now (the measured phase ends
            // with it: its last write's size, and no smaller than what it replaced).
            let stored = match &item.action {
                Action::Put { item } => Some(wire_item(item)?),
                _ => self.read(&item.table, &key).await?,
            };
            let kb = |size: u64| size.div_ceil(1024).max(1) as f64;
            let item_kb = kb(stored.as_ref().map_or(1, item_size));
            billed.units += 2.0 * item_kb;
            billed.earlier_rule += 2.0 * item_kb;
            let Some(stored) = stored else { continue };
            if matches!(item.action, Action::ConditionCheck { .. }) {
                continue;
            }
            for index in &indexes {
                if !index.key.iter().all(|name| stored.contains_key(name)) {
                    continue; // a sparse index this item is not in
                }
                let key_changed = match &item.action {
                    Action::Update { names, .. } => index.key.iter().any(|name| names.contains(name)),
                    _ => false,
                };
                let writes = if key_changed { 2.0 } else { 1.0 };
                billed.earlier_rule += 2.0 * item_kb * writes;
                let touched = key_changed || !index.keys_only || !matches!(item.action, Action::Update { .. });
                if touched {
                    let entry = if index.keys_only {
                        let projected = |name: &String| key_names.contains(name) || index.key.contains(name);
                        stored
                            .iter()
                            .filter(|(name, _)| projected(name))
                            .map(|(name, value)| name.len() as u64 + value_size(value))
                            .sum()
                    } else {
                        item_size(&stored)
                    };
                    billed.units += kb(entry) * writes;
                }
            }
        }
        Ok(billed)
    }

    async fn shape(&self, table: &str) -> Result<(Vec<String>, Vec<IndexShape>), BoxError> {
        let mut shapes = self.shapes.lock().await;
        if !shapes.contains_key(table) {
            let description = self.client.describe_table().table_name(table).send().await?;
            let description = description.table.ok_or("no table description")?;
            let names = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
                schema.iter().map(|element| element.attribute_name.clone()).collect::<Vec<_>>()
            };
            let keys_only = |projection: Option<&aws_sdk_dynamodb::types::Projection>| {
                projection.and_then(|p| p.projection_type()) == Some(&aws_sdk_dynamodb::types::ProjectionType::KeysOnly)
            };
            let mut indexes: Vec<IndexShape> = description
                .global_secondary_indexes()
                .iter()
                .map(|index| IndexShape { key: names(index.key_schema()), keys_only: keys_only(index.projection()) })
                .collect();
            indexes.extend(
                description.local_secondary_indexes().iter().map(|index| IndexShape {
                    key: names(index.key_schema()),
                    keys_only: keys_only(index.projection()),
                }),
            );
            shapes.insert(table.to_owned(), Shape { key: names(description.key_schema()), indexes });
        }
        let shape = shapes.get(table).ok_or("shape")?;
        Ok((shape.key.clone(), shape.indexes.clone()))
    }

    async fn read(&self, table: &str, key: &Value) -> Result<Option<HashMap<String, AttributeValue>>, BoxError> {
        let key = key.as_object().ok_or("key is not an object")?;
        let key = key
            .iter()
            .map(|(name, value)| Ok((name.clone(), key_value(value)?)))
            .collect::<Result<HashMap<_, _>, BoxError>>()?;
        let output = self.client.get_item().table_name(table).set_key(Some(key)).consistent_read(true).send().await?;
        Ok(output.item)
    }
}

/// An item in DynamoDB's JSON wire format, as a request carries it.
fn wire_item(item: &Value) -> Result<HashMap<String, AttributeValue>, BoxError> {
    let item = item.as_object().ok_or("an item is an object")?;
    item.iter().map(|(name, value)| Ok((name.clone(), wire_value(value)?))).collect()
}

fn wire_value(value: &Value) -> Result<AttributeValue, BoxError> {
    let (kind, inner) = value.as_object().and_then(|typed| typed.iter().next()).ok_or("a typed attribute")?;
    let text = || inner.as_str().map(str::to_owned).ok_or("a string");
    let texts = || -> Result<Vec<String>, BoxError> {
        inner
            .as_array()
            .ok_or("a list")?
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| "a string".into()))
            .collect()
    };
    Ok(match kind.as_str() {
        "S" => AttributeValue::S(text()?),
        "N" => AttributeValue::N(text()?),
        "BOOL" => AttributeValue::Bool(inner.as_bool().ok_or("a boolean")?),
        "NULL" => AttributeValue::Null(true),
        "SS" => AttributeValue::Ss(texts()?),
        "NS" => AttributeValue::Ns(texts()?),
        "L" => AttributeValue::L(inner.as_array().ok_or("a list")?.iter().map(wire_value).collect::<Result<_, _>>()?),
        "M" => AttributeValue::M(wire_item(inner)?),
        other => return Err(format!("unsupported attribute type {other}").into()),
    })
}

/// A key attribute in DynamoDB's JSON wire format (`{"S": "…"}`, `{"N": "…"}`).
fn key_value(value: &Value) -> Result<AttributeValue, BoxError> {
    match value.as_object().and_then(|typed| typed.iter().next()) {
        Some((kind, Value::String(text))) if kind == "S" => Ok(AttributeValue::S(text.clone())),
        Some((kind, Value::String(text))) if kind == "N" => Ok(AttributeValue::N(text.clone())),
        _ => Err(format!("unsupported key attribute {value}").into()),
    }
}

/// An item's size by DynamoDB's rules: attribute names plus values.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> u64 {
    item.iter().map(|(name, value)| name.len() as u64 + value_size(value)).sum()
}

fn value_size(value: &AttributeValue) -> u64 {
    match value {
        AttributeValue::S(text) => text.len() as u64,
        AttributeValue::N(number) => number_size(number),
        AttributeValue::B(blob) => blob.as_ref().len() as u64,
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(texts) => texts.iter().map(|text| text.len() as u64).sum(),
        AttributeValue::Ns(numbers) => numbers.iter().map(|number| number_size(number)).sum(),
        AttributeValue::Bs(blobs) => blobs.iter().map(|blob| blob.as_ref().len() as u64).sum(),
        AttributeValue::L(values) => 3 + values.iter().map(|value| 1 + value_size(value)).sum::<u64>(),
        AttributeValue::M(map) => {
            3 + map.iter().map(|(name, value)| 1 + name.len() as u64 + value_size(value)).sum::<u64>()
        }
        _ => 0,
    }
}

/// Numbers take about one byte per two significant digits, plus one.
fn number_size(number: &str) -> u64 {
    let digits = number.trim_start_matches('-').trim_start_matches('0').replace('.', "");
    (digits.trim_end_matches('0').len() as u64).div_ceil(2) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_dynamodb_rules() {
        let item = HashMap::from([
            ("pk".to_owned(), AttributeValue::S("user-1".into())),
            ("seq".to_owned(), AttributeValue::N("12345".into())),
            ("ok".to_owned(), AttributeValue::Bool(true)),
        ]);
        // 2 + 6, 3 + 4 (5 digits → 3 + 1), 2 + 1
        assert_eq!(item_size(&item), 18);
    }

    #[test]
    fn transaction_items_are_read_from_the_request() {
        let body = serde_json::json!({"TransactItems": [
            {"Update": {"TableName": "sessions", "Key": {"pk": {"S": "u"}},
                        "ExpressionAttributeNames": {"#a": "activity_at"}}},
            {"Put": {"TableName": "messages", "Item": {"pk": {"S": "u"}, "seq": {"N": "1"}}}}
        ]});
        let written = transaction_items(body.as_object().unwrap_or(&serde_json::Map::new()));
        assert_eq!(written.len(), 2);
        assert!(matches!(&written[0].action, Action::Update { names, .. } if names == &["activity_at".to_owned()]));
        assert!(matches!(&written[1].action, Action::Put { .. }));
        assert_eq!(written[1].table, "messages");
    }
}
