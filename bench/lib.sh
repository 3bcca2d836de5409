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
