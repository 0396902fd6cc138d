"""test_spam_rootmode.py - embedded SpamAssassin with the daemon started as
root: each user's worker checks and learns as that user, with that user's
own preferences and Bayes data.  GTUBE filed into two real users' .Junk
folders by their own uids; the workers' credentials (real and effective
uid/gid, supplementary groups, capabilities); `mailprocctl learn` writing
the learner's Bayes files, owned by the learner, and nothing for anyone
else; a user's required_score changing only that user's verdict; a
user's bayes_path (an administrator option) ignored; nothing of
SpamAssassin's in root's home.  The daemon starts with HOME an empty
directory of its own (to see what lands in "root's home") and with some
privileged supplementary groups (adm, shadow, disk), which no worker may
keep.

Needs root (CI runs as root) and spamassassin (scripts/setup.sh); skipped
otherwise.  One daemon for the module (user_prefs are read when a worker
starts: the last tests wait for a's idle worker to leave first): the tests
run in file order, the first five before any user_prefs exist, the last
two with them (each also passes alone)."""

import grp
import os
import re
import shutil
import smtplib
import stat
from pathlib import Path

import pytest

import mpharness as H
from mpharness import SENDER
from test_rootmode import assert_runs_as, owned
from test_spam import bayes_learned, gtube, seen_keys, workers_of

pytestmark = [
    pytest.mark.skipif(not H.IS_ROOT,
                       reason="root-mode tests need root (CI runs the suite as root)"),
    pytest.mark.skipif(shutil.which("spamassassin") is None,
                       reason="spamassassin is not installed (scripts/setup.sh)"),
]

A, B = "a@example.test", "b@example.test"
SPLIT = "split@example.test"
# The first delivery waits for the spawner to load SpamAssassin (seconds;
# about 40 s under AddressSanitizer).
SPAM_DEADLINE = H.DEADLINE * 3
# Supplementary groups the daemon is started with (root's groups as far as
# it can tell; root often has none): privileged ones that no worker may
# keep.  (Not gid 0: pytest's root:root 0705 directories would then shut
# out a worker that kept it, failing the deliveries rather than the check.)
ROOT_GROUPS = sorted(g.gr_gid for g in grp.getgrall()
                     if g.gr_name in ("adm", "shadow", "disk"))


def tree(path):
    """{relative path: (uid, gid, mode, size, mtime_ns)} of everything under
    path (the path itself included as "."); {} if it does not exist."""
    path = Path(path)
    out = {}
    if not path.exists():
        return out
    for p in [path] + sorted(path.rglob("*")):
        st = os.lstat(p)
        out[str(p.relative_to(path))] = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode),
                                         st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("spamroot")
    H.make_traversable(base)
    homes = base / "home"
    homes.mkdir()
    os.chmod(homes, 0o711)          # search, no read, as on hardened hosts
    # a directory a's user_prefs will point bayes_path at: not a's, but
    # writable by a, so that only the daemon's refusal keeps files out
    evil = base / "evil"
    evil.mkdir()
    os.chmod(evil, 0o777)
    # the daemon's HOME (root's home as far as it can tell): nothing of
    # SpamAssassin's may land there
    root_home = base / "roothome"
    root_home.mkdir()
    os.chmod(root_home, 0o700)
    users = []
    d = None
    try:
        svc = H.create_user("mpt-s-")
        users.append(svc)
        ua = H.create_user("mpt-a-", home=homes / "a")
        users.append(ua)
        ub = H.create_user("mpt-b-", home=homes / "b")
        users.append(ub)
        for u, h in ((ua, homes / "a"), (ub, homes / "b")):
            h.mkdir()
            os.chown(h, u.uid, u.gid)
            os.chmod(h, 0o700)
        rules = "# spam root-mode rules\n" + "".join(
            f"{addr}\n    if spam maildir ~/Maildir/.Junk/ ; stop\n    maildir ~/Maildir/\n\n"
            for addr in (A, B))
        # a's entry, with instructions that run as b (test 3b)
        rules += (f"{SPLIT}\n"
                  f"    if spam maildir ~/Maildir/.SplitJunk/ uid={ub.name} ; stop\n"
                  f"    if not spam maildir ~/Maildir/.SplitHam/ uid={ub.name}\n"
                  f"    maildir ~/Maildir/.split/\n")
        # 50 recipients of one message, each with a part for b (test 3c)
        rules += (f"@many.test\n"
                  f"    maildir ~/Maildir/.many/ uid={ub.name}\n"
                  f"    maildir ~/Maildir/.many/\n")
        uids = f"{A} {ua.name}\n{B} {ub.name}\n{SPLIT} {ua.name}\n@many.test {ua.name}\n"
        d = H.Daemon(base / "d", run_as=None, single_user=False,
                     settings={"user": svc.name, "spam_engine": "spamassassin",
                               "spam_learn_sync": "1s", "spam_timeout": "60s",
                               "worker_idle_timeout": "2s"},
                     rules=rules, uids=uids)
        d.compile()
        start(d, root_home)
        yield {"d": d, "svc": svc, "a": ua, "b": ub, "homes": homes, "evil": evil,
               "root_home": root_home}
        d.stop()
    finally:
        if d is not None:
            d.emergency_kill()
        for u in users:
            H.delete_user(u)


@pytest.fixture(scope="module")
def prefs_env(env):
    """The same daemon once a's user_prefs were written, and a's worker
    (which read none) has left: required_score 5000 (a user option) and
    bayes_path into `evil` (an administrator option).  (Waiting for the
    idle worker rather than restarting saves loading SpamAssassin again,
    40 s under AddressSanitizer.)"""
    d, ua = env["d"], env["a"]
    state = env["homes"] / "a" / ".spamassassin"
    state.mkdir(exist_ok=True)
    prefs = state / "user_prefs"
    prefs.write_text(f"required_score 5000\nbayes_path {env['evil']}/bayes\n")
    H.chown_tree(state, ua)
    os.chmod(prefs, 0o600)

    def a_worker_gone():
        r = d.ctl("status")
        assert r.returncode == 0, r.out
        return not workers_of(r.out, ua.name)
    H.wait_for(a_worker_gone, H.DEADLINE, "a's worker to leave (worker_idle_timeout)")
    return env


def start(d, home):
    """Start d with HOME=home and the supplementary groups ROOT_GROUPS
    (what the daemon inherits from us)."""
    saved = os.getgroups()
    os.setgroups(ROOT_GROUPS)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HOME", str(home))
            d.start()
    finally:
        os.setgroups(saved)


def send(d, rcpts, msg):
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        return s.sendmail(SENDER, rcpts, msg)


def copies(maildir, msgid):
    """[(path, content)] of the messages in maildir (new, cur) with msgid."""
    return [(p, c) for p, c in H.maildir_messages(maildir) if msgid in c]


def wait_copy(maildir, msgid):
    H.wait_maildir(maildir, msgid, timeout=SPAM_DEADLINE)
    [(path, content)] = copies(maildir, msgid)
    return path, content


def head(content):
    return content.split(b"\n\n", 1)[0].decode("utf-8", "replace")


def learn_spam(d, addr, tag):
    m = H.make_message(to=addr, subject=f"cheap pills {tag}",
                       body=f"Buy cheap pills now, best price, click here. {tag}\r\n")
    r = d.ctl("learn", "--spam", addr, input=m)
    assert r.returncode == 0 and "learned as spam" in r.out, r.out
    return m


# ---------------------------------------------------------------- 1

def test_gtube_junked_for_each_user_as_that_user(env):
    d, ua, ub, homes = env["d"], env["a"], env["b"], env["homes"]
    m = gtube(A)
    assert send(d, [A, B], m) == {}
    for u, h in ((ua, homes / "a"), (ub, homes / "b")):
        junk = h / "Maildir" / ".Junk"
        path, content = wait_copy(junk, H.mid(m))
        owned(path, u, 0o600)
        for p in (junk, junk / "new", junk / "cur", junk / "tmp"):
            owned(p, u)
        hd = head(content)
        assert re.search(r"(?m)^X-Spam-Flag: YES$", hd), hd
        assert re.search(r"(?m)^X-Spam-Status: Yes, score=\d", hd), hd
        d.wait_log(rf"user={re.escape(u.name)} spam=yes score=[\d.]+ required=5\.0 "
                   rf"tests=\S*GTUBE")
    H.settle()
    for h in (homes / "a", homes / "b"):
        assert not copies(h / "Maildir", H.mid(m)), f"a copy in {h}'s inbox too"


# ---------------------------------------------------------------- 2

def test_workers_run_as_their_users(env):
    d, ua, ub, homes = env["d"], env["a"], env["b"], env["homes"]
    # a plain message to both, so that each has a warm worker that checked
    m = H.make_message(to=A, body=b"Lunch at noon?\r\n")
    assert send(d, [A, B], m) == {}
    for h in (homes / "a", homes / "b"):
        path, content = wait_copy(h / "Maildir", H.mid(m))
        assert re.search(r"(?m)^X-Spam-Status: No, ", head(content)), head(content)
    text = d.ctl("status")
    assert text.returncode == 0, text.out
    text = text.out
    root_groups = set(ROOT_GROUPS) | {0}
    assert set(ROOT_GROUPS) <= set(H.proc_ids(d.pid)[2]), "the master lacks root's groups"
    kids = d.children()
    spawners = [k for k in kids if H.proc_ids(k)[0][0] == 0]
    assert len(spawners) == 1, f"expected one root child (the spawner): {spawners}"
    for u in (ua, ub):
        ws = workers_of(text, u.name)
        assert len(ws) == 1, f"status lists {len(ws)} workers for {u}:\n{text}"
        w = ws[0]
        assert int(w["uid"]) == u.uid, text
        pid = int(w["pid"])
        assert pid in d.workers(), (pid, d.workers())
        assert H.proc_stat(pid)["ppid"] == spawners[0], f"worker {pid} not the spawner's"
        uids, gids, groups = H.proc_ids(pid)
        # real and effective (and saved and filesystem) ids: the user's
        assert uids[0] == uids[1] == u.uid != 0, f"worker {pid} uids {uids}, want {u}"
        assert gids[0] == gids[1] == u.gid != 0, f"worker {pid} gids {gids}, want {u}"
        want = set(os.getgrouplist(u.name, u.gid))
        assert set(groups) <= want, f"worker {pid} groups {groups}, {u} has {want}"
        assert not (set(groups) & root_groups) - want, \
            f"worker {pid} kept root's groups: {groups}"
        assert 0 not in groups, f"worker {pid} groups {groups}"
        assert_runs_as(pid, u, f"spam worker for {u.name}", worker=True)
        assert int(w["checks"]) >= 1, text


# ---------------------------------------------------------------- 3

def test_learn_writes_only_the_learners_bayes_as_the_learner(env):
    d, ua, ub, homes = env["d"], env["a"], env["b"], env["homes"]
    a_state, b_state = homes / "a" / ".spamassassin", homes / "b" / ".spamassassin"
    b_before = tree(homes / "b")
    a_seen, b_seen = seen_keys(a_state), seen_keys(b_state)
    learn_spam(d, A, "root-mode")
    # merged into a database within spam_learn_sync (1s): a's, or b's if
    # it went wrong
    H.wait_for(lambda: bayes_learned(a_state, a_seen) or bayes_learned(b_state, b_seen),
               H.DEADLINE, "the learned message in a Bayes database")
    # b's home: not a byte changed, nothing created (b's worker made its
    # own empty Bayes database when it started, before this test)
    H.settle()
    b_after = tree(homes / "b")
    assert seen_keys(b_state) == b_seen, "a's message was learned into b's Bayes data"
    assert b_after == b_before, f"b's home changed:\n{b_before}\n->\n{b_after}"
    for rel, (uid, gid, *_rest) in b_after.items():
        assert (uid, gid) == (ub.uid, ub.gid), f"b's {rel} owned by {uid}:{gid}"
    assert bayes_learned(a_state, a_seen)
    names = sorted(p.name for p in a_state.iterdir())
    assert {"bayes_toks", "bayes_seen"} <= set(names), names
    for p in [a_state] + list(a_state.rglob("*")):
        st = os.lstat(p)
        assert (st.st_uid, st.st_gid) == (ua.uid, ua.gid), \
            f"{p} owned by {st.st_uid}:{st.st_gid}, expected {ua}"
    # the root spawner and master left root's home alone
    assert not list(env["root_home"].iterdir()), \
        f"created in the daemon's (root's) home: {list(env['root_home'].rglob('*'))}"


# ---------------------------------------------------------------- 3b

def test_uid_part_runs_with_the_primary_parts_verdict(env):
    """split's entry is a's, with instructions that run as b: only a's
    worker checks the message (with a's data); b's part does not parse it
    for spam, it runs with a's verdict: GTUBE goes to b's .SplitJunk with
    a's verdict lines and `stop` holds for both parts; a plain message goes
    to b's .SplitHam and a's .split."""
    d, ua, ub, homes = env["d"], env["a"], env["b"], env["homes"]
    m = gtube(SPLIT)
    ham = H.make_message(to=SPLIT, body=b"Minutes of the meeting attached.\r\n")
    assert send(d, [SPLIT], m) == {}
    assert send(d, [SPLIT], ham) == {}
    path, content = wait_copy(homes / "b" / "Maildir" / ".SplitJunk", H.mid(m))
    owned(path, ub, 0o600)
    hd = head(content)
    assert re.search(r"(?m)^X-Spam-Flag: YES$", hd), hd
    assert re.search(r"(?m)^X-Spam-Status: Yes, score=\d", hd), hd
    path, content = wait_copy(homes / "b" / "Maildir" / ".SplitHam", H.mid(ham))
    assert re.search(r"(?m)^X-Spam-Status: No, ", head(content)), head(content)
    wait_copy(homes / "a" / "Maildir" / ".split", H.mid(ham))
    for _ in (m, ham):
        d.wait_log(r"to=<%s> .*status=sent" % re.escape(SPLIT), SPAM_DEADLINE)
    H.settle()
    assert not copies(homes / "a" / "Maildir" / ".split", H.mid(m)), "stop did not hold"
    assert not copies(homes / "b" / "Maildir" / ".SplitHam", H.mid(m))
    assert not copies(homes / "b" / "Maildir" / ".SplitJunk", H.mid(ham))
    # one check per message, a's; none by b's worker
    qids = set(re.findall(r"qid=(\S+) from=<[^>]*> to=<%s>" % re.escape(SPLIT), d.log()))
    assert len(qids) == 2, qids
    for q in qids:
        checks = re.findall(r"qid=%s user=(\S+) spam=" % q, d.log())
        assert checks == [ua.name], (q, checks)


# ---------------------------------------------------------------- 3c

def test_many_parts_waiting_for_verdicts_fit_their_jobs(env):
    """50 recipients whose entries run a part as b: b's parts wait for
    the verdicts, each job with room kept for the verdict's lines (4 KB a
    part), so they take several jobs, each released once its verdicts
    came; every copy is delivered at the first attempt."""
    d, homes = env["d"], env["homes"]
    rcpts = [f"r{i}@many.test" for i in range(50)]
    m = H.make_message(to=rcpts[0], body=b"Agenda for Monday.\r\n")
    assert send(d, rcpts, m) == {}
    for r in rcpts:
        d.wait_log(r"to=<%s> .*status=\w+" % re.escape(r), SPAM_DEADLINE,
                   what=f"a result for {r}")
    assert not re.search(r"to=<r\d+@many\.test> .*status=deferred", d.log()), d.log_tail()
    for h in (homes / "a", homes / "b"):
        H.wait_maildir(h / "Maildir" / ".many", H.mid(m), count=50)


# ---------------------------------------------------------------- 4

def test_user_prefs_required_score_changes_only_that_users_verdict(prefs_env):
    env = prefs_env
    d, ua, ub, homes = env["d"], env["a"], env["b"], env["homes"]
    m = gtube(A)
    assert send(d, [A, B], m) == {}
    path, content = wait_copy(homes / "a" / "Maildir", H.mid(m))
    owned(path, ua, 0o600)
    ha = head(content)
    assert re.search(r"(?m)^X-Spam-Status: No, score=\d+\.\d+ required=5000\.0", ha), ha
    assert not re.search(r"(?m)^X-Spam-Flag: YES", ha), ha
    path, content = wait_copy(homes / "b" / "Maildir" / ".Junk", H.mid(m))
    owned(path, ub, 0o600)
    hb = head(content)
    assert re.search(r"(?m)^X-Spam-Flag: YES$", hb), hb
    assert re.search(r"(?m)^X-Spam-Status: Yes, score=\d+\.\d+ required=5\.0", hb), hb
    d.wait_log(rf"user={re.escape(ua.name)} spam=no score=[\d.]+ required=5000\.0")
    d.wait_log(rf"user={re.escape(ub.name)} spam=yes score=[\d.]+ required=5\.0")
    H.settle()
    assert not copies(homes / "a" / "Maildir" / ".Junk", H.mid(m)), "a's copy junked too"
    assert not copies(homes / "b" / "Maildir", H.mid(m)), "b's copy in b's inbox too"


# ---------------------------------------------------------------- 5

def test_user_prefs_bayes_path_ignored(prefs_env):
    env = prefs_env
    d, ua, homes, evil = env["d"], env["a"], env["homes"], env["evil"]
    a_state = homes / "a" / ".spamassassin"
    a_seen = seen_keys(a_state)
    learn_spam(d, A, "elsewhere")
    # learned within spam_learn_sync (1s): into a's home, or where the
    # user_prefs said, if they were obeyed
    H.wait_for(lambda: bayes_learned(a_state, a_seen) or bayes_learned(evil, set()),
               H.DEADLINE, "the learned message in a Bayes database")
    H.settle()
    assert not list(evil.iterdir()), \
        f"a's user_prefs moved bayes_path: {sorted(p.name for p in evil.iterdir())}"
    assert bayes_learned(a_state, a_seen)
    for p in a_state.iterdir():
        owned(p, ua)
    assert not list(env["root_home"].iterdir()), "created in the daemon's (root's) home"
    # a's worker read the file (test 4 saw its required_score) and
    # refused that line
    d.wait_log(r"spamassassin: config: not parsing, administrator setting: bayes_path ")
