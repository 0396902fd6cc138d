"""test_backlog.py - a queue larger than the active set (max_active_messages
50): what waits on disk is in the qmgr's index, not listed per refill.
New mail left on disk is delivered in arrival order as room frees and the
active set never exceeds its limit; due deferred mail of two accounts is
served in turns, also after a restart (a message put back to disk keeps
its account's lane); a third account's message is served after a restart
with a backlog; files an administrator removes from or adds to deferred/
are reconciled by the next scan (`mailprocctl status`: "on disk")."""
import os
import re
import shutil
import smtplib
import threading

import mpharness as H

LIMIT = 50
LATER = "later@example.test"    # no home: maildir delivery fails, 4.3.0
BEE = "bee@example.test"        # no home either
CARL = "carl@example.test"      # delivered


def rules(root):
    return f"""# rules for test_backlog.py
slow@example.test
    pipe "while [ ! -e {root}/go ]; do sleep 0.1; done; sed -n 's/^Subject: //p' >> {root}/order"
"""


UIDS = (f"{LATER} later\n{BEE} bee\n{CARL} carl\nslow@example.test carl\n")


def make(daemons, tmp_path, name, **settings):
    conf = {"retry_schedule": "1h", "max_queue_lifetime": "1d",
            "max_active_messages": str(LIMIT)}
    conf.update(settings)
    return daemons(name, rules=rules(tmp_path / name), uids=UIDS, homes=("carl",),
                   settings=conf)


def send_many(d, rcpt, msgs, sessions=4):
    """msgs over `sessions` SMTP sessions; in order within each session."""
    errors = []

    def client(part):
        try:
            with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                              timeout=H.REPLY_TIMEOUT) as s:
                for m in part:
                    assert s.sendmail(H.SENDER, [rcpt], m) == {}
        except Exception as e:      # noqa: BLE001 - raised below
            errors.append(e)
    parts = [msgs[i::sessions] for i in range(sessions)]
    threads = [threading.Thread(target=client, args=(p,)) for p in parts if p]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def status(d):
    out = d.ctl("status").out
    m = re.search(r"active messages=(\d+) limit=(\d+) peak=(\d+) backlog=(\w+) "
                  r"evicted=(\d+)", out)
    assert m, out
    st = dict(zip(("loaded", "limit", "peak", "backlog", "evicted"), m.groups()))
    disk = re.search(r"on disk new=(\d+) deferred=(\d+) lanes=(\d+) scan=(\w+)", out)
    assert disk, out
    st.update(zip(("disk_new", "disk_deferred", "lanes", "scan"), disk.groups()))
    return {k: int(v) if v.isdigit() else v for k, v in st.items()}


def deferred_lines(d):
    return re.findall(r"to=<(\w+)@example\.test> .*status=deferred", d.log())


def test_new_mail_on_disk_in_order(daemons, tmp_path):
    """300 messages to slow@ while its delivery is held: 50 are loaded,
    the rest wait on disk (in the index); once released, all are delivered
    in the order they came, and the active set never held more than 50."""
    d = make(daemons, tmp_path, "order")
    d.start()
    msgs = [H.make_message(subject=f"n{i:04d}", to="slow@example.test") for i in range(300)]
    send_many(d, "slow@example.test", msgs, sessions=1)
    st = status(d)
    assert st["loaded"] <= LIMIT and st["peak"] <= LIMIT, st
    assert st["disk_new"] > 0, st
    (tmp_path / "order" / "go").touch()
    order = tmp_path / "order" / "order"
    H.wait_for(lambda: order.exists() and len(order.read_text().split()) >= 300,
               H.DEADLINE * 3, "300 deliveries")
    assert order.read_text().split() == [f"n{i:04d}" for i in range(300)]
    st = status(d)
    assert st["peak"] <= LIMIT, st
    assert st["disk_new"] == 0 and st["disk_deferred"] == 0, st
    assert d.queue_empty()


def fill_two_accounts(d, n_later=150, n_bee=5):
    """n_later/2 to later@, n_bee to bee@, n_later/2 to later@: all defer;
    bee@'s go back to disk behind later@'s (more than LIMIT came after)."""
    send_many(d, LATER, [H.make_message(to=LATER) for _ in range(n_later // 2)])
    send_many(d, BEE, [H.make_message(to=BEE) for _ in range(n_bee)], sessions=1)
    send_many(d, LATER, [H.make_message(to=LATER) for _ in range(n_later - n_later // 2)])
    total = n_later + n_bee
    H.wait_for(lambda: len(d.queue_files("deferred")) == total and
               len(deferred_lines(d)) >= total, H.DEADLINE * 2, f"{total} deferred")


def served_in_turns(d, n_bee=5):
    """After a flush every deferred message is due: bee@'s few come early
    among later@'s many.  Returns how many of later@'s retries came before
    bee@'s last."""
    d.ctl("queue", "flush")
    H.wait_for(lambda: deferred_lines(d).count("bee") >= n_bee, H.DEADLINE * 2,
               "bee@'s retries")
    seq = deferred_lines(d)
    last_bee = max(i for i, who in enumerate(seq) if who == "bee")
    return seq[:last_bee].count("later")


def test_due_deferred_served_in_turns(daemons, tmp_path):
    """300 messages of later@ and 5 of bee@ (queued in the middle) wait on
    disk; a flush makes all due: bee@'s 5 are retried before later@'s
    100th retry (oldest first by due time alone: after some 150), with a
    restart in between (their lanes come back from the files), and the
    active set never exceeds 50."""
    d = make(daemons, tmp_path, "turns")
    d.start()
    fill_two_accounts(d, n_later=300)
    st = status(d)
    assert st["evicted"] > 0 and st["disk_deferred"] >= 100, st
    d.stop()
    d.start()
    H.wait_for(lambda: status(d)["scan"] == "idle", H.DEADLINE, "the start-up scan")
    st = status(d)
    assert st["lanes"] >= 2, st         # later@'s and bee@'s
    base = len(deferred_lines(d))
    assert base == 0, "retried at start: the retry is an hour away"
    before = served_in_turns(d)
    assert before < 100, f"bee@'s retries came after {before} of later@'s"
    assert status(d)["peak"] <= LIMIT


def test_third_account_after_restart(daemons, tmp_path):
    """With 150 deferred messages of later@ due (a flush, then a restart
    while they are retried), a message to carl@ sent right after the
    restart is delivered while later@'s backlog is still queued."""
    d = make(daemons, tmp_path, "third")
    d.start()
    fill_two_accounts(d, n_bee=0)
    d.ctl("queue", "flush")
    d.stop()
    d.start()
    marker = H.new_msgid()
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        assert s.sendmail(H.SENDER, [CARL], H.make_message(msgid=marker, to=CARL)) == {}
    H.wait_maildir(d.maildir("carl"), marker, timeout=H.DEADLINE)
    # later@'s are all still queued (none can be delivered)
    assert len(d.queue_files("deferred")) + len(d.queue_files("active")) == 150
    assert status(d)["peak"] <= LIMIT


def test_files_removed_and_added_by_hand(daemons, tmp_path):
    """100 of 150 deferred files waiting on disk are removed by hand (one
    of them put aside): the next scan (every second here) forgets them;
    the one put back is found by the scan after; a flush retries exactly
    the 51 files in deferred/, nothing else, with no error."""
    d = make(daemons, tmp_path, "admin", queue_scan_interval="1s")
    d.start()
    fill_two_accounts(d, n_bee=0)
    st = status(d)
    assert st["disk_deferred"] >= 100 - LIMIT, st
    dq = d.queue_dir / "deferred"
    files = sorted(os.listdir(dq))
    removed, aside = files[:99], files[99]
    for q in removed:
        os.unlink(dq / q)
    os.rename(dq / aside, tmp_path / aside)

    def in_queue():
        st = status(d)
        return st["disk_deferred"] + st["loaded"]
    H.wait_for(lambda: in_queue() == 50, H.DEADLINE, "the removed files forgotten")
    os.rename(tmp_path / aside, dq / aside)
    H.wait_for(lambda: in_queue() == 51, H.DEADLINE, "the file put back found")
    base = len(deferred_lines(d))
    d.ctl("queue", "flush")
    H.wait_for(lambda: len(deferred_lines(d)) >= base + 51, H.DEADLINE, "51 retries")
    retried = re.findall(r"qid=(\w+) .*to=<later@example\.test> .*status=deferred",
                         d.log())[base:]
    assert sorted(set(retried)) == sorted(files[99:])
    assert "cannot open" not in d.log() and "cannot read" not in d.log()
    assert status(d)["peak"] <= LIMIT
