"""test_mailman_instance.py - the private Mailman 3 core fixture proves
itself without mailprocd: a member's post handed straight to Mailman's LMTP
server (Python's smtplib.LMTP) is distributed to every member at the SMTP
sink, a non-member's is not, an unknown list is refused per recipient, and
a stop and start keeps the lists.  Normal pass only (no mailprocd code runs
here; Mailman's start is slow)."""

import re
import smtplib

import pytest

import mpharness as H
from mailman_instance import MailmanInstance

pytestmark = H.normal_pass_only

LIST = "selftest@lists.example.test"
MEMBERS = ["alice@example.org", "bob@example.org"]


@pytest.fixture(scope="module")
def mm(tmp_path_factory):
    inst = MailmanInstance.module(tmp_path_factory, "mailman-selftest")
    try:
        inst.list_id = inst.create_list(LIST)
        for a in MEMBERS:
            inst.subscribe(inst.list_id, a)
        yield inst
    finally:
        inst.stop()


def lmtp_post(mm, sender, rcpts, marker):
    data = (f"From: <{sender}>\r\nTo: <{LIST}>\r\nSubject: post {marker}\r\n"
            f"Message-ID: {marker}\r\n\r\nbody {marker}\r\n").encode()
    with smtplib.LMTP("127.0.0.1", mm.lmtp_port,
                      local_hostname=H.CLIENT_NAME) as s:
        s.ehlo(H.CLIENT_NAME)
        return s.sendmail(sender, rcpts, data)


def test_rest_shows_the_members(mm):
    assert mm.members(mm.list_id) == MEMBERS
    lists = mm.rest("GET", "lists")
    assert [e["fqdn_listname"] for e in lists["entries"]] == [LIST]


def test_member_post_over_lmtp_distributed(mm):
    marker = H.new_msgid()
    assert lmtp_post(mm, MEMBERS[0], [LIST], marker) == {}
    mm.wait_distributed(marker, MEMBERS)


def test_non_member_post_not_distributed(mm):
    marker = H.new_msgid()
    assert lmtp_post(mm, "mallory@example.com", [LIST], marker) == {}
    # held for moderation: the list's owners are told, members get nothing
    # (Mailman's vette logger writes to mailman.log)
    H.wait_for(lambda: re.search(r"HOLD: .* post from mallory@example\.com "
                                 r"held", mm.log()), 60,
               lambda: f"Mailman to hold the post; log:\n{mm.log_tail()}")
    H.settle()
    assert not set(MEMBERS) & set(mm.sent_to(marker))


def test_unknown_list_refused_per_recipient(mm):
    marker = H.new_msgid()
    with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
        lmtp_post(mm, MEMBERS[0], ["nosuch@lists.example.test"], marker)
    [(code, _)] = e.value.recipients.values()
    assert code == 550


def test_restart_keeps_the_lists(mm):
    mm.stop(remove=False)
    assert not mm.running()
    mm.start()
    assert mm.members(mm.list_id) == MEMBERS
    marker = H.new_msgid()
    assert lmtp_post(mm, MEMBERS[1], [LIST], marker) == {}
    mm.wait_distributed(marker, MEMBERS)
