"""test_rules.py - the rules language and every delivery kind through the
real daemon: conditions alone and combined, several destinations, stop,
pipe (reads, does not read, exits 75, exits 1, times out), forward through
the relay to a real SMTP server (aiosmtpd) with connection reuse, loops
broken, discard, reject, well-formed DSNs (parsed with Python's email
package) never sent to <>, and per-entry maxsize at RCPT and DATA."""

import re
import smtplib
import time

import pytest

import mpharness as H
from mpharness import SENDER, Conn, expect

RULES = r"""# rules for test_rules.py
cond@example.test
    if subject ~ /urgent/ maildir ~/Maildir/.Urgent/ ; stop
    if header X-List contains "dev" and not sender ~ /@spam\.test$/   maildir ~/Maildir/.dev/
    if body ~ /secret code \d+/   mbox ~/secret.mbox
    if size > 20K   maildir ~/Maildir/.Big/ ; stop
    if extension ~ /^tag$/   maildir ~/Maildir/.Tagged/

piper@example.test
    if header X-Pipe ~ /^read$/     pipe "cat > $HOME/piped.txt; echo \"$SENDER|$RECIPIENT|$EXTENSION|$USER|$HOME\" > $HOME/env.txt"
    if header X-Pipe ~ /^noread$/   pipe "exit 0"
    if header X-Pipe ~ /^tempfail$/ pipe "cat > /dev/null; exit 75"
    if header X-Pipe ~ /^fail$/     pipe "cat > /dev/null; echo no such mailbox here >&2; exit 1"
    if header X-Pipe ~ /^slow$/     pipe "sleep 60"
    if header X-Pipe ~ /./ stop

fwd@example.test
    forward out1@remote.test, out2@remote.test
    maildir ~/Maildir/

rejecter@example.test
    reject "no mail for this address"

discarder@example.test
    discard

maxer@example.test   maxsize=2K
    maildir ~/Maildir/

alice@example.test
    maildir ~/Maildir/
"""

ACCOUNTS = ("cond", "piper", "fwd", "rejecter", "discarder", "maxer", "alice")
UIDS = "".join(f"{a}@example.test {a}\n" for a in ACCOUNTS)


@pytest.fixture(scope="module")
def sink():
    s = H.SmtpSink()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def d(tmp_path_factory, run_as, sink):
    dm = H.module_daemon(tmp_path_factory, run_as, "rules", rules=RULES, uids=UIDS,
                         homes=ACCOUNTS,
                         settings={"relay_host": sink.address, "pipe_timeout": "2s",
                                   "max_message_size": "1M"})
    yield dm
    dm.stop()


def send(d, rcpts, msg, sender=SENDER, lmtp=False):
    cls = smtplib.LMTP if lmtp else smtplib.SMTP
    port = d.lmtp_port if lmtp else d.smtp_port
    with cls("127.0.0.1", port, local_hostname=H.CLIENT_NAME,
             timeout=H.REPLY_TIMEOUT) as s:
        return s.sendmail(sender, rcpts, msg)


def in_maildir(d, account, folder, msgid):
    md = d.maildir(account) / folder if folder else d.maildir(account)
    return H.find_marked([x for _, x in H.maildir_messages(md)], msgid)


def log_lines(d, regex):
    return re.findall(regex, d.log(), re.M)


def sink_from(sink, rcpt_regex):
    return lambda m: any(re.search(rcpt_regex, r) for r in m["to"])


# ------------------------------------------------------------- conditions

def test_condition_subject_and_stop(d):
    m = H.make_message(to="cond@example.test", subject="an urgent matter",
                       body=b"secret code 42\r\n")
    assert send(d, ["cond@example.test"], m) == {}
    H.wait_maildir(d.maildir("cond") / ".Urgent", H.mid(m))
    H.settle()
    # stop: the body rule below did not run, nor the default delivery
    assert not (d.home("cond") / "secret.mbox").exists() or \
        H.mid(m) not in (d.home("cond") / "secret.mbox").read_bytes()
    assert not in_maildir(d, "cond", None, H.mid(m))


def test_condition_header_and_not_sender(d):
    dev = H.make_message(to="cond@example.test", headers=["X-List: the DEV list"])
    spam = H.make_message(to="cond@example.test", headers=["X-List: dev"])
    assert send(d, ["cond@example.test"], dev) == {}
    assert send(d, ["cond@example.test"], spam, sender="bulk@spam.test") == {}
    H.wait_maildir(d.maildir("cond") / ".dev", H.mid(dev))
    # `not sender` failed for the second: nothing held, default delivery
    H.wait_maildir(d.maildir("cond"), H.mid(spam))
    assert not in_maildir(d, "cond", ".dev", H.mid(spam))


def test_condition_body_decoded(d):
    # quoted-printable hides the text from a raw match: "secret=20code 7"
    m = H.make_message(to="cond@example.test", headers=[
        "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable"],
        body=b"the secret=20code 7 is here\r\n")
    assert send(d, ["cond@example.test"], m) == {}
    H.wait_mbox(d.home("cond") / "secret.mbox", H.mid(m))
    H.settle()
    assert not in_maildir(d, "cond", None, H.mid(m))


def test_condition_size_and_extension(d):
    big = H.make_message(to="cond@example.test", body=(b"x" * 78 + b"\r\n") * 400)
    tagged = H.make_message(to="cond+tag@example.test")
    assert send(d, ["cond@example.test"], big) == {}
    assert send(d, ["cond+tag@example.test"], tagged) == {}
    H.wait_maildir(d.maildir("cond") / ".Big", H.mid(big))
    H.wait_maildir(d.maildir("cond") / ".Tagged", H.mid(tagged))


def test_condition_encoded_subject(d):
    # RFC 2047: "urgent" in base64 UTF-8
    m = H.make_message(to="cond@example.test", subject="=?UTF-8?B?dXJnZW50IQ==?=")
    assert send(d, ["cond@example.test"], m) == {}
    H.wait_maildir(d.maildir("cond") / ".Urgent", H.mid(m))


# ------------------------------------------------------------------- pipe

def test_pipe_reads_message_and_environment(d):
    m = H.make_message(to="piper+ext@example.test", headers=["X-Pipe: read"])
    assert send(d, ["piper+ext@example.test"], m) == {}
    piped = d.home("piper") / "piped.txt"
    H.wait_for(lambda: piped.exists() and H.mid(m) in piped.read_bytes(),
               H.DEADLINE, "the pipe command's output file")
    got = piped.read_bytes()
    assert got.startswith(b"Return-Path: <" + SENDER.encode() + b">\nDelivered-To: ")
    env = H.wait_for(lambda: (d.home("piper") / "env.txt").exists() and
                     (d.home("piper") / "env.txt").read_text().strip(), H.DEADLINE,
                     "env.txt")
    assert env == f"{SENDER}|piper+ext@example.test|ext|piper|{d.home('piper')}", env
    d.wait_log(r"to=<piper\+ext@example\.test> where=pipe .*status=sent")


def test_pipe_not_reading_is_a_warning_and_delivered(d):
    m = H.make_message(to="piper@example.test", headers=["X-Pipe: noread"],
                       body=b"y" * 1000 + b"\r\n" * 1)
    big = m + (b"z" * 998 + b"\r\n") * 300   # more than a pipe buffer
    assert send(d, ["piper@example.test"], big) == {}
    d.wait_log(r"pipe: user=piper command=exit 0 exited without reading")
    d.wait_log(r"to=<piper@example\.test> where=pipe .*status=sent")


def test_pipe_exit_75_is_retried(d):
    m = H.make_message(to="piper@example.test", headers=["X-Pipe: tempfail"])
    assert send(d, ["piper@example.test"], m) == {}
    H.wait_for(lambda: len(log_lines(d, r"to=<piper@example\.test> where=pipe .*"
                                        r"dsn=4\.3\.0 status=deferred")) >= 2,
               H.DEADLINE * 2, "two deferred attempts (exit 75 is retried)")


def test_pipe_exit_1_bounces_with_its_output(d, sink):
    m = H.make_message(to="piper@example.test", headers=["X-Pipe: fail"])
    assert send(d, ["piper@example.test"], m, sender="fail-sender@remote.test") == {}
    [dsn] = sink.wait(lambda x: x["to"] == ["fail-sender@remote.test"], timeout=H.DEADLINE)
    assert dsn["from"] in ("", "<>")           # the null sender
    msg, rcpts = H.parse_dsn(dsn["data"])
    assert rcpts[0]["Final-Recipient"].endswith("piper@example.test")
    assert rcpts[0]["Action"] == "failed"
    assert rcpts[0]["Status"].startswith("5.")
    assert "no such mailbox here" in dsn["data"].decode("utf-8", "replace")
    assert H.mid(m) in dsn["data"]   # the original headers are quoted


def test_pipe_timeout_kills_and_defers(d):
    m = H.make_message(to="piper@example.test", headers=["X-Pipe: slow"])
    t0 = time.monotonic()
    assert send(d, ["piper@example.test"], m) == {}
    d.wait_log(r"to=<piper@example\.test> where=pipe .*status=deferred \(command timed out",
               timeout=H.DEADLINE)
    assert time.monotonic() - t0 < 30


# ---------------------------------------------------------------- forward

def test_forward_keeps_sender_and_reuses_connections(d, sink):
    before = sink.connections
    msgs = [H.make_message(to="fwd@example.test") for _ in range(100)]
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        for m in msgs:
            assert s.sendmail(SENDER, ["fwd@example.test"], m) == {}
    mids = {H.mid(m) for m in msgs}

    def arrived():
        return {mid for x in sink.received() for mid in mids
                if mid in x["data"]}
    H.wait_for(lambda: arrived() == mids, H.DEADLINE * 3, "100 forwards at the sink")
    fwds = [x for x in sink.received() if any(mid in x["data"] for mid in mids)]
    assert len(fwds) == 100
    for x in fwds:
        assert x["from"] == SENDER
        assert sorted(x["to"]) == ["out1@remote.test", "out2@remote.test"]
        assert x["data"].startswith(b"Delivered-To: fwd@example.test\r\n")
    used = sink.connections - before
    assert 1 <= used <= 10, f"{used} connections for 100 forwards"
    # the local copy too
    for m in msgs[:5]:
        H.wait_maildir(d.maildir("fwd"), H.mid(m))


def test_loop_is_bounced_not_delivered(d, sink):
    m = H.make_message(to="alice@example.test",
                       headers=["Delivered-To: alice@example.test"])
    assert send(d, ["alice@example.test"], m, sender="loop-sender@remote.test") == {}
    [dsn] = sink.wait(lambda x: x["to"] == ["loop-sender@remote.test"], timeout=H.DEADLINE)
    _, rcpts = H.parse_dsn(dsn["data"])
    assert rcpts[0]["Status"] == "5.4.6"
    assert not in_maildir(d, "alice", None, H.mid(m))


# ------------------------------------------------------ discard and reject

def test_discard_delivers_nothing(d):
    m = H.make_message(to="discarder@example.test")
    assert send(d, ["discarder@example.test"], m) == {}
    d.wait_log(r"to=<discarder@example\.test> where=discard .*status=sent")
    assert not in_maildir(d, "discarder", None, H.mid(m))


def test_reject_bounces_with_text_never_to_null_sender(d, sink):
    m = H.make_message(to="rejecter@example.test")
    assert send(d, ["rejecter@example.test"], m, sender="rej-sender@remote.test") == {}
    [dsn] = sink.wait(lambda x: x["to"] == ["rej-sender@remote.test"], timeout=H.DEADLINE)
    _, rcpts = H.parse_dsn(dsn["data"])
    assert rcpts[0]["Status"] == "5.7.1"
    assert "no mail for this address" in rcpts[0].get("Diagnostic-Code", "")
    # the same from <>: logged, no bounce
    m2 = H.make_message(to="rejecter@example.test")
    n = len(sink.received())
    assert send(d, ["rejecter@example.test"], m2, sender="") == {}
    d.wait_log(r"not bouncing a message from <>")
    H.settle()
    assert len(sink.received()) == n
    assert not sink.received(lambda x: x["to"] == [""])


# ---------------------------------------------------------------- maxsize

def test_maxsize_refused_at_rcpt_with_size(d):
    with Conn(d.smtp_port) as c:
        c.hello()
        expect(c.cmd(f"MAIL FROM:<{SENDER}> SIZE=5000"), 250)
        r = c.cmd("RCPT TO:<maxer@example.test>")
        assert r.code == 552 and "5.3.4" in str(r), r
        expect(c.cmd("RCPT TO:<alice@example.test>"), 250)


def test_maxsize_lmtp_only_that_recipient_fails(d):
    m = H.make_message(to="maxer@example.test", body=(b"b" * 98 + b"\r\n") * 40)
    with Conn(d.lmtp_port) as c:
        c.hello(lmtp=True)
        rr, final = H.transaction(c, ["maxer@example.test", "alice@example.test"], m,
                                  lmtp=True)
        assert [r.code for r in rr] == [250, 250]
        assert [r.code for r in final] == [552, 250], final
        assert "5.3.4" in str(final[0])
    H.wait_maildir(d.maildir("alice"), H.mid(m))
    H.settle()
    assert not in_maildir(d, "maxer", None, H.mid(m))


def test_maxsize_smtp_alone_refused_else_bounced(d, sink):
    m = H.make_message(to="maxer@example.test", body=(b"c" * 98 + b"\r\n") * 40)
    with Conn(d.smtp_port) as c:
        c.hello()
        _, final = H.transaction(c, ["maxer@example.test"], m)
        assert final[0].code == 552 and "5.3.4" in str(final[0]), final
    # no SIZE= at MAIL (smtplib would send one): the limit applies at DATA,
    # and SMTP has one reply for all, so maxer gets a bounce
    m2 = H.make_message(to="maxer@example.test", body=(b"d" * 98 + b"\r\n") * 40)
    with Conn(d.smtp_port) as c:
        c.hello()
        rr, final = H.transaction(c, ["maxer@example.test", "alice@example.test"], m2,
                                  sender="max-sender@remote.test")
        assert [r.code for r in rr] == [250, 250]
        assert final[0].code == 250, final
    H.wait_maildir(d.maildir("alice"), H.mid(m2))
    [dsn] = sink.wait(lambda x: x["to"] == ["max-sender@remote.test"], timeout=H.DEADLINE)
    _, rcpts = H.parse_dsn(dsn["data"])
    assert rcpts[0]["Status"] == "5.3.4"
    assert rcpts[0]["Final-Recipient"].endswith("maxer@example.test")
    assert not in_maildir(d, "maxer", None, H.mid(m2))


# ------------------------------------------------------- mailprocctl test

def test_mailprocctl_test_dry_run(d):
    urgent = H.make_message(to="cond@example.test", subject="urgent: read me",
                            headers=["X-List: dev"])
    before = H.maildir_messages(d.maildir("cond") / ".Urgent")
    r = d.ctl("test", "cond@example.test", input=urgent)
    assert r.returncode == 0, r.out
    home = d.home("cond")
    lines = r.out.splitlines()
    assert "address: cond@example.test" in lines
    assert "entry: cond@example.test" in lines
    assert any(re.fullmatch(rf"line 3: if subject ~ /urgent/ -> holds: maildir "
                            rf"{re.escape(str(home))}/Maildir/\.Urgent/", x)
               for x in lines), r.out
    assert "line 3: if subject ~ /urgent/ -> holds: stop" in lines, r.out
    # stop: the later lines are not reached
    assert not any(x.startswith("line 4:") for x in lines), r.out
    assert lines[-1] == "result: deliver (1 destination)", r.out
    # a dry run delivers nothing
    H.settle()
    assert H.maildir_messages(d.maildir("cond") / ".Urgent") == before

    plain = H.make_message(to="cond@example.test", subject="hello")
    r = d.ctl("test", "-s", "someone@spam.test", "cond@example.test", input=plain)
    assert r.returncode == 0, r.out
    lines = r.out.splitlines()
    assert "line 4: if header X-List contains \"dev\" and not sender ~ /@spam\\.test$/ " \
           "-> does not hold" in lines, r.out
    assert any(x.startswith("default_delivery: maildir ") for x in lines), r.out

    r = d.ctl("test", "rejecter@example.test", input=plain)
    assert r.out.splitlines()[-1] == "result: bounced by reject (5.7.1)", r.out
    r = d.ctl("test", "nobody-here@nowhere.test", input=plain)
    assert r.returncode != 0 and "unknown address" in r.out, r.out


# ----------------------------------------------------------------- expiry

def test_expired_recipient_bounced_with_last_error(tmp_path, run_as, sink):
    """A recipient that keeps failing temporarily expires after
    max_queue_lifetime: logged, one DSN with its last error, and the
    message leaves the queue."""
    rules = 'slow@example.test\n    pipe "cat > /dev/null; echo try later >&2; exit 75"\n'
    d = H.Daemon(tmp_path / "expire", run_as=run_as, rules=rules,
                 uids="slow@example.test slow\n", homes=("slow",),
                 settings={"relay_host": sink.address, "retry_schedule": "1s",
                           "max_queue_lifetime": "3s"})
    d.compile()
    d.start()
    try:
        m = H.make_message(to="slow@example.test")
        assert send(d, ["slow@example.test"], m, sender="exp-sender@remote.test") == {}
        [dsn] = sink.wait(lambda x: x["to"] == ["exp-sender@remote.test"],
                          timeout=H.DEADLINE)
        _, rcpts = H.parse_dsn(dsn["data"])
        assert rcpts[0]["Action"] == "failed"
        assert rcpts[0]["Status"].startswith("4."), rcpts[0]
        assert "try later" in rcpts[0].get("Diagnostic-Code", ""), rcpts[0]
        assert re.search(r"to=<slow@example\.test> .*status=expired", d.log())
        H.wait_for(d.queue_empty, H.DEADLINE, "the queue to drain")
    finally:
        d.stop()


def test_stop_with_a_forward_in_flight(tmp_path, run_as):
    """A relay that hangs (the server accepts and never answers) does not
    hold up a graceful stop; the forward is sent after the restart."""
    import socket
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(16)
    sink = H.SmtpSink()
    rules = "fw@example.test\n    forward out@remote.test\n"
    d = H.Daemon(tmp_path / "stopfwd", run_as=run_as, rules=rules,
                 uids="fw@example.test fw\n", homes=("fw",),
                 settings={"relay_host": "127.0.0.1:%d" % mute.getsockname()[1]})
    try:
        d.compile()
        d.start()
        m = H.make_message(to="fw@example.test")
        assert send(d, ["fw@example.test"], m) == {}
        d.wait_log(r"forward queued as")
        t0 = time.monotonic()
        d.stop()                # fails unless every process exits in time
        assert time.monotonic() - t0 < 15
        # the forward was not recorded as done: after a restart it goes out
        with open(d.conf, "a") as f:
            f.write(f"relay_host {sink.address}\n")
        text = d.conf.read_text().replace(
            "relay_host 127.0.0.1:%d\n" % mute.getsockname()[1], "")
        d.conf.write_text(text)
        d.start()
        sink.wait(lambda x: H.mid(m) in x["data"], timeout=H.DEADLINE)
    finally:
        if d.running():
            d.stop()
        sink.stop()
        mute.close()
