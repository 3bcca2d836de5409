#!/usr/bin/env bash
# What auditing costs token issuance: the same client-credentials load against a normal build
# and a `bench-unaudited` build (which drops every audit event), interleaved.
#
#   bash bench/audit-cost.sh
#
# Shared machines drift by tens of percent within minutes, so one binary's runs followed by
# the other's compare two different machines. Here each round runs both, in alternating order
# (A B, then B A, ...), each on a fresh server and database, and the cost is the median over
# rounds of each round's own ratio. It also prints the CPU time per token of the server (and, on
# PostgreSQL, of the database's processes): steadier than throughput on a shared machine, but
# blind to time spent waiting for the disk. Everything stays on 127.0.0.1; the script stops only the
# servers it started and removes what it created.
#
# Settings (environment):
#   AUDIT_COST_ROUNDS     rounds (each runs both builds)      [5]
#   BENCH_DURATION        measured run per build and round     [8s]
#   BENCH_WARMUP          unmeasured warm-up per run           [2s]
#   BENCH_CONNECTIONS     concurrent keep-alive connections    [32]
#   MANDATE_BENCH_POSTGRES_URL
#                         also measure on PostgreSQL: a fresh database per run is created
#                         (and dropped) through this URL with psql
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${AUDIT_COST_ROUNDS:-5}
DURATION=${BENCH_DURATION:-8s}
WARMUP=${BENCH_WARMUP:-2s}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
CLIENT=svc-agent:demo-svc-agent-secret-0123456789abcdef
TARGET=${CARGO_TARGET_DIR:-target}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "AUDIT_COST_ROUNDS must be a positive integer"
command -v oha >/dev/null || die "oha is required: cargo install oha --locked (or run bench/run.sh once)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mandate-audit-cost.XXXXXX")
SERVER_PID=""
PG_DB=""
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ -n "$PG_DB" ]]; then
        psql "$MANDATE_BENCH_POSTGRES_URL" -qAtc "DROP DATABASE IF EXISTS \"$PG_DB\"" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Both builds share one target directory (cargo keeps each feature set's artifacts apart, so
# only the crates the feature touches are built twice); each binary is copied out as it is made.
say "building both binaries (release)"
declare -A BIN=([audited]="$WORK/mandate-audited" [unaudited]="$WORK/mandate-unaudited")
cargo build --release -p mandate --features bench-unaudited >&2
cp "$TARGET/release/mandate" "${BIN[unaudited]}"
cargo build --release -p mandate >&2
cp "$TARGET/release/mandate" "${BIN[audited]}"

PIN_SERVER=()
PIN_LOAD=()
if command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
    PIN_SERVER=(taskset -c 0)
    PIN_LOAD=(taskset -c 1)
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# cpu_ticks BACKEND: user+system clock ticks used so far by the server and, on PostgreSQL, by
# every PostgreSQL process (the database does the event inserts' work in its own processes).
cpu_ticks() {
    local pids=("$SERVER_PID") total=0 pid
    [[ "$1" == postgres ]] && mapfile -t -O 1 pids < <(pgrep -x postgres || true)
    for pid in "${pids[@]}"; do
        total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0) ))
    done
    echo "$total"
}

# run BACKEND BUILD: one fresh server, warm-up, one measured run; prints requests/s.
run() {
    local backend=$1 build=$2 port data extra=()
    port=$(free_port)
    data="$WORK/$backend-$build-$RANDOM"
    mkdir -p "$data"
    if [[ "$backend" == postgres ]]; then
        PG_DB="mandate_audit_cost_$$"
        psql "$MANDATE_BENCH_POSTGRES_URL" -qAtc "CREATE DATABASE \"$PG_DB\"" >/dev/null
        extra=(--database-url "$(python3 - "$MANDATE_BENCH_POSTGRES_URL" "$PG_DB" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
print(urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + sys.argv[2], u.query, u.fragment)))
PY
)")
    fi
    "${PIN_SERVER[@]}" "${BIN[$build]}" serve --config examples/demo.toml \
        --listen "127.0.0.1:$port" --data-dir "$data" "${extra[@]}" >"$data/server.log" 2>&1 &
    SERVER_PID=$!
    local waited=0
    until curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; do
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$data/server.log" >&2; die "server exited"; }
        (( waited++ < 600 )) || die "no healthy server after 60 s"
        sleep 0.1
    done
    local load=(-c "$CONNECTIONS" --no-tui -m POST -a "$CLIENT"
        -T application/x-www-form-urlencoded -d grant_type=client_credentials
        "http://127.0.0.1:$port/token")
    "${PIN_LOAD[@]}" oha -z "$WARMUP" "${load[@]}" >/dev/null
    local before after
    before=$(cpu_ticks "$backend")
    "${PIN_LOAD[@]}" oha -z "$DURATION" --output-format json "${load[@]}" >"$data/oha.json"
    after=$(cpu_ticks "$backend")
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    if [[ -n "$PG_DB" ]]; then
        psql "$MANDATE_BENCH_POSTGRES_URL" -qAtc "DROP DATABASE \"$PG_DB\"" >/dev/null
        PG_DB=""
    fi
    # Requests/s, and CPU microseconds per request (server and database processes).
    python3 -c '
import json, os, sys
s = json.load(open(sys.argv[1]))["summary"]
ticks = int(sys.argv[3]) - int(sys.argv[2])
requests = s["requestsPerSec"] * s["total"]
print(round(s["requestsPerSec"]), round(ticks / os.sysconf("SC_CLK_TCK") * 1e6 / requests))
' "$data/oha.json" "$before" "$after"
}

BACKENDS=(sqlite)
[[ -n "${MANDATE_BENCH_POSTGRES_URL:-}" ]] && BACKENDS+=(postgres)
RESULTS="$WORK/results.tsv"
for backend in "${BACKENDS[@]}"; do
    for round in $(seq 1 "$ROUNDS"); do
        if (( round % 2 )); then order=(audited unaudited); else order=(unaudited audited); fi
        for build in "${order[@]}"; do
            out=$(run "$backend" "$build")
            read -r rps cpu <<<"$out"
            say "[$backend] round $round: $build $rps req/s, $cpu CPU µs per token"
            printf '%s\t%s\t%s\t%s\t%s\n' "$backend" "$round" "$build" "$rps" "$cpu" >>"$RESULTS"
        done
    done
done

echo
echo "Cost of auditing: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, oha -z $DURATION -c $CONNECTIONS, $ROUNDS interleaved rounds"
python3 - "$RESULTS" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(dict)
cpu = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    backend, rnd, build, rps, us = line.split()
    runs[backend].setdefault(rnd, {})[build] = float(rps)
    cpu[backend][build].append(float(us))
print(f"{'backend':<9} {'audited req/s':>14} {'unaudited req/s':>16} {'cost (median of rounds)':>24}"
      f" {'CPU µs/token audited':>21} {'unaudited':>10}  per round")
for backend, rounds in runs.items():
    a = [r["audited"] for r in rounds.values()]
    u = [r["unaudited"] for r in rounds.values()]
    costs = [1 - r["audited"] / r["unaudited"] for r in rounds.values()]
    each = " ".join(f"{c:+.0%}" for c in costs)
    print(f"{backend:<9} {statistics.median(a):>14.0f} {statistics.median(u):>16.0f}"
          f" {statistics.median(costs):>24.1%}"
          f" {statistics.median(cpu[backend]['audited']):>21.0f}"
          f" {statistics.median(cpu[backend]['unaudited']):>10.0f}  {each}")
PY
