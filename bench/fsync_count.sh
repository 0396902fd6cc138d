#!/usr/bin/env bash
# fsync_count.sh - how durably each benchmark peer writes: runs
# bench/lmtp_bench.py under strace for each peer and prints the fsync-type
# system calls per delivered message (from the whole process tree: client,
# server and every child).
#
#   bench/fsync_count.sh [MESSAGES] [PEERS] [WORKLOAD]
#       (default 100 dovecot,procmail,mailprocd rr; WORKLOAD: rr, streams or
#       smtp-source, see lmtp_bench.py; procmail runs only rr)
#
# Needs strace (scripts/setup.sh --bench).  Timings under strace mean
# nothing; only the counts do.
set -euo pipefail
cd "$(dirname "$0")/.."

messages=${1:-100}
peers=${2:-dovecot,procmail,mailprocd}
workload=${3:-rr}
command -v strace >/dev/null || { echo "fsync_count.sh: strace is missing (scripts/setup.sh --bench)" >&2; exit 1; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for peer in ${peers//,/ }; do
	if ! strace -f -c -e trace=fsync,fdatasync,sync_file_range,syncfs -o "$out" \
		/usr/bin/python3 bench/lmtp_bench.py -m "$messages" -r 10 --only "$peer" \
		--workload "$workload" >/dev/null; then
		echo "$peer: benchmark run failed"
		continue
	fi
	awk -v peer="$peer" -v m="$messages" -v w="$workload" '
		# "% time  seconds  usecs/call  calls  [errors]  syscall"
		$NF ~ /^(fsync|fdatasync|sync_file_range|syncfs)$/ { n[$NF] = $4 + 0 }
		END {
			line = sprintf("%-9s %s %d messages:", peer, w, m)
			split("fsync fdatasync sync_file_range syncfs", k, " ")
			for (i = 1; i <= 4; i++)
				line = line sprintf(" %s %.2f/msg", k[i], n[k[i]] / m)
			print line
		}' "$out"
done
