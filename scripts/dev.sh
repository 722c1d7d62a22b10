#!/usr/bin/env bash
# Serves the whole API, the chat socket and the web app on http://127.0.0.1:3000 against DynamoDB
# Local. Installs what is missing (Java, DynamoDB Local, the local model, the web app's npm
# packages), keeps data in .local/dynamodb (git-ignored), creates the tables from template.yaml,
# builds the web app, and stops DynamoDB Local again on Ctrl-C.
#
# Environment: PORT (3000), DYNAMODB_PORT (8000), JWT_SECRET (a dev secret by default),
# JWT_PUBLIC_KEY or JWT_JWKS_URL, JWT_ISSUER, JWT_AUDIENCE, RUST_LOG, and AWS_ENDPOINT_URL_DYNAMODB to use a
# DynamoDB you started yourself.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

own_dynamodb="${AWS_ENDPOINT_URL_DYNAMODB:-}"
source scripts/local-env.sh

if [ -z "$own_dynamodb" ]; then
    ensure_java
    ensure_dynamodb_local
    port="${DYNAMODB_PORT:-8000}"
    if port_in_use "$port"; then
        log "port $port is taken: using the DynamoDB (Local) already listening there"
    else
        log "starting DynamoDB Local on port $port (data in .local/dynamodb)"
        mkdir -p "$ROOT/.local"
        DDB_LOCAL_LOG="$ROOT/.local/dynamodb-local.log" start_dynamodb_local "$port" "$ROOT/.local/dynamodb"
        trap 'kill "$DDB_LOCAL_PID" 2>/dev/null' EXIT INT TERM
    fi
fi

build_web
log "building and starting the API on http://127.0.0.1:${PORT:-3000} (the web app at /)"
log "mint a token: cargo run -q -p kit --bin mint-token -- <user-id>"
log "Telegram init data (dev bot): cargo run -q -p kit --bin mint-init-data -- <telegram-user-id>"
cargo run -q -p dev --bin dev-server
