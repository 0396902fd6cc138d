"""load.py - the benchmark's workload: messages, LMTP client threads, and
counting what has reached the maildirs.

Messages are ~4 KB, one recipient each, addressed round-robin to users
u0..u{R-1}@bench.test.  Every peer delivers into MAILROOT/uN/Maildir/, so
"delivered" is the number of files in the new/ directories.

Two ways to send them: round-robin (message i on connection i % C, so
every connection carries every user's mail), or per-user streams (one
session per user carrying that user's messages in sequence, C sessions at
a time, users taken in turn: how Postfix's lmtp client and its
smtp-source -s lanes send a user's mail), with this module's client or
with Postfix's smtp-source itself.
"""
import os
import smtplib
import threading
import time

DOMAIN = "bench.test"
SENDER = "bench@sender.test"

_LINE = ("The quick brown fox jumps over the lazy dog; pack my box with five "
         "dozen jugs.")


def user_name(n):
    return "u%d" % n


def recipient(n):
    return "%s@%s" % (user_name(n), DOMAIN)


def make_message(i, rcpt, size):
    """Message number i for rcpt, about size bytes, CRLF line ends."""
    head = ("From: Bench <%s>\r\n"
            "To: <%s>\r\n"
            "Subject: benchmark message %d\r\n"
            "Date: Mon, 24 Nov 2025 12:00:00 +0000\r\n"
            "Message-ID: <bench.%d@%s>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "\r\n") % (SENDER, rcpt, i, i, DOMAIN)
    body = []
    length = len(head)
    n = 0
    while length < size:
        line = "%05d %s\r\n" % (n, _LINE)
        body.append(line)
        length += len(line)
        n += 1
    return (head + "".join(body)).encode("ascii")


def workload(messages, users, size):
    """[(recipient, message bytes)] for messages to users round-robin."""
    return [(recipient(i % users), make_message(i, recipient(i % users), size))
            for i in range(messages)]


def maildir_new(mailroot, n):
    return os.path.join(mailroot, user_name(n), "Maildir", "new")


def create_maildirs(mailroot, users, owner):
    """MAILROOT/uN/Maildir/{tmp,new,cur} for every user, owned by owner
    ((uid, gid) or None), so that every peer starts from the same tree."""
    for n in range(users):
        home = os.path.join(mailroot, user_name(n))
        paths = [home, os.path.join(home, "Maildir")]
        paths += [os.path.join(home, "Maildir", d) for d in ("tmp", "new", "cur")]
        for p in paths:
            os.makedirs(p, mode=0o700, exist_ok=True)
            if owner is not None:
                os.chown(p, owner[0], owner[1])


def count_delivered(mailroot, users):
    total = 0
    for n in range(users):
        try:
            total += len(os.listdir(maildir_new(mailroot, n)))
        except FileNotFoundError:
            pass
    return total


def wait_delivered(mailroot, users, expected, deadline):
    """Poll the maildirs until expected files are there.  Returns the time
    it happened (time.monotonic()), or None at the deadline."""
    while True:
        if count_delivered(mailroot, users) >= expected:
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(0.005)


class Stats:
    """What the client threads report, under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.errors = []

    def success(self):
        with self.lock:
            self.ok += 1

    def failure(self, what):
        with self.lock:
            self.errors.append(what)


def _lmtp_client(host, port, items, stats, timeout):
    try:
        conn = smtplib.LMTP(host, port, local_hostname="client.bench.test",
                            timeout=timeout)
    except OSError as e:
        stats.failure("connect: %s" % e)
        return
    try:
        for rcpt, msg in items:
            try:
                # One recipient per transaction: smtplib reads one reply
                # after DATA, which is what LMTP gives for one recipient.
                refused = conn.sendmail(SENDER, [rcpt], msg)
                if refused:
                    stats.failure("%s refused: %s" % (rcpt, refused))
                else:
                    stats.success()
            except smtplib.SMTPResponseException as e:
                stats.failure("%s: %d %s" % (rcpt, e.smtp_code, e.smtp_error))
                conn.rset()
            except smtplib.SMTPRecipientsRefused as e:
                stats.failure("%s refused: %s" % (rcpt, e.recipients))
                conn.rset()
        conn.quit()
    except (OSError, smtplib.SMTPException) as e:
        stats.failure("connection: %s" % e)


def run_lmtp(host, port, work, connections, timeout=120):
    """Send work over `connections` parallel LMTP connections (message i
    on connection i % connections).  Returns (Stats, start, end) with
    monotonic times around the whole transfer."""
    stats = Stats()
    shares = [work[c::connections] for c in range(connections)]
    threads = [threading.Thread(target=_lmtp_client,
                                args=(host, port, share, stats, timeout))
               for share in shares]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stats, start, time.monotonic()


def user_streams(messages, users, size):
    """[(recipient, [message bytes])], one per user with mail: the same
    messages as workload(), each user's in order."""
    work = workload(messages, users, size)
    return [(recipient(n), [msg for _, msg in work[n::users]])
            for n in range(min(users, messages))]


def _lanes(items, connections, run_one):
    """Run run_one(item) for every item, `connections` at a time, items
    taken in turn.  Returns (start, end) monotonic times."""
    lock = threading.Lock()
    queue = iter(items)

    def lane():
        while True:
            with lock:
                item = next(queue, None)
            if item is None:
                return
            run_one(item)

    threads = [threading.Thread(target=lane) for _ in range(connections)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return start, time.monotonic()


def run_lmtp_streams(host, port, streams, connections, timeout=120):
    """One LMTP session per user (streams from user_streams), carrying
    that user's messages in sequence, `connections` sessions at a time.
    Returns (Stats, start, end)."""
    stats = Stats()

    def one(stream):
        rcpt, msgs = stream
        _lmtp_client(host, port, [(rcpt, m) for m in msgs], stats, timeout)
    start, end = _lanes(streams, connections, one)
    return stats, start, end


SMTP_SOURCE = "/usr/sbin/smtp-source"


def run_smtp_source(host, port, streams, connections, size):
    """The same streams sent by Postfix's smtp-source: for each user one
    `smtp-source -L -d -s 1 -m K -l SIZE -t USER` (one LMTP session
    carrying the user's K messages of SIZE bytes of payload), `connections`
    of them at a time.  Returns (Stats, start, end)."""
    import subprocess

    stats = Stats()

    def one(stream):
        rcpt, msgs = stream
        argv = [SMTP_SOURCE, "-L", "-d", "-s", "1", "-m", str(len(msgs)), "-l", str(size),
                "-f", SENDER, "-t", rcpt, "-M", "client.bench.test", "%s:%d" % (host, port)]
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        if p.returncode == 0:
            for _ in msgs:
                stats.success()
        else:
            stats.failure("smtp-source to %s: exit %d: %s" % (
                rcpt, p.returncode, p.stdout.decode(errors="replace").strip()[-300:]))
    start, end = _lanes(streams, connections, one)
    return stats, start, end


def run_spawned(argv_for, work, parallel, popen_kwargs):
    """Run one process per message, `parallel` at a time, the message on
    stdin with LF line ends (as an MTA hands it to a local delivery agent).
    argv_for(rcpt) gives the command.  Returns (Stats, start, end)."""
    import subprocess

    stats = Stats()
    work = [(rcpt, msg.replace(b"\r\n", b"\n")) for rcpt, msg in work]
    shares = [work[c::parallel] for c in range(parallel)]

    def spawner(share):
        for rcpt, msg in share:
            try:
                p = subprocess.run(argv_for(rcpt), input=msg,
                                   stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, **popen_kwargs)
            except OSError as e:
                stats.failure("%s: %s" % (rcpt, e))
                continue
            if p.returncode == 0:
                stats.success()
            else:
                stats.failure("%s: exit %d: %s" % (
                    rcpt, p.returncode, p.stderr.decode(errors="replace").strip()))

    threads = [threading.Thread(target=spawner, args=(share,)) for share in shares]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stats, start, time.monotonic()
