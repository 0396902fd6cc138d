#!/usr/bin/python3
"""policy_bench.py - the Postfix policy service: mailprocd against postgrey.

The same stream of N RCPT requests (Postfix's smtpd_access_policy
attributes, as smtpd sends them) goes to each peer over C persistent
connections (default 4, one client process each, one request in flight
per connection: what C smtpd processes do), side by side in one run:

- **mailprocd**: single-user mode, `listen policy 127.0.0.1:PORT`, R
  accounts (rules + uid entries) each with its own `~/.mailprocd/policy`
  (`greylist on`, a block and an allow rule), compiled with `mailprocctl
  policy sync`; greylist state in LMDB (the default).
- **postgrey**: Debian's postgrey on 127.0.0.1:PORT with its own db dir
  (BerkeleyDB), as its own account, auto-allowlisting as configured by
  default.

The stream mixes senders, client addresses (several /24 networks) and
recipients, and repeats some triplets (a retry that passes or is still
too early), drawn from a fixed seed so both peers get the same requests.
Both greylist with their default delay (300 s): most answers are defers.
Each client process first sends a few warm-up requests of its own (not
counted).  Printed per peer: requests, seconds, req/s, p50/p99/max latency
(request sent to answer read), and the answers by kind; then the ratio.
Figures only: nothing is asserted about speed.

    bench/policy_bench.py [-n 20000] [-c 4] [-r 200] [--only mailprocd,postgrey]

Run as root (the peers run as nobody and postgrey) or as a user.  See
bench/RESULTS.md "Issue 10: policy service".
"""
import argparse
import collections
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sysutil   # noqa: E402

PEERS = ("mailprocd", "postgrey")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOMAIN = "bench.test"
WARMUP = 50          # requests per connection before the clock starts

USER_POLICY = """\
# a user's own policy for bench/policy_bench.py
block    sender  *@spam.bench.test     "We do not take mail from you"
allow    sender  *@friends.bench.test
greylist on
"""


# ---------------------------------------------------------------- workload

def recipient(n):
    return "u%d@%s" % (n, DOMAIN)


def workload(requests, users, senders, networks, seed=10):
    """The stream: a list of (client_address, helo, sender, recipient).
    About one request in five repeats an earlier triplet."""
    rnd = random.Random(seed)
    out = []
    for _ in range(requests):
        if out and rnd.random() < 0.2:
            out.append(out[rnd.randrange(len(out))])
            continue
        net = rnd.randrange(networks)
        client = "10.%d.%d.%d" % (net // 256, net % 256, rnd.randrange(1, 255))
        s = rnd.randrange(senders)
        sender = "s%d@%s" % (s, ("friends.bench.test" if s % 50 == 0 else
                                 "spam.bench.test" if s % 50 == 1 else
                                 "sender%d.test" % (s % 97)))
        helo = "mx%d.sender%d.test" % (net, s % 97)
        out.append((client, helo, sender, recipient(rnd.randrange(users))))
    return out


def request(i, client, helo, sender, rcpt):
    """One RCPT-stage policy request, attributes as Postfix 3.7 sends."""
    attrs = [
        ("request", "smtpd_access_policy"),
        ("protocol_state", "RCPT"),
        ("protocol_name", "ESMTP"),
        ("client_address", client),
        ("client_name", "unknown"),
        ("client_port", str(40000 + i % 20000)),
        ("reverse_client_name", "unknown"),
        ("server_address", "127.0.0.1"),
        ("server_port", "25"),
        ("helo_name", helo),
        ("sender", sender),
        ("recipient", rcpt),
        ("recipient_count", "0"),
        ("queue_id", ""),
        ("instance", "%x.%x.0" % (i >> 8, i & 0xff)),
        ("size", "0"),
        ("etrn_domain", ""),
        ("stress", ""),
        ("sasl_method", ""),
        ("sasl_username", ""),
        ("sasl_sender", ""),
        ("ccert_subject", ""),
        ("ccert_issuer", ""),
        ("ccert_fingerprint", ""),
        ("ccert_pubkey_fingerprint", ""),
        ("encryption_protocol", ""),
        ("encryption_cipher", ""),
        ("encryption_keysize", "0"),
        ("policy_context", ""),
    ]
    return ("".join("%s=%s\n" % kv for kv in attrs) + "\n").encode()


# ---------------------------------------------------------------- client

def _read_answer(sock, buf):
    """One answer (lines up to an empty line); returns (first line, rest)."""
    while b"\n\n" not in buf:
        data = sock.recv(4096)
        if not data:
            raise EOFError("the policy server closed the connection")
        buf += data
    answer, _, rest = buf.partition(b"\n\n")
    return answer.split(b"\n", 1)[0].decode("latin-1"), rest


def _client(port, warmup, share, barrier, out):
    """One persistent connection: warm up, wait for the others, then send
    the share one request at a time.  Puts (latencies, answers, error)."""
    lat, answers, err = [], collections.Counter(), None
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        for req in warmup:
            sock.sendall(req)
            _, buf = _read_answer(sock, buf)
        barrier.wait(60)
        clock = time.perf_counter
        for req in share:
            t0 = clock()
            sock.sendall(req)
            line, buf = _read_answer(sock, buf)
            lat.append(clock() - t0)
            answers[kind(line)] += 1
        sock.close()
    except Exception as e:  # reported, not hidden
        err = "%s: %s" % (type(e).__name__, e)
        try:
            barrier.abort()
        except Exception:
            pass
    out.put((lat, dict(answers), err))


def kind(line):
    """An answer's kind for the tally: 'DUNNO', '450', 'PREPEND', ..."""
    action = line.partition("=")[2]
    return action.split(" ", 1)[0] or "?"


def run_stream(port, stream, connections):
    """The stream over `connections` client processes.  Returns (latencies
    in s, answers Counter, errors, seconds from the barrier to the last
    answer)."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(connections + 1)
    out = ctx.Queue()
    reqs = [request(i, *r) for i, r in enumerate(stream)]
    procs = []
    for c in range(connections):
        warm = [request(10 ** 7 + c * WARMUP + w, "192.0.2.%d" % (c + 1),
                        "warm.test", "warm%d-%d@warm.test" % (c, w),
                        recipient(w)) for w in range(WARMUP)]
        p = ctx.Process(target=_client,
                        args=(port, warm, reqs[c::connections], barrier, out))
        p.start()
        procs.append(p)
    try:
        barrier.wait(120)
    except Exception:
        pass
    start = time.perf_counter()
    lat, answers, errors = [], collections.Counter(), []
    for _ in procs:
        l, a, e = out.get(timeout=600)
        lat += l
        answers.update(a)
        if e:
            errors.append(e)
    end = time.perf_counter()
    for p in procs:
        p.join(10)
    return lat, answers, errors, end - start


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, int(round(p / 100.0 * (len(sorted_values) - 1))))
    return sorted_values[k]


# ---------------------------------------------------------------- peers

class Mailprocd:
    name = "mailprocd"

    def __init__(self, workdir, users, account, build):
        self.workdir, self.users, self.account = workdir, users, account
        self.daemon = os.path.join(build, "src", "master", "mailprocd")
        self.ctl = os.path.join(build, "src", "ctl", "mailprocctl")
        self.conf = os.path.join(workdir, "mailprocd.conf")
        self.log = os.path.join(workdir, "mailprocd.log")
        self.proc = None

    def prepare(self):
        for exe in (self.daemon, self.ctl):
            if not os.access(exe, os.X_OK):
                raise RuntimeError("%s is missing: build first (ninja -C build)" % exe)
        bindir = os.path.join(self.workdir, "bin")
        os.makedirs(bindir)
        self.daemon = shutil.copy2(self.daemon, bindir)
        self.ctl = shutil.copy2(self.ctl, bindir)
        self.port, lmtp = sysutil.free_port(), sysutil.free_port()
        src, homes = (os.path.join(self.workdir, d) for d in ("db-src", "homes"))
        os.makedirs(src)
        with open(self.conf, "w") as f:
            f.write(MAILPROCD_CONF % {"dir": self.workdir, "port": self.port,
                                      "lmtp": lmtp, "homes": homes})
        with open(os.path.join(src, "uid"), "w") as f:
            f.writelines("%s u%d\n" % (recipient(n), n) for n in range(self.users))
        with open(os.path.join(src, "rules"), "w") as f:
            f.writelines("%s\n    maildir ~/Maildir/\n" % recipient(n)
                         for n in range(self.users))
        for n in range(self.users):
            d = os.path.join(homes, "u%d" % n, ".mailprocd")
            os.makedirs(d)
            with open(os.path.join(d, "policy"), "w") as f:
                f.write(USER_POLICY)
        self.account.chown_tree(self.workdir)
        self._ctl("db", "compile")

    def _ctl(self, *args):
        res = subprocess.run([self.ctl, "-f", self.conf] + list(args),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             **self.account.popen_kwargs())
        if res.returncode != 0:
            raise RuntimeError("mailprocctl %s failed:\n%s"
                               % (" ".join(args), res.stdout.decode(errors="replace")))

    def start(self):
        with open(self.log, "w") as logf:
            self.proc = subprocess.Popen([self.daemon, "-d", "-f", self.conf],
                                         stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT,
                                         **self.account.popen_kwargs())
        sysutil.wait_listening(self.port, self.proc)
        self._ctl("policy", "sync")

    def stop(self):
        if self.proc is not None:
            below = sysutil.descendants(self.proc.pid)
            sysutil.stop_process(self.proc)
            sysutil.wait_gone(below)
            self.proc = None

    def describe(self):
        return "mailprocd, listen policy 127.0.0.1, LMDB greylist state"


MAILPROCD_CONF = """\
# mailprocd for bench/policy_bench.py (single-user mode)
hostname        bench.test
listen          lmtp 127.0.0.1:%(lmtp)d
listen          policy 127.0.0.1:%(port)d
queue_dir       %(dir)s/queue
db_dir          %(dir)s/db
db_source_dir   %(dir)s/db-src
run_dir         %(dir)s/run
home_base       %(homes)s
spam_engine     none
policy_sync_interval 0
"""


class Postgrey:
    name = "postgrey"
    exe = "/usr/sbin/postgrey"

    def __init__(self, workdir, users, account, build):
        self.workdir = workdir
        self.dbdir = os.path.join(workdir, "db")
        self.log = os.path.join(workdir, "postgrey.log")
        self.proc = None

    def prepare(self):
        if not os.access(self.exe, os.X_OK):
            raise RuntimeError("%s is missing (Debian package postgrey)" % self.exe)
        os.makedirs(self.dbdir)
        self.port = sysutil.free_port()
        self.argv = [self.exe, "--inet=127.0.0.1:%d" % self.port,
                     "--dbdir=%s" % self.dbdir,
                     "--whitelist-clients=/dev/null",
                     "--whitelist-recipients=/dev/null"]
        if os.geteuid() == 0:
            user = "postgrey"
            try:
                import pwd
                pw = pwd.getpwnam(user)
            except KeyError:
                import pwd
                user, pw = "nobody", pwd.getpwnam("nobody")
            os.chown(self.dbdir, pw.pw_uid, pw.pw_gid)
            import grp
            self.argv += ["--user=%s" % user,
                          "--group=%s" % grp.getgrgid(pw.pw_gid).gr_name]

    def start(self):
        with open(self.log, "w") as logf:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT)
        sysutil.wait_listening(self.port, self.proc)

    def stop(self):
        if self.proc is not None:
            sysutil.stop_process(self.proc)
            self.proc = None

    def describe(self):
        v = subprocess.run([self.exe, "--version"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT).stdout.decode().split("\n")[0]
        return "%s, BerkeleyDB in its own db dir" % v.strip()


# ---------------------------------------------------------------- main

def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--requests", type=int, default=20000,
                   help="RCPT requests in the stream (default 20000)")
    p.add_argument("-c", "--connections", type=int, default=4,
                   help="persistent connections, one client process each (default 4)")
    p.add_argument("-r", "--users", type=int, default=200,
                   help="recipients, each its own account with greylisting on (default 200)")
    p.add_argument("--senders", type=int, default=2000, help="distinct senders (default 2000)")
    p.add_argument("--networks", type=int, default=300,
                   help="distinct client /24 networks (default 300)")
    p.add_argument("--only", default=",".join(PEERS),
                   help="comma-separated peers to run (default %s)" % ",".join(PEERS))
    p.add_argument("--build", default=os.path.join(REPO, "build"),
                   help="mailprocd build directory (default build/)")
    p.add_argument("--dir", default="/var/tmp", help="work directory parent (default /var/tmp)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    a = p.parse_args()
    a.only = [x.strip() for x in a.only.split(",") if x.strip()]
    for x in a.only:
        if x not in PEERS:
            p.error("unknown peer %r (choose from %s)" % (x, ", ".join(PEERS)))
    if min(a.requests, a.connections, a.users, a.senders, a.networks) < 1:
        p.error("counts must be positive")
    return a


def run_peer(cls, base, args, account, stream):
    workdir = os.path.join(base, cls.name)
    os.makedirs(workdir)
    os.chmod(workdir, 0o755)
    peer = cls(workdir, args.users, account, args.build)
    result = {"name": cls.name}
    try:
        peer.prepare()
        peer.start()
        result["describe"] = peer.describe()
        lat, answers, errors, secs = run_stream(peer.port, stream, args.connections)
        lat.sort()
        result.update(n=len(lat), secs=secs, rate=len(lat) / secs if secs else 0,
                      p50=percentile(lat, 50), p99=percentile(lat, 99),
                      max=lat[-1] if lat else float("nan"),
                      answers=answers, errors=errors)
    finally:
        peer.stop()
    return result


def main():
    args = parse_args()
    account = sysutil.Account()
    base = tempfile.mkdtemp(prefix="policy-bench-", dir=args.dir)
    os.chmod(base, 0o755)
    stream = workload(args.requests, args.users, args.senders, args.networks)
    print("policy_bench: %d RCPT requests, %d connections, %d recipients "
          "(greylisting on), %d senders, %d client networks; peers as %s"
          % (args.requests, args.connections, args.users, args.senders,
             args.networks, account.name))
    results = []
    try:
        for name in args.only:
            cls = Mailprocd if name == "mailprocd" else Postgrey
            r = run_peer(cls, base, args, account, stream)
            results.append(r)
            print("\n%s (%s)" % (r["name"], r.get("describe", "")))
            print("  requests %d in %.2f s: %.0f req/s" % (r["n"], r["secs"], r["rate"]))
            print("  latency p50 %.3f ms, p99 %.3f ms, max %.3f ms"
                  % (r["p50"] * 1e3, r["p99"] * 1e3, r["max"] * 1e3))
            print("  answers: %s" % ", ".join("%s %d" % kv for kv in
                                               sorted(r["answers"].items())))
            for e in r["errors"]:
                print("  ERROR: %s" % e)
    finally:
        if args.keep:
            print("\nwork directory kept: %s" % base)
        else:
            shutil.rmtree(base, ignore_errors=True)
    by = {r["name"]: r for r in results}
    if "mailprocd" in by and "postgrey" in by and by["postgrey"]["rate"]:
        m, g = by["mailprocd"], by["postgrey"]
        print("\nratio mailprocd/postgrey: %.1fx req/s; p99 %.3f ms vs %.3f ms"
              % (m["rate"] / g["rate"], m["p99"] * 1e3, g["p99"] * 1e3))
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
