#!/usr/bin/python3
"""lists_bench.py - handing list posts over to a real Mailman 3 by LMTP:
mailprocd's latency, and its throughput against Postfix's lmtp transport.

One private Mailman 3 core (tests/integration/mailman_instance.py; its "in"
and "pipeline" runners are not started, so that Mailman spends its CPU on
the LMTP hand-over only and the queued posts wait in its "in" queue).  In
front of its LMTP port a loopback byte proxy (a thread here) passes every
byte on and notes the time of each reply Mailman gives to an end of data:
that is "Mailman's 250".

(a) latency: P posts one after the other over LMTP to mailprocd (the list
    in its `lists` source, destination the proxy); for each, the time from
    mailprocd's 250 to the client to Mailman's 250 on the hand-over
    (after W warm-up posts); p50/p99/max.
(b) throughput: N posts over C connections, to mailprocd (LMTP) and to a
    private Postfix (tests/integration/postfix_instance.py, SMTP in, its
    lmtp transport to the proxy, defaults otherwise), one after the other
    in one run; posts/s from the first post sent to Mailman's last 250,
    and the time the client took to hand them in.

    bench/lists_bench.py [-p 100] [-n 1000] [-c 4]

Root only (a private Postfix needs it; mailprocd runs as a throwaway
account).  Figures: bench/RESULTS.md, "Issue 11: mailing lists".
"""
import argparse
import os
import select
import smtplib
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import mpharness as H                          # noqa: E402
from mailman_instance import MailmanInstance   # noqa: E402
from postfix_instance import PostfixInstance   # noqa: E402

LIST = "bench@lists.example.test"
SENDER = "poster@example.org"


class TimingProxy:
    """A loopback TCP proxy to upstream_port that timestamps the replies to
    each end of data (the first final reply line after the client's
    CRLF.CRLF; one recipient per post, so one reply)."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.lock = threading.Lock()
        self.replies = []          # (monotonic time, code)
        self.cond = threading.Condition(self.lock)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, client):
        try:
            up = socket.create_connection(("127.0.0.1", self.upstream))
        except OSError:
            client.close()
            return
        for s in (client, up):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tail = b""          # the client's last bytes (a dot split over reads)
        pending = 0         # ends of data not answered yet
        line = b""          # the server's partial reply line
        try:
            while True:
                r, _, _ = select.select([client, up], [], [])
                if client in r:
                    data = client.recv(65536)
                    if not data:
                        return
                    up.sendall(data)
                    buf = tail + data
                    pending += buf.count(b"\r\n.\r\n")
                    tail = buf[-4:]
                if up in r:
                    data = up.recv(65536)
                    if not data:
                        return
                    now = time.monotonic()
                    client.sendall(data)
                    line += data
                    while b"\r\n" in line:
                        one, line = line.split(b"\r\n", 1)
                        final = len(one) < 4 or one[3:4] != b"-"
                        if pending and final:
                            pending -= 1
                            with self.cond:
                                self.replies.append((now, one[:3].decode()))
                                self.cond.notify_all()
        except OSError:
            return
        finally:
            client.close()
            up.close()

    def count(self):
        with self.lock:
            return len(self.replies)

    def wait_count(self, n, timeout):
        end = time.monotonic() + timeout
        with self.cond:
            while len(self.replies) < n:
                left = end - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{len(self.replies)} of {n} hand-overs "
                                       f"after {timeout:.0f}s")
                self.cond.wait(left)
            return list(self.replies)

    def stop(self):
        self.stopping = True
        self.lsock.close()


def post_bytes(i, tag):
    return (f"From: <{SENDER}>\r\nTo: <{LIST}>\r\nSubject: bench {tag} {i}\r\n"
            f"Message-ID: <{tag}.{i}@bench.example.org>\r\n"
            f"Date: Fri, 04 Dec 2026 12:00:00 +0000\r\n\r\n" +
            f"post {i} of the lists benchmark\r\n" * 40).encode()


def percentile(sorted_values, p):
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def client(cls, port, items, tag, errors):
    try:
        with cls("127.0.0.1", port, local_hostname="bench.example.org",
                 timeout=120) as s:
            for i in items:
                refused = s.sendmail(SENDER, [LIST], post_bytes(i, tag))
                if refused:
                    errors.append(refused)
    except Exception as e:          # noqa: BLE001 (reported below)
        errors.append(repr(e))


def push(cls, port, n, conns, tag):
    """n posts over conns parallel connections; returns seconds taken."""
    errors = []
    share = [list(range(k, n, conns)) for k in range(conns)]
    threads = [threading.Thread(target=client, args=(cls, port, s, tag, errors))
               for s in share]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"posting failed: {errors[:3]}")
    return t0, time.monotonic() - t0


def start_mailprocd(base, acct, proxy_port):
    d = H.Daemon(base / "mailprocd", run_as=acct,
                 settings={"hostname": "bench.example.test"})
    d.write_sources(lists=f"{LIST} mailman3 lmtp:127.0.0.1:{proxy_port}\n")
    d.compile()
    d.start()
    return d


def latency(d, proxy, posts, warmup):
    lat = []
    for i in range(warmup + posts):
        before = proxy.count()
        with smtplib.LMTP("127.0.0.1", d.lmtp_port,
                          local_hostname="bench.example.org") as s:
            s.ehlo("bench.example.org")
            assert s.sendmail(SENDER, [LIST], post_bytes(i, "lat")) == {}
            t_accept = time.monotonic()
        replies = proxy.wait_count(before + 1, 60)
        t_mailman, code = replies[before]
        assert code == "250", f"Mailman answered {code}"
        if i >= warmup:
            lat.append(t_mailman - t_accept)
    return sorted(lat)


def throughput(name, cls, port, proxy, n, conns):
    before = proxy.count()
    t0, push_s = push(cls, port, n, conns, f"tp-{name}")
    replies = proxy.wait_count(before + n, 600)
    mine = replies[before:before + n]
    codes = {c for _, c in mine}
    assert codes == {"250"}, f"{name}: Mailman answered {codes}"
    last = max(t for t, _ in mine)
    time.sleep(2)     # a duplicate hand-over would show now
    extra = proxy.count() - before - n
    return {"peer": name, "posts": n, "push_s": push_s,
            "total_s": last - t0, "rate": n / (last - t0), "extra": extra}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-p", "--posts", type=int, default=100, help="latency posts (100)")
    p.add_argument("-w", "--warmup", type=int, default=5, help="latency warm-up posts (5)")
    p.add_argument("-n", "--messages", type=int, default=1000, help="throughput posts (1000)")
    p.add_argument("-c", "--connections", type=int, default=4, help="client connections (4)")
    p.add_argument("--dir", default="/var/tmp", help="work directory parent (/var/tmp)")
    a = p.parse_args()
    if not H.IS_ROOT:
        sys.exit("lists_bench.py: run as root (a private Postfix needs it)")
    base = Path(tempfile.mkdtemp(prefix="lists-bench-", dir=a.dir))
    os.chmod(base, 0o755)
    acct = H.create_user("mpb-")
    mm = d = pf = proxy = None
    try:
        mm = MailmanInstance(base / "mailman", runners_off=("in", "pipeline"))
        mm.start()
        mm.create_list(LIST)
        proxy = TimingProxy(mm.lmtp_port)
        d = start_mailprocd(base, acct, proxy.port)

        lat = latency(d, proxy, a.posts, a.warmup)
        ms = [x * 1000 for x in lat]
        print(f"(a) mailprocd LMTP 250 -> Mailman 250, {len(ms)} posts one at a time: "
              f"p50 {percentile(ms, 50):.2f} ms, p99 {percentile(ms, 99):.2f} ms, "
              f"max {ms[-1]:.2f} ms, min {ms[0]:.2f} ms")

        rows = [throughput("mailprocd", smtplib.LMTP, d.lmtp_port, proxy,
                           a.messages, a.connections)]
        pf = PostfixInstance(base / "postfix", lmtp=f"inet:127.0.0.1:{proxy.port}",
                             policy=None, relay_domains=["lists.example.test"])
        pf.start()
        rows.append(throughput("postfix", smtplib.SMTP, pf.port, proxy,
                               a.messages, a.connections))
        print(f"(b) {a.messages} posts over {a.connections} connections, "
              f"to Mailman's LMTP:")
        print("| peer | posts/s | all handed over | client done | duplicates |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['peer']} | {r['rate']:.0f} | {r['total_s']:.2f} s | "
                  f"{r['push_s']:.2f} s | {r['extra']} |")
        print(f"ratio mailprocd/postfix: {rows[0]['rate'] / rows[1]['rate']:.2f}x")
    finally:
        if pf:
            pf.stop()
        if d and d.proc:
            d.stop()
        if proxy:
            proxy.stop()
        if mm:
            mm.stop()
        H.delete_user(acct)
        import shutil
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
