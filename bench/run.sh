#!/usr/bin/env bash
# Mandate HTTP load benchmark: the one script to run. See BENCHMARKS.md for results.
#
#   bash bench/run.sh
#
# What it does, in order:
#   1. installs the load generator `oha` with `cargo install oha --locked` if it is absent;
#   2. builds `mandate` in release mode;
#   3. starts `mandate serve` with examples/demo.toml on a free 127.0.0.1 port and a fresh
#      temporary data directory (SQLite), pinned to CPU 0 with taskset when there are 2+ CPUs
#      (oha then runs on CPU 1), and waits for /healthz;
#   4. runs oha against
#        a) POST /token       client_credentials, Basic auth as the demo agent `svc-agent`
#        b) POST /introspect  of one access token obtained first, same Basic auth
#      and prints requests/s, p50 and p99 latency per case;
#   5. repeats 3-4 on PostgreSQL when MANDATE_BENCH_POSTGRES_URL is set;
#   6. runs the same two cases against the peer, the Node oidc-provider (a certified OpenID
#      provider) from ../shared/peers/oidc-provider, pinned the same way, and prints Mandate's
#      throughput as a multiple of the peer's. The peer issues an EdDSA JWT for resource
#      .../jwt; it introspects only opaque tokens, so its introspection case uses an opaque one.
# Everything stays on 127.0.0.1; every run is bounded in time; on exit it stops only the
# server it started and removes its temporary files (and the PostgreSQL database it created).
#
# Settings (environment):
#   BENCH_DURATION      length of each measured run             [10s]
#   BENCH_CONNECTIONS   concurrent keep-alive connections       [32]
#   BENCH_WARMUP        unmeasured warm-up per case (0 = none)  [2s]
#   BENCH_RUNS          measured runs per case; the median is reported  [1]
#   BENCH_OUT           directory to keep oha's raw JSON and the server logs in [none]
#   BENCH_FEATURES      cargo features for the measured binary, built in its own target
#                       directory; `bench-unaudited` drops every audit event, to measure
#                       what auditing costs (BENCHMARKS.md). Never a production build.
#   MANDATE_BENCH_POSTGRES_URL
#                       a PostgreSQL URL (e.g. postgres://postgres@127.0.0.1:5432/postgres).
#                       The script connects with psql, creates a fresh database named
#                       mandate_bench_<pid>, benchmarks against it and drops it at exit.
#   MANDATE_BENCH_POSTGRES_FRESH=0
#                       use MANDATE_BENCH_POSTGRES_URL as-is instead (a dedicated, disposable
#                       database you created; the demo configuration is applied to it).
#   BENCH_PEER          1 to measure the peer too when it is found (needs node and npm; its
#                       start script installs its pinned packages on first use), 0 to skip [1]
#   BENCH_PEER_DIR      where the peer is              [../shared/peers/oidc-provider]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
WARMUP=${BENCH_WARMUP:-2s}
RUNS=${BENCH_RUNS:-1}
FEATURES=${BENCH_FEATURES:-}
CLIENT_ID=svc-agent
CLIENT_SECRET=demo-svc-agent-secret-0123456789abcdef
CONFIG=examples/demo.toml

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is required (it parses oha's JSON output)"
command -v curl >/dev/null || die "curl is required (health check and the first token)"
command -v cargo >/dev/null || die "cargo is required (https://rustup.rs)"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"

# --- state cleaned up on exit ------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mandate-bench.XXXXXX")
SERVER_PID=""
PG_ADMIN_URL=""
PG_DB=""

stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            kill -TERM "$SERVER_PID" 2>/dev/null || true
            for _ in $(seq 1 50); do
                kill -0 "$SERVER_PID" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}

cleanup() {
    local status=$?
    stop_server
    if [[ -n "$PG_DB" && -n "$PG_ADMIN_URL" ]]; then
        psql "$PG_ADMIN_URL" -qAtc "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if [[ -n "${BENCH_OUT:-}" ]]; then
        # Only oha's JSON, the server logs and the summary; never the data directories.
        (cd "$WORK" && find . \( -name '*.json' -o -name '*.log' -o -name '*.tsv' \) -type f |
            while read -r f; do
                mkdir -p "$BENCH_OUT/$(dirname "$f")" && cp "$f" "$BENCH_OUT/$f"
            done) || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. the load generator ---------------------------------------------------------------
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! command -v oha >/dev/null; then
    say "oha not found: installing it with 'cargo install oha --locked' (a few minutes, once)"
    cargo install oha --locked
fi
OHA=$(command -v oha)
say "load generator: $("$OHA" --version 2>/dev/null | head -n1) ($OHA)"

# JSON output flag: newer oha has --output-format json, older has -j/--json.
OHA_HELP=$("$OHA" --help 2>&1 || true)
if grep -q -- '--output-format' <<<"$OHA_HELP"; then
    OHA_JSON=(--output-format json)
elif grep -q -- '--json' <<<"$OHA_HELP"; then
    OHA_JSON=(--json)
else
    die "this oha has neither --output-format nor --json; install a current one (cargo install oha --locked --force)"
fi
OHA_NO_TUI=()
if grep -q -- '--no-tui' <<<"$OHA_HELP"; then
    OHA_NO_TUI=(--no-tui)
fi

# --- 2. the server -------------------------------------------------------------------------
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BUILD=(cargo build --release -p mandate)
if [[ -n "$FEATURES" ]]; then
    # A separate target directory, so a feature build never replaces the normal binary.
    TARGET_DIR="$TARGET_DIR/bench-${FEATURES//[^a-z0-9-]/_}"
    BUILD+=(--features "$FEATURES" --target-dir "$TARGET_DIR")
fi
say "building mandate (release): ${BUILD[*]}"
"${BUILD[@]}"
BIN="$TARGET_DIR/release/mandate"
[[ -x "$BIN" ]] || die "built binary not found at $BIN"

# --- CPU placement ---------------------------------------------------------------------------
NPROC=$(nproc 2>/dev/null || echo 1)
SERVER_PIN=()
LOAD_PIN=()
if command -v taskset >/dev/null && (( NPROC >= 2 )); then
    SERVER_PIN=(taskset -c 0)
    LOAD_PIN=(taskset -c 1)
    PLACEMENT="server on CPU 0, oha on CPU 1 (taskset)"
else
    PLACEMENT="unpinned (taskset missing or a single CPU): server and load generator share CPUs"
fi

CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
say "machine: ${NPROC} CPUs, ${CPU_MODEL:-unknown CPU}; $PLACEMENT"
say "load before: $(uptime | sed 's/.*load average/load average/')"

rss_mib() {
    awk '/^VmRSS:/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "unknown"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_server NAME [extra mandate args...]: starts the server, sets SERVER_PID and BASE.
start_server() {
    local name=$1
    shift
    local port data log
    port=$(free_port)
    data="$WORK/$name/data"
    log="$WORK/$name/server.log"
    mkdir -p "$data"
    BASE="http://127.0.0.1:$port"
    say "[$name] starting: ${SERVER_PIN[*]} $BIN serve --config $CONFIG --listen 127.0.0.1:$port --data-dir $data $*"
    # RUST_LOG is left as the user has it: the default (info) logs no line per request.
    "${SERVER_PIN[@]}" "$BIN" serve --config "$CONFIG" --listen "127.0.0.1:$port" \
        --data-dir "$data" "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    wait_ready "$name" "$BASE/healthz" "$log" 60
}

# wait_ready NAME URL LOG SECONDS: waits until SERVER_PID answers URL, or dies with its log.
wait_ready() {
    local name=$1 url=$2 log=$3 seconds=$4 waited=0
    until curl -fsS -o /dev/null "$url" 2>/dev/null; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            cat "$log" >&2
            die "[$name] the server exited before answering $url (log above)"
        fi
        (( waited++ < seconds * 10 )) || die "[$name] no answer from $url after $seconds s (log: $log)"
        sleep 0.1
    done
    say "[$name] ready at $BASE (pid $SERVER_PID), idle RSS $(rss_mib "$SERVER_PID")"
}

fetch_token() {
    curl -fsS -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials "$BASE/token" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

# The client the load authenticates as (Basic); the peer's run switches it.
AUTH="$CLIENT_ID:$CLIENT_SECRET"

# oha_run OUTFILE DURATION URL BODY: one bounded oha run, JSON to OUTFILE.
oha_run() {
    local out=$1 duration=$2 url=$3 body=$4
    "${LOAD_PIN[@]}" "$OHA" -z "$duration" -c "$CONNECTIONS" "${OHA_NO_TUI[@]}" "${OHA_JSON[@]}" \
        -m POST -a "$AUTH" \
        -T application/x-www-form-urlencoded -d "$body" \
        "$url" >"$out"
}

RESULTS="$WORK/results.tsv"
: >"$RESULTS"

# measure BACKEND CASE PATH BODY: warm-up, RUNS measured runs, one summary line.
measure() {
    local backend=$1 case=$2 path=$3 body=$4
    local dir="$WORK/$backend"
    mkdir -p "$dir"
    if [[ "$WARMUP" != "0" && "$WARMUP" != "0s" ]]; then
        say "[$backend] $case: warm-up $WARMUP"
        oha_run "$dir/$case-warmup.json" "$WARMUP" "$BASE$path" "$body"
    fi
    local files=()
    for run in $(seq 1 "$RUNS"); do
        say "[$backend] $case: run $run/$RUNS: oha -z $DURATION -c $CONNECTIONS POST $path"
        oha_run "$dir/$case-$run.json" "$DURATION" "$BASE$path" "$body"
        files+=("$dir/$case-$run.json")
    done
    python3 - "$backend" "$case" "${files[@]}" >>"$RESULTS" <<'PY'
import json, statistics, sys
backend, case, files = sys.argv[1], sys.argv[2], sys.argv[3:]
runs = []
for f in files:
    with open(f) as fh:
        d = json.load(fh)
    s = d["summary"]
    lat = d.get("latencyPercentiles") or {}
    codes = d.get("statusCodeDistribution") or {}
    # Requests still in flight when -z ends are cut off by oha itself, not failures.
    errors = {k: v for k, v in (d.get("errorDistribution") or {}).items()
              if "deadline" not in k}
    ok = sum(v for k, v in codes.items() if str(k) == "200")
    bad = sum(v for k, v in codes.items() if str(k) != "200") + sum(errors.values())
    runs.append({
        "rps": s.get("requestsPerSec") or 0.0,
        "p50": (lat.get("p50") or 0.0) * 1000,
        "p99": (lat.get("p99") or 0.0) * 1000,
        "ok": ok,
        "bad": bad,
        "codes": codes,
        "errors": errors,
    })
    print(f"    {f.rsplit('/', 1)[-1]}: {runs[-1]['rps']:.0f} req/s, p50 {runs[-1]['p50']:.2f} ms,"
          f" p99 {runs[-1]['p99']:.2f} ms, 200s {ok}, other {bad} {codes if bad else ''}{errors or ''}",
          file=sys.stderr)
med = lambda k: statistics.median(r[k] for r in runs)
print("\t".join([backend, case, f"{med('rps'):.0f}", f"{med('p50'):.2f}", f"{med('p99'):.2f}",
                 str(sum(r["ok"] for r in runs)), str(sum(r["bad"] for r in runs))]))
PY
}

# bench_backend NAME [extra mandate args...]
bench_backend() {
    local name=$1
    shift
    start_server "$name" "$@"
    local token
    token=$(fetch_token) || die "[$name] could not obtain an access token from $BASE/token"
    say "[$name] access token for introspection obtained (${#token} chars)"
    # The introspection case must measure an active token, not the cheap inactive answer.
    curl -fsS -u "$CLIENT_ID:$CLIENT_SECRET" --data-urlencode "token=$token" "$BASE/introspect" |
        python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("active") is True else 1)' ||
        die "[$name] /introspect does not report the benchmark token as active"
    measure "$name" token /token "grant_type=client_credentials"
    measure "$name" introspect /introspect "token=$token"
    say "[$name] server RSS after the runs: $(rss_mib "$SERVER_PID")"
    stop_server
}

bench_backend sqlite

if [[ -n "${MANDATE_BENCH_POSTGRES_URL:-}" ]]; then
    if [[ "${MANDATE_BENCH_POSTGRES_FRESH:-1}" == "0" ]]; then
        say "[postgres] using MANDATE_BENCH_POSTGRES_URL as-is (dedicated database)"
        bench_backend postgres --database-url "$MANDATE_BENCH_POSTGRES_URL"
    else
        command -v psql >/dev/null ||
            die "psql is needed to create a fresh database (or set MANDATE_BENCH_POSTGRES_FRESH=0 with a dedicated database URL)"
        PG_ADMIN_URL=$MANDATE_BENCH_POSTGRES_URL
        PG_DB="mandate_bench_$$"
        say "[postgres] creating database $PG_DB"
        psql "$PG_ADMIN_URL" -qAtc "CREATE DATABASE \"$PG_DB\"" >/dev/null
        PG_URL=$(python3 - "$PG_ADMIN_URL" "$PG_DB" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
print(urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + sys.argv[2], u.query, u.fragment)))
PY
)
        bench_backend postgres --database-url "$PG_URL"
    fi
else
    say "MANDATE_BENCH_POSTGRES_URL not set: PostgreSQL run skipped"
fi

# --- 6. the peer ------------------------------------------------------------------------------
PEER_DIR=${BENCH_PEER_DIR:-../shared/peers/oidc-provider}
if [[ "${BENCH_PEER:-1}" == "0" ]]; then
    say "BENCH_PEER=0: peer run skipped"
elif [[ ! -x "$PEER_DIR/start" ]]; then
    say "peer not found at $PEER_DIR (set BENCH_PEER_DIR): peer run skipped"
elif ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    say "node and npm are needed for the peer (oidc-provider): peer run skipped"
else
    PEER_SECRET=$(sed -n "s/^export const CLIENT_SECRET = '\(.*\)';/\1/p" "$PEER_DIR/server.js")
    [[ -n "$PEER_SECRET" ]] || die "cannot read the peer's client secret from $PEER_DIR/server.js"
    port=$(free_port)
    BASE="http://127.0.0.1:$port"
    mkdir -p "$WORK/peer"
    say "[peer] starting: ${SERVER_PIN[*]} $PEER_DIR/start $port (node $(node --version))"
    "${SERVER_PIN[@]}" "$PEER_DIR/start" "$port" >"$WORK/peer/server.log" 2>&1 &
    SERVER_PID=$!
    # The first start runs npm ci, which can take a minute.
    wait_ready peer "$BASE/.well-known/openid-configuration" "$WORK/peer/server.log" 300
    AUTH="agent-bench:$PEER_SECRET"
    JWT_RS=https://api.example.test/jwt
    OPAQUE_RS=https://api.example.test/opaque
    INTROSPECT=$(curl -fsS "$BASE/.well-known/openid-configuration" |
        python3 -c 'import json,sys,urllib.parse; print(urllib.parse.urlsplit(json.load(sys.stdin)["introspection_endpoint"]).path)')
    peer_token() {
        curl -fsS -u "$AUTH" -d grant_type=client_credentials --data-urlencode "resource=$1" \
            "$BASE/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
    }
    peer_token "$JWT_RS" | grep -q '^ey' || die "[peer] no JWT access token for $JWT_RS"
    opaque=$(peer_token "$OPAQUE_RS") || die "[peer] no opaque access token"
    curl -fsS -u "$AUTH" --data-urlencode "token=$opaque" "$BASE$INTROSPECT" |
        python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("active") is True else 1)' ||
        die "[peer] introspection does not report the opaque token as active"
    measure peer token /token "grant_type=client_credentials&resource=$(python3 -c 'import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1], safe=""))' "$JWT_RS")"
    measure peer introspect "$INTROSPECT" "token=$opaque"
    say "[peer] RSS after the runs: $(rss_mib "$SERVER_PID")"
    stop_server
fi

say "load after: $(uptime | sed 's/.*load average/load average/')"

echo
echo "Mandate load benchmark: $(date -u '+%Y-%m-%d %H:%M UTC'), ${NPROC} CPUs (${CPU_MODEL:-unknown}), $PLACEMENT"
echo "oha -z $DURATION -c $CONNECTIONS (HTTP/1.1 keep-alive), median of $RUNS run(s), warm-up $WARMUP"
python3 - "$RESULTS" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
hdr = ("backend", "case", "requests/s", "p50 ms", "p99 ms", "200s", "non-200/errors")
w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(hdr)]
line = lambda cells: "  ".join(c.rjust(w[i]) if i >= 2 else c.ljust(w[i]) for i, c in enumerate(cells))
print(line(hdr))
for r in rows:
    print(line(r))
peer = {r[1]: float(r[2]) for r in rows if r[0] == "peer"}
if peer:
    print()
    print("Mandate's requests/s as a multiple of the peer's (oidc-provider) in this run:")
    for r in rows:
        if r[0] != "peer" and peer.get(r[1]):
            print(f"  {r[0]:<9} {r[1]:<11} {float(r[2]) / peer[r[1]]:5.1f}x")
bad = [r for r in rows if r[6] != "0"]
if bad:
    print("warning: some requests did not answer 200; see the per-run lines above", file=sys.stderr)
PY
