#!/usr/bin/env bash
# Checks the shipped systemd units with `systemd-analyze verify`.
#
# usage: .ci/verify-units.sh BINARY
#   BINARY  the gunicornd executable the units' ExecStart should point at,
#           e.g. target/debug/gunicornd (or /bin/true when none is built).
#
# The units name /usr/local/bin/gunicornd; they are copied to a temporary
# directory with that path replaced by BINARY, because verify fails on an
# ExecStart that is not executable. The check fails when verify exits
# non-zero or prints any error or warning (unknown keys or sections, values it
# cannot parse, missing executables): verify itself exits 0 on most warnings.
# systemd is installed with apt-get when systemd-analyze is missing.
set -euo pipefail

usage() {
    echo "usage: $0 BINARY   (e.g. target/debug/gunicornd, or /bin/true)" >&2
    exit 2
}

[ $# -eq 1 ] || usage
binary=$1
if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then
    echo "verify-units: $binary is not an executable file" >&2
    exit 2
fi
binary=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")

repo=$(cd "$(dirname "$0")/.." && pwd)
units_dir=$repo/systemd

ensure_systemd_analyze() {
    command -v systemd-analyze >/dev/null 2>&1 && return
    echo "verify-units: installing systemd for systemd-analyze" >&2
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
    "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends systemd
}

ensure_systemd_analyze

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# systemd splits command lines on blanks and expands % and $ in them: a path
# with such characters is reached through a plain symlink instead.
case $binary in
    *[[:space:]\'\"\\%\$]*)
        ln -s "$binary" "$work/gunicornd"
        binary=$work/gunicornd
        ;;
esac
# Escape the replacement for sed: backslash, the delimiter and '&'.
replacement=$(printf '%s' "$binary" | sed -e 's/[\\|&]/\\&/g')
units=()
for unit in "$units_dir"/*.service "$units_dir"/*.socket; do
    name=$(basename "$unit")
    sed -e "s|/usr/local/bin/gunicornd|$replacement|g" "$unit" >"$work/$name"
    case $name in
        # A template is verified through an instance; the file stays the
        # template, which systemd finds next to the instance name.
        *@.service) units+=("$work/${name%@.service}@example.service") ;;
        *) units+=("$work/$name") ;;
    esac
done

status=0
output=$(cd "$work" && systemd-analyze verify --man=no "${units[@]}" 2>&1) || status=$?
[ -z "$output" ] || printf '%s\n' "$output"

if [ "$status" -ne 0 ]; then
    echo "verify-units: systemd-analyze verify failed (exit $status)" >&2
    exit 1
fi
if printf '%s\n' "$output" |
    grep -Eiq 'unknown|invalid|ignor|fail|error|not executable|warn|cannot|missing|deprecated'; then
    echo "verify-units: systemd-analyze verify reported problems" >&2
    exit 1
fi
echo "verify-units: ${#units[@]} units OK ($(systemd-analyze --version | head -n 1))"
