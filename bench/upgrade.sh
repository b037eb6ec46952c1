#!/usr/bin/env bash
# Binary upgrades (USR2) under load: gunicornd's builtin:hello against Python
# gunicorn's sync worker serving the same body, each with 4 workers and a
# pidfile on loopback. Each server is upgraded several times in a row by
# gunicorn's manual procedure (USR2 to the master, wait until the new master
# is ready, WINCH and TERM to the old one, wait until the new one holds the
# pidfile and the old one is gone), each upgrade under its own wrk load and a
# probe that records every failed request and the longest time without an
# answer. See bench/README.md.
#
# Environment:
#   GUNICORND_BIN    use this binary instead of building target/release/gunicornd
#   GUNICORNCTL_BIN  the gunicornctl that asks gunicornd whether its upgrade is
#                    ready (default: the one beside GUNICORND_BIN, else built)
#   BENCH_UPGRADES   upgrades in a row per server (default 5)
#   BENCH_SERVERS    which servers, in order (default "gunicornd gunicorn")
#   BENCH_CONNS      concurrent wrk connections (default 16)
#   BENCH_THREADS    wrk threads (default 2)
set -euo pipefail

readonly UPGRADES="${BENCH_UPGRADES:-5}"
readonly SERVERS="${BENCH_SERVERS:-gunicornd gunicorn}"
readonly CONNS="${BENCH_CONNS:-16}"
readonly THREADS="${BENCH_THREADS:-2}"
readonly WORKERS=4
# What gunicornd is held to: no failed request, and every whole upgrade
# (USR2 sent to the old master gone and the pidfile updated) faster than this.
readonly GOAL_S=0.3
# Load before USR2 and after the upgrade, in seconds: the upgrade starts under
# a steady load, and a failure just after the takeover still counts against it.
readonly LEAD_S=0.5
readonly TAIL_S=0.5
# From USR2 until the new master exists (it is forked at once), and until the
# whole upgrade is done: far more than either server needs for a trivial app.
readonly APPEAR_DEADLINE_S=5
readonly UPGRADE_DEADLINE_S=20
# How often the upgrade's conditions are checked. Both servers are polled
# alike, so the polling adds the same delay (up to this plus one check) to
# each measured step.
readonly POLL_S=0.01
# wrk's "timeout" counter flags a request still unanswered after this long
# (reported, not counted as a failure: see wrk_figures in lib.sh).
readonly WRK_TIMEOUT_S=5

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# gunicornctl, to ask gunicornd's old master whether the upgrade is ready.
ctl_bin=""

# --- readiness ---------------------------------------------------------------

# Succeeds if process PID's environment (as it was exec'd) holds NAME=VALUE.
has_env() {
    local pid="$1" entry="$2" var
    while IFS= read -r -d '' var; do
        [[ $var == "$entry" ]] && return 0
    done 2>/dev/null <"/proc/$pid/environ"
    return 1
}

# Prints the new master that USR2 made master OLD start, if it exists yet:
# the child of OLD that was exec'd with GUNICORN_PID=OLD, which both servers
# set for the new master (and only for it: workers are forked without an
# exec and carry their master's own environment, which for a promoted
# master names its predecessor, never itself).
new_master() {
    local old="$1" kid
    while read -r kid; do
        if has_env "$kid" "GUNICORN_PID=$old"; then
            echo "$kid"
            return 0
        fi
    done < <(child_pids "$old")
    return 1
}

# Whether gunicornd's new master NEW is ready, as its old master sees it:
# the old master's `show stats` reports the upgrade phase "ready" once the
# new master told it that all its workers have booted (loaded the app), the
# moment it also sends `upgrade_ready` on its event stream. The stats are
# polled rather than the stream followed: a follower started just before
# USR2 might subscribe too late for the event, and nothing seen from the
# outside says when its subscription is in place.
ready_gunicornd() {
    local new="$2" stats
    local phase_re='"upgrade":\{[^}]*"phase":"ready"' pid_re="\"upgrade\":\\{[^}]*\"pid\":${new}[,}]"
    # The old master is still the current one, at the normal socket path.
    # timeout: gunicornctl itself waits up to 30 s for a reply.
    stats=$(timeout 2 "$ctl_bin" -s "$tmp/gunicornd.ctl" --json stats 2>/dev/null) || return 1
    stats=${stats//[[:space:]]/}
    [[ $stats =~ $phase_re && $stats =~ $pid_re ]]
}

# Whether gunicorn's new master NEW is ready: all its workers have loaded
# the app. gunicorn logs nothing at that point by itself ("Booting worker"
# comes before the app is loaded), so its config file has a post_worker_init
# hook, called once the app is loaded and right before the worker starts
# accepting, that logs "Worker ready (pid: P, master: M)". Both masters log
# to the same file; the master pid in the line tells them apart, and counting
# distinct worker pids guards against a line logged twice.
ready_gunicorn() {
    local new="$2" ready
    ready=$(grep -o "Worker ready (pid: [0-9]*, master: $new)" "$tmp/gunicorn.log" | sort -u | wc -l)
    ((ready >= WORKERS))
}

# Writes gunicorn's config file: only the readiness line (see ready_gunicorn).
write_gunicorn_config() {
    cat >"$tmp/gunicorn_conf.py" <<'EOF'
def post_worker_init(worker):
    worker.log.info("Worker ready (pid: %s, master: %s)", worker.pid, worker.ppid)
EOF
}

# Succeeds if FILE holds PID (on its first line).
pidfile_holds() {
    local file="$1" pid="$2" line=""
    { read -r line <"$file"; } 2>/dev/null || true
    [[ $line == "$pid" ]]
}

# --- one upgrade -------------------------------------------------------------

# Starts wrk and the probe against the port in the background, waits until
# the probe has had an answer, then lets the load run for LEAD_S.
start_load() {
    local port="$1" deadline=$((SECONDS + START_DEADLINE_S))
    rm -f "$tmp/probe.ready"
    # Stopped with INT once the upgrade is over (see stop_load); -d and
    # timeout only bound a run that something else went wrong with.
    timeout $((UPGRADE_DEADLINE_S + 15)) wrk -t"$THREADS" -c"$CONNS" \
        -d"$((UPGRADE_DEADLINE_S + 5))s" --timeout "${WRK_TIMEOUT_S}s" -H 'Connection: close' \
        "http://127.0.0.1:$port/" >"$tmp/wrk.out" 2>&1 &
    wrk_pid=$!
    python3 "$lib_dir/probe.py" "$port" "$tmp/probe.ready" $((UPGRADE_DEADLINE_S + 10)) \
        >"$tmp/probe.out" 2>&1 &
    probe_pid=$!
    until [[ -e $tmp/probe.ready ]]; do
        kill -0 "$probe_pid" 2>/dev/null || die "the probe exited: $(<"$tmp/probe.out")"
        ((SECONDS < deadline)) || die "the probe got no answer on port $port within ${START_DEADLINE_S}s"
        sleep "$POLL_S"
    done
    sleep "$LEAD_S"
}

# Stops wrk and the probe; both print their figures when stopped (wrk on
# INT, which timeout passes on to it; the probe on TERM).
stop_load() {
    kill -INT "$wrk_pid" 2>/dev/null || true
    wait "$wrk_pid" || die "wrk failed: $(<"$tmp/wrk.out")"
    wrk_pid=""
    kill -TERM "$probe_pid" 2>/dev/null || true
    wait "$probe_pid" || die "the probe failed: $(<"$tmp/probe.out")"
    probe_pid=""
}

# Microseconds since the epoch, from a value of $EPOCHREALTIME (which has six
# decimals, whatever the locale's decimal point).
micros() {
    echo $((10#${1//[!0-9]/}))
}

# Prints microseconds as seconds with three decimals.
seconds() {
    printf '%d.%03d' $(($1 / 1000000)) $(($1 / 1000 % 1000))
}

# Stops the bench because the upgrade did not happen: says why, shows the
# server's processes and the end of its log.
fail_upgrade() {
    local name="$1" why="$2"
    log "$name: $why"
    log "processes of $name's session:"
    ps -o pid,ppid,stat,args --sid "${server_groups[$name]}" >&2 || true
    log "end of $name's log:"
    tail -n 30 "$tmp/$name.log" >&2
    die "$name: the upgrade failed"
}

# One upgrade of the named server, by gunicorn's manual procedure; the
# result goes to the up_* variables. (It runs in the main shell, not in a
# command substitution, so that the EXIT trap still sees every process if
# something fails.)
upgrade() {
    local name="$1" old="${server_pids[$1]}" pidfile="$tmp/$1.pid" new="" started ready finished
    local appear_by=$((SECONDS + APPEAR_DEADLINE_S)) deadline=$((SECONDS + UPGRADE_DEADLINE_S))
    started=$EPOCHREALTIME
    kill -USR2 "$old"
    until new=$(new_master "$old"); do
        alive "$old" || fail_upgrade "$name" "the master $old exited after USR2"
        ((SECONDS < appear_by)) || fail_upgrade "$name" \
            "no new master appeared within ${APPEAR_DEADLINE_S}s of USR2 to the master $old (no child with GUNICORN_PID=$old in its environment): does this $name support binary upgrades?"
        sleep "$POLL_S"
    done
    add_master "$name" "$new"

    until "ready_$name" "$old" "$new"; do
        alive "$new" || fail_upgrade "$name" "the new master $new exited before it was ready"
        ((SECONDS < deadline)) || fail_upgrade "$name" \
            "the new master $new was not ready within ${UPGRADE_DEADLINE_S}s of USR2"
        sleep "$POLL_S"
    done
    ready=$EPOCHREALTIME
    # The old workers stop (gunicorn ignores WINCH when not daemonized, and
    # says so in its log; its workers then stop with their master on TERM),
    # then the old master. Both servers keep serving from the new master's
    # workers, which accept on the same sockets.
    kill -WINCH "$old"
    kill -TERM "$old"

    until pidfile_holds "$pidfile" "$new" && ! alive "$old"; do
        alive "$new" || fail_upgrade "$name" "the new master $new exited after TERM to the old master $old"
        if ((SECONDS >= deadline)); then
            local left="the old master $old is still running"
            alive "$old" || left="$pidfile does not hold $new: $(cat "$pidfile" 2>&1)"
            fail_upgrade "$name" "no takeover within ${UPGRADE_DEADLINE_S}s of USR2: $left"
        fi
        sleep "$POLL_S"
    done
    finished=$EPOCHREALTIME
    promote_master "$name" "$old" "$new"
    up_old=$old
    up_new=$new
    up_ready_us=$(($(micros "$ready") - $(micros "$started")))
    up_total_us=$(($(micros "$finished") - $(micros "$started")))
}

# Upgrades the named server UPGRADES times, each under its own load, printing
# a line per upgrade; writes one line per upgrade to $tmp/NAME.upgrades:
#   total_us ready_us wrk_requests wrk_failed probe_requests probe_failed longest_gap_s
run_upgrades() {
    local name="$1" port="$2" i wrk_out figures
    local requests failed connect read write non2xx timeouts max_latency
    local p_requests p_failed p_gap p_reasons
    local up_old up_new up_ready_us up_total_us
    for ((i = 1; i <= UPGRADES; i++)); do
        start_load "$port"
        upgrade "$name"
        sleep "$TAIL_S"
        stop_load
        wrk_out=$(<"$tmp/wrk.out")
        figures=$(wrk_figures "$wrk_out") || die "no request count in wrk output for $name: $wrk_out"
        read -r requests failed connect read write non2xx timeouts max_latency <<<"$figures"
        read -r p_requests p_failed p_gap p_reasons <"$tmp/probe.out" ||
            die "no figures from the probe: $(<"$tmp/probe.out")"

        printf '%s upgrade %d: master %d -> %d in %s s (new master ready after %s s);' \
            "$name" "$i" "$up_old" "$up_new" "$(seconds "$up_total_us")" "$(seconds "$up_ready_us")"
        printf ' wrk %d requests, %d failed' "$requests" "$failed"
        ((failed == 0)) || printf ' (connect %d, read %d, write %d, non-2xx %d)' \
            "$connect" "$read" "$write" "$non2xx"
        ((timeouts == 0)) || printf ', %d slower than %ds' "$timeouts" "$WRK_TIMEOUT_S"
        printf ', max latency %s;' "$max_latency"
        printf ' probe %d requests, %d failed' "$p_requests" "$p_failed"
        ((p_failed == 0)) || printf ' (%s)' "$p_reasons"
        printf ', longest without an answer %s ms\n' "$(awk -v s="$p_gap" 'BEGIN {printf "%.1f", s * 1000}')"

        echo "$up_total_us $up_ready_us $requests $failed $p_requests $p_failed $p_gap" \
            >>"$tmp/$name.upgrades"
    done
}

# Checks that every upgrade really was a takeover by a new master, as the
# server itself tells it: both log "Master has been promoted." once per
# upgrade, from the new master.
check_promotions() {
    local name="$1" promoted
    promoted=$(grep -c 'Master has been promoted\.' "$tmp/$name.log" || true)
    if ((promoted != UPGRADES)); then
        log "$name's log:"
        cat "$tmp/$name.log" >&2
        die "$name logged $promoted promotions for $UPGRADES upgrades"
    fi
}

# Prints the summary line of one server from $tmp/NAME.upgrades.
summarize() {
    local name="$1"
    sort -n "$tmp/$name.upgrades" | awk -v name="$name" '
        { total[NR] = $1; wrk += $3; wrk_failed += $4; probe += $5; probe_failed += $6
          if ($7 > gap) gap = $7 }
        END {
            median = (NR % 2) ? total[(NR + 1) / 2] : (total[NR / 2] + total[NR / 2 + 1]) / 2
            printf "%s: %d upgrades, %d failed requests (wrk %d of %d, probe %d of %d),",
                name, NR, wrk_failed + probe_failed, wrk_failed, wrk, probe_failed, probe
            printf " longest without an answer %.1f ms; upgrade took %.3f s median, %.3f s max\n",
                gap * 1000, median / 1e6, total[NR] / 1e6
        }'
}

# Succeeds if the named server met the goal: no failed request, and every
# upgrade faster than GOAL_S. Prints the verdict.
judge() {
    local name="$1"
    awk -v name="$name" -v goal="$GOAL_S" '
        { failed += $4 + $6; if ($1 > slowest) slowest = $1 }
        END {
            met = (failed == 0 && slowest < goal * 1e6)
            printf "goal for %s (0 failed requests, every upgrade under %s s): %s", name, goal,
                met ? "met" : "missed"
            if (!met) printf " (%d failed, slowest upgrade %.3f s)", failed, slowest / 1e6
            printf "\n"
            exit !met
        }' "$tmp/$name.upgrades"
}

# --- the servers -------------------------------------------------------------

# Starts the server, waits until it answers and holds its pidfile, upgrades
# it, stops it.
bench_server() {
    local name="$1" port="$2" deadline
    shift 2
    start_server "$name" "$@"
    wait_ready "$name" "$port"
    deadline=$((SECONDS + START_DEADLINE_S))
    until pidfile_holds "$tmp/$name.pid" "${server_pids[$name]}"; do
        ((SECONDS < deadline)) || die "$name did not write its pidfile $tmp/$name.pid"
        sleep "$POLL_S"
    done
    run_upgrades "$name" "$port"
    stop_server "$name"
    check_promotions "$name"
}

run_gunicornd() {
    local bin="$1" port
    port=$(free_port)
    # The error log is given explicitly (the same file start_server appends
    # stdout and stderr to) so that every master writes to it, however the
    # new ones were started.
    bench_server gunicornd "$port" "$bin" builtin:hello -w "$WORKERS" -b "127.0.0.1:$port" \
        -p "$tmp/gunicornd.pid" --control-socket "$tmp/gunicornd.ctl" \
        --error-logfile "$tmp/gunicornd.log"
}

run_gunicorn() {
    local python="$1" port opts
    port=$(free_port)
    read -ra opts < <(gunicorn_quiet_opts "$python") || true
    bench_server gunicorn "$port" "$python" -m gunicorn -w "$WORKERS" -b "127.0.0.1:$port" \
        --chdir "$tmp" -c "$tmp/gunicorn_conf.py" -p "$tmp/gunicorn.pid" \
        --error-logfile "$tmp/gunicorn.log" "${opts[@]}" hello:app
}

main() {
    trap_exit
    local name gunicornd_bin="" python="" versions=""
    for name in $SERVERS; do
        [[ $name == gunicornd || $name == gunicorn ]] ||
            die "BENCH_SERVERS: unknown server '$name' (gunicornd, gunicorn)"
    done
    install_gunicorn_bench_tools
    if [[ " $SERVERS " == *" gunicornd "* ]]; then
        gunicornd_bin=$(gunicornd_binary)
        ctl_bin=$(gunicornctl_binary)
    fi
    if [[ " $SERVERS " == *" gunicorn "* ]]; then
        python=$(gunicorn_python)
        versions="; gunicorn $(gunicorn_version "$python")"
    fi

    make_tmp_dir gunicornd-upgrade
    write_wsgi_app
    write_gunicorn_config

    echo "wrk -t$THREADS -c$CONNS --timeout ${WRK_TIMEOUT_S}s -H 'Connection: close'" \
        "from ${LEAD_S} s before each USR2 to ${TAIL_S} s after the upgrade;" \
        "$UPGRADES upgrades in a row, $WORKERS workers each, $(nproc) CPUs$versions"
    for name in $SERVERS; do
        case $name in
            gunicornd) run_gunicornd "$gunicornd_bin" ;;
            gunicorn) run_gunicorn "$python" ;;
        esac
    done

    printf '\n'
    for name in $SERVERS; do
        summarize "$name"
    done
    # gunicornd's claim is that an upgrade fails no request and is quick;
    # gunicorn's figures are the comparison, not an error.
    if [[ " $SERVERS " == *" gunicornd "* ]]; then
        judge gunicornd || exit 1
    fi
}

main "$@"
