"""test_metrics_edge.py - the receiver's and the policy service's figures
as GET /metrics shows them (`listen metrics`), against the real daemon over
real sockets: sessions by protocol (SMTP, LMTP, policy) open now and in
all; N messages move mailprocd_messages_received_total by exactly N, with
their recipients and bytes (the size= of their log lines); every 4xx/5xx
reply the receiver gives moves exactly its (reason, code) sample of
mailprocd_rejections_total by one, and no other, its code being the
reply's enhanced code; each policy answer moves exactly its (action,
reason) sample, and a request that cannot be parsed the bad requests.
The exposition is parsed with python3-prometheus-client."""

import os
import re
import signal
import smtplib
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import mpharness as H
from mpharness import Conn, PolicyConn, expect, rcpt_request

RULES = H.standard_rules() + """
sam@example.test    maxsize=3K
    maildir ~/Maildir/

bruno@example.test
    maildir ~/Maildir/

gina@example.test
    maildir ~/Maildir/
"""

UIDS = H.standard_uids() + """
sam@example.test        sam
bruno@example.test      bruno
gina@example.test       gina
"""

HOMES = H.STANDARD_USERS + ("sam", "bruno", "gina")

LISTS = """
devs@lists.example.test      mailman3  lmtp:127.0.0.1:{port}   members-only
"""
MEMBERS = "devs@lists.example.test   member@example.org\n"

POLICIES = {
    "bruno": 'block sender *@spam.test "Not from you"\nallow sender *@friends.test\n',
    "gina": "greylist on\n",
}

MAX_SIZE = 100 * 1024
MAX_RECIPIENTS = 3
MAX_SESSIONS = 8
MAX_PER_CLIENT = 4

REJECTIONS = "mailprocd_rejections_total"
ANSWERS = "mailprocd_policy_answers_total"
BAD_REQUESTS = "mailprocd_policy_bad_requests_total"


class MetricsDaemon(H.PolicyDaemon):
    """A PolicyDaemon that also serves GET /metrics on a loopback port."""

    def __init__(self, root, **kw):
        [self.metrics_port] = H.free_ports(1)
        super().__init__(root, **kw)

    def config_text(self):
        return super().config_text() + f"listen metrics 127.0.0.1:{self.metrics_port}\n"

    def wait_ready(self):
        super().wait_ready()
        H.wait_for(lambda: self.try_scrape() is not None, what="GET /metrics to answer")

    def try_scrape(self):
        try:
            return scrape(self)
        except OSError:
            return None


def scrape(d):
    """Every sample of one GET /metrics: {(name, ((label, value), ...)): value}."""
    url = f"http://127.0.0.1:{d.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=H.REPLY_TIMEOUT) as r:
        assert r.status == 200
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"sample {key} twice"
            out[key] = s.value
    return out


def value(figures, name, **labels):
    return figures[(name, tuple(sorted(labels.items())))]


def moved(before, after, name):
    """The samples of name that changed: {((label, value), ...): delta}."""
    keys = {k for k in list(before) + list(after) if k[0] == name}
    return {k[1]: after.get(k, 0) - before.get(k, 0) for k in keys
            if after.get(k, 0) != before.get(k, 0)}


def one_rejection(reason, code, n=1):
    return {(("code", code), ("reason", reason)): n}


def one_answer(action, reason):
    return {(("action", action), ("reason", reason)): 1}


@pytest.fixture(scope="module")
def d(tmp_path_factory, run_as):
    [nobody] = H.free_ports(1)      # the list manager: RCPT-time checks only
    dm = MetricsDaemon(tmp_path_factory.mktemp("medge"), run_as=run_as, rules=RULES,
                       uids=UIDS, homes=HOMES,
                       settings={"max_message_size": str(MAX_SIZE),
                                 "max_recipients": str(MAX_RECIPIENTS),
                                 "max_sessions": str(MAX_SESSIONS),
                                 "max_sessions_per_client": str(MAX_PER_CLIENT),
                                 "members_source": "file",
                                 "greylist_delay": "1h",
                                 "policy_sync_interval": "0"})
    dm.write_sources(lists=LISTS.format(port=nobody))
    (dm.src_dir / "members").write_text(MEMBERS)
    for account, text in POLICIES.items():
        pdir = dm.home(account) / ".mailprocd"
        pdir.mkdir(parents=True, exist_ok=True)
        (pdir / "policy").write_text(text)
    H.chown_tree(dm.root, run_as)
    dm.compile()
    dm.start()
    res = dm.ctl("policy", "sync")
    assert res.returncode == 0, res.out
    yield dm
    dm.stop()


# ------------------------------------------------------------ sessions

def wait_no_sessions(d):
    """Sessions of earlier tests may take a moment to be freed."""
    def none_open():
        f = scrape(d)
        return all(value(f, "mailprocd_sessions", protocol=p) == 0
                   for p in ("smtp", "lmtp", "policy"))
    H.wait_for(none_open, what="no session left open")


def test_sessions_by_protocol(d):
    """Sessions open now and in all, by protocol: SMTP, LMTP over TCP and
    a unix socket, policy; the gauges go back to 0 when they close."""
    wait_no_sessions(d)
    before = scrape(d)
    conns = [Conn(d.smtp_port), Conn(d.smtp_port), Conn(d.lmtp_port), Conn(d.sock_path),
             Conn(d.lmtp_port)]
    pconns = [PolicyConn(d.policy_port), PolicyConn(d.policy_sock)]
    try:
        for c in conns:
            expect(c.reply(), 220)
        for p in pconns:
            assert p.ask(rcpt_request("alice@example.test")) == "DUNNO"
        now = scrape(d)
        assert value(now, "mailprocd_sessions", protocol="smtp") == 2
        assert value(now, "mailprocd_sessions", protocol="lmtp") == 3
        assert value(now, "mailprocd_sessions", protocol="policy") == 2
        assert moved(before, now, "mailprocd_sessions_started_total") == {
            (("protocol", "smtp"),): 2, (("protocol", "lmtp"),): 3,
            (("protocol", "policy"),): 2}
    finally:
        for c in conns + pconns:
            c.close()

    def all_closed():
        f = scrape(d)
        return all(value(f, "mailprocd_sessions", protocol=p) == 0
                   for p in ("smtp", "lmtp", "policy"))
    H.wait_for(all_closed, what="the session gauges back at 0")


def test_sessions_of_a_killed_process_not_counted_after_it(d):
    """The receiver and the policy service killed with sessions open: the
    new ones start their gauges at 0, the totals go on."""
    wait_no_sessions(d)
    conns = [Conn(d.smtp_port), Conn(d.lmtp_port)]
    pconn = PolicyConn(d.policy_port)
    try:
        for c in conns:
            expect(c.reply(), 220)
        assert pconn.ask(rcpt_request("alice@example.test")) == "DUNNO"
        before = scrape(d)
        assert value(before, "mailprocd_sessions", protocol="smtp") == 1
        assert value(before, "mailprocd_sessions", protocol="policy") == 1
        receiver, policy = d.receiver_pid(conns[0]), d.policy_pid()
        os.kill(receiver, signal.SIGKILL)
        os.kill(policy, signal.SIGKILL)
        H.wait_for(lambda: not H.alive(receiver) and not H.alive(policy),
                   what="the killed processes to be gone")
    finally:
        for c in conns + [pconn]:
            c.close()
    d.wait_ready()
    H.wait_for(lambda: d.policy_pid() not in (None, policy), what="a new policy service")

    def gauges_at_zero():
        # wait_ready's own sessions may take a moment to be freed
        f = scrape(d)
        if all(value(f, "mailprocd_sessions", protocol=p) == 0
               for p in ("smtp", "lmtp", "policy")):
            return f
        return None
    after = H.wait_for(gauges_at_zero, what="the session gauges at 0 in the new processes")
    for p in ("smtp", "lmtp", "policy"):
        assert value(after, "mailprocd_sessions_started_total", protocol=p) > \
            value(before, "mailprocd_sessions_started_total", protocol=p), p


# ------------------------------------------------------------ messages

def logged_size(d, qid):
    """The size= of the message's log line."""
    return int(d.wait_log(rf"{qid}: from=<[^>]*> size=(\d+) ").group(1))


def queued_id(text):
    m = re.search(r"queued as (\S+)", text)
    assert m, text
    return m.group(1)


def test_messages_recipients_bytes(d):
    """5 messages over SMTP (smtplib, 2 recipients each) and 3 over LMTP
    (raw, 3 recipients each, one of them over its maxsize=): the messages
    move by exactly 5 and 3, the recipients by the accepted ones, the bytes
    by the size= of their log lines; no rejection but the one 552."""
    before = scrape(d)
    qids = []
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        s.ehlo()
        for _ in range(5):
            m = H.make_message(to="alice@example.test")
            s.mail(H.SENDER)
            assert s.rcpt("alice@example.test")[0] == 250
            assert s.rcpt("bob@example.test")[0] == 250
            code, text = s.data(m)
            assert code == 250, text
            qids.append(queued_id(text.decode()))
    lmtp_qids = []
    with Conn(d.lmtp_port) as c:
        c.hello(lmtp=True)
        for i in range(3):
            big = i == 0
            m = H.make_message(to="alice@example.test",
                               body=b"x" * 4000 + b"\r\n" if big else None)
            rr, final = H.transaction(c, ["alice@example.test", "bob@example.test",
                                          "sam@example.test"], m, lmtp=True)
            assert [r.code for r in rr] == [250, 250, 250]
            assert [r.code for r in final] == [250, 250, 552 if big else 250], final
            lmtp_qids.append(queued_id(final[0].text))
    after = scrape(d)
    assert moved(before, after, "mailprocd_messages_received_total") == {
        (("protocol", "smtp"),): 5, (("protocol", "lmtp"),): 3}
    assert moved(before, after, "mailprocd_recipients_accepted_total") == {
        (("protocol", "smtp"),): 10, (("protocol", "lmtp"),): 8}
    assert moved(before, after, "mailprocd_received_bytes_total") == {
        (("protocol", "smtp"),): sum(logged_size(d, q) for q in qids),
        (("protocol", "lmtp"),): sum(logged_size(d, q) for q in lmtp_qids)}
    assert moved(before, after, REJECTIONS) == one_rejection("message_too_large", "5.3.4")


# ------------------------------------------------------------ rejections

def smtp_session(d, lines, lmtp=False):
    """Greeting, EHLO/LHLO, then each line; the reply to the last."""
    with Conn(d.lmtp_port if lmtp else d.smtp_port) as c:
        c.hello(lmtp=lmtp)
        replies = [c.cmd(line) for line in lines]
        return replies[-1]


MAIL = f"MAIL FROM:<{H.SENDER}>"

# reason, code, the SMTP reply code, the commands after EHLO (LMTP: LHLO)
REFUSALS = [
    ("unknown_recipient", "5.1.1", 550, [MAIL, "RCPT TO:<nobody@example.test>"], False),
    ("message_too_large", "5.3.4", 552, [f"MAIL FROM:<{H.SENDER}> SIZE={MAX_SIZE + 1}"],
     False),
    ("message_too_large", "5.3.4", 552, [f"MAIL FROM:<{H.SENDER}> SIZE=5000",
                                         "RCPT TO:<sam@example.test>"], True),
    ("not_list_member", "5.7.1", 550, ["MAIL FROM:<stranger@example.com>",
                                       "RCPT TO:<devs@lists.example.test>"], False),
    ("too_many_recipients", "4.5.3", 452,
     [MAIL] + [f"RCPT TO:<alice+{i}@example.test>" for i in range(MAX_RECIPIENTS + 1)],
     False),
    ("syntax", "5.5.4", 501, ["VRFY"], False),
    ("syntax", "5.5.4", 555, [f"MAIL FROM:<{H.SENDER}> FOO=BAR"], True),
    ("bad_sequence", "5.5.1", 503, ["RCPT TO:<alice@example.test>"], False),
    ("bad_address", "5.1.3", 501, [MAIL, "RCPT TO:<alice>"], False),
    ("bad_sender_address", "5.1.7", 501, ["MAIL FROM:<sender>"], False),
    ("unknown_command", "5.5.2", 500, ["FROB"], False),
    ("line_too_long", "5.5.2", 500, ["NOOP " + "x" * 5000], False),
    ("wrong_protocol", "5.5.1", 500, ["HELO client.example.test"], True),
    ("wrong_protocol", "5.5.1", 500, ["LHLO client.example.test"], False),
    ("no_valid_recipients", "5.5.1", 554, [MAIL, "DATA"], False),
    ("no_valid_recipients", "5.5.1", 503, [MAIL, "DATA"], True),
]


@pytest.mark.parametrize("reason,code,reply_code,lines,lmtp", REFUSALS,
                         ids=[f"{r[0]}-{'lmtp' if r[4] else 'smtp'}-{r[2]}"
                              for r in REFUSALS])
def test_refusal_counted_once_under_its_reason(d, reason, code, reply_code, lines, lmtp):
    before = scrape(d)
    r = smtp_session(d, lines, lmtp=lmtp)
    expect(r, reply_code, code)
    assert r.enh == code
    assert moved(before, scrape(d), REJECTIONS) == one_rejection(reason, code)


def test_lmtp_refusal_of_a_message_counts_per_recipient(d):
    """A message over max_message_size over LMTP: one 552 per recipient,
    each counted."""
    before = scrape(d)
    with Conn(d.lmtp_port) as c:
        c.hello(lmtp=True)
        big = H.make_message(body=(b"y" * 998 + b"\r\n") * (MAX_SIZE // 1000 + 10))
        rr, final = H.transaction(c, ["alice@example.test", "bob@example.test"], big,
                                  lmtp=True)
        for r in final:
            expect(r, 552, "5.3.4")
        assert len(final) == 2
    after = scrape(d)
    assert moved(before, after, REJECTIONS) == one_rejection("message_too_large", "5.3.4", 2)
    assert moved(before, after, "mailprocd_messages_received_total") == {}


def test_too_many_from_client(d):
    wait_no_sessions(d)
    before = scrape(d)
    conns = [Conn(d.smtp_port) for _ in range(MAX_PER_CLIENT)]
    try:
        for c in conns:
            expect(c.reply(), 220)
        with Conn(d.smtp_port) as extra:
            r = expect(extra.reply(), 421, "4.7.0")
            assert r.enh == "4.7.0"
    finally:
        for c in conns:
            c.close()
    assert moved(before, scrape(d), REJECTIONS) == one_rejection("too_many_from_client",
                                                                 "4.7.0")


def test_too_many_sessions(d):
    """max_sessions over the unix socket (not counted per client)."""
    wait_no_sessions(d)
    before = scrape(d)
    conns = [Conn(d.sock_path) for _ in range(MAX_SESSIONS)]
    try:
        for c in conns:
            expect(c.reply(), 220)
        with Conn(d.sock_path) as extra:
            r = expect(extra.reply(), 421, "4.3.2")
            assert r.enh == "4.3.2"
    finally:
        for c in conns:
            c.close()
    assert moved(before, scrape(d), REJECTIONS) == one_rejection("too_many_sessions",
                                                                 "4.3.2")


def test_lookup_failed(d):
    """The databases cannot be read (their link gone): 451 4.3.0 at RCPT."""
    link = d.db_dir / "current.mdb"
    target = os.readlink(link)
    before = scrape(d)
    with Conn(d.smtp_port) as c:
        c.hello()
        expect(c.cmd(MAIL), 250)
        link.unlink()
        try:
            r = c.cmd("RCPT TO:<alice@example.test>")
        finally:
            os.symlink(target, link)
        expect(r, 451, "4.3.0")
        assert r.enh == "4.3.0"
        expect(c.cmd("RCPT TO:<alice@example.test>"), 250)
    assert moved(before, scrape(d), REJECTIONS) == one_rejection("lookup_failed", "4.3.0")


def test_shutting_down(d):
    """The receiver stops (SIGTERM to it alone): its idle session gets 421
    4.3.2, counted; the master starts a new receiver, and the figures are
    still there."""
    before = scrape(d)
    with Conn(d.smtp_port) as c:
        c.hello()
        pid = d.receiver_pid(c)
        os.kill(pid, signal.SIGTERM)
        r = expect(c.reply(), 421, "4.3.2")
        assert r.enh == "4.3.2"
    H.wait_for(lambda: not H.alive(pid), what="the old receiver to exit")
    d.wait_ready()
    after = scrape(d)
    assert moved(before, after, REJECTIONS) == one_rejection("shutting_down", "4.3.2")
    assert value(after, "mailprocd_sessions", protocol="smtp") == 0


# ------------------------------------------------------------ rejections: own daemon

def fill(path, leave):
    """A file that fills the file system at path but for leave bytes."""
    st = os.statvfs(path)
    filler = path / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def test_queue_errors_and_timeout(tmp_path, tmpfs, run_as):
    """A queue that cannot be written (read-only): 451 4.3.0 queue_error;
    a full one: 452 4.3.1 queue_full; an idle client: 421 4.4.2 timeout.
    Each once, under its reason."""
    qfs = tmp_path / "qfs"
    dm = MetricsDaemon(tmp_path / "q", run_as=run_as,
                       settings={"queue_dir": qfs / "queue", "session_timeout": "2s"})
    tmpfs(qfs, "1m", owner=run_as)
    H.chown_tree(dm.root, run_as)
    try:
        dm.compile()
        dm.start()

        before = scrape(dm)
        subprocess.run(["mount", "-o", "remount,ro", str(qfs)], check=True)
        try:
            with Conn(dm.smtp_port) as c:
                c.hello()
                expect(c.cmd(MAIL), 250)
                expect(c.cmd("RCPT TO:<alice@example.test>"), 250)
                r = expect(c.cmd("DATA"), 451, "4.3.0")
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(qfs)], check=True)
        assert r.enh == "4.3.0"
        assert moved(before, scrape(dm), REJECTIONS) == one_rejection("queue_error", "4.3.0")

        before = scrape(dm)
        filler = fill(qfs, leave=64 * 1024)
        try:
            big = H.make_message(to="alice@example.test", body=(b"b" * 98 + b"\r\n") * 3000)
            with Conn(dm.smtp_port) as c:
                c.hello()
                rr, [r] = H.transaction(c, ["alice@example.test"], big)
        finally:
            filler.unlink()
        expect(r, 452, "4.3.1")
        assert r.enh == "4.3.1"
        assert moved(before, scrape(dm), REJECTIONS) == one_rejection("queue_full", "4.3.1")

        before = scrape(dm)
        with Conn(dm.smtp_port) as c:
            c.hello()
            r = expect(c.reply(timeout=H.DEADLINE), 421, "4.4.2")
            assert r.enh == "4.4.2"
        assert moved(before, scrape(dm), REJECTIONS) == one_rejection("timeout", "4.4.2")
    finally:
        if dm.proc is not None:
            dm.stop()


# ------------------------------------------------------------ policy answers

UNKNOWN = "550 5.1.1 User unknown"
TOO_BIG = "552 5.3.4 Message too big for recipient"

# action, reason, the request, the answer (a regex)
POLICY_ANSWERS = [
    ("dunno", "unknown_domain", rcpt_request("someone@elsewhere.test"), "DUNNO"),
    ("dunno", "none", rcpt_request("alice@example.test"), "DUNNO"),
    ("dunno", "none", rcpt_request("alice@example.test", state="CONNECT"), "DUNNO"),
    ("reject", "unknown_recipient", rcpt_request("nobody@example.test"), UNKNOWN),
    ("reject", "message_too_large", rcpt_request("sam@example.test", size=5000),
     re.escape(TOO_BIG)),
    ("reject", "message_too_large",
     rcpt_request("sam@example.test", state="END-OF-MESSAGE", size=5000, count=1,
                  instance="eom.edge"), re.escape(TOO_BIG)),
    ("reject", "not_list_member",
     rcpt_request("devs@lists.example.test", sender="stranger@example.com"), r"550 5\.7\.1 .*"),
    ("reject", "user_block", rcpt_request("bruno@example.test", sender="x@spam.test"),
     r"550 5\.7\.1 Not from you"),
    ("dunno", "user_allow", rcpt_request("bruno@example.test", sender="pal@friends.test"),
     "DUNNO"),
    ("defer", "greylist", rcpt_request("gina@example.test", sender=f"g{os.getpid()}@r.test"),
     r"450 4\.7\.1 Greylisted, retry in \d+ seconds"),
]


@pytest.mark.parametrize("action,reason,request_,answer", POLICY_ANSWERS,
                         ids=[f"{a[0]}-{a[1]}-{i}" for i, a in enumerate(POLICY_ANSWERS)])
def test_policy_answer_counted_once(d, action, reason, request_, answer):
    before = scrape(d)
    with PolicyConn(d.policy_port) as c:
        got = c.ask(request_)
    assert re.fullmatch(answer, got), got
    after = scrape(d)
    assert moved(before, after, ANSWERS) == one_answer(action, reason)
    assert moved(before, after, BAD_REQUESTS) == {}


def test_policy_temporary_failure(d):
    """The databases cannot be read: DUNNO, counted as a temporary failure."""
    link = d.db_dir / "current.mdb"
    target = os.readlink(link)
    before = scrape(d)
    with PolicyConn(d.policy_port) as c:
        link.unlink()
        try:
            got = c.ask(rcpt_request("nobody@example.test"))
        finally:
            os.symlink(target, link)
    assert got == "DUNNO"
    assert moved(before, scrape(d), ANSWERS) == one_answer("dunno", "temporary_failure")


def test_policy_bad_request(d):
    """A request it cannot parse: the connection closes, the answers due
    before it go out; one bad request counted, and only the answer given."""
    before = scrape(d)
    with PolicyConn(d.policy_port) as c:
        c.send(rcpt_request("nobody@example.test") + b"no equals sign here\n\n")
        assert c.answer() == UNKNOWN
        assert c.closed_by_server()
    after = scrape(d)
    assert moved(before, after, BAD_REQUESTS) == {(): 1}
    assert moved(before, after, ANSWERS) == one_answer("reject", "unknown_recipient")
