#!/usr/bin/env bash
# The benchmark: writes BENCHMARKS.md and bench/scaling.svg (see bench/src/main.rs for what is
# measured). Installs what is missing (Java, DynamoDB Local, the LangChain replay's Python packages,
# cargo-lambda for the arm64 artifacts), builds the release binaries, and runs against its own
# in-memory DynamoDB Local unless AWS_ENDPOINT_URL_DYNAMODB is set. Takes ~20 minutes from cold on
# 2 cores (two release builds, 100,000 seeded messages, LangChain until it breaks).
#
#   scripts/bench.sh                 # the full run; extra arguments go to the bench program
#   scripts/bench.sh --smoke         # every phase at toy sizes into target/bench-smoke/ (seconds; the test command runs it)
#   scripts/bench.sh --memory-only   # memory extraction scored on bench/eval/memories.json, printed
#   scripts/bench.sh --agents-only   # a group chat's routing: added latency and tokens, printed
#   scripts/bench.sh --replies-only  # a reply's path before the provider: round trips, time, write units
#   scripts/bench.sh --tools-only    # a tool round's cost and the structured path's evaluation set, printed
#   scripts/bench.sh --catalog-only  # the character catalog's listing and search (10,000 characters), printed
#   scripts/bench.sh --ops-only      # each operation's calls, units and handler overhead, printed
#                                    # (LLM_BASE_URL=… LLM_MODEL=… [LLM_API_KEY=…] to score another provider)
#   scripts/bench.sh --cold-only     # the function binaries' cold starts (release builds), printed
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

LANGCHAIN_VENV="$ROOT/.local/langchain-community-0.4.2"
FUNCTIONS=(sessions messages memories limits)
BINARIES=(sessions messages messages-stream memories limits)

ensure_java
ensure_dynamodb_local
ensure_venv "$LANGCHAIN_VENV" "langchain-community==0.4.2" "langchain-core==1.7.2" "boto3==1.44.5"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_EC2_METADATA_DISABLED=true

packages=(-p bench -p dev -p kit)
for function in "${FUNCTIONS[@]}"; do packages+=(-p "$function"); done

case "${1:-}" in --memory-only | --agents-only | --replies-only | --tools-only | --catalog-only | --ops-only | --cold-only)
    # One phase only, its section printed (memory: against LLM_BASE_URL + LLM_MODEL when set).
    if [ "$1" = --cold-only ]; then cargo build -q --release --locked "${packages[@]}"; else cargo build -q --release --locked -p bench; fi
    exec target/release/bench "$@"
    ;;
esac
if [ "${1:-}" = "--smoke" ]; then
    cargo build -q --locked "${packages[@]}"
    exec target/debug/bench "$@" --python "$LANGCHAIN_VENV/bin/python"
fi

ensure_cargo_lambda
bins=()
for binary in "${BINARIES[@]}"; do bins+=(--bin "$binary"); done
log "arm64 Lambda artifacts (cargo lambda build --release --arm64)"
cargo lambda build --release --arm64 "${bins[@]}"
cargo lambda build --release --arm64 --output-format zip "${bins[@]}"
log "release binaries for this machine"
cargo build --release --locked "${packages[@]}"
target/release/bench --python "$LANGCHAIN_VENV/bin/python" "$@"
