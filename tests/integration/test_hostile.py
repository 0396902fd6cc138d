"""test_hostile.py - malformed and hostile input: SMTP smuggling with bare
LF, NUL bytes, endless lines, reply floods, clients vanishing mid-DATA,
binary garbage.  After each test the daemon's processes must be the same
ones (nothing crashed and was restarted) and still serve clients."""

import random
import socket
import struct
import time

import pytest

import mpharness as H
from mpharness import SENDER, Conn, expect

MIB = 1 << 20


@pytest.fixture(scope="module")
def d(tmp_path_factory, run_as):
    # ASan's quarantine keeps freed memory resident: keep it small so that
    # the memory tests measure the daemon, not the sanitizer.
    dm = H.module_daemon(tmp_path_factory, run_as, "hostile",
                         asan_options="quarantine_size_mb=8")
    yield dm
    dm.stop()


@pytest.fixture(autouse=True)
def same_processes(d):
    def snapshot():
        return {p: H.proc_stat(p)["start"] for p in d.children()
                if H.proc_stat(p)}
    before = snapshot()
    yield
    d.assert_running("after hostile input")
    after = snapshot()
    assert before == after, \
        f"mailprocd processes changed (crash and restart?): {before} -> {after}"
    assert_serves(d)


def assert_serves(d):
    """A fresh client can still deliver a message."""
    m = H.make_message(to="carol@example.test")
    with Conn(d.smtp_port) as c:
        c.hello()
        _, finals = H.transaction(c, ["carol@example.test"], m)
        expect(finals[0], 250)
    H.wait_maildir(d.maildir("carol"), H.mid(m))


def alice_msgs(d, marker):
    return H.find_marked([x for _, x in H.maildir_messages(d.maildir("alice"))],
                         marker)


SMUGGLE_ENDINGS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r"]


@pytest.mark.parametrize("proto", ["smtp", "lmtp"])
@pytest.mark.parametrize("ending", SMUGGLE_ENDINGS,
                         ids=[repr(e)[2:-1] for e in SMUGGLE_ENDINGS])
def test_bare_lf_does_not_end_data(d, proto, ending):
    outer, inner = H.new_msgid(), H.new_msgid()
    with Conn(d.smtp_port if proto == "smtp" else d.lmtp_port) as c:
        c.hello(lmtp=proto == "lmtp")
        expect(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        expect(c.cmd("RCPT TO:<alice@example.test>"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(f"Subject: outer\r\nMessage-ID: {outer}\r\n\r\nbefore".encode()
               + ending +
               b"MAIL FROM:<smuggler@evil.test>\r\n"
               b"RCPT TO:<bob@example.test>\r\nDATA\r\n" +
               f"Subject: smuggled\r\nMessage-ID: {inner}\r\n\r\n"
               f"smuggled body\r\n".encode() + b".\r\n")
        r = c.reply()
        # one reply for the whole thing; the next one is for QUIT
        expect(c.cmd("QUIT"), 221)
    if r.code == 250:
        [got] = H.wait_maildir(d.maildir("alice"), outer)
        assert inner.encode() in got and b"smuggler@evil.test" in got, \
            "text after the bare-LF dot is missing from the message"
    else:
        # refusing such a message as a whole is safe too
        expect(r, (550, 554), "5.")
    H.settle()
    assert not H.find_marked(H.mbox_messages(d.mbox("bob")), inner), \
        "a smuggled second message was delivered"
    assert len(alice_msgs(d, outer)) == (1 if r.code == 250 else 0)


NUL_LINES = [b"NOOP\x00\r\n",
             b"EHLO a\x00b.example.test\r\n",
             b"MAIL FROM:<a\x00b@remote.test>\r\n",
             b"\x00\x00\x00\r\n"]


@pytest.mark.parametrize("line", NUL_LINES, ids=["noop", "ehlo", "mail",
                                                 "only-nuls"])
def test_nul_bytes_in_commands(d, line):
    with Conn(d.smtp_port) as c:
        c.hello()
        c.send(line)
        r = c.reply()
        expect(r, (500, 501, 502, 553, 555), "5.")
        try:
            r = c.cmd("NOOP")
        except (EOFError, OSError):
            return                  # closing on such input is allowed
        expect(r, 250)


def test_nul_truncation_does_not_add_recipient(d):
    """RCPT TO:<alice>\\0<bob> must not be read as RCPT TO:<alice>."""
    with Conn(d.smtp_port) as c:
        c.hello()
        expect(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        c.send(b"RCPT TO:<alice@example.test>\x00<bob@example.test>\r\n")
        expect(c.reply(), (500, 501, 550, 553, 555), "5.")
        try:
            r = c.cmd("DATA")
        except (EOFError, OSError):
            return
        expect(r, (503, 554), "5.5.")


def test_long_line_without_crlf_others_still_served(d):
    with Conn(d.smtp_port) as a:
        a.hello()
        a.send(b"MAIL FROM:<" + b"a" * 100_000)
        assert_serves(d)
        try:
            a.send(b">\r\n")
        except OSError:
            pass
        r = a.reply()
        expect(r, 500, "5.5.2")
        try:
            r = a.cmd("NOOP")
        except (EOFError, OSError):
            return
        expect(r, 250)


def test_20mb_line_memory_bounded(d):
    """20 MB in one command line: the receiver must not buffer it (RSS
    stays flat), must answer 500 5.5.2, and stays up for others."""
    total = (32 if H.SANITIZED else 20) * MIB
    limit_mb = 16 if H.SANITIZED else 8
    with Conn(d.smtp_port) as c:
        c.hello()
        rpid = d.receiver_pid(c)
        base = H.rss_kb(rpid)
        peak = [base]

        def monitor():
            peak[0] = max(peak[0], H.rss_kb(rpid))
        res = H.blast(c.sock, b"MAIL FROM:<", total, monitor=monitor)
        c.buf = res["received"]
        if not res["closed"]:
            try:
                c.send(b">\r\n")
            except OSError:
                pass
        # the server may still be reading what the kernel buffered: keep
        # watching until it answers (or gives up on us)
        deadline = time.monotonic() + H.DEADLINE
        while b"\n" not in c.buf and not c.eof and time.monotonic() < deadline:
            monitor()
            try:
                c._fill(time.monotonic() + 0.05)
            except (TimeoutError, EOFError):
                pass
        monitor()
        growth_mb = (peak[0] - base) / 1024
        print(f"receiver pid {rpid}: RSS {base} kB -> peak {peak[0]} kB; "
              f"sent {res['sent']} bytes, closed={res['closed']}, "
              f"stalled={res['stalled']}")
        assert growth_mb < limit_mb, \
            f"receiver RSS grew by {growth_mb:.1f} MB on one long line"
        if not H.SANITIZED:
            assert peak[0] < 50 * 1024, f"receiver RSS {peak[0]} kB"
        try:
            r = c.reply(timeout=10)
        except EOFError:
            pytest.fail("connection closed without a 500 5.5.2 reply")
        expect(r, 500, "5.5.2")


def test_reply_flood_without_reading_memory_bounded(d):
    """A client that pipelines megabytes of commands and never reads the
    replies must not make the receiver buffer them all."""
    with Conn(d.smtp_port) as c:
        c.hello()
        rpid = d.receiver_pid(c)
        base = H.rss_kb(rpid)
        peak = [base]
        flood = b"NOOP\r\n" * (8 * MIB // 6)
        sock = c.sock
        sock.setblocking(False)
        sent, last = 0, time.monotonic()
        next_mon = 0
        while sent < len(flood) and time.monotonic() - last < 2.0:
            try:
                n = sock.send(flood[sent:sent + 65536])
                sent += n
                last = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                break
            if sent >= next_mon:
                peak[0] = max(peak[0], H.rss_kb(rpid))
                next_mon += MIB // 2
        time.sleep(0.5)
        peak[0] = max(peak[0], H.rss_kb(rpid))
        sock.setblocking(True)
        growth_mb = (peak[0] - base) / 1024
        print(f"sent {sent} bytes of NOOPs; receiver RSS {base} -> {peak[0]} kB")
        assert growth_mb < 16, f"receiver RSS grew by {growth_mb:.1f} MB"


@pytest.mark.parametrize("how", ["shutdown-wr", "reset"])
def test_client_vanishes_mid_data(d, how):
    marker = H.new_msgid()
    with Conn(d.smtp_port) as c:
        c.hello()
        expect(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        expect(c.cmd("RCPT TO:<alice@example.test>"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(f"Subject: cut\r\nMessage-ID: {marker}\r\n\r\n".encode() +
               b"line\r\n" * 2000 + b"no end of data")
        if how == "shutdown-wr":
            c.sock.shutdown(socket.SHUT_WR)
            rest = c.wait_closed(H.DEADLINE)
            assert not rest.startswith(b"2"), f"acknowledged a cut message: {rest!r}"
        else:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))
    H.wait_for(lambda: not d.queue_files("incoming"), what="empty incoming/")
    assert_serves(d)
    H.settle()
    assert not alice_msgs(d, marker), "a message cut off mid-DATA was delivered"


def test_binary_garbage(d):
    rng = random.Random(20240601)
    lines = []
    for _ in range(200):
        b = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        lines.append(b.replace(b"\r", b"").replace(b"\n", b""))
    with Conn(d.smtp_port) as c:
        c.hello()
        c.send(b"".join(l + b"\r\n" for l in lines))
        codes = []
        try:
            for _ in lines:
                codes.append(c.reply().code)
        except EOFError:
            pass                     # closing after too many errors is fine
        assert codes, "no reply at all to garbage"
        assert all(400 <= x < 600 for x in codes), \
            f"garbage got a success reply: {codes}"
