//! Keeps the CDK app equal to `template.yaml`: both are reduced to the same comparable shape
//! (parameters, tables, function settings and permissions, routes, schedules, outputs), and any
//! difference is reported.
//!
//! The SAM template is read before its transform, the CDK output after synthesis, so each side's
//! way of saying a thing is mapped to one form: `!Sub "${T.Arn}/index/*"` and CDK's `Fn::Join`
//! both render as `${T.Arn}/index/*`; a SAM `HttpApi` event and a CDK route + integration both
//! become `"GET /v1/sessions" → SessionsFunction`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use serde_norway::Value as Yaml;

/// What a stack is compared by: category → item → its settings.
pub type Shape = BTreeMap<&'static str, BTreeMap<String, Value>>;

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("not valid YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unexpected template: {0}")]
    Shape(String),
}

/// The shape of a SAM template (`template.yaml`).
pub fn sam_shape(template: &str) -> Result<Shape, DriftError> {
    let template = yaml_to_json(serde_norway::from_str(template)?);
    let resources = object(&template, "Resources")?;
    let globals = template.pointer("/Globals/Function").cloned().unwrap_or(Value::Null);
    let mut shape = base_shape(&template, resources);
    for (id, api) in of_type(resources, "AWS::Serverless::HttpApi") {
        insert(&mut shape, "cors", id, cors_settings(&api["Properties"]["CorsConfiguration"]));
    }
    for (id, resource) in of_type(resources, "AWS::Serverless::Function") {
        let properties = merged(&globals, &resource["Properties"]);
        let permissions =
            properties["Policies"].as_array().into_iter().flatten().flat_map(|policy| statements(&policy["Statement"]));
        insert(&mut shape, "permissions", id, sorted(permissions.collect()));
        insert(&mut shape, "functions", id, function_settings(&properties));
        if let Some(url) = properties.get("FunctionUrlConfig").filter(|url| !url.is_null()) {
            insert(&mut shape, "function_urls", id, url_settings(url));
        }
        for event in properties["Events"].as_object().into_iter().flat_map(Map::values) {
            let event_properties = &event["Properties"];
            match event["Type"].as_str() {
                Some("HttpApi") => {
                    // SAM accepts a method in any case; API Gateway route keys are upper case.
                    let method = text(&event_properties["Method"]).to_uppercase();
                    let key = format!("{method} {}", text(&event_properties["Path"]));
                    insert(&mut shape, "routes", &key, Value::from(id));
                }
                Some("Schedule") => {
                    let key = format!("{id} {}", text(&event_properties["Schedule"]));
                    insert(&mut shape, "schedules", &key, Value::Bool(true));
                }
                Some("DynamoDB") => {
                    let key = format!("{id} {}", render(&event_properties["Stream"]));
                    insert(&mut shape, "streams", &key, stream_settings(event_properties));
                }
                _ => return Err(DriftError::Shape(format!("{id} has an event of an unknown type"))),
            }
        }
    }
    explicit_routes(&mut shape, resources)?;
    websocket_shape(&mut shape, resources);
    Ok(shape)
}

/// A stream consumer's settings, as a SAM `DynamoDB` event and an `EventSourceMapping` say them.
fn stream_settings(properties: &Value) -> Value {
    let keys = [
        "StartingPosition",
        "BatchSize",
        "MaximumBatchingWindowInSeconds",
        "MaximumRetryAttempts",
        "BisectBatchOnFunctionError",
    ];
    Value::Object(keys.iter().map(|key| (key.to_string(), properties[key].clone())).collect())
}

/// The function a route's Lambda integration invokes: `Fn::GetAtt` (CDK's HTTP integrations) or
/// the `…/functions/${F.Arn}/invocations` URI written out (the WebSocket API, on both sides).
fn integrated_function(integration: &Value) -> Option<String> {
    let uri = integration.pointer("/Properties/IntegrationUri")?;
    if let Some(function) = uri.pointer("/Fn::GetAtt/0") {
        return Some(text(function));
    }
    let rendered = render(uri);
    let start = rendered.find("functions/${")? + "functions/${".len();
    let end = rendered[start..].find(".Arn}")?;
    Some(rendered[start..start + end].to_owned())
}

/// Routes written as `AWS::ApiGatewayV2::Route` resources: `"$connect" → RealtimeFunction`.
fn explicit_routes(shape: &mut Shape, resources: &Map<String, Value>) -> Result<(), DriftError> {
    for (_, route) in of_type(resources, "AWS::ApiGatewayV2::Route") {
        let properties = &route["Properties"];
        let target = render(&properties["Target"]);
        let integration = target.trim_start_matches("integrations/${").trim_end_matches('}');
        let function = resources
            .get(integration)
            .and_then(integrated_function)
            .ok_or_else(|| DriftError::Shape(format!("route {} has no Lambda integration", properties["RouteKey"])))?;
        insert(shape, "routes", &text(&properties["RouteKey"]), Value::from(function));
    }
    Ok(())
}

/// The WebSocket API, its stage and integration, and the permission to invoke its function:
/// written as the same resources on both sides, compared with their intrinsics rendered.
fn websocket_shape(shape: &mut Shape, resources: &Map<String, Value>) {
    for (id, api) in of_type(resources, "AWS::ApiGatewayV2::Api") {
        if api["Properties"]["ProtocolType"] == "WEBSOCKET" {
            insert(shape, "websocket", id, rendered(&api["Properties"]));
        }
    }
    for kind in ["AWS::ApiGatewayV2::Stage", "AWS::ApiGatewayV2::Integration"] {
        for (id, resource) in of_type(resources, kind) {
            let properties = &resource["Properties"];
            let api = render(&properties["ApiId"]);
            if resources
                .get(api.trim_start_matches("${").trim_end_matches('}'))
                .is_some_and(|api| api["Properties"]["ProtocolType"] == "WEBSOCKET")
            {
                insert(shape, "websocket", id, rendered(properties));
            }
        }
    }
    for (id, permission) in of_type(resources, "AWS::Lambda::Permission") {
        let properties = &permission["Properties"];
        // API Gateway's own grants for the HTTP API are implied by SAM's events; the WebSocket
        // API's is written out on both sides.
        if render(&properties["SourceArn"]).contains("${WebSocketApi}") {
            insert(shape, "websocket", id, rendered(properties));
        }
    }
}

/// A value with every intrinsic written as the `Fn::Sub` string it amounts to.
fn rendered(value: &Value) -> Value {
    match value {
        Value::Object(map) if map.contains_key("Ref") || map.keys().any(|key| key.starts_with("Fn::")) => {
            Value::from(render(value))
        }
        Value::Object(map) => Value::Object(map.iter().map(|(key, value)| (key.clone(), rendered(value))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(rendered).collect()),
        other => other.clone(),
    }
}

/// The shape of a synthesized CloudFormation template (`cdk synth` output).
pub fn cloudformation_shape(template: &str) -> Result<Shape, DriftError> {
    let template: Value = serde_json::from_str(template)?;
    let resources = object(&template, "Resources")?;
    let mut shape = base_shape(&template, resources);
    let mut function_of_role = BTreeMap::new();
    for (id, resource) in of_type(resources, "AWS::Lambda::Function") {
        let properties = &resource["Properties"];
        function_of_role.insert(text(&properties.pointer("/Role/Fn::GetAtt/0").cloned().unwrap_or_default()), id);
        insert(&mut shape, "functions", id, function_settings(properties));
    }
    for (id, api) in of_type(resources, "AWS::ApiGatewayV2::Api") {
        if api["Properties"]["ProtocolType"] != "WEBSOCKET" {
            insert(&mut shape, "cors", id, cors_settings(&api["Properties"]["CorsConfiguration"]));
        }
    }
    for (id, url) in of_type(resources, "AWS::Lambda::Url") {
        let properties = &url["Properties"];
        let function = text(&properties.pointer("/TargetFunctionArn/Fn::GetAtt/0").cloned().unwrap_or_default());
        if function.is_empty() {
            return Err(DriftError::Shape(format!("function URL {id} names no function")));
        }
        insert(&mut shape, "function_urls", &function, url_settings(properties));
    }
    let mut permissions: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for (id, policy) in of_type(resources, "AWS::IAM::Policy") {
        let roles = policy["Properties"]["Roles"].as_array().cloned().unwrap_or_default();
        for role in roles {
            let function = function_of_role
                .get(&text(&role["Ref"]))
                .ok_or_else(|| DriftError::Shape(format!("policy {id} is attached to a role no function uses")))?;
            let granted = statements(&policy["Properties"]["PolicyDocument"]["Statement"]);
            permissions.entry(function).or_default().extend(granted);
        }
    }
    for (function, granted) in permissions {
        insert(&mut shape, "permissions", function, sorted(granted));
    }
    explicit_routes(&mut shape, resources)?;
    websocket_shape(&mut shape, resources);
    for (_, mapping) in of_type(resources, "AWS::Lambda::EventSourceMapping") {
        let properties = &mapping["Properties"];
        let key = format!("{} {}", text(&properties["FunctionName"]["Ref"]), render(&properties["EventSourceArn"]));
        insert(&mut shape, "streams", &key, stream_settings(properties));
    }
    for (id, rule) in of_type(resources, "AWS::Events::Rule") {
        let properties = &rule["Properties"];
        let targets = properties["Targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            return Err(DriftError::Shape(format!("rule {id} has no target")));
        }
        for target in targets {
            let function = text(&target.pointer("/Arn/Fn::GetAtt/0").cloned().unwrap_or_default());
            let key = format!("{function} {}", text(&properties["ScheduleExpression"]));
            insert(&mut shape, "schedules", &key, Value::Bool(true));
        }
    }
    Ok(shape)
}

/// Compares a synthesized template with `template.yaml`: its shape, and every difference.
pub fn check_against_template(synthesized: &str) -> Result<(Shape, Vec<String>), DriftError> {
    let sam = sam_shape(crate::template::TEMPLATE)?;
    let found = differences(&sam, &cloudformation_shape(synthesized)?);
    Ok((sam, found))
}

/// Every way `template.yaml` and `cdk` differ, one line each; empty when they agree.
pub fn differences(sam: &Shape, cdk: &Shape) -> Vec<String> {
    let mut found = Vec::new();
    let empty = BTreeMap::new();
    for category in sam.keys().chain(cdk.keys()).collect::<std::collections::BTreeSet<_>>() {
        let (left, right) = (sam.get(category).unwrap_or(&empty), cdk.get(category).unwrap_or(&empty));
        for key in left.keys().chain(right.keys()).collect::<std::collections::BTreeSet<_>>() {
            match (left.get(key), right.get(key)) {
                (Some(_), None) => found.push(format!("{category} {key}: only in template.yaml")),
                (None, Some(_)) => found.push(format!("{category} {key}: only in the CDK app")),
                (Some(Value::Array(a)), Some(Value::Array(b))) if a != b => {
                    let only = |these: &[Value], those: &[Value]| {
                        let items: Vec<String> = these.iter().filter(|item| !those.contains(item)).map(text).collect();
                        items.join("; ")
                    };
                    found.push(format!(
                        "{category} {key}: only in template.yaml [{}], only in the CDK app [{}]",
                        only(a, b),
                        only(b, a)
                    ))
                }
                (Some(a), Some(b)) if a != b => {
                    found.push(format!("{category} {key}: template.yaml has {a}, the CDK app has {b}"))
                }
                _ => {}
            }
        }
    }
    found
}

/// Parameters, tables and outputs: written the same way on both sides.
fn base_shape(template: &Value, resources: &Map<String, Value>) -> Shape {
    let mut shape = Shape::new();
    for (name, parameter) in template["Parameters"].as_object().into_iter().flatten() {
        // CDK's own bootstrap-version check is not part of the application.
        if name != "BootstrapVersion" {
            insert(&mut shape, "parameters", name, parameter.clone());
        }
    }
    for (id, table) in of_type(resources, "AWS::DynamoDB::Table") {
        insert(&mut shape, "tables", id, normalized_table(&table["Properties"]));
    }
    for (name, output) in template["Outputs"].as_object().into_iter().flatten() {
        insert(&mut shape, "outputs", name, Value::from(render(&output["Value"])));
    }
    shape
}

fn normalized_table(properties: &Value) -> Value {
    let mut table = properties.clone();
    for (list, key) in [
        ("AttributeDefinitions", "AttributeName"),
        ("GlobalSecondaryIndexes", "IndexName"),
        ("LocalSecondaryIndexes", "IndexName"),
    ] {
        if let Some(items) = table.get_mut(list).and_then(Value::as_array_mut) {
            items.sort_by_key(|item| text(&item[key]));
        }
    }
    table
}

/// A function URL's auth, invoke mode (`BUFFERED` when unsaid) and CORS.
fn url_settings(properties: &Value) -> Value {
    let mode = properties.get("InvokeMode").cloned().unwrap_or_else(|| Value::from("BUFFERED"));
    serde_json::json!({ "AuthType": properties["AuthType"], "InvokeMode": mode, "Cors": cors_settings(&properties["Cors"]) })
}

/// A CORS configuration with its lists in one order and header names in lower case.
fn cors_settings(cors: &Value) -> Value {
    let Some(cors) = cors.as_object() else { return Value::Null };
    let normalized = cors.iter().map(|(key, value)| {
        let value = match value.as_array() {
            Some(items) => {
                let mut items: Vec<String> = items.iter().map(|item| text(item).to_ascii_lowercase()).collect();
                items.sort();
                Value::from(items)
            }
            None => value.clone(),
        };
        (key.clone(), value)
    });
    Value::Object(normalized.collect())
}

fn function_settings(properties: &Value) -> Value {
    let keys = ["Runtime", "Architectures", "Handler", "MemorySize", "Timeout", "LoggingConfig", "Environment"];
    Value::Object(keys.iter().map(|key| (key.to_string(), properties[key].clone())).collect())
}

/// A policy's statements as sorted `"Effect action on resource"` lines.
fn statements(statements: &Value) -> Vec<Value> {
    let mut lines = Vec::new();
    for statement in statements.as_array().into_iter().flatten() {
        for action in one_or_many(&statement["Action"]) {
            for resource in one_or_many(&statement["Resource"]) {
                lines.push(Value::from(format!(
                    "{} {} on {}",
                    text(&statement["Effect"]),
                    text(&action),
                    render(&resource)
                )));
            }
        }
    }
    lines
}

fn one_or_many(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    }
}

fn sorted(mut items: Vec<Value>) -> Value {
    items.sort_by_key(text);
    items.dedup();
    Value::Array(items)
}

/// A function's properties over the template's `Globals.Function` (maps merge, the rest replaces).
fn merged(globals: &Value, properties: &Value) -> Value {
    match (globals, properties) {
        (Value::Object(base), Value::Object(over)) => {
            let mut out = base.clone();
            for (key, value) in over {
                let merged_value = merged(base.get(key).unwrap_or(&Value::Null), value);
                out.insert(key.clone(), merged_value);
            }
            Value::Object(out)
        }
        (_, Value::Null) => globals.clone(),
        _ => properties.clone(),
    }
}

/// An intrinsic-function value written as the `Fn::Sub` string it amounts to.
fn render(value: &Value) -> String {
    if let Some(name) = value.get("Ref") {
        return format!("${{{}}}", text(name));
    }
    if let Some(attribute) = value.get("Fn::GetAtt") {
        let parts: Vec<String> = one_or_many(attribute).iter().map(text).collect();
        return format!("${{{}}}", parts.join("."));
    }
    if let Some(template) = value.get("Fn::Sub") {
        return text(template);
    }
    if let Some(Value::Array(join)) = value.get("Fn::Join") {
        let separator = join.first().map(text).unwrap_or_default();
        let parts = join.get(1).and_then(Value::as_array).cloned().unwrap_or_default();
        return parts.iter().map(render).collect::<Vec<_>>().join(&separator);
    }
    text(value)
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn object<'a>(template: &'a Value, key: &str) -> Result<&'a Map<String, Value>, DriftError> {
    template[key].as_object().ok_or_else(|| DriftError::Shape(format!("no {key} section")))
}

fn of_type<'a>(resources: &'a Map<String, Value>, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> {
    resources.iter().filter(move |(_, resource)| resource["Type"] == kind).map(|(id, resource)| (id.as_str(), resource))
}

fn insert(shape: &mut Shape, category: &'static str, key: &str, value: Value) {
    shape.entry(category).or_default().insert(key.to_string(), value);
}

/// YAML with CloudFormation's short tags (`!Ref`, `!GetAtt`, `!Sub`) as the JSON CloudFormation reads.
fn yaml_to_json(value: Yaml) -> Value {
    match value {
        Yaml::Null => Value::Null,
        Yaml::Bool(flag) => Value::Bool(flag),
        Yaml::Number(number) => serde_json::to_value(number).unwrap_or(Value::Null),
        Yaml::String(text) => Value::String(text),
        Yaml::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Yaml::Mapping(entries) => Value::Object(
            entries.into_iter().map(|(key, value)| (text(&yaml_to_json(key)), yaml_to_json(value))).collect(),
        ),
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = yaml_to_json(tagged.value);
            match (name, inner) {
                ("Ref", inner) => Value::Object(Map::from_iter([("Ref".to_string(), inner)])),
                ("GetAtt", Value::String(path)) => {
                    let parts: Vec<Value> = path.splitn(2, '.').map(Value::from).collect();
                    Value::Object(Map::from_iter([("Fn::GetAtt".to_string(), Value::Array(parts))]))
                }
                (other, inner) => Value::Object(Map::from_iter([(format!("Fn::{other}"), inner)])),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SAM: &str = r#"
Globals:
  Function:
    Runtime: provided.al2023
    MemorySize: 256
    Environment:
      Variables:
        TABLE: !Ref Things
Resources:
  Things:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{ AttributeName: id, KeyType: HASH }]
      AttributeDefinitions: [{ AttributeName: id, AttributeType: S }, { AttributeName: at, AttributeType: S }]
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 300
      Policies:
        - Statement:
            - Effect: Allow
              Action: [dynamodb:Query]
              Resource: [!GetAtt Things.Arn, !Sub "${Things.Arn}/index/*"]
      Events:
        List: { Type: HttpApi, Properties: { Method: get, Path: /v1/things } }
        Hourly: { Type: Schedule, Properties: { Schedule: rate(1 hour) } }
"#;

    fn cdk(route_key: &str, index_suffix: &str) -> String {
        serde_json::json!({
            "Resources": {
                "Things": { "Type": "AWS::DynamoDB::Table", "Properties": {
                    "KeySchema": [{ "AttributeName": "id", "KeyType": "HASH" }],
                    "AttributeDefinitions": [
                        { "AttributeName": "at", "AttributeType": "S" },
                        { "AttributeName": "id", "AttributeType": "S" }
                    ]
                }},
                "Fn": { "Type": "AWS::Lambda::Function", "Properties": {
                    "Runtime": "provided.al2023", "MemorySize": 256, "Timeout": 300,
                    "Environment": { "Variables": { "TABLE": { "Ref": "Things" } } },
                    "Role": { "Fn::GetAtt": ["FnRole", "Arn"] }
                }},
                "FnPolicy": { "Type": "AWS::IAM::Policy", "Properties": {
                    "Roles": [{ "Ref": "FnRole" }],
                    "PolicyDocument": { "Statement": [{ "Effect": "Allow", "Action": "dynamodb:Query", "Resource": [
                        { "Fn::GetAtt": ["Things", "Arn"] },
                        { "Fn::Join": ["", [{ "Fn::GetAtt": ["Things", "Arn"] }, index_suffix]] }
                    ]}]}
                }},
                "Integration": { "Type": "AWS::ApiGatewayV2::Integration", "Properties": {
                    "IntegrationUri": { "Fn::GetAtt": ["Fn", "Arn"] }
                }},
                "Route": { "Type": "AWS::ApiGatewayV2::Route", "Properties": {
                    "RouteKey": route_key,
                    "Target": { "Fn::Join": ["", ["integrations/", { "Ref": "Integration" }]] }
                }},
                "Rule": { "Type": "AWS::Events::Rule", "Properties": {
                    "ScheduleExpression": "rate(1 hour)",
                    "Targets": [{ "Arn": { "Fn::GetAtt": ["Fn", "Arn"] }, "Id": "Target0" }]
                }}
            }
        })
        .to_string()
    }

    fn compare(cdk_template: &str) -> Vec<String> {
        let sam = sam_shape(SAM).unwrap();
        differences(&sam, &cloudformation_shape(cdk_template).unwrap())
    }

    #[test]
    fn the_same_stack_written_both_ways_agrees() {
        assert_eq!(compare(&cdk("GET /v1/things", "/index/*")), Vec::<String>::new());
    }

    #[test]
    fn a_moved_route_and_a_widened_grant_are_reported() {
        let found = compare(&cdk("GET /v1/thing", "/*"));
        assert_eq!(
            found,
            [
                "permissions Fn: only in template.yaml [Allow dynamodb:Query on ${Things.Arn}/index/*], only in the CDK \
                 app [Allow dynamodb:Query on ${Things.Arn}/*]",
                "routes GET /v1/thing: only in the CDK app",
                "routes GET /v1/things: only in template.yaml",
            ]
        );
    }

    #[test]
    fn a_changed_key_is_reported() {
        let changed = cdk("GET /v1/things", "/index/*").replace("\"HASH\"", "\"RANGE\"");
        let found = compare(&changed);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("tables Things: "), "{found:?}");
    }

    const SAM_SOCKETS: &str = r#"
Resources:
  Log:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{ AttributeName: id, KeyType: HASH }]
  Socket:
    Type: AWS::ApiGatewayV2::Api
    Properties: { Name: s, ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.event }
  SocketIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Socket
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Handler.Arn}/invocations"
  Connect:
    Type: AWS::ApiGatewayV2::Route
    Properties: { ApiId: !Ref Socket, RouteKey: $connect, Target: !Sub "integrations/${SocketIntegration}" }
  Handler:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 30
      Policies:
        - Statement:
            - { Effect: Allow, Action: [dynamodb:GetRecords], Resource: !GetAtt Log.StreamArn }
      Events:
        Changes:
          Type: DynamoDB
          Properties: { Stream: !GetAtt Log.StreamArn, StartingPosition: LATEST, BatchSize: 100 }
"#;

    fn cdk_sockets(batch: u32, route_to: &str) -> String {
        serde_json::json!({
            "Resources": {
                "Log": { "Type": "AWS::DynamoDB::Table", "Properties": {
                    "KeySchema": [{ "AttributeName": "id", "KeyType": "HASH" }]
                }},
                "Socket": { "Type": "AWS::ApiGatewayV2::Api", "Properties": {
                    "Name": "s", "ProtocolType": "WEBSOCKET", "RouteSelectionExpression": "$request.body.event"
                }},
                "SocketIntegration": { "Type": "AWS::ApiGatewayV2::Integration", "Properties": {
                    "ApiId": { "Ref": "Socket" }, "IntegrationType": "AWS_PROXY",
                    "IntegrationUri": { "Fn::Sub": format!(
                        "arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/functions/${{{route_to}.Arn}}/invocations"
                    )}
                }},
                "Connect": { "Type": "AWS::ApiGatewayV2::Route", "Properties": {
                    "ApiId": { "Ref": "Socket" }, "RouteKey": "$connect",
                    "Target": { "Fn::Sub": "integrations/${SocketIntegration}" }
                }},
                "Handler": { "Type": "AWS::Lambda::Function", "Properties": {
                    "Timeout": 30, "Role": { "Fn::GetAtt": ["HandlerRole", "Arn"] }
                }},
                "HandlerPolicy": { "Type": "AWS::IAM::Policy", "Properties": {
                    "Roles": [{ "Ref": "HandlerRole" }],
                    "PolicyDocument": { "Statement": [{ "Effect": "Allow", "Action": "dynamodb:GetRecords",
                        "Resource": { "Fn::GetAtt": ["Log", "StreamArn"] } }] }
                }},
                "Mapping": { "Type": "AWS::Lambda::EventSourceMapping", "Properties": {
                    "FunctionName": { "Ref": "Handler" }, "EventSourceArn": { "Fn::GetAtt": ["Log", "StreamArn"] },
                    "StartingPosition": "LATEST", "BatchSize": batch
                }}
            }
        })
        .to_string()
    }

    #[test]
    fn the_socket_api_its_routes_and_stream_consumers_are_compared() {
        let sam = sam_shape(SAM_SOCKETS).unwrap();
        assert_eq!(sam["routes"]["$connect"], "Handler");
        assert_eq!(sam["streams"]["Handler ${Log.StreamArn}"]["BatchSize"], 100);
        assert!(sam["websocket"].contains_key("SocketIntegration"));
        let same = cloudformation_shape(&cdk_sockets(100, "Handler")).unwrap();
        assert_eq!(differences(&sam, &same), Vec::<String>::new());
        let drifted = cloudformation_shape(&cdk_sockets(10, "Other")).unwrap();
        let found = differences(&sam, &drifted);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found.iter().any(|line| line.starts_with("routes $connect: template.yaml has \"Handler\"")),
            "{found:?}"
        );
        assert!(found.iter().any(|line| line.starts_with("streams Handler ${Log.StreamArn}")), "{found:?}");
        assert!(found.iter().any(|line| line.starts_with("websocket SocketIntegration")), "{found:?}");
    }
}
