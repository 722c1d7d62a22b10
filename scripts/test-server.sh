#!/usr/bin/env bash
# The server the TypeScript client's and the web app's tests run against: its own in-memory
# DynamoDB Local and the dev server (with the local model and the web app) on free ports. Prints
# the base URL on its first line once it answers, then runs until it is stopped.
#
# Test settings (override them in the environment): DAILY_MESSAGE_QUOTA=12 so a test can use the
# quota up, TELEGRAM_BOT_TOKEN set so Telegram sign-in can be signed and checked, LLM_MAX_TOKENS=160,
# and the per-minute rate limits off (a browser test makes a minute's worth of reads in seconds;
# the limits have their own tests in tests/).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_java
ensure_dynamodb_local

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ddb_port="$(free_port)"
api_port="$(free_port)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
trap 'exit 0' INT TERM

cargo build -q --locked -p local --bin dev-server >&2
start_dynamodb_local "$ddb_port"
pids+=("$DDB_LOCAL_PID")
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$ddb_port"
source scripts/local-env.sh
export DAILY_MESSAGE_QUOTA="${DAILY_MESSAGE_QUOTA:-12}"
export TELEGRAM_BOT_TOKEN="${TELEGRAM_BOT_TOKEN:-123456789:test-bot-token-for-local-tests}"
export LLM_MAX_TOKENS="${LLM_MAX_TOKENS:-160}"
export RATE_LIMIT_APPEND_PER_MIN="${RATE_LIMIT_APPEND_PER_MIN:-0}" RATE_LIMIT_READ_PER_MIN="${RATE_LIMIT_READ_PER_MIN:-0}"
export RATE_LIMIT_OTHER_PER_MIN="${RATE_LIMIT_OTHER_PER_MIN:-0}" RATE_LIMIT_REGENERATE_PER_MIN="${RATE_LIMIT_REGENERATE_PER_MIN:-0}"
export RUST_LOG="${RUST_LOG:-warn}"
PORT="$api_port" "$ROOT/target/debug/dev-server" >"${TEST_SERVER_LOG:-/dev/null}" 2>&1 &
pids+=("$!")
for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$api_port/openapi.json" -o /dev/null 2>/dev/null; then break; fi
    if ! kill -0 "${pids[1]}" 2>/dev/null; then log "the dev server exited at start"; exit 1; fi
    sleep 0.1
done
echo "http://127.0.0.1:$api_port"
wait "${pids[1]}"
