#!/usr/bin/python3
"""fairness_bench.py - does one user's flood delay another user's mail?
mailprocd's delivery latency for a quiet user B while user A is flooded.

mailprocd (single-user mode, over LMTP on loopback) serves two users, A
(u0) and B (u1).  First B alone: one message every --interval seconds
over its own connection, --quiet messages (after one warm-up message that
starts B's worker, reported apart), each a different one of B's --quiet
messages; under the flood B sends the same messages again, in turn, so
that both phases see the same checks.  Then A gets -m messages (default
1,000) over -c connections (default 4) as fast as they go, while B goes on
sending one message every --interval seconds over its own connection
until A's last message is delivered.  B's latency is the time from
mailprocd's 250 reply (the message is in the queue) to the file in B's
Maildir/new/, seen by inotify (dirwatch.py).  Printed: B's median and max
latency alone and under A's flood, and A's rates.  Then B alone again, as
many messages as under the flood with the same bodies in the same order,
so that the max under the flood is compared with a max of as many samples
of the same checks (the ratios are against that run).

Without --spam the messages are the benchmark's 4 KB ones and
spam_engine is none: A's flood drains in seconds, so use a shorter
--interval (e.g. 0.05) for more than a couple of samples under load.
With --spam, spam_engine is spamassassin, each user's rules are `if spam
maildir ~/Maildir/.Junk/ ; stop` then `maildir ~/Maildir/`, the messages
come from the SpamAssassin corpus (bench/corpus.py; B's are ham), both
users' Bayes data is trained as in bench/spam_bench.py (--train), and a
build that does not score spam is reported as such.  --workers-per-user
and --spam-concurrency set those settings (default: mailprocd's).

    bench/fairness_bench.py [-m 1000] [-c 4] [--interval 1] [--quiet 20]
                            [--spam [--train 200]] [--workers-per-user N]
                            [--spam-concurrency N] [--worker-batch-size N]
                            [--delivery-nice N]
"""
import argparse
import os
import re
import shutil
import smtplib
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus        # noqa: E402
import dirwatch      # noqa: E402
import load          # noqa: E402
import peers         # noqa: E402
import spam_peers    # noqa: E402
import sysutil       # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
A, B = 0, 1
B_ID = re.compile(rb"^Message-ID:\s*<fair-b\.(\d+)@", re.I | re.M)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--messages", type=int, default=1000,
                   help="messages in A's flood (default 1000)")
    p.add_argument("-c", "--connections", type=int, default=4,
                   help="LMTP connections for A's flood (default 4)")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between B's messages (default 1)")
    p.add_argument("--quiet", type=int, default=20,
                   help="B's messages before the flood, after the warm-up, all different; "
                   "the flood phase sends them again (default 20)")
    p.add_argument("-s", "--size", type=int, default=4096,
                   help="message size without --spam (default 4096)")
    p.add_argument("--spam", action="store_true",
                   help="spam_engine spamassassin, corpus messages, Junk rule")
    p.add_argument("--train", type=int, default=200,
                   help="with --spam: Bayes training, spam and ham each (default 200; 0: none)")
    p.add_argument("--seed", type=int, default=1, help="corpus sample seed (default 1)")
    p.add_argument("--workers-per-user", type=int,
                   help="mailprocd's workers_per_user (default: its default, 1)")
    p.add_argument("--worker-batch-size", type=int,
                   help="worker_batch_size (default: mailprocd's)")
    p.add_argument("--spam-concurrency", type=int,
                   help="mailprocd's spam_concurrency (default: its default, one per core)")
    p.add_argument("--delivery-nice", type=int, choices=range(20), metavar="0..19",
                   help="mailprocd's delivery_nice (default: mailprocd's)")
    p.add_argument("--build", default=os.path.join(REPO, "build"),
                   help="mailprocd build directory (default build/)")
    p.add_argument("--dir", default="/var/tmp",
                   help="where the maildirs and work files go (default /var/tmp)")
    p.add_argument("--timeout", type=float, default=600,
                   help="seconds to wait for A's flood to be delivered (default 600)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    a = p.parse_args()
    if min(a.messages, a.connections, a.quiet, a.size) < 1 or a.interval <= 0:
        p.error("-m, -c, --quiet, -s and --interval must be positive")
    if a.train < 0:
        p.error("--train must not be negative")
    if min(a.workers_per_user or 1, a.spam_concurrency or 1) < 1:
        p.error("--workers-per-user and --spam-concurrency must be positive")
    return a


def extra_conf(args):
    conf = ""
    if args.workers_per_user:
        conf += "workers_per_user %d\n" % args.workers_per_user
    if args.spam_concurrency:
        conf += "spam_concurrency %d\n" % args.spam_concurrency
    if args.worker_batch_size:
        conf += "worker_batch_size %d\n" % args.worker_batch_size
    if args.delivery_nice is not None:
        conf += "delivery_nice %d\n" % args.delivery_nice
    return conf


def b_message(seq, body):
    """B's message seq: To and a Message-ID we can find, then body (the
    rest of a message, header fields first, CRLF)."""
    head = ("To: <%s>\r\nMessage-ID: <fair-b.%d@bench.test>\r\n"
            % (load.recipient(B), seq)).encode()
    return head + body


def strip_header(msg, name):
    """msg (CRLF) without its header fields called name (and continuations)."""
    head, sep, body = msg.partition(b"\r\n\r\n")
    out, skip = [], False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not skip:
                out.append(line)
            continue
        skip = line.lower().startswith(name.lower() + b":")
        if not skip:
            out.append(line)
    return b"\r\n".join(out) + sep + body


class BSender:
    """B's own LMTP connection: send() one message, note the 250 time.
    Message seq has body seq - 1 (mod the bodies): the warm-up (seq 0)
    repeats the last one, and B's first len(bodies) messages after it are
    all different."""

    def __init__(self, port, bodies):
        self.conn = smtplib.LMTP("127.0.0.1", port, local_hostname="b.bench.test",
                                 timeout=120)
        self.bodies = bodies
        self.replied = {}   # seq -> monotonic time of the 250
        self.seq = 0

    def body_index(self, seq):
        return (seq - 1) % len(self.bodies)

    def send(self, body=None):
        """Send the next message, with body number body (default: the
        seq's own, see above)."""
        seq = self.seq
        self.seq += 1
        body = self.body_index(seq) if body is None else body
        msg = b_message(seq, self.bodies[body])
        refused = self.conn.sendmail("fair@sender.test", [load.recipient(B)], msg)
        if refused:
            raise RuntimeError("B's message %d refused: %s" % (seq, refused))
        self.replied[seq] = time.monotonic()
        return seq

    def paced(self, interval, until):
        """Send one message every interval seconds until until() holds
        (checked before each); returns the seqs sent."""
        return self.paced_bodies(interval, until, None)

    def paced_bodies(self, interval, until, bodies):
        """As paced(), with the given body numbers in turn (None: each
        seq's own) until they run out."""
        sent = []
        tick = time.monotonic()
        while not until() and (bodies is None or len(sent) < len(bodies)):
            sent.append(self.send(None if bodies is None else bodies[len(sent)]))
            tick += interval
            pause = tick - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        return sent

    def close(self):
        try:
            self.conn.quit()
        except (OSError, smtplib.SMTPException):
            pass


_seq_of = {}   # delivered file -> B's seq (None: not one of B's)


def delivered_b(watchers):
    """{seq: time its file was first seen} over B's new/ directories."""
    out = {}
    for box, w in watchers.items():
        for name, when in w.seen().items():
            path = os.path.join(box, name)
            if path not in _seq_of:
                try:
                    with open(path, "rb") as f:
                        m = B_ID.search(f.read(1 << 16).split(b"\n\n", 1)[0])
                except FileNotFoundError:
                    continue
                _seq_of[path] = int(m.group(1)) if m else None
            if _seq_of[path] is not None:
                out[_seq_of[path]] = when
    return out


def wait_b(sender, seqs, watchers, deadline):
    while True:
        seen = delivered_b(watchers)
        if all(s in seen for s in seqs):
            return {s: seen[s] - sender.replied[s] for s in seqs}
        if time.monotonic() > deadline:
            missing = [s for s in seqs if s not in seen]
            raise RuntimeError("B's messages %s not delivered in time" % missing[:5])
        time.sleep(0.01)


def count_user(mailroot, n):
    total = 0
    for sub in ("new", os.path.join(spam_peers.JUNK, "new")):
        try:
            total += len(os.listdir(os.path.join(mailroot, load.user_name(n), "Maildir", sub)))
        except FileNotFoundError:
            pass
    return total


def summary(lat):
    ms = sorted(x * 1000 for x in lat)
    return "%d msgs, latency median %.1f ms, max %.1f ms (min %.1f)" % (
        len(ms), statistics.median(ms), ms[-1], ms[0])


def workloads(args):
    """(A's flood [(rcpt, msg)], B's bodies [bytes])."""
    if not args.spam:
        a = [(load.recipient(A), load.make_message(i, load.recipient(A), args.size))
             for i in range(args.messages)]
        bodies = [load.make_message(i, load.recipient(B), args.size) for i in range(args.quiet)]
        return a, [strip_header(strip_header(m, b"Message-ID"), b"To") for m in bodies]
    sample = corpus.sample(min(args.messages, corpus.SIZE // 2), args.seed)
    a = [(load.recipient(A), corpus.crlf(sample[i % len(sample)][1]))
         for i in range(args.messages)]
    ham = corpus.sample(args.quiet, args.seed + 1, "ham", exclude=sample)
    # B's Message-ID and To are ours; the rest of each ham message stays.
    bodies = [strip_header(strip_header(corpus.crlf(d), b"Message-ID"), b"To")
              for _, d in ham]
    return a, bodies


def run(args, base, account):
    workdir = os.path.join(base, "mailprocd")
    mailroot = os.path.join(workdir, "mail")
    os.makedirs(mailroot)
    os.chmod(workdir, 0o755)
    load.create_maildirs(mailroot, 2, account.owner())
    spam_peers.create_junk_maildirs(mailroot, 2, account.owner())
    if args.spam:
        template = os.path.join(base, "bayes")
        os.makedirs(template)
        if args.train:
            train = {lab: corpus.sample(args.train, args.seed + 2, lab) for lab in corpus.LABELS}
            secs = spam_peers.train_bayes(template, account, train["spam"], train["ham"])
            print("fairness_bench: Bayes trained on %d spam + %d ham in %.1f s"
                  % (args.train, args.train, secs))
        spam_peers.install_bayes(template, mailroot, 2, account)
        peer = spam_peers.Mailprocd(workdir, mailroot, 2, account, args.build,
                                    extra_conf=extra_conf(args))
    else:
        peer = peers.Mailprocd(workdir, mailroot, 2, account, args.build,
                               extra_conf=extra_conf(args))
    flood, bodies = workloads(args)
    boxes = [os.path.join(mailroot, load.user_name(B), "Maildir", "new"),
             os.path.join(mailroot, load.user_name(B), "Maildir", spam_peers.JUNK, "new")]
    watchers = {}
    sender = None
    try:
        peer.prepare()
        peer.start()
        for box in boxes:
            watchers[box] = dirwatch.DirWatcher(box)
            watchers[box].start()
        sender = BSender(peer.port, bodies)
        deadline = lambda: time.monotonic() + args.timeout   # noqa: E731

        warm = sender.send()
        first = wait_b(sender, [warm], watchers, deadline())[warm]
        quiet = sender.paced(args.interval, lambda: sender.seq > args.quiet)
        lat_quiet = wait_b(sender, quiet, watchers, deadline())
        print("B alone:       %s (warm-up, worker start: %.1f ms); inotify: %s"
              % (summary(lat_quiet.values()), first * 1000, watchers[boxes[0]].kind))

        result = {}

        def flooder():
            result["flood"] = load.run_lmtp("127.0.0.1", peer.port, flood, args.connections)

        t = threading.Thread(target=flooder)
        a_before = count_user(mailroot, A)
        start = time.monotonic()
        t.start()
        a_done = {}

        def flood_delivered():
            if count_user(mailroot, A) - a_before >= args.messages:
                a_done.setdefault("t", time.monotonic())
                return True
            if time.monotonic() - start > args.timeout:
                raise RuntimeError("A's flood not delivered after %.0f s" % args.timeout)
            return False
        loaded = sender.paced(args.interval, flood_delivered)
        t.join()
        stats, a_start, a_end = result["flood"]
        if stats.errors:
            raise RuntimeError("A's flood: %d errors, first: %s" % (len(stats.errors),
                                                                    stats.errors[0]))
        lat_loaded = wait_b(sender, loaded, watchers, deadline())
        a_secs = a_done["t"] - start
        print("A's flood:     %d msgs over %d conns, accepted in %.2f s (%.1f msgs/s), "
              "delivered in %.2f s (%.1f msgs/s)" % (
                  args.messages, args.connections, a_end - a_start,
                  args.messages / (a_end - a_start), a_secs, args.messages / a_secs))
        print("B under flood: %s" % summary(lat_loaded.values()))
        if len(loaded) < 5:
            print("fairness_bench: only %d of B's messages under load: use a shorter "
                  "--interval or a larger -m" % len(loaded))
        # B alone again, as many messages as under the flood, the same
        # bodies in the same order: a max compares with a max of as many
        again = sender.paced_bodies(args.interval, lambda: False,
                                    [sender.body_index(q) for q in loaded])
        lat_again = wait_b(sender, again, watchers, deadline())
        print("B alone again: %s" % summary(lat_again.values()))
        print("ratio B latency flood/alone: median %.2f, max %.2f (against B alone again: "
              "same messages, as many)" % (
                  statistics.median(lat_loaded.values()) / statistics.median(lat_again.values()),
                  max(lat_loaded.values()) / max(lat_again.values())))
        return 0
    except spam_peers.NotSupported as e:
        print("mailprocd: not supported by this build: %s" % e)
        return 0
    finally:
        if sender is not None:
            sender.close()
        for w in watchers.values():
            w.stop()
        peer.stop()


def main():
    args = parse_args()
    account = sysutil.Account()
    base = tempfile.mkdtemp(prefix="mailprocd-fair-bench.", dir=args.dir)
    os.chmod(base, 0o755)
    print("fairness_bench: %s (%s), mailprocd as %s, spam_engine %s, %s, load average %.2f"
          % (base, sysutil.fs_type(base), account.name,
             "spamassassin" if args.spam else "none",
             extra_conf(args).strip().replace("\n", ", ") or "default workers and turns",
             os.getloadavg()[0]))
    try:
        return run(args, base, account)
    except (RuntimeError, OSError, smtplib.SMTPException, corpus.CorpusMissing,
            ValueError) as e:
        print("fairness_bench: %s" % e, file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print("fairness_bench: kept %s" % base)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
