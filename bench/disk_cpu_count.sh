#!/bin/bash
# disk_cpu_count.sh - what a command costs the machine per message: block
# requests (writes, flushes, discards, from /sys/block/DEV/stat) and busy
# CPU (all of /proc/stat but idle and iowait) over its run, divided by N.
# Counts, unlike wall-clock rates, do not swing with the disk's mood.
#
#   bench/disk_cpu_count.sh N COMMAND...     e.g.
#   bench/disk_cpu_count.sh 10000 bench/lmtp_bench.py --keep --workload smtp-source -m 10000 --only mailprocd
#
# DEV is the disk under /var/tmp (BENCH_DEV=vda to choose).
set -eu
n=$1; shift
dev=${BENCH_DEV:-$(lsblk -no PKNAME "$(findmnt -no SOURCE --target /var/tmp)" 2>/dev/null || true)}
[ -n "$dev" ] || dev=$(basename "$(findmnt -no SOURCE --target /var/tmp)")
a=$(cat /sys/block/$dev/stat); ca=$(head -1 /proc/stat)
"$@"
b=$(cat /sys/block/$dev/stat); cb=$(head -1 /proc/stat)
/usr/bin/python3 - "$n" "$a" "$b" "$ca" "$cb" <<'PY'
import os, sys
n = int(sys.argv[1])
a, b = (list(map(int, s.split())) for s in sys.argv[2:4])
ca, cb = (list(map(int, s.split()[1:])) for s in sys.argv[4:6])
d = [y - x for x, y in zip(a, b)]
c = [y - x for x, y in zip(ca, cb)]
ms = 1000 / os.sysconf("SC_CLK_TCK")
busy = (sum(c) - c[3] - c[4]) * ms
print("per message: writes %.2f  flushes %.2f  discards %.2f  busy CPU %.3f ms "
      "(user %.3f, system %.3f, interrupts %.3f)" % (
          d[4] / n, d[15] / n if len(d) > 15 else float("nan"), d[11] / n if len(d) > 11 else float("nan"),
          busy / n, (c[0] + c[1]) * ms / n, c[2] * ms / n, (c[5] + c[6]) * ms / n))
PY
