"""test_worker_batch.py - a worker holding several of its user's jobs
(worker_batch_size), through the real daemon: every message of a batch is
delivered with one result; no result is reported before its maildir copy
is in new/ (a worker killed mid-batch loses nothing and leaves no copy
reported that is not there); worker_batch_size 1 hands one job at a time;
a reload or a stop in the middle of a batch loses nothing; a full disk
during a batch gives temporary failures and the mail arrives once there
is room.

The worker is held on a pipe instruction that waits for a gate file
(a message whose subject starts with "blockA" or "blockB"), so that the
others queue up behind it and are handed to it as a batch."""

import os
import re
import signal
import smtplib

import mpharness as H
from mpharness import SENDER

ALICE = "alice@example.test"
GATED = ('    if subject ~ /^block%(g)s/ pipe "while [ ! -e $HOME/go.%(g)s ]; '
         'do sleep 0.05; done; cat > /dev/null"\n')
RULES = f"{ALICE}\n" + GATED % {"g": "A"} + GATED % {"g": "B"} + "    maildir ~/Maildir/\n"


def make(daemons, name, **settings):
    settings.setdefault("worker_batch_size", "8")
    return daemons(name, rules=RULES, settings=settings)


def send(d, msgs):
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        for m in msgs:
            assert s.sendmail(SENDER, [ALICE], m) == {}


def worker_lines(d):
    """[{field: value}] of the warm workers, from mailprocctl status."""
    r = d.ctl("status")
    assert r.returncode == 0, r.out
    return [dict(f.split("=", 1) for f in line.split()[1:])
            for line in r.out.splitlines() if line.startswith("worker ")]


def held(d):
    return max([int(w["held"]) for w in worker_lines(d)] or [0])


def wait_held(d, n):
    seen = []

    def ok():
        seen[:] = [held(d)]
        return seen[0] == n
    H.wait_for(ok, H.DEADLINE, lambda: f"a worker holding {n} jobs (holds {seen})")


def gate(d, g):
    (d.home("alice") / f"go.{g}").write_text("")


def copies(d, m):
    return len(H.find_marked([x for _, x in H.maildir_messages(d.maildir("alice"))], H.mid(m)))


def in_tmp(d):
    try:
        return os.listdir(d.maildir("alice") / "tmp")
    except FileNotFoundError:
        return []


def sent_lines(d):
    return re.findall(r"to=<alice@example\.test> .*status=sent", d.all_logs())


def wait_all_once(d, msgs):
    """Every message of msgs in new/ exactly once, the queue empty."""
    for m in msgs:
        H.wait_maildir(d.maildir("alice"), H.mid(m), timeout=H.DEADLINE * 2)
    H.wait_for(d.queue_empty, H.DEADLINE * 2, "the queue to drain")
    H.settle()
    for m in msgs:
        assert copies(d, m) == 1, f"{H.mid(m)}: {copies(d, m)} copies"


def test_batch_delivers_every_message_with_one_result_each(daemons):
    d = make(daemons, "batch")
    d.start()
    block = H.make_message(to=ALICE, subject="blockA")
    send(d, [block])
    wait_held(d, 1)
    rest = [H.make_message(to=ALICE) for _ in range(12)]
    send(d, rest)
    # the blocked job and 7 more: worker_batch_size, not the 13 queued
    wait_held(d, 8)
    H.settle()
    assert held(d) == 8
    assert not sent_lines(d)
    gate(d, "A")
    wait_all_once(d, [block] + rest)
    assert len(sent_lines(d)) == 13, "one result per message"
    assert not in_tmp(d)


def test_batch_size_1_hands_one_job_at_a_time(daemons):
    d = make(daemons, "one", worker_batch_size="1")
    d.start()
    block = H.make_message(to=ALICE, subject="blockA")
    send(d, [block])
    wait_held(d, 1)
    rest = [H.make_message(to=ALICE) for _ in range(4)]
    send(d, rest)
    H.wait_for(lambda: "alice@example.test" in d.ctl("queue").out, H.DEADLINE)
    H.settle()
    assert held(d) == 1
    gate(d, "A")
    wait_all_once(d, [block] + rest)
    assert len(sent_lines(d)) == 5


def test_worker_killed_mid_batch_loses_nothing(daemons):
    """The worker has written blockA's and m1's copies into tmp/ and waits
    on blockB's pipe: nothing is in new/ and nothing was reported.  Killed
    there, every message is delivered again, each exactly once."""
    d = make(daemons, "kill")
    d.start()
    block_a = H.make_message(to=ALICE, subject="blockA")
    send(d, [block_a])
    wait_held(d, 1)
    m1, m2, m3 = (H.make_message(to=ALICE) for _ in range(3))
    block_b = H.make_message(to=ALICE, subject="blockB")
    send(d, [m1, block_b, m2, m3])
    wait_held(d, 5)
    gate(d, "A")
    H.wait_for(lambda: len(in_tmp(d)) >= 2, H.DEADLINE,
               "blockA's and m1's copies written into tmp/")
    H.settle()
    assert H.maildir_messages(d.maildir("alice")) == [], "linked into new/ before the commit"
    assert not sent_lines(d), "a result reported before its copy was durable"
    [w] = worker_lines(d)
    os.kill(int(w["pid"]), signal.SIGKILL)
    d.wait_log(r"worker \d+ of \S+ (exited|failed) during a job")
    gate(d, "B")
    wait_all_once(d, [block_a, m1, block_b, m2, m3])


def test_qmgr_killed_mid_batch_delivers_each_once(daemons):
    """The worker holds blockA (on its pipe) and four more jobs when the
    qmgr is killed (kill -9): the next qmgr delivers all five again, so the
    old worker must not commit the copies nobody heard of (nor take the
    jobs still on its socket): each message ends up in new/ exactly
    once."""
    d = make(daemons, "qmgrkill")
    d.start()
    block = H.make_message(to=ALICE, subject="blockA")
    send(d, [block])
    wait_held(d, 1)
    rest = [H.make_message(to=ALICE) for _ in range(4)]
    send(d, rest)
    wait_held(d, 5)
    [w] = worker_lines(d)
    [qmgr] = [p for p in d.children() if d.role(p).endswith("qmgr")]
    os.kill(qmgr, signal.SIGKILL)
    H.wait_for(lambda: len(re.findall(r"qmgr\[\d+\]: started: ", d.log())) == 2,
               H.DEADLINE, "the master to start another qmgr")
    gate(d, "A")
    H.wait_for(lambda: not os.path.exists(f"/proc/{w['pid']}"), H.DEADLINE,
               "the old worker to leave")
    # blockA's copy only: the four jobs left on its socket were not taken
    assert re.search(r"the qmgr is gone: uncommitted maildir copies taken back: 1 ",
                     d.all_logs()), d.all_logs()
    wait_all_once(d, [block] + rest)
    assert not in_tmp(d)


def test_jobs_beyond_the_worker_socket_wait_for_room(daemons):
    """Jobs of 50 recipients each (alice+N@, thrown away) to a worker that
    holds blockA on its pipe, worker_batch_size 64: the socket to the
    worker has no room for 64 such jobs.  Those that do not fit wait in
    the qmgr (no job fails, the worker stays in use) and every recipient
    is delivered once, none deferred."""
    rules = (f"{ALICE}\n" + GATED % {"g": "A"} +
             "    if subject ~ /^bulk/ discard ; stop\n    maildir ~/Maildir/\n")
    d = daemons("sockfull", rules=rules, settings={"worker_batch_size": "64"})
    d.start()
    block = H.make_message(to=ALICE, subject="blockA")
    send(d, [block])
    wait_held(d, 1)
    rcpts = [f"alice+{i}@example.test" for i in range(50)]
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        for _ in range(63):
            assert s.sendmail(SENDER, rcpts, H.make_message(to=ALICE, subject="bulk")) == {}
    try:
        H.wait_for(lambda: held(d) >= 20, H.DEADLINE, "a worker holding bulk jobs")
        H.settle()
        assert "cannot hand job to worker" not in d.all_logs()
    finally:
        gate(d, "A")            # the daemon can stop
    H.wait_maildir(d.maildir("alice"), H.mid(block))
    H.wait_for(d.queue_empty, H.DEADLINE * 2, "the queue to drain")
    logs = d.all_logs()
    assert "status=deferred" not in logs
    assert len(re.findall(r"to=<alice\+\d+@example\.test> .*status=sent", logs)) == 63 * 50


def test_reload_mid_batch_retires_the_worker_after_its_jobs(daemons):
    d = make(daemons, "reload")
    d.start()
    block = H.make_message(to=ALICE, subject="blockA")
    send(d, [block])
    wait_held(d, 1)
    rest = [H.make_message(to=ALICE) for _ in range(4)]
    send(d, rest)
    wait_held(d, 5)
    [old] = worker_lines(d)
    os.kill(d.pid, signal.SIGHUP)
    d.wait_log(r"reloaded")
    more = [H.make_message(to=ALICE) for _ in range(3)]
    send(d, more)
    H.settle()
    assert held(d) == 5, "a worker of the old configuration took more jobs"
    gate(d, "A")
    wait_all_once(d, [block] + rest + more)
    H.wait_for(lambda: old["pid"] not in [w["pid"] for w in worker_lines(d)], H.DEADLINE,
               "the old worker to retire")


def test_stop_mid_batch_loses_nothing(daemons):
    d = make(daemons, "stop", stop_grace_time="1s")
    d.start()
    block = H.make_message(to=ALICE, subject="blockA")
    send(d, [block])
    wait_held(d, 1)
    rest = [H.make_message(to=ALICE) for _ in range(4)]
    send(d, rest)
    wait_held(d, 5)
    d.stop()
    gate(d, "A")
    d.start()
    # the jobs held behind the pipe were never started: each exactly
    # once; the blocked one's maildir copy may come twice (its pipe was
    # stopped after stop_grace_time, and a result after the stop is not
    # recorded: at least once, as with a single job)
    wait_all_once(d, rest)
    assert copies(d, block) >= 1


def fill(path):
    st = os.statvfs(path)
    filler = path / "filler"
    with open(filler, "wb", buffering=0) as f:
        want = st.f_bavail * st.f_frsize
        try:
            while want > 0:
                want -= f.write(b"\0" * min(65536, want))
        except OSError:
            pass
    return filler


def test_full_disk_during_a_batch_defers_and_loses_nothing(daemons, tmpfs, run_as):
    d = make(daemons, "full")
    home = tmpfs(d.home("alice"), "512k", owner=run_as)
    d.start()
    block = H.make_message(to=ALICE, subject="blockA")
    send(d, [block])
    wait_held(d, 1)
    rest = [H.make_message(to=ALICE) for _ in range(5)]
    send(d, rest)
    wait_held(d, 6)
    filler = fill(home)
    gate(d, "A")
    d.wait_log(r"to=<alice@example\.test> .*dsn=4\.\d\.\d status=deferred")
    assert H.maildir_messages(d.maildir("alice")) == []
    assert not sent_lines(d)
    H.wait_for(lambda: not in_tmp(d), H.DEADLINE,
               "no partial file left in tmp/")
    filler.unlink()
    wait_all_once(d, [block] + rest)
