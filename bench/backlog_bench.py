#!/usr/bin/python3
"""backlog_bench.py - a large deferred backlog: memory, restart, fairness.

Starts a single-user daemon (tests/integration/mpharness.py) and queues N
small messages over SMTP (8 sessions) to later@, whose home does not
exist: its maildir delivery fails at once with a temporary error
(ENOENT, 4.3.0), retry in an hour; half of them, then K messages to bee@
(no home either), then the other half (so that bee@'s wait on disk too
when N/2 exceeds max_active_messages).  Once all are in deferred/ it
prints:

  - the resident memory (VmRSS) of every mailprocd process, and the sum;
  - the time to stop (SIGTERM) and to start again until every listener
    greets;
  - the time until a message to other@ (who has a home) sent right after
    the restart is in other's Maildir/new/;
  - the memory again once the qmgr has listed the queue;
  - fairness of due deferred mail: `mailprocctl queue flush` makes every
    deferred message due at once; how many of later@'s retries came
    before the last of bee@'s K (bee@'s K were queued after later@'s N:
    oldest first by due time alone serves them after all of later@'s).

    MAILPROCD_BUILD=$PWD/build /usr/bin/python3 bench/backlog_bench.py N [--dir DIR] [key=value ...]

--dir: where the daemon's tree goes (default: a temporary directory under
/var/tmp, on disk).  Extra key=value pairs go into mailprocd.conf.

--accounts K: later@'s messages go to K accounts instead (later0@ ...,
in turn, none with a home), to see what each account with deferred mail
costs; the fairness figure then counts all of them as later@'s.

--linked: a quick way to a large queue, for the restart figures only: a
few messages to later@ are deferred, the daemon stopped, its file given an
mtime an hour ahead (as a message put back to disk) and hard-linked
under other queue ids in deferred/ (N/60,000+1 messages, 60,000 names at
most each); then the start, another
account's message and the memory as above (no fairness: one inode).
Run it as an ordinary user or as root (then the daemon runs as a
throwaway account, as in the integration tests).
"""
import os
import re
import shutil
import smtplib
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
import mpharness as H  # noqa: E402

UIDS = ("later@example.test later\nbee@example.test bee\n"
        "other@example.test other\n")
BEE = 20
SESSIONS = 8
LINKS_MAX = 60000       # ext4 allows 65,000 names per inode
FAIR_WAIT = 300


def rss_kb(pid):
    try:
        return int(H.proc_status(pid)["VmRSS"].split()[0])
    except (OSError, KeyError):
        return 0


def memory(d, what):
    pids = [d.pid] + d.descendants()
    total = 0
    rows = []
    qmgr = 0
    for p in pids:
        kb = rss_kb(p)
        role = d.role(p) if p != d.pid else "mailprocd (master)"
        if role == "?":
            try:
                role = open(f"/proc/{p}/cmdline").read().replace("\0", " ").strip()
            except OSError:
                pass
        rows.append(f"    {p:>7} {kb / 1024:8.1f} MB  {role}")
        total += kb
        if "qmgr" in role:
            qmgr = kb
    print(f"{what}: all {len(pids)} processes {total / 1024:.1f} MB, qmgr {qmgr / 1024:.1f} MB")
    print("\n".join(rows))
    return total, qmgr


def count_dir(path):
    try:
        with os.scandir(path) as it:
            return sum(1 for _ in it)
    except FileNotFoundError:
        return 0


def send_many(d, rcpt, n):
    """n messages over SESSIONS sessions to rcpt, or to the addresses of the
    list rcpt in turn."""
    rcpts = rcpt if isinstance(rcpt, list) else [rcpt]
    msg = H.make_message(to=rcpts[0])
    errors = []

    def client(i, k):
        try:
            with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                              timeout=120) as s:
                for j in range(k):
                    s.sendmail(H.SENDER, [rcpts[(i + j * SESSIONS) % len(rcpts)]], msg)
        except Exception as e:      # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i, n // SESSIONS + (i < n % SESSIONS)))
               for i in range(SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"sending failed: {errors[0]}")


def wait_deferred(d, n, t0):
    last = -1
    while True:
        c = count_dir(d.queue_dir / "deferred")
        if c >= n:
            return
        if c != last and time.monotonic() - t0 > 0:
            last = c
        time.sleep(2)


def log_lines_after(path, offset, rx):
    with open(path, "rb") as f:
        f.seek(offset)
        for line in f:
            m = rx.search(line)
            if m:
                yield m


def main():
    args = sys.argv[1:]
    base = None
    if "--dir" in args:
        i = args.index("--dir")
        base = args[i + 1]
        del args[i:i + 2]
    linked = "--linked" in args
    args = [a for a in args if a != "--linked"]
    accounts = 0
    if "--accounts" in args:
        i = args.index("--accounts")
        accounts = int(args[i + 1])
        del args[i:i + 2]
    n = int(args[0]) if args else 100000
    settings = {"retry_schedule": "1h", "max_queue_lifetime": "7d",
                "max_sessions": "50"}
    for kv in args[1:]:
        k, v = kv.split("=", 1)
        settings[k] = v
    acct = H.create_user("mpb-") if H.IS_ROOT else None
    tmp = tempfile.mkdtemp(prefix="backlog-", dir=base or "/var/tmp")
    try:
        H.make_traversable(tmp)
        uids = UIDS + "".join(f"later{k}@example.test later{k}\n" for k in range(accounts))
        d = H.Daemon(Path(tmp) / "d", run_as=acct, rules="# default delivery only\n",
                     uids=uids, homes=("other",), settings=settings)
        d.compile()
        d.start()
        try:
            if linked:
                run_linked(d, n)
            else:
                run(d, n, [f"later{k}@example.test" for k in range(accounts)]
                    or "later@example.test")
        finally:
            d.stop(timeout=600)
    finally:
        if acct:
            H.delete_user(acct)
        shutil.rmtree(tmp, ignore_errors=True)


DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def base36(v, width):
    out = ""
    for _ in range(width):
        out = DIGITS[v % 36] + out
        v //= 36
    return out


def restart_figures(d, stop=True):
    """Restart the daemon (stop=False: it is stopped already) and print the
    restart's times, another account's delivery after it, and the memory
    once the qmgr has listed the queue."""
    stopped = ""
    if stop:
        t = time.monotonic()
        d.stop(timeout=600)
        stopped = f"stop {time.monotonic() - t:.2f}s, "
    t = time.monotonic()
    d.start()
    started = time.monotonic() - t
    t = time.monotonic()
    marker = H.new_msgid()
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=120) as s:
        s.sendmail(H.SENDER, ["other@example.test"],
                   H.make_message(msgid=marker, to="other@example.test"))
    H.wait_maildir(d.maildir("other"), marker, timeout=600)
    other = time.monotonic() - t
    print(f"restart: {stopped}start until it answers {started:.2f}s, "
          f"another account's message in its Maildir/new/ {other:.2f}s after the restart")
    # the qmgr lists the queue after it serves; memory once it is done
    for _ in range(300):
        st = d.ctl("status").out
        if "scan=idle" in st or "scan=" not in st:
            break
        time.sleep(1)
    time.sleep(3)
    memory(d, "after the restart")
    print(re.search(r"active messages=.*", d.ctl("status").out).group(0))
    qmgr = [p for p in d.children() if "qmgr" in d.role(p)]
    if qmgr:
        st = open(f"/proc/{qmgr[0]}/stat").read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        print(f"qmgr CPU since its start: {(int(st[11]) + int(st[12])) / tick:.2f}s")


def run_linked(d, n):
    print(f"build {H.build_dir()}, N={n} (hard links of deferred files)")
    k = n // LINKS_MAX + 1
    send_many(d, "later@example.test", k)
    wait_deferred(d, k, time.monotonic())
    d.stop(timeout=600)
    dq = d.queue_dir / "deferred"
    sources = sorted(os.listdir(dq))
    due = time.time() + 3600
    for q in sources:
        os.utime(dq / q, (due, due))
    t = time.monotonic()
    for i in range(k, n):
        q = sources[i % k]
        os.link(dq / q, dq / (q[:12] + base36(i, 8)))
    print(f"{n} names in deferred/ made in {time.monotonic() - t:.0f}s")
    restart_figures(d, stop=False)


def run(d, n, later):
    spread = f" over {len(later)} accounts" if isinstance(later, list) else ""
    print(f"build {H.build_dir()}, N={n}{spread}")
    t0 = time.monotonic()
    send_many(d, later, n // 2)
    send_many(d, "bee@example.test", BEE)
    send_many(d, later, n - n // 2)
    sent = time.monotonic() - t0
    wait_deferred(d, n + BEE, t0)
    print(f"{n} + {BEE} messages sent in {sent:.0f}s ({n / sent:.0f}/s), all deferred after "
          f"{time.monotonic() - t0:.0f}s")
    time.sleep(2)
    memory(d, "with the backlog")
    print(re.search(r"active messages=.*", d.ctl("status").out).group(0))

    restart_figures(d)

    # fairness: every deferred message due now; bee@'s K among later@'s N
    offset = d.log_path.stat().st_size
    t = time.monotonic()
    d.ctl("queue", "flush")
    rx = re.compile(rb"to=<(later|bee)\d*@example\.test> .*status=deferred")
    while True:
        before = 0
        bees = 0
        for m in log_lines_after(d.log_path, offset, rx):
            if m.group(1) == b"bee":
                bees += 1
                if bees == BEE:
                    break
            else:
                before += 1
        if bees >= BEE or time.monotonic() - t > FAIR_WAIT:
            break
        time.sleep(1)
    took = time.monotonic() - t
    if bees >= BEE:
        print(f"fairness: after the flush, bee@'s {BEE} retries all came after {before} of "
              f"later@'s, in {took:.1f}s")
    else:
        print(f"fairness: after the flush, only {bees} of bee@'s {BEE} retried in {took:.0f}s, "
              f"behind {before} of later@'s")


if __name__ == "__main__":
    main()
