"""test_policy_sync.py - users' own policy files (~/.mailprocd/policy) into
state_dir/policy.mdb: `mailprocctl policy sync` and `policy show`, and the
daemon's "policy sync" child.  Single-user mode (virtual accounts under
home_base) and root mode (real accounts: the files are read as their
owners, the database written as config `user`)."""

import os
import re
import shutil
import signal
import stat
import time

import pytest

import mpharness as H

GOOD = """# my policy
block sender *@spam.test "We do not take mail from you"
block client 203.0.113.0/24
allow sender *@friends.test
greylist on
maxsize 5M
"""

BROKEN = """block sender *@spam.test
frobnicate all
block client 300.1.2.3
"""

SYNC_RE = re.compile(r"^(\d+) accounts, (\d+) files read, (\d+) changed, "
                     r"(\d+) broken, (\d+) removed, (\d+) skipped$")


def sync(d):
    res = d.ctl("policy", "sync")
    assert res.returncode == 0, f"policy sync failed:\n{res.out}"
    m = SYNC_RE.match(res.stdout.decode().strip())
    assert m, f"unexpected output: {res.out}"
    keys = ("accounts", "read", "changed", "broken", "removed", "skipped")
    return dict(zip(keys, map(int, m.groups())))


def show(d, account):
    res = d.ctl("policy", "show", account)
    return res.returncode, res.stdout.decode(), res.stderr.decode()


def write_policy(home, text, owner=None):
    """Write home/.mailprocd/policy (as owner when given) with a fresh
    mtime, through a new file so that the inode changes too."""
    pdir = home / ".mailprocd"
    pdir.mkdir(exist_ok=True)
    tmp = pdir / "policy.new"
    tmp.write_text(text)
    if owner is not None:
        os.chown(pdir, owner.uid, owner.gid)
        os.chown(tmp, owner.uid, owner.gid)
    os.rename(tmp, pdir / "policy")
    return pdir / "policy"


def errors_of(home):
    p = home / ".mailprocd" / "policy.errors"
    return p.read_text() if p.exists() else None


# ---------------------------------------------------------------- single-user

@pytest.fixture(scope="module")
def su(tmp_path_factory, run_as):
    """A compiled single-user setup, daemon not started: mailprocctl alone."""
    d = H.Daemon(tmp_path_factory.mktemp("polsync-su"), run_as=run_as)
    d.compile()
    return d


def test_good_file_lands_in_policy_db(su):
    home = su.home("alice")
    write_policy(home, GOOD, su.run_as)
    s = sync(su)
    assert s["read"] == 1 and s["changed"] == 1 and s["broken"] == 0, s
    assert s["accounts"] >= 7
    rc, out, err = show(su, "alice")
    assert rc == 0, err
    assert "status ok" in out
    assert 'line 2: block sender *@spam.test "We do not take mail from you"' in out
    assert "line 3: block client 203.0.113.0/24" in out
    assert "line 4: allow sender *@friends.test" in out
    assert "greylist on" in out and "maxsize 5242880" in out
    assert errors_of(home) is None
    st = os.stat(su.db_dir / "state" / "policy.mdb")
    owner = su.run_as.uid if su.run_as else os.geteuid()
    assert st.st_uid == owner
    assert stat.S_IMODE(os.stat(su.db_dir / "state").st_mode) == 0o700


def test_unchanged_file_not_reread(su):
    home = su.home("carol")
    write_policy(home, "block sender x@y.test\n", su.run_as)
    assert sync(su)["read"] >= 1
    s = sync(su)
    assert s["read"] == 0 and s["changed"] == 0, s
    # the same bytes with a new mtime: read again
    p = home / ".mailprocd" / "policy"
    t = time.time() + 5
    os.utime(p, (t, t))
    s = sync(su)
    assert s["read"] == 1 and s["changed"] == 1, s


def test_broken_file_keeps_previous_policy(su):
    home = su.home("bob")
    write_policy(home, GOOD, su.run_as)
    assert sync(su)["changed"] >= 1
    write_policy(home, BROKEN, su.run_as)
    s = sync(su)
    assert s["read"] == 1 and s["broken"] == 1 and s["changed"] == 0, s
    rc, out, err = show(su, "bob")
    assert rc == 0, err
    assert "status broken (the previous policy stays)" in out
    assert "We do not take mail from you" in out     # still the good one
    errs = errors_of(home)
    assert errs == ('policy:2: unknown keyword "frobnicate" (expected block, allow, '
                    'greylist or maxsize)\n'
                    'policy:3: client "300.1.2.3": not an IPv4 or IPv6 address\n'), errs
    st = os.stat(home / ".mailprocd" / "policy.errors")
    owner = su.run_as.uid if su.run_as else os.geteuid()
    assert st.st_uid == owner
    # not read again while it does not change
    assert sync(su)["read"] == 0
    # fixed: the new policy, and the errors file goes away
    write_policy(home, "block sender *@other.test\n", su.run_as)
    s = sync(su)
    assert s["changed"] == 1 and s["broken"] == 0, s
    rc, out, _ = show(su, "bob")
    assert "status ok" in out and "line 1: block sender *@other.test" in out
    assert "spam.test" not in out
    assert errors_of(home) is None


def test_symlink_yields_nothing(su):
    home = su.home("frank")
    pdir = home / ".mailprocd"
    pdir.mkdir(exist_ok=True)
    # a good policy that the account may read, but through a symlink
    target = home / "elsewhere"
    target.write_text(GOOD)
    H.chown_tree(home, su.run_as)
    os.symlink(target, pdir / "policy")
    if su.run_as:
        os.lchown(pdir / "policy", su.run_as.uid, su.run_as.gid)
    s = sync(su)
    assert s["read"] == 1 and s["broken"] == 1 and s["changed"] == 0, s
    rc, out, _ = show(su, "frank")
    assert "status broken (no policy)" in out and "line" not in out, out
    assert errors_of(home) == ("policy: is a symbolic link: not read "
                               "(write the file itself)\n")


def test_removed_file_removes_entry(su):
    home = su.home("multi")
    p = write_policy(home, "greylist on\n", su.run_as)
    assert sync(su)["changed"] == 1
    assert show(su, "multi")[0] == 0
    write_policy(home, "greylist maybe\n", su.run_as)
    assert sync(su)["broken"] == 1
    assert errors_of(home) is not None
    p.unlink()
    s = sync(su)
    assert s["removed"] == 1 and s["read"] == 0, s
    rc, _, err = show(su, "multi")
    assert rc == 1 and "no policy for multi" in err
    assert errors_of(home) is None, "policy.errors outlived the file"
    assert sync(su)["removed"] == 0


def test_file_too_large_or_not_regular(su):
    home = su.home("stopper")
    write_policy(home, "# padding\n" * 7000, su.run_as)       # 70,000 bytes
    s = sync(su)
    assert s["broken"] == 1, s
    assert errors_of(home) == "policy: file larger than 65536 bytes: not read\n"
    p = home / ".mailprocd" / "policy"
    p.unlink()
    os.mkfifo(p)
    if su.run_as:
        os.chown(p, su.run_as.uid, su.run_as.gid)
    s = sync(su)        # a FIFO: no hang, nothing read
    assert s["broken"] == 1, s
    assert errors_of(home) == "policy: not a regular file: not read\n"


@pytest.fixture(scope="module")
def su_daemon(tmp_path_factory, run_as):
    port, = H.free_ports(1)
    d = H.Daemon(tmp_path_factory.mktemp("polsync-d"), run_as=run_as,
                 settings={"listen": f"policy 127.0.0.1:{port}",
                           "policy_sync_interval": "1s"})
    write_policy(d.home("alice"), "block sender first@x.test\n", run_as)
    d.compile()
    d.start()
    yield d
    d.stop()


def shows(d, account, text):
    rc, out, _ = show(d, account)
    return rc == 0 and text in out


def test_daemon_syncs_at_start_and_on_change(su_daemon):
    d = su_daemon
    H.wait_for(lambda: shows(d, "alice", "block sender first@x.test"),
               H.DEADLINE, "the first round at start")
    write_policy(d.home("alice"), "block sender second@x.test\n", d.run_as)
    H.wait_for(lambda: shows(d, "alice", "block sender second@x.test"),
               H.DEADLINE, "the changed file in policy.mdb")
    write_policy(d.home("bob"), "greylist on\n", d.run_as)
    H.wait_for(lambda: shows(d, "bob", "greylist on"), H.DEADLINE,
               "a new file in policy.mdb")
    d.wait_log(r"mailprocd/polsync\[\d+\]: policy sync: \d+ accounts, 1 files read, "
               r"1 changed")


def test_daemon_reload_changes_interval(tmp_path_factory, run_as):
    """policy_sync_interval 1h: only the round at start; after a reload to
    1s, a changed file is picked up."""
    port, = H.free_ports(1)
    d = H.Daemon(tmp_path_factory.mktemp("polsync-reload"), run_as=run_as,
                 settings={"listen": f"policy 127.0.0.1:{port}",
                           "policy_sync_interval": "1h"})
    write_policy(d.home("alice"), "block sender first@x.test\n", run_as)
    d.compile()
    d.start()
    try:
        H.wait_for(lambda: shows(d, "alice", "first@x.test"), H.DEADLINE,
                   "the first round at start")
        write_policy(d.home("alice"), "block sender second@x.test\n", run_as)
        H.settle()
        H.settle()
        assert shows(d, "alice", "first@x.test"), "a round before the hour was up"
        d.settings["policy_sync_interval"] = "1s"
        d.conf.write_text(d.config_text())
        os.kill(d.pid, signal.SIGHUP)
        H.wait_for(lambda: shows(d, "alice", "second@x.test"), H.DEADLINE,
                   "a round after the reload to 1s")
    finally:
        d.stop()


def test_daemon_without_policy_listener_has_no_sync(su):
    write_policy(su.home("folder"), "greylist on\n", su.run_as)
    su.start()
    try:
        H.settle()
        H.settle()
        assert "polsync" not in su.log()
        rc, _, _ = show(su, "folder")
        assert rc == 1, "the file was read without a policy listener"
    finally:
        su.stop()


# ---------------------------------------------------------------- root mode

@pytest.fixture(scope="module")
def root_env(tmp_path_factory):
    if not H.IS_ROOT:
        pytest.skip("root-mode tests need root (CI runs the suite as root)")
    base = tmp_path_factory.mktemp("polsync-root")
    H.make_traversable(base)
    homes = base / "home"
    homes.mkdir()
    os.chmod(homes, 0o711)
    users = []
    try:
        svc = H.create_user("mpt-s-")
        users.append(svc)
        accts = {}
        for n in ("a", "b", "c"):
            u = H.create_user(f"mpt-{n}-", home=homes / n)
            users.append(u)
            h = homes / n
            h.mkdir()
            os.chown(h, u.uid, u.gid)
            os.chmod(h, 0o700)
            accts[n] = u
        uids = "".join(f"{n}@example.test {u.name}\n" for n, u in accts.items())
        uids += f"other-a@example.test {accts['a'].name}\n"
        port, = H.free_ports(1)
        d = H.Daemon(base / "d", run_as=None, single_user=False,
                     settings={"user": svc.name, "listen": f"policy 127.0.0.1:{port}",
                               "policy_sync_interval": "1s"},
                     rules="# no rules\n", uids=uids)
        d.compile()
        yield {"d": d, "svc": svc, "homes": homes, **accts}
        if d.proc is not None:
            d.stop()
    finally:
        for d_ in list(H.LIVE):
            if d_.root == base / "d":
                d_.emergency_kill()
        for u in users:
            H.delete_user(u)


def test_root_good_file_read_as_owner(root_env):
    d, a, svc = root_env["d"], root_env["a"], root_env["svc"]
    home = root_env["homes"] / "a"
    write_policy(home, GOOD, a)
    s = sync(d)
    assert s["accounts"] == 3 and s["read"] == 1 and s["changed"] == 1, s
    rc, out, err = show(d, a.name)
    assert rc == 0, err
    assert "uid %d" % a.uid in out and "line 4: allow sender *@friends.test" in out
    state = d.db_dir / "state"
    for p in (state, state / "policy.mdb"):
        st = os.stat(p)
        assert (st.st_uid, st.st_gid) == (svc.uid, svc.gid), p
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert sync(d)["read"] == 0


def test_root_broken_file_errors_owned_by_user(root_env):
    d, b = root_env["d"], root_env["b"]
    home = root_env["homes"] / "b"
    write_policy(home, "maxsize 1M\n", b)
    assert sync(d)["changed"] == 1
    write_policy(home, BROKEN, b)
    s = sync(d)
    assert s["broken"] == 1 and s["changed"] == 0, s
    rc, out, _ = show(d, b.name)
    assert "status broken (the previous policy stays)" in out and "maxsize 1048576" in out
    errs = home / ".mailprocd" / "policy.errors"
    st = os.stat(errs)
    assert (st.st_uid, st.st_gid) == (b.uid, b.gid)
    assert errs.read_text().startswith('policy:2: unknown keyword "frobnicate"')


def test_root_symlink_to_shadow_yields_nothing(root_env):
    d, c = root_env["d"], root_env["c"]
    home = root_env["homes"] / "c"
    pdir = home / ".mailprocd"
    pdir.mkdir(exist_ok=True)
    os.chown(pdir, c.uid, c.gid)
    link = pdir / "policy"
    if link.exists() or link.is_symlink():
        link.unlink()
    os.symlink("/etc/shadow", link)
    os.lchown(link, c.uid, c.gid)
    s = sync(d)
    assert s["broken"] == 1 and s["changed"] == 0, s
    rc, out, _ = show(d, c.name)
    assert "status broken (no policy)" in out and "line" not in out
    errs = (pdir / "policy.errors").read_text()
    assert errs == "policy: is a symbolic link: not read (write the file itself)\n"
    assert "root" not in errs


def test_root_file_read_with_owners_rights_only(root_env):
    """A policy file in a directory its account cannot enter: root could
    read it, the account cannot, so it yields nothing.  And a file the
    account does not own is refused."""
    d, c = root_env["d"], root_env["c"]
    home = root_env["homes"] / "c"
    pdir = home / ".mailprocd"
    link = pdir / "policy"
    link.unlink()
    os.chown(pdir, 0, 0)
    os.chmod(pdir, 0o700)
    p = pdir / "policy"
    p.write_text(GOOD)
    os.chown(p, c.uid, c.gid)
    s = sync(d)
    assert s["read"] == 1 and s["broken"] == 1 and s["changed"] == 0, s
    assert "line" not in show(d, c.name)[1]
    # owned by root in a directory the account owns
    os.chown(pdir, c.uid, c.gid)
    os.chown(p, 0, 0)
    os.utime(p, (time.time() + 7, time.time() + 7))
    s = sync(d)
    assert s["read"] == 1 and s["broken"] == 1, s
    assert "line" not in show(d, c.name)[1]
    assert (pdir / "policy.errors").read_text() == (
        f"policy: owned by uid 0, not by {c.name} (uid {c.uid}): not read\n")


def _fanotify_open_perm(path):
    """A fanotify descriptor on which every open of path waits for our
    answer (FAN_OPEN_PERM): the test learns the opener's pid."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fanotify_mark.argtypes = (ctypes.c_int, ctypes.c_uint, ctypes.c_uint64,
                                   ctypes.c_int, ctypes.c_char_p)
    FAN_CLASS_CONTENT, FAN_CLOEXEC, FAN_MARK_ADD, FAN_OPEN_PERM = 0x4, 0x1, 0x1, 0x10000
    fd = libc.fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, os.O_RDONLY)
    if fd < 0:
        pytest.skip("fanotify: " + os.strerror(ctypes.get_errno()))
    if libc.fanotify_mark(fd, FAN_MARK_ADD, FAN_OPEN_PERM, -100, str(path).encode()) < 0:
        os.close(fd)
        pytest.skip("fanotify_mark: " + os.strerror(ctypes.get_errno()))
    return fd


def test_root_stopped_reader_does_not_stall_the_sync(root_env):
    """The reader runs as the account, so its owner can SIGSTOP it, which
    its own alarm cannot end.  The root side gives up on it and the
    round goes on with the other accounts."""
    import select
    import struct
    import subprocess
    d, a, b = root_env["d"], root_env["a"], root_env["b"]
    target = write_policy(root_env["homes"] / "a", "block sender stopped@x.test\n", a)
    write_policy(root_env["homes"] / "b", "block sender after-stop@x.test\n", b)
    fan = _fanotify_open_perm(target)
    proc = subprocess.Popen([H.mailprocctl_bin(), "-f", d.conf, "policy", "sync"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader = None
    try:
        ready, _, _ = select.select([fan], [], [], H.DEADLINE)
        assert ready, "the reader never opened the policy file"
        buf = os.read(fan, 4096)
        _len, _vers, _res, _mlen, _mask, evfd, reader = struct.unpack_from("IBBHQii", buf)
        assert H.proc_ids(reader)[0][0] == a.uid     # the account's reader
        os.kill(reader, signal.SIGSTOP)             # what the account can do
        os.write(fan, struct.pack("iI", evfd, 1))   # FAN_ALLOW: the open goes on
        os.close(evfd)
        try:
            out, errout = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("policy sync waits for ever for a stopped reader")
        assert proc.returncode == 0, out + errout
        assert b"did not finish in 12 s: killed" in errout
        m = SYNC_RE.match(out.decode().strip())
        assert m and int(m.group(3)) == 1 and int(m.group(4)) == 1, out
        assert "block sender after-stop@x.test" in show(d, b.name)[1]
        assert "block sender stopped@x.test" not in show(d, a.name)[1]
    finally:
        os.close(fan)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if reader is not None:
            try:
                os.kill(reader, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_root_daemon_syncs_as_root_child(root_env):
    d, a, svc = root_env["d"], root_env["a"], root_env["svc"]
    state = d.db_dir / "state"
    shutil.rmtree(state)            # the master makes it again
    d.start()
    st = os.stat(state)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (svc.uid, svc.gid, 0o700)
    write_policy(root_env["homes"] / "a", "block sender daemon@x.test\n", a)
    H.wait_for(lambda: shows(d, a.name, "block sender daemon@x.test"), H.DEADLINE,
               "the daemon's round picks up the change")
    m = re.search(r"mailprocd/polsync\[(\d+)\]", d.log())
    assert m, d.log_tail()
    pid = int(m.group(1))
    assert H.alive(pid) and H.proc_ids(pid)[0][0] == 0
    d.stop()
    d.proc = None
