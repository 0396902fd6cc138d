"""test_removal_record.py - a message delivered with nothing left to do is
recorded by its removal alone: the qmgr writes no state record for it (no
fdatasync of its file), renames it out of active/ into finished/, an fsync
of active/ after that makes the removal durable (shared by the removals of
one turn, on a thread of its own), and only then is the file unlinked from
finished/; what a crash leaves in finished/ is removed at the next start
and never delivered.  A message with a bounce to queue is still recorded
first.  kill -9 of the qmgr after deliveries, or during them,
loses nothing and delivers a finished message again only when it was in
flight; a finished message's file is gone after a restart; one whose file
cannot be removed is delivered once, also after a restart."""

import os
import re
import shutil
import signal
import smtplib
import subprocess
import threading
import time

import pytest

import mpharness as H

NOPE = "nope@example.test"
SLOW = "slow@example.test"


def rules(root):
    """alice@ delivers to her maildir, nope@ refuses (a bounce), slow@
    waits until root/go exists (root/started says it runs)."""
    return f"""# rules for test_removal_record.py
alice@example.test
    maildir ~/Maildir/

{NOPE}
    reject "no"

{SLOW}
    pipe "touch {root}/started; while [ ! -e {root}/go ]; do sleep 0.1; done; cat > /dev/null; echo x >> {root}/count"
"""


UIDS = f"alice@example.test alice\n{NOPE} alice\n{SLOW} alice\n"


def make(daemons, tmp_path, name, **settings):
    return daemons(name, rules=rules(tmp_path / name), uids=UIDS, homes=("alice",),
                   settings=settings)


def send(d, rcpts, msg, sender=H.SENDER):
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        assert s.sendmail(sender, rcpts, msg) == {}


def qmgr_pid(d):
    d.wait_log(r"qmgr\[\d+\]: started: ")
    [pid] = [p for p in d.children() if d.role(p).endswith("qmgr")]
    return pid


def queued(d):
    return [f for s in ("incoming", "active", "deferred") for f in d.queue_files(s)]


def alice_copies(d, msgs):
    got = [x for _, x in H.maildir_messages(d.maildir("alice"))]
    return {H.mid(m): len(H.find_marked(got, H.mid(m))) for m in msgs}


# The syscalls strace -f -y prints: "PID fsync(5</path>) = 0",
# "PID fdatasync(7</path/QID>) = 0", "PID unlinkat(5</path>, "QID", 0) = 0",
# "PID renameat(5</path>, "QID", 6</path2>, "QID") = 0" (renameat2 too);
# a call another thread interrupts is split in "PID call(... <unfinished ...>"
# and "PID <... call resumed>...) = 0".
SYSCALL = re.compile(r'^(fsync|fdatasync|unlinkat|renameat2?)\(\d+<([^>]*)>(?:, "([^"]*)")?'
                     r'(?:, \d+<([^>]*)>)?.*= 0$')
UNFINISHED = " <unfinished ...>"
RESUMED = re.compile(r"^<\.\.\. \w+ resumed>(.*)$")


def syscalls(path):
    """[(name, path of the fd, file name or None, target directory or
    None)] of the calls that succeeded, in order (renameat2 is named
    renameat)."""
    out = []
    pending = {}
    with open(path) as f:
        for line in f:
            pid, _, call = line.rstrip("\n").partition(" ")
            call = call.strip()
            if call.endswith(UNFINISHED):
                pending[pid] = call[:-len(UNFINISHED)]
                continue
            m = RESUMED.match(call)
            if m:
                call = pending.pop(pid, "") + m.group(1)
            m = SYSCALL.match(call)
            if m:
                name, fd_path, file, target = m.groups()
                out.append(("renameat" if name == "renameat2" else name, fd_path, file, target))
    return out


def test_delivered_message_is_recorded_by_its_removal(daemons, tmp_path):
    """strace on the qmgr (every thread) while 20 messages are delivered to
    alice@ and one goes to nope@ (refused: a bounce): no delivered message
    gets a state record (no fdatasync of its file), each is renamed from
    active/ into finished/, an fsync of active/ comes after the rename and
    the unlink from finished/ after that fsync, never more fsyncs of active/
    than removals; nope@'s message is recorded (fdatasync) before it is
    removed; finished/ is empty at the end."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    d = make(daemons, tmp_path, "rec")
    d.start()
    pid = qmgr_pid(d)
    trace = tmp_path / "qmgr.strace"
    tracer = subprocess.Popen([strace, "-f", "-y", "-o", str(trace), "-e",
                               "trace=fsync,fdatasync,unlinkat,renameat,renameat2",
                               "-p", str(pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    active = str(d.queue_dir / "active")
    finished = str(d.queue_dir / "finished")
    try:
        # "strace: Process N attached" (one line per thread)
        assert "attached" in tracer.stderr.readline()
        msgs = [H.make_message(to="alice@example.test") for _ in range(20)]
        for m in msgs:
            send(d, ["alice@example.test"], m)
        bounced = H.make_message(to=NOPE)
        send(d, [NOPE], bounced, sender="")     # no bounce of a bounce: none queued
        H.wait_for(lambda: all(n == 1 for n in alice_copies(d, msgs).values()),
                   H.DEADLINE, "20 deliveries")
        # nope@'s message may still be in incoming/ when active/ is first
        # empty, and the log reaches its file through the master: wait for
        # its line and for the whole queue
        d.wait_log(rf"qid=\w+ from=<> to=<{NOPE}> .*status=bounced")
        H.wait_for(d.queue_empty, H.DEADLINE, "an empty queue")
        sent = set(re.findall(r"qid=(\w+) from=<[^>]*> to=<alice@example.test> .*status=sent",
                              d.log()))
        [nope] = re.findall(rf"qid=(\w+) from=<> to=<{NOPE}> .*status=bounced", d.log())

        def group_over():
            calls = syscalls(trace)
            removed = {c[2] for c in calls if c[0] == "renameat" and c[1] == active}
            unlinked = {c[2] for c in calls if c[0] == "unlinkat" and c[1] == finished}
            return removed and removed <= unlinked
        H.wait_for(group_over, H.DEADLINE, "every finished file unlinked from finished/")
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(H.DEADLINE)
    calls = syscalls(trace)
    renamed = [c[2] for c in calls if c[0] == "renameat" and c[1] == active]
    recorded = {os.path.basename(c[1]) for c in calls if c[0] == "fdatasync"}
    assert sent, "no delivery logged"
    assert sent <= set(renamed), calls
    assert all(c[3] == finished for c in calls if c[0] == "renameat" and c[1] == active), calls
    assert not sent & recorded, f"state records written for delivered messages: {sent & recorded}"
    assert nope in recorded, "the refused recipient's result was not recorded"
    assert calls.index(("fdatasync", f"{active}/{nope}", None, None)) < \
        calls.index(("renameat", active, nope, finished))
    # every removal is followed by an fsync of its directory, and the
    # file's unlink from finished/ comes after that fsync
    for i, c in enumerate(calls):
        if c[0] == "renameat" and c[1] == active:
            later = calls[i + 1:]
            assert ("fsync", active, None, None) in later, f"removal of {c[2]} not synced"
            synced = later.index(("fsync", active, None, None))
            gone = later.index(("unlinkat", finished, c[2], None))
            assert synced < gone, f"{c[2]} unlinked before its removal was durable"
    fsyncs = sum(1 for c in calls if c == ("fsync", active, None, None))
    assert fsyncs <= len(renamed), (fsyncs, len(renamed))
    assert not os.listdir(finished)


def test_left_in_finished_is_removed_at_start(daemons, tmp_path):
    """slow@'s message held in active/ (its pipe waits), then a crash
    (kill -9 of everything) and its committed file moved into finished/, as
    a crash between its removal and the unlink would leave it: the next
    qmgr removes it at start, says so, and never delivers it; mail sent
    afterwards is delivered."""
    d = make(daemons, tmp_path, "leftover")
    d.start()
    send(d, [SLOW], H.make_message(to=SLOW))
    H.wait_for(lambda: (d.root / "started").exists(), H.DEADLINE, "slow@'s pipe to start")
    [qid] = d.queue_files("active")
    d.crash()
    os.rename(d.queue_dir / "active" / qid, d.queue_dir / "finished" / qid)
    (d.root / "go").touch()                 # a delivery would now finish
    d.start()
    d.wait_log(r"removed 1 file\(s\) of finished messages left in finished/")
    assert not os.listdir(d.queue_dir / "finished")
    after = H.make_message(to="alice@example.test")
    send(d, ["alice@example.test"], after)
    H.wait_maildir(d.maildir("alice"), H.mid(after))
    time.sleep(1)
    assert not (d.root / "count").exists(), "slow@'s message was delivered from finished/"
    assert not queued(d)


def test_kill9_qmgr_after_deliveries(daemons, tmp_path):
    """40 messages delivered to alice@, then kill -9 of the qmgr: the
    master starts another, which finds the queue empty and delivers none
    of them again; nor does the daemon after a restart; new mail still
    goes."""
    d = make(daemons, tmp_path, "k9after")
    d.start()
    pid = qmgr_pid(d)
    msgs = [H.make_message(to="alice@example.test") for _ in range(40)]
    for m in msgs:
        send(d, ["alice@example.test"], m)
    H.wait_for(lambda: all(n == 1 for n in alice_copies(d, msgs).values()),
               H.DEADLINE, "40 deliveries")
    H.wait_for(lambda: not queued(d), H.DEADLINE, "an empty queue")
    os.kill(pid, signal.SIGKILL)
    H.wait_for(lambda: len(re.findall(r"qmgr\[\d+\]: started: ", d.log())) == 2,
               H.DEADLINE, "the master to start another qmgr")
    d.assert_running("after the qmgr was killed")
    assert not queued(d)
    d.stop()
    d.start()
    last = H.make_message(to="alice@example.test")
    send(d, ["alice@example.test"], last)
    H.wait_maildir(d.maildir("alice"), H.mid(last))
    time.sleep(1)
    copies = alice_copies(d, msgs)
    assert all(n == 1 for n in copies.values()), {k: n for k, n in copies.items() if n != 1}
    assert not queued(d)


def test_kill9_qmgr_during_deliveries(daemons, tmp_path):
    """A stream of 150 messages to alice@ (one worker), the qmgr killed
    (kill -9) twice while it flows: every message is delivered, the queue
    drains, and the only copies twice are of deliveries in flight at a kill
    (at most a few: the results of the batch its worker reported, up to
    worker_batch_size, and those of the copies in new/ before that)."""
    batch = 4
    d = make(daemons, tmp_path, "k9during", worker_batch_size=str(batch))
    d.start()
    msgs = [H.make_message(to="alice@example.test") for _ in range(150)]
    errors = []

    def stream():
        try:
            with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                              timeout=H.REPLY_TIMEOUT) as s:
                for m in msgs:
                    assert s.sendmail(H.SENDER, ["alice@example.test"], m) == {}
        except Exception as e:          # reported below
            errors.append(e)
    t = threading.Thread(target=stream)
    t.start()
    try:
        for k, at in enumerate((40, 90)):
            pid = qmgr_pid(d)
            H.wait_for(lambda: sum(alice_copies(d, msgs).values()) >= at, H.DEADLINE,
                       f"{at} deliveries", interval=0.01)
            os.kill(pid, signal.SIGKILL)
            H.wait_for(lambda: len(re.findall(r"qmgr\[\d+\]: started: ", d.log())) == k + 2,
                       H.DEADLINE, "the master to start another qmgr")
    finally:
        t.join(H.DEADLINE)
    assert not errors, errors
    H.wait_for(lambda: all(n >= 1 for n in alice_copies(d, msgs).values()),
               H.DEADLINE * 2, "every message delivered")
    H.wait_for(lambda: not queued(d), H.DEADLINE, "an empty queue")
    extra = sum(n - 1 for n in alice_copies(d, msgs).values())
    print(f"copies delivered twice: {extra}")
    assert extra <= 2 * (batch + 4), alice_copies(d, msgs)


def test_unremovable_delivered_message_delivered_once(daemons, tmp_path, run_as):
    """slow@ only (nothing to bounce), and active/ turns read-only during
    its delivery: the removal that would be its record fails, so its result
    is recorded instead and the file is kept as finished; it is not
    delivered again, neither at the rescans nor after a restart (which
    removes it)."""
    if not H.IS_ROOT or run_as is None:
        pytest.skip("needs root to run the daemon as an account that "
                    "directory modes apply to")
    d = make(daemons, tmp_path, "ro", queue_scan_interval="1s")
    d.start()
    send(d, [SLOW], H.make_message(to=SLOW))
    H.wait_for(lambda: (d.root / "started").exists(), H.DEADLINE, "slow@'s pipe to start")
    [qid] = d.queue_files("active")
    count = d.root / "count"
    for sub in ("active", "deferred"):
        os.chmod(d.queue_dir / sub, 0o500)
    try:
        (d.root / "go").touch()
        d.wait_log(rf"qid={qid}: cannot remove the finished queue file", H.DEADLINE)
        time.sleep(3)                   # three rescans
        assert count.read_text().count("x") == 1
        assert qid in d.queue_files("active")
        d.stop()
    finally:
        for sub in ("active", "deferred"):
            os.chmod(d.queue_dir / sub, 0o700)
    d.start()
    H.wait_for(lambda: qid not in d.queue_files("active"), H.DEADLINE,
               "the finished file to go after the restart")
    time.sleep(2)
    assert count.read_text().count("x") == 1, "delivered again after the restart"
    assert not re.search(rf"qid={qid} from=.* status=", d.log())   # this start's log
