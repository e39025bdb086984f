# Shared by scripts/up and scripts/test: a virtual environment with the project installed, and the
# services the tests need. Sourced, not run.

PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$PROJECT_ROOT/.venv"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
    is_root || { say "missing $*; install it (apt-get install $*) or run as root"; exit 1; }
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    say "installing $* with apt"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Install the project (with the given extras) into .venv; skipped when nothing changed since.
ensure_venv() {
    local extras="$1" python="${PYTHON:-python3}"
    command -v "$python" >/dev/null || apt_install python3
    "$python" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' ||
        { say "aitasks needs Python 3.11 or newer"; exit 1; }
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        "$python" -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && "$python" -m venv "$VENV"; }
    fi
    local hash stamp
    hash=$(sha256sum < "$PROJECT_ROOT/pyproject.toml" | cut -c1-16)
    stamp="$VENV/.installed-$hash-${extras:-base}"
    # The test extras include the base install, so either stamp serves `up`.
    if [ -e "$stamp" ] || { [ -z "$extras" ] && compgen -G "$VENV/.installed-$hash-*" >/dev/null; }; then
        return 0
    fi
    if [ "$extras" = test ]; then
        # Said before it starts (as in README: Quick start), since it is most of a first run.
        say "installing aitasks[test] into $VENV: about 1.6 GB (torch, transformers and" \
            "Playwright, for the image and browser tests), a minute or so; later runs skip it"
    else
        say "installing aitasks${extras:+[$extras]} into $VENV"
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    # Not quiet: pip names each package as it collects it (with a progress bar for each download
    # on a terminal), so a long first install is seen to move.
    "$VENV/bin/python" -m pip install -e "$PROJECT_ROOT${extras:+[$extras]}"
    say "installed aitasks${extras:+[$extras]}"
    find "$VENV" -maxdepth 1 -name '.installed-*' ! -name ".installed-$hash-*" -delete
    touch "$stamp"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
    for _ in $(seq 1 50); do port_open "$1" && return 0; sleep 0.2; done
    say "nothing is listening on 127.0.0.1:$1"; return 1
}

ensure_postgres() {
    port_open 5432 && return 0
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
        apt_install postgresql
        FRESH_POSTGRES=1
    fi
    say "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    wait_for_port 5432
    if [ -n "${FRESH_POSTGRES:-}" ]; then
        # A new Debian cluster wants a password over TCP; give the one we just made a known one.
        su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\""
        export AITASKS_TEST_POSTGRES="postgresql://postgres:postgres@127.0.0.1:5432/postgres"
    fi
}

ensure_redis() {
    port_open 6379 && return 0
    command -v redis-server >/dev/null || apt_install redis-server
    say "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    wait_for_port 6379
}

# The browser tests drive Debian's Chromium (Playwright's own browser download cannot work here).
ensure_chromium() {
    command -v chromium >/dev/null || apt_install chromium
}
