"""test_greylist_redis.py - greylisting state in a real redis-server.

The driver tests/tools/greylist_drive (built as src/policy/greylist_drive)
runs greylist.h on a libevent loop and takes one command a line on stdin,
so these tests can stop, pause and restart Redis between checks while the
driver's loop runs (and reconnects) on.  Each test starts its own
redis-server (Debian's) on a free loopback port with no persistence, and
stops it by pid.  Covered: defer then pass after the delay, state shared
by two separate processes (two MX hosts), auto-allow, records expiring in
Redis, the dry run writing nothing, a Redis that is down (UNAVAILABLE at
once, one log line, back when it is), a Redis that accepts and never
answers (UNAVAILABLE after the 500 ms timer), and a cancelled check.

Run: /usr/bin/python3 -m pytest tests/integration/test_greylist_redis.py
Env: MAILPROCD_BUILD = the meson build directory.
"""

import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

import mpharness as H

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server not installed")

ANSWER_TIMEOUT = 30 if H.SANITIZED else 10
# A check must never wait much longer than the 500 ms request timer: this
# bounds a stall (it is not a speed figure), generous for sanitized runs.
STALL_MS = 2000 if H.SANITIZED else 1500
LOG_LINE = "greylisting answers UNAVAILABLE meanwhile"
T = 1_800_000_000       # an explicit "now" for checks that need no real waiting


# ---------------------------------------------------------------- redis

def resp(port, *args, timeout=2.0):
    """One command to the Redis at port; the decoded reply."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(out)
        f = s.makefile("rb")
        return _read_reply(f)


def _read_reply(f):
    line = f.readline()
    if not line:
        raise ConnectionError("closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        return [_read_reply(f) for _ in range(int(rest))]
    raise RuntimeError(f"bad reply {line!r}")


class Redis:
    """A private redis-server on a free loopback port."""

    def __init__(self, tmp_path):
        self.port = H.free_ports(1)[0]
        self.dir = tmp_path / f"redis-{self.port}"
        self.dir.mkdir()
        self.proc = None

    def start(self):
        self.log = open(self.dir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
            stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            try:
                return resp(self.port, "PING") == "PONG"
            except OSError:
                return False
        H.wait_for(up, what="redis-server to answer PING")

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.log.close()

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def keys(self):
        return resp(self.port, "KEYS", "mailprocd:gl:*")


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path)
    r.start()
    yield r
    r.stop()


# ---------------------------------------------------------------- driver

def driver_path():
    return H.binary("src/policy/greylist_drive")


class Drive:
    """One greylist_drive process: one mailprocd host's greylist state."""

    def __init__(self, port, delay=1, max_age=3600, auto_allow=5):
        self.proc = subprocess.Popen(
            [str(driver_path()), "-r", f"127.0.0.1:{port}", "-d", str(delay),
             "-m", str(max_age), "-a", str(auto_allow)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1)
        self.lines = queue.Queue()
        self.err = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines),
                         daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()
        assert self.line() == "ready"

    @staticmethod
    def _pump(stream, q):
        for line in stream:
            q.put(line.rstrip("\n"))
        q.put(None)

    def _pump_err(self):
        for line in self.proc.stderr:
            self.err.append(line)

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def line(self, timeout=ANSWER_TIMEOUT):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"greylist_drive said nothing for {timeout} s; stderr: "
                        f"{''.join(self.err)}")
        assert line is not None, f"greylist_drive exited; stderr: {''.join(self.err)}"
        assert not line.startswith("BUG"), line
        return line

    def check(self, client, sender, rcpt, now=None):
        """(verdict, retry_in, auto_allowed, ms, answered_at_once)"""
        self.send(f"check {client} {sender} {rcpt}" + (f" {now}" if now else ""))
        w = self.line().split()
        assert w[0] == "answer", w
        return w[2], int(w[3]), int(w[4]), float(w[5]), w[6] == "1"

    def verdict(self, *a, **kw):
        return self.check(*a, **kw)[0]

    def peek(self, client, sender, rcpt, now=None):
        self.send(f"peek {client} {sender} {rcpt}" + (f" {now}" if now else ""))
        return self.line().split(" ", 3)

    def stderr(self):
        return "".join(self.err)

    def close(self):
        if self.proc.poll() is None:
            self.send("quit")
            self.proc.wait(timeout=ANSWER_TIMEOUT)
        assert self.proc.returncode == 0, self.stderr()
        time.sleep(0.1)         # the stderr pump
        assert not H.sanitizer_lines(self.stderr()), self.stderr()


@pytest.fixture
def drives():
    made = []

    def make(*a, **kw):
        d = Drive(*a, **kw)
        made.append(d)
        return d
    yield make
    for d in made:
        d.close()


# ---------------------------------------------------------------- tests

def test_defer_then_pass_after_the_delay(redis, drives):
    d = drives(redis.port, delay=1)
    v, retry, auto, _, _ = d.check("192.0.2.10", "a@x.test", "u@y.test")
    assert (v, retry, auto) == ("DEFER", 1, 0)
    assert d.verdict("192.0.2.10", "a@x.test", "u@y.test") == "DEFER"   # too early
    time.sleep(1.2)
    v, retry, auto, _, _ = d.check("192.0.2.200", "A@X.test", "U@y.TEST")  # same /24, case
    assert (v, auto) == ("PASS", 0)
    assert d.verdict("192.0.2.10", "a@x.test", "u@y.test") == "PASS"    # stays passed
    assert d.verdict("192.0.3.10", "a@x.test", "u@y.test") == "DEFER"   # another /24


def test_remaining_wait_and_too_late_retry(redis, drives):
    d = drives(redis.port, delay=300, max_age=3600)
    assert d.check("2001:db8::1", "<>", "u@y.test", T)[:2] == ("DEFER", 300)
    assert d.check("2001:db8::2", "<>", "u@y.test", T + 100)[:2] == ("DEFER", 200)
    # later than max_age after the first attempt: starts over
    assert d.check("2001:db8::1", "<>", "u@y.test", T + 3601)[:2] == ("DEFER", 300)
    assert d.check("2001:db8::1", "<>", "u@y.test", T + 3901)[0] == "PASS"


def test_two_hosts_share_the_state(redis, drives):
    a = drives(redis.port, delay=300)
    b = drives(redis.port, delay=300)
    assert a.verdict("198.51.100.5", "s@x.test", "r@y.test", T) == "DEFER"
    # host B has never seen it, yet the wait counts from A's attempt
    assert b.check("198.51.100.5", "s@x.test", "r@y.test", T + 10)[:2] == ("DEFER", 290)
    assert b.verdict("198.51.100.5", "s@x.test", "r@y.test", T + 300) == "PASS"
    # and what B passed passes on A
    assert a.verdict("198.51.100.9", "s@x.test", "r@y.test", T + 400) == "PASS"
    # a triplet B never saw is new on B too
    assert b.verdict("198.51.100.5", "s@x.test", "other@y.test", T + 400) == "DEFER"


def test_auto_allow_shared(redis, drives):
    a = drives(redis.port, delay=300, auto_allow=2)
    b = drives(redis.port, delay=300, auto_allow=2)
    for i in range(2):
        assert a.verdict("203.0.113.1", "s@x.test", f"r{i}@y.test", T) == "DEFER"
        # one pass is not yet enough
        assert b.check("203.0.113.50", "n@x.test", "new@y.test", T + 1)[2] == 0
        assert a.verdict("203.0.113.1", "s@x.test", f"r{i}@y.test", T + 300) == "PASS"
    v, _, auto, _, _ = b.check("203.0.113.77", "n@x.test", "new2@y.test", T + 400)
    assert (v, auto) == ("PASS", 1)
    assert b.check("203.0.114.1", "n@x.test", "new2@y.test", T + 400)[:3] == ("DEFER", 300, 0)
    # unseen for longer than max_age: greylisted again
    assert a.check("203.0.113.1", "n@x.test", "new3@y.test", T + 400 + 3601)[2] == 0


def test_records_expire_in_redis(redis, drives):
    d = drives(redis.port, delay=1, max_age=2)
    assert d.verdict("192.0.2.1", "s@x.test", "r@y.test") == "DEFER"
    keys = H.wait_for(redis.keys, what="the triplet in redis")
    assert all(k.startswith(b"mailprocd:gl:t:") for k in keys), keys
    ttl = resp(redis.port, "TTL", keys[0])
    assert 0 < ttl <= 3, ttl
    H.wait_for(lambda: redis.keys() == [], timeout=10, what="the triplet to expire")


def test_peek_writes_nothing(redis, drives):
    d = drives(redis.port, delay=300)
    assert d.peek("192.0.2.1", "s@x.test", "r@y.test", T) == ["peek", "DEFER", "300", "0"]
    assert redis.keys() == []
    assert d.verdict("192.0.2.1", "s@x.test", "r@y.test", T) == "DEFER"
    assert d.peek("192.0.2.1", "s@x.test", "r@y.test", T + 300)[1] == "PASS"
    # the pass above was a dry run: still waiting
    assert d.check("192.0.2.1", "s@x.test", "r@y.test", T + 100)[:2] == ("DEFER", 200)


def test_redis_down_answers_at_once_and_comes_back(redis, drives):
    d = drives(redis.port, delay=300)
    assert d.verdict("192.0.2.1", "s@x.test", "r@y.test", T) == "DEFER"
    redis.stop()
    answers = [d.check("192.0.2.1", "s@x.test", "r@y.test", T + 300) for _ in range(3)]
    H.wait_for(lambda: answers.append(d.check("192.0.2.1", "s@x.test", "r@y.test",
                                              T + 300)) or answers[-1][4],
               what="checks answered at once while redis is down")
    assert all(a[0] == "UNAVAILABLE" for a in answers), answers
    assert all(a[3] < STALL_MS for a in answers), answers
    assert d.peek("192.0.2.1", "s@x.test", "r@y.test", T)[0] == "peek-error"
    time.sleep(1)           # several failed reconnects
    assert d.check("192.0.2.1", "s@x.test", "r@y.test", T + 300)[0] == "UNAVAILABLE"
    assert d.stderr().count(LOG_LINE) == 1, d.stderr()

    redis.start()           # the same port, empty (no persistence)
    H.wait_for(lambda: d.verdict("192.0.2.1", "s@x.test", "r@y.test", T + 300) != "UNAVAILABLE",
               timeout=15, what="greylisting to work again")
    assert "connected again" in d.stderr()
    assert d.check("192.0.2.1", "s@x.test", "r@y.test", T + 300)[0] == "DEFER"


def test_redis_not_there_at_start(tmp_path, drives):
    r = Redis(tmp_path)     # a port nobody listens on, yet
    d = drives(r.port, delay=300)
    try:
        answers = [d.check("192.0.2.1", "s@x.test", "r@y.test", T) for _ in range(3)]
        assert all(a[0] == "UNAVAILABLE" and a[3] < STALL_MS for a in answers), answers
        r.start()
        H.wait_for(lambda: d.verdict("192.0.2.1", "s@x.test", "r@y.test", T) == "DEFER",
                   timeout=15, what="greylisting to start working")
    finally:
        r.stop()


class SilentServer:
    """Accepts connections, reads everything, never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.received = b""
        self.stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c):
        while True:
            try:
                data = c.recv(4096)
            except OSError:
                return
            if not data:
                return
            self.received += data

    def close(self):
        self.stop = True
        self.sock.close()
        for c in self.conns:
            c.close()


class ForgetfulServer(SilentServer):
    """Answers MGET (nothing stored), never SET: a write that is not
    acknowledged."""

    def _read(self, c):
        f = c.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                args = [f.read(int(f.readline()[1:]) + 2)[:-2] for _ in range(int(line[1:]))]
                self.received += b" ".join(args) + b"\n"
                if args[0].upper() == b"MGET":
                    c.sendall(b"*2\r\n$-1\r\n$-1\r\n")
        except (OSError, ValueError):
            return


def test_answer_waits_for_the_write(drives):
    """A check that records something answers only once Redis acknowledged
    it (so that another host asked next sees it): an unacknowledged SET
    means UNAVAILABLE, not a DEFER that nobody else will know of."""
    s = ForgetfulServer()
    try:
        d = drives(s.port, delay=300)
        v, _, _, ms, _ = d.check("192.0.2.1", "s@x.test", "r@y.test", T)
        assert v == "UNAVAILABLE" and 450 <= ms < STALL_MS, (v, ms)
        assert b"\nSET mailprocd:gl:t:192.0.2.0/24" in b"\n" + s.received, s.received
    finally:
        s.close()


def test_server_that_never_answers(drives):
    s = SilentServer()
    try:
        d = drives(s.port, delay=300)
        v, _, _, ms, at_once = d.check("192.0.2.1", "s@x.test", "r@y.test", T)
        assert v == "UNAVAILABLE"
        assert not at_once and 450 <= ms < STALL_MS, ms     # the 500 ms timer
        assert b"MGET" in s.received
        waited = 0
        for _ in range(6):      # reconnected each time, and timed out again
            time.sleep(0.3)
            v, _, _, ms, at_once = d.check("192.0.2.1", "s@x.test", "r@y.test", T)
            assert v == "UNAVAILABLE" and ms < STALL_MS, ms
            waited += not at_once
        assert waited >= 2
        assert len(s.conns) >= 2    # a connection that let an answer wait is dropped
        # the dry run (mailprocctl policy check) gives up too
        assert d.peek("192.0.2.1", "s@x.test", "r@y.test", T)[0] == "peek-error"
        assert d.stderr().count(LOG_LINE) == 1, d.stderr()
    finally:
        s.close()


def test_paused_redis_then_resumed(redis, drives):
    d = drives(redis.port, delay=300)
    assert d.verdict("192.0.2.1", "s@x.test", "r@y.test", T) == "DEFER"
    redis.pause()
    try:
        v, _, _, ms, _ = d.check("192.0.2.1", "s@x.test", "r@y.test", T + 300)
        assert v == "UNAVAILABLE" and ms < STALL_MS, ms
    finally:
        redis.resume()
    # its late answer was ignored; the next connection works
    H.wait_for(lambda: d.verdict("192.0.2.1", "s@x.test", "r@y.test", T + 300) == "PASS",
               timeout=15, what="the triplet to pass after the resume")


def test_cancelled_check_never_answers(redis, drives):
    d = drives(redis.port, delay=300)
    assert d.verdict("192.0.2.1", "s@x.test", "r@y.test", T) == "DEFER"
    redis.pause()
    d.send(f"cancel 192.0.2.1 s@x.test r@y.test {T + 300}")
    assert d.line().startswith("cancelled ")
    time.sleep(1)           # past the request timer: nothing may come
    redis.resume()
    time.sleep(0.3)         # and past Redis's late answer
    assert d.lines.empty(), d.lines.get()
    # greylisting goes on
    assert d.verdict("192.0.2.1", "s@x.test", "r@y.test", T + 300) == "PASS"


# ---------------------------------------------------------------- two daemons

GL_RULES = H.standard_rules() + """
gina@example.test
    maildir ~/Maildir/
"""
GL_UIDS = H.standard_uids() + """
gina@example.test       gina
"""


def greylisting_daemon(root, run_as, redis_port):
    """A mailprocd with the policy service, its greylist state in the
    Redis at redis_port; the account gina turned greylisting on."""
    dm = H.PolicyDaemon(root, run_as=run_as, rules=GL_RULES, uids=GL_UIDS,
                        homes=H.STANDARD_USERS + ("gina",),
                        settings={"greylist_delay": "1s", "greylist_max_age": "1h",
                                  "greylist_auto_allow": "0", "policy_sync_interval": "0",
                                  "policy_state": f"redis:127.0.0.1:{redis_port}"})
    pdir = dm.home("gina") / ".mailprocd"
    pdir.mkdir(parents=True, exist_ok=True)
    (pdir / "policy").write_text("greylist on\n")
    H.chown_tree(dm.home("gina"), run_as)
    dm.compile()
    dm.start()
    res = dm.ctl("policy", "sync")
    assert res.returncode == 0, res.out
    return dm


def test_two_daemons_share_one_redis(tmp_path, run_as, redis):
    """Two mailprocd hosts, one redis-server: a triplet recorded on one
    passes on the other after the delay, and one passed on one passes on
    the other at once."""
    a = greylisting_daemon(tmp_path / "a", run_as, redis.port)
    try:
        b = greylisting_daemon(tmp_path / "b", run_as, redis.port)
    except BaseException:
        a.stop()
        raise
    try:
        def ask(dm, sender, client="198.51.100.7"):
            with H.PolicyConn(dm.policy_port) as c:
                return c.ask(H.rcpt_request("gina@example.test", sender=sender, client=client))

        one, two, three = (f"{n}{os.getpid()}@remote.test" for n in ("one", "two", "three"))
        # recorded on A, passes on B (which never saw it) after the delay
        assert ask(a, one).startswith("450 4.7.1 Greylisted, retry in ")
        time.sleep(1.2)
        assert ask(b, one, client="198.51.100.99") == "DUNNO"
        # passed on A, passes on B at once
        assert ask(a, two).startswith("450 4.7.1 ")
        H.wait_for(lambda: ask(a, two) == "DUNNO", what="the triplet to pass on A")
        assert ask(b, two) == "DUNNO"
        # and B still greylists what nobody has seen
        assert ask(b, three).startswith("450 4.7.1 ")
        assert ask(a, three).startswith("450 4.7.1 ")
    finally:
        b.stop()
        a.stop()
