#!/usr/bin/python3
"""sessions_mem.py - what an idle SMTP session costs the receiver.

Starts a single-user daemon (tests/integration/mpharness.py) with
max_sessions above N, opens N sessions from several loopback addresses
(127.78.x.y, max_sessions_per_client each) without a command, waits for
every greeting, and prints the receiver's resident memory before and with
them held (VmRSS), per session, and its open files limit.

    MAILPROCD_BUILD=$PWD/build /usr/bin/python3 bench/sessions_mem.py [N] [PER_CLIENT]

N defaults to 10000, PER_CLIENT to 50.  Run it as an ordinary user or as
root (then the daemon runs as a throwaway account, as in the integration
tests).  The client's own open files limit is raised to its hard limit.
"""
import errno
import resource
import selectors
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
import mpharness as H  # noqa: E402

WINDOW = 400    # connections waiting for their greeting at once


def proc_kb(pid, field):
    return int(H.proc_status(pid)[field].split()[0])


def receiver_of(d):
    def find():
        for pid in d.children():
            if d.role(pid) == "mailprocd/receiver":
                return pid
        return None
    return H.wait_for(find, what="the receiver's pid")


def hold_sessions(n, per_client, port):
    """n sessions, per_client from each source address; returns the
    sockets once each has its greeting."""
    addrs = [f"127.78.{i // 250}.{i % 250 + 1}" for i in range((n + per_client - 1) // per_client)]
    todo = [a for k in range(per_client) for a in addrs][:n]
    sel = selectors.DefaultSelector()
    held, pending = [], 0
    deadline = time.monotonic() + 300
    while todo or pending:
        while todo and pending < WINDOW:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.bind((todo.pop(), 0))
            rc = s.connect_ex(("127.0.0.1", port))
            if rc not in (0, errno.EINPROGRESS):
                raise SystemExit(f"connect: {errno.errorcode.get(rc, rc)}")
            sel.register(s, selectors.EVENT_READ)
            pending += 1
        if time.monotonic() > deadline:
            raise SystemExit(f"{pending} sessions still without a greeting")
        for key, _ in sel.select(timeout=1.0):
            data = key.fileobj.recv(512)
            if not data.startswith(b"220"):
                raise SystemExit(f"not greeted: {data!r}")
            sel.unregister(key.fileobj)
            held.append(key.fileobj)
            pending -= 1
    return held


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    per_client = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    acct = H.create_user("mpb-") if H.IS_ROOT else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            H.make_traversable(tmp)
            d = H.Daemon(Path(tmp) / "d", run_as=acct,
                         settings={"max_sessions": str(n + 100),
                                   "max_sessions_per_client": str(per_client),
                                   "session_timeout": "600s"})
            d.compile()
            d.start()
            try:
                measure(d, n, per_client)
            finally:
                d.stop(timeout=120)
    finally:
        if acct:
            H.delete_user(acct)


def measure(d, n, per_client):
    pid = receiver_of(d)
    before = proc_kb(pid, "VmRSS")
    t0 = time.monotonic()
    held = hold_sessions(n, per_client, d.smtp_port)
    took = time.monotonic() - t0
    time.sleep(1)
    with_them = proc_kb(pid, "VmRSS")
    limit = [ln for ln in open(f"/proc/{pid}/limits") if ln.startswith("Max open files")]
    print(f"receiver pid {pid}: VmRSS {before} kB idle, {with_them} kB with {len(held)} "
          f"sessions held ({took:.1f} s to open them)")
    print(f"per idle session: {(with_them - before) / len(held):.2f} KiB")
    print(limit[0].strip() if limit else "(no open files limit line)")
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
