# Environment for running the functions locally against DynamoDB Local on port 8000.
# scripts/dev.sh sources it; source it yourself before `cargo lambda watch`:
#   source scripts/local-env.sh && cargo lambda watch
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL_DYNAMODB="${AWS_ENDPOINT_URL_DYNAMODB:-http://127.0.0.1:${DYNAMODB_PORT:-8000}}"
# The tables' variables as template.yaml's Globals name them (SESSIONS_TABLE: !Ref SessionsTable),
# each defaulting to chat-<table> (chat-sessions, ...), the names dev.sh creates.
while read -r variable logical_id; do
    local_name="chat-$(printf '%s' "$logical_id" | tr '[:upper:]' '[:lower:]')"
    export "$variable=${!variable:-$local_name}"
done < <(sed -nE 's/^ +([A-Z_]+_TABLE): !Ref ([A-Za-z]+)Table$/\1 \2/p' "$(dirname "${BASH_SOURCE[0]}")/../template.yaml")
unset variable logical_id local_name
# Any origin may call the local server (a web app on another port); list origins to narrow it.
export CORS_ALLOWED_ORIGINS="${CORS_ALLOWED_ORIGINS:-*}"
if [ -z "${JWT_PUBLIC_KEY:-}${JWT_JWKS_URL:-}" ]; then
    export JWT_SECRET="${JWT_SECRET:-local-dev-secret-not-for-production-0123456789}"
fi
# The local model (SmolLM2 on llama.cpp) calls tools through the backend's structured-output path
# (its template does not make llama.cpp's tool calling work), and tools on this machine's loopback
# may be called (a dev flag: never set it on AWS).
export LLM_TOOL_CALLS="${LLM_TOOL_CALLS:-structured}"
export TOOLS_ALLOW_PRIVATE_URLS="${TOOLS_ALLOW_PRIVATE_URLS:-true}"
