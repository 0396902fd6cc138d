"""test_spam.py - SpamAssassin embedded in the per-user workers, with real
SpamAssassin (Debian's spamassassin, network tests off): GTUBE scored as
spam and filed by `if spam`; per-user required_score and spam=off; three
users, three verdicts for one message; learning through the user's own
worker into that user's Bayes data only, user_prefs unable to move
bayes_path; a warm worker checking many messages with one pid; an
oversized message skipped with a header; a killed worker retried;
`mailprocctl status`."""

import os
import re
import shutil
import signal
import smtplib
import time

import pytest

import mpharness as H
from mpharness import SENDER

pytestmark = pytest.mark.skipif(shutil.which("spamassassin") is None,
                                reason="spamassassin is not installed (scripts/setup.sh)")

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

RULES = """# rules for test_spam.py
alice@example.test
    if spam maildir ~/Maildir/.Junk/ ; stop
    maildir ~/Maildir/

bob@example.test
    if spam maildir ~/Maildir/.Junk/ ; stop
    maildir ~/Maildir/

carol@example.test    spam=off
    if spam maildir ~/Maildir/.Junk/ ; stop
    maildir ~/Maildir/

dave@example.test
    if score > 2 maildir ~/Maildir/.Suspect/ ; stop
    maildir ~/Maildir/

erin@example.test
    maildir ~/Maildir/

kim@example.test
    maildir ~/Maildir/

mia@example.test
    mbox ~/mbox
    pipe "cat > $HOME/piped"

gus@example.test
    maildir ~/Maildir/

hal@example.test
    maildir ~/Maildir/

ivy@example.test
    if spam maildir ~/Maildir/.Junk/ ; stop
    maildir ~/Maildir/

nia@example.test
    if header X-Spam-Flag ~ /YES/ maildir ~/Maildir/.Flagged/ ; stop
    maildir ~/Maildir/
"""
USERS = ("alice", "bob", "carol", "dave", "erin", "kim", "mia", "gus", "hal", "ivy", "nia")
# Several users' prefs are set up for one test each; one daemon serves
# them all (loading SpamAssassin takes 40 s under AddressSanitizer).
PREFS = {
    # bob wants a lot more before he calls anything spam
    "bob": "required_score 5000\n",
    # kim lets SpamAssassin learn from nearly every message it checks
    "kim": "bayes_auto_learn_threshold_nonspam 20\n",
    # gus and hal use Bayes after a few messages (a user option)
    "gus": "bayes_min_spam_num 1\nbayes_min_ham_num 1\nbayes_auto_learn 0\n",
    "hal": "bayes_min_spam_num 1\nbayes_min_ham_num 1\nbayes_auto_learn 0\n",
    # ivy's checks overrun: SpamAssassin's time_limit, which only the user
    # may lower
    "ivy": "time_limit 0.001\n",
}
UIDS = "".join(f"{u}@example.test {u}\n" for u in USERS)


@pytest.fixture(scope="module")
def d(tmp_path_factory, run_as):
    dm = H.Daemon(tmp_path_factory.mktemp("spam"), run_as=run_as, rules=RULES, uids=UIDS,
                  homes=USERS,
                  settings={"spam_engine": "spamassassin", "spam_max_size": "64K",
                            "spam_learn_sync": "1s", "spam_timeout": "60s"})
    for user, text in PREFS.items():
        prefs = dm.home(user) / ".spamassassin"
        prefs.mkdir(parents=True)
        (prefs / "user_prefs").write_text(text)
        H.chown_tree(dm.home(user), run_as)
    # erin tries to move her Bayes data where the admin did not put it
    evil = dm.root / "evil"
    evil.mkdir()
    os.chmod(evil, 0o777)
    prefs = dm.home("erin") / ".spamassassin"
    prefs.mkdir(parents=True)
    (prefs / "user_prefs").write_text(f"bayes_path {evil}/bayes\nrequired_score 4.5\n")
    H.chown_tree(dm.home("erin"), run_as)
    dm.compile()
    dm.start()
    yield dm
    dm.stop()


def send(d, rcpts, msg, sender=SENDER):
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        return s.sendmail(sender, rcpts, msg)


def gtube(to):
    return H.make_message(to=to, subject="test", body=f"{GTUBE}\r\n".encode())


def delivered(d, user, folder, msgid):
    md = d.maildir(user) / folder if folder else d.maildir(user)
    return H.wait_maildir(md, msgid, timeout=H.DEADLINE * 3)


def status(d):
    r = d.ctl("status")
    assert r.returncode == 0, r.out
    return r.out


SEEN_KEY = re.compile(rb"[0-9a-f]{40}@sa_generated")


def seen_keys(state):
    """The message ids in a Bayes bayes_seen database (SpamAssassin keys a
    learned message by a generated id, sha1@sa_generated), read from the
    raw file; empty if there is none."""
    try:
        return set(SEEN_KEY.findall((state / "bayes_seen").read_bytes()))
    except FileNotFoundError:
        return set()


def bayes_learned(state, before):
    """A message not among `before` (seen ids) is merged into the Bayes
    database in state: a new id in bayes_seen, the journal synced (gone or
    empty).  (bayes_toks alone proves nothing: the worker creates an empty
    database when it starts.)"""
    journal = state / "bayes_journal"
    return bool(seen_keys(state) - before) and \
        (not journal.exists() or journal.stat().st_size == 0)


def workers_of(text, user):
    return [dict(kv.split("=", 1) for kv in line.split()[1:])
            for line in text.splitlines()
            if line.startswith("worker ") and f" user={user} " in line]


def test_gtube_is_spam_and_filed_into_junk(d):
    m = gtube("alice@example.test")
    assert send(d, ["alice@example.test"], m) == {}
    [got] = delivered(d, "alice", ".Junk", H.mid(m))
    head = got.split(b"\n\n", 1)[0].decode()
    assert re.search(r"(?m)^X-Spam-Flag: YES$", head), head
    assert re.search(r"(?m)^X-Spam-Status: Yes, score=\d", head), head
    # with the check's wall time and its CPU time, which is never more
    # (give or take a clock tick)
    line = d.wait_log(r"user=alice spam=yes score=[\d.]+ required=5\.0 tests=\S*GTUBE\S* "
                      r"ms=(\d+) cpu_ms=(\d+)$")
    assert int(line.group(2)) <= int(line.group(1)) + 10, line.group(0)


def test_three_users_three_verdicts(d):
    """One message, three users: alice's verdict files it as Junk, bob's
    required_score 5000 keeps it in his inbox, carol (spam=off) is not
    checked at all."""
    m = gtube("several@example.test")
    assert send(d, ["alice@example.test", "bob@example.test", "carol@example.test"], m) == {}
    [a] = delivered(d, "alice", ".Junk", H.mid(m))
    [b] = delivered(d, "bob", None, H.mid(m))
    [c] = delivered(d, "carol", None, H.mid(m))
    assert b"X-Spam-Flag: YES" in a.split(b"\n\n", 1)[0]
    bob_head = b.split(b"\n\n", 1)[0].decode()
    assert re.search(r"(?m)^X-Spam-Status: No, score=\d+\.\d+ required=5000\.0", bob_head), \
        bob_head
    assert b"X-Spam-" not in c.split(b"\n\n", 1)[0], "carol's copy was checked"
    H.settle()
    assert not H.maildir_messages(d.maildir("bob") / ".Junk") or \
        not H.find_marked([x for _, x in H.maildir_messages(d.maildir("bob") / ".Junk")],
                          H.mid(m))


def test_own_verdict_replaces_the_messages_x_spam_fields(d):
    """X-Spam-* fields already in a message (forged here) are left out of a
    checked copy, which carries this host's verdict only; X-Spam-Prev-*
    stay, and a copy that is not checked (carol, spam=off) is untouched."""
    m = H.make_message(to="alice@example.test", body=b"Lunch at noon?\r\n",
                       headers=("X-Spam-Flag: YES",
                                "X-Spam-Status: Yes, score=99.0 required=5.0",
                                "\tautolearn=forged",
                                "X-Spam-Prev-Subject: earlier"))
    assert send(d, ["alice@example.test", "carol@example.test", "mia@example.test"], m) == {}
    [a] = delivered(d, "alice", None, H.mid(m))
    head = a.split(b"\n\n", 1)[0].decode()
    assert "X-Spam-Flag" not in head, head
    assert len(re.findall(r"(?m)^X-Spam-Status:", head)) == 1, head
    assert re.search(r"(?m)^X-Spam-Status: No, score=", head), head
    assert "forged" not in head and "score=99.0" not in head, head
    assert "X-Spam-Prev-Subject: earlier" in head, head
    assert a.endswith(b"Lunch at noon?\n"), a[-200:]
    [c] = delivered(d, "carol", None, H.mid(m))
    chead = c.split(b"\n\n", 1)[0].decode()
    assert "X-Spam-Flag: YES" in chead and "\tautolearn=forged" in chead, chead
    # the mbox and pipe copies are the same filtered copy
    piped = d.home("mia") / "piped"
    H.wait_for(lambda: piped.exists() and piped.read_bytes().endswith(b"Lunch at noon?\n"),
               H.DEADLINE, "mia's pipe copy")
    mbox = (d.home("mia") / "mbox").read_bytes()
    for copy in (piped.read_bytes(), mbox):
        h = copy.split(b"\n\n", 1)[0].decode()
        assert "X-Spam-Flag" not in h and "forged" not in h, h
        assert re.search(r"(?m)^X-Spam-Status: No, score=", h), h
        assert "X-Spam-Prev-Subject: earlier" in h, h
    assert b"Lunch at noon?\n" in mbox


def test_header_conditions_see_the_copy_as_delivered(d):
    """A rule on X-Spam-Flag (the procmail habit) sees this host's verdict,
    which is in the delivered copy, and not a field the message came with,
    which is not."""
    m = gtube("nia@example.test")
    assert send(d, ["nia@example.test"], m) == {}
    delivered(d, "nia", ".Flagged", H.mid(m))
    forged = H.make_message(to="nia@example.test", body=b"Lunch at noon?\r\n",
                            headers=("X-Spam-Flag: YES",))
    assert send(d, ["nia@example.test"], forged) == {}
    [got] = delivered(d, "nia", None, H.mid(forged))
    assert b"X-Spam-Flag" not in got.split(b"\n\n", 1)[0]


def test_score_condition(d):
    m = gtube("dave@example.test")
    assert send(d, ["dave@example.test"], m) == {}
    delivered(d, "dave", ".Suspect", H.mid(m))


def test_warm_worker_keeps_its_pid(d):
    for _ in range(3):
        m = H.make_message(to="alice@example.test", body=b"Just a note about lunch.\r\n")
        assert send(d, ["alice@example.test"], m) == {}
        delivered(d, "alice", None, H.mid(m))
    text = status(d)
    ws = workers_of(text, "alice")
    assert len(ws) == 1, text
    w = ws[0]
    assert int(w["checks"]) >= 4, text       # GTUBE earlier, and these three
    assert int(w["rss"].rstrip("K")) > 20000, text
    # the worker runs as the daemon's account (single-user mode) and is a
    # child of the spawner
    pid = int(w["pid"])
    assert pid in d.workers(), (pid, d.workers())
    uid = H.proc_ids(pid)[0][0]
    assert uid == (d.run_as.uid if d.run_as else os.getuid())


def test_oversized_message_skipped_with_header(d):
    m = gtube("alice@example.test")
    big = m + (b"z" * 998 + b"\r\n") * 80       # > spam_max_size 64K
    assert send(d, ["alice@example.test"], big) == {}
    [got] = delivered(d, "alice", None, H.mid(m))
    head = got.split(b"\n\n", 1)[0].decode()
    assert "X-Mailprocd-Spam: not checked (message larger than spam_max_size" in head, head
    assert "X-Spam-Flag" not in head


def test_learning_goes_to_that_users_bayes_only(d):
    alice_state = d.home("alice") / ".spamassassin"
    bob_state = d.home("bob") / ".spamassassin"
    before_bob = sorted(p.name for p in bob_state.iterdir()) if bob_state.exists() else []
    before_alice, bob_seen = seen_keys(alice_state), seen_keys(bob_state)
    for i in range(3):
        m = H.make_message(to="alice@example.test", subject=f"cheap pills {i}",
                           body=f"Buy cheap pills now, best price, click here. {i}\r\n")
        r = d.ctl("learn", "--spam", "alice@example.test", input=m)
        assert r.returncode == 0 and "learned as spam" in r.out, r.out
    r = d.ctl("learn", "--ham", "alice@example.test",
              input=H.make_message(to="alice@example.test", body=b"See you at lunch.\r\n"))
    assert r.returncode == 0 and "learned as ham" in r.out, r.out
    # synced within spam_learn_sync (1s)
    H.wait_for(lambda: len(seen_keys(alice_state) - before_alice) >= 4 and
               bayes_learned(alice_state, before_alice), H.DEADLINE,
               "alice's four messages in her Bayes database")
    assert seen_keys(bob_state) == bob_seen
    after_bob = sorted(p.name for p in bob_state.iterdir()) if bob_state.exists() else []
    assert not [n for n in after_bob if n.startswith("bayes") and n not in before_bob], \
        after_bob
    r = d.ctl("learn", "--spam", "nobody@nowhere.test", input=gtube("x@y.test"))
    assert r.returncode != 0 and "unknown address" in r.out, r.out


def test_auto_learning_is_synced_like_learning(d):
    """What SpamAssassin learns on its own while checking (bayes_auto_learn)
    goes to the journal too, and is synced every spam_learn_sync (1s
    here), not left until the worker exits."""
    state = d.home("kim") / ".spamassassin"
    before = seen_keys(state)
    m = H.make_message(to="kim@example.test", body=b"See you at the meeting tomorrow.\r\n")
    assert send(d, ["kim@example.test"], m) == {}
    [got] = delivered(d, "kim", None, H.mid(m))
    assert b"autolearn=ham" in got.split(b"\n\n", 1)[0], got[:800]
    H.wait_for(lambda: bayes_learned(state, before), H.DEADLINE,
               "kim's auto-learned message synced into her Bayes database")
    [w] = workers_of(status(d), "kim")
    assert H.alive(int(w["pid"])), "synced by the running worker, not at its exit"


def test_user_prefs_cannot_move_bayes_path(d):
    """erin's user_prefs sets bayes_path (an admin option): it is ignored,
    her Bayes data stays in her home; her required_score (a user option)
    is honoured."""
    evil = d.root / "evil"
    state = d.home("erin") / ".spamassassin"
    before = seen_keys(state)
    r = d.ctl("learn", "--spam", "erin@example.test",
              input=H.make_message(to="erin@example.test", body=b"cheap pills\r\n"))
    assert r.returncode == 0, r.out
    H.wait_for(lambda: bayes_learned(state, before), H.DEADLINE,
               "the message learned into erin's Bayes database in her home")
    assert not list(evil.iterdir()), "user_prefs moved bayes_path"
    m = gtube("erin@example.test")
    assert send(d, ["erin@example.test"], m) == {}
    [got] = delivered(d, "erin", None, H.mid(m))
    assert re.search(rb"X-Spam-Status: Yes, score=\d+\.\d+ required=4\.5", got), got[:600]


def test_killed_worker_is_retried_and_delivers(d):
    text = status(d)
    [w] = workers_of(text, "alice")
    pid = int(w["pid"])
    os.kill(pid, signal.SIGSTOP)
    m = gtube("alice@example.test")
    assert send(d, ["alice@example.test"], m) == {}
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    [got] = delivered(d, "alice", ".Junk", H.mid(m))
    assert b"X-Spam-Flag: YES" in got
    assert not H.alive(pid)


@H.normal_pass_only
def test_worker_exits_when_idle_and_syncs_its_journal(tmp_path, run_as):
    rules = "fay@example.test\n    if spam maildir ~/Maildir/.Junk/ ; stop\n    maildir ~/Maildir/\n"
    d = H.Daemon(tmp_path / "idle", run_as=run_as, rules=rules, uids="fay@example.test fay\n",
                 homes=("fay",),
                 settings={"spam_engine": "spamassassin", "worker_idle_timeout": "2s",
                           "spam_learn_sync": "1h"})
    d.compile()
    d.start()
    try:
        m = gtube("fay@example.test")
        assert send(d, ["fay@example.test"], m) == {}
        delivered(d, "fay", ".Junk", H.mid(m))
        r = d.ctl("learn", "--spam", "fay@example.test",
                  input=H.make_message(to="fay@example.test", body=b"cheap pills\r\n"))
        assert r.returncode == 0, r.out
        [w] = workers_of(status(d), "fay")
        pid = int(w["pid"])
        # idle for worker_idle_timeout: it leaves, syncing the journal
        # (spam_learn_sync is an hour, so only the exit can have done it)
        H.wait_for(lambda: not H.alive(pid), H.DEADLINE, "the idle worker to exit")
        assert not workers_of(status(d), "fay")
        state = d.home("fay") / ".spamassassin"
        assert bayes_learned(state, set()), "journal not synced into the database at exit"
    finally:
        d.stop()


def test_bayes_learned_by_one_user_changes_only_that_users_scores(d):
    """gus teaches his Bayes data; the same message then hits a BAYES_ rule
    for gus and none for hal.  (Both lower bayes_min_*_num in their
    user_prefs, a user option, so that a few messages activate Bayes.)"""
    spammy = ("zorblax quimfrat vendulope crastine phalmorix obrundel "
              "tessivane glombard\r\n") * 5
    hammy = ("meeting agenda minutes budget review quarterly planning "
             "schedule\r\n") * 5
    for i in range(6):
        for text, kind in ((spammy, "--spam"), (hammy, "--ham")):
            m = H.make_message(to="gus@example.test", subject=f"note {i}",
                               body=text.encode())
            r = d.ctl("learn", kind, "gus@example.test", input=m)
            assert r.returncode == 0, r.out
    state = d.home("gus") / ".spamassassin"
    # (six of each, alike: SpamAssassin counts each text once)
    H.wait_for(lambda: len(seen_keys(state)) == 2 and bayes_learned(state, set()),
               H.DEADLINE, "gus's messages synced into his Bayes database")
    m = H.make_message(to="gus@example.test", subject="hello", body=spammy.encode())
    assert send(d, ["gus@example.test", "hal@example.test"], m) == {}
    [g] = delivered(d, "gus", None, H.mid(m))
    [h] = delivered(d, "hal", None, H.mid(m))
    gh = g.split(b"\n\n", 1)[0].decode()
    hh = h.split(b"\n\n", 1)[0].decode()
    assert re.search(r"BAYES_(9\d|8\d|99|999)", gh), gh
    assert "BAYES_" not in hh, hh


def test_check_over_time_limit_delivered_unchecked_and_worker_replaced(d):
    """A check that overruns (ivy's user_prefs lowers SpamAssassin's
    time_limit) is abandoned: the message is delivered with a header
    saying so, and the worker is replaced."""
    m = gtube("ivy@example.test")
    assert send(d, ["ivy@example.test"], m) == {}
    [got] = delivered(d, "ivy", None, H.mid(m))
    head = got.split(b"\n\n", 1)[0].decode()
    assert "X-Mailprocd-Spam: not checked (over spam_timeout" in head, head
    d.wait_log(r"user=ivy spam=timeout")
    H.wait_for(lambda: not workers_of(status(d), "ivy"), H.DEADLINE,
               "the worker to be replaced (gone after its job)")


def many_parts(to, parts=3000):
    """A message SpamAssassin takes a while to parse and check (most of a
    second here): thousands of small MIME parts."""
    body = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\npart {i} hello world\r\n"
                   for i in range(parts)) + "--b--\r\n"
    m = H.make_message(to=to, subject="many parts", body=body.encode())
    head, _, rest = m.partition(b"\r\n\r\n")
    return (head + b"\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + rest)


@H.normal_pass_only
def test_check_turns_and_stuck_check_stopped(tmp_path, run_as):
    """spam_concurrency 1: while pat's check holds the only turn, quin's
    worker waits for its turn and checks nothing.  pat's check is stuck
    (SIGSTOP: beyond SpamAssassin's own time limit), so the qmgr has the
    spawner kill pat's worker after spam_timeout and its grace; quin gets
    the turn, and pat's message is tried again at once and delivered
    unchecked, saying so."""
    users = ("pat", "quin")
    rules = "".join(f"{u}@example.test\n    if spam maildir ~/Maildir/.Junk/ ; stop\n"
                    f"    maildir ~/Maildir/\n" for u in users)
    d = H.Daemon(tmp_path / "turns", run_as=run_as, rules=rules,
                 uids="".join(f"{u}@example.test {u}\n" for u in users), homes=users,
                 settings={"spam_engine": "spamassassin", "spam_concurrency": "1",
                           "spam_timeout": "4s", "spam_max_size": "1M"})
    d.compile()
    d.start()
    try:
        for u in users:         # warm workers, so that nothing waits for a spawn
            m = H.make_message(to=f"{u}@example.test", body=b"Lunch at noon?\r\n")
            assert send(d, [f"{u}@example.test"], m) == {}
            delivered(d, u, None, H.mid(m))
        assert "spam checks running=0 of 1" in status(d)

        slow = many_parts("pat@example.test")
        assert send(d, ["pat@example.test"], slow) == {}
        [pat] = H.wait_for(lambda: [w for w in workers_of(status(d), "pat")
                                    if w["state"] == "checking"],
                           H.DEADLINE, "pat's worker checking", interval=0.01)
        pat_pid = int(pat["pid"])
        os.kill(pat_pid, signal.SIGSTOP)
        stopped_at = time.monotonic()

        m = gtube("quin@example.test")
        assert send(d, ["quin@example.test"], m) == {}
        H.wait_for(lambda: [w for w in workers_of(status(d), "quin")
                            if w["state"] == "waiting"], H.DEADLINE, "quin's worker waiting")
        assert "spam checks running=1 of 1" in status(d)
        assert not (d.maildir("quin") / ".Junk").exists() or \
            not H.maildir_messages(d.maildir("quin") / ".Junk")

        # stopped after spam_timeout (4 s) + grace (10 s), at a 5 s tick
        [q] = delivered(d, "quin", ".Junk", H.mid(m))
        assert time.monotonic() - stopped_at >= 13, "pat's check was not given its time"
        assert b"X-Spam-Flag: YES" in q.split(b"\n\n", 1)[0]
        d.wait_log(rf"worker {pat_pid} of pat: spam check running for \d+ ms, over "
                   r"spam_timeout \(4 s\): stopping it; qid=")
        H.wait_for(lambda: not H.alive(pat_pid), H.DEADLINE, "pat's stuck worker killed")

        [p] = delivered(d, "pat", None, H.mid(slow))
        head = p.split(b"\n\n", 1)[0].decode()
        assert "X-Mailprocd-Spam: not checked (the check was stopped after spam_timeout)" \
            in head, head
        assert "X-Spam-" not in head, head
        d.wait_log(r"user=pat spam=skipped \(an earlier check was stopped\)")
        assert "spam checks running=0 of 1" in status(d)
    finally:
        d.stop()
