#!/usr/bin/env bash
# HTTP throughput of gunicornd's builtin:hello against nginx returning the same
# fixed body, each with 2 worker processes, on loopback, under the same wrk load.
# Rounds are interleaved (gunicornd, nginx, gunicornd, ...) so that noise from
# other work on the machine hits both servers alike. See bench/README.md.
#
# Environment:
#   GUNICORND_BIN  use this binary instead of building target/release/gunicornd
#   BENCH_ROUNDS   rounds per server (default 3)
#   BENCH_DURATION seconds per wrk run (default 5)
#   BENCH_CONNS    concurrent connections (default 32)
#   BENCH_THREADS  wrk threads (default 2)
set -euo pipefail

readonly ROUNDS="${BENCH_ROUNDS:-3}"
readonly DURATION="${BENCH_DURATION:-5}"
readonly CONNS="${BENCH_CONNS:-32}"
readonly THREADS="${BENCH_THREADS:-2}"
readonly WORKERS=2
# wrk reports a few connect errors when the accept queue momentarily
# overflows at start-up; more than this is a failed run, not noise.
readonly MAX_CONNECT_ERRORS=10
readonly START_DEADLINE_S=15
readonly STOP_DEADLINE_S=5

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"
readonly script_dir repo_root

tmp=""
gunicornd_pid=""
nginx_pid=""

log() { printf '%s\n' "$*" >&2; }
die() {
    log "http.sh: $*"
    exit 1
}

# --- setup -------------------------------------------------------------------

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root or sudo to run: $*"
    fi
}

find_nginx() {
    # /usr/sbin is not on a normal user's PATH.
    command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true
}

install_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    [[ -n "$(find_nginx)" ]] || missing+=(nginx)
    command -v setsid >/dev/null || missing+=(util-linux)
    ((${#missing[@]} == 0)) && return
    log "installing ${missing[*]} with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

gunicornd_binary() {
    if [[ -n "${GUNICORND_BIN:-}" ]]; then
        [[ -x "$GUNICORND_BIN" ]] || die "GUNICORND_BIN=$GUNICORND_BIN is not executable"
        echo "$GUNICORND_BIN"
        return
    fi
    log "building gunicornd (release)"
    (cd "$repo_root" && cargo build --release --quiet --bin gunicornd) >&2
    echo "${CARGO_TARGET_DIR:-$repo_root/target}/release/gunicornd"
}

# A loopback port nobody listens on. Another process could take it before the
# server binds; the server would then fail to start and wait_ready says so.
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "no free loopback port found"
}

write_nginx_conf() {
    local port="$1" dir="$2"
    mkdir -p "$dir/logs"
    cat >"$dir/nginx.conf" <<EOF
worker_processes $WORKERS;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/logs/error.log;
events {}
http {
    access_log off;
    default_type text/plain;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen 127.0.0.1:$port;
        location / {
            return 200 "Hello, World!\n";
        }
    }
}
EOF
}

# --- server lifecycle --------------------------------------------------------

# Each server runs in its own session so cleanup can reach its workers even if
# the master died without taking them along.
start_gunicornd() {
    local bin="$1" port="$2"
    setsid "$bin" builtin:hello -w "$WORKERS" -b "127.0.0.1:$port" \
        --control-socket "$tmp/gunicornd.ctl" \
        >"$tmp/gunicornd.log" 2>&1 </dev/null &
    gunicornd_pid=$!
}

start_nginx() {
    local bin="$1" port="$2" dir="$tmp/nginx"
    write_nginx_conf "$port" "$dir"
    # -e: nginx opens its compiled-in error log before reading the config.
    setsid "$bin" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" \
        >"$tmp/nginx.log" 2>&1 </dev/null &
    nginx_pid=$!
}

# Polls until the server answers an HTTP request with 200, or fails once the
# deadline passes or the server exits.
wait_ready() {
    local name="$1" pid="$2" port="$3" logfile="$4"
    local deadline=$((SECONDS + START_DEADLINE_S)) status
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || {
            log "$name exited during start-up; its log:"
            cat "$logfile" >&2
            die "$name did not start"
        }
        if status=$(http_status "$port") && [[ $status == 200 ]]; then
            return
        fi
        sleep 0.05
    done
    cat "$logfile" >&2
    die "$name did not answer on port $port within ${START_DEADLINE_S}s"
}

http_status() {
    local port="$1" fd line
    # The braces make the 2>/dev/null apply to this open only, not to the shell.
    { exec {fd}<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
    printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&"$fd"
    IFS=' ' read -r -t 2 -u "$fd" _ line _ || line=""
    exec {fd}>&-
    [[ -n $line ]] && echo "$line"
}

stop_server() {
    local pid="$1" deadline=$((SECONDS + STOP_DEADLINE_S))
    [[ -n $pid ]] || return 0
    # gunicornd and nginx both treat INT as "stop now", workers included.
    kill -INT "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.05
    done
    # Whatever is left of the session (master or orphaned workers) goes now.
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    stop_server "$gunicornd_pid"
    stop_server "$nginx_pid"
    [[ -n $tmp ]] && rm -rf "$tmp"
    exit "$rc"
}

# --- measuring ---------------------------------------------------------------

# Runs one wrk load; prints its Requests/sec on stdout and any error counts on
# stderr. A run with errors is noted in $tmp/errors (a file, because this runs
# in a command substitution's subshell).
run_wrk() {
    local name="$1" url="$2" out rps connect read write timeout non2xx
    out=$(timeout $((DURATION + 15)) wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" \
        -H 'Connection: close' "$url") || die "wrk failed against $name: $out"
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    [[ -n $rps ]] || die "no Requests/sec in wrk output for $name: $out"
    read -r connect read write timeout < <(
        awk '/Socket errors:/ {gsub(",", ""); print $4, $6, $8, $10; found=1}
             END {if (!found) print 0, 0, 0, 0}' <<<"$out"
    )
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5; found=1} END {if (!found) print 0}' <<<"$out")
    if ((connect > 0 || read > 0 || write > 0 || timeout > 0 || non2xx > 0)); then
        log "  $name errors: connect $connect, read $read, write $write, timeout $timeout, non-2xx $non2xx"
    fi
    if ((connect > MAX_CONNECT_ERRORS || read > 0 || write > 0 || timeout > 0 || non2xx > 0)); then
        echo bad >>"$tmp/errors"
    fi
    echo "$rps"
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1}
        END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

main() {
    trap cleanup EXIT
    # Turn INT/TERM into an ordinary exit so the EXIT trap runs for them too.
    trap 'exit 130' INT
    trap 'exit 143' TERM
    install_tools
    local gunicornd_bin nginx_bin
    gunicornd_bin=$(gunicornd_binary)
    [[ -x $gunicornd_bin ]] || die "no gunicornd binary at $gunicornd_bin"
    nginx_bin=$(find_nginx)

    tmp=$(mktemp -d "${TMPDIR:-/tmp}/gunicornd-bench.XXXXXX")
    # nginx workers drop to nobody when started as root; let them in.
    chmod 755 "$tmp"

    local g_port n_port
    g_port=$(free_port)
    start_gunicornd "$gunicornd_bin" "$g_port"
    n_port=$(free_port)
    [[ $n_port != "$g_port" ]] || n_port=$(free_port)
    start_nginx "$nginx_bin" "$n_port"
    wait_ready gunicornd "$gunicornd_pid" "$g_port" "$tmp/gunicornd.log"
    wait_ready nginx "$nginx_pid" "$n_port" "$tmp/nginx.log"

    echo "wrk -t$THREADS -c$CONNS -d${DURATION}s -H 'Connection: close', $ROUNDS rounds," \
        "$WORKERS workers each, $(nproc) CPUs"
    local g_rps=() n_rps=() r g n
    for ((r = 1; r <= ROUNDS; r++)); do
        g=$(run_wrk gunicornd "http://127.0.0.1:$g_port/")
        n=$(run_wrk nginx "http://127.0.0.1:$n_port/")
        g_rps+=("$g")
        n_rps+=("$n")
        printf 'round %d: gunicornd %s req/s, nginx %s req/s\n' "$r" "$g" "$n"
    done

    local g_med n_med
    g_med=$(median "${g_rps[@]}")
    n_med=$(median "${n_rps[@]}")
    printf '\ngunicornd median: %s req/s\n' "$g_med"
    printf 'nginx median: %s req/s\n' "$n_med"
    awk -v g="$g_med" -v n="$n_med" 'BEGIN {printf "ratio gunicornd/nginx: %.2f\n", g / n}'

    if [[ -s $tmp/errors ]]; then
        die "some runs reported errors (see above); figures are not trustworthy"
    fi
}

main "$@"
