"""test_policy_service.py - the Postfix policy service (`listen policy`)
over raw sockets, TCP and unix, against the real daemon: every
protocol_state, persistent and pipelined connections, the answers in
SPEC's order (unknown recipient 550 5.1.1, size over the recipient's
limit 552 5.3.4, DUNNO for other domains), the size check at
END-OF-MESSAGE for the transaction's recipients, garbage and stalled
clients (only that connection suffers), the connection limit, the idle
timeout, reloads, and its own unprivileged process."""

import os
import signal
import socket
import time

import pytest

import mpharness as H
from mpharness import PolicyConn, policy_request, rcpt_request

RULES = H.standard_rules() + """
sam@example.test    maxsize=3K
    maildir ~/Maildir/

anyone@
    maildir ~/Maildir/
"""

UIDS = H.standard_uids() + """
sam@example.test        sam
anyone@                 anyone
"""

HOMES = H.STANDARD_USERS + ("sam", "anyone")
UNKNOWN = "550 5.1.1 User unknown"
TOO_BIG = "552 5.3.4 Message too big for recipient"


def policy_daemon(root, run_as, **settings):
    s = {"max_message_size": "10M"}
    s.update(settings)
    return H.PolicyDaemon(root, run_as=run_as, rules=RULES, uids=UIDS, homes=HOMES,
                          settings=s)


@pytest.fixture(scope="module")
def d(tmp_path_factory, run_as):
    dm = policy_daemon(tmp_path_factory.mktemp("policy"), run_as)
    dm.compile()
    dm.start()
    yield dm
    dm.stop()


@pytest.fixture
def pdaemons(tmp_path, run_as):
    """Function-scoped policy daemons: pdaemons(name, **settings), started."""
    made = []

    def make(name="d", **settings):
        dm = policy_daemon(tmp_path / name, run_as, **settings)
        dm.compile()
        dm.start()
        made.append(dm)
        return dm
    yield make
    for dm in made:
        if dm.proc is not None:
            dm.stop()


def targets(d):
    return {"tcp": d.policy_port, "unix": d.policy_sock}


# ------------------------------------------------------------ states

OTHER_STATES = ["CONNECT", "EHLO", "HELO", "MAIL", "DATA", "VRFY", "ETRN"]


@pytest.mark.parametrize("via", ["tcp", "unix"])
@pytest.mark.parametrize("state", OTHER_STATES)
def test_other_states_answer_dunno(d, via, state):
    """Every state but RCPT and END-OF-MESSAGE: DUNNO, even for a recipient
    the databases do not know."""
    with PolicyConn(targets(d)[via]) as c:
        assert c.ask(rcpt_request("nobody@example.test", state=state,
                                  etrn_domain="example.test")) == "DUNNO"


@pytest.mark.parametrize("via", ["tcp", "unix"])
def test_rcpt_known_recipient_dunno(d, via):
    with PolicyConn(targets(d)[via]) as c:
        assert c.ask(rcpt_request("alice@example.test")) == "DUNNO"
        assert c.ask(rcpt_request("Alice+tag@EXAMPLE.test")) == "DUNNO"


@pytest.mark.parametrize("via", ["tcp", "unix"])
def test_rcpt_unknown_recipient_550(d, via):
    with PolicyConn(targets(d)[via]) as c:
        assert c.ask(rcpt_request("nobody@example.test")) == UNKNOWN


def test_end_of_message_single_recipient(d):
    """A transaction not seen at RCPT: END-OF-MESSAGE checks the recipient
    Postfix names."""
    with PolicyConn(d.policy_port) as c:
        assert c.ask(rcpt_request("alice@example.test", state="END-OF-MESSAGE",
                                  size=5000, count=1, instance="eom.1")) == "DUNNO"
        assert c.ask(rcpt_request("sam@example.test", state="END-OF-MESSAGE",
                                  size=5000, count=1, instance="eom.2")) == TOO_BIG


# ------------------------------------------------------------ domains

def test_other_domain_dunno(d):
    """A domain the databases do not know: DUNNO, so that Postfix goes on
    with its other restrictions; `anyone@` makes no domain known."""
    with PolicyConn(d.policy_port) as c:
        assert c.ask(rcpt_request("nobody@elsewhere.test")) == "DUNNO"
        assert c.ask(rcpt_request("anyone@elsewhere.test", size=99999999)) == "DUNNO"
        assert c.ask(rcpt_request("nobody@sub.example.test")) == "DUNNO"


def test_postmaster_always_accepted(d):
    with PolicyConn(d.policy_port) as c:
        assert c.ask(rcpt_request("postmaster@example.test")) == "DUNNO"
        assert c.ask(rcpt_request("PostMaster@Example.Test")) == "DUNNO"


def test_recompiled_databases_seen(d):
    """A new recipient after `mailprocctl db compile` is known at the next
    request, on the same connection."""
    with PolicyConn(d.policy_port) as c:
        assert c.ask(rcpt_request("newbie@example.test")).startswith("550 5.1.1")
        try:
            d.write_sources(rules=RULES + "newbie@example.test\n    maildir ~/Maildir/\n",
                            uids=UIDS + "newbie@example.test alice\n")
            d.compile()
            assert c.ask(rcpt_request("newbie@example.test")) == "DUNNO"
        finally:
            d.write_sources(rules=RULES, uids=UIDS)
            d.compile()
        assert c.ask(rcpt_request("newbie@example.test")).startswith("550 5.1.1")


# ------------------------------------------------------------ sizes

def test_size_over_entry_maxsize_552(d):
    with PolicyConn(d.policy_port) as c:
        assert c.ask(rcpt_request("sam@example.test", size=3 * 1024 + 1)) == TOO_BIG
        assert c.ask(rcpt_request("sam@example.test", size=3 * 1024)) == "DUNNO"
        assert c.ask(rcpt_request("sam@example.test", size=0)) == "DUNNO"
        assert c.ask(rcpt_request("alice@example.test", size=3 * 1024 + 1)) == "DUNNO"


def test_size_over_max_message_size_552(d):
    with PolicyConn(d.policy_port) as c:
        assert c.ask(rcpt_request("alice@example.test", size=10 * 1024 * 1024 + 1)) == TOO_BIG
        assert c.ask(rcpt_request("alice@example.test", size=10 * 1024 * 1024)) == "DUNNO"


def test_unknown_comes_before_size(d):
    with PolicyConn(d.policy_port) as c:
        assert c.ask(rcpt_request("nobody@example.test", size=10 ** 12)) == UNKNOWN


def test_end_of_message_two_recipients(d):
    """alice (no limit of her own) and sam (maxsize=3K) in one transaction:
    the actual size at END-OF-MESSAGE is checked against both; the answer
    for a small message is DUNNO."""
    with PolicyConn(d.policy_port) as c:
        for inst, size, want in (("two.1", 5000, TOO_BIG), ("two.2", 3000, "DUNNO")):
            assert c.ask(rcpt_request("alice@example.test", instance=inst, count=0)) == "DUNNO"
            assert c.ask(rcpt_request("sam@example.test", instance=inst, count=1)) == "DUNNO"
            assert c.ask(rcpt_request("", state="DATA", instance=inst, count=2)) == "DUNNO"
            assert c.ask(rcpt_request("", state="END-OF-MESSAGE", instance=inst,
                                      count=2, size=size)) == want


def test_end_of_message_over_another_connection(d):
    """Postfix may reconnect in the middle of a transaction: the recipients
    are remembered by instance, not by connection."""
    with PolicyConn(d.policy_port) as c:
        assert c.ask(rcpt_request("sam@example.test", instance="re.1", count=0)) == "DUNNO"
        assert c.ask(rcpt_request("alice@example.test", instance="re.1", count=1)) == "DUNNO"
    with PolicyConn(d.policy_sock) as c:
        assert c.ask(rcpt_request("", state="END-OF-MESSAGE", instance="re.1",
                                  count=2, size=4000)) == TOO_BIG


def test_end_of_message_ignores_recipient_refused_later(d):
    """sam answered DUNNO but a later restriction of Postfix refused him
    (recipient_count did not grow): his limit does not count."""
    with PolicyConn(d.policy_port) as c:
        assert c.ask(rcpt_request("sam@example.test", instance="ref.1", count=0)) == "DUNNO"
        assert c.ask(rcpt_request("alice@example.test", instance="ref.1", count=0)) == "DUNNO"
        assert c.ask(rcpt_request("", state="END-OF-MESSAGE", instance="ref.1",
                                  count=1, size=5000)) == "DUNNO"


# ------------------------------------------------------------ connections

def test_many_requests_on_one_connection(d):
    with PolicyConn(d.policy_sock) as c:
        for i in range(300):
            rcpt = "alice@example.test" if i % 3 else f"nobody{i}@example.test"
            want = "DUNNO" if i % 3 else "550 5.1.1 User unknown"
            assert c.ask(rcpt_request(rcpt, instance=f"many.{i}")) == want


@pytest.mark.parametrize("via", ["tcp", "unix"])
def test_pipelined_requests_answered_in_order(d, via):
    reqs, want = [], []
    for i in range(100):
        kind = i % 4
        if kind == 0:
            reqs.append(rcpt_request(f"nobody{i}@example.test"))
            want.append(UNKNOWN)
        elif kind == 1:
            reqs.append(rcpt_request("sam@example.test", size=10000))
            want.append(TOO_BIG)
        elif kind == 2:
            reqs.append(rcpt_request("alice@example.test", state="MAIL"))
            want.append("DUNNO")
        else:
            reqs.append(rcpt_request(f"x{i}@elsewhere.test"))
            want.append("DUNNO")
    with PolicyConn(targets(d)[via]) as c:
        c.send(b"".join(reqs))
        assert [c.answer() for _ in reqs] == want


def test_crlf_requests_accepted(d):
    with PolicyConn(d.policy_port) as c:
        req = rcpt_request("nobody@example.test").replace(b"\n", b"\r\n")
        assert c.ask(req) == UNKNOWN


GARBAGE = {
    "binary": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(256)),
    "nul_byte": b"request=smtpd_access_policy\nsender=a\x00b@remote.test\n\n",
    "control_byte": b"request=smtpd_access_policy\nhelo_name=a\x1bb\n\n",
    "long_line": b"request=smtpd_access_policy\nsender=" + b"a" * 5120 + b"\n\n",
    "long_line_with_equals": b"request=smtpd_access_policy\nsender=" + b"a=" * 2560 + b"\n\n",
    "101_attributes": b"request=smtpd_access_policy\n" +
    b"".join(b"x%d=%d\n" % (i, i) for i in range(100)) + b"\n",
    "no_equals": b"request=smtpd_access_policy\nhello there\n\n",
    "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
@pytest.mark.parametrize("via", ["tcp", "unix"])
def test_garbage_closes_only_that_connection(d, kind, via):
    """A request that cannot be parsed closes its connection; another one,
    open before and after, keeps being answered."""
    with PolicyConn(targets(d)[via]) as other:
        assert other.ask(rcpt_request("nobody@example.test")) == UNKNOWN
        with PolicyConn(targets(d)[via]) as bad:
            assert bad.ask(rcpt_request("alice@example.test")) == "DUNNO"
            try:
                bad.send(GARBAGE[kind])
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert bad.closed_by_server(), "the service kept a garbage connection open"
            assert bad.buf == b"", f"answered garbage with {bad.buf!r}"
        assert other.ask(rcpt_request("nobody@example.test")) == UNKNOWN
    d.wait_log(r"policy protocol error")


def test_garbage_after_pipelined_requests(d):
    """The answers due before the garbage still go out, then the close."""
    with PolicyConn(d.policy_port) as c:
        c.send(rcpt_request("nobody@example.test") + rcpt_request("alice@example.test") +
               GARBAGE["binary"])
        assert c.answer() == UNKNOWN
        assert c.answer() == "DUNNO"
        assert c.closed_by_server()
        assert c.buf == b""


def test_stalled_half_request_holds_up_nobody(d):
    """A client that sends half a request and stalls: the others are
    answered meanwhile, and the stalled one is answered once it goes on."""
    req = rcpt_request("nobody@example.test")
    with PolicyConn(d.policy_port) as stalled:
        stalled.send(req[:len(req) // 2])
        for t in (d.policy_port, d.policy_sock):
            with PolicyConn(t) as other:
                for _ in range(20):
                    assert other.ask(rcpt_request("alice@example.test")) == "DUNNO"
        stalled.send(req[len(req) // 2:])
        assert stalled.answer() == UNKNOWN


def test_client_not_reading_answers_holds_up_nobody(d):
    """A client that sends requests and reads no answer (its receive buffer
    small, so the answers back up at once): the service stops reading it
    and answers the others meanwhile."""
    greedy = socket.socket()
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    greedy.connect(("127.0.0.1", d.policy_port))
    try:
        greedy.setblocking(False)
        blob = rcpt_request("nobody@example.test") * 100
        sent, idle_since, rest = 0, time.monotonic(), memoryview(blob)
        while time.monotonic() - idle_since < 1.0 and sent < 64 << 20:
            try:
                n = greedy.send(rest)
                sent += n
                rest = rest[n:] if n < len(rest) else memoryview(blob)
                idle_since = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        assert sent < 64 << 20, "the service kept reading without anyone reading its answers"
        with PolicyConn(d.policy_sock) as other:
            for _ in range(10):
                assert other.ask(rcpt_request("nobody@example.test")) == UNKNOWN
    finally:
        greedy.close()


def test_idle_and_stalled_connections_time_out(pdaemons):
    dm = pdaemons("timeout", session_timeout="2s")
    with PolicyConn(dm.policy_port) as idle, PolicyConn(dm.policy_sock) as half:
        assert idle.ask(rcpt_request("alice@example.test")) == "DUNNO"
        half.send(b"request=smtpd_access_policy\nprotocol_state=RCPT\n")
        assert idle.closed_by_server(H.DEADLINE)
        assert half.closed_by_server(H.DEADLINE)
    dm.wait_log(r"idle for 2 s in the middle of a request; closing")


def test_connection_limit(pdaemons):
    """max_sessions policy connections; the next one is closed at once, and
    a slot that frees up serves a new client."""
    dm = pdaemons("limit", max_sessions="3")
    conns = [PolicyConn(dm.policy_port if i % 2 else dm.policy_sock) for i in range(3)]
    try:
        for c in conns:
            assert c.ask(rcpt_request("alice@example.test")) == "DUNNO"
        with PolicyConn(dm.policy_port) as extra:
            try:
                extra.send(rcpt_request("alice@example.test"))
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert extra.closed_by_server()
            assert extra.buf == b""
        dm.wait_log(r"policy: too many connections \(3, max_sessions\)")
        for c in conns:
            assert c.ask(rcpt_request("nobody@example.test")) == UNKNOWN
        conns.pop().close()

        def fresh_one_answers():
            try:
                with PolicyConn(dm.policy_port) as c:
                    return c.ask(rcpt_request("alice@example.test")) == "DUNNO"
            except (EOFError, OSError):
                return False
        H.wait_for(fresh_one_answers, what="a freed slot to take a new connection")
    finally:
        for c in conns:
            c.close()


# ------------------------------------------------------------ the process

def test_log_line_for_refusals(d):
    with PolicyConn(d.policy_port) as c:
        assert c.ask(rcpt_request("nobody@example.test", instance="log.1",
                                  sender="logged@remote.test")) == UNKNOWN
        assert c.ask(rcpt_request("sam@example.test", instance="log.2", size=99999,
                                  sender="logged@remote.test")) == TOO_BIG
    d.wait_log(r"policy: action=550 5\.1\.1 User unknown .*"
               r"sender=<logged@remote\.test> recipient=<nobody@example\.test> .*"
               r"instance=log\.1 reason=\"<nobody@example\.test>: no key")
    d.wait_log(r"policy: action=552 5\.3\.4 .*instance=log\.2 reason=\"size 99999 is over "
               r"3072, the maxsize= of the rules entry sam@example\.test\"")
    assert "policy: action=DUNNO" not in d.log()


def test_own_unprivileged_process(d):
    """The policy connections are served by `mailprocd/policy`, not by the
    receiver, and it runs as the daemon's user."""
    with PolicyConn(d.policy_port) as c:
        assert c.ask(rcpt_request("alice@example.test")) == "DUNNO"
        inode = H.wait_for(lambda: H._tcp_inode(d.policy_port, c.sock.getsockname()[1]),
                           5, "the server side in /proc/net/tcp")
        pid = H.pid_holding_socket(inode, d.descendants())
    assert pid and d.role(pid) == "mailprocd/policy"
    assert pid == d.policy_pid()
    with H.Conn(d.smtp_port) as smtp:
        receiver = [d.receiver_pid(smtp)]
    assert receiver[0] != pid
    # the receiver holds no policy socket
    fds = os.listdir(f"/proc/{receiver[0]}/fd")
    listen_inodes = set()
    for name in ("tcp", "tcp6", "unix"):
        try:
            lines = open(f"/proc/net/{name}").read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            f = line.split()
            if name == "unix":
                if len(f) >= 8 and f[-1] == str(d.policy_sock):
                    listen_inodes.add(f[6])
            elif f[1].endswith(":%04X" % d.policy_port) and f[3] == "0A":
                listen_inodes.add(f[9])
    assert len(listen_inodes) == 2, listen_inodes
    held = set()
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{receiver[0]}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            held.add(link[8:-1])
    assert not (held & listen_inodes), "the receiver still holds a policy listener"
    uids, _, _ = H.proc_ids(pid)
    want = d.run_as.uid if d.run_as else os.geteuid()
    assert set(uids) == {want}


def test_no_policy_listener_no_process(daemons):
    dm = daemons("nopolicy")
    dm.start()
    H.settle()
    # receiver, qmgr, spawner, relay
    assert len(dm.children()) == 4, [dm.role(p) for p in dm.children()]
    assert "mailprocd/policy[" not in dm.log()


def test_killed_service_restarted(pdaemons):
    dm = pdaemons("restart")
    pid = dm.policy_pid()
    assert pid
    os.kill(pid, signal.SIGKILL)
    dm.wait_log(r"policy \(pid %d\) killed by signal 9; restarting" % pid)

    def answers():
        try:
            with PolicyConn(dm.policy_port, timeout=2) as c:
                return c.ask(rcpt_request("nobody@example.test")) == UNKNOWN
        except (EOFError, OSError, TimeoutError):
            return False
    H.wait_for(answers, what="the restarted policy service to answer")


def test_unreadable_databases_answer_dunno(pdaemons):
    """The databases cannot be read (their link gone): DUNNO, with a log
    line, never a refusal; answers are right again once they are back."""
    dm = pdaemons("nodb")
    link = dm.db_dir / "current.mdb"
    target = os.readlink(link)
    with PolicyConn(dm.policy_port) as c:
        assert c.ask(rcpt_request("nobody@example.test")) == UNKNOWN
        link.unlink()
        try:
            assert c.ask(rcpt_request("nobody@example.test")) == "DUNNO"
            assert c.ask(rcpt_request("sam@example.test", size=99999)) == "DUNNO"
        finally:
            os.symlink(target, link)
        assert c.ask(rcpt_request("nobody@example.test")) == UNKNOWN
    dm.wait_log(r"policy: the databases cannot be read: .*current\.mdb.*; answering DUNNO")


def test_reload_new_limit(pdaemons):
    """SIGHUP with a smaller max_message_size: the policy service follows,
    on a connection opened before."""
    dm = pdaemons("reload")
    with PolicyConn(dm.policy_port) as c:
        assert c.ask(rcpt_request("alice@example.test", size=5000)) == "DUNNO"
        dm.settings["max_message_size"] = "4K"
        dm.conf.write_text(dm.config_text())
        H.chown_tree(dm.root, dm.run_as)
        os.kill(dm.pid, signal.SIGHUP)
        H.wait_for(lambda: c.ask(rcpt_request("alice@example.test", size=5000)) == TOO_BIG,
                   what="the policy service to use the reloaded max_message_size")


def test_stop_with_open_connections(pdaemons):
    """SIGTERM: open connections (one idle, one in the middle of a request)
    are closed and the daemon stops cleanly."""
    dm = pdaemons("stop")
    idle = PolicyConn(dm.policy_port)
    half = PolicyConn(dm.policy_sock)
    try:
        assert idle.ask(rcpt_request("alice@example.test")) == "DUNNO"
        half.send(b"request=smtpd_access_policy\n")
        H.settle()
        dm.stop()
        assert idle.closed_by_server(2)
        assert half.closed_by_server(2)
    finally:
        idle.close()
        half.close()


# ------------------------------------------------------------ users' own policies

USER_RULES = RULES + """
bruno@example.test
    maildir ~/Maildir/

gina@example.test    maxsize=8K
    maildir ~/Maildir/
"""

USER_UIDS = UIDS + """
bruno@example.test      bruno
bruno-alias@example.test bruno
gina@example.test       gina
"""

USER_POLICIES = {
    "bruno": """# bruno's own policy
block    sender  *@spam.test            "We do not take mail from you"
block    client  203.0.113.0/24
block    helo    /\\.dynamic\\./
block    client  2001:db8:bad::/48
block    sender  vip@friends.test       "never seen: allow wins"
allow    sender  *@friends.test
greylist on
maxsize  2K
""",
    "gina": "greylist on\n",
}
GREYLIST_DELAY = 2


@pytest.fixture(scope="module")
def ud(tmp_path_factory, run_as):
    dm = H.PolicyDaemon(tmp_path_factory.mktemp("userpol"), run_as=run_as,
                        rules=USER_RULES, uids=USER_UIDS,
                        homes=HOMES + ("bruno", "gina"),
                        settings={"max_message_size": "10M",
                                  "greylist_delay": f"{GREYLIST_DELAY}s",
                                  "greylist_max_age": "1h",
                                  "greylist_auto_allow": "0",
                                  "policy_sync_interval": "0"})
    for account, text in USER_POLICIES.items():
        pdir = dm.home(account) / ".mailprocd"
        pdir.mkdir(parents=True, exist_ok=True)
        (pdir / "policy").write_text(text)
        H.chown_tree(dm.home(account), run_as)
    dm.compile()
    dm.start()
    res = dm.ctl("policy", "sync")
    assert res.returncode == 0, res.out
    yield dm
    dm.stop()


def test_user_block_with_own_text(ud):
    with PolicyConn(ud.policy_port) as c:
        assert c.ask(rcpt_request("bruno@example.test", sender="x@spam.test")) == \
            "550 5.7.1 We do not take mail from you"
        # every address of the account
        assert c.ask(rcpt_request("bruno-alias@example.test", sender="y@spam.test")) == \
            "550 5.7.1 We do not take mail from you"
    ud.wait_log(r"policy: action=550 5\.7\.1 We do not take mail from you .*reason=\"blocked "
                r"by bruno's own policy, line 2: block sender \*@spam\.test")


@pytest.mark.parametrize("client,helo", [("203.0.113.77", "mail.remote.test"),
                                         ("192.0.2.1", "host.dynamic.isp.test"),
                                         ("2001:db8:bad:1::25", "mail.remote.test")])
def test_user_block_client_and_helo_default_text(ud, client, helo):
    with PolicyConn(ud.policy_sock) as c:
        req = rcpt_request("bruno@example.test", sender="ok@remote.test", client=client)
        req = req.replace(b"helo_name=mail.remote.test", f"helo_name={helo}".encode())
        assert c.ask(req) == "550 5.7.1 Refused by the recipient's own policy"


def test_user_allow_wins_over_block_and_greylist(ud):
    with PolicyConn(ud.policy_port) as c:
        assert c.ask(rcpt_request("bruno@example.test", sender="vip@friends.test")) == "DUNNO"
        assert c.ask(rcpt_request("bruno@example.test", sender="pal@friends.test",
                                  client="203.0.113.5")) == "DUNNO"


def test_user_allow_does_not_skip_maxsize(ud):
    with PolicyConn(ud.policy_port) as c:
        assert c.ask(rcpt_request("bruno@example.test", sender="pal@friends.test",
                                  size=2049)) == TOO_BIG
        assert c.ask(rcpt_request("bruno@example.test", sender="pal@friends.test",
                                  size=2048)) == "DUNNO"


def test_user_maxsize_at_end_of_message(ud):
    with PolicyConn(ud.policy_port) as c:
        assert c.ask(rcpt_request("alice@example.test", instance="um.1", count=0)) == "DUNNO"
        assert c.ask(rcpt_request("bruno@example.test", sender="pal@friends.test",
                                  instance="um.1", count=1)) == "DUNNO"
        assert c.ask(rcpt_request("", state="END-OF-MESSAGE", instance="um.1", count=2,
                                  size=4096)) == TOO_BIG


def test_user_greylisting_defers_then_passes(ud):
    """gina greylists: the first attempt is deferred, a retry before the
    delay too, a retry after it passes; another sender starts over."""
    import re
    sender = f"gl{os.getpid()}@remote.test"
    with PolicyConn(ud.policy_port) as c:
        first = c.ask(rcpt_request("gina@example.test", sender=sender, client="198.51.100.9"))
        m = re.fullmatch(r"450 4\.7\.1 Greylisted, retry in (\d+) seconds", first)
        assert m, first
        assert 1 <= int(m.group(1)) <= GREYLIST_DELAY
        # same /24: the same triplet
        assert c.ask(rcpt_request("gina@example.test", sender=sender,
                                  client="198.51.100.10")).startswith("450 4.7.1")
        H.wait_for(lambda: c.ask(rcpt_request("gina@example.test", sender=sender,
                                              client="198.51.100.9")) == "DUNNO",
                   what="the greylisted triplet to pass after greylist_delay")
        assert c.ask(rcpt_request("gina@example.test", sender="other" + sender,
                                  client="198.51.100.9")).startswith("450 4.7.1")
        # size is still checked (gina's entry: maxsize=8K)
        assert c.ask(rcpt_request("gina@example.test", sender=sender, client="198.51.100.9",
                                  size=9000)) == TOO_BIG
    ud.wait_log(r"policy: action=450 4\.7\.1 Greylisted, retry in \d+ seconds .*"
                r"recipient=<gina@example\.test> .*reason=\"greylisted: client 198\.51\.100\.9, "
                r"sender <gl\d+@remote\.test>, recipient <gina@example\.test> first seen")


def test_user_without_policy_untouched(ud):
    with PolicyConn(ud.policy_port) as c:
        assert c.ask(rcpt_request("alice@example.test", sender="x@spam.test",
                                  client="203.0.113.77")) == "DUNNO"


def test_pipelined_greylist_answers_in_order(ud):
    """Requests that wait for the greylist store and ones that do not,
    pipelined: the answers come in the order of the requests."""
    sender = f"pipe{os.getpid()}@remote.test"
    reqs = [rcpt_request("gina@example.test", sender=f"{i}{sender}", client="198.51.100.20")
            if i % 2 else rcpt_request(f"nobody{i}@example.test") for i in range(40)]
    with PolicyConn(ud.policy_port) as c:
        c.send(b"".join(reqs))
        answers = [c.answer() for _ in reqs]
    for i, a in enumerate(answers):
        if i % 2:
            assert a.startswith("450 4.7.1 Greylisted"), (i, a)
        else:
            assert a == UNKNOWN, (i, a)


# ------------------------------------------------------------ mailprocctl policy check

def policy_check(dm, request):
    res = dm.ctl("policy", "check", input=request)
    lines = res.stdout.decode().splitlines()
    return res, lines


def test_policy_check_unknown_and_size(d):
    res, lines = policy_check(d, rcpt_request("nobody@example.test"))
    assert res.returncode == 0, res.out
    assert lines[0] == "action=" + UNKNOWN
    assert "no key in rules or uid matches it" in res.out
    res, lines = policy_check(d, rcpt_request("sam@example.test", size=5000))
    assert lines[0] == "action=" + TOO_BIG
    assert "size 5000 is over 3072, the maxsize= of the rules entry sam@example.test" in res.out
    res, lines = policy_check(d, rcpt_request("x@elsewhere.test"))
    assert lines[0] == "action=DUNNO"
    assert "the databases know no address in the domain" in res.out
    res, lines = policy_check(d, rcpt_request("alice@example.test", state="ETRN"))
    assert lines[0] == "action=DUNNO"
    assert "nothing is checked at ETRN" in res.out


def test_policy_check_user_policy(ud):
    res, lines = policy_check(ud, rcpt_request("bruno@example.test", sender="z@spam.test"))
    assert res.returncode == 0, res.out
    assert lines[0] == "action=550 5.7.1 We do not take mail from you"
    assert "blocked by bruno's own policy, line 2: block sender *@spam.test" in res.out
    res, lines = policy_check(ud, rcpt_request("bruno@example.test", sender="a@friends.test"))
    assert lines[0] == "action=DUNNO"
    assert "allowed by bruno's own policy, line 7: allow sender *@friends.test" in res.out


def test_policy_check_greylist_is_a_dry_run(ud):
    """policy check peeks at the greylist state and writes nothing: asked
    again after greylist_delay it still says the triplet is new (had the
    first check recorded it, the second would pass), while the service's
    own first attempt is recorded and passes after the delay."""
    import re
    sender = f"dry{os.getpid()}@remote.test"
    req = rcpt_request("gina@example.test", sender=sender, client="198.51.100.77")
    for i in range(2):
        if i:
            time.sleep(GREYLIST_DELAY + 1)
        res, lines = policy_check(ud, req)
        assert res.returncode == 0, res.out
        assert re.fullmatch(r"action=450 4\.7\.1 Greylisted, retry in \d+ seconds", lines[0]), \
            res.out
        assert "gina's own policy: greylist on" in res.out
    with PolicyConn(ud.policy_port) as c:
        assert c.ask(req).startswith("450 4.7.1 Greylisted")
        H.wait_for(lambda: policy_check(ud, req)[1][0] == "action=DUNNO",
                   what="policy check to see the triplet the service recorded pass")


def test_policy_check_bad_input(d):
    res = d.ctl("policy", "check", input=b"request=smtpd_access_policy\nsender=\x01\n\n")
    assert res.returncode == 1
    assert "not a policy request: a control character" in res.out
    res = d.ctl("policy", "check", input=b"")
    assert res.returncode == 1
    assert "no request on standard input" in res.out
    # the final empty line may be left out
    res, lines = policy_check(d, rcpt_request("nobody@example.test")[:-1])
    assert lines[0] == "action=" + UNKNOWN


# ------------------------------------------------------------ greylist state in Redis

def redis_mod():
    import test_greylist_redis as R
    if R.REDIS_SERVER is None:
        pytest.skip("redis-server not installed")
    return R


@pytest.fixture
def redis_daemon(tmp_path, run_as):
    """(daemon, redis): a policy daemon whose greylist state is in a
    private redis-server; gina greylists."""
    R = redis_mod()
    r = R.Redis(tmp_path)
    r.start()
    dm = H.PolicyDaemon(tmp_path / "d", run_as=run_as, rules=USER_RULES, uids=USER_UIDS,
                        homes=HOMES + ("bruno", "gina"),
                        settings={"greylist_delay": "1h", "greylist_max_age": "1d",
                                  "greylist_auto_allow": "0", "policy_sync_interval": "0",
                                  "policy_state": f"redis:127.0.0.1:{r.port}"})
    pdir = dm.home("gina") / ".mailprocd"
    pdir.mkdir(parents=True, exist_ok=True)
    (pdir / "policy").write_text("greylist on\n")
    H.chown_tree(dm.home("gina"), run_as)
    dm.compile()
    dm.start()
    try:
        res = dm.ctl("policy", "sync")
        assert res.returncode == 0, res.out
        yield dm, r
    finally:
        r.resume() if r.proc else None
        if dm.proc is not None:
            dm.stop()
        r.stop()


def gina(i, client="198.51.100.30"):
    return rcpt_request("gina@example.test", sender=f"r{i}-{os.getpid()}@remote.test",
                        client=client)


def test_redis_pipelined_answers_in_order(redis_daemon):
    """Answers that wait for Redis and answers that do not, pipelined: in
    the order of the requests."""
    dm, r = redis_daemon
    reqs = [gina(i) if i % 2 else rcpt_request(f"nobody{i}@example.test") for i in range(60)]
    with PolicyConn(dm.policy_port) as c:
        c.send(b"".join(reqs))
        answers = [c.answer() for _ in reqs]
    for i, a in enumerate(answers):
        if i % 2:
            assert a.startswith("450 4.7.1 Greylisted, retry in "), (i, a)
        else:
            assert a == UNKNOWN, (i, a)
    assert r.keys(), "nothing was written to Redis"


def test_redis_stalled_holds_up_only_its_connection(redis_daemon):
    """Redis stops answering: a request waiting for it holds back the
    answers behind it on its own connection only, and is answered DUNNO
    (with a log line) once the greylist store gives up on Redis."""
    dm, r = redis_daemon
    with PolicyConn(dm.policy_port) as waiting, PolicyConn(dm.policy_sock) as other:
        assert waiting.ask(gina(0)).startswith("450 4.7.1")    # connected to Redis
        r.pause()
        try:
            waiting.send(gina(1) + rcpt_request("nobody@example.test"))
            for _ in range(5):
                assert other.ask(rcpt_request("nobody@example.test")) == UNKNOWN
            assert waiting.answer() == "DUNNO"
            assert waiting.answer() == UNKNOWN
        finally:
            r.resume()
    dm.wait_log(r"policy: greylisting: its state is unavailable; answering DUNNO")


def test_redis_connection_closed_while_waiting(redis_daemon):
    """A connection closed while its request waits for Redis: the greylist
    request is cancelled, nothing is written to the gone connection, and
    the service goes on (under the sanitizers: no use after free)."""
    dm, r = redis_daemon
    with PolicyConn(dm.policy_port) as c:
        assert c.ask(gina(0)).startswith("450 4.7.1")
    r.pause()
    try:
        for i in range(1, 6):
            with PolicyConn(dm.policy_port) as gone:
                gone.send(gina(i))
        H.settle()
    finally:
        r.resume()
    H.settle()
    with PolicyConn(dm.policy_sock) as c:
        assert c.ask(rcpt_request("nobody@example.test")) == UNKNOWN
        assert c.ask(gina(99)).startswith("450 4.7.1")
    dm.assert_running("after connections closed while waiting for Redis")
    assert dm.policy_pid()


def test_redis_down_answers_dunno(tmp_path, run_as):
    """policy_state redis: with no Redis there: greylisting answers DUNNO
    and says so in the log, never a stall."""
    [port] = H.free_ports(1)
    dm = H.PolicyDaemon(tmp_path / "d", run_as=run_as, rules=USER_RULES, uids=USER_UIDS,
                        homes=HOMES + ("bruno", "gina"),
                        settings={"greylist_delay": "1h", "policy_sync_interval": "0",
                                  "policy_state": f"redis:127.0.0.1:{port}"})
    pdir = dm.home("gina") / ".mailprocd"
    pdir.mkdir(parents=True, exist_ok=True)
    (pdir / "policy").write_text("greylist on\n")
    H.chown_tree(dm.home("gina"), run_as)
    dm.compile()
    dm.start()
    try:
        assert dm.ctl("policy", "sync").returncode == 0
        with PolicyConn(dm.policy_port) as c:
            for i in range(3):
                assert c.ask(gina(i)) == "DUNNO"
            assert c.ask(rcpt_request("nobody@example.test")) == UNKNOWN
        dm.wait_log(r"policy: greylisting: its state is unavailable; answering DUNNO")
    finally:
        dm.stop()


def test_stop_answers_what_is_pending(redis_daemon):
    """SIGTERM while a request waits for a stalled Redis, with another
    request pipelined behind it: both are answered, in order, before the
    connection closes and the daemon stops."""
    dm, r = redis_daemon
    with PolicyConn(dm.policy_port) as c:
        assert c.ask(gina(0)).startswith("450 4.7.1")     # connected to Redis
        r.pause()
        try:
            c.send(gina(1) + rcpt_request("nobody@example.test"))
            os.kill(dm.pid, signal.SIGTERM)
            assert c.answer() == "DUNNO"
            assert c.answer() == UNKNOWN
            assert c.closed_by_server()
        finally:
            r.resume()
        dm.stop(send_signal=False)


# ------------------------------------------------------------ root mode

@pytest.mark.skipif(not H.IS_ROOT, reason="root mode needs root (CI runs as root)")
def test_root_mode_service_runs_as_user(tmp_path):
    """Started as root: the policy service runs as `user`, and `mailprocctl
    policy check` run by root (as user too) leaves nothing in state_dir
    that the service could not open."""
    H.make_traversable(tmp_path)
    users, dm = [], None
    try:
        svc = H.create_user("mpt-s-")
        users.append(svc)
        acct = H.create_user("mpt-g-", home=tmp_path / "g")
        users.append(acct)
        home = tmp_path / "g"
        (home / ".mailprocd").mkdir(parents=True)
        (home / ".mailprocd" / "policy").write_text("greylist on\n")
        os.chmod(home, 0o700)
        H.chown_tree(home, acct)
        dm = H.PolicyDaemon(tmp_path / "d", run_as=None, single_user=False,
                            rules="g@example.test\n    maildir ~/Maildir/\n",
                            uids=f"g@example.test {acct.name}\n",
                            settings={"user": svc.name, "greylist_delay": "1h",
                                      "policy_sync_interval": "0"})
        dm.compile()
        dm.start()
        assert dm.ctl("policy", "sync").returncode == 0
        pid = H.wait_for(dm.policy_pid, what="the policy service's pid")
        uids, gids, _ = H.proc_ids(pid)
        assert set(uids) == {svc.uid} and set(gids) == {svc.gid}
        req = rcpt_request("g@example.test", sender="root-mode@remote.test")
        # the service stopped, its LMDB lock files gone (as after a
        # cleanup): the check run by root must not create them as root
        dm.stop()
        state = dm.db_dir / "state"
        for f in state.glob("*-lock"):
            f.unlink()
        res = dm.ctl("policy", "check", input=req)
        assert res.returncode == 0, res.out
        assert res.stdout.decode().startswith("action=450 4.7.1 Greylisted"), res.out
        for f in state.iterdir():
            assert f.stat().st_uid == svc.uid, f"{f} is not the user's"
        dm.start()
        with PolicyConn(dm.policy_port) as c:
            assert c.ask(req).startswith("450 4.7.1 Greylisted")
            assert c.ask(rcpt_request("x@example.test")) == UNKNOWN
    finally:
        try:
            if dm is not None and dm.proc is not None:
                dm.stop()
        finally:
            for u in users:
                H.delete_user(u)
