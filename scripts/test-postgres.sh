#!/bin/sh
# A throwaway PostgreSQL server for the tests, from Debian's `postgresql` package.
#
#   scripts/test-postgres.sh start DIR   initdb in DIR, start a server listening only on a
#                                        Unix socket in DIR, print the exports to eval
#   scripts/test-postgres.sh stop DIR    stop it and remove DIR
#
# The server runs as the invoking user, or, when that is root (CI), as the `postgres`
# system user the package creates (PostgreSQL refuses to run as root). Tests that need a
# server read DRIFTWATCH_TEST_POSTGRES_URL (a superuser URL: each test creates and drops
# its own database) and fail instead of skipping when DRIFTWATCH_REQUIRE_POSTGRES=1.
#
#   eval "$(scripts/test-postgres.sh start /tmp/dw-pg)"
#   /work/bin/cargo-locked test -p driftwatch-collector --lib store::postgres
#   scripts/test-postgres.sh stop /tmp/dw-pg
set -eu

usage() {
    echo "usage: $0 start|stop DIR" >&2
    exit 2
}
[ $# -eq 2 ] || usage
action=$1
dir=$2

bindir() {
    for candidate in /usr/lib/postgresql/*/bin; do
        if [ -x "$candidate/pg_ctl" ]; then
            found=$candidate
        fi
    done
    if [ -z "${found:-}" ]; then
        echo "$0: no PostgreSQL server found under /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2
        exit 1
    fi
    echo "$found"
}

# Runs a command as the server's owner.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

case $action in
start)
    bin=$(bindir)
    if [ -e "$dir/data" ]; then
        echo "$0: $dir/data exists: a server is set up there already ($0 stop $dir first)" >&2
        exit 1
    fi
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
    fi
    chmod 700 "$dir"
    user=$(as_owner id -un)
    as_owner "$bin/initdb" --pgdata="$dir/data" --username="$user" --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        exit 1
    }
    # No TCP at all: a Unix socket in DIR, reachable only through DIR's permissions.
    as_owner "$bin/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait \
        -o "-c listen_addresses='' -c unix_socket_directories='$dir' -c fsync=off -c max_connections=200" \
        start >/dev/null || {
        cat "$dir/server.log" >&2
        exit 1
    }
    # CI runs the tests as root: let root through the socket directory.
    chmod 755 "$dir"
    echo "export DRIFTWATCH_TEST_POSTGRES_URL='postgres://$user@/postgres?host=$dir'"
    echo "export DRIFTWATCH_REQUIRE_POSTGRES=1"
    ;;
stop)
    bin=$(bindir)
    if [ -d "$dir/data" ]; then
        as_owner "$bin/pg_ctl" --pgdata="$dir/data" --mode=fast --wait stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
*)
    usage
    ;;
esac
