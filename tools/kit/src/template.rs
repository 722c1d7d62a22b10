//! Reads `template.yaml`: the one definition of the tables, and the routes API Gateway sends to
//! each function.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value as Json};
use serde_norway::Value;

/// The SAM template, embedded at build time.
pub const TEMPLATE: &str = include_str!("../../../template.yaml");

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template.yaml is not valid YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("template.yaml resource {0} is malformed: {1}")]
    Resource(String, serde_norway::Error),
}

/// The template as the JSON CloudFormation reads: short tags (`!Ref`, `!GetAtt`, `!Sub`) in their
/// long forms.
pub fn document(template: &str) -> Result<Json, TemplateError> {
    Ok(yaml_to_json(serde_norway::from_str(template)?))
}

#[derive(Deserialize)]
struct Template {
    #[serde(rename = "Resources")]
    resources: BTreeMap<String, Resource>,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Properties", default)]
    properties: Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDefinition {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyElement {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Projection {
    pub projection_type: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexDefinition {
    pub index_name: String,
    pub key_schema: Vec<KeyElement>,
    pub projection: Projection,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimeToLive {
    pub attribute_name: String,
    pub enabled: bool,
}

/// An `AWS::DynamoDB::Table` as the template defines it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TableDefinition {
    #[serde(skip)]
    pub logical_id: String,
    pub billing_mode: String,
    pub attribute_definitions: Vec<AttributeDefinition>,
    pub key_schema: Vec<KeyElement>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<IndexDefinition>,
    #[serde(default)]
    pub local_secondary_indexes: Vec<IndexDefinition>,
    pub time_to_live_specification: Option<TimeToLive>,
    pub stream_specification: Option<StreamSpecification>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamSpecification {
    pub stream_view_type: String,
}

/// A route API Gateway sends to a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteDefinition {
    pub function: String,
    pub method: String,
    pub path: String,
}

#[derive(Deserialize)]
struct FunctionProperties {
    #[serde(rename = "Events", default)]
    events: BTreeMap<String, Event>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Properties", default)]
    properties: Value,
}

#[derive(Deserialize)]
struct HttpApiEvent {
    #[serde(rename = "Method")]
    method: String,
    #[serde(rename = "Path")]
    path: String,
}

fn resources() -> Result<BTreeMap<String, Resource>, TemplateError> {
    Ok(serde_norway::from_str::<Template>(TEMPLATE)?.resources)
}

/// Every DynamoDB table in the template.
pub fn tables() -> Result<Vec<TableDefinition>, TemplateError> {
    resources()?
        .into_iter()
        .filter(|(_, resource)| resource.kind == "AWS::DynamoDB::Table")
        .map(|(logical_id, resource)| {
            let mut table: TableDefinition = serde_norway::from_value(resource.properties)
                .map_err(|error| TemplateError::Resource(logical_id.clone(), error))?;
            table.logical_id = logical_id;
            Ok(table)
        })
        .collect()
}

/// Every HTTP API route in the template, with the function that serves it.
pub fn routes() -> Result<Vec<RouteDefinition>, TemplateError> {
    let mut routes = Vec::new();
    for (logical_id, resource) in resources()? {
        if resource.kind != "AWS::Serverless::Function" {
            continue;
        }
        let properties: FunctionProperties = serde_norway::from_value(resource.properties)
            .map_err(|error| TemplateError::Resource(logical_id.clone(), error))?;
        for event in properties.events.into_values().filter(|event| event.kind == "HttpApi") {
            let event: HttpApiEvent = serde_norway::from_value(event.properties)
                .map_err(|error| TemplateError::Resource(logical_id.clone(), error))?;
            routes.push(RouteDefinition { function: logical_id.clone(), method: event.method, path: event.path });
        }
    }
    Ok(routes)
}

/// YAML with CloudFormation's short tags (`!Ref`, `!GetAtt`, `!Sub`) as the JSON CloudFormation reads.
fn yaml_to_json(value: Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(flag) => Json::Bool(flag),
        Value::Number(number) => serde_json::to_value(number).unwrap_or(Json::Null),
        Value::String(text) => Json::String(text),
        Value::Sequence(items) => Json::Array(items.into_iter().map(yaml_to_json).collect()),
        Value::Mapping(entries) => Json::Object(
            entries
                .into_iter()
                .map(|(key, value)| {
                    let key = match yaml_to_json(key) {
                        Json::String(text) => text,
                        other => other.to_string(),
                    };
                    (key, yaml_to_json(value))
                })
                .collect(),
        ),
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = yaml_to_json(tagged.value);
            match (name, inner) {
                ("Ref", inner) => Json::Object(Map::from_iter([("Ref".to_owned(), inner)])),
                ("GetAtt", Json::String(path)) => {
                    let parts: Vec<Json> = path.splitn(2, '.').map(Json::from).collect();
                    Json::Object(Map::from_iter([("Fn::GetAtt".to_owned(), Json::Array(parts))]))
                }
                (other, inner) => Json::Object(Map::from_iter([(format!("Fn::{other}"), inner)])),
            }
        }
    }
}
