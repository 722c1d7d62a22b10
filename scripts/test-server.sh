#!/usr/bin/env bash
# The server the TypeScript client's and the web app's tests run against: its own in-memory
# DynamoDB Local and the dev server (with the local model and the web app) on free ports. Prints
# the base URL on its first line once it answers, then runs until it is stopped.
#
# Test settings (override them in the environment): DAILY_MESSAGE_QUOTA=12 so a test can use the
# quota up, TELEGRAM_BOT_TOKEN set so Telegram sign-in can be signed and checked, LLM_MAX_TOKENS=160,
# MEMORY_EXTRACTION=off, and the per-minute rate limits off (a browser test makes a minute's worth of reads in seconds;
# the limits have their own tests in tests/).
#
# The dev server reaches the local model through scripts/model-faults.py, a pass-through a test can
# tell to stall one reply mid-stream (so Stop and cancel meet a reply that is still streaming,
# however fast the model is); its address is the second line printed, `model-faults <url>`.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_java
ensure_dynamodb_local
ensure_local_model

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ddb_port="$(free_port)"
api_port="$(free_port)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
trap 'exit 0' INT TERM

# Starts "$@" in the background and sets LISTENING to the URL it prints as `listening <url>`.
start_listener() {
    local out
    out="$(mktemp)"
    "$@" >"$out" 2>/dev/null &
    pids+=("$!")
    for _ in $(seq 1 600); do
        LISTENING="$(sed -n 's/^listening //p' "$out")"
        if [ -n "$LISTENING" ]; then rm -f "$out"; return; fi
        if ! kill -0 "${pids[-1]}" 2>/dev/null; then log "$1 $2 exited at start"; exit 1; fi
        sleep 0.1
    done
    log "$1 $2 did not start"
    exit 1
}

cargo build -q --locked -p dev --bin dev-server >&2
start_dynamodb_local "$ddb_port"
pids+=("$DDB_LOCAL_PID")
# The model as the dev server starts it (local::local_model::start(4): 4 slots of 2048 tokens),
# behind the fault pass-through.
slots=4 slot_tokens=2048
start_listener "$LLM_VENV/bin/python" scripts/llm-server.py "$LLM_MODEL_FILE" --port 0 --alias "$LLM_MODEL_ALIAS" \
    --ctx "$((slots * slot_tokens))" --parallel "$slots"
start_listener python3 scripts/model-faults.py "$LISTENING/v1"
faults_url="${LISTENING%/v1}"
export LLM_BASE_URL="$LISTENING" LLM_MODEL="$LLM_MODEL_ALIAS" LLM_CONTEXT_TOKENS="$slot_tokens"
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$ddb_port"
source scripts/local-env.sh
export DAILY_MESSAGE_QUOTA="${DAILY_MESSAGE_QUOTA:-12}"
export TELEGRAM_BOT_TOKEN="${TELEGRAM_BOT_TOKEN:-123456789:test-bot-token-for-local-tests}"
export LLM_MAX_TOKENS="${LLM_MAX_TOKENS:-160}"
# Memory extraction off: what these tests assert of the memories panel must not race with memories
# the model writes (extraction has its own tests in tests/ and its numbers in BENCHMARKS.md).
export MEMORY_EXTRACTION="${MEMORY_EXTRACTION:-off}"
export RATE_LIMIT_APPEND_PER_MIN="${RATE_LIMIT_APPEND_PER_MIN:-0}" RATE_LIMIT_READ_PER_MIN="${RATE_LIMIT_READ_PER_MIN:-0}"
export RATE_LIMIT_OTHER_PER_MIN="${RATE_LIMIT_OTHER_PER_MIN:-0}" RATE_LIMIT_REGENERATE_PER_MIN="${RATE_LIMIT_REGENERATE_PER_MIN:-0}"
export RUST_LOG="${RUST_LOG:-warn}"
PORT="$api_port" "$ROOT/target/debug/dev-server" >"${TEST_SERVER_LOG:-/dev/null}" 2>&1 &
server_pid="$!"
pids+=("$server_pid")
for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$api_port/openapi.json" -o /dev/null 2>/dev/null; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then log "the dev server exited at start"; exit 1; fi
    sleep 0.1
done
echo "http://127.0.0.1:$api_port"
echo "model-faults $faults_url"
wait "$server_pid"
