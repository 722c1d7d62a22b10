#!/usr/bin/env bash
# Runs everything CI runs: formatting, lints, the template checks (cfn-lint, the CDK app's synth
# check), the full test suite against DynamoDB Local, the TypeScript client's and the web app's
# tests (headless Chromium). Installs what is missing (Java, Node, DynamoDB Local, rustfmt/clippy,
# cfn-lint, the CDK app's, client's and web app's npm packages, Chromium). The test harness starts its own in-memory DynamoDB Local unless
# AWS_ENDPOINT_URL_DYNAMODB points at one.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_java
ensure_dynamodb_local
for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
        rustup component add "$component"
    fi
done
if ! command -v cfn-lint >/dev/null 2>&1; then
    log "installing cfn-lint"
    python3 -m pip install --quiet "cfn-lint==1.58.0"
fi
# Dummy credentials and a region so the SDK never looks for real AWS; the endpoint is left to the
# harness (its own DynamoDB Local) unless the caller set AWS_ENDPOINT_URL_DYNAMODB.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_EC2_METADATA_DISABLED=true

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "no import cycles between the modules of any crate"
python3 "$ROOT/scripts/cycles.py"
log "cfn-lint template.yaml"
cfn-lint template.yaml
"$ROOT/scripts/check-infra.sh"
log "cargo test"
test_log="$(mktemp)"
cargo test --workspace --all-targets --locked 2>&1 | tee "$test_log"
passed=$(grep -Eo '[0-9]+ passed' "$test_log" | awk '{sum += $1} END {print sum + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$test_log" | awk '{sum += $1} END {print sum + 0}')
rm -f "$test_log"
log "Schemathesis against the local server"
"$ROOT/scripts/schemathesis.sh"
log "TypeScript client and web app: types, client tests, the browser test"
"$ROOT/scripts/web-test.sh"
log "benchmark smoke run (every phase at toy sizes, into target/bench-smoke/)"
"$ROOT/scripts/bench.sh" --smoke
echo "tests: $passed passed, $failed failed"
