# shellcheck shell=bash
# What the bench scripts share: setup (tools, the gunicornd binary, Python
# venvs with the peers, ports), starting and stopping servers each in its own
# session, the exit trap that cleans up after them, running wrk and reading
# its figures, and reading the memory of a server's processes. Sourced by the
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
# A pip install from PyPI that takes longer than this is stuck.
readonly INSTALL_DEADLINE_S=600
# wrk reports a few connect errors when the accept queue momentarily
# overflows at start-up; more than this is a failed run, not noise.
readonly MAX_CONNECT_ERRORS=10

# The run's temp dir (see make_tmp_dir), removed on exit.
tmp=""
# Master pid of each running server, by name (see start_server): its current
# master, which a binary upgrade replaces (see set_master).
declare -A server_pids=()
# Every master each server has had, space-separated: during a binary upgrade
# two run at once, and stop_server must reach both.
declare -A server_masters=()
# Process group of each server: its first master's pid. setsid made that
# master the group leader; its workers, and the masters a binary upgrade
# forks from it, stay in the group.
declare -A server_groups=()
# A wrk and a probe (bench/probe.py) running in the background of the main
# shell, if any; the exit trap ends them before the servers, so that they do
# not outlive the script.
wrk_pid=""
probe_pid=""

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
    release_binary gunicornd
}

# Prints the path of the gunicornd to measure with Python apps:
# $GUNICORND_BIN, or a release build of this checkout with the cargo feature
# `python` (embedded Python) when the package declares it.
python_gunicornd_binary() {
    if [[ -n "${GUNICORND_BIN:-}" ]]; then
        gunicornd_binary
    else
        release_binary gunicornd python
    fi
}

# Prints the path of the gunicornctl to use: $GUNICORNCTL_BIN, else the one
# beside $GUNICORND_BIN (both are built into the same directory), else a
# release build of this checkout.
gunicornctl_binary() {
    local beside="${GUNICORND_BIN:+$(dirname "$GUNICORND_BIN")/gunicornctl}"
    if [[ -n "${GUNICORNCTL_BIN:-}" ]]; then
        [[ -x "$GUNICORNCTL_BIN" ]] || die "GUNICORNCTL_BIN=$GUNICORNCTL_BIN is not executable"
        echo "$GUNICORNCTL_BIN"
    elif [[ -n $beside && -x $beside ]]; then
        echo "$beside"
    else
        release_binary gunicornctl
    fi
}

# Builds the named binary of the workspace (release) and prints its path.
# With FEATURE, builds with that cargo feature if the root package declares
# it, and without it (saying so) if not: a checkout from before the feature
# still builds, and the bench reports what that binary does.
release_binary() {
    local name="$1" feature="${2:-}" features=()
    if [[ -n $feature ]]; then
        if root_package_has_feature "$feature"; then
            features=(--features "$feature")
        else
            log "the gunicornd package has no cargo feature '$feature'; building without it"
        fi
    fi
    log "building $name (release${features[*]:+, ${features[*]}})"
    (cd "$repo_root" && cargo build --release --quiet --bin "$name" "${features[@]}") >&2
    [[ -x $target_dir/release/$name ]] || die "no $name binary at $target_dir/release/$name"
    echo "$target_dir/release/$name"
}

# Succeeds if the workspace's root package (gunicornd) declares the cargo
# feature. Reads cargo's own view of the manifest, so features defined in any
# form count.
root_package_has_feature() {
    local feature="$1" metadata
    metadata=$(cd "$repo_root" && cargo metadata --no-deps --format-version 1) ||
        die "cargo metadata failed"
    python3 -c '
import json, sys
packages = {p["name"]: p for p in json.load(sys.stdin)["packages"]}
sys.exit(0 if sys.argv[1] in packages["gunicornd"]["features"] else 1)
' "$feature" <<<"$metadata"
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

# --- Python venvs with the peers --------------------------------------------

# gunicorn from PyPI, installed once and reused by later runs: the peer of
# reload.sh and upgrade.sh.
readonly VENV="$target_dir/bench-gunicorn-venv"
# The WSGI servers and the framework that wsgi.sh measures, likewise.
readonly WSGI_VENV="$target_dir/bench-wsgi-venv"
readonly WSGI_VENV_PACKAGES=(gunicorn granian pyuwsgi flask)

# Installs what a bench with Python servers needs beyond bash: wrk, setsid
# and a python3 that can make the venv at VENV_DIR unless it exists.
install_python_bench_tools() {
    local venv="$1" missing=() probe
    command -v wrk >/dev/null || missing+=(wrk)
    command -v setsid >/dev/null || missing+=(util-linux)
    command -v python3 >/dev/null || missing+=(python3)
    if [[ ! -x $venv/bin/python ]]; then
        # Debian's python3 lacks ensurepip (so venv fails) without python3-venv.
        probe=$(mktemp -d)
        python3 -m venv "$probe/venv" >/dev/null 2>&1 || missing+=(python3-venv)
        rm -rf "$probe"
    fi
    install_packages "${missing[@]}"
}

# The tools of a bench against gunicorn alone (reload.sh, upgrade.sh).
install_gunicorn_bench_tools() {
    install_python_bench_tools "$VENV"
}

# Prints the python of the venv at VENV_DIR, first creating it with the
# PACKAGES from PyPI if it does not exist. The venv is built beside its final
# place and renamed when complete, so an interrupted run never leaves a
# half-made one, and an existing one holds all its packages (delete it to get
# newer ones). It is used through `bin/python -m MODULE` or `bin/python
# bin/SCRIPT`, which survive the rename (console-script shebangs would not).
venv_python() {
    local venv="$1"
    shift
    if [[ ! -x $venv/bin/python ]]; then
        local building="$venv.building-$$"
        log "installing $* from PyPI into $venv"
        rm -rf "$building"
        mkdir -p "$target_dir"
        python3 -m venv "$building" >&2
        timeout "$INSTALL_DEADLINE_S" "$building/bin/python" -m pip install --quiet \
            --disable-pip-version-check "$@" >&2 ||
            die "pip install $* failed or took over ${INSTALL_DEADLINE_S}s"
        rm -rf "$venv"
        mv "$building" "$venv"
    fi
    echo "$venv/bin/python"
}

# Python with gunicorn installed.
gunicorn_python() {
    venv_python "$VENV" gunicorn
}

# Python with the servers and framework of wsgi.sh installed.
wsgi_python() {
    venv_python "$WSGI_VENV" "${WSGI_VENV_PACKAGES[@]}"
}

# Prints the installed version of each Python package named, as NAME VERSION
# separated by commas, for a headline.
python_package_versions() {
    local python="$1"
    shift
    "$python" -c '
import sys
from importlib.metadata import version
print(", ".join(f"{name} {version(name)}" for name in sys.argv[1:]))
' "$@"
}

# Prints the version of the gunicorn that PYTHON runs, for the headline.
gunicorn_version() {
    local python="$1"
    "$python" -c 'import gunicorn; print(gunicorn.__version__)'
}

# Prints the options that keep gunicorn from creating files outside the temp
# dir: gunicorn 25.1+ opens a control socket by default.
gunicorn_quiet_opts() {
    local python="$1"
    if "$python" -m gunicorn --help | grep -q -- '--no-control-socket'; then
        echo --no-control-socket
    fi
}

# Writes $tmp/hello.py, whose hello:app gives the same response as
# builtin:hello: 200, text/plain, "Hello, World!\n". It is bench/wsgi_hello.py,
# the app that wsgi.sh serves from bench/ itself.
write_wsgi_app() {
    cp "$lib_dir/wsgi_hello.py" "$tmp/hello.py"
}

# --- server lifecycle --------------------------------------------------------

# Starts a server in its own session (so stop_server can reach its workers
# even if the master died without taking them along), logging to
# $tmp/NAME.log. setsid execs the server in place, so $! is the master's pid.
# The log is opened for appending so that the server may also be given it as
# its error log file: every master of a binary upgrade then appends to it
# without overwriting the others' lines.
start_server() {
    local name="$1"
    shift
    setsid "$@" >>"$tmp/$name.log" 2>&1 </dev/null &
    server_pids[$name]=$!
    server_masters[$name]=$!
    server_groups[$name]=$!
}

# Records PID as one of the named server's masters, so that stop_server
# stops it too: a binary upgrade's new master, before it takes over.
add_master() {
    local name="$1" pid="$2"
    [[ " ${server_masters[$name]} " == *" $pid "* ]] || server_masters[$name]+=" $pid"
}

# After a binary upgrade: NEW is the named server's master, OLD has exited
# (and is forgotten, so that its pid, once reused, is never signalled).
promote_master() {
    local name="$1" old="$2" new="$3" pid masters=() kept=()
    add_master "$name" "$new"
    read -ra masters <<<"${server_masters[$name]}"
    for pid in "${masters[@]}"; do
        [[ $pid == "$old" ]] || kept+=("$pid")
    done
    server_masters[$name]="${kept[*]}"
    server_pids[$name]=$new
}

# Succeeds if PID is a running process. A zombie counts as gone: a master
# forked by another master is reaped by whoever adopts it when its parent
# exits, which inside a container may be nobody.
alive() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    # The state follows the command name, which is in parentheses.
    stat=${stat##*) }
    [[ ${stat%% *} != [ZX] ]]
}

# Prints the pids of PID's children, one a line.
child_pids() {
    local pid="$1" file kids
    if [[ -r /proc/$pid/task/$pid/children ]]; then
        # Each thread lists the children it forked.
        for file in /proc/"$pid"/task/*/children; do
            kids=()
            { read -ra kids <"$file"; } 2>/dev/null || true
            ((${#kids[@]} == 0)) || printf '%s\n' "${kids[@]}"
        done
    else
        # Kernels without CONFIG_PROC_CHILDREN.
        ps -o pid= --ppid "$pid" | tr -d ' '
    fi
}

# Polls until the server answers a GET of PATH (default /) with 200, or fails
# once the deadline passes or the server exits.
wait_ready() {
    server_ready "$@" || die "$1 did not start"
}

# Like wait_ready, but on failure prints the server's log and why, stops what
# is left of the server and returns 1, for a caller that goes on without it.
server_ready() {
    local name="$1" port="$2" path="${3:-/}" pid="${server_pids[$1]}"
    local deadline=$((SECONDS + START_DEADLINE_S)) status
    while ((SECONDS < deadline)); do
        if ! alive "$pid"; then
            log "$name exited during start-up; its log:"
            cat "$tmp/$name.log" >&2
            stop_server "$name"
            return 1
        fi
        if status=$(http_status "$port" "$path") && [[ $status == 200 ]]; then
            return
        fi
        sleep 0.05
    done
    cat "$tmp/$name.log" >&2
    log "$name did not answer 200 to GET $path on port $port within ${START_DEADLINE_S}s"
    stop_server "$name"
    return 1
}

# Prints the status code of a GET of PATH (default /) on the port; fails if
# nothing answers.
http_status() {
    local port="$1" path="${2:-/}" fd line
    # The braces make the 2>/dev/null apply to this open only, not to the shell.
    { exec {fd}<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&"$fd"
    IFS=' ' read -r -t 2 -u "$fd" _ line _ || line=""
    exec {fd}>&-
    [[ -n $line ]] && echo "$line"
}

# Succeeds if the server answers an HTTP/1.1 GET of PATH that says nothing
# about the connection with `Connection: close`, i.e. it does not keep
# connections alive; fails if it keeps them (or nothing answers).
answers_connection_close() {
    local port="$1" path="${2:-/}" fd line found=1
    { exec {fd}<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&"$fd"
    # The header block ends at the first empty line; the server may keep the
    # connection open after the body, so nothing past that is read.
    while IFS= read -r -t 2 -u "$fd" line; do
        line=${line%$'\r'}
        [[ -n $line ]] || break
        line=${line,,}
        [[ $line != connection:*close* ]] || found=0
    done
    exec {fd}>&-
    return "$found"
}

# Stops the named server, if it runs: every master it has had, and all that
# is left of its process group.
stop_server() {
    local name="$1" first="${server_groups[$1]:-}" deadline=$((SECONDS + STOP_DEADLINE_S))
    local masters=() pid
    [[ -n $first ]] || return 0
    read -ra masters <<<"${server_masters[$name]}"
    # gunicornd, gunicorn and nginx all treat INT as "stop now", workers included.
    for pid in "${masters[@]}"; do
        if alive "$pid"; then kill -INT "$pid" 2>/dev/null || true; fi
    done
    for pid in "${masters[@]}"; do
        while alive "$pid" && ((SECONDS < deadline)); do
            sleep 0.05
        done
    done
    # Whatever is left of the group (masters or orphaned workers) goes now,
    # and any master that left the group.
    kill -KILL -- "-$first" 2>/dev/null || true
    for pid in "${masters[@]}"; do
        if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    # Only the first master is this shell's child.
    wait "$first" 2>/dev/null || true
    unset "server_pids[$name]" "server_masters[$name]" "server_groups[$name]"
}

cleanup() {
    local rc=$? name
    [[ -z $wrk_pid ]] || kill "$wrk_pid" 2>/dev/null || true
    [[ -z $probe_pid ]] || kill "$probe_pid" 2>/dev/null || true
    for name in "${!server_groups[@]}"; do
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

# Prints the figures of one wrk run against a server that answers 200 to
# everything ($1: wrk's output) as
#   requests failed connect read write non2xx timeouts max_latency
# or fails if the output has no request count. With one request per
# connection (Connection: close) every socket error is one request that got
# no answer (a reset, or the connection closed before the full response), and
# wrk counts only answered requests in "N requests in": requests = answered +
# socket errors, failed = socket errors + non-2xx (wrk counts status >= 400
# there). wrk's "timeout" counter flags a request still unanswered after
# --timeout; the answer may still come (and is then counted as done), so it is
# reported on its own, not as a failure.
wrk_figures() {
    local out="$1" completed connect read write timeouts non2xx max_latency
    completed=$(awk '/requests in/ {print $1}' <<<"$out")
    [[ -n $completed ]] || return 1
    read -r connect read write timeouts non2xx < <(wrk_error_counts "$out")
    max_latency=$(awk '$1 == "Latency" {print $4}' <<<"$out")
    echo "$((completed + connect + read + write)) $((connect + read + write + non2xx))" \
        "$connect $read $write $non2xx $timeouts $max_latency"
}

# Runs one wrk load of $DURATION seconds with $THREADS threads and $CONNS
# connections (set by the calling script) against URL, with the extra wrk
# OPTIONS (such as -H 'Connection: close'); prints its Requests/sec on stdout
# and any error counts on stderr. A run with errors (more than a few connect
# errors, or any other) is noted in $tmp/errors, a file because this runs in
# a command substitution's subshell; the caller checks it at the end.
run_wrk() {
    local name="$1" url="$2" out rps connect read write timeout non2xx
    shift 2
    out=$(timeout $((DURATION + 15)) wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" \
        "$@" "$url") || die "wrk failed against $name: $out"
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    [[ -n $rps ]] || die "no Requests/sec in wrk output for $name: $out"
    read -r connect read write timeout non2xx < <(wrk_error_counts "$out")
    if ((connect > 0 || read > 0 || write > 0 || timeout > 0 || non2xx > 0)); then
        log "  $name errors: connect $connect, read $read, write $write, timeout $timeout, non-2xx $non2xx"
    fi
    if ((connect > MAX_CONNECT_ERRORS || read > 0 || write > 0 || timeout > 0 || non2xx > 0)); then
        echo "$name" >>"$tmp/errors"
    fi
    echo "$rps"
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1}
        END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# Prints the median Requests/sec of SERVER under LOAD, or nothing if it was
# not measured; reads the caller's `rounds_rps` ("LOAD SERVER" -> the
# rounds' figures, space-separated).
median_rps() {
    local load="$1" name="$2" values=()
    read -ra values <<<"${rounds_rps["$load $name"]:-}"
    ((${#values[@]} == 0)) || median "${values[@]}"
}

# Prints A / B as "N.NNx", or "-" when either is missing.
ratio() {
    local a="$1" b="$2"
    if [[ -z $a || -z $b ]]; then
        echo -
    else
        awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2fx\n", a / b}'
    fi
}

# --- memory ------------------------------------------------------------------

# Prints PID and every process descended from it, one a line.
process_tree() {
    local pid="$1" kid
    echo "$pid"
    while read -r kid; do
        process_tree "$kid"
    done < <(child_pids "$pid")
}

# Prints the resident set size of PID in KiB (VmRSS in /proc/PID/status): every
# page the process has in memory, shared ones (libraries, pages it still
# shares with the master it was forked from) included.
vm_rss_kib() {
    local pid="$1"
    awk '$1 == "VmRSS:" {print $2; found = 1} END {if (!found) exit 1}' "/proc/$pid/status"
}

# Prints the proportional set size of PID in KiB (Pss in
# /proc/PID/smaps_rollup): its private pages plus its share of each shared
# page, so that the PSS of a server's processes adds up to the memory the
# whole server costs.
pss_kib() {
    local pid="$1"
    awk '$1 == "Pss:" {print $2; found = 1} END {if (!found) exit 1}' "/proc/$pid/smaps_rollup"
}
