# shellcheck shell=bash
# What the bench scripts share: setup (tools, the gunicornd binary, ports),
# starting and stopping servers each in its own session, the exit trap that
# cleans up after them, and reading wrk's error counters. Sourced by the
# scripts after their `set -euo pipefail`; it defines functions and the state
# they keep, and runs nothing else.

lib_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$lib_dir/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
# Prefixes die's messages: the name the script was run under.
bench_name="${0##*/}"
readonly lib_dir repo_root target_dir bench_name

readonly START_DEADLINE_S=15
readonly STOP_DEADLINE_S=5

# The run's temp dir (see make_tmp_dir), removed on exit.
tmp=""
# Master pid of each running server, by name (see start_server).
declare -A server_pids=()
# A wrk running in the background of the main shell, if any; the exit trap
# ends it before the servers, so that it does not outlive the script.
wrk_pid=""

log() { printf '%s\n' "$*" >&2; }
die() {
    log "$bench_name: $*"
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

# Installs the given Debian packages, if any; the caller lists the ones whose
# tools it found missing.
install_packages() {
    (($# == 0)) && return
    log "installing $* with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "$@" >/dev/null
}

# Prints the path of the gunicornd to measure: $GUNICORND_BIN, or a release
# build of this checkout.
gunicornd_binary() {
    if [[ -n "${GUNICORND_BIN:-}" ]]; then
        [[ -x "$GUNICORND_BIN" ]] || die "GUNICORND_BIN=$GUNICORND_BIN is not executable"
        echo "$GUNICORND_BIN"
        return
    fi
    log "building gunicornd (release)"
    (cd "$repo_root" && cargo build --release --quiet --bin gunicornd) >&2
    [[ -x $target_dir/release/gunicornd ]] || die "no gunicornd binary at $target_dir/release/gunicornd"
    echo "$target_dir/release/gunicornd"
}

# A loopback port nobody listens on, below the kernel's ephemeral range: the
# load leaves tens of thousands of client sockets in TIME_WAIT on ephemeral
# ports, and a server asked to bind one of those fails with "Address already
# in use". Another process could still take the port before the server binds;
# the server would then fail to start and wait_ready says so.
free_port() {
    local low port
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range
    ((low > 11000)) || die "the ephemeral port range starts at $low; no room below it"
    for _ in $(seq 100); do
        port=$((10000 + RANDOM % (low - 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "no free loopback port found"
}

# Creates the run's temp dir as $tmp, named PREFIX.XXXXXX under $TMPDIR.
make_tmp_dir() {
    local prefix="$1"
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/$prefix.XXXXXX")
}

# --- server lifecycle --------------------------------------------------------

# Starts a server in its own session (so stop_server can reach its workers
# even if the master died without taking them along), logging to
# $tmp/NAME.log. setsid execs the server in place, so $! is the master's pid.
start_server() {
    local name="$1"
    shift
    setsid "$@" >"$tmp/$name.log" 2>&1 </dev/null &
    server_pids[$name]=$!
}

# Polls until the server answers an HTTP request with 200, or fails once the
# deadline passes or the server exits.
wait_ready() {
    local name="$1" port="$2" pid="${server_pids[$1]}"
    local deadline=$((SECONDS + START_DEADLINE_S)) status
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || {
            log "$name exited during start-up; its log:"
            cat "$tmp/$name.log" >&2
            die "$name did not start"
        }
        if status=$(http_status "$port") && [[ $status == 200 ]]; then
            return
        fi
        sleep 0.05
    done
    cat "$tmp/$name.log" >&2
    die "$name did not answer on port $port within ${START_DEADLINE_S}s"
}

# Prints the status code of a GET / on the port; fails if nothing answers.
http_status() {
    local port="$1" fd line
    # The braces make the 2>/dev/null apply to this open only, not to the shell.
    { exec {fd}<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
    printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&"$fd"
    IFS=' ' read -r -t 2 -u "$fd" _ line _ || line=""
    exec {fd}>&-
    [[ -n $line ]] && echo "$line"
}

# Stops the named server, if it runs, and all that is left of its session.
stop_server() {
    local name="$1" pid="${server_pids[$1]:-}" deadline=$((SECONDS + STOP_DEADLINE_S))
    [[ -n $pid ]] || return 0
    # gunicornd, gunicorn and nginx all treat INT as "stop now", workers included.
    kill -INT "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.05
    done
    # Whatever is left of the session (master or orphaned workers) goes now.
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "server_pids[$name]"
}

cleanup() {
    local rc=$? name
    [[ -z $wrk_pid ]] || kill "$wrk_pid" 2>/dev/null || true
    for name in "${!server_pids[@]}"; do
        stop_server "$name"
    done
    [[ -n $tmp ]] && rm -rf "$tmp"
    exit "$rc"
}

# Makes every way out of the script, error and Ctrl-C included, run cleanup.
trap_exit() {
    trap cleanup EXIT
    # Turn INT/TERM into an ordinary exit so the EXIT trap runs for them too.
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# --- measuring ---------------------------------------------------------------

# Prints the error counters in wrk's output ($1) as
#   connect read write timeout non2xx
# with 0 for those wrk left out (it prints them only when some are non-zero).
wrk_error_counts() {
    local out="$1" socket non2xx
    socket=$(awk '/Socket errors:/ {gsub(",", ""); print $4, $6, $8, $10; found=1}
                  END {if (!found) print 0, 0, 0, 0}' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5; found=1} END {if (!found) print 0}' <<<"$out")
    echo "$socket $non2xx"
}
