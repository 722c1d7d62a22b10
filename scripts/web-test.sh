#!/usr/bin/env bash
# The TypeScript client's and the web app's tests: the client's generated types checked against
# openapi.json, `tsc --strict`, the client's tests (Node's test runner) and the browser test
# (Playwright driving Debian's headless Chromium), all against one server from
# scripts/test-server.sh — DynamoDB Local, the dev server and the local model, nothing mocked.
# Installs what is missing (npm packages, Chromium). Screenshots land in web/test-artifacts/.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_chromium
build_web
log "clients/typescript: generated types match openapi.json"
(cd clients/typescript && npm run -s check-schema)

server_log="$ROOT/target/web-test-server.log"
mkdir -p "$ROOT/target"
TEST_SERVER_LOG="$server_log" "$ROOT/scripts/test-server.sh" >"$ROOT/target/web-test-server.url" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 1200); do
    if grep -q '^model-faults ' "$ROOT/target/web-test-server.url" 2>/dev/null; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then log "the test server did not start (see $server_log)"; exit 1; fi
    sleep 0.1
done
CHAT_API_URL="$(head -n1 "$ROOT/target/web-test-server.url")"
MODEL_FAULTS_URL="$(sed -n 's/^model-faults //p' "$ROOT/target/web-test-server.url")"
export CHAT_API_URL MODEL_FAULTS_URL CHROMIUM_PATH="$(command -v chromium)"
log "client tests against $CHAT_API_URL"
(cd clients/typescript && node --experimental-websocket --test --test-concurrency=4 dist/test/)
log "browser test (headless Chromium) against $CHAT_API_URL"
(cd web && npm test)
