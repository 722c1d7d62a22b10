#!/usr/bin/env bash
# Synthesizes the CDK app (infra/, which includes template.yaml itself), lints the output, and
# fails unless it is template.yaml with only the functions' code swapped for assets.
# Offline: the functions' code is stood in for by placeholder bootstraps (a real `cdk deploy`
# uses target/lambda from `cargo lambda build`).
source "$(dirname "$0")/lib.sh"
cd "$ROOT/infra"

ensure_node
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "installing the CDK app's packages (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error
fi
placeholders="$(mktemp -d)"
trap 'rm -rf "$placeholders"' EXIT
for function in sessions messages messages-stream memories limits job realtime realtime-reply fanout extraction; do
    mkdir -p "$placeholders/$function"
    printf 'placeholder\n' >"$placeholders/$function/bootstrap"
done
log "cdk synth"
npx tsc
npx cdk synth --quiet -c lambdaDir="$placeholders" >/dev/null
log "cfn-lint on the synthesized template"
# W3005: CDK writes a DependsOn next to a reference that already implies it; harmless.
cfn-lint --ignore-checks W3005 -- cdk.out/ChatBackend.template.json
log "the CDK app deploys template.yaml as it is"
cd "$ROOT"
cargo run -q --locked -p kit --bin check-infra -- infra/cdk.out/ChatBackend.template.json
