"""test_lists_mailman.py - mailing lists end to end: the real mailprocd and a
real, private Mailman 3 core (mailman_instance.py) whose outgoing mail goes
to an SMTP sink.

mailprocd has `devs@lists.example.test mailman3 lmtp:127.0.0.1:PORT
members-only` in its lists source and `members_source mailman3` pointing at
Mailman's REST API.  Through it: a member's post over SMTP is distributed by
Mailman to every member; a non-member is refused at RCPT with 550 5.7.1;
mail to devs-request@ and devs-join@ reaches Mailman, which answers the
sender; a member added through REST can post after `mailprocctl lists sync`;
a message without a Message-ID gets mailprocd's and is distributed, not
bounced; a post queued while Mailman is stopped is distributed exactly once
after it starts again.

One Mailman for the module (it takes 5-25 s to start).  The module runs in
the normal pass only (H.normal_pass_only): CI runs the suite twice within
its time budget, and Mailman's start and the restart test are long waits
on Python, not on mailprocd's code, which the sanitized pass covers through
test_lists_delivery.py and test_members.py.
"""

import re
import smtplib

import pytest

import mpharness as H
from mailman_instance import MailmanInstance

pytestmark = H.normal_pass_only

LIST = "devs@lists.example.test"
MEMBERS = ["alice@example.org", "bob@example.org"]
ALICE = MEMBERS[0]
STRANGER = "mallory@example.com"


@pytest.fixture(scope="module")
def mm(tmp_path_factory):
    inst = MailmanInstance.module(tmp_path_factory)
    try:
        list_id = inst.create_list(LIST)
        for a in MEMBERS:
            inst.subscribe(list_id, a)
        inst.list_id = list_id
        yield inst
    finally:
        inst.stop()


@pytest.fixture(scope="module")
def outside():
    """mailprocd's relay_host: where a bounce (DSN) to a sender would go."""
    s = H.SmtpSink()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def d(tmp_path_factory, run_as, mm, outside):
    dm = H.Daemon(tmp_path_factory.mktemp("lists-mailman"), run_as=run_as,
                  settings={
                      "relay_host": outside.address,
                      "retry_schedule": "1s 1s 2s",
                      "members_source": f"mailman3 {mm.rest_root} "
                                        f"{mm.credentials}",
                      # only the fetch at start and `mailprocctl lists sync`
                      "members_sync_interval": "1h",
                  })
    dm.write_sources(lists=f"{LIST} mailman3 {mm.lmtp_dest} members-only\n")
    dm.compile()
    dm.start()
    dm.wait_log(r"lists sync: 1 lists", what="the first members fetch")
    yield dm
    dm.stop()


def message(sender, to, subject, marker, message_id=True, body=None):
    head = f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
    if message_id:
        head += f"Message-ID: {marker}\r\n"
    head += "Date: Fri, 04 Dec 2026 12:00:00 +0000\r\n"
    return (head + "\r\n" + (body or f"body of {marker}\r\n")).encode()


def send(d, sender, to, data):
    """One SMTP transaction to mailprocd; returns the DATA reply."""
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        s.ehlo()
        code, text = s.mail(sender)
        assert code == 250, f"MAIL: {code} {text}"
        code, text = s.rcpt(to)
        assert code == 250, f"RCPT {to}: {code} {text}"
        code, text = s.data(data)
        assert code == 250, f"DATA: {code} {text}"
        return text


def rcpt_reply(d, sender, to):
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        s.ehlo()
        assert s.mail(sender)[0] == 250
        return s.rcpt(to)


def post(d, sender=ALICE, subject="a list post", message_id=True):
    marker = H.new_msgid()
    send(d, sender, LIST, message(sender, LIST, f"{subject} {marker}",
                                  marker, message_id))
    return marker


def log_results(d, rcpt):
    return re.findall(rf"to=<{re.escape(rcpt)}> where=\S+ .* status=(\w+)",
                      d.all_logs())


def test_member_post_distributed_to_every_member(d, mm):
    marker = post(d)
    msgs = mm.wait_distributed(marker, MEMBERS)
    # through the list: Mailman's own envelope sender and list headers
    assert all(m["from"] == "devs-bounces@lists.example.test" for m in msgs)
    assert all(b"List-Id: <devs.lists.example.test>" in m["data"]
               for m in msgs)


def test_non_member_refused_at_rcpt(d, mm):
    code, text = rcpt_reply(d, STRANGER, LIST)
    assert code == 550, f"RCPT from a non-member: {code} {text}"
    assert text.startswith(b"5.7.1"), text


def test_request_address_reaches_mailman(d, mm):
    """Mailman's command runner answers a `help` to devs-request."""
    marker = H.new_msgid()
    send(d, STRANGER, "devs-request@lists.example.test",
         message(STRANGER, "devs-request@lists.example.test", "help",
                 marker, body="help\r\n"))
    H.wait_for(lambda: mm.sink.received(
        lambda m: m["to"] == [STRANGER] and
        b"The results of your email command" in m["data"]),
        60, lambda: f"Mailman's answer to the help command; sink: "
                    f"{[m['to'] for m in mm.sink.received()]}; log:\n"
                    f"{mm.log_tail()}")


def test_join_address_reaches_mailman(d, mm):
    """A message to devs-join asks Mailman to subscribe the sender: it
    sends the sender a confirmation request."""
    joiner = "newbie@example.net"
    marker = H.new_msgid()
    send(d, joiner, "devs-join@lists.example.test",
         message(joiner, "devs-join@lists.example.test", "join", marker))
    [m] = H.wait_for(lambda: mm.sink.received(
        lambda m: m["to"] == [joiner]), 60,
        lambda: f"Mailman's confirmation request to {joiner}; log:\n"
                f"{mm.log_tail()}")
    assert re.search(rb"(?mi)^Subject: .*confirm", m["data"]), m["data"][:600]
    assert re.search(rb"devs-confirm\+\w+@lists\.example\.test", m["data"])
    assert joiner not in mm.members(mm.list_id), "joined without confirming"


def test_member_added_through_rest_posts_after_sync(d, mm):
    dave = "dave@example.org"
    mm.subscribe(mm.list_id, dave)
    # mailprocd's members data is from before: still a stranger
    code, _ = rcpt_reply(d, dave, LIST)
    assert code == 550, "a member unknown to mailprocd was accepted"
    res = d.ctl("lists", "sync")
    assert res.returncode == 0, res.out
    assert LIST in res.out, res.out
    marker = post(d, sender=dave)
    mm.wait_distributed(marker, MEMBERS + [dave])


def test_message_without_message_id_distributed_not_bounced(d, mm, outside):
    marker = post(d, message_id=False)
    msgs = mm.wait_distributed(marker, MEMBERS)
    # the Message-ID mailprocd added on the way (Mailman would make its own)
    for m in msgs:
        assert re.search(rb"(?mi)^Message-ID: <[^>]+\.mailprocd@"
                         + re.escape(H.HOSTNAME.encode()) + rb">",
                         m["data"]), m["data"][:800]
    H.settle()
    assert outside.received() == [], "a bounce or warning went out"


def test_post_queued_while_mailman_stopped_distributed_once(d, mm, outside):
    """Last: it stops and starts the module's Mailman."""
    before = len(log_results(d, LIST))
    mm.stop(remove=False)
    try:
        marker = post(d, subject="while Mailman is down")
        H.wait_for(lambda: log_results(d, LIST)[before:].count("deferred")
                   >= 2, None, "two deferrals while Mailman is down")
        assert "sent" not in log_results(d, LIST)[before:]
        assert not d.queue_empty()
    finally:
        mm.start()
    mm.wait_distributed(marker, MEMBERS)
    H.wait_for(d.queue_empty, None, "mailprocd's queue to empty")
    H.wait_for(lambda: "sent" in log_results(d, LIST)[before:], None,
               "sent in the log")
    H.settle()
    H.settle()
    got = mm.sent_to(marker)
    for a in MEMBERS:
        assert got.count(a) == 1, f"{a} got the post {got.count(a)} times"
    assert log_results(d, LIST)[before:].count("sent") == 1
    assert outside.received() == [], "a bounce or warning went out"
