"""test_spares.py - spare queue files (src/queue/qspares.c).

While mail comes fast, the receiver writes each message into an empty file
made in incoming/ ahead of need, whose name an fsync of incoming/ already
made durable, so that the commit fsyncs the file alone.  Mail committed
into spares is delivered once each; spares leave incoming/ when they grow
too old to use, when the receiver stops, and when it dies (the master's
purge before it starts another), and none is ever delivered as mail."""
import collections
import os
import re
import signal
import smtplib
import threading

import mpharness as H
from mpharness import SENDER

THREADS = 4
PER_THREAD = 60
SPARE_MAX_AGE = 2.0     # QSPARES_MAX_AGE_MS


def send_burst(d, tag):
    """THREADS sessions at once, PER_THREAD messages each to alice, as fast
    as the replies come; the message-ids acknowledged."""
    acked, errors = [], []
    lock = threading.Lock()

    def client(k):
        try:
            with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                              timeout=H.REPLY_TIMEOUT) as s:
                for i in range(PER_THREAD):
                    msgid = f"<{tag}-{k}-{i}@spares.test>"
                    m = H.make_message(msgid=msgid, to="alice@example.test", body="x")
                    assert s.sendmail(SENDER, ["alice@example.test"], m) == {}
                    with lock:
                        acked.append(msgid)
        except Exception as e:          # reported below, in the test's thread
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(H.DEADLINE * 3)
    assert not errors, errors
    assert len(acked) == THREADS * PER_THREAD
    return acked


def delivered(d):
    counts = collections.Counter()
    for _, content in H.maildir_messages(d.maildir("alice")):
        m = re.search(rb"(?mi)^Message-ID: (<[^>\r\n]+>)", content)
        counts[m.group(1).decode() if m else None] += 1
    return counts


def wait_delivered_once(d, ids):
    want = set(ids)
    H.wait_for(lambda: want <= set(delivered(d)), H.DEADLINE * 2,
               f"all {len(want)} acknowledged messages in alice's maildir")
    H.settle()
    counts = delivered(d)
    assert set(counts) == want, f"unexpected mail: {set(counts) - want}"
    assert all(n == 1 for n in counts.values()), \
        {k: n for k, n in counts.items() if n > 1}


def spare_figures(d):
    m = re.findall(r"spare queue files: (\d+) made, (\d+) used, (\d+) removed unused, "
                   r"(\d+) left", d.log())
    assert m, "the receiver's account of its spares at stop:\n" + d.log_tail()
    return [int(x) for x in m[-1]]


def test_fast_mail_goes_into_spares_that_do_not_stay(daemons):
    d = daemons("spares").start()
    ids = send_burst(d, "fast")
    wait_delivered_once(d, ids)
    # a queue gone quiet keeps no spare for long, and nothing else either
    H.wait_for(lambda: not d.spares(), SPARE_MAX_AGE * 2 + H.DEADLINE / 4,
               "the spares to be removed once too old")
    assert d.queue_files("incoming") == []
    d.stop()
    made, used, unused, left = spare_figures(d)
    print(f"spares: {made} made, {used} used, {unused} removed unused, {left} left")
    # most of the burst went into spares (the first messages find none:
    # they are made once the rate is known)
    assert used >= len(ids) // 2, (made, used)
    assert made == used + unused + left
    assert left == 0


def test_spares_of_a_killed_receiver_are_removed_and_never_delivered(daemons):
    d = daemons("spares-kill").start()
    ids = send_burst(d, "kill")
    found = H.wait_for(lambda: d.spares(), SPARE_MAX_AGE, "spares right after the burst")
    before = d.children()
    [receiver] = [p for p in before if d.role(p).endswith("receiver")]
    os.kill(receiver, signal.SIGKILL)
    H.wait_for(lambda: receiver not in d.children() and len(d.children()) >= len(before),
               H.DEADLINE, "the master to start another receiver")
    d.wait_ready()
    # the master removed them before the new receiver started
    left = set(found) & set(d.queue_files("incoming"))
    assert not left, f"spares of the killed receiver still in incoming/: {left}"
    wait_delivered_once(d, ids)
    # the new receiver takes mail as before
    m = H.make_message(msgid="<after-kill@spares.test>", to="alice@example.test")
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        assert s.sendmail(SENDER, ["alice@example.test"], m) == {}
    wait_delivered_once(d, ids + ["<after-kill@spares.test>"])
    d.stop()
