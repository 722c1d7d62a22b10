#!/usr/bin/env python3
"""Writes the sample API Gateway HTTP API (v2) events in events/, one per route and outcome.

Each file is named <operation>-<status>.json; tests/tests/api/events.rs replays every file through
the Lambda request conversion and asserts that status. Tokens are HS256 with the local dev secret
(sub `demo-user`, valid until 2100). Ids of the demo session and memory read DEMO_SESSION / DEMO_MEMORY
(the same constants in tools/kit/src/events.rs); the test and the benchmark swap in real ones. Re-run after changing the list below: python3 scripts/gen-events.py
"""
import base64, hashlib, hmac, json, pathlib

DEV_SECRET = b"local-dev-secret-not-for-production-0123456789"
DEMO_SESSION = "00000000-0000-4000-8000-000000000001"
OTHER_SESSION = "00000000-0000-4000-8000-0000000000ff"
DEMO_MEMORY = "00000000-0000-4000-8000-00000000000a"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(sub="demo-user", exp=4102444800, secret=DEV_SECRET, role=None):
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = {"sub": sub, "iat": 1790000000, "exp": exp}
    if role:
        body["role"] = role
    claims = b64(json.dumps(body, separators=(",", ":")).encode())
    signature = b64(hmac.new(secret, f"{header}.{claims}".encode(), hashlib.sha256).digest())
    return f"{header}.{claims}.{signature}"


def event(method, route, path, name, body=None, query="", auth=True, headers=None, tok=None):
    h = {"content-type": "application/json", "user-agent": "cargo-lambda"}
    if auth:
        h["authorization"] = f"Bearer {tok or token()}"
    h.update(headers or {})
    params = {}
    for part_route, part_path in zip(route.split("/"), path.split("/")):
        if part_route.startswith("{"):
            params[part_route.strip("{}")] = part_path
    ev = {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": h,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "cargo-lambda"},
            "requestId": f"event-{name}",
            "routeKey": f"{method} {route}",
            "stage": "$default",
            "time": "21/Nov/2026:00:00:00 +0000",
            "timeEpoch": 1795219200000,
        },
        "isBase64Encoded": False,
    }
    if query:
        ev["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    if params:
        ev["pathParameters"] = params
    if body is not None:
        ev["body"] = body if isinstance(body, str) else json.dumps(body)
    return ev


S = "/v1/sessions"
D = f"{S}/{DEMO_SESSION}"
O = f"{S}/{OTHER_SESSION}"
M = "/v1/memories"
A_SUB = "/v1/admin/users/{user_id}/subscription"
EVENTS = {
    "sessions": [
        # Characters: the seed has `luna` (fantasy, tag theme/magic, a greeting).
        ("character-create-201", event("POST", "/v1/admin/characters", "/v1/admin/characters", "character-create-201", {"id": "kai", "name": "Kai", "description": "An explorer", "greeting": "Ready for an adventure?", "genre": "adventure", "tags": [{"category": "theme", "name": "travel"}], "system_prompt": "You are Kai, a cheerful explorer."}, tok=token("demo-admin", role="admin"))),
        ("character-create-403", event("POST", "/v1/admin/characters", "/v1/admin/characters", "character-create-403", {"name": "Mine"})),
        ("character-create-400", event("POST", "/v1/admin/characters", "/v1/admin/characters", "character-create-400", {"name": "X", "content_rating": "pg13"}, tok=token("demo-admin", role="admin"))),
        ("characters-list-200", event("GET", "/v1/characters", "/v1/characters", "characters-list-200", query="genre=fantasy&sort=popular&limit=20")),
        ("characters-list-400", event("GET", "/v1/characters", "/v1/characters", "characters-list-400", query="rating=pg")),
        ("characters-search-200", event("GET", "/v1/characters/search", "/v1/characters/search", "characters-search-200", query="q=LUNA")),
        ("character-get-200", event("GET", "/v1/characters/{id}", "/v1/characters/luna", "character-get-200")),
        ("character-get-404", event("GET", "/v1/characters/{id}", "/v1/characters/nobody", "character-get-404")),
        ("character-session-200", event("GET", "/v1/characters/{id}/session", "/v1/characters/luna/session", "character-session-200")),
        ("tags-200", event("GET", "/v1/tags", "/v1/tags", "tags-200")),
        ("tags-category-200", event("GET", "/v1/tags/{category}", "/v1/tags/theme", "tags-category-200")),
        ("character-update-200", event("PATCH", "/v1/admin/characters/{id}", "/v1/admin/characters/luna", "character-update-200", {"access_type": "premium"}, tok=token("demo-admin", role="admin"))),
        ("character-deactivate-200", event("DELETE", "/v1/admin/characters/{id}", "/v1/admin/characters/luna", "character-deactivate-200", tok=token("demo-admin", role="admin"))),
        ("create-character-404", event("POST", S, S, "create-character-404", {"character_id": "nobody"})),
        ("create-201", event("POST", S, S, "create-201", {"title": "Trip to Lisbon", "metadata": {"character": "guide"}, "settings": {"relationship_type": "friend"}})),
        ("create-400", event("POST", S, S, "create-400", {"title": ""})),
        ("create-401", event("POST", S, S, "create-401", {"title": "x"}, auth=False)),
        ("create-413", event("POST", S, S, "create-413", {"settings": {"blob": "x" * 5000}})),
        ("list-200", event("GET", S, S, "list-200", query="limit=10")),
        ("list-400", event("GET", S, S, "list-400", query="limit=0")),
        ("get-200", event("GET", f"{S}/{{id}}", D, "get-200", query="include=messages&messages_limit=10")),
        ("get-400", event("GET", f"{S}/{{id}}", f"{S}/not-a-uuid", "get-400")),
        ("get-404", event("GET", f"{S}/{{id}}", O, "get-404")),
        ("update-200", event("PATCH", f"{S}/{{id}}", D, "update-200", {"title": "Renamed", "status": "locked"})),
        ("update-400", event("PATCH", f"{S}/{{id}}", D, "update-400", {"status": "paused"})),
        ("archive-200", event("POST", f"{S}/{{id}}/archive", f"{D}/archive", "archive-200")),
        ("unarchive-200", event("POST", f"{S}/{{id}}/unarchive", f"{D}/unarchive", "unarchive-200")),
        ("delete-204", event("DELETE", f"{S}/{{id}}", D, "delete-204")),
        ("delete-404", event("DELETE", f"{S}/{{id}}", O, "delete-404")),
    ],
    "messages": [
        ("append-201", event("POST", f"{S}/{{id}}/messages", f"{D}/messages", "append-201", {"role": "user", "content": "Hi! Where should we start?", "usage": {"input_tokens": 12, "output_tokens": 0, "model": "gpt-4o-mini"}}, headers={"idempotency-key": "event-append-201"})),
        ("append-400", event("POST", f"{S}/{{id}}/messages", f"{D}/messages", "append-400", {"role": "narrator", "content": "?"})),
        ("append-404", event("POST", f"{S}/{{id}}/messages", f"{O}/messages", "append-404", {"role": "user", "content": "hello?"})),
        ("append-blank-400", event("POST", f"{S}/{{id}}/messages", f"{D}/messages", "append-blank-400", {"role": "user", "content": "   "})),
        ("append-413", event("POST", f"{S}/{{id}}/messages", f"{D}/messages", "append-413", {"role": "user", "content": "x" * 33000})),
        ("batch-201", event("POST", f"{S}/{{id}}/messages/batch", f"{D}/messages/batch", "batch-201", {"messages": [{"role": "user", "content": "Tell me a joke"}, {"role": "assistant", "content": "Why did the lambda go cold? It lost its connection.", "reply_to": 4}]})),
        ("list-200", event("GET", f"{S}/{{id}}/messages", f"{D}/messages", "list-200", query="after_seq=0&limit=50")),
        ("changes-200", event("GET", f"{S}/{{id}}/changes", f"{D}/changes", "changes-200", query="after_rev=0&limit=100")),
        ("changes-400", event("GET", f"{S}/{{id}}/changes", f"{D}/changes", "changes-400", query="after_rev=-1")),
        ("list-400", event("GET", f"{S}/{{id}}/messages", f"{D}/messages", "list-400", query="limit=500")),
        ("get-200", event("GET", f"{S}/{{id}}/messages/{{seq}}", f"{D}/messages/1", "get-200")),
        ("get-404", event("GET", f"{S}/{{id}}/messages/{{seq}}", f"{D}/messages/999", "get-404")),
        ("edit-200", event("PATCH", f"{S}/{{id}}/messages/{{seq}}", f"{D}/messages/1", "edit-200", {"content": "Hi! (edited)"})),
        ("edit-403", event("PATCH", f"{S}/{{id}}/messages/{{seq}}", f"{D}/messages/2", "edit-403", {"content": "rewriting the assistant"})),
        ("delete-204", event("DELETE", f"{S}/{{id}}/messages/{{seq}}", f"{D}/messages/3", "delete-204")),
        ("forget-recent-200", event("POST", f"{S}/{{id}}/forget-recent", f"{D}/forget-recent", "forget-recent-200", {"count": 2})),
        ("new-scene-200", event("POST", f"{S}/{{id}}/new-scene", f"{D}/new-scene", "new-scene-200", {"messages_to_keep": 1})),
        ("reset-200", event("POST", f"{S}/{{id}}/reset", f"{D}/reset", "reset-200")),
        ("context-200", event("GET", f"{S}/{{id}}/context", f"{D}/context", "context-200", query="recent=8&max_tokens=2000")),
        ("context-400", event("GET", f"{S}/{{id}}/context", f"{D}/context", "context-400", query="max_tokens=0")),
        ("reply-201", event("POST", f"{S}/{{id}}/replies", f"{D}/replies", "reply-201", {"content": "What should we see first?", "max_tokens": 32}, headers={"idempotency-key": "event-reply-201"})),
        ("reply-400", event("POST", f"{S}/{{id}}/replies", f"{D}/replies", "reply-400", {"content": "Hi", "model": "gpt-9"})),
        ("reply-404", event("POST", f"{S}/{{id}}/replies", f"{O}/replies", "reply-404", {"content": "Hi"})),
        ("regenerate-201", event("POST", f"{S}/{{id}}/messages/{{seq}}/regenerate", f"{D}/messages/4/regenerate", "regenerate-201", {"temperature": 0.9})),
        ("regenerate-409", event("POST", f"{S}/{{id}}/messages/{{seq}}/regenerate", f"{D}/messages/3/regenerate", "regenerate-409", {})),
        ("cancel-409", event("POST", f"{S}/{{id}}/messages/{{seq}}/cancel", f"{D}/messages/3/cancel", "cancel-409")),
        ("variants-200", event("GET", f"{S}/{{id}}/messages/{{seq}}/variants", f"{D}/messages/4/variants", "variants-200")),
        ("variants-404", event("GET", f"{S}/{{id}}/messages/{{seq}}/variants", f"{D}/messages/999/variants", "variants-404")),
    ],
    "memories": [
        ("create-201", event("POST", M, M, "create-201", {"content": "Prefers short answers in the morning", "memory_type": "preference", "importance": 7})),
        ("create-200", event("POST", M, M, "create-200", {"content": "Has a cat named Miso", "memory_type": "fact"})),
        ("create-400", event("POST", M, M, "create-400", {"content": "x", "memory_type": "opinion"})),
        ("create-session-201", event("POST", M, M, "create-session-201", {"content": "Felt nervous about the exam", "memory_type": "emotion", "session_id": DEMO_SESSION})),
        ("list-200", event("GET", M, M, "list-200", query="min_importance=3&limit=20")),
        ("list-session-200", event("GET", M, M, "list-session-200", query=f"session_id={DEMO_SESSION}&include_global=true")),
        ("list-400", event("GET", M, M, "list-400", query="min_importance=11")),
        ("get-200", event("GET", f"{M}/{{id}}", f"{M}/{DEMO_MEMORY}", "get-200")),
        ("get-404", event("GET", f"{M}/{{id}}", f"{M}/00000000-0000-4000-8000-0000000000fe", "get-404")),
        ("update-200", event("PATCH", f"{M}/{{id}}", f"{M}/{DEMO_MEMORY}", "update-200", {"importance": 9})),
        ("update-400", event("PATCH", f"{M}/{{id}}", f"{M}/{DEMO_MEMORY}", "update-400", {})),
        ("delete-200", event("DELETE", f"{M}/{{id}}", f"{M}/{DEMO_MEMORY}", "delete-200")),
        ("delete-all-200", event("DELETE", M, M, "delete-all-200", query=f"session_id={DEMO_SESSION}")),
    ],
    "limits": [
        ("get-200", event("GET", "/v1/limits", "/v1/limits", "get-200")),
        ("profile-200", event("PATCH", "/v1/limits/profile", "/v1/limits/profile", "profile-200", {"timezone": "Europe/Lisbon"})),
        ("profile-400", event("PATCH", "/v1/limits/profile", "/v1/limits/profile", "profile-400", {"timezone": "Mars/Olympus"})),
        ("usage-200", event("GET", "/v1/usage", "/v1/usage", "usage-200", query="from=2026-11-01&to=2026-11-21")),
        ("usage-400", event("GET", "/v1/usage", "/v1/usage", "usage-400", query="from=2026-11-21&to=2026-11-01")),
        ("admin-subscription-200", event("PUT", A_SUB, "/v1/admin/users/demo-user/subscription", "admin-subscription-200", {"plan": "pro", "start_at": "2026-11-01T00:00:00Z", "end_at": "2099-12-01T00:00:00Z"}, tok=token("demo-admin", role="admin"))),
        ("admin-subscription-403", event("PUT", A_SUB, "/v1/admin/users/demo-user/subscription", "admin-subscription-403", {"plan": "pro", "start_at": "2026-11-01T00:00:00Z", "end_at": "2099-12-01T00:00:00Z"})),
        ("admin-subscription-404", event("DELETE", A_SUB, "/v1/admin/users/nobody/subscription", "admin-subscription-404", tok=token("demo-admin", role="admin"))),
        ("admin-limits-200", event("GET", "/v1/admin/users/{user_id}/limits", "/v1/admin/users/demo-user/limits", "admin-limits-200", tok=token("demo-admin", role="admin"))),
        ("me-200", event("GET", "/v1/me", "/v1/me", "me-200")),
        ("me-update-200", event("PATCH", "/v1/me", "/v1/me", "me-update-200", {"display_name": "Ana", "gender": "female", "language": "pt-BR"})),
        ("me-update-400", event("PATCH", "/v1/me", "/v1/me", "me-update-400", {"language": "english"})),
        ("confirm-adult-200", event("POST", "/v1/me/confirm-adult", "/v1/me/confirm-adult", "confirm-adult-200", {"confirmed": True})),
        ("confirm-adult-400", event("POST", "/v1/me/confirm-adult", "/v1/me/confirm-adult", "confirm-adult-400", {"confirmed": False})),
        ("export-200", event("GET", "/v1/me/export", "/v1/me/export", "export-200")),
        ("export-400", event("GET", "/v1/me/export", "/v1/me/export", "export-400", query="cursor=not-a-cursor")),
        # Last: it erases the demo user.
        ("erase-200", event("DELETE", "/v1/me", "/v1/me", "erase-200")),
    ],
}

# EventBridge's hourly event for the job function: cargo lambda invoke job --data-file events/job/scheduled.json
SCHEDULED = {
    "version": "0",
    "id": "00000000-0000-4000-8000-00000000e0e0",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-11-21T01:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/chat-backend-hourly"],
    "detail": {},
}



def ws_event(route_key, name, connection="demo-connection", query=None, headers=None, body=None):
    """An API Gateway WebSocket API event, as the realtime function receives it."""
    kinds = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}
    ev = {
        "headers": headers or {},
        "isBase64Encoded": False,
        "requestContext": {
            "apiId": "local",
            "connectedAt": 1795219200000,
            "connectionId": connection,
            "domainName": "local.execute-api.us-east-1.amazonaws.com",
            "eventType": kinds.get(route_key, "MESSAGE"),
            "messageDirection": "IN",
            "requestId": f"event-{name}",
            "requestTimeEpoch": 1795219200000,
            "routeKey": route_key,
            "stage": "prod",
        },
    }
    if query:
        ev["queryStringParameters"] = query
    if body is not None:
        ev["body"] = json.dumps(body)
    return ev


# The realtime function's events (WebSocket API) and the fan-out's (DynamoDB Streams); the demo
# message's image is an item of the messages table as its stream carries it.
DEMO_MESSAGE_IMAGE = {
    "session_id": {"S": DEMO_SESSION}, "seq": {"N": "1"}, "rev": {"N": "1"},
    "id": {"S": "00000000-0000-4000-8000-0000000000b1"}, "role": {"S": "user"}, "type": {"S": "text"},
    "content": {"S": "Hi from another device"}, "created_at": {"S": "2026-11-21T00:00:00.000000Z"},
}
REALTIME = {
    "connect-200": ws_event("$connect", "connect-200", query={"session_id": DEMO_SESSION},
                            headers={"Sec-WebSocket-Protocol": f"chat.v1, bearer.{token()}"}),
    "connect-401": ws_event("$connect", "connect-401", query={"session_id": DEMO_SESSION, "token": "not-a-token"}),
    "connect-404": ws_event("$connect", "connect-404", query={"session_id": OTHER_SESSION, "token": token()}),
    "ping": ws_event("$default", "ping", body={"event": "ping"}),
    "sync": ws_event("$default", "sync", body={"event": "sync", "data": {"after_rev": 0}}),
    "disconnect": ws_event("$disconnect", "disconnect"),
    "stream-insert": {"Records": [{
        "eventID": "1", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {"ApproximateCreationDateTime": 1795219200, "Keys": {"session_id": DEMO_MESSAGE_IMAGE["session_id"], "seq": {"N": "1"}},
                     "NewImage": DEMO_MESSAGE_IMAGE, "SequenceNumber": "100", "SizeBytes": 200, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/chat-messages/stream/2026-11-21T00:00:00.000",
    }]},
}

root = pathlib.Path(__file__).resolve().parent.parent / "events"
for group, items in EVENTS.items():
    folder = root / group
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.json"):
        old.unlink()
    for name, ev in items:
        (folder / f"{name}.json").write_text(json.dumps(ev, indent=2) + "\n")
(root / "realtime").mkdir(exist_ok=True)
for name, ev in REALTIME.items():
    (root / "realtime" / f"{name}.json").write_text(json.dumps(ev, indent=2) + "\n")
(root / "job").mkdir(exist_ok=True)
(root / "job" / "scheduled.json").write_text(json.dumps(SCHEDULED, indent=2) + "\n")
print(f"wrote {sum(len(v) for v in EVENTS.values()) + len(REALTIME) + 1} events")
