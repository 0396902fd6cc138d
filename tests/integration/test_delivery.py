"""test_delivery.py - messages sent with real clients (smtplib SMTP and LMTP,
swaks) arrive in maildirs and mboxes with the right prefix and content."""

import os
import re
import smtplib
import subprocess

import pytest

import mpharness as H
from mpharness import SENDER, lf


@pytest.fixture(scope="module")
def d(tmp_path_factory, run_as):
    dm = H.module_daemon(tmp_path_factory, run_as, "delivery")
    yield dm
    dm.stop()


def smtp(d):
    return smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                        timeout=H.REPLY_TIMEOUT)


def lmtp(target):
    if isinstance(target, int):
        return smtplib.LMTP("127.0.0.1", target, local_hostname=H.CLIENT_NAME,
                            timeout=H.REPLY_TIMEOUT)
    return smtplib.LMTP(str(target), local_hostname=H.CLIENT_NAME,
                        timeout=H.REPLY_TIMEOUT)


def check_maildir_copy(content, msg, sender, rcpt):
    got = H.Delivered(content)
    assert got.return_path == f"<{sender}>"
    assert got.delivered_to.lower() == rcpt.lower()
    assert H.HOSTNAME in got.received, \
        f"Received header does not name the host: {got.received}"
    assert b"\r" not in content, "CRLF not converted to LF"
    assert got.rest == lf(msg), "message body differs from what was sent"
    return got


def test_pid_file_names_the_master(d):
    pidfile = d.run_dir / "mailprocd.pid"
    H.wait_for(pidfile.exists, what=str(pidfile))
    assert int(pidfile.read_text().strip()) == d.pid


def test_greeting_names_host(d):
    with H.Conn(d.smtp_port) as c:
        g = c.reply()
        H.expect(g, 220)
        assert g.lines[0].split()[0] == H.HOSTNAME, f"greeting: {g}"


def test_smtp_maildir_delivery(d):
    msg = H.make_message(to="alice@example.test")
    with smtp(d) as s:
        assert s.sendmail(SENDER, ["alice@example.test"], msg) == {}
    [content] = H.wait_maildir(d.maildir("alice"), H.mid(msg))
    check_maildir_copy(content, msg, SENDER, "alice@example.test")
    md = d.maildir("alice")
    assert (md / "cur").is_dir() and (md / "tmp").is_dir()
    H.wait_for(lambda: not os.listdir(md / "tmp"), 5, "empty Maildir/tmp")
    d.wait_log(r"status=sent.*alice@example\.test|alice@example\.test.*"
               r"status=sent", what="a delivery log line with status=sent")


def test_null_sender_return_path(d):
    msg = H.make_message(to="alice@example.test")
    with smtp(d) as s:
        s.sendmail("", ["alice@example.test"], msg)
    [content] = H.wait_maildir(d.maildir("alice"), H.mid(msg))
    assert H.Delivered(content).return_path == "<>"


def test_smtp_mbox_delivery_from_quoting(d):
    body = (b"first line\r\nFrom the start of a line\r\n"
            b"not From here\r\n\r\nFrom again after a blank line\r\nend\r\n")
    m1 = H.make_message(to="bob@example.test", body=body)
    m2 = H.make_message(to="bob@example.test")
    with smtp(d) as s:
        s.sendmail(SENDER, ["bob@example.test"], m1)
        s.sendmail(SENDER, ["bob@example.test"], m2)
    H.wait_mbox(d.mbox("bob"), H.mid(m2))
    [c1] = H.wait_mbox(d.mbox("bob"), H.mid(m1))
    data = d.mbox("bob").read_bytes()
    assert data.startswith(b"From "), "mbox does not start with a From line"
    assert data.endswith(b"\n\n")
    got = H.Delivered(c1, mbox=True)
    assert re.match(rf"^From {re.escape(SENDER)} \S", got.from_line), \
        f"From line: {got.from_line!r}"
    assert got.return_path == f"<{SENDER}>"
    assert got.delivered_to == "bob@example.test"
    expected = lf(m1).replace(b"\nFrom the start", b"\n>From the start") \
                     .replace(b"\nFrom again", b"\n>From again")
    assert got.rest == expected
    assert b"\r" not in data
    # the two messages are separate, m1 before m2
    msgs = H.mbox_messages(d.mbox("bob"))
    idx = [i for i, m in enumerate(msgs) if H.mid(m1) in m or H.mid(m2) in m]
    assert len(idx) == 2 and H.mid(m1) in msgs[idx[0]]


def test_lmtp_tcp_delivery(d):
    msg = H.make_message(to="alice@example.test")
    with lmtp(d.lmtp_port) as s:
        assert s.sendmail(SENDER, ["alice@example.test"], msg) == {}
    [content] = H.wait_maildir(d.maildir("alice"), H.mid(msg))
    check_maildir_copy(content, msg, SENDER, "alice@example.test")


def test_lmtp_unix_socket_delivery(d):
    msg = H.make_message(to="bob@example.test")
    with lmtp(d.sock_path) as s:
        assert s.sendmail(SENDER, ["bob@example.test"], msg) == {}
    [content] = H.wait_mbox(d.mbox("bob"), H.mid(msg))
    got = H.Delivered(content, mbox=True)
    assert got.rest == lf(msg)


@pytest.mark.parametrize("how", ["esmtp-pipeline", "lmtp-tcp", "lmtp-unix"])
def test_swaks_delivery(d, how):
    msgid = H.new_msgid()
    cmd = ["swaks", "--from", SENDER, "--to", "carol@example.test",
           "--helo", H.CLIENT_NAME, "--timeout", str(int(H.REPLY_TIMEOUT)),
           "--header", f"Message-Id: {msgid}",
           "--header", "Subject: swaks " + how,
           "--body", f"swaks body line\nsecond line {msgid}\n"]
    if how == "esmtp-pipeline":
        cmd += ["--server", "127.0.0.1", "--port", str(d.smtp_port),
                "--pipeline"]
    elif how == "lmtp-tcp":
        cmd += ["--server", "127.0.0.1", "--port", str(d.lmtp_port),
                "--protocol", "LMTP"]
    else:
        cmd += ["--socket", str(d.sock_path), "--protocol", "LMTP"]
    res = subprocess.run(cmd, capture_output=True, text=True,
                         timeout=H.DEADLINE)
    assert res.returncode == 0, f"swaks failed:\n{res.stdout}\n{res.stderr}"
    [content] = H.wait_maildir(d.maildir("carol"), msgid)
    got = H.Delivered(content)
    assert got.delivered_to == "carol@example.test"
    assert b"swaks body line\nsecond line" in got.rest
    assert b"\r" not in content


def test_smtp_one_message_several_users(d):
    rcpts = ["alice@example.test", "bob@example.test", "carol@example.test"]
    msg = H.make_message(to="many@example.test")
    with smtp(d) as s:
        assert s.sendmail(SENDER, rcpts, msg) == {}
    [a] = H.wait_maildir(d.maildir("alice"), H.mid(msg))
    [b] = H.wait_mbox(d.mbox("bob"), H.mid(msg))
    [c] = H.wait_maildir(d.maildir("carol"), H.mid(msg))
    assert H.Delivered(a).delivered_to == "alice@example.test"
    assert H.Delivered(b, mbox=True).delivered_to == "bob@example.test"
    assert H.Delivered(c).delivered_to == "carol@example.test"
    assert H.Delivered(c).rest == lf(msg)


def test_lmtp_reply_per_recipient_known_and_unknown(d):
    msg = H.make_message(to="many@example.test")
    s = lmtp(d.lmtp_port)
    try:
        s.ehlo()
        code, _ = s.mail(SENDER)
        assert code == 250
        results = [s.rcpt(r) for r in ["alice@example.test",
                                       "nosuch@example.test",
                                       "carol@example.test",
                                       "bob@example.test"]]
        assert [c for c, _ in results] == [250, 550, 250, 250]
        assert results[1][1].startswith(b"5.1.1"), results[1]
        code, text = s.data(msg)
        finals = [(code, text)] + [s.getreply() for _ in range(2)]
        assert [c for c, _ in finals] == [250, 250, 250], finals
        # exactly three: the next reply belongs to the next command
        assert s.docmd("QUIT")[0] == 221
    finally:
        s.close()
    H.wait_maildir(d.maildir("alice"), H.mid(msg))
    H.wait_maildir(d.maildir("carol"), H.mid(msg))
    H.wait_mbox(d.mbox("bob"), H.mid(msg))


def test_default_delivery_for_uid_only_address(d):
    msg = H.make_message(to="carol@example.test")
    with smtp(d) as s:
        s.sendmail(SENDER, ["carol@example.test"], msg)
    [c] = H.wait_maildir(d.maildir("carol"), H.mid(msg))
    check_maildir_copy(c, msg, SENDER, "carol@example.test")


def test_rules_each_instruction_delivers_a_copy(d):
    msg = H.make_message(to="multi@example.test")
    with smtp(d) as s:
        s.sendmail(SENDER, ["multi@example.test"], msg)
    H.wait_maildir(d.maildir("multi"), H.mid(msg))
    H.wait_mbox(d.mbox("multi"), H.mid(msg))


def test_rules_stop_ends_the_entry(d):
    m1 = H.make_message(to="stopper@example.test")
    m2 = H.make_message(to="bob@example.test")
    with smtp(d) as s:
        s.sendmail(SENDER, ["stopper@example.test"], m1)
        s.sendmail(SENDER, ["stopper@example.test", "bob@example.test"], m2)
    H.wait_maildir(d.maildir("stopper"), H.mid(m2))
    H.wait_maildir(d.maildir("stopper"), H.mid(m1))
    H.wait_mbox(d.mbox("bob"), H.mid(m2))
    H.settle()
    assert not d.mbox("stopper").exists(), "instruction after stop ran"


def test_maildir_folder_created_on_demand(d):
    msg = H.make_message(to="folder@example.test")
    with smtp(d) as s:
        s.sendmail(SENDER, ["folder@example.test"], msg)
    folder = d.maildir("folder") / ".Lists"
    [c] = H.wait_maildir(folder, H.mid(msg))
    check_maildir_copy(c, msg, SENDER, "folder@example.test")
    for sub in ("tmp", "new", "cur"):
        assert (folder / sub).is_dir()


def test_plus_detail_delivers_to_base_user(d):
    msg = H.make_message(to="alice+news@example.test")
    with smtp(d) as s:
        assert s.sendmail(SENDER, ["alice+news@example.test"], msg) == {}
    [c] = H.wait_maildir(d.maildir("alice"), H.mid(msg))
    got = H.Delivered(c)
    # Delivered-To: the envelope recipient (with or without the detail)
    assert got.delivered_to.lower() in ("alice+news@example.test",
                                        "alice@example.test")
    assert got.rest == lf(msg)


def test_keys_match_case_insensitively(d):
    # lower-case key in the sources, mixed-case address on the wire
    m1 = H.make_message(to="ALICE@Example.TEST")
    # mixed-case keys in the sources (Frank@Example.TEST, FRANK@example.TEST)
    m2 = H.make_message(to="frank@example.test")
    with smtp(d) as s:
        assert s.sendmail(SENDER, ["ALICE@Example.TEST"], m1) == {}
        assert s.sendmail(SENDER, ["frank@example.test"], m2) == {}
    H.wait_maildir(d.maildir("alice"), H.mid(m1))
    H.wait_maildir(d.maildir("frank"), H.mid(m2))


def test_8bitmime_body_delivered_byte_exact(d):
    body = "Grüße, ça va? 日本語\r\nbytes \xff\xfe\r\n".encode("utf-8")
    msg = H.make_message(to="alice@example.test", body=body,
                         headers=["Content-Type: text/plain; charset=utf-8",
                                  "Content-Transfer-Encoding: 8bit"])
    with H.Conn(d.smtp_port) as c:
        ehlo = c.hello()
        assert "8BITMIME" in [l.split()[0].upper() for l in ehlo.lines]
        H.expect(c.cmd(f"MAIL FROM:<{SENDER}> BODY=8BITMIME"), 250)
        H.expect(c.cmd("RCPT TO:<alice@example.test>"), 250)
        H.expect(c.cmd("DATA"), 354)
        c.send(H.dot_stuff(msg) + b".\r\n")
        H.expect(c.reply(), 250)
    [content] = H.wait_maildir(d.maildir("alice"), H.mid(msg))
    assert H.Delivered(content).rest == lf(msg)


DOT_BODY = (b".\r\n..\r\n.hidden line\r\n...three\r\n .space first\r\n"
            b"middle . dot\r\ntrailing dot.\r\n.\r\n")


def test_dot_stuffing_round_trip_smtplib(d):
    msg = H.make_message(to="alice@example.test", body=DOT_BODY)
    with smtp(d) as s:
        s.sendmail(SENDER, ["alice@example.test"], msg)   # smtplib stuffs
    [content] = H.wait_maildir(d.maildir("alice"), H.mid(msg))
    assert H.Delivered(content).rest == lf(msg)


def test_dot_stuffing_round_trip_raw_lmtp(d):
    msg = H.make_message(to="carol@example.test", body=DOT_BODY)
    with H.Conn(d.lmtp_port) as c:
        c.hello(lmtp=True)
        wire = H.dot_stuff(msg)
        assert b"\r\n...hidden" not in wire and b"\r\n..hidden" in wire
        _, finals = H.transaction(c, ["carol@example.test"], msg, lmtp=True)
        assert [f.code for f in finals] == [250]
    [content] = H.wait_maildir(d.maildir("carol"), H.mid(msg))
    assert H.Delivered(content).rest == lf(msg)


def test_smtplib_several_messages_one_connection(d):
    msgs = [H.make_message(to="alice@example.test") for _ in range(5)]
    with smtp(d) as s:
        for m in msgs:
            assert s.sendmail(SENDER, ["alice@example.test"], m) == {}
    for m in msgs:
        assert len(H.wait_maildir(d.maildir("alice"), H.mid(m))) == 1


def test_mailprocctl_status_lists_workers(d):
    m = H.make_message(to="alice@example.test")
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        assert s.sendmail(SENDER, ["alice@example.test"], m) == {}
    H.wait_maildir(d.maildir("alice"), H.mid(m))
    r = d.ctl("status")
    assert r.returncode == 0, r.out
    lines = r.out.splitlines()
    assert re.match(r"qmgr pid=\d+ uptime=\d+s messages=\d+ workers=\d+", lines[0]), r.out
    assert re.search(r"deliveries sent=[1-9]\d*", r.out), r.out
    [w] = [x for x in lines if x.startswith("worker user=alice ")]
    f = dict(kv.split("=", 1) for kv in w.split()[1:])
    pid = int(f["pid"])
    assert pid in d.workers(), (pid, d.workers())
    assert f["state"] in ("idle", "busy") and int(f["jobs"]) >= 1, w
    assert int(f["rss"].rstrip("K")) > 0, w
