#!/usr/bin/python3
"""qmgr_rss.py - how much memory the qmgr holds for a large queue.

Starts a single-user daemon (tests/integration/mpharness.py) whose one
recipient's rules pipe to a command exiting 75 (a temporary failure,
retry in an hour), sends N small messages over SMTP (4 client threads),
waits until all are deferred, and prints the qmgr's resident memory now
(VmRSS) and at its peak (VmHWM), with the active set from `mailprocctl
status`.

    MAILPROCD_BUILD=$PWD/build /usr/bin/python3 bench/qmgr_rss.py [--forward] [N] [key=value ...]

Extra key=value pairs go into mailprocd.conf (e.g. max_active_messages=1000).
--forward: the recipient forwards instead, to a relay_host where nothing
listens, so the N forwards (outbound queue files, relay jobs) defer.
Run it as an ordinary user or as root (then the daemon runs as a throwaway
account, as in the integration tests).
"""
import re
import smtplib
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
import mpharness as H  # noqa: E402

RULES = """later@example.test
    pipe "cat > /dev/null; exit 75"
"""
FORWARD_RULES = """later@example.test
    forward someone@remote.test
"""
UIDS = "later@example.test later\n"


def proc_kb(pid, field):
    return int(H.proc_status(pid)[field].split()[0])


def main():
    args = sys.argv[1:]
    forward = "--forward" in args
    args = [a for a in args if a != "--forward"]
    n = int(args[0]) if args else 10000
    settings = {"retry_schedule": "1h", "max_queue_lifetime": "1d",
                "max_sessions": "20"}
    if forward:
        [closed] = H.free_ports(1)
        settings["relay_host"] = f"127.0.0.1:{closed}"
    for kv in args[1:]:
        k, v = kv.split("=", 1)
        settings[k] = v
    acct = H.create_user("mpb-") if H.IS_ROOT else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            H.make_traversable(tmp)
            d = H.Daemon(Path(tmp) / "d", run_as=acct,
                         rules=FORWARD_RULES if forward else RULES, uids=UIDS,
                         homes=("later",), settings=settings)
            d.compile()
            d.start()
            try:
                run(d, n)
            finally:
                d.stop(timeout=120)
    finally:
        if acct:
            H.delete_user(acct)


def run(d, n):
    qmgr = [p for p in d.children() if d.role(p).endswith("qmgr")] or \
        [p for p in d.children() if "qmgr" in open(f"/proc/{p}/cmdline").read()]
    [qmgr] = qmgr
    print(f"qmgr pid {qmgr}: start VmRSS {proc_kb(qmgr, 'VmRSS')} kB")
    msg = H.make_message(to="later@example.test")
    t0 = time.monotonic()

    def client(k):
        with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                          timeout=60) as s:
            for _ in range(k):
                s.sendmail(H.SENDER, ["later@example.test"], msg)

    threads = [threading.Thread(target=client, args=(n // 4 + (i < n % 4),))
               for i in range(4)]
    for t in threads:
        t.start()
    peak = 0
    while any(t.is_alive() for t in threads):
        peak = max(peak, proc_kb(qmgr, "VmRSS"))
        time.sleep(0.5)
    sent = time.monotonic() - t0
    while len(d.queue_files("deferred")) < n:
        peak = max(peak, proc_kb(qmgr, "VmRSS"))
        time.sleep(1)
    status = d.ctl("status").out
    active = re.search(r"active messages=.*", status)
    print(f"{n} messages sent in {sent:.0f}s, all deferred after "
          f"{time.monotonic() - t0:.0f}s")
    print(f"qmgr VmRSS now {proc_kb(qmgr, 'VmRSS')} kB, VmHWM {proc_kb(qmgr, 'VmHWM')} kB"
          f" (sampled peak {peak} kB)")
    print(active.group(0) if active else "(no active set line in status)")


if __name__ == "__main__":
    main()
