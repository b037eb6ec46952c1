#!/usr/bin/env bash
# HTTP throughput of gunicornd's builtin:hello against nginx returning the same
# fixed body, each with 2 worker processes, on loopback, under the same wrk load:
# first one request per connection (gunicornd's sync worker), then keep-alive
# (gunicornd's gthread worker, nginx, and gunicorn's gthread worker serving
# the same body from bench/wsgi_hello.py).
# Rounds are interleaved (gunicornd, nginx, gunicornd, ...) so that noise from
# other work on the machine hits the servers alike. See bench/README.md.
#
# Then the same over HTTPS: gunicornd's rustls against nginx's OpenSSL, on one
# ECDSA P-256 certificate, TLS 1.3 with TLS_AES_128_GCM_SHA256 and X25519 on
# both, Connection: close so that every request is a full handshake (wrk does
# not resume sessions; nginx's session cache and tickets are off anyway).
#
# Environment:
#   GUNICORND_BIN  use this binary instead of building target/release/gunicornd
#   BENCH_ROUNDS   rounds per server (default 3)
#   BENCH_DURATION seconds per wrk run (default 5)
#   BENCH_CONNS    concurrent connections (default 32)
#   BENCH_THREADS  wrk threads (default 2)
#   BENCH_GTHREADS threads per gthread worker, gunicornd's and gunicorn's (default 2)
#   BENCH_GUNICORN set to 0 to leave gunicorn (and its venv) out of the keep-alive rows
set -euo pipefail

readonly ROUNDS="${BENCH_ROUNDS:-3}"
readonly DURATION="${BENCH_DURATION:-5}"
readonly CONNS="${BENCH_CONNS:-32}"
readonly THREADS="${BENCH_THREADS:-2}"
readonly GTHREADS="${BENCH_GTHREADS:-2}"
readonly WITH_GUNICORN="${BENCH_GUNICORN:-1}"
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
    command -v openssl >/dev/null || missing+=(openssl)
    command -v curl >/dev/null || missing+=(curl)
    install_packages "${missing[@]}"
}

# The certificate both HTTPS servers use.
make_certificate() {
    local dir="$1"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -days 1 -subj /CN=localhost -keyout "$dir/key.pem" -out "$dir/cert.pem" \
        2>/dev/null || die "openssl could not make a certificate"
}

# Waits until PORT answers 200 over HTTPS.
wait_tls_ready() {
    local name="$1" port="$2" deadline=$((SECONDS + 20))
    while ((SECONDS < deadline)); do
        if [[ $(curl -ks -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/") == 200 ]]; then
            return
        fi
        sleep 0.05
    done
    cat "$tmp/$name.log" >&2
    die "$name did not answer over HTTPS"
}

write_nginx_conf() {
    local port="$1" dir="$2" tls_port="$3"
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
    server {
        listen 127.0.0.1:$tls_port ssl;
        ssl_certificate $tmp/cert.pem;
        ssl_certificate_key $tmp/key.pem;
        ssl_protocols TLSv1.3;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
        ssl_ecdh_curve X25519;
        ssl_session_cache off;
        ssl_session_tickets off;
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

start_gunicornd_tls() {
    local bin="$1" port="$2"
    start_server gunicornd-tls "$bin" builtin:hello -w "$WORKERS" -b "127.0.0.1:$port" \
        --control-socket "$tmp/gunicornd-tls.ctl" --certfile "$tmp/cert.pem" \
        --keyfile "$tmp/key.pem" --tls-min-version 1.3 --ciphers TLS_AES_128_GCM_SHA256
}

start_gunicornd_gthread() {
    local bin="$1" port="$2"
    start_server gunicornd-gthread "$bin" builtin:hello -w "$WORKERS" -b "127.0.0.1:$port" \
        -k gthread --threads "$GTHREADS" --no-control-socket
}

start_gunicorn_gthread() {
    local python="$1" port="$2" opts=()
    read -ra opts < <(gunicorn_quiet_opts "$python") || true
    start_server gunicorn-gthread "$python" -m gunicorn -w "$WORKERS" -b "127.0.0.1:$port" \
        -k gthread --threads "$GTHREADS" "${opts[@]}" --pythonpath "$lib_dir" wsgi_hello:app
}

start_nginx() {
    local bin="$1" port="$2" tls_port="$3" dir="$tmp/nginx"
    write_nginx_conf "$port" "$dir" "$tls_port"
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

    make_certificate "$tmp"
    local g_port n_port gt_port nt_port
    g_port=$(free_port)
    start_gunicornd "$gunicornd_bin" "$g_port"
    n_port=$(free_port)
    [[ $n_port != "$g_port" ]] || n_port=$(free_port)
    gt_port=$(free_port)
    start_gunicornd_tls "$gunicornd_bin" "$gt_port"
    nt_port=$(free_port)
    start_nginx "$nginx_bin" "$n_port" "$nt_port"
    wait_ready gunicornd "$g_port"
    wait_ready nginx "$n_port"
    wait_tls_ready gunicornd-tls "$gt_port"
    wait_tls_ready nginx "$nt_port"

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

    printf '\nHTTPS (TLS 1.3, TLS_AES_128_GCM_SHA256, X25519, ECDSA P-256, full handshakes)\n'
    local gt_rps=() nt_rps=()
    for ((r = 1; r <= ROUNDS; r++)); do
        g=$(run_wrk gunicornd-tls "https://127.0.0.1:$gt_port/" -H 'Connection: close')
        n=$(run_wrk nginx-tls "https://127.0.0.1:$nt_port/" -H 'Connection: close')
        gt_rps+=("$g")
        nt_rps+=("$n")
        printf 'round %d: gunicornd %s req/s, nginx %s req/s\n' "$r" "$g" "$n"
    done
    g_med=$(median "${gt_rps[@]}")
    n_med=$(median "${nt_rps[@]}")
    printf '\ngunicornd HTTPS median: %s req/s\n' "$g_med"
    printf 'nginx HTTPS median: %s req/s\n' "$n_med"
    awk -v g="$g_med" -v n="$n_med" 'BEGIN {printf "ratio gunicornd/nginx (HTTPS): %.2f\n", g / n}'

    keep_alive_rounds "$gunicornd_bin" "$n_port"

    if [[ -s $tmp/errors ]]; then
        die "some runs reported errors (see above); figures are not trustworthy"
    fi
}

# The keep-alive rows: wrk reuses its connections (no Connection header),
# against gunicornd's gthread worker, the same nginx, and gunicorn's gthread
# worker.
keep_alive_rounds() {
    local gunicornd_bin="$1" n_port="$2" gt_port gu_port="" python=""
    gt_port=$(free_port)
    while [[ $gt_port == "$n_port" ]]; do gt_port=$(free_port); done
    start_gunicornd_gthread "$gunicornd_bin" "$gt_port"
    wait_ready gunicornd-gthread "$gt_port"
    if [[ $WITH_GUNICORN != 0 ]]; then
        install_gunicorn_bench_tools
        python=$(gunicorn_python)
        gu_port=$(free_port)
        while [[ $gu_port == "$n_port" || $gu_port == "$gt_port" ]]; do gu_port=$(free_port); done
        start_gunicorn_gthread "$python" "$gu_port"
        wait_ready gunicorn-gthread "$gu_port"
    fi

    printf '\nkeep-alive: wrk -t%s -c%s -d%ss, %s rounds, %s workers each, gthread workers with %s threads\n' \
        "$THREADS" "$CONNS" "$DURATION" "$ROUNDS" "$WORKERS" "$GTHREADS"
    local g_rps=() n_rps=() u_rps=() r g n u line
    for ((r = 1; r <= ROUNDS; r++)); do
        g=$(run_wrk gunicornd-gthread "http://127.0.0.1:$gt_port/")
        n=$(run_wrk nginx "http://127.0.0.1:$n_port/")
        g_rps+=("$g")
        n_rps+=("$n")
        line="round $r: gunicornd gthread $g req/s, nginx $n req/s"
        if [[ -n $gu_port ]]; then
            u=$(run_wrk gunicorn-gthread "http://127.0.0.1:$gu_port/")
            u_rps+=("$u")
            line+=", gunicorn gthread $u req/s"
        fi
        echo "$line"
    done

    local g_med n_med u_med
    g_med=$(median "${g_rps[@]}")
    n_med=$(median "${n_rps[@]}")
    printf '\ngunicornd gthread keep-alive median: %s req/s\n' "$g_med"
    printf 'nginx keep-alive median: %s req/s\n' "$n_med"
    awk -v g="$g_med" -v n="$n_med" 'BEGIN {printf "ratio gunicornd/nginx, keep-alive: %.2f\n", g / n}'
    if ((${#u_rps[@]} > 0)); then
        u_med=$(median "${u_rps[@]}")
        printf 'gunicorn gthread keep-alive median: %s req/s\n' "$u_med"
        awk -v g="$g_med" -v u="$u_med" 'BEGIN {printf "ratio gunicornd/gunicorn, keep-alive: %.2f\n", g / u}'
    fi
}

main "$@"
