"""test_relay_unit.py - the relay process (src/relay) against real SMTP servers.

The driver tests/tools/relay_drive (built as src/relay/relay_drive) plays the
qmgr: it forks relay_main() on a socketpair, submits jobs for a message file
and prints the results.  Servers: aiosmtpd (no PIPELINING), Postfix's
smtp-sink (PIPELINING), and a small scripted server in this file for faults
(rejections, 421, a connection closed in the middle of DATA, EHLO refused,
malformed replies, slow replies) that also records whether commands arrived
pipelined.

Run: /usr/bin/python3 -m pytest tests/integration/test_relay_unit.py
Env: MAILPROCD_BUILD (or MP_BUILD_DIR) = the meson build directory.
"""

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import mpharness as H

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")

SMTP_SINK = "/usr/sbin/smtp-sink"
TIMEOUT = 120 if H.SANITIZED else 60


# ---------------------------------------------------------------- driver

def driver():
    base = os.environ.get("MP_BUILD_DIR")
    if base:
        path = Path(base) / "src/relay/relay_drive"
        if not os.access(path, os.X_OK):
            pytest.fail(f"relay driver not found: {path}")
        return path
    return H.binary("src/relay/relay_drive")


class Run:
    """The outcome of one relay_drive run."""

    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.results = {}       # job -> {index: (status, dsn, text)}
        self.done = []
        self.relay_exit = None
        self.stop_seconds = None
        for line in self.out.splitlines():
            if line.startswith("result "):
                _, job, idx, st, dsn, text = line.split(" ", 5)
                self.results.setdefault(int(job), {})[int(idx)] = (int(st), dsn, text)
            elif line.startswith("done "):
                self.done.append(int(line.split()[1]))
            elif line.startswith("relay-exit "):
                _, code, secs = line.split()
                self.relay_exit, self.stop_seconds = int(code), float(secs)

    def statuses(self):
        return [r[0] for job in sorted(self.results)
                for _, r in sorted(self.results[job].items())]


def drive(target, message, *args, jobs=1, rcpts=("rcpt@example.test",),
          expect_ok=True, timeout=TIMEOUT):
    """Run the driver against target ("host:port") with message (bytes)."""
    msgfile = Path(os.environ.get("TMPDIR", "/tmp")) / f"relay-msg-{os.getpid()}-{time.time_ns()}"
    msgfile.write_bytes(message)
    try:
        argv = [str(driver()), "-n", str(jobs), "-t", str(timeout)]
        for r in rcpts:
            argv += ["-r", r]
        argv += [str(a) for a in args] + [target, str(msgfile)]
        proc = subprocess.run(argv, capture_output=True, text=True,
                              errors="replace", timeout=timeout + 30)
    finally:
        msgfile.unlink()
    for pat in H.SANITIZER_PATTERNS:
        assert pat not in proc.stderr, proc.stderr
    run = Run(proc)
    if expect_ok:
        assert run.rc == 0, f"driver failed ({run.rc}):\n{run.out}\n{run.err}"
        assert sorted(run.done) == list(range(1, jobs + 1)), run.out
        assert run.relay_exit == 0, run.out
        for job in run.done:
            assert len(run.results.get(job, {})) == len(rcpts), run.out
    return run


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_listening(port, deadline=10.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listens on port {port}")


def crlf(msg):
    """What the server must receive for a stored (LF) message, before the
    end of data: CRLF line ends, a final line end added if missing."""
    out = msg.replace(b"\n", b"\r\n")
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


# ---------------------------------------------------------------- aiosmtpd

class Recorder:
    """aiosmtpd handler: records messages, rejects some recipients."""

    def __init__(self, reject=()):
        self.reject = set(reject)
        self.messages = []
        self.connections = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.reject:
            return f"550 5.1.1 <{address}>: Recipient address rejected: user unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append({
                "from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                "options": list(envelope.mail_options),
                "data": bytes(envelope.original_content)})
        return "250 2.0.0 Ok: queued"


class CountingController(aiosmtpd_controller.Controller):
    def factory(self):
        with self.handler.lock:
            self.handler.connections += 1
        return super().factory()


@pytest.fixture
def aiosmtp():
    """start(reject=...) -> (handler, "127.0.0.1:port"); connections counts
    only the relay's (the controller's own readiness probe is subtracted)."""
    started = []

    def start(reject=()):
        handler = Recorder(reject)
        port = free_port()
        ctl = CountingController(handler, hostname="127.0.0.1", port=port,
                                 data_size_limit=64 * 1024 * 1024)
        ctl.start()
        started.append(ctl)
        with handler.lock:
            handler.connections = 0
        return handler, f"127.0.0.1:{port}"

    yield start
    for ctl in started:
        ctl.stop()


# ---------------------------------------------------------------- smtp-sink

@pytest.fixture
def smtp_sink():
    """start(*options) -> (Popen, "127.0.0.1:port"); its -c counters are
    read with sink_counters()."""
    if not os.access(SMTP_SINK, os.X_OK):
        pytest.skip("smtp-sink is not installed")
    procs = []

    def start(*options):
        port = free_port()
        argv = [SMTP_SINK, "-c"]
        if H.IS_ROOT:
            argv += ["-u", "nobody"]
        argv += list(options) + [f"127.0.0.1:{port}", "64"]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(p)
        wait_listening(port)
        return p, f"127.0.0.1:{port}"

    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait(10)


def sink_counters(proc):
    """Stop smtp-sink and return its last counters (sessions, QUITs,
    messages), without the readiness probe's session."""
    time.sleep(0.3)             # let it count the last QUIT
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    found = re.findall(rb"sess=(\d+) quit=(\d+) mesg=(\d+)", out)
    assert found, out
    sess, quit_, mesg = (int(x) for x in found[-1])
    return sess - 1, quit_, mesg


# ---------------------------------------------------------------- scripted server

class Scripted:
    """A small SMTP server whose behaviour is chosen per connection:
    behave(n) returns a dict of options for the n-th connection (0-based):
      greeting, size (the SIZE limit announced), pipelining (True), ehlo ("250" or a failure reply), reject (set of
      addresses), rcpt_421 (reply 421 to RCPT and close), close_in_data
      (close after this many message bytes), data_reply (a reply line for
      the end of data), data_delay / dot_delay (seconds before the reply to
      DATA / to the end of data), raw_after_mail (bytes sent instead of
      the MAIL reply)."""

    def __init__(self, behave=lambda n: {}):
        self.behave = behave
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.target = f"127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.connections = 0
        self.messages = []      # (mail_from_args, [rcpts], data)
        self.pipelined = []     # per MAIL: DATA arrived in the same batch
        self.helos = []
        self.quits = []         # time.monotonic() of each QUIT
        self.replied = []       # time.monotonic() of each reply to the end of data
        self.stopping = False
        self.thread = threading.Thread(target=self.accept_loop, daemon=True)
        self.thread.start()

    def close(self):
        self.stopping = True
        self.sock.close()

    def accept_loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                n = self.connections
                self.connections += 1
            threading.Thread(target=self.session, args=(conn, n), daemon=True).start()

    def session(self, conn, n):
        opts = {"pipelining": True, "ehlo": "250", "reject": set()}
        opts.update(self.behave(n))
        conn.settimeout(90)
        try:
            self.converse(conn, opts)
        except OSError:
            pass
        finally:
            conn.close()

    def converse(self, conn, o):
        buf = bytearray()

        def line():
            while b"\r\n" not in buf:
                d = conn.recv(65536)
                if not d:
                    raise OSError("eof")
                buf.extend(d)
            i = buf.index(b"\r\n")
            ln = bytes(buf[:i])
            del buf[:i + 2]
            return ln.decode("latin-1")

        conn.sendall(o.get("greeting", "220 scripted ESMTP").encode() + b"\r\n")
        mail, rcpts = None, []
        while True:
            cmd = line()
            verb = cmd[:4].upper()
            if verb == "EHLO":
                self.helos.append(cmd)
                if o["ehlo"] != "250":
                    conn.sendall(o["ehlo"].encode() + b"\r\n")
                    continue
                caps = ["scripted"] + (["PIPELINING"] if o["pipelining"] else []) + \
                    ["8BITMIME", f"SIZE {o.get('size', 100000000)}", "ENHANCEDSTATUSCODES"]
                conn.sendall("".join(f"250{'-' if i < len(caps) - 1 else ' '}{c}\r\n"
                                     for i, c in enumerate(caps)).encode())
            elif verb == "HELO":
                self.helos.append(cmd)
                conn.sendall(b"250 scripted\r\n")
            elif verb == "MAIL":
                with self.lock:
                    self.pipelined.append(b"DATA\r\n" in buf)
                if "raw_after_mail" in o:
                    conn.sendall(o["raw_after_mail"])
                    continue
                mail, rcpts = cmd, []
                conn.sendall(b"250 2.1.0 Ok\r\n")
            elif verb == "RCPT":
                addr = cmd[cmd.index("<") + 1:cmd.rindex(">")]
                if o.get("rcpt_421"):
                    conn.sendall(b"421 4.3.2 Service shutting down\r\n")
                    return
                if addr in o["reject"]:
                    conn.sendall(f"550 5.1.1 <{addr}>: user unknown\r\n".encode())
                else:
                    rcpts.append(addr)
                    conn.sendall(b"250 2.1.5 Ok\r\n")
            elif verb == "DATA":
                if mail is None or not rcpts:
                    conn.sendall(b"554 5.5.1 Error: no valid recipients\r\n")
                    continue
                if o.get("data_delay"):
                    time.sleep(o["data_delay"])
                conn.sendall(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                data = self.read_data(conn, buf, o)
                if data is None:
                    return
                if o.get("dot_delay"):
                    time.sleep(o["dot_delay"])
                with self.lock:
                    self.messages.append((mail, list(rcpts), data))
                conn.sendall((o.get("data_reply", "250 2.0.0 Ok: queued") + "\r\n").encode())
                self.replied.append(time.monotonic())
                mail, rcpts = None, []
            elif verb == "RSET":
                mail, rcpts = None, []
                conn.sendall(b"250 2.0.0 Ok\r\n")
            elif verb == "QUIT":
                self.quits.append(time.monotonic())
                conn.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                conn.sendall(b"502 5.5.2 Error: command not recognized\r\n")

    @staticmethod
    def read_data(conn, buf, o):
        """The raw (still dot-stuffed) data up to the end of data, or None
        when the connection was closed on purpose."""
        data = bytearray()
        while True:
            probe = b"\r\n" + bytes(data) + bytes(buf)
            end = probe.find(b"\r\n.\r\n")
            if end >= 0:
                whole = (bytes(data) + bytes(buf))
                body = whole[:end]      # probe has 2 extra bytes in front
                rest = whole[end + 3:]
                buf[:] = rest
                return body
            data.extend(buf)
            buf.clear()
            if "close_in_data" in o and len(data) >= o["close_in_data"]:
                conn.shutdown(socket.SHUT_RDWR)
                return None
            d = conn.recv(65536)
            if not d:
                raise OSError("eof in data")
            buf.extend(d)


def unstuff(raw):
    """Server-side view of the data before the end of data (it ends with
    CRLF unless empty): remove the dot-stuffing."""
    lines = raw.split(b"\r\n")[:-1]
    return b"".join((ln[1:] if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)


@pytest.fixture
def scripted():
    made = []

    def make(behave=lambda n: {}):
        s = Scripted(behave)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


# ---------------------------------------------------------------- tests

SIMPLE = b"From: a@example.test\nSubject: test\n\nhello\n"


def test_100_messages_use_few_connections_aiosmtpd(aiosmtp):
    h, target = aiosmtp()
    run = drive(target, SIMPLE, "-s", "from@example.test", jobs=100,
                rcpts=("one@example.test", "two@example.test"))
    assert run.statuses() == [0] * 200
    assert len(h.messages) == 100
    assert 1 <= h.connections <= 4, h.connections
    assert all(m["from"] == "from@example.test" for m in h.messages)
    assert all(m["to"] == ["one@example.test", "two@example.test"] for m in h.messages)
    r = run.results[1][0]
    assert r[1] == "2.0.0" and "said: 250 2.0.0 Ok: queued" in r[2], r


def test_100_messages_pipelined_smtp_sink(smtp_sink):
    sink, target = smtp_sink()
    run = drive(target, SIMPLE, jobs=100, rcpts=("a@example.test", "b@example.test"))
    assert run.statuses() == [0] * 200
    sess, quit_, mesg = sink_counters(sink)
    assert mesg == 100
    assert 1 <= sess <= 4 and quit_ == sess, (sess, quit_)


def test_pipelining_used_when_offered(scripted):
    s = scripted()
    drive(s.target, SIMPLE, jobs=3, rcpts=("a@x.test", "b@x.test"))
    assert len(s.messages) == 3
    assert s.pipelined == [True] * 3
    s2 = scripted(lambda n: {"pipelining": False})
    drive(s2.target, SIMPLE, jobs=2, rcpts=("a@x.test", "b@x.test"))
    assert len(s2.messages) == 2
    assert s2.pipelined == [False] * 2


def test_results_wait_while_the_qmgr_does_not_read(smtp_sink):
    """5000 results do not fit in the socket: the relay must queue them
    (EAGAIN) and send them in order later, not block or drop them."""
    sink, target = smtp_sink()
    rcpts = tuple(f"r{i}@example.test" for i in range(100))
    run = drive(target, SIMPLE, "-d", "2", jobs=50, rcpts=rcpts)
    assert run.statuses() == [0] * 5000
    # per job: its results, then its done
    seen = set()
    for line in run.out.splitlines():
        if line.startswith("result "):
            assert int(line.split()[1]) not in seen, line
        elif line.startswith("done "):
            seen.add(int(line.split()[1]))
    assert sink_counters(sink)[2] == 50


def test_sequential_jobs_reuse_one_connection(aiosmtp):
    h, target = aiosmtp()
    drive(target, SIMPLE, "-S", jobs=5)
    assert len(h.messages) == 5
    assert h.connections == 1


def test_connection_retired_after_100_messages(smtp_sink):
    sink, target = smtp_sink()
    run = drive(target, SIMPLE, "-S", jobs=250)
    assert run.statuses() == [0] * 250
    sess, _, mesg = sink_counters(sink)
    assert mesg == 250
    assert sess == 3            # 100 + 100 + 50


@pytest.mark.parametrize("server", ["aiosmtpd", "scripted-pipelined"])
def test_rejected_recipient_is_permanent_failure(server, aiosmtp, scripted):
    rcpts = ("ok1@example.test", "unknown@example.test", "ok2@example.test")
    if server == "aiosmtpd":
        h, target = aiosmtp(reject={"unknown@example.test"})
    else:
        s = scripted(lambda n: {"reject": {"unknown@example.test"}})
        target = s.target
    run = drive(target, SIMPLE, rcpts=rcpts)
    res = run.results[1]
    assert res[0][0] == 0 and res[2][0] == 0, res
    st, dsn, text = res[1]
    assert (st, dsn) == (2, "5.1.1"), res[1]
    assert text.startswith("host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <unknown@example.test>")
    assert text.endswith("(in reply to RCPT TO command)")
    if server == "aiosmtpd":
        assert [m["to"] for m in h.messages] == [["ok1@example.test", "ok2@example.test"]]
    else:
        assert [m[1] for m in s.messages] == [["ok1@example.test", "ok2@example.test"]]


def test_all_recipients_rejected_no_message(scripted):
    s = scripted(lambda n: {"reject": {"a@x.test", "b@x.test"}})
    run = drive(s.target, SIMPLE, "-S", jobs=2, rcpts=("a@x.test", "b@x.test"))
    assert run.statuses() == [2, 2, 2, 2]
    assert s.messages == []
    assert s.connections == 1          # RSET, then the next transaction


def test_close_mid_data_is_temporary_and_next_job_reconnects(scripted):
    s = scripted(lambda n: {"close_in_data": 100_000} if n == 0 else {})
    # large enough that the relay is still sending when the server closes
    msg = b"Subject: big\n\n" + (b"y" * 79 + b"\n") * 200_000
    run = drive(s.target, msg, "-S", jobs=2, rcpts=("a@x.test", "b@x.test"))
    for idx in (0, 1):
        st, dsn, text = run.results[1][idx]
        assert (st, dsn) == (1, "4.4.2"), run.results[1]
        assert "lost connection with 127.0.0.1[127.0.0.1] while sending message body" in text
    assert [r[0] for r in run.results[2].values()] == [0, 0]
    assert s.connections == 2
    assert len(s.messages) == 1 and unstuff(s.messages[0][2]) == crlf(msg)


def test_421_mid_transaction(scripted):
    s = scripted(lambda n: {"rcpt_421": True} if n == 0 else {"pipelining": False})
    run = drive(s.target, SIMPLE, "-S", jobs=2)
    st, dsn, text = run.results[1][0]
    assert (st, dsn) == (1, "4.3.2"), run.results[1]
    assert "said: 421 4.3.2 Service shutting down" in text
    assert run.results[2][0][0] == 0
    assert s.connections == 2 and len(s.messages) == 1


@pytest.mark.parametrize("reply,want", [
    ("554 5.7.1 rejected as spam", (2, "5.7.1")),
    ("451 4.7.1 try again later", (1, "4.7.1")),
    ("550 no enhanced code", (2, "5.0.0")),
])
def test_end_of_data_failures(scripted, reply, want):
    s = scripted(lambda n: {"data_reply": reply})
    run = drive(s.target, SIMPLE, "-S", jobs=2, rcpts=("a@x.test", "b@x.test"))
    for job in (1, 2):
        assert [r[:2] for r in run.results[job].values()] == [want] * 2
        assert run.results[job][0][2] == (f"host 127.0.0.1[127.0.0.1] said: {reply} "
                                          "(in reply to end of DATA command)")
    assert s.connections == 1       # no RSET needed, the connection is reused


def test_dot_stuffing_and_crlf_aiosmtpd(aiosmtp):
    h, target = aiosmtp()
    msg = (b"Subject: dots\n\n.\n..\n.leading dot\n..two dots\nmiddle . dot\n"
           b"trailing dot.\n\n\nbare\rcr\n. space\nlast line without newline")
    drive(target, msg)
    data = h.messages[0]["data"]
    assert data == crlf(msg)
    assert data.endswith(b"last line without newline\r\n")


def test_dot_stuffing_on_the_wire(scripted):
    s = scripted()
    msg = b"Subject: dots\n\n.\n..x\n.\n"
    drive(s.target, msg)
    raw = s.messages[0][2]
    assert raw == b"Subject: dots\r\n\r\n..\r\n...x\r\n..\r\n"
    assert unstuff(raw) == crlf(msg)


def test_empty_message(scripted):
    s = scripted()
    drive(s.target, b"")
    assert s.messages[0][2] == b""


def test_eightbit_declared_and_intact(aiosmtp):
    h, target = aiosmtp()
    msg = "Subject: 8bit\n\nGrüße aus Köln — ünïcödé\n".encode() + bytes(range(0x80, 0x100)) + b"\n"
    drive(target, msg, "-8")
    m = h.messages[0]
    assert "BODY=8BITMIME" in m["options"]
    assert any(o.startswith("SIZE=") for o in m["options"])
    assert m["data"] == crlf(msg)


def test_10mb_message_arrives_intact(aiosmtp):
    h, target = aiosmtp()
    import random
    rnd = random.Random(7)
    lines = []
    size = 0
    while size < 10 * 1024 * 1024:
        n = rnd.randrange(0, 200)
        ln = bytes(rnd.choice(b"abcdefghij .") for _ in range(min(n, 20))) * (n // 20 + 1)
        if rnd.random() < 0.05:
            ln = b"." + ln
        lines.append(ln)
        size += len(ln) + 1
    msg = b"Subject: big\n\n" + b"\n".join(lines) + b"\n"
    drive(target, msg, "-s", "")
    m = h.messages[0]
    assert m["from"] == "<>" or m["from"] == ""
    assert len(m["data"]) == len(crlf(msg))
    assert m["data"] == crlf(msg)


def test_relay_host_by_name(scripted):
    s = scripted()
    run = drive(f"localhost:{s.port}", SIMPLE)
    assert run.results[1][0][2].startswith("host localhost[127.0.0.1] said: 250 ")


def test_idle_connection_closed_with_quit(scripted):
    """relay_idle_timeout 2 (-I): the connection, idle after its message,
    is closed with QUIT 2 s after the reply to the end of data, while the
    driver still holds the relay open (-i 6)."""
    s = scripted()
    drive(s.target, SIMPLE, "-I", "2", "-i", "6")
    assert len(s.quits) == 1 and len(s.replied) == 1
    idle = s.quits[0] - s.replied[0]
    assert 2 <= idle <= (4.5 if H.SANITIZED else 3.5), idle


def test_nothing_listening_is_4_4_1():
    port = free_port()
    run = drive(f"127.0.0.1:{port}", SIMPLE, jobs=3, rcpts=("a@x.test", "b@x.test"))
    assert run.statuses() == [1] * 6
    for job in run.results.values():
        for st, dsn, text in job.values():
            assert dsn == "4.4.1"
            assert text == f"connect to 127.0.0.1:{port}: Connection refused"


def test_ehlo_refused_falls_back_to_helo(scripted):
    s = scripted(lambda n: {"ehlo": "502 5.5.2 Error: command not recognized"})
    drive(s.target, SIMPLE, "-8", "-H", "relay.example.test")
    assert s.helos == ["EHLO relay.example.test", "HELO relay.example.test"]
    assert len(s.messages) == 1
    assert "BODY=" not in s.messages[0][0] and "SIZE=" not in s.messages[0][0]
    assert s.pipelined == [False]


def test_ehlo_421_is_temporary(scripted):
    s = scripted(lambda n: {"ehlo": "421 4.7.0 go away"})
    run = drive(s.target, SIMPLE, jobs=2)
    assert run.statuses() == [1, 1]
    st, dsn, text = run.results[1][0]
    assert dsn == "4.7.0" and "said: 421 4.7.0 go away (in reply to EHLO command)" in text


def test_greeting_5xx_is_temporary(scripted):
    s = scripted(lambda n: {"greeting": "554 5.7.1 no service for you"})
    run = drive(s.target, SIMPLE)
    st, dsn, text = run.results[1][0]
    assert (st, dsn) == (1, "4.7.1")
    assert text == ("host 127.0.0.1[127.0.0.1] refused to talk to me: "
                    "554 5.7.1 no service for you")


@pytest.mark.parametrize("raw,why", [
    (b"250-" + b"x" * 3000 + b"\r\n", "reply line too long"),
    (b"".join(b"250-line\r\n" for _ in range(150)), "too many lines"),
    (b"hello\r\n", "malformed reply code"),
    (b"250-ok\r\n550 changed\r\n", "reply code changes"),
])
def test_malformed_server_reply_is_temporary(scripted, raw, why):
    s = scripted(lambda n: {"raw_after_mail": raw} if n == 0 else {})
    run = drive(s.target, SIMPLE, "-S", jobs=2)
    st, dsn, text = run.results[1][0]
    assert (st, dsn) == (1, "4.5.0"), run.results[1]
    assert "malformed reply from 127.0.0.1[127.0.0.1]" in text and why in text
    assert run.results[2][0][0] == 0


def test_bad_addresses_refused_before_smtp(scripted):
    s = scripted()
    run = drive(s.target, SIMPLE, rcpts=("good@x.test", "evil@x.test>\r\nRSET", "sp ace@x.test"))
    res = run.results[1]
    assert res[0][0] == 0
    assert res[1][:2] == (2, "5.1.3") and res[2][:2] == (2, "5.1.3")
    assert [m[1] for m in s.messages] == [["good@x.test"]]
    run = drive(s.target, SIMPLE, "-s", "bad<sender>@x.test")
    assert run.results[1][0][:2] == (2, "5.1.7")
    assert len(s.messages) == 1


def test_message_over_server_size_limit(scripted):
    s = scripted(lambda n: {"size": 20})
    run = drive(s.target, SIMPLE, rcpts=("a@x.test", "b@x.test"))
    for st, dsn, text in run.results[1].values():
        assert (st, dsn) == (2, "5.3.4")
        assert text == (f"message size {len(SIMPLE)} exceeds size limit 20 of host "
                        "127.0.0.1[127.0.0.1]")
    assert s.messages == [] and s.pipelined == []


def test_malformed_job_gets_done_without_results(scripted):
    s = scripted()
    run = drive(s.target, SIMPLE, "-0", jobs=2, expect_ok=False)
    assert run.rc == 0 and run.relay_exit == 0, run.out + run.err
    assert run.done == [1, 2] and run.results == {}
    assert "malformed relay job from the qmgr: bad recipient count" in run.err
    assert s.connections == 0


def test_qmgr_gone_abandons_in_flight_jobs(scripted):
    s = scripted(lambda n: {"data_delay": 3})
    run = drive(s.target, SIMPLE, "-k", "-d", "0.5", jobs=6, expect_ok=False)
    assert run.relay_exit == 0, run.out + run.err
    assert run.stop_seconds < 2.0, run.out
    time.sleep(3.5)
    assert s.messages == []     # the end of data was never sent


def test_qmgr_half_close_finishes_in_flight_jobs(scripted):
    s = scripted(lambda n: {"dot_delay": 2})
    run = drive(s.target, SIMPLE, "-w", "-d", "1", jobs=10, expect_ok=False)
    assert run.rc == 0, run.out + run.err
    assert sorted(run.done) == list(range(1, 11))
    sent = [j for j, r in run.results.items() if r[0][0] == 0]
    stopped = [j for j, r in run.results.items() if r[0][0] == 1]
    assert len(sent) == 4 and len(stopped) == 6, run.results
    assert all(run.results[j][0][2] == "mail system stopping" for j in stopped)
    assert len(s.messages) == 4
