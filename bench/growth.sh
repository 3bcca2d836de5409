#!/usr/bin/env bash
# Mandate growth benchmark: does a request cost the same with 10 thousand, 1 million and
# 10 million grants? See BENCHMARKS.md ("Growth") for results.
#
#   bash bench/growth.sh
#
# For each backend (SQLite; PostgreSQL too when MANDATE_BENCH_POSTGRES_URL is set) it starts
# from an empty database and, for each size in GROWTH_SIZES:
#   1. stops the server and grows the database to that size with `mandate bulk-load` (user
#      grants of the demo agent `cli-agent` in tenant acme, each for a user of its own, as a
#      user holds one live grant per agent, and each with a refresh family), keeping a sample
#      of first refresh tokens spread over the new grants;
#   2. starts `mandate serve` (release build, demo configuration, pinned to CPU 0) and
#      measures, with the load generator on CPU 1:
#        a) client credentials    oha, POST /token as `svc-agent`
#        b) introspection          bench/loadgen, POST /introspect of a different refresh
#                                  token each request, drawn over every grant loaded so far
#                                  in proportion (a lookup in refresh_tokens, refresh_families
#                                  and grants), as the demo CRM's resource credential
#        c) refresh                bench/loadgen, POST /token refresh_token with those same
#                                  tokens, each used once (rotation writes)
#        d) admin grant listing    oha, GET /admin/v1/grants?tenant_id=acme (the first page,
#                                  100 grants, newest first) with an operator token
# and prints one table: requests/s and p50/p99 per case and size.
#
# Settings (environment), besides those of run.sh it shares (BENCH_DURATION, BENCH_CONNECTIONS,
# BENCH_OUT, MANDATE_BENCH_POSTGRES_URL):
#   GROWTH_SIZES    total grants at each step, ascending     [10000 1000000 10000000]
#   GROWTH_SAMPLE   refresh tokens kept per step (each used once: introspected, then
#                   refreshed); a run ends early when they run out   [100000]
#   GROWTH_BATCH    grants per bulk-load transaction  [50000]
#   GROWTH_BACKENDS which backends: "sqlite", "postgres" or both  [both when the URL is set]
#   GROWTH_WARM     1: before measuring a step, read its database once, as a server that
#                   has run a while has it cached (right after a load of 10 million grants
#                   only about half of it is, and every other read goes to the disk): SQLite's
#                   file through the operating system's cache; PostgreSQL's tables and indexes
#                   with pg_prewarm (a contrib extension it creates), into the operating
#                   system's cache and then, indexes first, into shared_buffers as far as they
#                   fit; 0: measure right after the load    [1]
# The database is kept only for the run (a temporary directory; a fresh PostgreSQL database
# mandate_growth_<pid>, dropped at exit). 10 million grants take about 12 GB on SQLite.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
SIZES=${GROWTH_SIZES:-10000 1000000 10000000}
SAMPLE=${GROWTH_SAMPLE:-100000}
BATCH=${GROWTH_BATCH:-50000}
WARM=${GROWTH_WARM:-1}
CONFIG=examples/demo.toml
CLIENT_ID=svc-agent
CLIENT_SECRET=demo-svc-agent-secret-0123456789abcdef
CODE_CLIENT=cli-agent
CRM_AUTH=demo-crm:demo-crm-resource-secret-0123456789abcdef
ADMIN_AUTH=admin-cli:demo-admin-cli-secret-0123456789abcdef

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is required"
command -v curl >/dev/null || die "curl is required"
[[ "$SAMPLE" =~ ^[1-9][0-9]*$ ]] || die "GROWTH_SAMPLE must be a positive integer"
prev=0
for size in $SIZES; do
    [[ "$size" =~ ^[1-9][0-9]*$ ]] && (( size > prev )) || die "GROWTH_SIZES must ascend: $SIZES"
    prev=$size
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mandate-growth.XXXXXX")
SERVER_PID=""
PG_ADMIN_URL=""
PG_DB=""

# shellcheck source=bench/lib.sh
source bench/lib.sh
stop_server() { stop_pid "$SERVER_PID"; SERVER_PID=""; }
stop_all() { stop_server; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_oha

TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
say "building: cargo build --release -p mandate -p mandate-loadgen"
cargo build --release -p mandate -p mandate-loadgen
BIN="$TARGET_DIR/release/mandate"
LOADGEN="$TARGET_DIR/release/mandate-loadgen"

NPROC=$(nproc 2>/dev/null || echo 1)
SERVER_PIN=()
LOAD_PIN=()
if command -v taskset >/dev/null && (( NPROC >= 2 )); then
    SERVER_PIN=(taskset -c 0)
    LOAD_PIN=(taskset -c 1)
fi
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
say "machine: ${NPROC} CPUs, ${CPU_MODEL:-unknown CPU}; load $(uptime | sed 's/.*load average/load average/')"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_server NAME: serve on the current database (DATA, DB_ARGS); sets SERVER_PID and BASE.
start_server() {
    local name=$1 port log
    port=$(free_port)
    log="$WORK/$name/server.log"
    BASE="http://127.0.0.1:$port"
    "${SERVER_PIN[@]}" "$BIN" serve --config "$CONFIG" --listen "127.0.0.1:$port" \
        --data-dir "$DATA" "${DB_ARGS[@]}" >>"$log" 2>&1 &
    SERVER_PID=$!
    local waited=0
    until curl -fsS -o /dev/null "$BASE/healthz" 2>/dev/null; do
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log" >&2; die "[$name] the server exited"; }
        (( waited++ < 600 )) || die "[$name] no answer from $BASE/healthz (log: $log)"
        sleep 0.1
    done
}

RESULTS="$WORK/results.tsv"
LOADS="$WORK/loads.tsv"
: >"$RESULTS"
: >"$LOADS"

# record BACKEND SIZE CASE FILE: one TSV line from oha's or loadgen's JSON.
record() {
    python3 - "$@" >>"$RESULTS" <<'PY'
import json, sys
backend, size, case, f = sys.argv[1:5]
d = json.load(open(f))
if "requests_per_sec" in d:
    codes = d.get("status") or {}
    rps, p50, p99, secs = d["requests_per_sec"], d["p50_ms"], d["p99_ms"], d["seconds"]
    ok = codes.get("200", 0)
    bad = sum(v for k, v in codes.items() if k != "200") + d.get("errors", 0)
else:
    codes = d.get("statusCodeDistribution") or {}
    rps = d["summary"]["requestsPerSec"]
    lat = d.get("latencyPercentiles") or {}
    p50, p99 = (lat.get("p50") or 0) * 1000, (lat.get("p99") or 0) * 1000
    secs = d["summary"].get("total") or 0
    ok = sum(v for k, v in codes.items() if str(k) == "200")
    bad = sum(v for k, v in codes.items() if str(k) != "200")
print(f"    {case}: {rps:.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms in {secs:.1f} s, 200s {ok}, other {bad}",
      file=sys.stderr)
print("\t".join([backend, size, case, f"{rps:.0f}", f"{p50:.2f}", f"{p99:.2f}", str(ok), str(bad)]))
PY
}

# pick NAME SIZE: writes $WORK/NAME/pick-SIZE: GROWTH_SAMPLE unused sampled refresh tokens,
# from every step's sample in proportion to that step's share of all grants, interleaved so
# that every part of the database is touched throughout the run. Marks them used.
pick() {
    python3 - "$WORK/$1" "$2" "$SAMPLE" <<'PY'
import json, os, sys
d, size, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
state_path = os.path.join(d, "samples.json")
state = json.load(open(state_path))  # [[step grants, file, used], ...]
total = sum(s[0] for s in state)
picked = []
for s in state:
    n = round(want * s[0] / total)
    lines = open(s[1]).read().split()
    take = lines[s[2]:s[2] + n]
    s[2] += len(take)
    picked.append(take)
json.dump(state, open(state_path, "w"))
out = []
i = 0
while any(picked):
    for p in picked:
        if i < len(p):
            out.append(p[i])
    i += 1
    if all(i >= len(p) for p in picked):
        break
with open(os.path.join(d, f"pick-{size}"), "w") as fh:
    fh.write("\n".join(out) + "\n")
print(len(out))
PY
}

# Reads the growth database's tables and indexes into the operating system's cache, then
# into shared_buffers: indexes first, then tables, each smallest first, so that what fits
# is what every lookup descends through.
warm_postgres() {
    psql "$PG_URL" -qAt >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_prewarm;
SELECT sum(pg_prewarm(c.oid, 'read')) FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'i');
SELECT sum(pg_prewarm(c.oid)) FROM (
  SELECT oid FROM pg_class
   WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'i')
   ORDER BY relkind = 'r', pg_relation_size(oid)) c;
SQL
}

# bench_backend NAME [database args...]
bench_backend() {
    local name=$1
    shift
    DATA="$WORK/$name/data"
    DB_ARGS=("$@")
    mkdir -p "$DATA"
    echo "[]" >"$WORK/$name/samples.json"
    # The first start applies the demo configuration (tenant acme, the agents).
    start_server "$name"
    stop_server
    local loaded=0
    for size in $SIZES; do
        local add=$((size - loaded)) out="$WORK/$name/sample-$size"
        say "[$name] growing to $size grants: bulk-load --grants $add"
        local t0 t1
        t0=$(date +%s.%N)
        "$BIN" --config "$CONFIG" --data-dir "$DATA" "${DB_ARGS[@]}" bulk-load --grants "$add" \
            --batch "$BATCH" --agent "$CODE_CLIENT" --refresh-tokens-out "$out" --sample "$SAMPLE" |
            tee "$WORK/$name/load-$size.log" | sed 's/^/    /'
        t1=$(date +%s.%N)
        local db_size="n/a"
        if [[ ${#DB_ARGS[@]} -eq 0 ]]; then
            db_size=$(du -sh "$DATA" | cut -f1)
        fi
        printf '%s\t%s\t%s\t%.1f\t%s\n' "$name" "$size" "$add" "$(echo "$t1 - $t0" | bc)" "$db_size" >>"$LOADS"
        python3 - "$WORK/$name/samples.json" "$add" "$out" <<'PY'
import json, sys
p, add, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = json.load(open(p)); s.append([add, out, 0]); json.dump(s, open(p, "w"))
PY
        loaded=$size
        if [[ "$WARM" == 1 && ${#DB_ARGS[@]} -eq 0 ]]; then
            say "[$name] reading the database file once (GROWTH_WARM=1)"
            cat "$DATA"/mandate.db* >/dev/null
        elif [[ "$WARM" == 1 ]]; then
            say "[$name] reading every table and index once with pg_prewarm (GROWTH_WARM=1)"
            warm_postgres
        fi
        start_server "$name"
        local picked
        picked=$(pick "$name" "$size")
        say "[$name] $size grants: server up; $picked sampled refresh tokens over all steps"
        local dir="$WORK/$name/$size"
        mkdir -p "$dir"
        # Unmeasured warm-up of the token endpoint (JIT-free, but caches and connections).
        "${LOAD_PIN[@]}" "$OHA" -z 2s -c "$CONNECTIONS" --no-tui --output-format json -m POST \
            -a "$CLIENT_ID:$CLIENT_SECRET" -T application/x-www-form-urlencoded \
            -d grant_type=client_credentials "$BASE/token" >/dev/null
        "${LOAD_PIN[@]}" "$OHA" -z "$DURATION" -c "$CONNECTIONS" --no-tui --output-format json \
            -m POST -a "$CLIENT_ID:$CLIENT_SECRET" -T application/x-www-form-urlencoded \
            -d grant_type=client_credentials "$BASE/token" >"$dir/token.json"
        record "$name" "$size" client-credentials "$dir/token.json"
        sed 's/^/token=/' "$WORK/$name/pick-$size" >"$dir/introspect.lines"
        "${LOAD_PIN[@]}" "$LOADGEN" -z "${DURATION%s}" -c "$CONNECTIONS" -a "$CRM_AUTH" \
            --bodies "$dir/introspect.lines" "$BASE/introspect" >"$dir/introspect.json"
        record "$name" "$size" introspect-refresh-token "$dir/introspect.json"
        sed "s/^/grant_type=refresh_token\\&client_id=$CODE_CLIENT\\&refresh_token=/" \
            "$WORK/$name/pick-$size" >"$dir/refresh.lines"
        "${LOAD_PIN[@]}" "$LOADGEN" -z "${DURATION%s}" -c "$CONNECTIONS" \
            --bodies "$dir/refresh.lines" "$BASE/token" >"$dir/refresh.json"
        record "$name" "$size" refresh "$dir/refresh.json"
        local admin_token
        admin_token=$(curl -fsS -u "$ADMIN_AUTH" -d grant_type=client_credentials \
            -d scope=mandate.admin -d "resource=$BASE/admin/v1" "$BASE/token" |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
        "${LOAD_PIN[@]}" "$OHA" -z "$DURATION" -c "$CONNECTIONS" --no-tui --output-format json \
            -H "authorization: Bearer $admin_token" \
            "$BASE/admin/v1/grants?tenant_id=acme" >"$dir/admin-grants.json"
        record "$name" "$size" admin-grants-page "$dir/admin-grants.json"
        rm -f "$dir"/*.lines "$WORK/$name/pick-$size"
        stop_server
    done
    rm -f "$WORK/$name"/sample-*
}

BACKENDS=${GROWTH_BACKENDS:-sqlite${MANDATE_BENCH_POSTGRES_URL:+ postgres}}
for backend in $BACKENDS; do
    case $backend in
        sqlite) bench_backend sqlite ;;
        postgres)
            [[ -n "${MANDATE_BENCH_POSTGRES_URL:-}" ]] || die "postgres needs MANDATE_BENCH_POSTGRES_URL"
            command -v psql >/dev/null || die "psql is needed to create a fresh database"
            PG_ADMIN_URL=$MANDATE_BENCH_POSTGRES_URL
            PG_DB="mandate_growth_$$"
            psql "$PG_ADMIN_URL" -qAtc "CREATE DATABASE \"$PG_DB\"" >/dev/null
            PG_URL=$(python3 - "$PG_ADMIN_URL" "$PG_DB" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
print(urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + sys.argv[2], u.query, u.fragment)))
PY
)
            bench_backend postgres --database-url "$PG_URL"
            psql "$PG_ADMIN_URL" -qAtc "SELECT pg_size_pretty(pg_database_size('$PG_DB'))" |
                sed 's/^/==> [postgres] database size: /'
            ;;
        *) die "unknown backend $backend" ;;
    esac
done

echo
echo "Mandate growth benchmark: $(date -u '+%Y-%m-%d %H:%M UTC'), ${NPROC} CPUs (${CPU_MODEL:-unknown})"
echo "server on CPU 0, load on CPU 1; oha / loadgen -z $DURATION -c $CONNECTIONS"
echo
echo "Loads (mandate bulk-load):"
python3 - "$LOADS" <<'PY'
import sys
for l in open(sys.argv[1]):
    b, size, add, secs, db = l.rstrip("\n").split("\t")
    rate = int(add) / max(float(secs), 1e-9)
    print(f"  {b:<9} to {int(size):>11,} grants: +{int(add):,} in {float(secs):.1f} s ({rate:,.0f} grants/s), data dir {db}")
PY
echo
python3 - "$RESULTS" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
hdr = ("backend", "grants", "case", "requests/s", "p50 ms", "p99 ms", "200s", "non-200/errors")
rows = [[r[0], f"{int(r[1]):,}"] + r[2:] for r in rows]
w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(hdr)]
line = lambda cells: "  ".join(c.rjust(w[i]) if i in (1, 3, 4, 5, 6, 7) else c.ljust(w[i]) for i, c in enumerate(cells))
print(line(hdr))
for r in rows:
    print(line(r))
if any(r[7] != "0" for r in rows):
    print("warning: some requests did not answer 200", file=sys.stderr)
PY
