"""test_delay_warning.py - delay_warning_time: a message whose recipient
keeps failing temporarily gets one delay DSN (RFC 3464, Action: delayed)
to its sender through the relay (a real SMTP server, aiosmtpd), at about
arrival + delay_warning_time even when the next retry is far off, listing
only the recipients still pending; never a second one (more retries, a
restart), none for the null sender <>, none with delay_warning_time 0."""

import re
import smtplib
import time

import pytest

import mpharness as H

RULES = """# rules for test_delay_warning.py
slow@example.test
    pipe "cat > /dev/null; echo mailbox busy >&2; exit 75"

alice@example.test
    maildir ~/Maildir/
"""
UIDS = "slow@example.test slow\nalice@example.test alice\n"
HOMES = ("slow", "alice")
SLOW = "slow@example.test"


@pytest.fixture(scope="module")
def sink():
    s = H.SmtpSink()
    yield s
    s.stop()


def started(daemons, sink, name, **settings):
    conf = {"relay_host": sink.address, "retry_schedule": "1s",
            "delay_warning_time": "2s", "max_queue_lifetime": "1d"}
    conf.update(settings)
    d = daemons(name, rules=RULES, uids=UIDS, homes=HOMES, settings=conf)
    d.start()
    return d


def send(d, sender, rcpts, msg):
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        assert s.sendmail(sender, rcpts, msg) == {}


def qid_of(d, sender):
    """The queue id of the (one) message from sender to slow@, from its
    log lines."""
    rx = re.compile(rf"qid=(\w+) from=<{re.escape(sender)}> to=<{re.escape(SLOW)}> ")
    return H.wait_for(lambda: (m := rx.search(d.all_logs())) and m.group(1),
                      H.DEADLINE, f"a log line for the message from <{sender}>")


def attempts(d, qid, log=None):
    """How many deferred attempts for slow@ the log shows for qid."""
    return len(re.findall(rf"qid={qid} from=<[^>]*> to=<{re.escape(SLOW)}> "
                          r".*status=deferred", log if log is not None else d.all_logs()))


def dsns_to(sink, sender):
    return sink.received(lambda x: x["to"] == [sender])


def check_delay_dsn(dsn, sender, msg):
    """A delay warning about msg to sender listing slow@ alone; returns
    its per-recipient block."""
    assert dsn["from"] in ("", "<>")             # from the null sender
    m, rcpts = H.parse_dsn(dsn["data"])
    assert m["Subject"] == "Delayed Mail (still being retried)"
    assert m["To"].addresses[0].addr_spec == sender
    assert len(rcpts) == 1, rcpts               # the delivered one is not listed
    [r] = rcpts
    assert r["Final-Recipient"] == f"rfc822; {SLOW}"
    assert r["Action"] == "delayed"
    assert re.fullmatch(r"4\.\d{1,3}\.\d{1,3}", r["Status"]), r
    assert "mailbox busy" in r.get("Diagnostic-Code", ""), r
    assert r.get("Will-Retry-Until"), r
    assert H.mid(msg) in dsn["data"]            # the original's headers
    assert b"alice@example.test" not in dsn["data"].split(b"message/delivery-status")[1] \
        .split(b"text/rfc822-headers")[0]
    return r


def test_one_warning_despite_retries(daemons, sink):
    """Several retries after the warning: still exactly one, listing only
    the recipient still pending; the original stays queued, not bounced."""
    d = started(daemons, sink, "retries")
    sender = "retries@remote.test"
    msg = H.make_message(to=SLOW)
    send(d, sender, [SLOW, "alice@example.test"], msg)
    H.wait_maildir(d.maildir("alice"), H.mid(msg))
    [dsn] = sink.wait(lambda x: x["to"] == [sender], timeout=H.DEADLINE)
    check_delay_dsn(dsn, sender, msg)
    qid = qid_of(d, sender)
    d.wait_log(rf"qid={qid}: delay warning queued as \w+")
    after = attempts(d, qid)
    H.wait_for(lambda: attempts(d, qid) >= after + 3, H.DEADLINE,
               "three more retries after the warning")
    assert len(dsns_to(sink, sender)) == 1
    assert len(re.findall(rf"qid={qid}: delay warning queued", d.all_logs())) == 1
    # still queued, and the retries go on: no bounce, no expiry
    assert qid in d.queue_files("deferred") + d.queue_files("active")
    assert not re.search(rf"qid={qid} .*status=expired", d.all_logs())


def test_warning_does_not_wait_for_the_next_retry(daemons, sink):
    """The next retry is an hour away: the warning still goes out at about
    arrival + delay_warning_time, without a retry and without the file
    leaving deferred/."""
    d = started(daemons, sink, "timer", retry_schedule="1h")
    sender = "timer@remote.test"
    msg = H.make_message(to=SLOW)
    t0 = time.monotonic()
    send(d, sender, [SLOW], msg)
    [dsn] = sink.wait(lambda x: x["to"] == [sender], timeout=H.DEADLINE)
    waited = time.monotonic() - t0
    assert waited >= 1.0, f"warned after {waited:.1f}s, before delay_warning_time"
    check_delay_dsn(dsn, sender, msg)
    qid = qid_of(d, sender)
    H.settle()
    assert attempts(d, qid) == 1                # the warning retried nothing
    assert d.queue_files("deferred") == [qid]
    r = d.ctl("queue", "show", qid)
    assert r.returncode == 0, r.out
    assert re.search(r"(?m)^delay warning: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}$", r.out), \
        r.out


def test_no_warning_for_null_sender(daemons, sink):
    """From <>: no warning (a message from a sender, sent alongside, gets
    one, so the time has come)."""
    d = started(daemons, sink, "null")
    sender = "null-control@remote.test"
    control = H.make_message(to=SLOW)
    bounce = H.make_message(to=SLOW)
    send(d, "", [SLOW], bounce)
    send(d, sender, [SLOW], control)
    sink.wait(lambda x: x["to"] == [sender], timeout=H.DEADLINE)
    qid = qid_of(d, "")
    n = attempts(d, qid)
    H.wait_for(lambda: attempts(d, qid) >= n + 2, H.DEADLINE, "two more retries")
    assert not sink.received(lambda x: H.mid(bounce) in x["data"])
    assert not re.search(rf"qid={qid}: .*delay warning", d.all_logs())
    assert qid in d.queue_files("deferred") + d.queue_files("active")


def test_no_warning_when_turned_off(daemons, sink):
    """delay_warning_time 0: none, however long it waits."""
    d = started(daemons, sink, "off", delay_warning_time="0")
    sender = "off@remote.test"
    msg = H.make_message(to=SLOW)
    send(d, sender, [SLOW], msg)
    qid = qid_of(d, sender)
    t0 = time.monotonic()
    H.wait_for(lambda: attempts(d, qid) >= 4 and time.monotonic() - t0 > 3,
               H.DEADLINE, "four attempts, past 3 s")
    assert not dsns_to(sink, sender)
    assert "delay warning" not in d.all_logs()


def test_no_second_warning_after_restart(daemons, sink):
    """The warning is recorded in the queue file ('W'): after a restart of
    the daemon the retries go on and no second warning is sent."""
    d = started(daemons, sink, "restart")
    sender = "restart@remote.test"
    msg = H.make_message(to=SLOW)
    send(d, sender, [SLOW], msg)
    sink.wait(lambda x: x["to"] == [sender], timeout=H.DEADLINE)
    qid = qid_of(d, sender)
    d.wait_log(rf"qid={qid}: delay warning queued as \w+")
    d.restart()
    H.wait_for(lambda: attempts(d, qid, d.log()) >= 3, H.DEADLINE,
               "three retries after the restart")
    assert len(dsns_to(sink, sender)) == 1
    assert "delay warning" not in d.log()
