"""test_rootmode.py - the daemon started as root: unprivileged `user` for the
receiver and qmgr, workers with each recipient's own uid/gid, files owned by
the recipient with mode 0600, a queue no worker can reach.  Needs root (CI
runs as root); skipped otherwise."""

import grp
import os
import re
import shutil
import smtplib
import stat
import subprocess

import pytest

import mpharness as H
from mpharness import SENDER

pytestmark = pytest.mark.skipif(not H.IS_ROOT,
                                reason="root-mode tests need root (CI runs "
                                       "the suite as root)")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("rootmode")
    H.make_traversable(base)
    homes = base / "home"
    homes.mkdir()
    # search but no read permission for others, as on hardened hosts: the
    # delivery path walk must not need to list the homes' parent
    os.chmod(homes, 0o711)
    users = []
    try:
        svc = H.create_user("mpt-s-")
        users.append(svc)
        ua = H.create_user("mpt-a-", home=homes / "a")
        users.append(ua)
        ub = H.create_user("mpt-b-", home=homes / "b")
        users.append(ub)
        for u in (ua, ub):
            h = homes / u.name[4]           # a or b
            h.mkdir()
            os.chown(h, u.uid, u.gid)
            os.chmod(h, 0o700)
        qdir = base / "d" / "queue"
        rules = f"""# root-mode rules
a@example.test
    maildir ~/Maildir/

b@example.test
    mbox ~/mbox

evil@example.test
    mbox {qdir}/active/evil-mbox

evil2@example.test
    maildir {qdir}/evil-maildir/

split@example.test
    maildir ~/Maildir/
    maildir ~/Maildir/.from-a/ uid={ub.name}
    pipe "id -u > $HOME/pipe-uid" uid={ub.name}
    maildir ~/Maildir/.self/ uid={ua.name}

splitretry@example.test
    maildir ~/Maildir/.sr/
    maildir ~/Maildir/.sr-b/ uid={ub.name}
    {flaky('sr-tries')} uid={ub.name}

splitdrop@example.test
    maildir ~/Maildir/.sd-b/ uid={ub.name}
    {flaky('sd-tries')}
    maildir ~/Maildir/.sd/
"""
        # 400 instructions that run as b (test_long_run_lists_split_into_jobs)
        rules += "@wide.test\n" + "".join(
            f"    if header X-Never ~ /^n$/ maildir ~/Maildir/.w/ uid={ub.name}\n"
            for _ in range(WIDE)) + "    maildir ~/Maildir/.wide/\n"
        uids = f"""@wide.test {ua.name}
a@example.test {ua.name}
b@example.test {ub.name}
evil@example.test {ua.name}
evil2@example.test {ub.name}
split@example.test {ua.name}
splitretry@example.test {ua.name}
splitdrop@example.test {ua.name}
"""
        d = H.Daemon(base / "d", run_as=None, single_user=False,
                     settings={"user": svc.name, "queue_dir": qdir},
                     rules=rules, uids=uids)
        d.compile()
        d.start()
        yield {"d": d, "svc": svc, "a": ua, "b": ub, "homes": homes}
        d.stop()
    finally:
        for d_ in list(H.LIVE):
            if d_.root == base / "d":
                d_.emergency_kill()
        for u in users:
            H.delete_user(u)


WIDE = 400


def flaky(counter):
    """A pipe that exits 75 until its third run (counted in $HOME/counter)."""
    return (f'pipe "cat > /dev/null; n=$(cat $HOME/{counter} 2>/dev/null || echo 0); '
            f'n=$((n + 1)); echo $n > $HOME/{counter}; test $n -ge 3 || exit 75"')


def send(d, rcpt):
    m = H.make_message(to=rcpt)
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        assert s.sendmail(SENDER, [rcpt], m) == {}
    return m


def owned(path, acct, mode=None):
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (acct.uid, acct.gid), \
        f"{path} owned by {st.st_uid}:{st.st_gid}, expected {acct}"
    if mode is not None:
        assert stat.S_IMODE(st.st_mode) == mode, \
            f"{path} mode {oct(stat.S_IMODE(st.st_mode))}, expected {oct(mode)}"


def test_maildir_delivery_owned_by_recipient(env):
    d, ua = env["d"], env["a"]
    m = send(d, "a@example.test")
    md = env["homes"] / "a" / "Maildir"
    H.wait_maildir(md, H.mid(m))
    [path] = [p for p, c in H.maildir_messages(md) if H.mid(m) in c]
    owned(path, ua, 0o600)
    for p in (md, md / "new", md / "cur", md / "tmp"):
        owned(p, ua)
    assert H.Delivered(path.read_bytes()).rest == H.lf(m)


def test_mbox_delivery_owned_by_recipient(env):
    d, ub = env["d"], env["b"]
    m = send(d, "b@example.test")
    mbox = env["homes"] / "b" / "mbox"
    H.wait_mbox(mbox, H.mid(m))
    owned(mbox, ub, 0o600)


def test_queue_dir_private_to_user(env):
    d, svc = env["d"], env["svc"]
    owned(d.queue_dir, svc, 0o700)
    for sub in ("incoming", "active", "deferred"):
        owned(d.queue_dir / sub, svc)
    # a delivery user cannot even look inside
    res = subprocess.run(H.as_user(env["a"], ["ls", d.queue_dir]),
                         capture_output=True)
    assert res.returncode != 0, "a delivery user can list the queue"


def ids(pid):
    uids, gids, groups = H.proc_ids(pid)
    cap = H.proc_status(pid).get("CapEff")
    return uids, gids, groups, cap


def spool_gid():
    """The default mail_spool_group's gid, None when the host has none."""
    try:
        return grp.getgrnam("mail").gr_gid
    except KeyError:
        return None


def assert_runs_as(pid, acct, what, worker=False):
    """pid runs as acct, with no capability; a worker keeps the mail spool
    group (mail_spool_group) as its saved gid only, never real, effective,
    file-system nor supplementary."""
    uids, gids, groups, cap = ids(pid)
    assert uids == [acct.uid] * 4, f"{what} {pid} uids {uids}, want {acct}"
    saved = spool_gid() if worker and spool_gid() is not None else acct.gid
    want = [acct.gid, acct.gid, saved, acct.gid]
    assert gids == want, f"{what} {pid} gids {gids} (real, effective, saved, fs), want {want}"
    assert set(groups) <= {acct.gid}, f"{what} {pid} groups {groups}"
    assert cap is None or int(cap, 16) == 0, f"{what} {pid} CapEff {cap}"


def test_process_identities(env):
    d, svc, ua, ub = env["d"], env["svc"], env["a"], env["b"]
    send(d, "a@example.test")
    send(d, "b@example.test")
    # workers stay (worker_idle_timeout 300s): one for a, one for b
    want = {ua.uid, ub.uid}
    H.wait_for(lambda: want <= {H.proc_ids(w)[0][0] for w in d.workers()
                                if H.alive(w)},
               H.DEADLINE, "workers running as both recipients")
    assert H.proc_ids(d.pid)[0][0] == 0, "master should run as root"
    with H.Conn(d.smtp_port) as c:
        c.hello()
        rpid = d.receiver_pid(c)
    assert_runs_as(rpid, svc, f"receiver ({d.role(rpid)})")
    kids = d.children()
    roots = [k for k in kids if H.proc_ids(k)[0][0] == 0]
    assert len(roots) == 1, \
        f"expected one root child (the spawner): {[(k, d.role(k)) for k in roots]}"
    for k in kids:
        if k not in roots:
            assert_runs_as(k, svc, f"child ({d.role(k)})")
    workers = d.workers()
    for w in workers:
        assert H.proc_stat(w)["ppid"] == roots[0], \
            f"worker {w} is not a child of the spawner"
        uid = H.proc_ids(w)[0][0]
        assert uid in want, f"worker {w} runs as uid {uid}"
        assert_runs_as(w, ua if uid == ua.uid else ub, f"worker ({d.role(w)})", worker=True)


@pytest.mark.parametrize("rcpt,path", [("evil@example.test", "active/evil-mbox"),
                                       ("evil2@example.test", "evil-maildir")])
def test_worker_cannot_write_into_queue(env, rcpt, path):
    d = env["d"]
    send(d, rcpt)
    rx = re.escape(rcpt)
    line = d.wait_log(rf"^.*(?:{rx}.*status=|status=.*{rx}).*$",
                      what=f"a delivery result for {rcpt}").group(0)
    assert "status=sent" not in line, f"delivery into the queue dir: {line}"
    assert not (d.queue_dir / path).exists(), f"{path} created in the queue"


def test_uid_override_runs_as_that_account(env):
    """An instruction with uid= runs in a worker of that account (its
    home for ~, its files); the entry's other instructions run as the
    entry's account; the recipient counts as delivered once both did."""
    d, ua, ub = env["d"], env["a"], env["b"]
    m = send(d, "split@example.test")
    own = env["homes"] / "a" / "Maildir"
    other = env["homes"] / "b" / "Maildir" / ".from-a"
    H.wait_maildir(own, H.mid(m))
    H.wait_maildir(other, H.mid(m))
    [p1] = [p for p, c in H.maildir_messages(own) if H.mid(m) in c]
    [p2] = [p for p, c in H.maildir_messages(other) if H.mid(m) in c]
    owned(p1, ua, 0o600)
    owned(p2, ub, 0o600)
    # uid= naming the entry's own account: run once, by the entry's worker
    selfdir = env["homes"] / "a" / "Maildir" / ".self"
    H.wait_maildir(selfdir, H.mid(m))
    H.settle()
    assert len([p for p, c in H.maildir_messages(selfdir) if H.mid(m) in c]) == 1
    uidfile = env["homes"] / "b" / "pipe-uid"
    H.wait_for(uidfile.exists, H.DEADLINE, "the pipe's output")
    assert uidfile.read_text().strip() == str(ub.uid)
    line = d.wait_log(r"^.*to=<split@example\.test>.*status=\w+.*$").group(0)
    assert "status=sent" in line, line
    assert "maildir:" + str(own) in line and "pipe" in line, line


def test_split_recipient_retry_runs_only_what_failed(env):
    """A split recipient deferred by one part's pipe: on the retries neither
    part delivers its maildir copy again; a uid= part with everything done
    is not sent at all (splitdrop: the primary's pipe failed)."""
    d = env["d"]
    a, b = env["homes"] / "a", env["homes"] / "b"
    m1 = send(d, "splitretry@example.test")
    m2 = send(d, "splitdrop@example.test")
    for rcpt in ("splitretry", "splitdrop"):
        d.wait_log(r"to=<%s@example\.test> .*status=sent" % rcpt, H.DEADLINE * 3)
        assert len(re.findall(r"to=<%s@example\.test> .*status=deferred" % rcpt,
                              d.log())) == 2, d.log()
    assert (b / "sr-tries").read_text().strip() == "3"
    assert (a / "sd-tries").read_text().strip() == "3"
    H.settle()
    for maildir, m in ((a / "Maildir" / ".sr", m1), (b / "Maildir" / ".sr-b", m1),
                       (a / "Maildir" / ".sd", m2), (b / "Maildir" / ".sd-b", m2)):
        got = H.find_marked([c for _, c in H.maildir_messages(maildir)], H.mid(m))
        assert len(got) == 1, (maildir, len(got))


def test_account_below_minimum_uid_is_refused(env, tmp_path):
    """The spawner forks no worker for an account below minimum_uid: the
    recipient is deferred with the reason, nothing is delivered.  (The
    accounts of the other tests are `useradd --system` ones, uid 100-999,
    which the default minimum_uid 100 lets through.)"""
    ua, svc = env["a"], env["svc"]
    assert 100 <= ua.uid < 1000
    H.make_traversable(tmp_path)
    d = H.Daemon(tmp_path / "d", run_as=None, single_user=False,
                 settings={"user": svc.name, "minimum_uid": str(ua.uid + 1)},
                 rules="low@example.test\n    maildir ~/Maildir/.low/\n",
                 uids=f"low@example.test {ua.name}\n")
    d.compile()
    d.start()
    try:
        send(d, "low@example.test")
        line = d.wait_log(r"^.*to=<low@example\.test>.*status=\w+.*$").group(0)
        assert "status=deferred" in line and "below minimum_uid" in line, line
        assert not (env["homes"] / "a" / "Maildir" / ".low").exists()
        assert all(H.proc_ids(w)[0][0] != ua.uid for w in d.workers())
    finally:
        d.stop()


@pytest.mark.parametrize("loosen", ["file owned by the service user", "directory writable by all"])
def test_databases_others_may_change_are_refused(env, tmp_path, loosen):
    """In root mode the databases decide which account runs which command,
    so the spawner and the workers take them only from a file and a db_dir
    that root owns and nobody else may write: with the database file given
    to the service user (a compromised qmgr could rewrite it), or db_dir
    writable by all, even after a worker opened them, the mail is deferred
    and the reason logged; once the administrator puts it right, it goes
    out."""
    ua, svc = env["a"], env["svc"]
    folder = ".guarded-file" if loosen.startswith("file") else ".guarded-dir"
    H.make_traversable(tmp_path)
    d = H.Daemon(tmp_path / "d", run_as=None, single_user=False,
                 settings={"user": svc.name, "retry_schedule": "1s"},
                 rules=f"guarded@example.test\n    maildir ~/Maildir/{folder}/\n",
                 uids=f"guarded@example.test {ua.name}\n")
    d.compile()
    target = (d.db_dir / "current.mdb").resolve()
    d.start()
    try:
        # loosened while the daemon runs, after a worker opened them
        first = send(d, "guarded@example.test")
        maildir = env["homes"] / "a" / "Maildir" / folder
        H.wait_maildir(maildir, H.mid(first))
        if loosen.startswith("file"):
            os.chown(target, svc.uid, svc.gid)
        else:
            os.chmod(d.db_dir, 0o777)
        m = send(d, "guarded@example.test")
        d.wait_log(r"^.*to=<guarded@example\.test>.*status=deferred.*$")
        d.wait_log(r"refusing .*only root may be able to change the databases")
        assert not H.find_marked([c for _, c in H.maildir_messages(maildir)], H.mid(m))
        os.chown(target, 0, 0)
        os.chmod(d.db_dir, 0o755)
        H.wait_maildir(maildir, H.mid(m))
    finally:
        d.stop()


@pytest.mark.skipif(shutil.which("spamassassin") is None,
                    reason="spamassassin is not installed (scripts/setup.sh)")
def test_uid_part_fails_when_the_primary_gives_no_verdict(env, tmp_path):
    """With a spam engine, a uid= part waits for its primary part's spam
    verdict.  A primary part that cannot run (no worker for an account
    below minimum_uid) brings none: the waiting part fails with it, the
    recipient is deferred and retried, never left hanging, and the uid=
    part delivers nothing unchecked."""
    ua, ub, svc = env["a"], env["b"], env["svc"]
    low, high = sorted((ua, ub), key=lambda u: u.uid)
    H.make_traversable(tmp_path)
    rules = ("waits@example.test\n"
             f"    maildir ~/Maildir/.waits/ uid={high.name}\n"
             "    maildir ~/Maildir/\n")
    d = H.Daemon(tmp_path / "d", run_as=None, single_user=False,
                 settings={"user": svc.name, "minimum_uid": str(low.uid + 1),
                           "spam_engine": "spamassassin", "retry_schedule": "1s"},
                 rules=rules, uids=f"waits@example.test {low.name}\n")
    d.compile()
    d.start()
    try:
        send(d, "waits@example.test")
        H.wait_for(lambda: len(re.findall(r"to=<waits@example\.test> .*status=deferred",
                                          d.log())) >= 2,
                   H.DEADLINE * 3, "two deferred attempts")
        assert "without a spam verdict" in d.log(), d.log_tail()
        home = env["homes"] / high.name[4]
        assert not (home / "Maildir" / ".waits").exists()
    finally:
        d.stop()


def test_long_run_lists_split_into_jobs(env):
    """50 recipients of an entry with 400 uid= instructions: each part's
    list of instructions ("primary:except:0,...,399", "only:0,...,399")
    takes about 1.5 KB, 50 of them more than one IPC message carries: the
    qmgr fills each job only up to what fits, and all 50 are delivered at
    the first attempt."""
    d = env["d"]
    rcpts = [f"w{i}@wide.test" for i in range(50)]
    m = H.make_message(to=rcpts[0])
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        assert s.sendmail(SENDER, rcpts, m) == {}
    for r in rcpts:
        d.wait_log(r"to=<%s> .*status=\w+" % re.escape(r), what=f"a result for {r}")
    assert not re.search(r"to=<w\d+@wide\.test> .*status=deferred", d.log()), d.log_tail()
    H.wait_maildir(env["homes"] / "a" / "Maildir" / ".wide", H.mid(m), count=50)
