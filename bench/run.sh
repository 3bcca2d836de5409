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
#        b) POST /introspect  of one access token obtained first, same Basic auth (as a
#                             resource server asks on every call the token makes; on
#                             PostgreSQL a node answers it from memory after the first time)
#      then loads BENCH_GRANTS user grants with `mandate bulk-load` (each with a refresh
#      family; plus as many fresh authorization codes) and runs bench/loadgen (one line per
#      request: single-use credentials cannot be replayed by oha) against
#        c) POST /token       authorization_code + PKCE for the public agent `cli-agent`,
#                             each request redeeming a different loaded code
#        d) POST /token       refresh_token, each request a different loaded refresh token
#      then fetches BENCH_GUARD_TOKENS distinct access tokens and runs bench/loadgen against
#        b') POST /introspect a different token every request, never introspected before (the
#                             revocation state read from the database every time)
#      and finally the resource-server guard (`mandate guard`, reverse proxy, in front of the
#      server's /jwks.json as a cheap upstream, on the server's CPU):
#        e) GET via the guard, a different access token every request (signature verified)
#        f) GET via the guard, one token repeated (oha; the verified-token cache answers)
#        g) GET /jwks.json directly (the upstream alone, to subtract from e and f)
#      and prints requests/s, p50 and p99 latency per case, and the CPU time per request of
#      the process serving it (the server; the guard in e and f), with what one core would
#      sustain at that cost (1e6 / µs);
#   5. repeats 3-4 on PostgreSQL when MANDATE_BENCH_POSTGRES_URL is set;
#   6. runs cases a-d against the peer, the Node oidc-provider (a certified OpenID provider)
#      from ../shared/peers/oidc-provider, pinned the same way, and prints Mandate's throughput
#      (and per-core capacity) as a multiple of the peer's. The peer issues an EdDSA JWT for
#      resource .../jwt; it introspects only opaque tokens, so its introspection case uses an
#      opaque one. a and b run the shared configuration (server.js: one client-credentials
#      client). c and d run bench/peer-flows.mjs: the same installed oidc-provider, keys and
#      resource settings plus one public client (PKCE, loopback redirect, offline_access). It
#      mints BENCH_GRANTS codes and as many refresh tokens through the provider's own models
#      before it listens, into an unbounded in-memory store (the built-in one keeps only
#      about 1000 entries): no database, which favours the peer. The peer has no guard, so
#      cases e-g are Mandate only (n/a for the peer).
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
#   BENCH_GRANTS        grants bulk-loaded for the refresh and code cases; also the number
#                       of codes and of sampled refresh tokens (each used once), and of
#                       codes and refresh tokens the peer mints for them  [200000]
#   BENCH_GUARD_TOKENS  distinct access tokens fetched for the uncached guard and
#                       introspection cases                     [250000]
#   BENCH_IDLE_WAIT     seconds to leave a new server idle before reading its idle RSS
#                       (0 = read it only when it is ready)      [15]
#   BENCH_BUILD=0       measure the release binaries already built instead of building first
#   BENCH_CASES         comma-separated cases to run, of token, introspect, code, refresh,
#                       introspect-new (b'), guard (e, f and g) [all of them]
#   BENCH_PEER          1 to measure the peer too when it is found (needs node and npm; its
#                       start script installs its pinned packages on first use), 0 to skip [1]
#   BENCH_PEER_DIR      where the peer is              [../shared/peers/oidc-provider]
#   BENCH_PROFILE       a directory: also write a flamegraph of every Mandate case, sampled
#                       during its warm-up, to DIR/<backend>-<case>.svg (needs perf, from
#                       Debian's linux-perf; installs inferno with cargo if missing). The
#                       measured runs are never sampled. [none]
#   BENCH_PROFILE_HZ    samples per second for BENCH_PROFILE   [499]
set -euo pipefail

# Resolved before the cd below, so a relative path is the caller's.
PROFILE_DIR=${BENCH_PROFILE:+$(realpath -m "$BENCH_PROFILE")}
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
WARMUP=${BENCH_WARMUP:-2s}
RUNS=${BENCH_RUNS:-1}
FEATURES=${BENCH_FEATURES:-}
GRANTS=${BENCH_GRANTS:-200000}
GUARD_TOKENS=${BENCH_GUARD_TOKENS:-250000}
IDLE_WAIT=${BENCH_IDLE_WAIT:-15}
# The code-flow agent (public: no secret) and the demo CRM's feed credential, from $CONFIG.
CODE_CLIENT=cli-agent
CRM_RESOURCE=http://127.0.0.1:8081
CRM_FEED_ID=demo-crm
CRM_FEED_SECRET=demo-crm-resource-secret-0123456789abcdef
CLIENT_ID=svc-agent
CLIENT_SECRET=demo-svc-agent-secret-0123456789abcdef
CONFIG=examples/demo.toml

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is required (it parses oha's JSON output)"
command -v curl >/dev/null || die "curl is required (health check and the first token)"
command -v cargo >/dev/null || die "cargo is required (https://rustup.rs)"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ "$GRANTS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_GRANTS must be a positive integer"
[[ "$GUARD_TOKENS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_GUARD_TOKENS must be a positive integer"
[[ "$IDLE_WAIT" =~ ^[0-9]+$ ]] || die "BENCH_IDLE_WAIT must be a whole number of seconds"
if [[ -n "$PROFILE_DIR" && ( "$WARMUP" == "0" || "$WARMUP" == "0s" ) ]]; then
    die "BENCH_PROFILE samples the warm-up: set BENCH_WARMUP to a duration, not 0"
fi

# --- state cleaned up on exit ------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mandate-bench.XXXXXX")
SERVER_PID=""
GUARD_PID=""
PG_ADMIN_URL=""
PG_DB=""

# shellcheck source=bench/lib.sh
source bench/lib.sh
stop_server() { stop_pid "$SERVER_PID"; SERVER_PID=""; }
stop_guard() { stop_pid "$GUARD_PID"; GUARD_PID=""; }
stop_all() { stop_guard; stop_server; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. the load generator ---------------------------------------------------------------
ensure_oha
say "load generator: $("$OHA" --version 2>/dev/null | head -n1) ($OHA)"
if [[ -n "$PROFILE_DIR" ]]; then
    ensure_profiler
    mkdir -p "$PROFILE_DIR"
    say "flamegraphs of each case's warm-up go to $PROFILE_DIR"
fi

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
BUILD=(cargo build --release -p mandate -p mandate-loadgen)
if [[ -n "$FEATURES" ]]; then
    # A separate target directory, so a feature build never replaces the normal binary.
    TARGET_DIR="$TARGET_DIR/bench-${FEATURES//[^a-z0-9-]/_}"
    BUILD+=(--features "$FEATURES" --target-dir "$TARGET_DIR")
fi
if [[ "${BENCH_BUILD:-1}" == "0" ]]; then
    say "BENCH_BUILD=0: using the binaries already in $TARGET_DIR/release (not rebuilt)"
else
    say "building mandate (release): ${BUILD[*]}"
    "${BUILD[@]}"
fi
BIN="$TARGET_DIR/release/mandate"
LOADGEN="$TARGET_DIR/release/mandate-loadgen"
[[ -x "$BIN" ]] || die "built binary not found at $BIN"
[[ -x "$LOADGEN" ]] || die "built load generator not found at $LOADGEN"

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
    DATA=$data
    DB_ARGS=("$@")
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

# oha_run OUTFILE DURATION URL BODY: one bounded oha run, JSON to OUTFILE. BODY "GET:<token>"
# means a GET with that bearer token instead of a POST.
oha_run() {
    local out=$1 duration=$2 url=$3 body=$4
    if [[ "$body" == GET:* ]]; then
        "${LOAD_PIN[@]}" "$OHA" -z "$duration" -c "$CONNECTIONS" "${OHA_NO_TUI[@]}" "${OHA_JSON[@]}" \
            -H "Authorization: Bearer ${body#GET:}" "$url" >"$out"
        return
    fi
    "${LOAD_PIN[@]}" "$OHA" -z "$duration" -c "$CONNECTIONS" "${OHA_NO_TUI[@]}" "${OHA_JSON[@]}" \
        -m POST -a "$AUTH" \
        -T application/x-www-form-urlencoded -d "$body" \
        "$url" >"$out"
}

# loadgen_run OUTFILE DURATION URL KIND FILE [extra loadgen args]: one bounded run of
# bench/loadgen, every request using the next line of FILE once (KIND: bodies or bearers).
loadgen_run() {
    local out=$1 duration=$2 url=$3 kind=$4 file=$5
    shift 5
    "${LOAD_PIN[@]}" "$LOADGEN" -z "${duration%s}" -c "$CONNECTIONS" "--$kind" "$file" "$@" \
        "$url" >"$out"
}

# cpu_ticks PID: CPU time (clock ticks, user + system) used so far by PID and its descendants.
# Taken around every measured run, it gives the CPU cost per request, which on a shared VM is
# steadier than requests/s (time the hypervisor steals slows the clock, not the CPU count), and
# 1e6 / (µs per request) is what one core would sustain.
cpu_ticks() {
    python3 - "$1" <<'PY'
import os, sys
root, children, ticks = int(sys.argv[1]), {}, {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    fields = stat[stat.rindex(")") + 2:].split()  # from field 3 (state) on
    children.setdefault(int(fields[1]), []).append(int(pid))
    ticks[int(pid)] = int(fields[11]) + int(fields[12])  # utime + stime
total, todo = 0, [root]
while todo:
    pid = todo.pop()
    total += ticks.get(pid, 0)
    todo += children.get(pid, [])
print(total)
PY
}
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
export CLK_TCK
# The process whose CPU a run is charged to: the server, or the guard in the guard cases.
CPU_PID=""

RESULTS="$WORK/results.tsv"
: >"$RESULTS"

# warm_up BACKEND CASE COMMAND...: runs COMMAND, a case's warm-up; with BENCH_PROFILE, samples
# the process the case is charged to meanwhile and writes its flamegraph. Not the peer's: Node's
# JIT-compiled frames have no symbols perf can read.
warm_up() {
    local backend=$1 case=$2
    shift 2
    if [[ -z "$PROFILE_DIR" || "$backend" == peer ]]; then
        "$@"
        return
    fi
    local svg="$PROFILE_DIR/$backend-$case.svg"
    profile_start "${CPU_PID:-$SERVER_PID}" "$WORK/$backend-$case.perf"
    "$@"
    profile_finish "$WORK/$backend-$case.perf" "$svg" \
        "Mandate $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $backend, $case: $CONNECTIONS connections, warm-up $WARMUP"
    say "[$backend] $case: flamegraph of the warm-up in $svg"
}

# measure BACKEND CASE PATH BODY: warm-up, RUNS measured runs, one summary line.
measure() {
    local backend=$1 case=$2 path=$3 body=$4
    local dir="$WORK/$backend"
    mkdir -p "$dir"
    if [[ "$WARMUP" != "0" && "$WARMUP" != "0s" ]]; then
        say "[$backend] $case: warm-up $WARMUP"
        warm_up "$backend" "$case" oha_run "$dir/$case-warmup.json" "$WARMUP" "$BASE$path" "$body"
    fi
    local files=()
    for run in $(seq 1 "$RUNS"); do
        say "[$backend] $case: run $run/$RUNS: oha -z $DURATION -c $CONNECTIONS ${body%%:*} $path"
        local ticks
        ticks=$(cpu_ticks "${CPU_PID:-$SERVER_PID}")
        oha_run "$dir/$case-$run.json" "$DURATION" "$BASE$path" "$body"
        echo $(($(cpu_ticks "${CPU_PID:-$SERVER_PID}") - ticks)) >"$dir/$case-$run.cpu"
        files+=("$dir/$case-$run.json")
    done
    summarize "$backend" "$case" "${files[@]}"
}

# measure_lines BACKEND CASE URL KIND FILE [extra loadgen args]: like measure, with
# bench/loadgen using each line of FILE once: the warm-up and every run get lines of their
# own (the warm-up the first quarter of the file, the runs equal shares of the rest).
measure_lines() {
    local backend=$1 case=$2 url=$3 kind=$4 file=$5
    shift 5
    local dir="$WORK/$backend"
    mkdir -p "$dir"
    local total warm=0 share
    total=$(wc -l <"$file")
    if [[ "$WARMUP" != "0" && "$WARMUP" != "0s" ]]; then
        warm=$((total / 4))
        head -n "$warm" "$file" >"$dir/$case-warmup.lines"
        say "[$backend] $case: warm-up $WARMUP ($warm lines)"
        warm_up "$backend" "$case" \
            loadgen_run "$dir/$case-warmup.json" "$WARMUP" "$url" "$kind" "$dir/$case-warmup.lines" "$@"
    fi
    share=$(((total - warm) / RUNS))
    local files=()
    for run in $(seq 1 "$RUNS"); do
        # awk, not tail | head: head leaving early would kill tail with SIGPIPE (set -o pipefail).
        awk -v from="$((warm + (run - 1) * share))" -v to="$((warm + run * share))" \
            'NR > from && NR <= to' "$file" >"$dir/$case-$run.lines"
        say "[$backend] $case: run $run/$RUNS: loadgen -z $DURATION -c $CONNECTIONS --$kind ($share single-use lines) $url"
        local ticks
        ticks=$(cpu_ticks "${CPU_PID:-$SERVER_PID}")
        loadgen_run "$dir/$case-$run.json" "$DURATION" "$url" "$kind" "$dir/$case-$run.lines" "$@"
        echo $(($(cpu_ticks "${CPU_PID:-$SERVER_PID}") - ticks)) >"$dir/$case-$run.cpu"
        files+=("$dir/$case-$run.json")
    done
    rm -f "$dir"/*.lines
    summarize "$backend" "$case" "${files[@]}"
}

# summarize BACKEND CASE FILES...: one TSV line (medians over the runs) from oha's or
# loadgen's JSON.
summarize() {
    python3 - "$@" >>"$RESULTS" <<'PY'
import json, os, statistics, sys
backend, case, files = sys.argv[1], sys.argv[2], sys.argv[3:]
runs = []
def cpu_us(f, requests):
    """CPU µs per request of the charged process in this run (bench/run.sh cpu_ticks)."""
    try:
        ticks = int(open(f[: -len(".json")] + ".cpu").read())
    except (OSError, ValueError):
        return float("nan")
    return ticks * 1e6 / int(os.environ.get("CLK_TCK", "100")) / max(requests, 1)
for f in files:
    with open(f) as fh:
        d = json.load(fh)
    if "requests_per_sec" in d:  # bench/loadgen
        codes = d.get("status") or {}
        ok = sum(v for k, v in codes.items() if k == "200")
        bad = sum(v for k, v in codes.items() if k != "200") + d.get("errors", 0)
        runs.append({"rps": d["requests_per_sec"], "p50": d["p50_ms"], "p99": d["p99_ms"],
                     "ok": ok, "bad": bad, "codes": codes, "errors": {},
                     "cpu": cpu_us(f, ok + bad)})
        note = " (lines ran out: shorter run)" if d.get("lines_exhausted") else ""
        print(f"    {f.rsplit('/', 1)[-1]}: {d['requests_per_sec']:.0f} req/s, p50 {d['p50_ms']:.2f} ms,"
              f" p99 {d['p99_ms']:.2f} ms in {d['seconds']:.1f} s, 200s {ok}, other {bad}"
              f" {codes if bad else ''}{note}, {runs[-1]['cpu']:.0f} CPU µs/request", file=sys.stderr)
        continue
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
        "cpu": cpu_us(f, ok + bad),
    })
    print(f"    {f.rsplit('/', 1)[-1]}: {runs[-1]['rps']:.0f} req/s, p50 {runs[-1]['p50']:.2f} ms,"
          f" p99 {runs[-1]['p99']:.2f} ms, 200s {ok}, other {bad} {codes if bad else ''}{errors or ''},"
          f" {runs[-1]['cpu']:.0f} CPU µs/request", file=sys.stderr)
med = lambda k: statistics.median(r[k] for r in runs)
cpu = med("cpu")
per_core = f"{1e6 / cpu:.0f}" if cpu == cpu and cpu > 0 else "n/a"
print("\t".join([backend, case, f"{med('rps'):.0f}", f"{med('p50'):.2f}", f"{med('p99'):.2f}",
                 str(sum(r["ok"] for r in runs)), str(sum(r["bad"] for r in runs)),
                 f"{cpu:.0f}" if cpu == cpu else "n/a", per_core]))
PY
}

CASES=",${BENCH_CASES:-token,introspect,code,refresh,introspect-new,guard},"
# wants CASE: whether BENCH_CASES selects it.
wants() { [[ "$CASES" == *",$1,"* ]]; }

# bench_backend NAME [extra mandate args...]
bench_backend() {
    local name=$1
    shift
    start_server "$name" "$@"
    if [[ "$IDLE_WAIT" != "0" ]]; then
        # Startup work (argon2id for the configured users, 19 MiB each) stays in the blocking
        # pool's thread until that thread idles out after 10 s; idle means after that.
        sleep "$IDLE_WAIT"
        say "[$name] idle RSS after ${IDLE_WAIT} s: $(rss_mib "$SERVER_PID")"
    fi
    local token
    token=$(fetch_token) || die "[$name] could not obtain an access token from $BASE/token"
    say "[$name] access token for introspection obtained (${#token} chars)"
    # The introspection case must measure an active token, not the cheap inactive answer.
    curl -fsS -u "$CLIENT_ID:$CLIENT_SECRET" --data-urlencode "token=$token" "$BASE/introspect" |
        python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("active") is True else 1)' ||
        die "[$name] /introspect does not report the benchmark token as active"
    if wants token; then measure "$name" token /token "grant_type=client_credentials"; fi
    if wants introspect; then measure "$name" introspect /introspect "token=$token"; fi
    if wants code || wants refresh; then bench_single_use "$name"; fi
    if wants introspect-new || wants guard; then
        fetch_access_tokens "$name"
        if wants introspect-new; then bench_introspect_new "$name"; fi
        if wants guard; then bench_guard "$name"; fi
        rm -f "$WORK/$name/access-tokens"
    fi
    say "[$name] server RSS after the runs: $(rss_mib "$SERVER_PID")"
    stop_server
}

# bench_single_use NAME: bulk-loads GRANTS grants into the running server's database, with a
# refresh token sampled from every one and as many fresh codes, then measures the code
# exchange and refresh, each request using a credential once.
bench_single_use() {
    local name=$1 dir="$WORK/$1"
    say "[$name] loading $GRANTS grants with refresh families and $GRANTS codes (mandate bulk-load)"
    "${LOAD_PIN[@]}" "$BIN" --config "$CONFIG" --data-dir "$DATA" "${DB_ARGS[@]}" bulk-load \
        --grants "$GRANTS" --agent "$CODE_CLIENT" \
        --refresh-tokens-out "$dir/refresh-tokens" --sample "$GRANTS" \
        --codes-out "$dir/codes" --codes "$GRANTS" | sed 's/^/    /'
    single_use_cases "$name" "$CODE_CLIENT" "$dir"
}

# single_use_cases NAME CLIENT DIR: turns the fixtures DIR/codes (code<TAB>verifier<TAB>
# redirect URI per line) and DIR/refresh-tokens (one per line) into token requests of the
# public client CLIENT, then measures the code exchange (first: Mandate's codes live 60 s) and
# refresh against $BASE/token, each request using a credential once. Shared by Mandate and
# the peer, so both answer the same requests.
single_use_cases() {
    local name=$1 client=$2 dir=$3
    # Fixtures become request bodies (and are deleted with $WORK at exit).
    python3 - "$dir/codes" "$client" >"$dir/code-bodies" <<'PY'
import sys, urllib.parse
for line in open(sys.argv[1]):
    code, verifier, redirect = line.rstrip("\n").split("\t")
    print(urllib.parse.urlencode({"grant_type": "authorization_code", "code": code,
          "code_verifier": verifier, "redirect_uri": redirect, "client_id": sys.argv[2]}))
PY
    sed "s/^/grant_type=refresh_token\&client_id=$client\&refresh_token=/" \
        "$dir/refresh-tokens" >"$dir/refresh-bodies"
    rm -f "$dir/codes" "$dir/refresh-tokens"
    if wants code; then measure_lines "$name" code "$BASE/token" bodies "$dir/code-bodies"; fi
    if wants refresh; then measure_lines "$name" refresh "$BASE/token" bodies "$dir/refresh-bodies"; fi
    rm -f "$dir/code-bodies" "$dir/refresh-bodies"
}

# fetch_access_tokens NAME: GUARD_TOKENS distinct client-credentials access tokens from the
# running server, one per line in $WORK/NAME/access-tokens, for the cases that must not
# repeat a token.
fetch_access_tokens() {
    local name=$1 dir="$WORK/$1"
    mkdir -p "$dir"
    say "[$name] fetching $GUARD_TOKENS distinct access tokens"
    awk -v n="$GUARD_TOKENS" 'BEGIN { for (i = 0; i < n; i++) print "grant_type=client_credentials" }' \
        >"$dir/cc-bodies"
    loadgen_run "$dir/fetch.json" 600 "$BASE/token" bodies "$dir/cc-bodies" \
        -a "$CLIENT_ID:$CLIENT_SECRET" --extract access_token --extract-to "$dir/access-tokens" ||
        die "[$name] fetching access tokens failed"
    rm -f "$dir/cc-bodies"
    say "[$name] got $(wc -l <"$dir/access-tokens") tokens"
}

# bench_introspect_new NAME: introspection of a token never introspected before, every
# request (fetch_access_tokens first): what a node cannot answer from memory.
bench_introspect_new() {
    local name=$1 dir="$WORK/$1"
    sed 's/^/token=/' "$dir/access-tokens" >"$dir/introspect-bodies"
    measure_lines "$name" introspect-new "$BASE/introspect" bodies "$dir/introspect-bodies" \
        -a "$CLIENT_ID:$CLIENT_SECRET"
    rm -f "$dir/introspect-bodies"
}

# bench_guard NAME: `mandate guard` as a reverse proxy in front of the running server's
# /jwks.json (a cheap upstream), pinned to the server's CPU: a different token per request
# (every signature verified), one token repeated (cached), and the upstream alone
# (fetch_access_tokens first).
bench_guard() {
    local name=$1 dir="$WORK/$1"
    cat >"$dir/guard-routes.toml" <<'ROUTES'
[[routes]]
path = "/jwks.json"
methods = ["GET"]
scopes = ["tickets.read"]

[[routes]]
path = "/healthz"
public = true
ROUTES
    local port log="$dir/guard.log"
    port=$(free_port)
    local gbase="http://127.0.0.1:$port"
    say "[$name] starting the guard: ${SERVER_PIN[*]} $BIN guard --listen 127.0.0.1:$port --upstream $BASE"
    MANDATE_GUARD_FEED_SECRET=$CRM_FEED_SECRET "${SERVER_PIN[@]}" "$BIN" guard --issuer "$BASE" \
        --resource "$CRM_RESOURCE" --upstream "$BASE" --routes "$dir/guard-routes.toml" \
        --listen "127.0.0.1:$port" --feed-client-id "$CRM_FEED_ID" >"$log" 2>&1 &
    GUARD_PID=$!
    local waited=0
    until curl -fsS -o /dev/null "$gbase/healthz" 2>/dev/null; do
        if ! kill -0 "$GUARD_PID" 2>/dev/null; then
            cat "$log" >&2
            die "[$name] the guard exited (log above)"
        fi
        (( waited++ < 300 )) || die "[$name] the guard did not answer (log: $log)"
        sleep 0.1
    done
    local one
    one=$(head -n 1 "$dir/access-tokens")
    [[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $one" "$gbase/jwks.json")" == 200 ]] ||
        die "[$name] the guard does not let a valid token through"
    # The guard cases' CPU is the guard's own (the upstream's is upstream-only's figure).
    CPU_PID=$GUARD_PID
    measure_lines "$name" guard-uncached "$gbase/jwks.json" bearers "$dir/access-tokens" -m GET
    local saved_base=$BASE
    BASE=$gbase
    measure "$name" guard-cached /jwks.json "GET:$one"
    BASE=$saved_base
    CPU_PID=""
    measure "$name" upstream-only /jwks.json "GET:$one"
    stop_guard
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
    if wants token; then
        measure peer token /token "grant_type=client_credentials&resource=$(python3 -c 'import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1], safe=""))' "$JWT_RS")"
    fi
    if wants introspect; then measure peer introspect "$INTROSPECT" "token=$opaque"; fi
    say "[peer] RSS after the runs: $(rss_mib "$SERVER_PID")"
    stop_server

    # The code and refresh cases: bench/peer-flows.mjs runs the oidc-provider that the shared
    # start script has just installed, with a public client, and mints the single-use
    # credentials (GRANTS codes, as many refresh tokens) before it listens.
    if wants code || wants refresh; then
        PEER_CODE_CLIENT=$(sed -n "s/^export const CLIENT_ID = '\(.*\)';/\1/p" bench/peer-flows.mjs)
        [[ -n "$PEER_CODE_CLIENT" ]] || die "cannot read the code-flow client id from bench/peer-flows.mjs"
        port=$(free_port)
        BASE="http://127.0.0.1:$port"
        say "[peer] starting: ${SERVER_PIN[*]} node bench/peer-flows.mjs $port (mints $GRANTS codes and $GRANTS refresh tokens first)"
        PEER_DIR=$PEER_DIR PEER_MINT=$GRANTS PEER_MINT_DIR="$WORK/peer" \
            "${SERVER_PIN[@]}" node bench/peer-flows.mjs "$port" >"$WORK/peer/flows.log" 2>&1 &
        SERVER_PID=$!
        # It answers only once minting is done (about 15 s per 200000 of each on one core).
        wait_ready peer "$BASE/.well-known/openid-configuration" "$WORK/peer/flows.log" 900
        grep '^minted [0-9]* codes' "$WORK/peer/flows.log" | sed 's/^/    /' || true
        single_use_cases peer "$PEER_CODE_CLIENT" "$WORK/peer"
        say "[peer] RSS after the runs: $(rss_mib "$SERVER_PID")"
        stop_server
    fi
fi

say "load after: $(uptime | sed 's/.*load average/load average/')"

echo
echo "Mandate load benchmark: $(date -u '+%Y-%m-%d %H:%M UTC'), ${NPROC} CPUs (${CPU_MODEL:-unknown}), $PLACEMENT"
echo "oha -z $DURATION -c $CONNECTIONS (HTTP/1.1 keep-alive), median of $RUNS run(s), warm-up $WARMUP"
python3 - "$RESULTS" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
hdr = ("backend", "case", "requests/s", "p50 ms", "p99 ms", "200s", "non-200/errors",
       "CPU µs/req", "per core/s")
w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(hdr)]
line = lambda cells: "  ".join(c.rjust(w[i]) if i >= 2 else c.ljust(w[i]) for i, c in enumerate(cells))
print(line(hdr))
for r in rows:
    print(line(r))
peer = {r[1]: float(r[2]) for r in rows if r[0] == "peer"}
peer_cpu = {r[1]: float(r[7]) for r in rows if r[0] == "peer" and r[7] != "n/a"}
if peer:
    print()
    print("Mandate as a multiple of the peer (oidc-provider) in this run: requests/s, and")
    print("requests per core (the peer's CPU per request over Mandate's):")
    for r in rows:
        if r[0] != "peer" and r[1] != "upstream-only":
            if not peer.get(r[1]):
                print(f"  {r[0]:<9} {r[1]:<15}   n/a (the peer is not set up for this case)")
                continue
            per_core = (f"{peer_cpu[r[1]] / float(r[7]):5.1f}x per core"
                        if r[1] in peer_cpu and r[7] != "n/a" and float(r[7]) > 0 else "")
            print(f"  {r[0]:<9} {r[1]:<15} {float(r[2]) / peer[r[1]]:5.1f}x  {per_core}")
bad = [r for r in rows if r[6] != "0"]
if bad:
    print("warning: some requests did not answer 200; see the per-run lines above", file=sys.stderr)
PY
