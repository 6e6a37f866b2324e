#!/usr/bin/env bash
# Fuzzes the example server's API against its own OpenAPI document with
# schemathesis (PyPI, 4.x): the server binary on the real Docker engine
# (a temporary --data-dir, a free loopback port), every operation of
# GET /api/v1/openapi.json, at least MIN_REQUESTS generated requests, and
# the checks not_a_server_error, status_code_conformance,
# content_type_conformance and response_schema_conformance. Exits nonzero on
# any failure, or when fewer requests than MIN_REQUESTS were sent.
#
#   examples/scripts/schemathesis.sh            # from the repository root
#   EXAMPLES=200 SEED=1 examples/scripts/schemathesis.sh
#
# Environment: EXAMPLES (test cases per operation and phase, default 100),
# CHECKS (schemathesis's checks, default the four above plus
# unsupported_method, 405 for every other method, and ignored_auth, 401
# without the token),
# MIN_REQUESTS (default 1000), SEED (default: random), REPORT_DIR (where the
# NDJSON event log and the JUnit report go; default a temporary directory,
# removed unless the run failed).
#
# The two event streams (`…/events`) never end, so they are left out of the
# fuzzing (their errors before the stream starts are those of the other
# tenant routes). On exit the server is stopped, and every container,
# network and image labelled for a tenant the run deployed to is removed
# with the data dir.
set -euo pipefail

EXAMPLES=${EXAMPLES:-100}
CHECKS=${CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,unsupported_method,ignored_auth}
MIN_REQUESTS=${MIN_REQUESTS:-1000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

if ! command -v schemathesis >/dev/null 2>&1; then
    python3 -m pip install --quiet 'schemathesis>=4,<5' \
        || python3 -m pip install --quiet --break-system-packages 'schemathesis>=4,<5'
fi

cargo build --quiet -p cameleer-examples --bin server
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
SERVER="$TARGET_DIR/debug/server"

DATA=$(mktemp -d -t cameleer-fuzz-data.XXXXXX)
OWN_REPORT=0
if [ -z "${REPORT_DIR:-}" ]; then
    REPORT_DIR=$(mktemp -d -t cameleer-fuzz-report.XXXXXX)
    OWN_REPORT=1
fi
mkdir -p "$REPORT_DIR"
SERVER_PID=
STATUS=1

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    # What the server made for the tenants it deployed to (a fuzzer rarely
    # gets that far: an artifact must validate first).
    if [ -f "$DATA/cameleer.sqlite" ]; then
        python3 - "$DATA/cameleer.sqlite" <<'PY' | while read -r tenant; do
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
try:
    for (tenant,) in db.execute("SELECT DISTINCT tenant FROM deployments"):
        print(tenant)
except sqlite3.Error:
    pass
PY
            filters=(--filter "label=io.cameleer.managed=true" --filter "label=io.cameleer.tenant=$tenant")
            docker ps -aq "${filters[@]}" | xargs -r docker rm -f >/dev/null || true
            docker network ls -q "${filters[@]}" | xargs -r docker network rm >/dev/null || true
            docker images -q "${filters[@]}" | sort -u | xargs -r docker rmi -f >/dev/null || true
        done
    fi
    rm -rf "$DATA"
    if [ "$OWN_REPORT" = 1 ] && [ "$STATUS" = 0 ]; then
        rm -rf "$REPORT_DIR"
    fi
}
trap cleanup EXIT

mkfifo "$DATA/stdout"
RUST_LOG=${RUST_LOG:-warn} "$SERVER" --listen 127.0.0.1:0 --data-dir "$DATA" \
    >"$DATA/stdout" 2>"$REPORT_DIR/server.log" &
SERVER_PID=$!
exec 3<"$DATA/stdout"
ADDR=
while IFS= read -r -t 300 line <&3; do
    case "$line" in
        *"cameleer server listening on http://"*)
            ADDR=${line##*http://}
            break
            ;;
    esac
done
if [ -z "$ADDR" ]; then
    echo "the server did not say where it listens; its log: $REPORT_DIR/server.log" >&2
    exit 1
fi
# Keep draining its stdout so the server never blocks on a full pipe.
cat <&3 >/dev/null &
echo "server on http://$ADDR (data dir $DATA)"

# The document needs a token too: fetched with the admin's, then fuzzed
# from the file against the live server.
AUTH=(-H "Authorization: Bearer $(cat "$DATA/admin-token")")
curl -sSf "${AUTH[@]}" -o "$REPORT_DIR/openapi.json" "http://$ADDR/api/v1/openapi.json"

SEED_ARGS=()
if [ -n "${SEED:-}" ]; then
    SEED_ARGS=(--seed "$SEED")
fi

set +e
# From the report dir: schemathesis keeps its example database (what
# replays a failure) in the working directory.
cd "$REPORT_DIR"
schemathesis run "$REPORT_DIR/openapi.json" \
    --url "http://$ADDR" \
    "${AUTH[@]}" \
    --checks "$CHECKS" \
    --exclude-path-regex '/events$' \
    --max-examples "$EXAMPLES" \
    "${SEED_ARGS[@]}" \
    --request-timeout 30 \
    --report junit,ndjson \
    --report-dir "$REPORT_DIR" \
    --output-sanitize true
RESULT=$?
set -e
cd "$ROOT"

# Every request sent, from the event log (one `ScenarioFinished` per test
# case, each with the interactions it recorded).
REQUESTS=$(python3 - "$REPORT_DIR" <<'PY'
import json, pathlib, sys
total = 0
for path in pathlib.Path(sys.argv[1]).glob("*.ndjson"):
    for line in path.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if finished:
            total += len(finished.get("recorder", {}).get("interactions", {}))
print(total)
PY
)
echo "requests generated and sent: $REQUESTS"
if [ "$RESULT" -ne 0 ]; then
    echo "schemathesis found failures (exit $RESULT); reports in $REPORT_DIR" >&2
    exit "$RESULT"
fi
if [ "$REQUESTS" -lt "$MIN_REQUESTS" ]; then
    echo "only $REQUESTS requests, fewer than $MIN_REQUESTS: raise EXAMPLES" >&2
    exit 1
fi
STATUS=0
