"""test_metrics_qmgr.py - the qmgr's figures at GET /metrics (issue 12),
read over real HTTP from `listen metrics` and parsed with
prometheus_client: N messages move the delivery counters and each delay
histogram's count by exactly N, by action; a message deferred, then
delivered, adds one delay observation per stage (not two) and counts the
deferral and the delivery once each; a rules reject bounces (action none)
and queues one bounce, which the relay delivers to a real SMTP sink
(action forward); spam verdicts with real SpamAssassin; the queue and
worker gauges while a delivery is held up, and after it, and with
messages waiting on disk for room in the active set."""

import shutil

import pytest

import mpharness as H
from mpharness import SENDER

RULES = """# rules for test_metrics_qmgr.py
alice@example.test
    maildir ~/Maildir/

bob@example.test
    mbox ~/mbox

pete@example.test
    pipe "cat > /dev/null"

dora@example.test
    discard

rita@example.test
    reject "no mail for rita"

# deferred (exit 75) until $HOME/ok exists
tess@example.test
    pipe "test -e $HOME/ok || exit 75; cat > /dev/null"

# held up until $HOME/go exists
hank@example.test
    pipe "while ! test -e $HOME/go; do sleep 0.05; done; cat > /dev/null"
"""
USERS = ("alice", "bob", "pete", "dora", "rita", "tess", "hank")
UIDS = "".join(f"{u}@example.test {u}\n" for u in USERS)

DELIVERIES = "mailprocd_deliveries_total"
DELAY = "mailprocd_delivery_delay_seconds"
STAGES = ("queue", "worker", "total")


@pytest.fixture(scope="module")
def sink():
    s = H.SmtpSink()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def d(tmp_path_factory, run_as, sink):
    # the first retry comes 3 s after a deferral: time to see the message
    # wait in deferred/
    dm = H.MetricsDaemon(tmp_path_factory.mktemp("metrics_qmgr"), run_as=run_as, rules=RULES,
                         uids=UIDS, homes=USERS,
                         settings={"relay_host": sink.address, "retry_schedule": "3s 60s"})
    dm.compile()
    dm.start()
    yield dm
    dm.stop()


def send(d, rcpts, msg, sender=SENDER):
    import smtplib
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        return s.sendmail(sender, rcpts, msg)


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before, after):
    """Every sample that moved, {key: change}."""
    keys = set(before) | set(after)
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in keys
            if after.get(k, 0.0) != before.get(k, 0.0)}


def moved(before, after, name):
    """The samples of family name (exact sample name) that moved, as
    {labels: change}."""
    return {k[1]: v for k, v in delta(before, after).items() if k[0] == name}


def wait_samples(d, pred, what):
    """Scrape until pred(samples) holds; the samples."""
    return H.wait_for(lambda: (lambda s: pred(s) and s)(d.scrape()), what=what)


def idle_queue(s):
    return all(value(s, "mailprocd_queue_messages", state=st) == 0
               for st in ("active", "deferred"))


def counts(s):
    return {st: value(s, DELAY + "_count", stage=st) for st in STAGES}


def test_n_messages_move_counters_and_histograms_by_exactly_n(d):
    """N messages to one maildir recipient: deliveries{delivered,maildir}
    and the count of each stage's histogram move by exactly N, nothing
    else among the deliveries moves; then one message each to an mbox, a
    pipe and a discard move exactly their own action's counter."""
    n = 5
    before = wait_samples(d, idle_queue, "an empty queue")
    for i in range(n):
        assert send(d, ["alice@example.test"], H.make_message(to="alice@example.test")) == {}
    after = wait_samples(d, lambda s: value(s, DELIVERIES, status="delivered", action="maildir")
                         >= value(before, DELIVERIES, status="delivered", action="maildir") + n
                         and idle_queue(s), f"{n} deliveries counted")
    H.settle()
    after = d.scrape()
    assert moved(before, after, DELIVERIES) == {
        (("action", "maildir"), ("status", "delivered")): n}
    for st in STAGES:
        assert counts(after)[st] - counts(before)[st] == n, st
        # +Inf bucket is the count; the buckets are cumulative
        inf = value(after, DELAY + "_bucket", stage=st, le="+Inf") - \
            value(before, DELAY + "_bucket", stage=st, le="+Inf")
        assert inf == n, st
        assert value(after, DELAY + "_sum", stage=st) >= value(before, DELAY + "_sum", stage=st)
    # total = queue + worker, observation by observation, so in sum too
    sums = {st: value(after, DELAY + "_sum", stage=st) - value(before, DELAY + "_sum", stage=st)
            for st in STAGES}
    assert abs(sums["total"] - sums["queue"] - sums["worker"]) < 0.01 * n, sums

    before = after
    for who in ("bob", "pete", "dora"):
        assert send(d, [f"{who}@example.test"], H.make_message(to=f"{who}@example.test")) == {}
    after = wait_samples(d, lambda s: sum(moved(before, s, DELIVERIES).values()) >= 3
                         and idle_queue(s), "three deliveries counted")
    H.settle()
    after = d.scrape()
    assert moved(before, after, DELIVERIES) == {
        (("action", "mbox"), ("status", "delivered")): 1,
        (("action", "pipe"), ("status", "delivered")): 1,
        (("action", "discard"), ("status", "delivered")): 1}
    assert all(counts(after)[st] - counts(before)[st] == 3 for st in STAGES)


def test_deferred_then_delivered_adds_one_observation_per_stage(d):
    """tess's pipe defers (75) until $HOME/ok exists.  While it waits, the
    queue shows it deferred; once ok exists the retry delivers it.  The
    deferral and the delivery count once each, and each stage's histogram
    gets one observation (the final result), not two; the queue stage
    includes the wait for the retry."""
    ok = d.home("tess") / "ok"
    before = wait_samples(d, idle_queue, "an empty queue")
    assert send(d, ["tess@example.test"], H.make_message(to="tess@example.test")) == {}
    try:
        waiting = wait_samples(d, lambda s: value(s, "mailprocd_queue_messages",
                                                  state="deferred") == 1,
                               "the message waiting in deferred/")
        assert value(waiting, DELIVERIES, status="deferred", action="pipe") - \
            value(before, DELIVERIES, status="deferred", action="pipe") == 1
        assert counts(waiting) == counts(before), "a deferral was observed as a delay"
        assert value(waiting, "mailprocd_queue_messages", state="active") == 0
        assert value(waiting, "mailprocd_queue_oldest_age_seconds") > 0
    finally:
        ok.touch()      # the retry delivers in any case
        H.chown_tree(ok, d.run_as)
    after = wait_samples(d, lambda s: value(s, DELIVERIES, status="delivered", action="pipe")
                         > value(before, DELIVERIES, status="delivered", action="pipe")
                         and idle_queue(s), "the retry delivered")
    H.settle()
    after = d.scrape()
    assert moved(before, after, DELIVERIES) == {
        (("action", "pipe"), ("status", "deferred")): 1,
        (("action", "pipe"), ("status", "delivered")): 1}
    assert {st: counts(after)[st] - counts(before)[st] for st in STAGES} == \
        {st: 1 for st in STAGES}
    # the queue stage ran from arrival to the retry, 3 s after the deferral
    queue_s = value(after, DELAY + "_sum", stage="queue") - value(before, DELAY + "_sum", stage="queue")
    assert queue_s >= 2.5, queue_s
    assert value(after, "mailprocd_queue_oldest_age_seconds") == 0


def test_rules_reject_bounces_and_queues_one_bounce(d, sink):
    """rita's rules reject: deliveries{bounced,none} +1, one final delay
    observation per stage, bounces_total +1; the bounce itself goes to
    the sender through the relay (a real SMTP sink): delivered, action
    forward."""
    before = wait_samples(d, idle_queue, "an empty queue")
    m = H.make_message(to="rita@example.test")
    assert send(d, ["rita@example.test"], m) == {}
    sink.wait(lambda x: x["to"] == [SENDER] and H.mid(m) in x["data"],
              what="the bounce at the relay")
    after = wait_samples(d, lambda s: value(s, DELIVERIES, status="delivered", action="forward")
                         > value(before, DELIVERIES, status="delivered", action="forward")
                         and idle_queue(s), "the bounce's delivery counted")
    H.settle()
    after = d.scrape()
    assert moved(before, after, DELIVERIES) == {
        (("action", "none"), ("status", "bounced")): 1,
        (("action", "forward"), ("status", "delivered")): 1}
    assert value(after, "mailprocd_bounces_total") - value(before, "mailprocd_bounces_total") == 1
    # the original's recipient and the bounce's: two final results
    assert all(counts(after)[st] - counts(before)[st] == 2 for st in STAGES)


def test_queue_and_worker_gauges_while_a_delivery_is_held_up(d):
    """hank's pipe waits for $HOME/go: meanwhile the queue has one active
    message, its age grows, and hank's worker is busy; after, the queue is
    empty (age 0) and the worker idle."""
    go = d.home("hank") / "go"
    base = wait_samples(d, idle_queue, "an empty queue")
    assert value(base, "mailprocd_queue_oldest_age_seconds") == 0
    assert send(d, ["hank@example.test"], H.make_message(to="hank@example.test")) == {}
    try:
        held = wait_samples(d, lambda s: value(s, "mailprocd_workers", state="busy")
                            == value(base, "mailprocd_workers", state="busy") + 1,
                            "hank's worker busy")
        assert value(held, "mailprocd_queue_messages", state="active") == 1
        assert value(held, "mailprocd_queue_messages", state="deferred") == 0
        age = value(held, "mailprocd_queue_oldest_age_seconds")
        assert age > 0
        later = wait_samples(d, lambda s: value(s, "mailprocd_queue_oldest_age_seconds")
                             > age + 0.2, "the oldest message's age growing")
        assert value(later, "mailprocd_queue_messages", state="active") == 1
        assert value(later, DELIVERIES, status="delivered", action="pipe") == \
            value(base, DELIVERIES, status="delivered", action="pipe")
    finally:
        go.touch()      # the pipe ends in any case
        H.chown_tree(go, d.run_as)
    after = wait_samples(d, lambda s: idle_queue(s) and
                         value(s, "mailprocd_workers", state="busy") ==
                         value(base, "mailprocd_workers", state="busy"), "the delivery done")
    assert value(after, "mailprocd_queue_oldest_age_seconds") == 0
    assert value(after, DELIVERIES, status="delivered", action="pipe") - \
        value(base, DELIVERIES, status="delivered", action="pipe") == 1
    # the same workers, each counted in one state: hank's is idle again
    workers = sum(value(after, "mailprocd_workers", state=st)
                  for st in ("starting", "idle", "busy", "waiting", "checking"))
    assert workers == len(d.workers()), (workers, d.workers())


def test_queue_gauges_count_messages_waiting_on_disk(tmp_path, run_as):
    """max_active_messages 1 and hank's delivery held up: two more
    messages wait on disk for room, and the queue counts them (3 active,
    the oldest hank's); released, all three are delivered and the queue
    is empty."""
    dm = H.MetricsDaemon(tmp_path / "disk", run_as=run_as, rules=RULES, uids=UIDS,
                         homes=USERS, settings={"max_active_messages": "1"})
    dm.compile()
    dm.start()
    go = dm.home("hank") / "go"
    try:
        first = H.make_message(to="hank@example.test")
        assert send(dm, ["hank@example.test"], first) == {}
        held = wait_samples(dm, lambda s: value(s, "mailprocd_workers", state="busy") == 1,
                            "hank's worker busy")
        more = [H.make_message(to="alice@example.test") for _ in range(2)]
        for m in more:
            assert send(dm, ["alice@example.test"], m) == {}
        waiting = wait_samples(dm, lambda s: value(s, "mailprocd_queue_messages",
                                                   state="active") == 3,
                               "three messages queued, two on disk")
        assert value(waiting, "mailprocd_queue_oldest_age_seconds") >= \
            value(held, "mailprocd_queue_oldest_age_seconds")
        assert value(waiting, DELIVERIES, status="delivered", action="maildir") == 0
    finally:
        go.touch()
        H.chown_tree(go, dm.run_as)
    try:
        for m in more:
            H.wait_maildir(dm.maildir("alice"), H.mid(m))
        after = wait_samples(dm, lambda s: idle_queue(s) and
                             value(s, DELIVERIES, status="delivered", action="maildir") == 2,
                             "all delivered, the queue empty")
        assert value(after, "mailprocd_queue_oldest_age_seconds") == 0
    finally:
        dm.stop()


# ---------------------------------------------------------------- spam

SPAM_RULES = """# rules for the spam figures
alice@example.test
    if spam maildir ~/Maildir/.Junk/ ; stop
    maildir ~/Maildir/

carol@example.test    spam=off
    maildir ~/Maildir/
"""
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@H.normal_pass_only
@pytest.mark.skipif(shutil.which("spamassassin") is None,
                    reason="spamassassin is not installed (scripts/setup.sh)")
def test_spam_checks_by_verdict_with_spamassassin(tmp_path, run_as):
    """Real SpamAssassin: GTUBE is spam, a plain note ham, a message over
    spam_max_size unchecked, carol (spam=off) no verdict at all; a check
    that ran has its duration observed, one per check.  GTUBE goes to two
    addresses of alice's: one job, one check, one verdict."""
    dm = H.MetricsDaemon(tmp_path / "spam", run_as=run_as, rules=SPAM_RULES,
                         uids="alice@example.test alice\ncarol@example.test carol\n",
                         homes=("alice", "carol"),
                         settings={"spam_engine": "spamassassin", "spam_max_size": "32K"})
    dm.compile()
    dm.start()
    try:
        before = dm.scrape()
        spam = H.make_message(to="alice@example.test", body=f"{GTUBE}\r\n".encode())
        ham = H.make_message(to="alice@example.test", body=b"Lunch at noon?\r\n")
        big = H.make_message(to="alice@example.test", body=b"x" * 70 + b"\r\n" * 1 +
                             (b"y" * 76 + b"\r\n") * 600)
        off = H.make_message(to="carol@example.test")
        assert send(dm, ["alice@example.test", "alice+x@example.test"], spam) == {}
        for m, to in ((ham, "alice"), (big, "alice"), (off, "carol")):
            assert send(dm, [f"{to}@example.test"], m) == {}
        H.wait_maildir(dm.maildir("alice") / ".Junk", H.mid(spam), count=2,
                       timeout=H.DEADLINE * 3)
        for m, to in ((ham, "alice"), (big, "alice"), (off, "carol")):
            H.wait_maildir(dm.maildir(to), H.mid(m), timeout=H.DEADLINE * 3)
        after = wait_samples(dm, lambda s: sum(moved(before, s, DELIVERIES).values()) >= 5,
                             "five deliveries counted")
        assert moved(before, after, "mailprocd_spam_checks_total") == {
            (("verdict", "spam"),): 1, (("verdict", "ham"),): 1, (("verdict", "unchecked"),): 1}
        name = "mailprocd_spam_check_duration_seconds"
        assert value(after, name + "_count") - value(before, name + "_count") == 2
        assert value(after, name + "_sum") > value(before, name + "_sum")
    finally:
        dm.stop()
