#!/usr/bin/env bash
# setup.sh - install the Debian 12 packages that building, testing and the
# demo of mailprocd need (and, with --bench, what the benchmark needs).
#
#   scripts/setup.sh [--bench]
#
# Idempotent: when every package is already installed it does nothing (and
# needs no root).  Otherwise it must run as root; it then runs apt-get
# update and installs the missing packages without prompting and without
# starting the system's own postfix or dovecot services.
set -euo pipefail

packages=(
	# build
	build-essential meson ninja-build pkg-config
	libevent-dev liblmdb-dev lmdb-utils libpcre2-dev
	# spam engine: embedded Perl (libperl, ExtUtils::Embed) and SpamAssassin
	libperl-dev spamassassin
	# unit tests, sanitizer runtime for clang builds (gcc brings its own)
	libcmocka-dev libclang-rt-14-dev
	# integration tests and demo: real peers and clients
	python3 python3-pytest python3-aiosmtpd swaks
	postfix dovecot-core dovecot-lmtpd procmail
	# accounts and privilege changes (setpriv, runuser, useradd), ps/pgrep
	util-linux passwd procps
	# checking the man pages
	groff-base man-db
)
bench_packages=(strace linux-perf)

for arg in "$@"; do
	case "$arg" in
	--bench) packages+=("${bench_packages[@]}") ;;
	-h|--help) sed -n '2,10s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "setup.sh: unknown argument: $arg (use --bench or nothing)" >&2; exit 2 ;;
	esac
done

is_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=()
for p in "${packages[@]}"; do
	is_installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "setup.sh: all ${#packages[@]} packages are installed"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "setup.sh: missing packages: ${missing[*]}" >&2
	echo "setup.sh: run this script as root, or install them with:" >&2
	echo "  sudo apt-get install --no-install-recommends ${missing[*]}" >&2
	exit 1
fi

echo "setup.sh: installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Postfix asks how to configure itself: it is only a peer in our tests.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

# Do not let the installation start the system's mail services (a running
# system dovecot or postfix is not wanted on a test machine).  Only when no
# policy is in place already; removed again on exit.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	trap 'rm -f "$policy"' EXIT
	printf '#!/bin/sh\n# temporary, from mailprocd scripts/setup.sh\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
fi

apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
echo "setup.sh: done"
