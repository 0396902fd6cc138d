"""test_lists_delivery.py - mail for a mailing list (the `lists` database)
goes to the list manager over LMTP from the relay, never to a worker, with
a real LMTP server nobody here wrote (Debian's python3-aiosmtpd, the LMTP
server Mailman 3 itself runs on), scripted to answer per recipient:

- one post to the list and two of its manager's addresses is ONE LMTP
  transaction with 3 RCPTs, and no worker runs;
- per recipient after the end of data: 250 delivered, 450 deferred and
  delivered on the retry, 550 bounced (a DSN to the sender, caught at the
  relay_host SMTP sink);
- a Message-ID is added when missing, the same on the retry, and kept
  when present;
- manager down -> deferred -> back -> delivered exactly once;
- a unix-socket destination; one connection for two messages;
- `mailprocctl db lookup` shows the list fields;
- a reload or a stop while the manager holds its replies sends nothing twice.
"""

import os
import re
import signal
import smtplib
import threading
import time

import pytest

import mpharness as H
from mpharness import SENDER

LIST_DOMAIN = "lists.example.test"


class LmtpServer:
    """A real LMTP server (aiosmtpd.lmtp.LMTP) on a loopback port or a unix
    socket.  answers: {address: [reply, reply, ...]} replies after the end
    of data for that recipient, one per transaction it is in (the last one
    repeats); others get 250.  Records every transaction and counts
    connections.  rcpt_reject: {address: reply} refused at RCPT.
    PIPELINING is announced unless pipelining is false."""

    def __init__(self, port=None, unix_path=None, answers=None, hold=0,
                 rcpt_reject=None, pipelining=True):
        import asyncio
        from aiosmtpd.controller import Controller, UnixSocketController
        from aiosmtpd.lmtp import LMTP

        self.hold = hold                # seconds to hold the replies after the data
        self.rcpt_reject = dict(rcpt_reject or {})      # address: reply at RCPT
        self.in_data = threading.Event()        # the end of data arrived once
        self.answers = {k: list(v) for k, v in (answers or {}).items()}
        self.transactions = []          # dicts: conn, from, to, data
        self.connections = 0
        self.lock = threading.Lock()
        srv = self

        class Handler:
            async def handle_EHLO(self, server, session, envelope, hostname, responses):
                session.host_name = hostname
                if not pipelining:
                    return responses
                return responses[:-1] + ["250-PIPELINING", responses[-1]]

            async def handle_RCPT(self, server, session, envelope, address, options):
                if address.lower() in srv.rcpt_reject:
                    return srv.rcpt_reject[address.lower()]
                envelope.rcpt_tos.append(address)
                return "250 2.1.5 Ok"

            async def handle_DATA(self, server, session, envelope):
                srv.in_data.set()
                if srv.hold:
                    await asyncio.sleep(srv.hold)
                replies = []
                with srv.lock:
                    srv.transactions.append({
                        "conn": id(session), "peer": session.peer,
                        "from": envelope.mail_from,
                        "to": list(envelope.rcpt_tos),
                        "data": bytes(envelope.original_content)})
                    for rcpt in envelope.rcpt_tos:
                        queue = srv.answers.get(rcpt.lower())
                        if queue:
                            replies.append(queue.pop(0) if len(queue) > 1 else queue[0])
                        else:
                            replies.append("250 2.0.0 <%s> delivered" % rcpt)
                # one reply per accepted recipient, as Mailman's runner does
                return "\r\n".join(replies)

        class Counting(UnixSocketController if unix_path else Controller):
            def factory(self):
                with srv.lock:
                    srv.connections += 1
                return LMTP(self.handler, **self.SMTP_kwargs)

        if unix_path:
            self.controller = Counting(Handler(), unix_socket=str(unix_path))
            self.dest = f"lmtp:unix:{unix_path}"
        else:
            self.port = port or H.free_ports(1)[0]
            self.controller = Counting(Handler(), hostname="127.0.0.1", port=self.port)
            self.dest = f"lmtp:127.0.0.1:{self.port}"
        self.controller.start()
        with self.lock:
            self.connections = 0        # the controller's own readiness probe

    def stop(self):
        self.controller.stop()

    def received(self, pred=lambda t: True):
        with self.lock:
            return [t for t in self.transactions if pred(t)]

    def wait(self, pred=lambda t: True, n=1, what="LMTP transactions"):
        return H.wait_for(lambda: len(self.received(pred)) >= n and self.received(pred),
                          None, f"{n} {what}")


def marked(marker):
    return lambda t: marker.encode() in t["data"]


@pytest.fixture
def sink():
    s = H.SmtpSink()
    yield s
    s.stop()


@pytest.fixture
def manager():
    servers = []

    def start(**kw):
        s = LmtpServer(**kw)
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.stop()


def lists_source(*entries):
    return "# lists source\n" + "".join(f"{a} mailman3 {dest}\n" for a, dest in entries)


def started(daemons, sink, lists):
    d = daemons("lists", settings={"relay_host": sink.address, "retry_schedule": "1s"})
    d.write_sources(lists=lists)
    d.compile()
    d.start()
    return d


def post(d, rcpts, subject="list post", message_id=True, sender=SENDER):
    """Send one message over SMTP; returns (marker, queue id)."""
    marker = H.new_msgid()
    headers = f"From: <{sender}>\r\nTo: <devs@{LIST_DOMAIN}>\r\nSubject: {subject} {marker}\r\n"
    if message_id:
        headers += f"Message-ID: {marker}\r\n"
    msg = headers + f"\r\nbody of {marker}\r\n"
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        s.ehlo()
        assert s.mail(sender)[0] == 250
        for r in rcpts:
            code, text = s.rcpt(r)
            assert code == 250, f"RCPT {r}: {code} {text}"
        code, text = s.data(msg.encode())
        assert code == 250, f"DATA: {code} {text}"
    qid = re.search(rb"queued as (\S+)", text).group(1).decode()
    return marker, qid


def header_values(data, name):
    return re.findall(rb"(?mi)^" + name.encode() + rb":\s*(.*?)\r?$", data.split(b"\r\n\r\n")[0])


def log_results(d, rcpt):
    return re.findall(rf"to=<{re.escape(rcpt)}> where=(\S+) .* status=(\w+)", d.log())


def test_db_lookup_shows_the_list(daemons, sink, manager):
    lm = manager()
    d = daemons("lookup", settings={"relay_host": sink.address})
    d.write_sources(lists=f"devs@{LIST_DOMAIN} mailman3 {lm.dest} members-only\n")
    assert re.search(r", 1 lists -> ", d.compile().out), "the list is not counted"
    d.write_sources(srcdir=d.root / "bad", lists=f"devs@{LIST_DOMAIN} mailman3 lmtp:x\n")
    res = d.compile(srcdir=d.root / "bad", expect_ok=False)
    assert res.returncode == 1
    assert f"{d.root}/bad/lists:1: bad destination \"lmtp:x\"" in res.out, res.out
    res = d.ctl("db", "lookup", f"DEVS-Bounces+X=Y.test@{LIST_DOMAIN}")
    assert res.returncode == 0, res.out
    assert f"list: devs@{LIST_DOMAIN}\n" in res.out
    assert "list role: manager\n" in res.out
    assert "list manager: mailman3\n" in res.out
    assert f"list destination: {lm.dest}\n" in res.out
    assert "list members-only: yes\n" in res.out
    res = d.ctl("db", "lookup", f"devs@{LIST_DOMAIN}")
    assert "list role: post\n" in res.out, res.out
    res = d.ctl("db", "lookup", f"devs-admin@{LIST_DOMAIN}")
    assert res.returncode == 1 and "unknown address" in res.out, res.out
    res = d.ctl("test", f"devs-request@{LIST_DOMAIN}", input=b"Subject: x\n\nbody\n")
    assert res.returncode == 0, res.out
    assert res.out == (f"address: devs-request@{LIST_DOMAIN}\n"
                       f"list: devs@{LIST_DOMAIN} (manager)\n"
                       f"result: handed to mailman3 over LMTP at {lm.dest}\n"), res.out


def test_one_transaction_for_three_list_recipients(daemons, sink, manager):
    lm = manager()
    d = started(daemons, sink, lists_source((f"devs@{LIST_DOMAIN}", lm.dest)))
    rcpts = [f"devs@{LIST_DOMAIN}", f"devs-request@{LIST_DOMAIN}",
             f"devs-bounces+alice=example.test@{LIST_DOMAIN}"]
    marker, _ = post(d, rcpts)
    [t] = lm.wait(marked(marker))
    H.settle()
    assert len(lm.received(marked(marker))) == 1, "more than one LMTP transaction"
    assert sorted(a.lower() for a in t["to"]) == sorted(rcpts)
    assert t["from"] == SENDER
    for r in rcpts:
        assert log_results(d, r) == [(lm.dest, "sent")], log_results(d, r)
    assert d.workers() == [], "a worker ran for list mail"
    assert sink.received() == [], "something went to the relay_host"


def test_per_recipient_replies(daemons, sink, manager):
    post_addr = f"devs@{LIST_DOMAIN}"
    later = f"devs-request@{LIST_DOMAIN}"
    refused = f"devs-owner@{LIST_DOMAIN}"
    lm = manager(answers={later: ["450 4.2.0 try again later", "250 2.0.0 now ok"],
                          refused: ["550 5.1.1 no such list owner"]})
    d = started(daemons, sink, lists_source((post_addr, lm.dest)))
    marker, qid = post(d, [post_addr, later, refused], message_id=False)
    # the first attempt has all three; the retry only the deferred one
    lm.wait(marked(marker), n=2)
    first, retry = lm.received(marked(marker))[:2]
    assert sorted(first["to"]) == sorted([post_addr, later, refused])
    assert retry["to"] == [later]
    H.wait_for(lambda: log_results(d, later)[-1:] == [(lm.dest, "sent")], None,
               "the deferred recipient delivered on the retry")
    assert [s for _, s in log_results(d, later)] == ["deferred", "sent"]
    assert [s for _, s in log_results(d, post_addr)] == ["sent"]
    assert [s for _, s in log_results(d, refused)] == ["bounced"]
    # the 550 bounces: a DSN to the sender through the relay_host
    [dsn] = sink.wait(lambda m: m["to"] == [SENDER] and marker.encode() in m["data"])
    _, per_rcpt = H.parse_dsn(dsn["data"])
    assert [b.get("Final-Recipient") for b in per_rcpt] == [f"rfc822; {refused}"]
    assert per_rcpt[0]["Action"] == "failed" and per_rcpt[0]["Status"] == "5.1.1"
    # the Message-ID added is the same on the retry
    ids = [header_values(t["data"], "Message-ID") for t in (first, retry)]
    assert ids[0] == ids[1] and len(ids[0]) == 1, ids
    assert ids[0][0] == f"<{qid}.mailprocd@{H.HOSTNAME}>".encode(), ids
    H.settle()
    assert len(lm.received(marked(marker))) == 2, "delivered more than once"


@pytest.mark.parametrize("pipelining", [True, False])
def test_replies_after_data_skip_recipients_refused_at_rcpt(daemons, sink, manager,
                                                            pipelining):
    """A recipient refused at RCPT gets no reply after the data: the
    replies there belong to the accepted ones, in order (with and without
    PIPELINING)."""
    first = f"devs-leave@{LIST_DOMAIN}"
    refused = f"devs-confirm+abc@{LIST_DOMAIN}"
    refused2 = f"devs-unsubscribe@{LIST_DOMAIN}"
    last = f"devs-subscribe@{LIST_DOMAIN}"
    trailing = f"devs-bounces+x@{LIST_DOMAIN}"
    lm = manager(rcpt_reject={refused: "550 5.1.1 no such confirmation",
                              refused2: "550 5.1.1 not now",
                              trailing: "550 5.1.1 unknown bounce"},
                 answers={first: ["250 2.0.0 first ok"],
                          last: ["452 4.2.2 last is full", "250 2.0.0 last ok"]},
                 pipelining=pipelining)
    d = started(daemons, sink, lists_source((f"devs@{LIST_DOMAIN}", lm.dest)))
    # refused ones before, between and after the accepted ones
    marker, _ = post(d, [refused, first, refused2, last, trailing])
    lm.wait(marked(marker), n=2)
    H.wait_for(lambda: [s for _, s in log_results(d, last)] == ["deferred", "sent"], None,
               "the last recipient deferred, then sent")
    assert [s for _, s in log_results(d, first)] == ["sent"]
    assert [s for _, s in log_results(d, refused)] == ["bounced"]
    assert [s for _, s in log_results(d, refused2)] == ["bounced"]
    assert "first ok" in re.search(rf"to=<{re.escape(first)}>.*", d.log()).group(0)
    assert "last is full" in re.search(rf"to=<{re.escape(last)}>.*", d.log()).group(0)
    sink.wait(lambda m: m["to"] == [SENDER] and marker.encode() in m["data"])


def test_message_id_kept_when_present(daemons, sink, manager):
    lm = manager()
    d = started(daemons, sink, lists_source((f"devs@{LIST_DOMAIN}", lm.dest)))
    marker, _ = post(d, [f"devs@{LIST_DOMAIN}"])
    [t] = lm.wait(marked(marker))
    assert header_values(t["data"], "Message-ID") == [marker.encode()]


def test_manager_down_then_back_delivered_once(daemons, sink, manager):
    [port] = H.free_ports(1)
    dest = f"lmtp:127.0.0.1:{port}"
    rcpt = f"devs@{LIST_DOMAIN}"
    d = started(daemons, sink, lists_source((rcpt, dest)))
    marker, _ = post(d, [rcpt])
    H.wait_for(lambda: len(log_results(d, rcpt)) >= 2, None, "two deferrals while down")
    assert set(s for _, s in log_results(d, rcpt)) == {"deferred"}
    assert "Connection refused" in d.log()
    lm = manager(port=port)
    [t] = lm.wait(marked(marker))
    H.wait_for(lambda: log_results(d, rcpt)[-1][1] == "sent", None, "sent in the log")
    H.settle()
    H.settle()
    assert len(lm.received(marked(marker))) == 1, "delivered more than once"
    assert [s for _, s in log_results(d, rcpt)].count("sent") == 1
    assert sink.received() == [], "a bounce or warning went out"


def test_unix_socket_destination(daemons, sink, manager, tmp_path):
    sock_dir = tmp_path / "mm"
    sock_dir.mkdir()
    H.make_traversable(sock_dir)
    path = sock_dir / "lmtp.sock"
    lm = manager(unix_path=path)
    if H.IS_ROOT:
        os.chmod(path, 0o666)
    rcpt = f"announce@{LIST_DOMAIN}"
    d = started(daemons, sink, lists_source((rcpt, lm.dest)))
    marker, _ = post(d, [rcpt, f"announce-join@{LIST_DOMAIN}"])
    [t] = lm.wait(marked(marker))
    assert sorted(t["to"]) == sorted([rcpt, f"announce-join@{LIST_DOMAIN}"])
    H.wait_for(lambda: log_results(d, rcpt), what="the result logged")
    assert log_results(d, rcpt) == [(lm.dest, "sent")]


def test_connection_reused_for_two_messages(daemons, sink, manager):
    lm = manager()
    rcpt = f"devs@{LIST_DOMAIN}"
    d = started(daemons, sink, lists_source((rcpt, lm.dest)))
    m1, _ = post(d, [rcpt])
    [t1] = lm.wait(marked(m1))
    m2, _ = post(d, [rcpt])
    [t2] = lm.wait(marked(m2))
    assert t1["conn"] == t2["conn"]
    assert lm.connections == 1, f"{lm.connections} connections for two messages"


def test_reload_during_an_lmtp_transaction_sends_it_once(daemons, sink, manager):
    """SIGHUP while the manager holds its replies after the end of data:
    the transaction finishes on its connection, nothing goes twice."""
    lm = manager(hold=4)
    rcpts = [f"devs@{LIST_DOMAIN}", f"devs-request@{LIST_DOMAIN}"]
    d = started(daemons, sink, lists_source((rcpts[0], lm.dest)))
    marker, _ = post(d, rcpts)
    assert lm.in_data.wait(H.DEADLINE), "the relay never reached the end of data"
    os.kill(d.pid, signal.SIGHUP)
    d.wait_log(r"reloaded")
    for r in rcpts:
        H.wait_for(lambda: log_results(d, r), lm.hold + H.DEADLINE, f"{r} done")
    H.wait_for(d.queue_empty, what="the queue to drain")
    time.sleep(3)      # a retry on the 1 s schedule would be out by now
    assert len(lm.received(marked(marker))) == 1
    for r in rcpts:
        assert log_results(d, r) == [(lm.dest, "sent")], d.log()


def test_stop_during_an_lmtp_transaction_finishes_it(daemons, sink, manager):
    """SIGTERM while the manager holds its replies (less than
    stop_grace_time): the relay waits for them, the results are recorded,
    and the next start sends nothing again."""
    lm = manager(hold=3)
    rcpt = f"devs@{LIST_DOMAIN}"
    d = started(daemons, sink, lists_source((rcpt, lm.dest)))
    marker, _ = post(d, [rcpt])
    assert lm.in_data.wait(H.DEADLINE), "the relay never reached the end of data"
    d.stop(timeout=lm.hold + 10 + (20 if H.SANITIZED else 5))
    assert log_results(d, rcpt) == [(lm.dest, "sent")], d.log()
    d.start()
    H.wait_for(d.queue_empty, what="the queue to drain")
    time.sleep(3)
    assert len(lm.received(marked(marker))) == 1


@pytest.mark.skipif(not H.IS_ROOT, reason="root mode needs root (CI runs the suite as root)")
def test_root_mode_list_mail_needs_no_account(tmp_path, sink, manager):
    """In root mode a list needs no account in uid: its mail is handed over
    by the relay, which runs as `user`, and no worker is started."""
    lm = manager()
    svc = H.create_user("mpt-l-")
    d = None
    try:
        H.make_traversable(tmp_path)
        d = H.Daemon(tmp_path / "d", run_as=None, single_user=False,
                     settings={"user": svc.name, "relay_host": sink.address,
                               "retry_schedule": "1s"},
                     rules="# no rules\n", uids="# no accounts\n")
        d.write_sources(lists=lists_source((f"devs@{LIST_DOMAIN}", lm.dest)))
        d.compile()
        d.start()
        marker, _ = post(d, [f"devs@{LIST_DOMAIN}", f"devs-join@{LIST_DOMAIN}"])
        [t] = lm.wait(marked(marker))
        assert len(t["to"]) == 2
        # the process holding the (cached) connection to the manager
        inode = H.wait_for(lambda: H._tcp_inode(t["peer"][1], lm.port), 5,
                           "the client side of the LMTP connection")
        relay = H.pid_holding_socket(inode, d.descendants())
        assert relay, "no mailprocd process holds the LMTP connection"
        uids = H.proc_ids(relay)[0]
        assert set(uids) == {svc.uid}, f"relay runs with uids {uids}"
        assert d.workers() == [], "a worker ran for list mail"
    finally:
        if d is not None and d.proc is not None:
            d.stop()
        H.delete_user(svc)


def test_list_and_user_recipients_in_one_message(daemons, sink, manager):
    """A message for a list and for a user: the list's copy goes over
    LMTP, the user's to the maildir through a worker, each once."""
    lm = manager()
    rcpt = f"devs@{LIST_DOMAIN}"
    d = started(daemons, sink, lists_source((rcpt, lm.dest)))
    marker, _ = post(d, ["alice@example.test", rcpt])
    [t] = lm.wait(marked(marker))
    assert t["to"] == [rcpt]
    H.wait_maildir(d.maildir("alice"), marker.encode())
    # the manager has the message before the relay has its reply and the
    # qmgr logs the result
    H.wait_for(lambda: log_results(d, rcpt) and log_results(d, "alice@example.test"),
               what="both results logged")
    assert log_results(d, rcpt) == [(lm.dest, "sent")]
    assert [s for _, s in log_results(d, "alice@example.test")] == ["sent"]
