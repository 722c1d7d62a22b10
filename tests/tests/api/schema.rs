//! One source of truth: the tables come from template.yaml, and the code's key layout must match it.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::Method;
use kit::template;
use shared::store::schema::{KeyType, TABLES, TableLayout};

use crate::common::TestApp;

fn key_type(kind: KeyType) -> &'static str {
    match kind {
        KeyType::S => "S",
        KeyType::N => "N",
    }
}

fn attribute_types(table: &template::TableDefinition) -> BTreeMap<String, String> {
    table.attribute_definitions.iter().map(|a| (a.attribute_name.clone(), a.attribute_type.clone())).collect()
}

fn check_layout(layout: &TableLayout, table: &template::TableDefinition) {
    let types = attribute_types(table);
    let mut expected_keys = vec![(layout.partition_key.0.to_owned(), "HASH".to_owned())];
    if let Some((name, _)) = layout.sort_key {
        expected_keys.push((name.to_owned(), "RANGE".to_owned()));
    }
    let keys: Vec<_> = table.key_schema.iter().map(|k| (k.attribute_name.clone(), k.key_type.clone())).collect();
    assert_eq!(keys, expected_keys, "{} key schema", layout.logical_id);
    let mut declared = BTreeSet::new();
    for (name, kind) in std::iter::once(layout.partition_key).chain(layout.sort_key) {
        assert_eq!(types.get(name).map(String::as_str), Some(key_type(kind)), "{}.{name}", layout.logical_id);
        declared.insert(name.to_owned());
    }
    assert_eq!(table.global_secondary_indexes.len(), layout.indexes.len(), "{} indexes", layout.logical_id);
    for index in layout.indexes {
        let defined = table
            .global_secondary_indexes
            .iter()
            .find(|i| i.index_name == index.name)
            .unwrap_or_else(|| panic!("{} lacks index {}", layout.logical_id, index.name));
        let keys: Vec<_> =
            defined.key_schema.iter().map(|k| (k.attribute_name.as_str(), k.key_type.as_str())).collect();
        assert_eq!(keys, [(index.partition_key.0, "HASH"), (index.sort_key.0, "RANGE")], "{}", index.name);
        assert_eq!(defined.projection.projection_type, index.projection.as_str(), "{} projection", index.name);
        for (name, kind) in [index.partition_key, index.sort_key] {
            assert_eq!(types.get(name).map(String::as_str), Some(key_type(kind)), "{}.{name}", index.name);
            declared.insert(name.to_owned());
        }
    }
    assert_eq!(table.local_secondary_indexes.len(), layout.local_indexes.len(), "{} local indexes", layout.logical_id);
    for index in layout.local_indexes {
        let defined = table
            .local_secondary_indexes
            .iter()
            .find(|i| i.index_name == index.name)
            .unwrap_or_else(|| panic!("{} lacks local index {}", layout.logical_id, index.name));
        let keys: Vec<_> =
            defined.key_schema.iter().map(|k| (k.attribute_name.as_str(), k.key_type.as_str())).collect();
        assert_eq!(keys, [(index.partition_key.0, "HASH"), (index.sort_key.0, "RANGE")], "{}", index.name);
        assert_eq!(defined.projection.projection_type, index.projection.as_str(), "{} projection", index.name);
        assert_eq!(index.partition_key, layout.partition_key, "a local index shares the table's partition key");
        assert_eq!(types.get(index.sort_key.0).map(String::as_str), Some(key_type(index.sort_key.1)), "{}", index.name);
        declared.insert(index.sort_key.0.to_owned());
    }
    assert_eq!(
        types.keys().cloned().collect::<BTreeSet<_>>(),
        declared,
        "{} declares only key attributes",
        layout.logical_id
    );
    let ttl = table.time_to_live_specification.as_ref().filter(|t| t.enabled).map(|t| t.attribute_name.as_str());
    assert_eq!(ttl, layout.ttl_attribute, "{} TTL", layout.logical_id);
    assert_eq!(table.billing_mode, "PAY_PER_REQUEST");
}

#[test]
fn template_tables_match_the_code_layout() {
    let tables = template::tables().unwrap();
    assert_eq!(tables.len(), TABLES.len(), "template.yaml and the code define the same tables");
    for layout in &TABLES {
        let table = tables
            .iter()
            .find(|t| t.logical_id == layout.logical_id)
            .unwrap_or_else(|| panic!("template.yaml lacks {}", layout.logical_id));
        check_layout(layout, table);
    }
}

#[tokio::test]
async fn created_tables_are_the_template_tables() {
    let app = TestApp::new().await;
    let client = crate::common::client();
    for table in template::tables().unwrap() {
        let name = kit::tables::table_name(&app.config.tables, &table.logical_id).unwrap();
        let described = client.describe_table().table_name(name).send().await.unwrap();
        let described = described.table().unwrap();
        let keys: Vec<_> = described
            .key_schema()
            .iter()
            .map(|k| (k.attribute_name().to_owned(), k.key_type().as_str().to_owned()))
            .collect();
        let wanted: Vec<_> = table.key_schema.iter().map(|k| (k.attribute_name.clone(), k.key_type.clone())).collect();
        assert_eq!(keys, wanted, "{name}");
        let indexes: BTreeSet<_> =
            described.global_secondary_indexes().iter().filter_map(|i| i.index_name()).map(str::to_owned).collect();
        let wanted: BTreeSet<_> = table.global_secondary_indexes.iter().map(|i| i.index_name.clone()).collect();
        assert_eq!(indexes, wanted, "{name}");
        let local: BTreeSet<_> =
            described.local_secondary_indexes().iter().filter_map(|i| i.index_name()).map(str::to_owned).collect();
        let wanted: BTreeSet<_> = table.local_secondary_indexes.iter().map(|i| i.index_name.clone()).collect();
        assert_eq!(local, wanted, "{name} local indexes");
        let ttl = client.describe_time_to_live().table_name(name).send().await.unwrap();
        let ttl_attribute = ttl.time_to_live_description().and_then(|d| d.attribute_name()).map(str::to_owned);
        let wanted = table.time_to_live_specification.as_ref().map(|t| t.attribute_name.clone());
        assert_eq!(ttl_attribute, wanted, "{name} TTL");
    }
}

/// Every route the template gives API Gateway exists in the router (401 without a token, where
/// an unknown route would be 404), and every router route is in the template.
#[tokio::test]
async fn template_routes_match_the_routers() {
    let app = TestApp::new().await;
    let routes = template::routes().unwrap();
    assert!(routes.len() >= 20, "found only {} routes", routes.len());
    for route in &routes {
        let path = route
            .path
            .replace("{id}", "00000000-0000-4000-8000-000000000001")
            .replace("{seq}", "1")
            .replace("{user_id}", "someone");
        let methods = if route.method == "ANY" { vec!["GET".to_owned()] } else { vec![route.method.clone()] };
        for method in methods {
            let response = app.call(Method::from_bytes(method.as_bytes()).unwrap(), &path, None, None).await;
            assert_eq!(response.status.as_u16(), 401, "{method} {} ({}) is not served", route.path, route.function);
        }
    }
    let in_template: BTreeSet<(String, String)> = routes.iter().map(|r| (r.method.clone(), r.path.clone())).collect();
    for (method, path) in [
        ("POST", "/v1/sessions"),
        ("GET", "/v1/sessions"),
        ("GET", "/v1/sessions/{id}"),
        ("PATCH", "/v1/sessions/{id}"),
        ("DELETE", "/v1/sessions/{id}"),
        ("POST", "/v1/sessions/{id}/archive"),
        ("POST", "/v1/sessions/{id}/unarchive"),
        ("POST", "/v1/sessions/{id}/messages"),
        ("GET", "/v1/sessions/{id}/messages"),
        ("POST", "/v1/sessions/{id}/messages/batch"),
        ("GET", "/v1/sessions/{id}/messages/{seq}"),
        ("PATCH", "/v1/sessions/{id}/messages/{seq}"),
        ("DELETE", "/v1/sessions/{id}/messages/{seq}"),
        ("POST", "/v1/sessions/{id}/forget-recent"),
        ("POST", "/v1/sessions/{id}/new-scene"),
        ("POST", "/v1/sessions/{id}/reset"),
        ("GET", "/v1/sessions/{id}/context"),
        ("POST", "/v1/memories"),
        ("GET", "/v1/memories"),
        ("DELETE", "/v1/memories"),
        ("GET", "/v1/memories/{id}"),
        ("PATCH", "/v1/memories/{id}"),
        ("DELETE", "/v1/memories/{id}"),
    ] {
        assert!(in_template.contains(&(method.to_owned(), path.to_owned())), "template.yaml lacks {method} {path}");
    }
}

/// The variables that name the tables, and the local names, are the template's: `SESSIONS_TABLE:
/// !Ref SessionsTable` in its `Globals`, `<prefix>sessions` locally.
#[test]
fn the_table_environment_is_the_template_globals() {
    let document = template::document(template::TEMPLATE).unwrap();
    let variables = document["Globals"]["Function"]["Environment"]["Variables"].as_object().unwrap();
    let from_template: BTreeMap<String, String> = variables
        .iter()
        .filter(|(name, _)| name.ends_with("_TABLE"))
        .map(|(name, value)| {
            let logical_id = value["Ref"].as_str().unwrap();
            (name.clone(), logical_id.trim_end_matches("Table").to_ascii_lowercase())
        })
        .collect();
    let from_code: BTreeMap<String, String> = shared::store::TableNames::with_prefix("")
        .env()
        .into_iter()
        .map(|(name, local)| (name.to_owned(), local))
        .collect();
    assert_eq!(from_template.len(), 7);
    assert_eq!(from_template, from_code);
}
