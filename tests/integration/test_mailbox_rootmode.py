"""test_mailbox_rootmode.py - mailboxes where real hosts keep them, with the
daemon started as root: a maildir at an absolute path outside the home
(/srv/vmail/DOMAIN/USER/Maildir/), an mbox in a mail spool like Debian's
/var/mail (root:mail, mode 2775) with its dotlock, a mail reader's dotlock
(dotlockfile from liblockfile) waited for, and permission errors deferred,
not bounced.  Stand-ins for /srv and /var/mail live in a temp dir: the
real /var/mail is never touched.  Needs root; skipped otherwise."""

import grp
import os
import re
import shutil
import smtplib
import stat
import subprocess
import time

import pytest

import mpharness as H
from mpharness import SENDER

pytestmark = [
    pytest.mark.skipif(not H.IS_ROOT, reason="root-mode tests need root"),
    pytest.mark.skipif(shutil.which("dotlockfile") is None,
                       reason="dotlockfile (liblockfile-bin) not installed"),
]

# mbox_lock_timeout: long enough that a lock released within a second or two
# is waited for, short enough that a test can see it run out
LOCK_TIMEOUT = 8


def mail_gid():
    try:
        return grp.getgrnam("mail").gr_gid
    except KeyError:
        pytest.skip("no mail group on this host")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("mailbox")
    H.make_traversable(base)
    homes = base / "home"
    homes.mkdir()
    os.chmod(homes, 0o711)
    users = []
    try:
        svc = H.create_user("mpt-s-")
        users.append(svc)
        ua = H.create_user("mpt-m-", home=homes / "m")
        users.append(ua)
        (homes / "m").mkdir()
        os.chown(homes / "m", ua.uid, ua.gid)
        os.chmod(homes / "m", 0o700)
        # /srv/vmail/example.test/ACCOUNT/ owned by the account, Maildir missing
        vm = base / "srv" / "vmail" / "example.test" / "alice"
        vm.mkdir(parents=True)
        os.chown(vm, ua.uid, ua.gid)
        # /var/mail as Debian has it: root:mail 2775
        spool = base / "var" / "mail"
        spool.mkdir(parents=True)
        os.chown(spool, 0, mail_gid())
        os.chmod(spool, 0o2775)
        # a directory the account cannot write, not the spool group's
        closed = base / "closed"
        closed.mkdir()
        os.chmod(closed, 0o755)
        # an mbox the account may write in such a directory
        own = closed / "own-mbox"
        own.touch(0o600)
        os.chown(own, ua.uid, ua.gid)
        rules = f"""vm@example.test
    maildir {vm}/Maildir/

sp@example.test
    mbox {spool}/{ua.name}

lk@example.test
    mbox {spool}/lk-{ua.name}

held@example.test
    mbox {spool}/held-{ua.name}

closed@example.test
    mbox {closed}/{ua.name}

own@example.test
    mbox {own}

gid@example.test
    pipe "while read -r l; do case $l in Gid:*|Groups:*) echo $l;; esac; done < /proc/$$/status > $HOME/pipe-gid"
"""
        uids = "".join(f"{a}@example.test {ua.name}\n" for a in
                       ("vm", "sp", "lk", "held", "closed", "own", "gid"))
        d = H.Daemon(base / "d", run_as=None, single_user=False,
                     settings={"user": svc.name,
                               "mbox_lock_timeout": f"{LOCK_TIMEOUT}s"},
                     rules=rules, uids=uids)
        d.compile()
        d.start()
        yield {"d": d, "a": ua, "home": homes / "m", "vm": vm, "spool": spool,
               "closed": closed, "own": own}
        d.stop()
    finally:
        for d_ in list(H.LIVE):
            if d_.root == base / "d":
                d_.emergency_kill()
        for u in users:
            H.delete_user(u)


def send(d, rcpt):
    m = H.make_message(to=rcpt)
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        assert s.sendmail(SENDER, [rcpt], m) == {}
    return m


def results(d, rcpt):
    """The delivery log lines for rcpt."""
    return re.findall(r"(?m)^.*to=<%s>.*status=.*$" % re.escape(rcpt), d.log())


def wait_result(d, rcpt, status, timeout=None):
    return d.wait_log(r"(?m)^.*to=<%s>.*status=%s.*$" % (re.escape(rcpt), status),
                      timeout, what=f"status={status} for {rcpt}").group(0)


def dotlock(path, acct=None):
    """Take path's dotlock, path.lock, the way a mail reader does
    (dotlockfile -l, from liblockfile, as mutt's and others' readers)."""
    res = subprocess.run(H.as_user(acct, ["dotlockfile", "-l", "-r", "0", f"{path}.lock"]),
                         capture_output=True, text=True, timeout=H.DEADLINE)
    assert res.returncode == 0, f"dotlockfile -l {path}: {res.returncode} {res.stderr}"


def unlock(path, acct=None):
    res = subprocess.run(H.as_user(acct, ["dotlockfile", "-u", f"{path}.lock"]),
                         capture_output=True, text=True, timeout=H.DEADLINE)
    assert res.returncode == 0, f"dotlockfile -u {path}: {res.returncode} {res.stderr}"


def assert_owned(path, acct, mode=None):
    st = os.stat(path)
    assert st.st_uid == acct.uid, f"{path} owned by uid {st.st_uid}, expected {acct}"
    if mode is not None:
        assert stat.S_IMODE(st.st_mode) == mode, \
            f"{path} mode {oct(stat.S_IMODE(st.st_mode))}, expected {oct(mode)}"


def test_maildir_outside_home_created(env):
    """maildir /srv/vmail/example.test/alice/Maildir/ with Maildir/ missing:
    made (with cur, new, tmp) by the account, and the message is in it."""
    d, ua, vm = env["d"], env["a"], env["vm"]
    m = send(d, "vm@example.test")
    md = vm / "Maildir"
    H.wait_maildir(md, H.mid(m))
    for p in (md, md / "cur", md / "new", md / "tmp"):
        assert_owned(p, ua, 0o700)
        assert os.stat(p).st_gid == ua.gid
    [path] = [p for p, c in H.maildir_messages(md) if H.mid(m) in c]
    assert_owned(path, ua, 0o600)
    assert "status=sent" in results(d, "vm@example.test")[-1]


def test_mbox_created_in_mail_spool(env):
    """mbox /var/mail/USER in a root:mail 2775 spool the account cannot
    write: created by the account, mode 0600, with the message, and no lock
    file left behind."""
    d, ua, spool = env["d"], env["a"], env["spool"]
    mbox = spool / ua.name
    assert not mbox.exists()
    m = send(d, "sp@example.test")
    H.wait_mbox(mbox, H.mid(m))
    line = wait_result(d, "sp@example.test", "sent")
    assert_owned(mbox, ua, 0o600)
    assert not (spool / (ua.name + ".lock")).exists(), "the lock file stayed"
    assert os.listdir(spool) == [ua.name], os.listdir(spool)
    # a second message appends to the same file, through the same lock
    m2 = send(d, "sp@example.test")
    H.wait_mbox(mbox, H.mid(m2))
    H.wait_for(lambda: len(results(d, "sp@example.test")) == 2, H.DEADLINE,
               "the second result")
    assert os.listdir(spool) == [ua.name], os.listdir(spool)
    assert len(H.mbox_messages(mbox)) == 2
    assert "fcntl lock only" not in line, line
    # the worker went back to the account's group: mail is its saved gid only
    ws = [w for w in d.workers() if H.alive(w) and H.proc_ids(w)[0][0] == ua.uid]
    assert ws, "no worker of the account left"
    for w in ws:
        uids, gids, groups = H.proc_ids(w)
        assert gids == [ua.gid, ua.gid, mail_gid(), ua.gid], \
            f"worker {w} gids {gids} (real, effective, saved, fs)"
        assert mail_gid() not in groups, groups


def test_delivery_waits_for_a_readers_dotlock(env):
    """A mail reader holds FILE.lock (dotlockfile -l): nothing is appended
    while it does; the message lands once dotlockfile -u releases it."""
    d, ua, spool = env["d"], env["a"], env["spool"]
    mbox = spool / f"lk-{ua.name}"
    lock = str(mbox) + ".lock"
    dotlock(mbox)
    try:
        m = send(d, "lk@example.test")
        # well within mbox_lock_timeout: the worker is waiting meanwhile
        time.sleep(2)
        assert not mbox.exists() or H.mid(m) not in mbox.read_bytes(), \
            "delivered while the reader held the dotlock"
        assert results(d, "lk@example.test") == []
    finally:
        unlock(mbox)
    H.wait_mbox(mbox, H.mid(m))
    line = wait_result(d, "lk@example.test", "sent")
    assert "deferred" not in "".join(results(d, "lk@example.test")), line
    assert not os.path.exists(lock)


def test_dotlock_held_past_the_bound_defers(env):
    """A dotlock held longer than mbox_lock_timeout: the recipient is
    deferred with 4.2.1 (never bounced), and delivered once it is gone."""
    d, ua, spool = env["d"], env["a"], env["spool"]
    mbox = spool / f"held-{ua.name}"
    # as root: Debian's setgid dotlockfile keeps its group for the real
    # /var/mail only, which these tests leave alone
    dotlock(mbox)
    try:
        m = send(d, "held@example.test")
        line = wait_result(d, "held@example.test", "deferred",
                           H.DEADLINE + LOCK_TIMEOUT)
        assert "4.2.1" in line and "locked" in line, line
        q = d.ctl("queue")
        assert q.returncode == 0 and "4.2.1" in q.out, q.out
    finally:
        unlock(mbox)
    H.wait_mbox(mbox, H.mid(m), timeout=H.DEADLINE + LOCK_TIMEOUT)
    wait_result(d, "held@example.test", "sent")
    assert not any("bounced" in x for x in results(d, "held@example.test"))


def test_permission_denied_defers(env):
    """mbox in a directory the account cannot write and that is not the
    spool group's: a temporary 4.2.0, not a bounce; delivered once the
    administrator gives the account the directory."""
    d, ua, closed = env["d"], env["a"], env["closed"]
    m = send(d, "closed@example.test")
    line = wait_result(d, "closed@example.test", "deferred")
    assert re.search(r"\b4\.2\.0\b", line) and "Permission denied" in line, line
    assert not (closed / ua.name).exists()
    os.chown(closed, ua.uid, ua.gid)
    try:
        H.wait_mbox(closed / ua.name, H.mid(m))
        wait_result(d, "closed@example.test", "sent")
        assert_owned(closed / ua.name, ua, 0o600)
    finally:
        os.chown(closed, 0, 0)
    assert not any("bounced" in x for x in results(d, "closed@example.test"))


def test_unlockable_directory_fcntl_only_and_said(env):
    """An mbox the account may write, in a directory where no lock file can
    be made: delivered with the fcntl lock alone, and the result says so."""
    d, own = env["d"], env["own"]
    m = send(d, "own@example.test")
    H.wait_mbox(own, H.mid(m))
    line = wait_result(d, "own@example.test", "sent")
    assert "fcntl lock only" in line, line
    assert re.search(r"cannot create lock file .*own-mbox\.lock", d.log()), d.log_tail()


def test_pipe_does_not_keep_the_spool_group(env):
    """A pipe command of a root-mode worker has the account's gid as real,
    effective, saved and file-system gid, and not the mail group.  The
    shell reads its own /proc status with builtins only: an exec'd grep
    would show nothing (exec copies the effective gid into the saved one,
    and dash drops an effective gid that differs from the real one)."""
    d, ua, home = env["d"], env["a"], env["home"]
    send(d, "gid@example.test")
    out = home / "pipe-gid"
    H.wait_for(lambda: out.exists() and out.stat().st_size > 0, H.DEADLINE,
               "the pipe's output")
    fields = dict(line.split(":", 1) for line in out.read_text().splitlines())
    assert [int(x) for x in fields["Gid"].split()] == [ua.gid] * 4, fields
    assert mail_gid() not in [int(x) for x in fields["Groups"].split()], fields
