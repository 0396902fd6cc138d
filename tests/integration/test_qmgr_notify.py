"""The receiver's announcements of new messages to the qmgr.

A burst of messages while the qmgr is busy fills the socket between the
receiver and the qmgr.  The announcements that do not fit wait in the
receiver, in order, and go as room frees: every message is delivered as
soon as the qmgr reads again, not at its next scan of the queue
(queue_scan_interval, set to an hour here so that only the announcements
can bring the mail)."""
import os
import signal
import smtplib

import mpharness as H
from mpharness import SENDER

BURST = 600     # well past what the socket's send buffer holds (~250)


def test_burst_while_the_qmgr_is_busy_is_announced_in_full(daemons):
    d = daemons("burst", settings={"queue_scan_interval": "1h"}).start()
    d.wait_log(r"qmgr\[\d+\]: started: ")
    [qmgr] = [p for p in d.children() if d.role(p).endswith("qmgr")]
    os.kill(qmgr, signal.SIGSTOP)
    try:
        with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                          timeout=H.REPLY_TIMEOUT) as s:
            for i in range(BURST):
                m = H.make_message(msgid=f"<burst{i}@test>", to="alice@example.test",
                                   body="x")
                assert s.sendmail(SENDER, ["alice@example.test"], m) == {}
        # committed, waiting for the qmgr (spares are not messages)
        assert len(set(d.queue_files("incoming")) - set(d.spares())) == BURST
    finally:
        os.kill(qmgr, signal.SIGCONT)
    H.wait_for(lambda: len(H.maildir_messages(d.maildir("alice"))) >= BURST,
               H.DEADLINE * 2, f"all {BURST} messages in alice's maildir "
               "(the qmgr scans only every hour: announcements must bring them)")
    H.wait_for(d.queue_empty, H.DEADLINE, "the queue to drain")
    assert len(H.maildir_messages(d.maildir("alice"))) == BURST
