//! The OpenAPI 3.1 document of the whole API. Every body, query and error schema is generated
//! from the Rust types the handlers use (schemars reads their serde attributes, so a renamed or
//! added field changes the document); this file only says which type goes with which route and
//! status. Tests keep it honest: the routes must equal `template.yaml`'s, the committed
//! `openapi.json` must equal this output, and Schemathesis checks live responses against it.

use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};
use shared::api::{limits, memories, messages, sessions};
use shared::domain::{Context, LimitsView, Memory, Message, Page, Session, UsageReport};
use shared::error::ErrorBody;

/// Builds the document.
pub fn document() -> Value {
    // ErrorBody is referenced by every error response.
    let mut spec = Spec::new();
    spec.responses.subschema_for::<ErrorBody>();
    sessions_routes(&mut spec);
    messages_routes(&mut spec);
    memories_routes(&mut spec);
    limits_routes(&mut spec);
    // What a created resource's id unlocks (clients and Schemathesis's stateful phase follow these).
    spec.links(("/v1/sessions", "post", "201"), "/v1/sessions/{id}", &[("id", "$response.body#/id")]);
    let appended = [("id", "$request.path.id"), ("seq", "$response.body#/seq")];
    spec.links(("/v1/sessions/{id}/messages", "post", "201"), "/v1/sessions/{id}/messages/{seq}", &appended);
    spec.links(("/v1/memories", "post", "201"), "/v1/memories/{id}", &[("id", "$response.body#/id")]);
    spec.finish()
}

fn sessions_routes(spec: &mut Spec) {
    let session = "/v1/sessions/{id}";
    spec.op("post", "/v1/sessions", "createSession", "Create a session")
        .body::<sessions::CreateSession>()
        .ok::<Session>(201, "The new session")
        .errors(&[413]);
    spec.op("get", "/v1/sessions", "listSessions", "List sessions, newest activity first")
        .query::<sessions::ListSessions>()
        .ok::<Page<Session>>(200, "One page of sessions");
    spec.op("get", session, "getSession", "Get a session, optionally with its latest messages")
        .query::<sessions::GetSession>()
        .ok_any::<Session, sessions::SessionWithMessages>(200, "The session (with `messages` when asked)");
    spec.op("patch", session, "updateSession", "Rename, change status, metadata, settings or archive")
        .body::<sessions::UpdateSession>()
        .ok::<Session>(200, "The updated session")
        .errors(&[409, 413]);
    spec.op("delete", session, "deleteSession", "Soft-delete a session").empty(204, "Deleted");
    spec.op("post", "/v1/sessions/{id}/archive", "archiveSession", "Archive a session")
        .ok::<Session>(200, "The archived session");
    spec.op("post", "/v1/sessions/{id}/unarchive", "unarchiveSession", "Unarchive a session")
        .ok::<Session>(200, "The session");
}

fn messages_routes(spec: &mut Spec) {
    let messages_path = "/v1/sessions/{id}/messages";
    let message = "/v1/sessions/{id}/messages/{seq}";
    spec.op("post", messages_path, "appendMessage", "Append a message (idempotent with a key)")
        .idempotency_key()
        .body::<messages::AppendMessage>()
        .appended::<Message>()
        .errors(&[409, 413]);
    spec.op("get", messages_path, "listMessages", "Read the log: incremental sync with after_seq, paging")
        .query::<messages::ListMessages>()
        .ok::<messages::MessageList>(200, "Messages in seq order");
    spec.op("post", "/v1/sessions/{id}/messages/batch", "appendMessages", "Append up to 20 messages atomically")
        .idempotency_key()
        .body::<messages::AppendBatch>()
        .appended::<messages::MessageBatch>()
        .errors(&[409, 413]);
    spec.op("get", message, "getMessage", "Get one message").ok::<Message>(200, "The message");
    spec.op("patch", message, "editMessage", "Edit a message's content")
        .body::<messages::EditMessage>()
        .ok::<Message>(200, "The edited message")
        .errors(&[403, 409, 413]);
    spec.op("delete", message, "deleteMessage", "Delete a message").empty(204, "Deleted").errors(&[409]);
    spec.op("post", "/v1/sessions/{id}/forget-recent", "forgetRecent", "Delete the latest N messages")
        .body::<messages::ForgetRecent>()
        .ok::<messages::ForgetRecentResult>(200, "How many were deleted")
        .errors(&[409, 413]);
    spec.op("post", "/v1/sessions/{id}/new-scene", "newScene", "Hide all but the latest N messages")
        .body::<messages::NewScene>()
        .ok::<messages::NewSceneResult>(200, "How many were hidden")
        .errors(&[409, 413]);
    spec.op("post", "/v1/sessions/{id}/reset", "resetSession", "Clear the session's messages and memories")
        .body::<messages::Reset>()
        .ok::<messages::ResetResult>(200, "How much was cleared")
        .errors(&[409, 413]);
    spec.op("get", "/v1/sessions/{id}/context", "getContext", "The assembled LLM context")
        .query::<memories::ContextQuery>()
        .ok::<Context>(200, "Settings, ranked memories and recent messages within the token budget");
}

fn memories_routes(spec: &mut Spec) {
    let memory = "/v1/memories/{id}";
    spec.op("post", "/v1/memories", "addMemory", "Add a memory (an identical one is returned instead)")
        .body::<memories::CreateMemory>()
        .ok::<Memory>(201, "The new memory")
        .ok::<Memory>(200, "An identical memory already existed")
        .errors(&[409, 413]);
    spec.op("get", "/v1/memories", "listMemories", "List memories, most important first")
        .query::<memories::ListMemories>()
        .ok::<memories::MemoryList>(200, "One page of memories");
    spec.op("delete", "/v1/memories", "deleteMemories", "Delete all memories of a scope")
        .query::<memories::DeleteMemories>()
        .ok::<memories::MemoriesDeleted>(200, "How many were deleted");
    spec.op("get", memory, "getMemory", "Get a memory").ok::<Memory>(200, "The memory");
    spec.op("patch", memory, "updateMemory", "Change a memory's content, type or importance")
        .body::<memories::UpdateMemory>()
        .ok::<Memory>(200, "The updated memory")
        .errors(&[409, 413]);
    spec.op("delete", memory, "deleteMemory", "Delete a memory").ok::<memories::MemoryDeleted>(200, "Deleted");
}

fn limits_routes(spec: &mut Spec) {
    let admin = "/v1/admin/users/{user_id}";
    spec.op("get", "/v1/limits", "getLimits", "The caller's quota, subscription and time zone")
        .ok::<LimitsView>(200, "Current limits");
    spec.op("patch", "/v1/limits/profile", "updateProfile", "Set the time zone the daily quota follows")
        .body::<limits::UpdateProfile>()
        .ok::<LimitsView>(200, "Limits under the new time zone")
        .errors(&[409, 413]);
    spec.op("get", "/v1/usage", "getUsage", "Token and cost usage per day and model")
        .query::<limits::UsageQuery>()
        .ok::<UsageReport>(200, "Usage in the range");
    spec.op("put", &format!("{admin}/subscription"), "putSubscription", "Grant a subscription (admin)")
        .body::<limits::PutSubscription>()
        .ok::<LimitsView>(200, "The user's limits")
        .errors(&[403, 413]);
    spec.op("delete", &format!("{admin}/subscription"), "deleteSubscription", "End a subscription (admin)")
        .ok::<LimitsView>(200, "The user's limits")
        .errors(&[403]);
    spec.op("get", &format!("{admin}/limits"), "getUserLimits", "A user's limits (admin)")
        .ok::<LimitsView>(200, "The user's limits")
        .errors(&[403]);
}

/// Every route in the document as `METHOD /path`, sorted.
pub fn routes(document: &Value) -> Vec<String> {
    let mut routes: Vec<String> = document["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            item.as_object().into_iter().flatten().map(move |(method, _)| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    routes.sort();
    routes
}

/// A human-readable page of the document: every operation with its parameters, body and
/// responses, the schemas as JSON. Self-contained (no scripts, no outside assets).
pub fn docs_page(document: &Value) -> String {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>chat-backend API</title><style>\
         body{font:15px/1.5 system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em}\
         code,pre{font:13px ui-monospace,monospace}pre{background:#f5f5f5;padding:.6em;overflow:auto}\
         h3{margin-top:2em}td,th{padding:.2em .6em;text-align:left;vertical-align:top}\
         .m{font-weight:bold;text-transform:uppercase}</style></head><body>",
    );
    html.push_str(&format!(
        "<h1>chat-backend API</h1><p>{}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI 3.1).</p>",
        escape(document["info"]["description"].as_str().unwrap_or_default())
    ));
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            html.push_str(&format!(
                "<h3><span class=\"m\">{method}</span> <code>{}</code></h3><p>{}</p>",
                escape(path),
                escape(operation["summary"].as_str().unwrap_or_default())
            ));
            let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
            if !parameters.is_empty() {
                html.push_str("<table><tr><th>parameter</th><th>in</th><th>schema</th></tr>");
                for parameter in parameters {
                    html.push_str(&format!(
                        "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td></tr>",
                        escape(parameter["name"].as_str().unwrap_or_default()),
                        escape(parameter["in"].as_str().unwrap_or_default()),
                        escape(&parameter["schema"].to_string())
                    ));
                }
                html.push_str("</table>");
            }
            if let Some(schema) = operation.pointer("/requestBody/content/application~1json/schema") {
                html.push_str(&format!("<p>Body: <code>{}</code></p>", escape(&schema_name(schema))));
            }
            html.push_str("<table><tr><th>status</th><th>meaning</th><th>body</th></tr>");
            for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                let body = response.pointer("/content/application~1json/schema").map(schema_name).unwrap_or_default();
                html.push_str(&format!(
                    "<tr><td>{status}</td><td>{}</td><td><code>{}</code></td></tr>",
                    escape(response["description"].as_str().unwrap_or_default()),
                    escape(&body)
                ));
            }
            html.push_str("</table>");
        }
    }
    html.push_str("<h2>Schemas</h2>");
    for (name, schema) in document["components"]["schemas"].as_object().into_iter().flatten() {
        let text = serde_json::to_string_pretty(schema).unwrap_or_default();
        html.push_str(&format!("<h3 id=\"{0}\">{0}</h3><pre>{1}</pre>", escape(name), escape(&text)));
    }
    html.push_str("</body></html>");
    html
}

fn schema_name(schema: &Value) -> String {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference.rsplit('/').next().unwrap_or_default().to_owned(),
        None => schema.to_string().replace("#/components/schemas/", ""),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

struct Spec {
    requests: SchemaGenerator,
    responses: SchemaGenerator,
    paths: Map<String, Value>,
}

impl Spec {
    fn new() -> Self {
        let settings = SchemaSettings::draft2020_12().with(|settings| {
            settings.definitions_path = "/components/schemas".into();
        });
        Self {
            requests: settings.clone().for_deserialize().into_generator(),
            responses: settings.for_serialize().into_generator(),
            paths: Map::new(),
        }
    }

    fn op<'a>(&'a mut self, method: &str, path: &str, operation_id: &str, summary: &str) -> Operation<'a> {
        let mut parameters = Vec::new();
        for name in path_parameters(path) {
            parameters.push(path_parameter(name));
        }
        let mut responses = Map::new();
        for status in [400, 401, 404, 429, 500, 503] {
            responses.insert(status.to_string(), error_response(status));
        }
        let operation = json!({
            "operationId": operation_id,
            "summary": summary,
            "tags": [path.split('/').nth(2).unwrap_or("api")],
            "parameters": parameters,
            "responses": responses,
        });
        let item = self.paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        item[method] = operation;
        Operation { spec: self, path: path.to_owned(), method: method.to_owned() }
    }

    /// Links the `from` response to every operation under `prefix` whose path parameters the
    /// given expressions supply.
    fn links(&mut self, from: (&str, &str, &str), prefix: &str, parameters: &[(&str, &str)]) {
        let mut links = Map::new();
        for (path, item) in &self.paths {
            let supplied = path_parameters(path).all(|name| parameters.iter().any(|(given, _)| *given == name));
            if !path.starts_with(prefix) || !supplied {
                continue;
            }
            for operation in item.as_object().into_iter().flat_map(Map::values) {
                let used: Map<String, Value> = parameters
                    .iter()
                    .filter(|(name, _)| path_parameters(path).any(|wanted| wanted == *name))
                    .map(|(name, expression)| ((*name).to_owned(), Value::from(*expression)))
                    .collect();
                let id = operation["operationId"].as_str().unwrap_or_default().to_owned();
                links.insert(id.clone(), json!({ "operationId": id, "parameters": used }));
            }
        }
        let (path, method, status) = from;
        self.paths[path][method]["responses"][status]["links"] = Value::Object(links);
    }

    fn finish(mut self) -> Value {
        let mut schemas = self.requests.take_definitions(true);
        for (name, schema) in self.responses.take_definitions(true) {
            // A type read and written (an enum, a newtype) has one schema; a request and a response
            // type may not share a name with different shapes.
            match schemas.get(&name) {
                Some(existing) if *existing != schema => {
                    schemas.insert(format!("{name}Response"), schema);
                }
                _ => {
                    schemas.insert(name, schema);
                }
            }
        }
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "chat-backend",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Sessions, messages, memories and limits for AI chat apps. \
                    Every request needs `Authorization: Bearer <JWT>` or `Authorization: tma <Telegram initData>`; \
                    errors are JSON `ErrorBody` objects; every response has an `x-request-id` header.",
            },
            "servers": [{ "url": "http://127.0.0.1:3000", "description": "scripts/dev.sh" }],
            "security": [{ "bearer": [] }, { "telegram": [] }],
            "paths": self.paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
                    "telegram": {
                        "type": "apiKey",
                        "in": "header",
                        "name": "Authorization",
                        "description": "`tma <initData>`: a Telegram Mini App's raw init data, signed by the bot.",
                    },
                },
            },
        })
    }
}

/// One operation being described; each call adds to it in the document.
struct Operation<'a> {
    spec: &'a mut Spec,
    path: String,
    method: String,
}

impl Operation<'_> {
    fn value(&mut self) -> &mut Value {
        &mut self.spec.paths[&self.path][&self.method]
    }

    fn body<T: JsonSchema>(mut self) -> Self {
        let schema = self.spec.requests.subschema_for::<T>().to_value();
        self.value()["requestBody"] = json!({
            "required": false,
            "description": "JSON; an empty body reads as `{}`.",
            "content": { "application/json": { "schema": schema } },
        });
        self
    }

    /// Each field of `T` (a query DTO) as an optional query parameter.
    fn query<T: JsonSchema>(mut self) -> Self {
        let reference = self.spec.requests.subschema_for::<T>().to_value();
        let name = reference["$ref"].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_owned();
        // The DTO's fields become parameters; the DTO itself is not a schema of the API.
        let definition = self.spec.requests.definitions_mut().remove(&name).unwrap_or_default();
        let properties = definition["properties"].clone();
        let parameters: Vec<Value> = properties
            .as_object()
            .into_iter()
            .flatten()
            .map(|(field, schema)| {
                let mut parameter =
                    json!({ "name": field, "in": "query", "required": false, "schema": not_null(schema) });
                if let Some(description) = schema.get("description") {
                    parameter["description"] = description.clone();
                }
                parameter
            })
            .collect();
        if let Some(list) = self.value()["parameters"].as_array_mut() {
            list.extend(parameters);
        }
        self
    }

    fn idempotency_key(mut self) -> Self {
        let header = json!({
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": "A retry with the same key and body returns the first result (200, `Idempotent-Replayed: true`) \
                and appends nothing; the same key with a different body is 409.",
            "schema": { "type": "string", "minLength": 1, "maxLength": 128 },
        });
        if let Some(list) = self.value()["parameters"].as_array_mut() {
            list.push(header);
        }
        self
    }

    fn ok<T: JsonSchema>(mut self, status: u16, description: &str) -> Self {
        let schema = self.spec.responses.subschema_for::<T>().to_value();
        self.value()["responses"][status.to_string()] = json_response(description, schema, request_id_header());
        self
    }

    fn ok_any<A: JsonSchema, B: JsonSchema>(mut self, status: u16, description: &str) -> Self {
        let schema = json!({ "anyOf": [
            self.spec.responses.subschema_for::<A>().to_value(),
            self.spec.responses.subschema_for::<B>().to_value(),
        ]});
        self.value()["responses"][status.to_string()] = json_response(description, schema, request_id_header());
        self
    }

    /// 201 for a new append, 200 for a replayed retry; both carry the daily quota headers.
    fn appended<T: JsonSchema>(mut self) -> Self {
        let schema = self.spec.responses.subschema_for::<T>().to_value();
        let mut headers = quota_headers();
        headers.extend(request_id_header());
        let mut replay_headers = headers.clone();
        replay_headers.insert(
            "Idempotent-Replayed".into(),
            json!({ "required": true, "schema": { "type": "string", "const": "true" } }),
        );
        self.value()["responses"]["201"] = json_response("Appended", schema.clone(), headers);
        self.value()["responses"]["200"] = json_response(
            "A retry with the same Idempotency-Key: the first result, nothing appended",
            schema,
            replay_headers,
        );
        if let Some(headers) = self.value()["responses"]["429"]["headers"].as_object_mut() {
            headers.extend(optional(quota_headers()));
        }
        self
    }

    fn empty(mut self, status: u16, description: &str) -> Self {
        self.value()["responses"][status.to_string()] =
            json!({ "description": description, "headers": request_id_header() });
        self
    }

    fn errors(mut self, statuses: &[u16]) -> Self {
        for status in statuses {
            self.value()["responses"][status.to_string()] = error_response(*status);
        }
        self
    }
}

fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

fn path_parameter(name: &str) -> Value {
    let (schema, description) = match name {
        "id" => (json!({ "type": "string", "format": "uuid" }), "The session's (or memory's) id"),
        "seq" => (json!({ "type": "integer", "minimum": 1 }), "The message's position in the session, from 1"),
        _ => (json!({ "type": "string", "minLength": 1, "maxLength": 128 }), "A user id"),
    };
    json!({ "name": name, "in": "path", "required": true, "schema": schema, "description": description })
}

fn error_response(status: u16) -> Value {
    let description = match status {
        400 => "invalid_input: a parameter or body field is malformed (`field` names it)",
        401 => "unauthorized: missing, malformed, expired or wrongly signed credentials",
        403 => {
            "forbidden: the caller may not do this (an admin route without an admin token, checked before the body; editing a message that is not a `user` message); `message` says which"
        }
        404 => "not_found: no such resource for this caller (another user's ids look the same)",
        409 => "conflict or session_closed: the change clashes with the current state",
        413 => "payload_too_large: the body or a field is over its limit",
        429 => "rate_limit or daily_limit_exceeded: wait `Retry-After` seconds",
        500 => "internal: a bug; the body is opaque and the cause is logged",
        _ => "service_unavailable: DynamoDB is unreachable or throttling; retry after `Retry-After`",
    };
    let mut headers = request_id_header();
    if matches!(status, 429 | 503) {
        headers.insert(
            "Retry-After".into(),
            json!({ "required": true, "schema": { "type": "string", "pattern": "^[0-9]+$" } }),
        );
    }
    json_response(description, json!({ "$ref": "#/components/schemas/ErrorBody" }), headers)
}

fn json_response(description: &str, schema: Value, headers: Map<String, Value>) -> Value {
    json!({
        "description": description,
        "headers": headers,
        "content": { "application/json": { "schema": schema } },
    })
}

fn request_id_header() -> Map<String, Value> {
    Map::from_iter([(
        "x-request-id".to_owned(),
        json!({ "required": true, "description": "The request's id (API Gateway's in AWS)", "schema": { "type": "string" } }),
    )])
}

fn quota_headers() -> Map<String, Value> {
    let integer = |description: &str| json!({ "required": true, "description": description, "schema": { "type": "string", "pattern": "^-?[0-9]+$" } });
    Map::from_iter([
        ("X-RateLimit-Limit".to_owned(), integer("Messages allowed today (-1: unlimited)")),
        ("X-RateLimit-Remaining".to_owned(), integer("Messages left today (-1: unlimited)")),
        ("X-RateLimit-Reset".to_owned(), integer("When the quota resets, Unix seconds")),
    ])
}

fn optional(headers: Map<String, Value>) -> Map<String, Value> {
    headers
        .into_iter()
        .map(|(name, mut header)| {
            header["required"] = Value::Bool(false);
            (name, header)
        })
        .collect()
}

/// A query parameter's schema without the `null` an `Option` adds: absent is how it is omitted.
fn not_null(schema: &Value) -> Value {
    let mut schema = schema.clone();
    if let Some(types) = schema.get_mut("type").and_then(Value::as_array_mut) {
        types.retain(|kind| kind != "null");
        if types.len() == 1 {
            schema["type"] = types[0].clone();
        }
    }
    if let Some(choices) = schema.get("anyOf").and_then(Value::as_array) {
        let kept: Vec<Value> =
            choices.iter().filter(|choice| choice.get("type") != Some(&json!("null"))).cloned().collect();
        if kept.len() == 1 {
            return kept[0].clone();
        }
    }
    schema
}
