"""test_job_size.py - jobs that fit: a message to many recipients of one
entry with a long rules entry is handed to the worker in jobs that each
fit one IPC message (the worker reads the entry from the databases
itself, nothing of it travels per recipient), so every copy is delivered
at the first attempt instead of "Message too long" until expiry."""

import smtplib

import mpharness as H
from mpharness import SENDER

NRCPT = 50
NCOND = 40


def big_entry():
    lines = ["@big.test"]
    for n in range(NCOND):
        lines.append(f"    if header X-Foo-{n} ~ /^yes-{n}-[a-z]+$/  "
                     f"maildir ~/Maildir/.f{n}/")
    lines.append("    maildir ~/Maildir/")
    return "\n".join(lines) + "\n"


def test_fifty_recipients_of_a_forty_line_entry(daemons):
    d = daemons("big", rules=big_entry(), uids="@big.test big\n", homes=("big",))
    d.start()
    rcpts = [f"r{i}@big.test" for i in range(NRCPT)]
    m = H.make_message(to="r0@big.test")
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        assert s.sendmail(SENDER, rcpts, m) == {}
    for r in rcpts:
        d.wait_log(r"to=<%s> .*status=\w+" % r, what=f"a result for {r}")
    log = d.log()
    assert "status=deferred" not in log, d.log_tail()
    assert log.count("status=sent") == NRCPT, d.log_tail()
    H.wait_maildir(d.maildir("big"), H.mid(m), count=NRCPT)
    H.wait_for(d.queue_empty, H.DEADLINE, "the queue to drain")
    # none of the 40 conditions held: no copy in a folder
    for n in range(NCOND):
        assert not (d.maildir("big") / f".f{n}").exists()
