#!/usr/bin/env bash
# A Node.js program under gunicornd's `command` worker kind against the same
# program under Node's own `cluster` module: examples/node/server.js (a
# hello-world HTTP server), 2 workers each on loopback. First throughput:
# the same wrk load on both, with and without keep-alive, in interleaved
# rounds (gunicornd, cluster, gunicornd, ...) so that noise from other work
# on the machine hits both alike; medians and their ratio. Then reloads: a
# HUP every second, 10 times, under a wrk load and a probe that records
# every failed request and the longest time without an answer; gunicornd
# starts a new generation and retires the old workers as the new ones send
# READY=1, the cluster's primary (bench/node_cluster.js) restarts its
# workers one by one. See bench/README.md.
#
# Environment:
#   GUNICORND_BIN          use this binary instead of building target/release/gunicornd
#   BENCH_SERVERS          which servers, in this order (default "gunicornd cluster")
#   BENCH_ROUNDS           throughput rounds per server and load (default 3)
#   BENCH_DURATION         seconds per throughput wrk run (default 5)
#   BENCH_CONNS            concurrent connections for throughput (default 32)
#   BENCH_THREADS          wrk threads (default 2)
#   BENCH_RELOADS          HUPs sent to each server, one a second (default 10)
#   BENCH_RELOAD_DURATION  seconds of load during the reloads (default 12; at
#                          least BENCH_RELOADS + 2)
#   BENCH_RELOAD_CONNS     concurrent wrk connections during the reloads (default 16)
#   BENCH_CLUSTER_SCHED    the cluster's NODE_CLUSTER_SCHED_POLICY: rr (Node's
#                          default on Linux) or none (default rr)
set -euo pipefail

readonly SERVERS="${BENCH_SERVERS:-gunicornd cluster}"
readonly ROUNDS="${BENCH_ROUNDS:-3}"
readonly DURATION="${BENCH_DURATION:-5}"
readonly CONNS="${BENCH_CONNS:-32}"
readonly THREADS="${BENCH_THREADS:-2}"
readonly RELOADS="${BENCH_RELOADS:-10}"
readonly RELOAD_DURATION="${BENCH_RELOAD_DURATION:-12}"
readonly RELOAD_CONNS="${BENCH_RELOAD_CONNS:-16}"
readonly CLUSTER_SCHED="${BENCH_CLUSTER_SCHED:-rr}"
readonly WORKERS=2
# What gunicornd is held to: throughput at least this fraction of the
# cluster's on each load, and no failed request during the reloads.
readonly GOAL_VS_CLUSTER=0.95
# wrk's "timeout" counter flags a request still unanswered after this long
# (reported, not counted as a failure: see wrk_figures in lib.sh).
readonly WRK_TIMEOUT_S=5
# How long the last generation of workers may take to boot after the last HUP.
readonly SETTLE_DEADLINE_S=15

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly NODE_SERVER="$repo_root/examples/node/server.js"
readonly NOTIFY_FD="$repo_root/examples/notify_fd.py"
readonly CLUSTER="$lib_dir/node_cluster.js"

gunicornd_bin=""
node=""
python=""
# Loopback port of each running server.
declare -A ports=()
# The Requests/sec of each round, space-separated, by "LOAD SERVER".
declare -A rounds_rps=()

# --- setup -------------------------------------------------------------------

install_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v node >/dev/null || missing+=(nodejs)
    command -v setsid >/dev/null || missing+=(util-linux)
    # The probe (bench/probe.py) and examples/notify_fd.py.
    command -v python3 >/dev/null || missing+=(python3)
    install_packages "${missing[@]}"
}

# --- servers -----------------------------------------------------------------
#
# Both run examples/node/server.js as 2 worker processes, with no access log
# (it writes none). Under gunicornd each worker is the program exec'd with the
# listening socket at fd 3, through examples/notify_fd.py so that it can send
# READY=1 and WATCHDOG=1; under the cluster each worker listens on PORT
# through the primary.

start_gunicornd() {
    local port="$1"
    start_server gunicornd "$gunicornd_bin" -k command -w "$WORKERS" -b "127.0.0.1:$port" \
        --no-control-socket -- "$python" "$NOTIFY_FD" "$node" "$NODE_SERVER"
}

start_cluster() {
    local port="$1"
    start_server cluster env PORT="$port" WORKERS="$WORKERS" \
        NODE_CLUSTER_SCHED_POLICY="$CLUSTER_SCHED" "$node" "$CLUSTER"
}

# Worker processes that have started serving so far: server.js logs "pid N
# serving" once it listens, under both servers (gunicornd passes a worker's
# stderr to its log). Counting distinct pids guards against a line logged twice.
serving_workers() {
    local name="$1"
    { grep -o 'pid [0-9]* serving' "$tmp/$name.log" || true; } | sort -u | wc -l
}

# HUPs the server logged: gunicornd's "Hang up: Master", the cluster
# primary's "Hang up: rolling restart".
reloads_logged() {
    local name="$1"
    grep -c 'Hang up: ' "$tmp/$name.log" || true
}

# Waits until the server has at least N workers that started serving.
wait_serving() {
    local name="$1" n="$2" deadline=$((SECONDS + START_DEADLINE_S))
    while (($(serving_workers "$name") < n)); do
        alive "${server_pids[$name]}" || die "$name exited; its log: $(<"$tmp/$name.log")"
        ((SECONDS < deadline)) || die "$name: $(serving_workers "$name") of $n workers serving" \
            "after ${START_DEADLINE_S}s; its log: $(<"$tmp/$name.log")"
        sleep 0.05
    done
}

start_servers() {
    local name
    for name in $SERVERS; do
        ports[$name]=$(free_port)
        while [[ $(printf '%s\n' "${ports[@]}" | grep -cx "${ports[$name]}") -gt 1 ]]; do
            ports[$name]=$(free_port)
        done
        "start_$name" "${ports[$name]}"
    done
    for name in $SERVERS; do
        wait_ready "$name" "${ports[$name]}"
        wait_serving "$name" "$WORKERS"
    done
}

# --- throughput --------------------------------------------------------------

# Runs ROUNDS interleaved rounds of the load named LOAD (close: wrk sends
# `Connection: close`, so each request has its own connection; keepalive:
# wrk's default) against every server, printing each round.
run_rounds() {
    local load="$1" r name rps line wrk_opts=()
    [[ $load != close ]] || wrk_opts=(-H 'Connection: close')
    for ((r = 1; r <= ROUNDS; r++)); do
        line="round $r:"
        for name in $SERVERS; do
            rps=$(run_wrk "$name" "http://127.0.0.1:${ports[$name]}/" "${wrk_opts[@]}")
            rounds_rps["$load $name"]+=" $rps"
            line+=" $name $rps,"
        done
        echo "${line%,} req/s"
    done
}

report_load() {
    local load="$1" name med c_med
    c_med=$(median_rps "$load" cluster)
    printf '%-12s %14s %12s\n' server "median req/s" "vs cluster"
    for name in $SERVERS; do
        med=$(median_rps "$load" "$name")
        printf '%-12s %14.2f %12s\n' "$name" "$med" "$(ratio "$med" "$c_med")"
    done
}

# --- reloads -----------------------------------------------------------------

# Sends HUP to the master every second, paced against the clock so that the
# time kill takes does not add up over the reloads.
send_hups() {
    local name="$1" pid="${server_pids[$1]}" start i
    start=$EPOCHREALTIME
    for ((i = 1; i <= RELOADS; i++)); do
        sleep "$(awk -v start="$start" -v now="$EPOCHREALTIME" -v i="$i" \
            'BEGIN {d = start + i - now; printf "%.6f", (d > 0 ? d : 0)}')"
        alive "$pid" || die "$name exited during the reloads"
        kill -HUP "$pid"
    done
}

# Runs wrk and the probe against one server while reloading it, then waits
# until the last generation serves; writes one line of figures to
# $tmp/NAME.reloads:
#   requests failed connect read write non2xx timeouts max_latency
#   probe_requests probe_failed longest_gap_s probe_reasons booted reloads
# (It runs in the main shell, not in a command substitution, so that the
# EXIT trap still sees the server, wrk and the probe if something fails.)
measure_reloads() {
    local name="$1" port="${ports[$1]}" deadline=$((SECONDS + START_DEADLINE_S))
    local booted_before reloads_before expected out figures probe
    booted_before=$(serving_workers "$name")
    reloads_before=$(reloads_logged "$name")
    expected=$((booted_before + WORKERS * RELOADS))

    rm -f "$tmp/probe.ready"
    python3 "$lib_dir/probe.py" "$port" "$tmp/probe.ready" $((RELOAD_DURATION + 10)) \
        >"$tmp/probe.out" 2>&1 &
    probe_pid=$!
    until [[ -e $tmp/probe.ready ]]; do
        kill -0 "$probe_pid" 2>/dev/null || die "the probe exited: $(<"$tmp/probe.out")"
        ((SECONDS < deadline)) || die "the probe got no answer on port $port within ${START_DEADLINE_S}s"
        sleep 0.01
    done
    timeout $((RELOAD_DURATION + 15)) wrk -t"$THREADS" -c"$RELOAD_CONNS" -d"${RELOAD_DURATION}s" \
        --timeout "${WRK_TIMEOUT_S}s" -H 'Connection: close' \
        "http://127.0.0.1:$port/" >"$tmp/$name.wrk" 2>&1 &
    wrk_pid=$!
    send_hups "$name"
    wait "$wrk_pid" || die "wrk failed against $name: $(<"$tmp/$name.wrk")"
    wrk_pid=""
    kill -TERM "$probe_pid" 2>/dev/null || true
    wait "$probe_pid" || die "the probe failed: $(<"$tmp/probe.out")"
    probe_pid=""

    deadline=$((SECONDS + SETTLE_DEADLINE_S))
    while (($(serving_workers "$name") < expected)) && ((SECONDS < deadline)); do
        sleep 0.1
    done

    out=$(<"$tmp/$name.wrk")
    figures=$(wrk_figures "$out") || die "no request count in wrk output for $name: $out"
    probe=$(<"$tmp/probe.out")
    [[ $probe =~ ^[0-9]+\ [0-9]+\ [0-9.]+\ [^\ ]+$ ]] || die "no figures from the probe: $probe"
    echo "$figures $probe $(($(serving_workers "$name") - booted_before))" \
        "$(($(reloads_logged "$name") - reloads_before))" >"$tmp/$name.reloads"
}

# Prints the reload figures of one server and checks that its reloads all
# happened: one logged HUP each, and WORKERS new workers serving per reload.
report_reloads() {
    local name="$1" requests failed connect read write non2xx timeouts max_latency
    local p_requests p_failed p_gap p_reasons booted reloads
    read -r requests failed connect read write non2xx timeouts max_latency \
        p_requests p_failed p_gap p_reasons booted reloads <"$tmp/$name.reloads"
    printf '%s: %d reloads logged, %d new workers serving;' "$name" "$reloads" "$booted"
    printf ' wrk %d requests, %d failed' "$requests" "$failed"
    ((failed == 0)) || printf ' (connect %d, read %d, write %d, non-2xx %d)' \
        "$connect" "$read" "$write" "$non2xx"
    ((timeouts == 0)) || printf ', %d slower than %ds' "$timeouts" "$WRK_TIMEOUT_S"
    printf ', max latency %s;' "$max_latency"
    printf ' probe %d requests, %d failed' "$p_requests" "$p_failed"
    ((p_failed == 0)) || printf ' (%s)' "$p_reasons"
    printf ', longest without an answer %s ms\n' "$(awk -v s="$p_gap" 'BEGIN {printf "%.1f", s * 1000}')"
    if ((reloads != RELOADS || booted < WORKERS * RELOADS)); then
        log "$name's log:"
        cat "$tmp/$name.log" >&2
        die "$name handled $reloads of $RELOADS HUPs and started $booted of $((WORKERS * RELOADS)) new workers"
    fi
}

# --- goals -------------------------------------------------------------------

goal_failures=0

# Prints one goal as met or missed (counting misses), or as not checked when
# a figure it needs is missing. CONDITION is an awk expression over a and b.
goal() {
    local text="$1" condition="$2" a="$3" b="$4" detail="$5"
    if [[ -z $a || -z $b ]]; then
        printf '  %s: not checked (not measured)\n' "$text"
    elif awk -v a="$a" -v b="$b" "BEGIN {exit !($condition)}"; then
        printf '  %s: met (%s)\n' "$text" "$detail"
    else
        printf '  %s: missed (%s)\n' "$text" "$detail"
        goal_failures=$((goal_failures + 1))
    fi
}

report_goals() {
    local load gd c failed="" p_failed
    echo "goals for gunicornd:"
    for load in close keepalive; do
        gd=$(median_rps "$load" gunicornd)
        c=$(median_rps "$load" cluster)
        goal "throughput, $load: at least ${GOAL_VS_CLUSTER}x the cluster's" "a >= $GOAL_VS_CLUSTER * b" \
            "$gd" "$c" "$(ratio "$gd" "$c")"
    done
    if [[ -s $tmp/gunicornd.reloads ]]; then
        read -r _ failed _ _ _ _ _ _ _ p_failed _ <"$tmp/gunicornd.reloads"
        failed=$((failed + p_failed))
    fi
    goal "reloads: 0 failed requests" "a == b" "$failed" "${failed:+0}" "${failed:-} failed"
}

# --- main --------------------------------------------------------------------

main() {
    trap_exit
    local name
    for name in $SERVERS; do
        [[ $name == gunicornd || $name == cluster ]] ||
            die "unknown server '$name' in BENCH_SERVERS (gunicornd cluster)"
    done
    ((RELOAD_DURATION >= RELOADS + 2)) ||
        die "BENCH_RELOAD_DURATION ($RELOAD_DURATION) must be at least BENCH_RELOADS + 2"
    [[ $CLUSTER_SCHED == rr || $CLUSTER_SCHED == none ]] ||
        die "BENCH_CLUSTER_SCHED must be rr or none, not '$CLUSTER_SCHED'"
    install_tools
    node=$(command -v node)
    python=$(command -v python3)
    if [[ " $SERVERS " == *" gunicornd "* ]]; then gunicornd_bin=$(gunicornd_binary); fi

    make_tmp_dir gunicornd-command

    echo "examples/node/server.js, $WORKERS workers each, $(nproc) CPUs; node $("$node" --version)," \
        "cluster scheduling $CLUSTER_SCHED${gunicornd_bin:+; gunicornd $gunicornd_bin}"
    start_servers

    printf '\n== throughput, Connection: close: wrk -t%s -c%s -d%ss, %s interleaved rounds\n' \
        "$THREADS" "$CONNS" "$DURATION" "$ROUNDS"
    run_rounds close
    report_load close

    printf '\n== throughput, keep-alive: wrk -t%s -c%s -d%ss, %s interleaved rounds\n' \
        "$THREADS" "$CONNS" "$DURATION" "$ROUNDS"
    run_rounds keepalive
    report_load keepalive

    printf '\n== %s reloads (HUP every 1 s) under wrk -t%s -c%s -d%ss --timeout %ss' \
        "$RELOADS" "$THREADS" "$RELOAD_CONNS" "$RELOAD_DURATION" "$WRK_TIMEOUT_S"
    printf " -H 'Connection: close' and the probe\n"
    for name in $SERVERS; do
        measure_reloads "$name"
        report_reloads "$name"
    done

    for name in $SERVERS; do
        stop_server "$name"
    done

    printf '\n'
    report_goals

    local failed=0
    if [[ -s $tmp/errors ]]; then
        log "$bench_name: wrk reported errors against: $(sort -u "$tmp/errors" | tr '\n' ' ')" \
            "(see above); their throughput figures are not trustworthy"
        failed=1
    fi
    if ((goal_failures > 0)); then
        log "$bench_name: gunicornd missed $goal_failures of its goals"
        failed=1
    fi
    return "$failed"
}

main "$@"
