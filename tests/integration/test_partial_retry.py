"""test_partial_retry.py - a recipient whose rules run several deliveries
and are deferred because one of them failed temporarily: on the retries
only what has not delivered yet runs again (no duplicate maildir, mbox or
forward copies), also across a restart of the daemon (the queue file's 'P'
records), without a default delivery or a `stop` changing its meaning."""

import re
import smtplib

import mpharness as H
from mpharness import SENDER

# exits 75 until its third run; counts its runs in $HOME/tries
FLAKY = ('pipe "cat > /dev/null; n=$(cat $HOME/tries 2>/dev/null || echo 0); '
         'n=$((n + 1)); echo $n > $HOME/tries; test $n -ge 3 || exit 75"')
# exits 75 until $HOME/go exists
GATED = 'pipe "cat > /dev/null; test -e $HOME/go || exit 75"'


def send(d, rcpts, msg, sender=SENDER):
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        return s.sendmail(sender, rcpts, msg)


def copies(maildir, msg):
    return len(H.find_marked([c for _, c in H.maildir_messages(maildir)], H.mid(msg)))


def deferrals(d, rcpt):
    return len(re.findall(r"to=<%s> .*status=deferred" % re.escape(rcpt), d.log()))


def wait_sent(d, rcpt):
    d.wait_log(r"to=<%s> .*status=sent" % re.escape(rcpt), H.DEADLINE * 3)


def test_only_the_failed_delivery_runs_again(daemons):
    """maildir, mbox and forward succeed, the pipe fails twice: after the
    third attempt one copy each, the pipe ran three times."""
    sink = H.SmtpSink()
    try:
        rules = ("flaky@example.test\n    maildir ~/Maildir/\n    mbox ~/copy.mbox\n"
                 "    forward out@remote.test\n    " + FLAKY + "\n")
        d = daemons("flaky", rules=rules, uids="flaky@example.test flaky\n",
                    homes=("flaky",),
                    settings={"retry_schedule": "1s", "relay_host": sink.address})
        d.start()
        m = H.make_message(to="flaky@example.test")
        assert send(d, ["flaky@example.test"], m) == {}
        wait_sent(d, "flaky@example.test")
        assert deferrals(d, "flaky@example.test") == 2, d.log()
        assert (d.home("flaky") / "tries").read_text().strip() == "3"
        sink.wait(lambda x: H.mid(m) in x["data"], timeout=H.DEADLINE)
        H.wait_for(d.queue_empty, H.DEADLINE, "the queue to drain")
        H.settle()
        assert copies(d.maildir("flaky"), m) == 1
        assert len(H.find_marked(H.mbox_messages(d.home("flaky") / "copy.mbox"),
                                 H.mid(m))) == 1
        # the forward is queued once, when the whole recipient succeeded
        assert len(sink.received(lambda x: H.mid(m) in x["data"])) == 1
    finally:
        sink.stop()


def test_done_deliveries_survive_a_restart(daemons):
    rules = "gated@example.test\n    maildir ~/Maildir/\n    " + GATED + "\n"
    d = daemons("gated", rules=rules, uids="gated@example.test gated\n",
                homes=("gated",), settings={"retry_schedule": "1s"})
    d.start()
    m = H.make_message(to="gated@example.test")
    assert send(d, ["gated@example.test"], m) == {}
    H.wait_for(lambda: deferrals(d, "gated@example.test") >= 2, H.DEADLINE * 2,
               "two deferred attempts")
    d.stop()
    [qid] = d.queue_files("deferred")
    data = (d.queue_dir / "deferred" / qid).read_bytes()
    # instruction 0 (the maildir) of recipient 0 delivered, with the
    # version of the rules entry it is instruction 0 of
    assert re.search(rb"P\0\0\0\x140 [0-9a-f]{16} 0", data), data[-200:]
    assert copies(d.maildir("gated"), m) == 1
    (d.home("gated") / "go").write_text("")
    d.start()
    wait_sent(d, "gated@example.test")
    H.wait_for(d.queue_empty, H.DEADLINE, "the queue to drain")
    assert copies(d.maildir("gated"), m) == 1


def test_rules_changed_between_attempts_run_everything_again(daemons):
    """The entry is recompiled, with an instruction inserted above the one
    that delivered: the recorded numbers no longer name the same
    instructions, so the retry runs them all (a copy twice rather than the
    new instruction's copy never made)."""
    before = "chg@example.test\n    maildir ~/Maildir/\n    " + GATED + "\n"
    after = ("chg@example.test\n    maildir ~/Maildir/.new/\n    maildir ~/Maildir/\n    "
             + GATED + "\n")
    d = daemons("chg", rules=before, uids="chg@example.test chg\n", homes=("chg",),
                settings={"retry_schedule": "1s"})
    d.start()
    m = H.make_message(to="chg@example.test")
    assert send(d, ["chg@example.test"], m) == {}
    H.wait_for(lambda: deferrals(d, "chg@example.test") >= 1, H.DEADLINE, "a deferral")
    d.write_sources(rules=after)
    d.compile()
    (d.home("chg") / "go").write_text("")
    wait_sent(d, "chg@example.test")
    assert copies(d.maildir("chg") / ".new", m) == 1, "the new instruction's copy"
    assert copies(d.maildir("chg"), m) == 2
    d.wait_log(r"to=<chg@example.test>: rules changed since instructions 0 delivered")


def test_no_default_delivery_and_stop_on_retry(daemons):
    """A retry that leaves out the delivered instruction still counts it as
    held: no default delivery, and the `stop` after it still stops."""
    rules = ("sel@example.test\n"
             "    if header X-Sel ~ /yes/ maildir ~/Maildir/.sel/\n"
             "    if header X-Sel ~ /yes/ " + FLAKY + "\n"
             "    if header X-Sel ~ /yes/ stop\n"
             "    maildir ~/Maildir/.after/\n"
             "pipeonly@example.test\n"
             '    if header X-Pipe ~ /x/ pipe "cat > /dev/null; exit 75"\n')
    d = daemons("sel", rules=rules,
                uids="sel@example.test sel\npipeonly@example.test pipeonly\n",
                homes=("sel", "pipeonly"), settings={"retry_schedule": "1s"})
    d.start()
    m = H.make_message(to="sel@example.test", headers=["X-Sel: yes"])
    p = H.make_message(to="pipeonly@example.test", headers=["X-Pipe: x"])
    assert send(d, ["sel@example.test"], m) == {}
    assert send(d, ["pipeonly@example.test"], p) == {}
    wait_sent(d, "sel@example.test")
    assert deferrals(d, "sel@example.test") == 2, d.log()
    H.wait_for(lambda: deferrals(d, "pipeonly@example.test") >= 3, H.DEADLINE * 3,
               "three deferred attempts")
    H.settle()
    assert copies(d.maildir("sel") / ".sel", m) == 1
    assert copies(d.maildir("sel"), m) == 0          # no default delivery
    assert copies(d.maildir("sel") / ".after", m) == 0
    assert copies(d.maildir("pipeonly"), p) == 0     # nor here
    assert not re.search(r"to=<pipeonly@example\.test> where=[^ ]*maildir", d.log())
