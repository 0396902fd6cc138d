"""test_protocol.py - SMTP/LMTP wire behaviour: capabilities, PIPELINING,
recipient checks, size limits, recipient limit, line length, command order,
idle timeout and session limit."""

import smtplib
import time

import pytest

import mpharness as H
from mpharness import SENDER, Conn, expect


@pytest.fixture(scope="module")
def d(tmp_path_factory, run_as):
    dm = H.module_daemon(tmp_path_factory, run_as, "proto",
                         settings={"max_message_size": "10K",
                                   "max_recipients": "5"})
    yield dm
    dm.stop()


def ehlo_keywords(reply):
    """{KEYWORD: [params]} from an EHLO/LHLO reply (first line is the
    greeting line)."""
    out = {}
    for line in reply.lines[1:]:
        parts = line.split()
        out[parts[0].upper()] = parts[1:]
    return out


@pytest.mark.parametrize("proto", ["smtp", "lmtp"])
def test_ehlo_advertises_extensions(d, proto):
    with Conn(d.smtp_port if proto == "smtp" else d.lmtp_port) as c:
        kw = ehlo_keywords(c.hello(lmtp=proto == "lmtp"))
    for ext in ("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SIZE"):
        assert ext in kw, f"{ext} not advertised: {kw}"
    assert kw["SIZE"] and int(kw["SIZE"][0]) in (10240, 10000), \
        f"SIZE should be max_message_size (10K): {kw['SIZE']}"


def test_quit_gets_221_and_close(d):
    with Conn(d.smtp_port) as c:
        c.hello()
        expect(c.cmd("QUIT"), 221)
        c.wait_closed()


@pytest.mark.parametrize("proto", ["smtp", "lmtp"])
def test_unknown_recipient_550_511(d, proto):
    with Conn(d.smtp_port if proto == "smtp" else d.lmtp_port) as c:
        c.hello(lmtp=proto == "lmtp")
        expect(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        expect(c.cmd("RCPT TO:<nosuch@example.test>"), 550, "5.1.1")
        expect(c.cmd("RCPT TO:<alice@nosuch.test>"), 550, "5.1.1")
        expect(c.cmd("RCPT TO:<alice+x@other.test>"), 550, "5.1.1")
        expect(c.cmd("RCPT TO:<alice@example.test>"), 250)


def test_unknown_recipient_smtplib(d):
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            s.sendmail(SENDER, ["nobody@example.test"], H.make_message())
    code, text = e.value.recipients["nobody@example.test"]
    assert code == 550 and text.startswith(b"5.1.1"), (code, text)


def test_pipelining_smtp_replies_in_order(d):
    m1 = H.make_message(to="alice@example.test")
    m3 = H.make_message(to="frank@example.test")
    with Conn(d.smtp_port) as c:
        c.hello()
        c.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<alice@example.test>\r\n"
               "RCPT TO:<nosuch@example.test>\r\nRCPT TO:<carol@example.test>"
               "\r\nDATA\r\n")
        codes = [r.code for r in c.replies(5)]
        assert codes == [250, 250, 550, 250, 354]
        # end of data, a transaction abandoned by RSET, and a third one, in
        # one write
        c.send(H.dot_stuff(m1) + b".\r\n" +
               b"MAIL FROM:<second@remote.test>\r\n"
               b"RCPT TO:<nosuch2@example.test>\r\n"
               b"RCPT TO:<bob@example.test>\r\nRSET\r\n"
               b"MAIL FROM:<third@remote.test>\r\n"
               b"RCPT TO:<frank@example.test>\r\nDATA\r\n")
        codes = [r.code for r in c.replies(8)]
        assert codes == [250, 250, 550, 250, 250, 250, 250, 354]
        c.send(H.dot_stuff(m3) + b".\r\nQUIT\r\n")
        assert [r.code for r in c.replies(2)] == [250, 221]
    H.wait_maildir(d.maildir("alice"), H.mid(m1))
    H.wait_maildir(d.maildir("carol"), H.mid(m1))
    [c3] = H.wait_maildir(d.maildir("frank"), H.mid(m3))
    assert H.Delivered(c3).return_path == "<third@remote.test>"
    H.settle()
    assert not H.find_marked(H.mbox_messages(d.mbox("bob")),
                             b"second@remote.test")


def test_pipelining_large_batch_in_order(d):
    """120 commands in one write; the reply codes must come back in the
    order of the commands (known and unknown recipients alternate)."""
    cmds, want = [], []
    for i in range(30):
        cmds += [f"MAIL FROM:<s{i}@remote.test>",
                 f"RCPT TO:<{'alice' if i % 2 else 'nosuch'}@example.test>",
                 f"RCPT TO:<{'nosuch' if i % 2 else 'carol'}@example.test>",
                 "RSET"]
        want += [250, 250 if i % 2 else 550, 550 if i % 2 else 250, 250]
    cmds.append("NOOP")
    want.append(250)
    with Conn(d.smtp_port) as c:
        c.hello()
        c.send("".join(x + "\r\n" for x in cmds))
        got = [r.code for r in c.replies(len(want))]
        assert got == want
        expect(c.cmd("QUIT"), 221)


def test_pipelining_lmtp_per_recipient(d):
    m = H.make_message(to="lmtp@example.test")
    with Conn(d.lmtp_port) as c:
        c.hello(lmtp=True)
        c.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<alice@example.test>\r\n"
               "RCPT TO:<nosuch@example.test>\r\nRCPT TO:<bob@example.test>"
               "\r\nDATA\r\n")
        assert [r.code for r in c.replies(5)] == [250, 250, 550, 250, 354]
        c.send(H.dot_stuff(m) + b".\r\nQUIT\r\n")
        assert [r.code for r in c.replies(3)] == [250, 250, 221]
    H.wait_maildir(d.maildir("alice"), H.mid(m))
    H.wait_mbox(d.mbox("bob"), H.mid(m))


@pytest.mark.parametrize("proto", ["smtp", "lmtp"])
def test_duplicate_recipient_delivered_once(d, proto):
    """A recipient named twice (in any case) gets one copy; LMTP still
    answers each RCPT after DATA."""
    m = H.make_message(to="alice@example.test")
    lmtp = proto == "lmtp"
    with Conn(d.lmtp_port if lmtp else d.smtp_port) as c:
        c.hello(lmtp=lmtp)
        rr, final = H.transaction(c, ["alice@example.test", "ALICE@example.test"],
                                  m, lmtp=lmtp)
        assert [r.code for r in rr] == [250, 250]
        assert [r.code for r in final] == ([250, 250] if lmtp else [250])
    H.wait_maildir(d.maildir("alice"), H.mid(m))
    H.settle()
    got = H.find_marked([x for _, x in H.maildir_messages(d.maildir("alice"))],
                        H.mid(m))
    assert len(got) == 1, f"{len(got)} copies delivered"


def test_size_param_too_big_refused_at_mail(d):
    with Conn(d.smtp_port) as c:
        c.hello()
        expect(c.cmd(f"MAIL FROM:<{SENDER}> SIZE=20000"), 552, "5.3.4")
        expect(c.cmd(f"MAIL FROM:<{SENDER}> SIZE=99999999999"), 552, "5.3.4")
        expect(c.cmd(f"MAIL FROM:<{SENDER}> SIZE=5000"), 250)


def test_size_param_too_big_smtplib(d):
    big = H.make_message(body=(b"y" * 78 + b"\r\n") * 260)   # ~20K
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            s.sendmail(SENDER, ["alice@example.test"], big)
    assert e.value.smtp_code == 552 and e.value.smtp_error.startswith(b"5.3.4")


def big_message(to, kib):
    return H.make_message(to=to, body=(b"z" * 98 + b"\r\n") * (kib * 1024 // 100))


def test_data_too_big_refused_after_data(d):
    big = big_message("alice@example.test", 20)
    small = H.make_message(to="alice@example.test")
    with Conn(d.smtp_port) as c:
        c.hello()
        _, finals = H.transaction(c, ["alice@example.test"], big)
        expect(finals[0], 552, "5.3.4")
        # the session goes on
        _, finals = H.transaction(c, ["alice@example.test"], small)
        expect(finals[0], 250)
    H.wait_maildir(d.maildir("alice"), H.mid(small))
    H.wait_for(lambda: not d.queue_files("incoming"), what="empty incoming/")
    assert not H.find_marked([x for _, x in H.maildir_messages(
        d.maildir("alice"))], H.mid(big))


def test_data_too_big_lmtp_one_reply_per_recipient(d):
    big = big_message("many@example.test", 20)
    with Conn(d.lmtp_port) as c:
        c.hello(lmtp=True)
        _, finals = H.transaction(c, ["alice@example.test",
                                      "carol@example.test"], big, lmtp=True)
        for f in finals:
            expect(f, 552, "5.3.4")
        expect(c.cmd("QUIT"), 221)
    H.settle()
    for u in ("alice", "carol"):
        assert not H.find_marked([x for _, x in H.maildir_messages(
            d.maildir(u))], H.mid(big))


def test_message_under_limit_delivered(d):
    m = big_message("carol@example.test", 8)
    with Conn(d.smtp_port) as c:
        c.hello()
        expect(c.cmd(f"MAIL FROM:<{SENDER}> SIZE={len(m)}"), 250)
        expect(c.cmd("RCPT TO:<carol@example.test>"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(H.dot_stuff(m) + b".\r\n")
        expect(c.reply(), 250)
    [got] = H.wait_maildir(d.maildir("carol"), H.mid(m))
    assert H.Delivered(got).rest == H.lf(m)


def test_too_many_recipients_452_453(d):
    users = ["alice", "carol", "frank", "multi", "folder", "bob"]
    m = H.make_message(to="many@example.test")
    with Conn(d.smtp_port) as c:
        c.hello()
        expect(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        for u in users[:5]:
            expect(c.cmd(f"RCPT TO:<{u}@example.test>"), 250)
        expect(c.cmd("RCPT TO:<bob@example.test>"), 452, "4.5.3")
        expect(c.cmd("DATA"), 354)
        c.send(H.dot_stuff(m) + b".\r\n")
        expect(c.reply(), 250)
    H.wait_maildir(d.maildir("alice"), H.mid(m))
    H.wait_maildir(d.maildir("carol"), H.mid(m))
    H.wait_maildir(d.maildir("frank"), H.mid(m))
    H.wait_maildir(d.maildir("multi"), H.mid(m))
    H.wait_maildir(d.maildir("folder") / ".Lists", H.mid(m))
    H.settle()
    assert not H.find_marked(H.mbox_messages(d.mbox("bob")), H.mid(m))


def test_command_line_too_long_500_552(d):
    with Conn(d.smtp_port) as c:
        c.hello()
        c.send("NOOP " + "x" * 10000 + "\r\n")     # limit unspecified; >> 512
        expect(c.reply(), 500, "5.5.2")
        # exactly one reply for the long line: the next one is for NOOP
        try:
            c.send("NOOP\r\n")
            r = c.reply()
        except (EOFError, OSError):
            return              # closing after the error is allowed
        expect(r, 250)


def test_commands_out_of_order(d):
    m = H.make_message(to="alice@example.test")
    with Conn(d.smtp_port) as c:
        c.hello()
        expect(c.cmd("RCPT TO:<alice@example.test>"), 503, "5.5.1")
        expect(c.cmd("DATA"), 503, "5.5.1")
        expect(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        expect(c.cmd(f"MAIL FROM:<{SENDER}>"), 503, "5.5.1")
        expect(c.cmd("DATA"), (503, 554), "5.5.")
        expect(c.cmd("RCPT TO:<nosuch@example.test>"), 550, "5.1.1")
        expect(c.cmd("DATA"), (503, 554), "5.5.")
        expect(c.cmd("RCPT TO:<alice@example.test>"), 250)
        expect(c.cmd("DATA"), 354)
        c.send(H.dot_stuff(m) + b".\r\n")
        expect(c.reply(), 250)
        expect(c.cmd("QUIT"), 221)
    H.wait_maildir(d.maildir("alice"), H.mid(m))
    H.settle()
    assert len(H.wait_maildir(d.maildir("alice"), H.mid(m))) == 1


def test_rset_clears_transaction(d):
    with Conn(d.smtp_port) as c:
        c.hello()
        expect(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        expect(c.cmd("RCPT TO:<alice@example.test>"), 250)
        expect(c.cmd("RSET"), 250)
        expect(c.cmd("DATA"), 503, "5.5.1")
        expect(c.cmd("RCPT TO:<alice@example.test>"), 503, "5.5.1")


def test_unknown_command(d):
    with Conn(d.smtp_port) as c:
        c.hello()
        expect(c.cmd("FROBNICATE now"), (500, 502), "5.5.")
        expect(c.cmd("NOOP"), 250)


def test_idle_session_timeout_421(daemons):
    d = daemons("timeout", settings={"session_timeout": "2s"}).start()
    marker = H.new_msgid()
    idle = Conn(d.smtp_port)
    idle.hello()
    t_idle = time.monotonic()
    partial = Conn(d.smtp_port)
    partial.hello()
    partial.send(f"MAIL FROM:<{SENDER}")          # no CRLF
    in_data = Conn(d.lmtp_port)
    in_data.hello(lmtp=True)
    expect(in_data.cmd(f"MAIL FROM:<{SENDER}>"), 250)
    expect(in_data.cmd("RCPT TO:<alice@example.test>"), 250)
    expect(in_data.cmd("DATA"), 354)
    in_data.send(f"Subject: half\r\nMessage-ID: {marker}\r\n\r\nsome".encode())
    for name, c in (("idle", idle), ("partial line", partial),
                    ("in DATA", in_data)):
        try:
            r = c.reply(timeout=H.DEADLINE)
        except TimeoutError:
            pytest.fail(f"{name}: no 421 after session_timeout 2s")
        expect(r, 421, "4.4.2")
        if c is idle:
            assert time.monotonic() - t_idle >= 1.5, \
                "timed out well before session_timeout"
        c.wait_closed(10)
        c.close()
    H.settle()
    assert not H.find_marked([x for _, x in H.maildir_messages(
        d.maildir("alice"))], marker)
    H.wait_for(lambda: not d.queue_files("incoming"), what="empty incoming/")


def test_max_sessions_421(daemons):
    d = daemons("sessions", settings={"max_sessions": "3"}).start()
    conns = []
    try:
        for _ in range(3):
            c = Conn(d.smtp_port)
            expect(c.reply(), 220)
            conns.append(c)
        for target in (d.smtp_port, d.lmtp_port):
            with Conn(target) as extra:
                expect(extra.reply(), 421, "4.3.2")
                extra.wait_closed(10)
        expect(conns[0].cmd("QUIT"), 221)
        conns[0].wait_closed()

        def greeted():
            with Conn(d.smtp_port) as c:
                r = c.reply()
                if r.code == 220:
                    expect(c.cmd("QUIT"), 221)
                    return True
                expect(r, 421, "4.3.2")
                return False
        H.wait_for(greeted, 10, "a free session slot after one closed")
        # the held sessions still work
        expect(conns[1].cmd("EHLO " + H.CLIENT_NAME), 250)
    finally:
        for c in conns:
            c.close()
