"""test_sessions.py - many sessions at once: the receiver raises its open
files limit to what max_sessions needs, one client address gets at most
max_sessions_per_client sessions (421 4.7.0 for the next), postmaster is
always accepted and delivered, and a unix socket's owner= is applied."""

import errno
import os
import re
import resource
import selectors
import smtplib
import socket
import stat
import subprocess
import sys
import time

import pytest

import mpharness as H
from mpharness import SENDER

# 200 addresses x 50 sessions
ADDRESSES = 200
PER_CLIENT = 50
SESSIONS = ADDRESSES * PER_CLIENT
# connections in flight (connecting, greeting not read) at any time: keeps
# the listen backlog from overflowing into SYN retransmissions
WINDOW = 400


def source_address(i):
    return f"127.77.{i // 250}.{i % 250 + 1}"


def receiver_pid(d):
    """The receiver: the master's child that logged as mailprocd/receiver."""
    def find():
        for pid in d.children():
            if d.role(pid) == "mailprocd/receiver":
                return pid
        return None
    return H.wait_for(find, what="the receiver's pid in the log")


def nofile_limits(pid):
    """(soft, hard) Max open files of pid, from /proc/PID/limits."""
    text = open(f"/proc/{pid}/limits").read()
    m = re.search(r"^Max open files\s+(\d+)\s+(\d+)", text, re.M)
    assert m, text
    return int(m.group(1)), int(m.group(2))


def has_cap_sys_resource():
    caps = re.search(r"^CapEff:\s+([0-9a-f]+)", open("/proc/self/status").read(), re.M)
    return bool(int(caps.group(1), 16) & (1 << 24))


def open_sessions(addresses, per_client, port, sel):
    """per_client sessions from each source address, non-blocking, at most
    WINDOW connecting at once; returns {sock: greeting bytes} once every one
    has its first reply line (or was closed)."""
    todo = [(a, n) for n in range(per_client) for a in addresses]
    todo.reverse()
    got = {}
    pending = 0
    deadline = time.monotonic() + 5 * H.DEADLINE
    while todo or pending:
        while todo and pending < WINDOW:
            addr, _ = todo.pop()
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.bind((addr, 0))
            rc = s.connect_ex(("127.0.0.1", port))
            assert rc in (0, errno.EINPROGRESS), os.strerror(rc)
            got[s] = b""
            sel.register(s, selectors.EVENT_READ)
            pending += 1
        assert time.monotonic() < deadline, \
            f"{pending} sessions still without a greeting"
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            try:
                data = s.recv(512)
            except ConnectionError:
                data = b""
            got[s] += data
            if b"\n" in got[s] or not data:
                sel.unregister(s)
                pending -= 1
    return got


def test_ten_thousand_sessions_and_per_client_limit(daemons):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < SESSIONS + 500:
        pytest.skip(f"hard open files limit {hard} is too low for the client side")
    d = daemons("many", settings={"max_sessions": str(SESSIONS + 100),
                                  "max_sessions_per_client": str(PER_CLIENT),
                                  "session_timeout": "300s"})
    # the daemon starts with the usual soft limit of 1024 ...
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        d.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # ... and the receiver raised it
    rsoft, rhard = nofile_limits(receiver_pid(d))
    assert rsoft > 1024 and rsoft >= SESSIONS + 100, (rsoft, rhard)
    short = re.search(r"needs (\d+) descriptors, got (\d+)", d.log())
    if short:
        # only when the hard limit is in the way, and then all of it
        assert int(short.group(2)) == rsoft == rhard, short.group(0)

    sel = selectors.DefaultSelector()
    held = {}
    try:
        held = open_sessions([source_address(i) for i in range(ADDRESSES)],
                             PER_CLIENT, d.smtp_port, sel)
        bad = [g for g in held.values() if not g.startswith(b"220 ")]
        assert not bad, f"{len(bad)} of {len(held)} sessions not greeted, e.g. " \
            f"{bad[:3]}; log:\n{d.log_tail(20)}"
        assert len(held) == SESSIONS

        # the 51st session from one address: 421 4.7.0, then closed
        with socket.socket() as extra:
            extra.settimeout(H.REPLY_TIMEOUT)
            extra.bind((source_address(7), 0))
            extra.connect(("127.0.0.1", d.smtp_port))
            reply = b""
            while True:
                data = extra.recv(512)
                if not data:
                    break
                reply += data
            assert reply.startswith(b"421 4.7.0 "), reply

        # an ordinary client is served while they are all held
        msg = H.make_message(to="alice@example.test")
        with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                          timeout=H.REPLY_TIMEOUT) as s:
            assert s.sendmail(SENDER, ["alice@example.test"], msg) == {}
        H.wait_maildir(d.maildir("alice"), H.mid(msg))

        # every held session is still open (a closed one would be readable)
        for s in held:
            sel.register(s, selectors.EVENT_READ)
        ready = sel.select(timeout=0.5)
        assert not ready, f"{len(ready)} held sessions were closed or got more"

        # a session that ends makes room for that address again
        mine = [s for s in held if s.getsockname()[0] == source_address(7)]
        assert len(mine) == PER_CLIENT
        sel.unregister(mine[0])
        mine[0].close()
        del held[mine[0]]

        def another_one():
            with socket.socket() as c:
                c.settimeout(H.REPLY_TIMEOUT)
                c.bind((source_address(7), 0))
                c.connect(("127.0.0.1", d.smtp_port))
                g = c.recv(512)
                if g.startswith(b"220 "):
                    c.sendall(b"QUIT\r\n")
                    return True
                assert g.startswith(b"421 4.7.0 "), g
                return False
        H.wait_for(another_one, what="a new session once one from that "
                   "address was closed")
    finally:
        sel.close()
        for s in held:
            s.close()


def test_per_client_limit_ipv4_ipv6_and_unix(daemons):
    """Three per address: the fourth gets 421 4.7.0; other addresses, IPv6
    and unix-socket clients are counted apart or not at all."""
    v6 = socket.has_ipv6
    if v6:
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError:
            v6 = False
    port6 = H.free_ports(1)[0]
    settings = {"max_sessions_per_client": "3"}
    if v6:
        settings["listen"] = f"smtp [::1]:{port6}"
    d = daemons("perclient", settings=settings)
    d.start()

    def connect(family, addr, port, source=None):
        c = socket.socket(family, socket.SOCK_STREAM)
        c.settimeout(H.REPLY_TIMEOUT)
        if source:
            c.bind((source, 0))
        c.connect((addr, port) if port else addr)
        conns.append(c)
        return c

    def greeting(c):
        data = b""
        while b"\n" not in data:
            chunk = c.recv(512)
            if not chunk:
                break
            data += chunk
        return data

    conns = []
    try:
        for _ in range(3):
            assert greeting(connect(socket.AF_INET, "127.0.0.1", d.smtp_port)) \
                .startswith(b"220 ")
        refused = connect(socket.AF_INET, "127.0.0.1", d.lmtp_port)
        assert greeting(refused).startswith(b"421 4.7.0 "), "counted over all listeners"
        assert refused.recv(512) == b"", "closed after the 421"
        # another address is counted on its own
        assert greeting(connect(socket.AF_INET, "127.0.0.1", d.smtp_port,
                                source="127.0.0.2")).startswith(b"220 ")
        # unix-socket clients are not counted
        for _ in range(5):
            assert greeting(connect(socket.AF_UNIX, str(d.sock_path), None)) \
                .startswith(b"220 ")
        if v6:
            for _ in range(3):
                assert greeting(connect(socket.AF_INET6, "::1", port6)) \
                    .startswith(b"220 ")
            assert greeting(connect(socket.AF_INET6, "::1", port6)) \
                .startswith(b"421 4.7.0 ")
    finally:
        for c in conns:
            c.close()


def test_per_client_limit_zero_means_none(daemons):
    d = daemons("nolimit", settings={"max_sessions_per_client": "0",
                                    "max_sessions": "100"})
    d.start()
    conns = [H.Conn(d.smtp_port) for _ in range(60)]
    try:
        for c in conns:
            H.expect(c.reply(), 220)
    finally:
        for c in conns:
            c.close()


def test_bad_per_client_setting(daemons):
    d = daemons("badpc", compile=False,
                settings={"max_sessions_per_client": "lots"})
    res = d.check_config()
    assert res.returncode == 1
    line = d.conf.read_text().splitlines().index(
        "max_sessions_per_client lots") + 1
    assert f"{d.conf}:{line}: max_sessions_per_client: bad number" in res.out


# ------------------------------------------------------------- postmaster

@pytest.mark.parametrize("rcpt", ["postmaster", "PostMaster",
                                  "postmaster@example.test",
                                  "POSTMASTER@mx.example.test"])
def test_postmaster_always_accepted_and_delivered(daemons, rcpt):
    """The standard databases know no postmaster: RCPT still gets 250, and
    the message lands in the postmaster's default delivery (single-user
    mode with home_base: the virtual account `postmaster`)."""
    d = daemons("pm", homes=H.STANDARD_USERS + ("postmaster",))
    d.start()
    msg = H.make_message(to=rcpt)
    with H.Conn(d.smtp_port) as c:
        c.hello()
        rr, final = H.transaction(c, [rcpt, "nobody@example.test"], msg)
        H.expect(rr[0], 250, "2.1.5")
        H.expect(rr[1], 550, "5.1.1")
        H.expect(final[0], 250)
    got = H.wait_maildir(d.maildir("postmaster"), H.mid(msg))
    assert got
    assert "user unknown" not in d.log()


def test_postmaster_entry_in_the_databases_wins(daemons):
    rules = H.standard_rules() + "\npostmaster@\n    maildir ~/Maildir/.postmaster/\n"
    uids = H.standard_uids() + "postmaster@ alice\n"
    d = daemons("pmdb", rules=rules, uids=uids)
    d.start()
    msg = H.make_message(to="postmaster")
    with H.Conn(d.lmtp_port) as c:
        c.hello(lmtp=True)
        rr, final = H.transaction(c, ["Postmaster"], msg, lmtp=True)
        H.expect(rr[0], 250)
        H.expect(final[0], 250)
    H.wait_maildir(d.maildir("alice") / ".postmaster", H.mid(msg))


def test_only_postmaster_goes_without_a_domain(daemons):
    d = daemons("pmbare")
    d.start()
    with H.Conn(d.smtp_port) as c:
        c.hello()
        H.expect(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        H.expect(c.cmd("RCPT TO:<alice>"), 501, "5.1.3")
        H.expect(c.cmd("RCPT TO:<postmasterx>"), 501, "5.1.3")
        H.expect(c.cmd("RCPT TO:<postmaster+x@example.test>"), 550, "5.1.1")
        H.expect(c.cmd("RCPT TO:<postmaster> NOTIFY=NEVER"), 555, "5.5.4")


# ------------------------------------------------------------- owner=

def test_unknown_socket_owner_is_a_config_error(daemons, tmp_path):
    sock = tmp_path / "owned.sock"
    d = daemons("badowner", compile=False, settings={
        "listen": f"lmtp unix:{sock} mode=0600 owner=no-such-user-xyz"})
    res = d.check_config()
    assert res.returncode == 1, res.out
    line = next(i for i, l in enumerate(d.conf.read_text().splitlines(), 1)
                if "owner=" in l)
    assert f"{d.conf}:{line}: listen: owner=no-such-user-xyz: unknown user" in res.out


@pytest.mark.skipif(not H.IS_ROOT, reason="needs a second account (root)")
def test_single_user_mode_cannot_give_a_socket_away(daemons, tmp_path):
    sock = tmp_path / "owned.sock"
    d = daemons("giveaway", compile=False, settings={
        "listen": f"lmtp unix:{sock} mode=0600 owner=root"})
    res = d.check_config()
    assert res.returncode == 1, res.out
    line = next(i for i, l in enumerate(d.conf.read_text().splitlines(), 1)
                if "owner=" in l)
    assert f"{d.conf}:{line}: listen unix:{sock}: owner=root needs the daemon " \
        "started as root" in res.out


@pytest.mark.skipif(not H.IS_ROOT, reason="root mode needs root")
def test_root_mode_socket_owner_and_mode(tmp_path_factory, monkeypatch):
    """Root mode: owner= and mode= on the LMTP socket, the open files limit
    against a low hard limit, and a postmaster the databases do not know."""
    base = tmp_path_factory.mktemp("owner")
    H.make_traversable(base)
    users = []
    d = None
    try:
        svc = H.create_user("mpt-s-")
        users.append(svc)
        mta = H.create_user("mpt-m-")
        users.append(mta)
        other = H.create_user("mpt-o-")
        users.append(other)
        sockdir = base / "private"
        sockdir.mkdir()
        os.chmod(sockdir, 0o755)            # as reachable as it gets
        sock = sockdir / "mailprocd"
        d = H.Daemon(base / "d", run_as=None, single_user=False,
                     settings={"user": svc.name, "max_sessions": "5000",
                               "listen": f"lmtp unix:{sock} mode=0600 owner={mta.name}"},
                     rules="# no entries\n", uids="# no entries\n")
        d.compile()
        # started under a hard limit of 4096, which 5000 sessions exceed:
        # as root the receiver raises the hard limit too, when it may
        limited = base / "limited-mailprocd"
        limited.write_text("#!/bin/sh\nexec prlimit --nofile=1024:4096 -- "
                           f"{H.mailprocd_bin()} \"$@\"\n")
        limited.chmod(0o755)
        monkeypatch.setattr(H, "mailprocd_bin", lambda: limited)
        d.start()
        rsoft, rhard = nofile_limits(receiver_pid(d))
        if has_cap_sys_resource():
            m = d.wait_log(r"receiver\[\d+\]: open files limit raised from 1024 to (\d+)")
            assert rsoft == rhard == int(m.group(1)) >= 2 * 5000, (rsoft, rhard)
        else:
            # a container without CAP_SYS_RESOURCE: all of the old hard
            # limit, and a warning with the numbers
            d.wait_log(r"receiver\[\d+\]: warning: open files limit: max_sessions 5000 "
                       r"needs \d+ descriptors, got 4096 \(hard limit 4096\)")
            assert (rsoft, rhard) == (4096, 4096)
        st = os.stat(sock)
        assert stat.S_ISSOCK(st.st_mode)
        assert st.st_uid == mta.uid, (st.st_uid, mta)
        assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)

        probe = ("import socket,sys\n"
                 "s=socket.socket(socket.AF_UNIX)\n"
                 "s.settimeout(10)\n"
                 "try:\n"
                 "    s.connect(sys.argv[1]); print(s.recv(100).decode().split()[0])\n"
                 "except PermissionError: print('EACCES')\n")

        def greet_as(acct):
            res = subprocess.run(H.as_user(acct, [sys.executable, "-c", probe, sock]),
                                 capture_output=True, text=True, timeout=H.DEADLINE)
            assert res.returncode == 0, res.stderr
            return res.stdout.strip()

        assert greet_as(mta) == "220", "the owner (the MTA) connects"
        assert greet_as(other) == "EACCES", "no other local user may inject mail"

        # root mode, no postmaster in the databases: accepted, kept in the
        # queue (no account to deliver as), neither lost nor "user unknown"
        msg = H.make_message(to="postmaster")
        with H.Conn(d.lmtp_port) as c:
            c.hello(lmtp=True)
            rr, final = H.transaction(c, ["postmaster"], msg, lmtp=True)
            H.expect(rr[0], 250)
            H.expect(final[0], 250)
        d.wait_log(r"no destination for postmaster")
        assert d.queue_files("active") + d.queue_files("deferred")
        assert "user unknown" not in d.log()
        d.stop()
        d = None
    finally:
        if d is not None:
            d.emergency_kill()
        for u in users:
            H.delete_user(u)
