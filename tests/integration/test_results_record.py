"""test_results_record.py - results before removal: every delivery result
is in the queue file before anything acts on it (removing the file,
queueing the bounce, forgetting the message), so that a finished message
is never delivered again: not when its file cannot be removed (read-only
queue directory; the qmgr rescans every queue_scan_interval), not when its bounce cannot
be queued (full disk) and the daemon restarts, not when its results
cannot be written for a while (kept in memory, recorded at the latest
when the daemon stops).  Also the active set
(max_active_messages): the qmgr holds at most that many messages, the
rest waits on disk and all are delivered."""

import errno
import os
import re
import signal
import smtplib
import time

import pytest

import mpharness as H

SLOW = "slow@example.test"
NOPE = "nope@example.test"


def rules(root):
    """slow@ waits until root/go exists (root/started says it runs), then
    counts its delivery in root/count; nope@ always refuses; alice@ and
    later@ (pipe exit 75) for the active set."""
    return f"""# rules for test_results_record.py
{SLOW}
    pipe "touch {root}/started; while [ ! -e {root}/go ]; do sleep 0.1; done; cat > /dev/null; echo x >> {root}/count"

{NOPE}
    reject "no"

later@example.test
    pipe "cat > /dev/null; echo not now >&2; exit 75"

fwd@example.test
    pipe "touch {root}/started; while [ ! -e {root}/go ]; do sleep 0.1; done; cat > /dev/null; echo x >> {root}/count"
    forward someone@remote.test

alice@example.test
    maildir ~/Maildir/

busy@example.test
    pipe "sleep 0.1; cat > /dev/null; echo x >> {root}/busy"
"""


UIDS = (f"{SLOW} slow\n{NOPE} slow\nlater@example.test slow\n"
        "alice@example.test alice\nfwd@example.test slow\nbusy@example.test alice\n")
HOMES = ("slow", "alice")


@pytest.fixture(scope="module")
def sink():
    s = H.SmtpSink()
    yield s
    s.stop()


def make(daemons, tmp_path, name, **settings):
    root = tmp_path / name
    conf = {"retry_schedule": "1h", "max_queue_lifetime": "1d"}
    conf.update(settings)
    return daemons(name, rules=rules(root), uids=UIDS, homes=HOMES,
                   settings=conf)


def send(d, sender, rcpts, msg):
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        assert s.sendmail(sender, rcpts, msg) == {}


def copies(d):
    try:
        return (d.root / "count").read_text().count("x")
    except FileNotFoundError:
        return 0


def start_slow_delivery(d, rcpts, sender=H.SENDER):
    """Send a message to rcpts (slow@ among them) and wait until slow@'s
    pipe runs, its file in active/."""
    msg = H.make_message(to=SLOW)
    send(d, sender, rcpts, msg)
    H.wait_for(lambda: (d.root / "started").exists(), H.DEADLINE,
               "slow@'s pipe to start")
    [qid] = d.queue_files("active")
    return qid


def test_unremovable_file_is_delivered_once(daemons, tmp_path, run_as, sink):
    """The queue's active/ and deferred/ turn read-only after the message
    was accepted: the results can still be appended to its file, which
    cannot be removed.  slow@ is delivered once, not again at the rescans
    (queue_scan_interval 1s: five of them), nope@'s bounce goes once, and the log says once that the
    file cannot be removed; after a restart (which makes the directories
    writable again) it is removed without a delivery or a bounce."""
    if not H.IS_ROOT or run_as is None:
        pytest.skip("needs root to run the daemon as an account that "
                    "directory modes apply to")
    d = make(daemons, tmp_path, "ro", relay_host=sink.address,
             queue_scan_interval="1s")
    d.start()
    sender = "ro@remote.test"
    qid = start_slow_delivery(d, [SLOW, NOPE], sender)
    for sub in ("active", "deferred"):
        os.chmod(d.queue_dir / sub, 0o500)
    try:
        (d.root / "go").touch()
        H.wait_for(lambda: copies(d) == 1, H.DEADLINE, "the delivery")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5:       # past five rescans
            assert copies(d) == 1, "delivered again"
            time.sleep(0.5)
        assert copies(d) == 1
        d.wait_log(rf"qid={qid}: cannot remove the finished queue file .*"
                   r"Permission denied", H.DEADLINE)
        assert len(re.findall(rf"qid={qid}: cannot remove", d.log())) == 1
        assert len(re.findall(rf"qid={qid} from=.* status=sent", d.log())) == 1
        assert qid in d.queue_files("active")
        assert len(sink.received(lambda x: x["to"] == [sender])) == 1
        d.stop()
    finally:
        for sub in ("active", "deferred"):
            os.chmod(d.queue_dir / sub, 0o700)
    d.start()
    H.wait_for(lambda: qid not in d.queue_files("active"), H.DEADLINE,
               "the finished file to go after the restart")
    time.sleep(2)
    assert copies(d) == 1
    assert not re.search(rf"qid={qid} from=.* status=", d.log())
    assert not re.search(rf"qid={qid}: bounce queued", d.log())
    assert len(sink.received(lambda x: x["to"] == [sender])) == 1


def test_queue_scan_interval_applies_on_reload(daemons, tmp_path, run_as, sink):
    """queue_scan_interval 1h: a finished file that could not be removed
    stays after its directories are writable again (no rescan); a reload
    to 1s brings the rescan within seconds, which removes it."""
    if not H.IS_ROOT or run_as is None:
        pytest.skip("needs root to run the daemon as an account that "
                    "directory modes apply to")
    d = make(daemons, tmp_path, "scan", relay_host=sink.address,
             queue_scan_interval="1h")
    d.start()
    qid = start_slow_delivery(d, [SLOW])
    for sub in ("active", "deferred"):
        os.chmod(d.queue_dir / sub, 0o500)
    try:
        (d.root / "go").touch()
        d.wait_log(rf"qid={qid}: cannot remove the finished queue file", H.DEADLINE)
    finally:
        for sub in ("active", "deferred"):
            os.chmod(d.queue_dir / sub, 0o700)
    time.sleep(2)
    assert qid in d.queue_files("active"), "removed with no rescan"
    d.settings["queue_scan_interval"] = "1s"
    d.conf.write_text(d.config_text())
    os.kill(d.pid, signal.SIGHUP)
    d.wait_log(rf"qid={qid}: finished queue file removed at last", H.DEADLINE)
    assert qid not in d.queue_files("active")
    assert copies(d) == 1


def fill(path):
    """Fill the file system of path with path/filler."""
    filler = path / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    return filler


def test_bounce_not_queued_then_restart(daemons, tmp_path, tmpfs, run_as, sink):
    """slow@ is delivered and nope@ refused while the queue's disk is full:
    the bounce cannot be queued.  After a restart with room again, slow@
    is not delivered a second time, and the bounce goes out once."""
    qfs = tmp_path / "qfs"
    d = make(daemons, tmp_path, "full", queue_dir=qfs / "queue",
             relay_host=sink.address)
    tmpfs(qfs, "2m", owner=run_as)
    d.start()
    sender = "full@remote.test"
    qid = start_slow_delivery(d, [SLOW, NOPE], sender)
    filler = fill(qfs)
    (d.root / "go").touch()
    H.wait_for(lambda: copies(d) == 1, H.DEADLINE, "the delivery")
    d.wait_log(rf"qid={qid}: cannot (queue|create|write) the bounce", H.DEADLINE)
    assert not sink.received(lambda x: x["to"] == [sender])
    d.stop()
    filler.unlink()
    d.start()
    [bounce] = sink.wait(lambda x: x["to"] == [sender], timeout=H.DEADLINE)
    _, blocks = H.parse_dsn(bounce["data"])
    assert [b["Final-Recipient"] for b in blocks] == [f"rfc822; {NOPE}"]
    H.wait_for(d.queue_empty, H.DEADLINE, "an empty queue")
    time.sleep(2)
    assert copies(d) == 1, "slow@ delivered again after the restart"
    assert len(sink.received(lambda x: x["to"] == [sender])) == 1


def status_active(d):
    out = d.ctl("status").out
    m = re.search(r"active messages=(\d+) limit=(\d+) peak=(\d+) "
                  r"backlog=(\w+) evicted=(\d+)", out)
    assert m, out
    return {k: int(v) if v.isdigit() else v for k, v in
            zip(("loaded", "limit", "peak", "backlog", "evicted"), m.groups())}


def test_active_limit(daemons, tmp_path):
    """max_active_messages 20: 30 messages wait for a retry an hour away
    (more than the limit), then 200 new ones come: all 200 are delivered,
    the qmgr never holds more than 20 (waiting ones go back to disk to
    make room), and the waiting ones are still queued and retried by a
    flush."""
    d = make(daemons, tmp_path, "limit", max_active_messages="20")
    d.start()
    for i in range(30):
        send(d, "later@remote.test", ["later@example.test"],
             H.make_message(to="later@example.test"))
    H.wait_for(lambda: len(d.queue_files("deferred")) == 30, H.DEADLINE,
               "30 deferred messages")
    msgs = [H.make_message(to="alice@example.test") for _ in range(200)]
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        for m in msgs:
            assert s.sendmail(H.SENDER, ["alice@example.test"], m) == {}
    H.wait_for(lambda: len(H.maildir_messages(d.maildir("alice"))) >= 200,
               H.DEADLINE * 3, "200 deliveries")
    got = [x for _, x in H.maildir_messages(d.maildir("alice"))]
    for m in msgs:
        assert len(H.find_marked(got, H.mid(m))) == 1
    st = status_active(d)
    assert st["limit"] == 20
    assert st["peak"] <= 20, st
    assert st["evicted"] > 0, st
    assert len(d.queue_files("deferred")) == 30
    # a flush retries the ones on disk too
    before = len(re.findall(r"to=<later@example.test> .*status=deferred", d.log()))
    d.ctl("queue", "flush")
    H.wait_for(lambda: len(re.findall(r"to=<later@example.test> .*status=deferred",
                                      d.log())) >= before + 30,
               H.DEADLINE, "30 retries after the flush")
    assert status_active(d)["peak"] <= 20


def test_results_unrecorded_are_kept_and_recorded_at_stop(daemons, tmp_path, run_as):
    """The queue file cannot be written when slow@'s delivery ends
    (later@ defers): the results stay in memory and the message is left
    alone (not deferred, not delivered again); once the file is writable
    again, stopping the daemon records them, and after the restart slow@
    is not delivered a second time."""
    if not H.IS_ROOT or run_as is None:
        pytest.skip("needs root to run the daemon as an account that "
                    "file modes apply to")
    d = make(daemons, tmp_path, "unrec")
    d.start()
    qid = start_slow_delivery(d, [SLOW, "later@example.test"])
    path = d.queue_dir / "active" / qid
    os.chmod(path, 0o500)
    try:
        (d.root / "go").touch()
        H.wait_for(lambda: copies(d) == 1, H.DEADLINE, "the delivery")
        time.sleep(2)
        assert copies(d) == 1
        assert qid in d.queue_files("active"), "deferred before its results were recorded"
        d.wait_log(rf"qid={qid}: cannot record 2 delivery results: Permission denied",
                   H.DEADLINE)
    finally:
        for sub in ("active", "deferred"):
            if (d.queue_dir / sub / qid).exists():
                os.chmod(d.queue_dir / sub / qid, 0o700)
    d.stop()
    assert "stopping with delivery results not recorded" not in d.log()
    d.start()
    d.wait_log(rf"qid={qid} from=.* to=<later@example.test> .*status=deferred", H.DEADLINE)
    time.sleep(2)
    assert copies(d) == 1, "slow@ delivered again after the restart"


def test_forward_queued_again_is_not_doubled(daemons, tmp_path, run_as):
    """fwd@ delivers and forwards (the relay defers the forward: 450); the
    original's file cannot take its result, nor be removed (which would
    record it: nothing else is left to do), and the daemon crashes.  After
    the restart fwd@ is delivered again (at-least-once), but its forward,
    still queued, is not queued a second time (its queue id is the
    original's and the recipient's)."""
    if not H.IS_ROOT or run_as is None:
        pytest.skip("needs root to run the daemon as an account that "
                    "file modes apply to")
    later = H.SmtpSink(reject={"someone@remote.test": "450 4.2.0 try later"})
    try:
        d = make(daemons, tmp_path, "fwd", relay_host=later.address)
        d.start()
        qid = start_slow_delivery(d, ["fwd@example.test"])
        path = d.queue_dir / "active" / qid
        os.chmod(path, 0o500)
        os.chmod(path.parent, 0o500)
        try:
            (d.root / "go").touch()
            H.wait_for(lambda: copies(d) == 1, H.DEADLINE, "the delivery")
            d.wait_log(rf"qid={qid}: forward queued as (\w+)", H.DEADLINE)
            d.wait_log(r"to=<someone@remote.test> .*status=deferred", H.DEADLINE)
            d.crash()
        finally:
            os.chmod(path.parent, 0o700)
        os.chmod(path, 0o700)
        d.start()
        H.wait_for(lambda: copies(d) == 2, H.DEADLINE, "the delivery again")
        H.wait_for(lambda: qid not in d.queue_files("active"), H.DEADLINE,
                   "the original to be done")
        time.sleep(2)
        left = [f for s in ("incoming", "active", "deferred")
                for f in d.queue_files(s)]
        assert len(left) == 1, f"forwards queued: {left}"
        assert f"qid={qid}: forward queued already as {left[0]}" in d.log()
    finally:
        later.stop()


@H.normal_pass_only
def test_active_limit_takes_turns(daemons, tmp_path):
    """max_active_messages 10: 30 messages to later@ defer and come due
    every second while new mail to busy@ (delivered one at a time, slower
    than it comes) keeps a backlog in incoming/: the deferred ones are
    still retried, every one of them, while the new mail flows; then all
    the new mail is delivered."""
    import threading
    d = make(daemons, tmp_path, "turns", max_active_messages="10",
             retry_schedule="1s")
    d.start()
    for i in range(30):
        send(d, "later@remote.test", ["later@example.test"],
             H.make_message(to="later@example.test"))
    rx = re.compile(r"qid=(\w+) from=<later@remote.test> to=<later@example.test> "
                    r".*status=deferred")

    def attempts():
        counts = {}
        for q in rx.findall(d.log()):
            counts[q] = counts.get(q, 0) + 1
        return counts
    H.wait_for(lambda: len(attempts()) == 30, H.DEADLINE, "30 deferred messages")
    stop = threading.Event()
    sent = []

    def flood():
        with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                          timeout=H.REPLY_TIMEOUT) as s:
            while not stop.is_set():
                assert s.sendmail(H.SENDER, ["busy@example.test"],
                                  H.make_message(to="busy@example.test")) == {}
                sent.append(1)
                time.sleep(0.04)        # faster than busy@'s deliveries
    t = threading.Thread(target=flood)
    t.start()
    try:
        H.wait_for(lambda: len(d.queue_files("incoming")) >= 10, H.DEADLINE,
                   "a backlog of new mail")
        base = attempts()
        H.wait_for(lambda: all(n >= base[q] + 2 for q, n in attempts().items()),
                   H.DEADLINE * 2, "every deferred message retried twice during the flood")
        assert len(d.queue_files("incoming")) > 0, "the backlog went"
    finally:
        stop.set()
        t.join()
    H.wait_for(lambda: len((d.root / "busy").read_text().split()) >= len(sent),
               H.DEADLINE * 3, "the new mail delivered")
    assert status_active(d)["peak"] <= 10
