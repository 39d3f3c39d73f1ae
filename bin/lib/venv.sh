# Sourced by bin/run, bin/test and bin/lint: the project's virtualenv, made and kept installed in one way.
# The caller sets `tool` (its name, for messages) and runs from the repository's root.

venv="$(pwd)/.venv"
python="$venv/bin/python"

say() { printf '%s: %s\n' "$tool" "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root (or sudo) to run: $*"
        return 1
    fi
}

apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ensure_venv: .venv exists, on a machine that has only Python too.
ensure_venv() {
    if [ -x "$python" ]; then
        return
    fi
    say "creating .venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        # Debian's own python3 ships venv's pip bootstrap separately.
        say "python3 -m venv failed: installing Debian's python3-venv"
        rm -rf "$venv"
        apt_install python3-venv
        python3 -m venv "$venv"
    fi
}

# ensure_installed SPEC STAMP [STAMP...]: pip-installs SPEC (e.g. '.[test]') into .venv unless one of the
# named stamps records the current pyproject.toml (a later stamp names an install that is a superset of
# SPEC); records the first stamp after installing.
ensure_installed() {
    local spec=$1 wanted name
    shift
    ensure_venv
    wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
    for name in "$@"; do
        if [ "$(cat "$venv/.sla-$name-stamp" 2>/dev/null)" = "$wanted" ]; then
            return
        fi
    done
    say "installing $spec into .venv"
    # pip's output only matters when it fails (it warns about every unreachable index location).
    "$python" -m pip install --disable-pip-version-check -e "$spec" >"$venv/pip-$1.log" 2>&1 \
        || { cat "$venv/pip-$1.log" >&2; exit 1; }
    echo "$wanted" >"$venv/.sla-$1-stamp"
}
