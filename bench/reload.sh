#!/usr/bin/env bash
# Failed requests during repeated HUP reloads: gunicornd's builtin:hello
# against Python gunicorn's sync worker serving the same body, each with 4
# workers on loopback, under the same wrk load while the master gets a HUP
# every second. gunicorn stops its old workers as soon as it has forked their
# replacements; gunicornd retires them only once the replacements have booted.
# See bench/README.md.
#
# Environment:
#   GUNICORND_BIN   use this binary instead of building target/release/gunicornd
#   BENCH_RELOADS   HUPs sent to each master, one a second (default 10)
#   BENCH_DURATION  seconds of wrk load per server (default 12; at least
#                   BENCH_RELOADS + 2, so the last reload happens under load)
#   BENCH_CONNS     concurrent connections (default 16)
#   BENCH_THREADS   wrk threads (default 2)
set -euo pipefail

readonly RELOADS="${BENCH_RELOADS:-10}"
readonly DURATION="${BENCH_DURATION:-12}"
readonly CONNS="${BENCH_CONNS:-16}"
readonly THREADS="${BENCH_THREADS:-2}"
readonly WORKERS=4
# wrk's "timeout" counter flags a request still unanswered after this long.
# It is not a failure (the answer may still come, and wrk then counts it as a
# completed request too), so it is reported on its own.
readonly WRK_TIMEOUT_S=5
# How long the last generation of workers may take to boot after the last HUP.
readonly SETTLE_DEADLINE_S=15

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- measuring ---------------------------------------------------------------

# Workers that have booted so far: both servers log "Booting worker with pid:
# N" from each new worker. Counting distinct pids guards against a line that
# is logged twice.
booted_workers() {
    local name="$1"
    grep -o 'Booting worker with pid: [0-9]*' "$tmp/$name.log" | sort -u | wc -l
}

# Sends HUP to the master every second, paced against the clock so that the
# time kill takes does not add up over the reloads.
send_hups() {
    local name="$1" pid="${server_pids[$1]}" start i
    start=$EPOCHREALTIME
    for ((i = 1; i <= RELOADS; i++)); do
        sleep "$(awk -v start="$start" -v now="$EPOCHREALTIME" -v i="$i" \
            'BEGIN {d = start + i - now; printf "%.6f", (d > 0 ? d : 0)}')"
        kill -0 "$pid" 2>/dev/null || die "$name exited during the reloads"
        kill -HUP "$pid"
    done
}

# Waits until every generation has booted: the first plus one per reload.
wait_settled() {
    local name="$1" expected=$((WORKERS * (RELOADS + 1)))
    local deadline=$((SECONDS + SETTLE_DEADLINE_S))
    while (($(booted_workers "$name") < expected)) && ((SECONDS < deadline)); do
        sleep 0.1
    done
}

# Runs wrk against one server while reloading it; writes one line of figures
# to $tmp/NAME.figures:
#   requests failed connect read write non2xx timeouts max_latency booted reloads
# (It runs in the main shell, not in a command substitution, so that the EXIT
# trap still sees the server and wrk if something fails.)
measure() {
    local name="$1" port="$2" out
    timeout $((DURATION + 15)) wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" \
        --timeout "${WRK_TIMEOUT_S}s" -H 'Connection: close' \
        "http://127.0.0.1:$port/" >"$tmp/$name.wrk" 2>&1 &
    wrk_pid=$!
    send_hups "$name"
    wait "$wrk_pid" || die "wrk failed against $name: $(cat "$tmp/$name.wrk")"
    wrk_pid=""
    wait_settled "$name"
    out=$(<"$tmp/$name.wrk")
    local figures
    figures=$(wrk_figures "$out") || die "no request count in wrk output for $name: $out"
    local reloads
    reloads=$(grep -c 'Hang up: Master' "$tmp/$name.log" || true)
    echo "$figures $(booted_workers "$name") $reloads" >"$tmp/$name.figures"
}

# Prints the figures of one server and checks that its reloads all happened.
report() {
    local name="$1" requests failed connect read write non2xx timeouts max_latency booted reloads
    read -r requests failed connect read write non2xx timeouts max_latency booted reloads \
        <"$tmp/$name.figures"
    printf '%s: %d requests, %d failed (connect %d, read %d, write %d, non-2xx %d),' \
        "$name" "$requests" "$failed" "$connect" "$read" "$write" "$non2xx"
    printf ' %d slower than %ds, max latency %s; %d reloads logged, %d workers booted\n' \
        "$timeouts" "$WRK_TIMEOUT_S" "$max_latency" "$reloads" "$booted"
    local expected=$((WORKERS * (RELOADS + 1)))
    if ((reloads != RELOADS || booted < expected)); then
        log "$name's log:"
        cat "$tmp/$name.log" >&2
        die "$name handled $reloads of $RELOADS HUPs and booted $booted of $expected workers"
    fi
}

run_gunicornd() {
    local bin="$1" port
    port=$(free_port)
    start_server gunicornd "$bin" builtin:hello -w "$WORKERS" -b "127.0.0.1:$port" \
        --no-control-socket
    wait_ready gunicornd "$port"
    measure gunicornd "$port"
    stop_server gunicornd
}

run_gunicorn() {
    local python="$1" port opts
    port=$(free_port)
    read -ra opts < <(gunicorn_quiet_opts "$python") || true
    start_server gunicorn "$python" -m gunicorn -w "$WORKERS" -b "127.0.0.1:$port" \
        --chdir "$tmp" "${opts[@]}" hello:app
    wait_ready gunicorn "$port"
    measure gunicorn "$port"
    stop_server gunicorn
}

main() {
    trap_exit
    ((DURATION >= RELOADS + 2)) || die "BENCH_DURATION ($DURATION) must be at least BENCH_RELOADS + 2"
    install_gunicorn_bench_tools
    local gunicornd_bin python
    gunicornd_bin=$(gunicornd_binary)
    python=$(gunicorn_python)

    make_tmp_dir gunicornd-reload
    write_wsgi_app

    echo "wrk -t$THREADS -c$CONNS -d${DURATION}s --timeout ${WRK_TIMEOUT_S}s -H 'Connection: close'," \
        "HUP every 1 s" \
        "($RELOADS reloads), $WORKERS workers each, $(nproc) CPUs;" \
        "gunicorn $(gunicorn_version "$python")"
    run_gunicornd "$gunicornd_bin"
    report gunicornd
    run_gunicorn "$python"
    report gunicorn

    local name requests failed
    printf '\n'
    for name in gunicornd gunicorn; do
        read -r requests failed _ <"$tmp/$name.figures"
        printf '%s: %d requests, %d failed over %d reloads\n' "$name" "$requests" "$failed" "$RELOADS"
    done

    # gunicornd's claim is that a reload fails no request; gunicorn's failures
    # are the finding, not an error.
    read -r _ failed _ <"$tmp/gunicornd.figures"
    ((failed == 0)) || die "gunicornd failed $failed requests during reloads"
}

main "$@"
