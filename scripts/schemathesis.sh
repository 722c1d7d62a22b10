#!/usr/bin/env bash
# Fuzzes the running API against openapi.json with Schemathesis: its own in-memory DynamoDB
# Local, the dev server on a free port with a valid token, and a bounded, seeded run over every
# operation. Fails on any 5xx, any response that breaks the document (status, body schema,
# headers, content type), or fewer than MIN_CASES generated cases.
#   MAX_EXAMPLES=60 scripts/schemathesis.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

MAX_EXAMPLES="${MAX_EXAMPLES:-60}"
MIN_CASES=1000
SCHEMATHESIS_VERSION=4.32.5
VENV="${SCHEMATHESIS_VENV:-$ROOT/.local/schemathesis-$SCHEMATHESIS_VERSION}"

ensure_java
ensure_dynamodb_local
ensure_venv "$VENV" "schemathesis==$SCHEMATHESIS_VERSION"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ddb_port="$(free_port)"
api_port="$(free_port)"
work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

start_dynamodb_local "$ddb_port"
pids+=("$DDB_LOCAL_PID")
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$ddb_port"
source scripts/local-env.sh
# Quotas and rate limits off: the run is about the contract, and limits have their own tests.
export DAILY_MESSAGE_QUOTA=100000000 RATE_LIMIT_APPEND_PER_MIN=0 RATE_LIMIT_READ_PER_MIN=0 RATE_LIMIT_OTHER_PER_MIN=0
export RUST_LOG=warn
# The dev server starts the local model; replies stay short so every example answers quickly.
export LLM_MAX_TOKENS=8

cargo build -q --locked -p dev --bin dev-server -p kit --bin mint-token
PORT="$api_port" "$ROOT/target/debug/dev-server" >"$work/server.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 100); do
    if port_in_use "$api_port"; then break; fi
    sleep 0.1
done
# An admin token: it reaches the admin routes too, and acts as a plain user everywhere else.
token="$("$ROOT/target/debug/mint-token" schemathesis-user --admin)"

log "Schemathesis: every operation, up to $MAX_EXAMPLES examples each"
set +e
"$VENV/bin/schemathesis" run openapi.json \
    --url "http://127.0.0.1:$api_port" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "$MAX_EXAMPLES" --seed 20261121 --workers 2 \
    --request-timeout 10 --no-color \
    --report ndjson --report-ndjson-path "$work/events.ndjson" \
    --generation-database none
status=$?
set -e
# Count the cases and any 5xx from the run's own event log (on top of its checks).
read -r cases responses server_errors < <(python3 - "$work/events.ndjson" <<'PY'
import json, sys

def statuses(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "status_code" and isinstance(value, int):
                yield value
            else:
                yield from statuses(value)
    elif isinstance(node, list):
        for value in node:
            yield from statuses(value)

cases = responses = server_errors = 0
for line in open(sys.argv[1]):
    event = json.loads(line)
    finished = event.get("ScenarioFinished")
    if finished:
        cases += len((finished.get("recorder") or {}).get("cases") or {})
        seen = list(statuses(finished))
        responses += len(seen)
        server_errors += sum(1 for status in seen if status >= 500)
print(cases, responses, server_errors)
PY
)
log "Schemathesis: $cases test cases, $responses responses checked, $server_errors with a 5xx status, exit $status"
if [ "$server_errors" -ne 0 ]; then status=1; fi
if [ "$cases" -lt "$MIN_CASES" ]; then
    log "only $cases cases ran; at least $MIN_CASES are required"
    status=1
fi
exit "$status"
