#!/usr/bin/env bash
# WSGI throughput and memory: the same hello-world WSGI app
# (bench/wsgi_hello.py) served by gunicornd, Python gunicorn's sync worker,
# granian and uWSGI (PyPI's pyuwsgi), 2 workers each, on loopback, under the
# same wrk load, with and without keep-alive; the memory of each server's
# workers after that load; and a Flask JSON route (bench/wsgi_flask.py) under
# gunicornd and gunicorn. Rounds are interleaved (A, B, C, D, A, B, ...) so
# that noise from other work on the machine hits all servers alike. See
# bench/README.md.
#
# Environment:
#   GUNICORND_BIN   use this binary instead of building target/release/gunicornd
#                   (with the cargo feature `python` when the package has it)
#   BENCH_SERVERS   which servers, in this order (default
#                   "gunicornd gunicorn granian uwsgi")
#   BENCH_ROUNDS    rounds per server and load (default 3)
#   BENCH_DURATION  seconds per wrk run (default 5)
#   BENCH_CONNS     concurrent connections (default 32)
#   BENCH_THREADS   wrk threads (default 2)
#   BENCH_GTHREADS  threads per gthread worker, gunicornd's and gunicorn's
#                   (default 2): their keep-alive rows
set -euo pipefail

readonly SERVERS="${BENCH_SERVERS:-gunicornd gunicorn granian uwsgi}"
readonly ROUNDS="${BENCH_ROUNDS:-3}"
readonly DURATION="${BENCH_DURATION:-5}"
readonly CONNS="${BENCH_CONNS:-32}"
readonly THREADS="${BENCH_THREADS:-2}"
readonly GTHREADS="${BENCH_GTHREADS:-2}"
readonly WORKERS=2
readonly HELLO_APP=wsgi_hello:app
readonly FLASK_APP=wsgi_flask:app
readonly FLASK_PATH=/json
# What gunicornd is held to (see bench/README.md): on the hello app with
# Connection: close, at least the best of granian and uWSGI and over this
# many times gunicorn; per-worker memory no higher than gunicorn's; on the
# Flask route at least this many times gunicorn.
readonly GOAL_HELLO_VS_GUNICORN=4
readonly GOAL_FLASK_VS_GUNICORN=2

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

gunicornd_bin=""
python=""
# The venv's site-packages, for the embedded Python of gunicornd: it runs the
# interpreter it was built against, whose sys.path has no venv in it.
site_packages=""
gunicorn_opts=()
# The uWSGI command line that uwsgi_command builds.
uwsgi_cmd=()
# Loopback port of each running server.
declare -A ports=()
# Why a server could not be measured, by name: set when it did not start.
declare -A missing=()
# The Requests/sec of each round, space-separated, by "LOAD SERVER".
declare -A rounds_rps=()

# --- servers -----------------------------------------------------------------
#
# Each runs 2 worker processes on its own loopback port with access logging
# off. Server names: the ones of BENCH_SERVERS, plus uwsgi-router (uWSGI's
# HTTP router with keep-alive, for the keep-alive load), gunicornd-gthread
# and gunicorn-gthread (their gthread workers, with GTHREADS threads, for the
# keep-alive load) and gunicornd-flask and gunicorn-flask (the Flask app).

# The app the named server runs, as module:callable.
app_of() {
    case $1 in
    *-flask) echo "$FLASK_APP" ;;
    *) echo "$HELLO_APP" ;;
    esac
}

# The worker class options of the named server: gthread for *-gthread.
worker_opts() {
    case $1 in
    *-gthread) echo -k gthread --threads "$GTHREADS" ;;
    esac
}

start_gunicornd() {
    local name="$1" opts=()
    read -ra opts < <(worker_opts "$name") || true
    start_server "$name" env PYTHONPATH="$site_packages" "$gunicornd_bin" \
        -w "$WORKERS" -b "127.0.0.1:${ports[$name]}" --no-control-socket "${opts[@]}" \
        --pythonpath "$lib_dir" "$(app_of "$name")"
}

start_gunicorn() {
    local name="$1" opts=()
    read -ra opts < <(worker_opts "$name") || true
    start_server "$name" "$python" -m gunicorn -w "$WORKERS" -b "127.0.0.1:${ports[$name]}" \
        "${gunicorn_opts[@]}" "${opts[@]}" --pythonpath "$lib_dir" "$(app_of "$name")"
}

start_granian() {
    start_server granian "$python" -m granian --interface wsgi --workers "$WORKERS" \
        --host 127.0.0.1 --port "${ports[granian]}" --no-access-log \
        --working-dir "$lib_dir" "$HELLO_APP"
}

# uWSGI with the options common to both ways it serves HTTP: a master and 2
# worker processes loading the app file, no request log, and exit at once if
# the app does not load. pyuwsgi's `uwsgi` script is run by the venv's python
# (see venv_python).
uwsgi_command() {
    uwsgi_cmd=("$python" "$(dirname "$python")/uwsgi" --master --processes "$WORKERS"
        --wsgi-file "$lib_dir/wsgi_hello.py" --callable app --disable-logging --need-app)
}

# uWSGI's native HTTP socket: its workers accept and parse HTTP themselves,
# as gunicorn's do, one request per connection. It closes each connection
# after the response without saying so in an HTTP/1.1 response; the header
# makes that explicit, so that a client (wrk included) does not wait for a
# next response and count the close as a read error.
start_uwsgi() {
    uwsgi_command
    start_server uwsgi "${uwsgi_cmd[@]}" --http-socket "127.0.0.1:${ports[uwsgi]}" \
        --add-header 'Connection: close'
}

# uWSGI's HTTP router: a separate process that holds the client connections,
# keep-alive included, and passes each request to a worker over uWSGI's own
# protocol. Its native HTTP socket keeps connections alive
# (--http11-socket) only by tying a one-request-at-a-time worker to each
# client connection, which leaves all but 2 of wrk's connections unanswered,
# so this is uWSGI's keep-alive setup.
start_uwsgi_router() {
    uwsgi_command
    start_server uwsgi-router "${uwsgi_cmd[@]}" --http "127.0.0.1:${ports[uwsgi-router]}" \
        --http-keepalive
}

# A free port (see free_port) that no other server of this run was given:
# those may not have bound theirs yet.
new_port() {
    local port
    port=$(free_port)
    while [[ " ${ports[*]} " == *" $port "* ]]; do
        port=$(free_port)
    done
    echo "$port"
}

# Starts the named servers (the app follows from the name), then waits until
# each answers 200 on PATH. gunicornd may fail to start (a build that cannot
# run module:callable apps yet): it is then recorded as missing, and the
# bench goes on without it; any other server must start.
start_servers() {
    local path="$1" name
    shift
    for name in "$@"; do
        ports[$name]=$(new_port)
        case $name in
        gunicornd | gunicornd-flask | gunicornd-gthread) start_gunicornd "$name" ;;
        gunicorn | gunicorn-flask | gunicorn-gthread) start_gunicorn "$name" ;;
        granian) start_granian ;;
        uwsgi) start_uwsgi ;;
        uwsgi-router) start_uwsgi_router ;;
        *) die "unknown server $name" ;;
        esac
    done
    for name in "$@"; do
        if [[ $name == gunicornd* ]]; then
            server_ready "$name" "${ports[$name]}" "$path" || {
                missing[$name]="did not serve $(app_of "$name"); its last log line: $(tail -n 1 "$tmp/$name.log")"
                log "$bench_name: $name could not serve $(app_of "$name") (its log is above);" \
                    "going on without it"
                unset "ports[$name]"
            }
        else
            wait_ready "$name" "${ports[$name]}" "$path"
        fi
    done
}

stop_servers() {
    local name
    for name in "$@"; do
        stop_server "$name"
        unset "ports[$name]"
    done
}

# Prints the given names that are running (started and not missing).
running() {
    local name
    for name in "$@"; do
        [[ -z ${ports[$name]:-} ]] || echo "$name"
    done
}

# --- measuring ---------------------------------------------------------------

# Runs ROUNDS interleaved rounds of the load named LOAD against the servers,
# printing each round and storing its figures in rounds_rps.
run_rounds() {
    local load="$1" path="$2" servers=() r name rps line
    shift 2
    local wrk_opts=()
    [[ $load != *close* ]] || wrk_opts=(-H 'Connection: close')
    mapfile -t servers < <(running "$@")
    ((${#servers[@]} > 0)) || return 0
    for ((r = 1; r <= ROUNDS; r++)); do
        line="round $r:"
        for name in "${servers[@]}"; do
            rps=$(run_wrk "$name" "http://127.0.0.1:${ports[$name]}$path" "${wrk_opts[@]}")
            rounds_rps["$load $name"]+=" $rps"
            line+=" $name $rps,"
        done
        echo "${line%,} req/s"
    done
}

# How the server treats a keep-alive client: "closes" if it answers with
# `Connection: close` (it closes each connection after one response; wrk
# then opens a new connection per request, as under the close load), else
# "keeps alive".
connection_mode() {
    local name="$1" path="$2"
    if answers_connection_close "${ports[$name]}" "$path"; then echo closes; else echo "keeps alive"; fi
}

# Prints the table of one load: each server's median, and its ratio to
# gunicorn's and to gunicornd's (GUNICORN and GUNICORND name those servers
# under this load). With MODES, a column says whether it keeps connections
# alive.
report_load() {
    local load="$1" gunicorn="$2" gunicornd="$3" modes="$4" path="$5" name med
    shift 5
    local g_med gd_med
    g_med=$(median_rps "$load" "$gunicorn")
    gd_med=$(median_rps "$load" "$gunicornd")
    printf '%-18s %14s %12s %13s' server "median req/s" "vs gunicorn" "vs gunicornd"
    [[ $modes != yes ]] || printf '  %s' connection
    printf '\n'
    for name in "$@"; do
        if [[ -n ${missing[$name]:-} ]]; then
            printf '%-18s %14s  (not measured: see the end)\n' "$name" -
            continue
        fi
        med=$(median_rps "$load" "$name")
        [[ -n $med ]] || continue
        printf '%-18s %14.2f %12s %13s' "$name" "$med" "$(ratio "$med" "$g_med")" \
            "$(ratio "$med" "$gd_med")"
        [[ $modes != yes ]] || printf '  %s' "$(connection_mode "$name" "$path")"
        printf '\n'
    done
}

# Prints the pids of the named server's worker processes, one a line.
# gunicornd, gunicorn and granian fork nothing but their workers, so every
# child of the master is one. A uWSGI master may also fork its HTTP router;
# its workers are the children it logged as `spawned uWSGI worker N (pid: P,
# ...)`.
worker_pids() {
    local name="$1" master="${server_pids[$1]}" kid logged
    case $name in
    uwsgi*)
        logged=" $(grep -o 'spawned uWSGI worker [0-9]* (pid: [0-9]*' "$tmp/$name.log" |
            awk '{print $NF}' | tr '\n' ' ') "
        while read -r kid; do
            [[ $logged != *" $kid "* ]] || echo "$kid"
        done < <(child_pids "$master")
        ;;
    *) child_pids "$master" ;;
    esac
}

# Reads the memory of the named server as it is now; stores
#   workers worker_rss_median_kib processes total_pss_kib
# in $tmp/NAME.memory.
measure_memory() {
    local name="$1" pids=() rss=() pid total=0 procs=0 kib
    mapfile -t pids < <(worker_pids "$name")
    for pid in "${pids[@]}"; do
        kib=$(vm_rss_kib "$pid") || die "could not read the memory of $name's worker $pid"
        rss+=("$kib")
    done
    ((${#pids[@]} == WORKERS)) || log "$bench_name: found ${#pids[@]} workers of $name, not $WORKERS"
    ((${#pids[@]} > 0)) || return 0
    while read -r pid; do
        # A process that exited meanwhile has no memory left to count.
        kib=$(pss_kib "$pid" 2>/dev/null) || continue
        total=$((total + kib))
        procs=$((procs + 1))
    done < <(process_tree "${server_pids[$name]}")
    echo "${#pids[@]} $(median "${rss[@]}") $procs $total" >"$tmp/$name.memory"
}

mib() {
    awk -v k="$1" 'BEGIN {printf "%.1f MiB\n", k / 1024}'
}

# Prints the memory table of the servers; GUNICORN names the server the
# worker RSS is compared with.
report_memory() {
    local gunicorn="$1" name workers rss procs pss g_rss=""
    shift
    [[ ! -s $tmp/$gunicorn.memory ]] || read -r _ g_rss _ _ <"$tmp/$gunicorn.memory"
    printf '%-18s %8s %18s %12s %10s %12s\n' server workers "worker RSS median" "vs gunicorn" \
        processes "total PSS"
    for name in "$@"; do
        [[ -s $tmp/$name.memory ]] || continue
        read -r workers rss procs pss <"$tmp/$name.memory"
        printf '%-18s %8d %18s %12s %10d %12s\n' "$name" "$workers" "$(mib "$rss")" \
            "$(ratio "$rss" "$g_rss")" "$procs" "$(mib "$pss")"
    done
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
    local gd g best="" best_name="" name med gd_rss="" g_rss=""
    gd=$(median_rps close gunicornd)
    g=$(median_rps close gunicorn)
    for name in granian uwsgi; do
        med=$(median_rps close "$name")
        if [[ -n $med ]] && { [[ -z $best ]] || awk -v a="$med" -v b="$best" 'BEGIN {exit !(a > b)}'; }; then
            best=$med
            best_name=$name
        fi
    done
    echo "goals for gunicornd:"
    goal "hello, Connection: close: at least the best of granian and uWSGI" "a >= b" "$gd" "$best" \
        "gunicornd ${gd:-} req/s, $best_name ${best:-} req/s"
    goal "hello, Connection: close: over ${GOAL_HELLO_VS_GUNICORN}x gunicorn" \
        "a > $GOAL_HELLO_VS_GUNICORN * b" "$gd" "$g" "$(ratio "$gd" "$g")"
    [[ ! -s $tmp/gunicornd.memory ]] || read -r _ gd_rss _ _ <"$tmp/gunicornd.memory"
    [[ ! -s $tmp/gunicorn.memory ]] || read -r _ g_rss _ _ <"$tmp/gunicorn.memory"
    goal "hello: worker RSS no higher than gunicorn's" "a <= b" "$gd_rss" "$g_rss" \
        "${gd_rss:-} KiB against ${g_rss:-} KiB"
    gd=$(median_rps keepalive gunicornd-gthread)
    g=$(median_rps keepalive granian)
    goal "hello, keep-alive: gunicornd gthread at least granian" "a >= b" "$gd" "$g" \
        "gunicornd gthread ${gd:-} req/s, granian ${g:-} req/s"
    gd=$(median_rps flask gunicornd-flask)
    g=$(median_rps flask gunicorn-flask)
    goal "Flask $FLASK_PATH: at least ${GOAL_FLASK_VS_GUNICORN}x gunicorn" \
        "a >= $GOAL_FLASK_VS_GUNICORN * b" "$gd" "$g" "$(ratio "$gd" "$g")"
}

# --- main --------------------------------------------------------------------

selected() {
    [[ " $SERVERS " == *" $1 "* ]]
}

main() {
    trap_exit
    local name
    for name in $SERVERS; do
        case $name in
        gunicornd | gunicorn | granian | uwsgi) ;;
        *) die "unknown server '$name' in BENCH_SERVERS (gunicornd gunicorn granian uwsgi)" ;;
        esac
    done
    install_python_bench_tools "$WSGI_VENV"
    python=$(wsgi_python)
    site_packages=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    if selected gunicornd; then gunicornd_bin=$(python_gunicornd_binary); fi
    read -ra gunicorn_opts < <(gunicorn_quiet_opts "$python") || true

    make_tmp_dir gunicornd-wsgi

    local hello=() keepalive=() flask=()
    read -ra hello <<<"$SERVERS"
    for name in "${hello[@]}"; do
        keepalive+=("$name")
        [[ $name != uwsgi ]] || keepalive+=(uwsgi-router)
        [[ $name != gunicornd && $name != gunicorn ]] || keepalive+=("$name-gthread")
        [[ $name != gunicornd && $name != gunicorn ]] || flask+=("$name-flask")
    done

    echo "WSGI servers, $WORKERS workers each, $(nproc) CPUs;" \
        "wrk -t$THREADS -c$CONNS -d${DURATION}s, $ROUNDS interleaved rounds per load"
    local versions
    versions="$(python_package_versions "$python" "${WSGI_VENV_PACKAGES[@]}");"
    versions+=" Python $("$python" -c 'import platform; print(platform.python_version())')"
    echo "$versions${gunicornd_bin:+; gunicornd $gunicornd_bin}"

    start_servers / "${keepalive[@]}"

    printf '\n== hello (%s), Connection: close\n' "$HELLO_APP"
    run_rounds close / "${hello[@]}"
    report_load close gunicorn gunicornd no / "${hello[@]}"

    printf '\n== hello, keep-alive (no Connection header from wrk)\n'
    run_rounds keepalive / "${keepalive[@]}"
    report_load keepalive gunicorn gunicornd yes / "${keepalive[@]}"

    for name in $(running "${keepalive[@]}"); do
        measure_memory "$name"
    done
    printf '\n== memory after the hello loads\n'
    report_memory gunicorn "${keepalive[@]}"
    stop_servers "${keepalive[@]}"

    if ((${#flask[@]} > 0)); then
        start_servers "$FLASK_PATH" "${flask[@]}"
        printf '\n== Flask GET %s (%s), Connection: close\n' "$FLASK_PATH" "$FLASK_APP"
        run_rounds flask "$FLASK_PATH" "${flask[@]}"
        report_load flask gunicorn-flask gunicornd-flask no "$FLASK_PATH" "${flask[@]}"
        for name in $(running "${flask[@]}"); do
            measure_memory "$name"
        done
        printf '\n== memory after the Flask load\n'
        report_memory gunicorn-flask "${flask[@]}"
        stop_servers "${flask[@]}"
    fi

    printf '\n'
    report_goals

    local failed=0
    if [[ -s $tmp/errors ]]; then
        log "$bench_name: wrk reported errors against: $(sort -u "$tmp/errors" | tr '\n' ' ')" \
            "(see above); their figures are not trustworthy"
        failed=1
    fi
    for name in "${!missing[@]}"; do
        log "$bench_name: $name ($gunicornd_bin) was not measured: it ${missing[$name]}"
        failed=1
    done
    if ((goal_failures > 0)); then
        log "$bench_name: gunicornd missed $goal_failures of its goals"
        failed=1
    fi
    return "$failed"
}

main "$@"
