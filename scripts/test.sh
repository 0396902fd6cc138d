#!/usr/bin/env bash
# test.sh - build mailprocd and run every test: cmocka unit tests and the
# pytest integration tests, first on a normal build (build/), then on an
# AddressSanitizer + UndefinedBehaviorSanitizer build (build-asan/).
# The man pages are checked for groff warnings too.
#
#   scripts/test.sh [--quick]
#
# --quick skips the sanitizer pass (for development; the default and CI
# run everything).  The packages come from scripts/setup.sh.  Exit status
# is non-zero when anything failed; the last line sums up the test counts.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
root=$(pwd)

quick=0
for arg in "$@"; do
	case "$arg" in
	--quick) quick=1 ;;
	-h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "test.sh: unknown argument: $arg (use --quick or nothing)" >&2; exit 2 ;;
	esac
done

# A hung test must not hold CI for its whole time limit: without a terminal
# (CI), one pass of the integration tests gets at most this long.  (timeout
# runs its command in a process group of its own, which would keep Ctrl-C
# from reaching pytest at a terminal.)
pytest_limit=1200
limit=()
[ -t 0 ] || limit=(timeout --kill-after=30 "$pytest_limit")
passed=0 failed=0 skipped=0
failed_steps=()
start=$SECONDS

note() { printf '\n=== %s\n' "$*"; }

step_failed() {
	failed_steps+=("$1")
	echo "test.sh: FAILED: $1"
}

# Add the counts of a finished step to the totals; a step that failed
# without reporting a failed test still counts as one failure.
#   add_counts NAME EXIT-STATUS PASSED FAILED SKIPPED
add_counts() {
	local name=$1 rc=$2 p=$3 f=$4 s=$5
	echo "test.sh: $name: $p passed, $f failed, $s skipped"
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	if [ "$rc" -ne 0 ]; then
		[ "$f" -gt 0 ] || failed=$((failed + 1))
		step_failed "$name (exit $rc)"
	fi
}

# Counts from meson's test log (one JSON object per line).
meson_counts() {
	/usr/bin/python3 - "$1/meson-logs/testlog.json" <<'PY'
import json, sys
p = f = s = 0
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError:
    lines = []
for line in lines:
    r = json.loads(line).get("result", "")
    if r in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif r == "SKIP":
        s += 1
    else:
        f += 1
print(p, f, s)
PY
}

# Counts from pytest's junit XML report.
junit_counts() {
	/usr/bin/python3 - "$1" <<'PY'
import sys, xml.etree.ElementTree as ET
p = f = s = 0
try:
    root = ET.parse(sys.argv[1]).getroot()
    for ts in root.iter("testsuite"):
        t = int(ts.get("tests", 0)); ff = int(ts.get("failures", 0)) + int(ts.get("errors", 0))
        ss = int(ts.get("skipped", 0))
        p += t - ff - ss; f += ff; s += ss
except (OSError, ET.ParseError):
    pass
print(p, f, s)
PY
}

check_man_pages() {
	note "man pages: groff -man -ww -z"
	local page n=0 bad=0 out
	for page in docs/*.[1-8]; do
		[ -e "$page" ] || continue
		n=$((n + 1))
		out=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$page" 2>&1)
		if [ -n "$out" ]; then
			echo "$page:"; echo "$out"
			bad=$((bad + 1))
		fi
	done
	echo "test.sh: man pages: $n checked, $bad with warnings"
	if [ $bad -ne 0 ]; then
		failed=$((failed + bad))
		step_failed "man pages"
	fi
}

# One pass: configure, build, unit tests, integration tests.
run_pass() {
	local name=$1 dir=$2; shift 2
	local opts=("$@") rc

	note "$name: configure and build in $dir/"
	if [ -f "$dir/build.ninja" ]; then
		meson configure "$dir" "${opts[@]}" >/dev/null
	else
		rm -rf "$dir"
		meson setup "$dir" "${opts[@]}" >/dev/null
	fi
	rc=$?
	[ $rc -eq 0 ] && { ninja -C "$dir"; rc=$?; }
	if [ $rc -ne 0 ]; then
		add_counts "$name build" "$rc" 0 1 0
		return
	fi

	note "$name: unit tests (meson test)"
	rm -f "$dir/meson-logs/testlog.json"
	meson test -C "$dir" --print-errorlogs
	rc=$?
	# shellcheck disable=SC2046  # three numbers, split on purpose
	add_counts "$name unit tests" "$rc" $(meson_counts "$dir")

	note "$name: integration tests (pytest tests/integration)"
	local junit="$root/$dir/pytest-junit.xml"
	rm -f "$junit"
	MAILPROCD_BUILD="$root/$dir" "${limit[@]}" \
		/usr/bin/python3 -m pytest -q --junitxml="$junit" tests/integration
	rc=$?
	[ $rc -eq 124 ] && echo "test.sh: integration tests stopped after $pytest_limit s"
	# exit 5: no tests were collected, which is a failure here too
	# shellcheck disable=SC2046
	add_counts "$name integration tests" "$rc" $(junit_counts "$junit")
}

check_man_pages

run_pass "normal" build -Dbuildtype=debugoptimized

if [ $quick -eq 0 ]; then
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1
	export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	export MAILPROCD_SANITIZED=1
	# libperl.so here, not the default libperl.a: LeakSanitizer's
	# suppressions name the interpreter by its module (tests/lsan.supp),
	# and Perl's own frames in our executable would have no such name
	run_pass "sanitized" build-asan -Dbuildtype=debugoptimized \
		-Db_sanitize=address,undefined -Db_lundef=false -Dperl_link=shared
	unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS MAILPROCD_SANITIZED
else
	echo; echo "test.sh: --quick: sanitizer pass skipped"
fi

echo
for s in "${failed_steps[@]}"; do
	echo "test.sh: failed step: $s"
done
echo "test.sh: $((SECONDS - start)) s"
echo "summary: $passed passed, $failed failed, $skipped skipped"
[ ${#failed_steps[@]} -eq 0 ] && [ $failed -eq 0 ]
