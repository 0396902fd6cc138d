"""test_workers.py - the worker pool's caps, through the real daemon:
workers_per_user lets one user's deliveries run side by side up to that
many workers and no more; max_workers bounds all users together, and at
the cap idle workers of other users are retired to make room, so that
every user's mail is delivered (no deadlock, nobody starved).  Deliveries
are slow pipes, so that the workers are seen busy in `mailprocctl
status`."""

import smtplib
import threading

import mpharness as H
from mpharness import SENDER

# Each delivery keeps its worker busy a while and leaves one file per
# message in the user's home.
SLOW_PIPE = 'pipe "cat > $HOME/got.$$; sleep 1"'


def slow_rules(users):
    return "".join(f"{u}@example.test\n    {SLOW_PIPE}\n" for u in users)


def send_each(d, rcpts):
    """One transaction per recipient, all at once (a thread each)."""
    errors = []

    def one(rcpt):
        try:
            with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                              timeout=H.REPLY_TIMEOUT) as s:
                refused = s.sendmail(SENDER, [rcpt], H.make_message(to=rcpt))
                if refused:
                    errors.append(refused)
        except (OSError, smtplib.SMTPException) as e:
            errors.append(e)

    threads = [threading.Thread(target=one, args=(r,)) for r in rcpts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def workers(d):
    """[(user, state)] of the warm workers, from mailprocctl status."""
    r = d.ctl("status")
    assert r.returncode == 0, r.out
    out = []
    for line in r.out.splitlines():
        if line.startswith("worker "):
            kv = dict(f.split("=", 1) for f in line.split()[1:])
            out.append((kv["user"], kv["state"]))
    return out


def delivered(d, user):
    return len(list(d.home(user).glob("got.*")))


def watch_until_delivered(d, counts):
    """Poll status until every user in counts has that many messages;
    returns the largest worker sets seen: (busy per user, all workers)."""
    most_busy, most_all = {}, 0
    last = []

    def done():
        nonlocal most_all
        ws = workers(d)
        last[:] = [ws]
        most_all = max(most_all, len(ws))
        for u in counts:
            busy = sum(1 for wu, st in ws if wu == u and st != "idle")
            most_busy[u] = max(most_busy.get(u, 0), busy)
        return all(delivered(d, u) >= n for u, n in counts.items())

    H.wait_for(done, H.DEADLINE * 2,
               lambda: "every message delivered; workers %s, delivered %s" % (
                   last[0] if last else None, {u: delivered(d, u) for u in counts}),
               interval=0.1)
    return most_busy, most_all


def test_workers_per_user_runs_a_users_deliveries_side_by_side(tmp_path, run_as):
    d = H.Daemon(tmp_path / "wpu", run_as=run_as, rules=slow_rules(["wes"]),
                 uids="wes@example.test wes\n", homes=("wes",),
                 settings={"workers_per_user": "3"})
    d.compile()
    d.start()
    try:
        send_each(d, ["wes@example.test"] * 6)
        most_busy, most_all = watch_until_delivered(d, {"wes": 6})
        assert most_busy["wes"] == 3, (most_busy, "3 deliveries at once, never more")
        assert most_all <= 3
        assert delivered(d, "wes") == 6
    finally:
        d.stop()


def test_max_workers_cap_retires_idle_workers_and_serves_everyone(tmp_path, run_as):
    users = ["ann", "ben", "cal", "dot"]
    d = H.Daemon(tmp_path / "maxw", run_as=run_as, rules=slow_rules(users),
                 uids="".join(f"{u}@example.test {u}\n" for u in users), homes=users,
                 settings={"max_workers": "2"})
    d.compile()
    d.start()
    try:
        rcpts = [f"{u}@example.test" for u in users] * 2
        send_each(d, rcpts)
        _, most_all = watch_until_delivered(d, {u: 2 for u in users})
        assert most_all <= 2, f"{most_all} workers with max_workers 2"
        for u in users:
            assert delivered(d, u) == 2, u
        # at most two workers stay warm, of the users served last
        assert len(workers(d)) <= 2
    finally:
        d.stop()
