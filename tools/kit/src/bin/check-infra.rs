//! Fails when the synthesized CDK stack is not `template.yaml` itself: the CDK app includes the
//! template (cloudformation-include) and may only swap each function's `CodeUri` for its asset
//! and add what CDK adds to every stack (`CDKMetadata`, the bootstrap version check).
//! `check-infra infra/cdk.out/ChatBackend.template.json`.

use std::process::ExitCode;

use kit::template::{self, TEMPLATE};
use serde_json::Value;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: check-infra <synthesized CloudFormation template (JSON)>");
        return ExitCode::from(2);
    };
    let compared = std::fs::read_to_string(&path).map_err(|error| error.to_string()).and_then(|text| {
        let synthesized: Value = serde_json::from_str(&text).map_err(|error| error.to_string())?;
        let source = template::document(TEMPLATE).map_err(|error| error.to_string())?;
        Ok(differences(&source, &synthesized))
    });
    match compared {
        Err(error) => eprintln!("check-infra: {path}: {error}"),
        Ok(found) if found.is_empty() => {
            eprintln!("check-infra: the CDK app deploys template.yaml as it is (only the functions' code differs)");
            return ExitCode::SUCCESS;
        }
        Ok(found) => {
            for difference in &found {
                eprintln!("check-infra: {difference}");
            }
        }
    }
    ExitCode::FAILURE
}

/// Where `synthesized` is not `source`, one line per differing path.
fn differences(source: &Value, synthesized: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let empty = serde_json::Map::new();
    for (section, wanted) in source.as_object().unwrap_or(&empty) {
        let got = &synthesized[section];
        match section.as_str() {
            // Entries by name: CDK adds its own (`CDKMetadata`, `BootstrapVersion`) beside them.
            "Resources" | "Parameters" | "Outputs" | "Conditions" => {
                for (name, entry) in wanted.as_object().unwrap_or(&empty) {
                    let path = format!("{section}/{name}");
                    compare(&path, &normal(without_code(entry)), &normal(without_code(&got[name])), &mut found);
                }
            }
            _ => compare(section, &normal(wanted.clone()), &normal(got.clone()), &mut found),
        }
    }
    found
}

/// Descends to the first paths where the two differ.
fn compare(path: &str, wanted: &Value, got: &Value, found: &mut Vec<String>) {
    match (wanted, got) {
        (Value::Object(wanted), Value::Object(got)) => {
            for key in wanted.keys().chain(got.keys().filter(|key| !wanted.contains_key(*key))) {
                let (left, right) = (wanted.get(key).unwrap_or(&Value::Null), got.get(key).unwrap_or(&Value::Null));
                compare(&format!("{path}/{key}"), left, right, found);
            }
        }
        _ if wanted != got => found.push(format!("{path}: template.yaml has {wanted}, the CDK app {got}")),
        _ => {}
    }
}

/// An entry with a function's `CodeUri` left out: the one property the CDK app sets.
fn without_code(entry: &Value) -> Value {
    let mut entry = entry.clone();
    if let Some(properties) = entry.get_mut("Properties").and_then(Value::as_object_mut) {
        properties.remove("CodeUri");
    }
    entry
}

/// `{"Fn::GetAtt": "A.B"}` as `{"Fn::GetAtt": ["A", "B"]}`: the two forms CloudFormation reads alike.
fn normal(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| match (key.as_str(), value) {
                    ("Fn::GetAtt", Value::String(path)) => {
                        let parts = path.splitn(2, '.').map(Value::from).collect();
                        (key, Value::Array(parts))
                    }
                    (_, value) => (key, normal(value)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normal).collect()),
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::differences;

    #[test]
    fn only_a_changed_property_is_a_difference() {
        let source = json!({
            "Transform": "AWS::Serverless-2016-10-31",
            "Resources": {
                "Fn": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": ".", "Timeout": 15,
                    "Role": {"Fn::GetAtt": ["R", "Arn"]}}},
                "T": {"Type": "AWS::DynamoDB::Table", "Properties": {"BillingMode": "PAY_PER_REQUEST"}}
            }
        });
        let mut synthesized = source.clone();
        synthesized["Resources"]["Fn"]["Properties"]["CodeUri"] = json!({"Bucket": "b", "Key": "k"});
        synthesized["Resources"]["Fn"]["Properties"]["Role"] = json!({"Fn::GetAtt": "R.Arn"});
        synthesized["Resources"]["CDKMetadata"] = json!({"Type": "AWS::CDK::Metadata"});
        assert_eq!(differences(&source, &synthesized), Vec::<String>::new());
        synthesized["Resources"]["T"]["Properties"]["BillingMode"] = json!("PROVISIONED");
        synthesized["Transform"] = json!(null);
        let found = differences(&source, &synthesized);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().any(|line| line.starts_with("Resources/T/Properties/BillingMode:")), "{found:?}");
        assert!(found.iter().any(|line| line.starts_with("Transform:")), "{found:?}");
    }
}
