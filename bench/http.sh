#!/usr/bin/env bash
# HTTP throughput of gunicornd's builtin:hello against nginx returning the same
# fixed body, each with 2 worker processes, on loopback, under the same wrk load.
# Rounds are interleaved (gunicornd, nginx, gunicornd, ...) so that noise from
# other work on the machine hits both servers alike. See bench/README.md.
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

    if [[ -s $tmp/errors ]]; then
        die "some runs reported errors (see above); figures are not trustworthy"
    fi
}

main "$@"
