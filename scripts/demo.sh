#!/usr/bin/env bash
# demo.sh - run mailprocd on a self-contained demo configuration.
#
#   scripts/demo.sh [--clean]
#
# Builds the daemon if needed (in build/), writes a single-user-mode
# configuration from etc/demo/ into ./demo-run/, compiles its databases and
# runs the daemon in the foreground, listening for LMTP on 127.0.0.1:2424
# and SMTP on 127.0.0.1:2525.  Mail for demo@example.test lands in
# demo-run/home/demo/Maildir/new/.  Stop it with Ctrl-C.
#
# Run as root, the daemon and mailprocctl run as `nobody` (single-user mode
# means not root), and demo-run/ belongs to that account.  --clean removes
# the previous demo-run/ first (its queue and delivered mail included).
# MAILPROCD_BUILD=DIR uses binaries from another build directory.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)

clean=0
for arg in "$@"; do
	case "$arg" in
	--clean) clean=1 ;;
	-h|--help) sed -n '2,16s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "demo.sh: unknown argument: $arg (use --clean or nothing)" >&2; exit 2 ;;
	esac
done

# --- the binaries -----------------------------------------------------------
build=${MAILPROCD_BUILD:-$root/build}
if [ -z "${MAILPROCD_BUILD:-}" ]; then
	[ -f "$build/build.ninja" ] || meson setup "$build" -Dbuildtype=debugoptimized
	ninja -C "$build" src/master/mailprocd src/ctl/mailprocctl
fi
daemon=$build/src/master/mailprocd
ctl=$build/src/ctl/mailprocctl
for exe in "$daemon" "$ctl"; do
	[ -x "$exe" ] || { echo "demo.sh: $exe is missing; build it first" >&2; exit 1; }
done

# --- who runs it --------------------------------------------------------------
as_user=()
if [ "$(id -u)" -eq 0 ]; then
	run_user=nobody
	run_group=$(id -gn "$run_user")
	as_user=(setpriv --reuid="$run_user" --regid="$run_group" --clear-groups --)
fi
# run COMMAND... as the demo's account
as_demo_user() { HOME="$demo" "${as_user[@]}" "$@"; }

# The demo account must reach the directory and the binaries; a checkout
# under /root is not reachable by nobody, so fall back to a directory in /tmp
# with copies of the binaries.
demo=$root/demo-run
if [ ${#as_user[@]} -gt 0 ] && ! "${as_user[@]}" test -x "$root" -a -x "$daemon" -a -x "$ctl"; then
	demo=/tmp/mailprocd-demo-run
	echo "demo.sh: $run_user cannot reach $root or $build; using $demo instead"
fi

if [ $clean -eq 1 ]; then
	rm -rf "$demo"
fi
mkdir -p "$demo/db-src" "$demo/db" "$demo/home/demo" "$demo/home/bob"
if [ "$demo" != "$root/demo-run" ]; then
	mkdir -p "$demo/bin"
	cp "$daemon" "$ctl" "$demo/bin/"
	daemon=$demo/bin/mailprocd ctl=$demo/bin/mailprocctl
fi

# --- configuration and databases ---------------------------------------------
conf=$demo/mailprocd.conf
sed "s|@DEMO_DIR@|$demo|g" etc/demo/mailprocd.conf.in >"$conf"
cp etc/demo/rules etc/demo/uid "$demo/db-src/"
if [ ${#as_user[@]} -gt 0 ]; then
	chown -R "$run_user:$run_group" "$demo"
fi

as_demo_user "$ctl" -f "$conf" db compile
as_demo_user "$daemon" -n -f "$conf"

cat <<MSG

mailprocd demo: LMTP on 127.0.0.1:2424, SMTP on 127.0.0.1:2525${run_user:+, running as $run_user}.
Configuration: $conf (databases from $demo/db-src/)

Send a message from another terminal:
    swaks --server 127.0.0.1:2525 --to demo@example.test --from you@example.test
It lands in:
    $demo/home/demo/Maildir/new/
(bob@example.test gets a maildir copy and $demo/home/bob/mbox;
 demo+lists@example.test goes to $demo/home/demo/Maildir/.lists/new/)

Look at the queue:  ${as_user[*]}${as_user:+ }$ctl -f $conf queue
Stop with Ctrl-C.

MSG
exec env HOME="$demo" "${as_user[@]}" "$daemon" -d -f "$conf"
