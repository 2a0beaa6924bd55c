#!/bin/sh
# Entry point of every HandlerManifest.json command: pick a CPython 3.9-3.13, put the vendored
# dependencies for this Python version and CPU on PYTHONPATH, and run `python3 -m handler`.
#
#   bin/launcher.sh install|enable|disable|uninstall|update   run the handler
#   bin/launcher.sh --selfcheck                               import every vendored dependency
#
# Exit codes of the launcher itself (anything else comes from the handler or the self-check):
#   52  no usable python3 (none found, or none between 3.9 and 3.13)
#   53  no vendored dependencies for this CPU architecture / Python version
#   54  the package is incomplete (vendor/targets.txt or bin/selfcheck.py missing)
# POSIX sh only: the agent runs commands with `sh -c`, which is dash on Debian and Ubuntu.

EXIT_NO_PYTHON=52
EXIT_NO_VENDOR=53
EXIT_BROKEN=54

die() {
    code=$1
    shift
    echo "launcher: $*" >&2
    exit "$code"
}

# The agent's cwd is the extension dir, but do not rely on it: use the launcher's location.
case $0 in
    */*) bin_dir=${0%/*} ;;
    *) bin_dir=. ;;
esac
ext_dir=$(cd "$bin_dir/.." && pwd -P) || die "$EXIT_BROKEN" "cannot enter the extension dir"
cd "$ext_dir" || die "$EXIT_BROKEN" "cannot enter $ext_dir"

targets_file="$ext_dir/vendor/targets.txt"
[ -r "$targets_file" ] || die "$EXIT_BROKEN" "package incomplete: $targets_file is missing"

# Prints "MAJOR.MINOR.MICRO" for an interpreter, or nothing when it does not run.
python_version() {
    "$1" -c 'import sys; sys.stdout.write("%d.%d.%d\n" % tuple(sys.version_info[:3]))' \
        2>/dev/null </dev/null
}

find_python() {
    found=""
    for candidate in python3 python3.13 python3.12 python3.11 python3.10 python3.9 \
        /usr/libexec/platform-python; do
        path=$(command -v "$candidate" 2>/dev/null) || continue
        [ -n "$path" ] || continue
        version=$(python_version "$path")
        case $version in
            3.9.* | 3.10.* | 3.11.* | 3.12.* | 3.13.*)
                PYTHON=$path
                PYTHON_MINOR=${version%.*}
                return 0
                ;;
        esac
        found="$found${found:+, }$candidate ${version:-(does not run)}"
    done
    if [ -n "$found" ]; then
        die "$EXIT_NO_PYTHON" "no python3 between 3.9 and 3.13 found (found: $found)"
    fi
    die "$EXIT_NO_PYTHON" "no python3 found on PATH ($PATH) nor /usr/libexec/platform-python;" \
        "install CPython 3.9-3.13"
}

detect_arch() {
    machine=$(uname -m 2>/dev/null) || machine=""
    case $machine in
        x86_64 | amd64) ARCH=x86_64 ;;
        aarch64 | arm64) ARCH=aarch64 ;;
        *) die "$EXIT_NO_VENDOR" "no vendored dependencies for arch ${machine:-unknown}" \
            "(this package supports x86_64 and aarch64)" ;;
    esac
}

# vendor/targets.txt lines: "<python minor> <arch> <folder> [<folder> ...]", most specific first.
vendor_path() {
    folders=""
    while read -r minor arch rest; do
        if [ "$minor" = "$PYTHON_MINOR" ] && [ "$arch" = "$ARCH" ]; then
            folders=$rest
            break
        fi
    done <"$targets_file"
    [ -n "$folders" ] || die "$EXIT_NO_VENDOR" "no vendored dependencies for Python" \
        "$PYTHON_MINOR on arch $ARCH ($PYTHON)"
    VENDOR_PATH=""
    for folder in $folders; do
        [ -d "$ext_dir/vendor/$folder" ] || die "$EXIT_BROKEN" \
            "package incomplete: vendor/$folder is missing"
        VENDOR_PATH="$VENDOR_PATH:$ext_dir/vendor/$folder"
    done
}

detect_arch
find_python
vendor_path

# Only our code and our vendored packages come before the interpreter's own site-packages;
# -s keeps the user's ~/.local site-packages out.
PYTHONPATH="$ext_dir$VENDOR_PATH"
export PYTHONPATH

if [ "${1:-}" = "--selfcheck" ]; then
    [ -r "$ext_dir/bin/selfcheck.py" ] || die "$EXIT_BROKEN" "bin/selfcheck.py is missing"
    exec "$PYTHON" -s "$ext_dir/bin/selfcheck.py" "$ext_dir" "$PYTHON_MINOR-$ARCH"
fi
exec "$PYTHON" -s -m handler "$@"
