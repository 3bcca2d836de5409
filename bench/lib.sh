# Shared by bench/run.sh and bench/growth.sh (sourced, not run): stopping what a script
# started, cleaning up on exit, and the load generator oha. The sourcing script sets WORK,
# PG_ADMIN_URL and PG_DB, and defines stop_all (what cleanup stops first).

# stop_pid PID: asks the process to stop, waits up to 10 s, then kills it; reaps it.
stop_pid() {
    local pid=$1
    [[ -n "$pid" ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# On exit: stop what was started, drop the PostgreSQL database created, keep oha's JSON, the
# logs and summaries in BENCH_OUT (never the data directories), remove the work directory.
cleanup() {
    local status=$?
    stop_pid "$PROFILE_PID"
    stop_all
    if [[ -n "$PG_DB" && -n "$PG_ADMIN_URL" ]]; then
        psql "$PG_ADMIN_URL" -qAtc "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if [[ -n "${BENCH_OUT:-}" ]]; then
        (cd "$WORK" && find . \( -name '*.json' -o -name '*.log' -o -name '*.tsv' \) -type f |
            while read -r f; do
                mkdir -p "$BENCH_OUT/$(dirname "$f")" && cp "$f" "$BENCH_OUT/$f"
            done) || true
    fi
    rm -rf "$WORK"
    exit "$status"
}

# Sets OHA, installing oha with cargo the first time.
ensure_oha() {
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    if ! command -v oha >/dev/null; then
        printf '==> %s\n' "oha not found: installing it with 'cargo install oha --locked' (a few minutes, once)"
        cargo install oha --locked
    fi
    OHA=$(command -v oha)
}

# Flamegraphs (bench/run.sh, BENCH_PROFILE=DIR): a case's warm-up is sampled with perf and its
# stacks folded into an SVG by inferno. The warm-up, never a measured run, so sampling's own
# cost stays out of the figures. PROFILE_PID is the sampler while one runs (stopped on exit).
PROFILE_PID=""

# ensure_profiler: dies unless perf can sample here; installs inferno with cargo the first time.
ensure_profiler() {
    command -v perf >/dev/null ||
        die "BENCH_PROFILE needs perf (Debian: apt-get install linux-perf)"
    perf record -q -o /dev/null -- true >/dev/null 2>&1 ||
        die "perf cannot sample here (kernel.perf_event_paranoid is $(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo unknown); run as root or lower it)"
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    if ! command -v inferno-flamegraph >/dev/null || ! command -v inferno-collapse-perf >/dev/null; then
        printf '==> %s\n' "inferno not found: installing it with 'cargo install inferno --locked' (a minute or two, once)"
        cargo install inferno --locked
    fi
}

# profile_start PID FILE: samples PID's stacks (all its threads, DWARF unwinding, since release
# builds keep no frame pointers) into FILE until profile_finish.
profile_start() {
    perf record -q -F "${BENCH_PROFILE_HZ:-499}" --call-graph dwarf,16384 -o "$2" -p "$1" \
        >/dev/null 2>&1 &
    PROFILE_PID=$!
    # perf attaches in well under this; samples before the load are only idle.
    sleep 0.5
}

# profile_finish FILE SVG TITLE: stops the sampler and writes the flamegraph of FILE to SVG.
profile_finish() {
    kill -INT "$PROFILE_PID" 2>/dev/null || true
    wait "$PROFILE_PID" 2>/dev/null || true
    PROFILE_PID=""
    perf script -i "$1" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph --title "$3" >"$2"
    rm -f "$1"
}
