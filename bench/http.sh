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

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- setup -------------------------------------------------------------------

find_nginx() {
    # /usr/sbin is not on a normal user's PATH.
    command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true
}

install_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    [[ -n "$(find_nginx)" ]] || missing+=(nginx)
    command -v setsid >/dev/null || missing+=(util-linux)
    install_packages "${missing[@]}"
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

start_gunicornd() {
    local bin="$1" port="$2"
    start_server gunicornd "$bin" builtin:hello -w "$WORKERS" -b "127.0.0.1:$port" \
        --control-socket "$tmp/gunicornd.ctl"
}

start_nginx() {
    local bin="$1" port="$2" dir="$tmp/nginx"
    write_nginx_conf "$port" "$dir"
    # -e: nginx opens its compiled-in error log before reading the config.
    start_server nginx "$bin" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log"
}

main() {
    trap_exit
    install_tools
    local gunicornd_bin nginx_bin
    gunicornd_bin=$(gunicornd_binary)
    nginx_bin=$(find_nginx)

    make_tmp_dir gunicornd-bench
    # nginx workers drop to nobody when started as root; let them in.
    chmod 755 "$tmp"

    local g_port n_port
    g_port=$(free_port)
    start_gunicornd "$gunicornd_bin" "$g_port"
    n_port=$(free_port)
    [[ $n_port != "$g_port" ]] || n_port=$(free_port)
    start_nginx "$nginx_bin" "$n_port"
    wait_ready gunicornd "$g_port"
    wait_ready nginx "$n_port"

    echo "wrk -t$THREADS -c$CONNS -d${DURATION}s -H 'Connection: close', $ROUNDS rounds," \
        "$WORKERS workers each, $(nproc) CPUs"
    local g_rps=() n_rps=() r g n
    for ((r = 1; r <= ROUNDS; r++)); do
        g=$(run_wrk gunicornd "http://127.0.0.1:$g_port/" -H 'Connection: close')
        n=$(run_wrk nginx "http://127.0.0.1:$n_port/" -H 'Connection: close')
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
