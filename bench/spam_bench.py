#!/usr/bin/python3
"""spam_bench.py - spam filtering throughput: mailprocd's embedded
SpamAssassin against procmail + spamassassin, procmail + spamc/spamd, and
SpamAssassin alone in process.

N messages of the SpamAssassin public corpus (bench/corpus.py, default
500, a fixed sample) go to R users round-robin; every peer classifies them
with the same SpamAssassin rules, local tests only, and the three that
deliver put spam (X-Spam-Flag: YES, or `if spam`) into ~/Maildir/.Junk/
and the rest into ~/Maildir/ (see bench/spam_peers.py).  The peers other
than mailprocd get each message with the Received, Return-Path and
Delivered-To lines an MTA adds before its delivery agent runs, as
mailprocd adds them itself:

  spawn      procmail spawned per message running `spamassassin -L`, C at
             a time (slow: only the first --spawn-messages messages);
  spamd      procmail spawned per message running spamc, to a private
             spamd with one child per core;
  bound      bench/sa_bound.pl: Mail::SpamAssassin loaded once, one
             process per core, checking only (no delivery);
  mailprocd  LMTP over C connections, spam_engine spamassassin; reported
             as not supported when the build does not score (a GTUBE
             probe must land in Junk first).

Before the runs, one Bayes database is trained with sa-learn on --train
spam and as many ham messages (not among the N; 200 each by default, the
least SpamAssassin needs to use Bayes at all) and copied into every
user's ~/.spamassassin, for every peer alike; --train 0 leaves Bayes
untrained.  Each peer prints msgs/s until every message is a file in a
new/ directory (bound: until its last check), and the CPU it used per
message (its processes, the agents spawned for it; the bench's own LMTP
client or spawning shown apart) with the minor page faults of the daemon
or of sa_bound.pl's children; then the ratios.

What the clocks include.  By default (cold) every peer starts its
measured work from a started but unused state: mailprocd's clock runs from
the first LMTP connection, so it includes forking each user's worker from
the spawner and that worker's copy-on-write first touches of the loaded
interpreter and its Bayes set-up; sa_bound.pl's runs from its first fork,
so it includes its children's forks, first touches and user switches;
spamd's children are forked before the clock but have checked nothing.
With --warm (bound, mailprocd and spawn, which has nothing to warm; not
spamd), the steady state of a running system: before the clock,
mailprocd gets one message per user (extra corpus ham, none of the N nor
of the training) and the bench waits for them in new/ and moves them to
cur/, so that every user's worker is running and has checked one;
sa_bound.pl's children each check one such message as their first user
and are released together when all are ready.  The N measured messages are the same in both
modes, and only they are counted (msgs/s and CPU).

    bench/spam_bench.py [-n 500] [-r 10] [-c 4] [--spawn-messages 40]
                        [--train 200] [--only spawn,spamd,bound,mailprocd]
                        [--spam-concurrency N] [--warm] [--delivery-nice N]

Run as root (peers as nobody) or as a user; needs scripts/setup.sh --bench.
"""
import argparse
import collections
import os
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus        # noqa: E402
import load          # noqa: E402
import spam_peers    # noqa: E402
import sysutil       # noqa: E402

PEERS = ("spawn", "spamd", "bound", "mailprocd")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--messages", type=int, default=500,
                   help="corpus messages (default 500)")
    p.add_argument("-r", "--users", type=int, default=10, help="users (default 10)")
    p.add_argument("-c", "--connections", type=int, default=4,
                   help="LMTP connections / parallel procmail processes (default 4)")
    p.add_argument("--spawn-messages", type=int, default=40,
                   help="messages for the spawn peer, the first of the N (default 40)")
    p.add_argument("--procs", type=int, default=os.cpu_count() or 1,
                   help="spamd children and sa_bound.pl processes (default: cores, %d)"
                   % (os.cpu_count() or 1))
    p.add_argument("--train", type=int, default=200,
                   help="Bayes training: spam and ham messages each (default 200; 0: none)")
    p.add_argument("--seed", type=int, default=1, help="corpus sample seed (default 1)")
    p.add_argument("--only", default=",".join(PEERS),
                   help="comma-separated peers to run (default %s)" % ",".join(PEERS))
    p.add_argument("--build", default=os.path.join(REPO, "build"),
                   help="mailprocd build directory (default build/)")
    p.add_argument("--dir", default="/var/tmp",
                   help="where the maildirs and work files go (default /var/tmp)")
    p.add_argument("--timeout", type=float, default=600,
                   help="seconds to wait for delivery (default 600)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--delivery-nice", type=int, choices=range(20), metavar="0..19",
                   help="mailprocd's delivery_nice (default: mailprocd's)")
    p.add_argument("--spam-concurrency", type=int,
                   help="mailprocd's spam_concurrency (default: its default, one per core)")
    p.add_argument("--warm", action="store_true",
                   help="warm up every peer's processes (one unmeasured check each) "
                   "before the clock: steady state, not start-up")
    a = p.parse_args()
    a.only = [x.strip() for x in a.only.split(",") if x.strip()]
    for x in a.only:
        if x not in PEERS:
            p.error("unknown peer %r (choose from %s)" % (x, ", ".join(PEERS)))
    if min(a.messages, a.users, a.connections, a.spawn_messages, a.procs) < 1:
        p.error("-n, -r, -c, --spawn-messages and --procs must be positive")
    if a.warm and "spamd" in a.only:
        p.error("--warm does not warm spamd's children (not written): leave spamd out")
    if a.train < 0:
        p.error("--train must not be negative")
    if a.spam_concurrency is not None and a.spam_concurrency < 1:
        p.error("--spam-concurrency must be positive")
    a.spawn_messages = min(a.spawn_messages, a.messages)
    return a


def make_peer(name, workdir, mailroot, args, account):
    if name == "spawn":
        return spam_peers.SpawnSA(workdir, mailroot, args.users, account)
    if name == "spamd":
        return spam_peers.Spamd(workdir, mailroot, args.users, account, args.procs)
    if name == "bound":
        return spam_peers.Bound(workdir, mailroot, args.users, account, args.procs)
    conf = "spam_concurrency %d\n" % args.spam_concurrency if args.spam_concurrency else ""
    if args.delivery_nice is not None:
        conf += "delivery_nice %d\n" % args.delivery_nice
    if args.warm:
        # The warm workers must outlive the pause between warm-up and run
        # (the default 300 s would too; this says so, and run_peer checks).
        conf += "worker_idle_timeout 3600\n"
    return spam_peers.Mailprocd(workdir, mailroot, args.users, account, args.build,
                                extra_conf=conf)


def as_mta_delivers(work):
    """work as an MTA hands it to its local delivery agent (Postfix: smtpd
    adds Received, local adds Return-Path and Delivered-To), which is what
    mailprocd's worker has in front of SpamAssassin too; without them the
    corpus's own 2002 Return-Path lines decide envelope tests such as
    HEADER_FROM_DIFFERENT_DOMAINS for the other peers only."""
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    out = []
    for i, (rcpt, msg) in enumerate(work):
        head = ("Return-Path: <%s>\r\nDelivered-To: %s\r\n"
                "Received: from client.bench.test ([127.0.0.1])\r\n"
                "\tby bench.test (Postfix) with ESMTP id B%05d\r\n"
                "\tfor <%s>; %s\r\n" % (load.SENDER, rcpt, i, rcpt, date))
        out.append((rcpt, head.encode() + msg))
    return out


class CpuMeter:
    """CPU seconds from now on, counted whatever the load: the peer's
    daemon (its process tree: mailprocd's processes, spamd and its
    children), the delivery agents this script spawned and reaped
    (procmail, spamc, spamassassin), and apart this script's own until
    the last message was handed over: the LMTP client, or the threads
    that spawn the agents ("client")."""

    def __init__(self, peer):
        self.proc = getattr(peer, "proc", None)
        self.daemon = self._daemon()
        self.faults = self._faults()
        self.kids = self._usage(resource.RUSAGE_CHILDREN)
        self.me = self._usage(resource.RUSAGE_SELF)
        self.client = None

    def sent(self):
        self.client = self._usage(resource.RUSAGE_SELF) - self.me

    def _daemon(self):
        return sysutil.tree_cpu(self.proc.pid) if self.proc is not None else 0.0

    def _faults(self):
        """the daemon's minor faults (not the spawned agents')"""
        return sysutil.tree_minor_faults(self.proc.pid) if self.proc is not None else None

    @staticmethod
    def _usage(who):
        r = resource.getrusage(who)
        return r.ru_utime + r.ru_stime

    def since(self):
        return {"cpu": self._daemon() - self.daemon
                + self._usage(resource.RUSAGE_CHILDREN) - self.kids,
                "client_cpu": self.client,
                "minflt": None if self.faults is None else self._faults() - self.faults}


def run_peer(name, base, template, args, account, work, warm):
    """Set up, run and tear down one peer.  Returns a result dict.  warm:
    the --warm messages, (rcpt, bytes) one per user, or None."""
    workdir = os.path.join(base, name)
    mailroot = os.path.join(workdir, "mail")
    os.makedirs(mailroot)
    os.chmod(workdir, 0o755)
    load.create_maildirs(mailroot, args.users, account.owner())
    spam_peers.create_junk_maildirs(mailroot, args.users, account.owner())
    spam_peers.install_bayes(template, mailroot, args.users, account)
    account.chown_tree(workdir)
    peer = make_peer(name, workdir, mailroot, args, account)
    result = {"name": name, "label": peer.label, "transport": peer.transport,
              "messages": len(work), "errors": []}
    try:
        peer.prepare()
        peer.start()
        if warm and name != "spawn":
            t0 = time.monotonic()
            pids = peer.warm(warm[:args.users] if name == "mailprocd" else as_mta_delivers(warm))
            if name == "mailprocd":
                result["warm"] = ("%d messages delivered in %.1f s before the clock, moved to "
                                  "cur/; %d daemon processes then" % (
                                      len(warm[:args.users]), time.monotonic() - t0, len(pids)))
        os.sync()   # the previous peer's dirty pages are not this one's cost
        if name == "bound":
            stats, start, end, spam = peer.deliver(work, args.connections)
            result.update(ok=stats.ok, seconds=end - start, junk=spam, cpu=peer.cpu,
                          minflt=peer.minflt)
            if warm:
                result["warm"] = ("%d children checked one message each before the clock, "
                                  "%.2f s of CPU, not counted" % (args.procs, peer.warm_cpu))
        else:
            cpu0 = CpuMeter(peer)
            stats, start, _ = peer.deliver(work, args.connections)
            cpu0.sent()
            done = spam_peers.wait_boxes(mailroot, args.users, stats.ok,
                                         time.monotonic() + args.timeout)
            result.update(cpu0.since())
            boxes = spam_peers.count_boxes(mailroot, args.users)
            result.update(ok=stats.ok, errors=stats.errors, junk=boxes["junk"],
                          on_disk=boxes["inbox"] + boxes["junk"],
                          seconds=None if done is None else done - start,
                          scanned=spam_peers.count_scanned(mailroot, args.users))
            gone = peer.warm_gone() if warm and name == "mailprocd" else []
            if gone:
                result["errors"].append("%d processes of the warm-up were gone after "
                                        "the run (pids %s): not warm" % (len(gone), gone))
            if name != "mailprocd" and result["scanned"] < result["on_disk"]:
                result["errors"].append("only %d of %d delivered messages were scanned"
                                        % (result["scanned"], result["on_disk"]))
    except spam_peers.NotSupported as e:
        result["unsupported"] = str(e)
    except (RuntimeError, OSError) as e:
        result["errors"].append(str(e))
    finally:
        peer.stop()
        result["load"] = os.getloadavg()[0]
        if result["errors"] or "unsupported" in result:
            result["diagnostics"] = peer.diagnostics()
    return result


def rate(r):
    if r and r.get("seconds") and "ok" in r and not r["errors"]:
        return r["ok"] / r["seconds"]
    return None


def cpu_per_msg(r):
    if rate(r) and r.get("cpu"):
        return r["cpu"] / r["ok"]
    return None


def report(r, args):
    head = "%-9s %-5s %d msgs, %d users:" % (r["name"], r["transport"], r["messages"], args.users)
    if "unsupported" in r:
        print("%s not supported by this build: %s" % (head, r["unsupported"]))
        return
    if "ok" not in r:
        print("%s FAILED: %s" % (head, "; ".join(r["errors"][:3])))
        return
    if r["seconds"] is None:
        print("%s delivered only %d of %d after %.0f s" % (head, r["on_disk"], r["ok"],
                                                           args.timeout))
    else:
        line = "%s %7.2f msgs/s (%.2f s), %d spam" % (head, r["ok"] / r["seconds"],
                                                      r["seconds"], r["junk"])
        if "scanned" in r:
            line += " in Junk, %d with X-Spam-Status" % r["scanned"]
        print(line + "  [%s; load %.1f]" % (r["label"], r["load"]))
        if r.get("cpu") is not None:
            line = "%-9s CPU %.1f ms/msg" % ("", 1000 * r["cpu"] / r["ok"])
            if r.get("client_cpu") is not None:
                line += " (+ %.1f ms/msg in this script: %s)" % (
                    1000 * r["client_cpu"] / r["ok"],
                    "the LMTP client" if r["transport"] == "lmtp" else "spawning")
            if r.get("minflt") is not None:
                line += "; %.1f minor faults/msg" % (r["minflt"] / r["ok"])
            print(line)
    if r.get("warm"):
        print("%-9s warm-up: %s" % ("", r["warm"]))
    if r["errors"]:
        print("    %d errors, first: %s" % (len(r["errors"]), r["errors"][0]))


def main():
    args = parse_args()
    try:
        sample = corpus.sample(args.messages, args.seed)
        train = {lab: corpus.sample(args.train, args.seed, lab, exclude=sample)
                 for lab in corpus.LABELS}
        warm_msgs = None
        if args.warm:
            extra = corpus.sample(max(args.users, args.procs), args.seed, "ham",
                                  exclude=sample + train["spam"] + train["ham"])
            warm_msgs = [(load.recipient(i % args.users), corpus.crlf(data))
                         for i, (_, data) in enumerate(extra)]
    except (corpus.CorpusMissing, ValueError) as e:
        print("spam_bench: %s" % e, file=sys.stderr)
        return 2
    account = sysutil.Account()
    base = tempfile.mkdtemp(prefix="mailprocd-spam-bench.", dir=args.dir)
    os.chmod(base, 0o755)
    labels = collections.Counter(lab for lab, _ in sample)
    print("spam_bench: %s (%s), peers run as %s; %s; %s; load average %.2f" % (
        base, sysutil.fs_type(base), account.name, ", ".join(args.only),
        spam_peers.run_sa_version(), os.getloadavg()[0]))
    print("spam_bench: %d corpus messages (seed %d: %d spam, %d ham by label) to %d users; %s"
          % (args.messages, args.seed, labels["spam"], labels["ham"], args.users,
             "WARM: every peer's processes checked one unmeasured message before the clock"
             if args.warm else "cold: the clocks include the processes' start-up"))
    work = [(load.recipient(i % args.users), corpus.crlf(data))
            for i, (_, data) in enumerate(sample)]
    results = {}
    try:
        template = os.path.join(base, "bayes")
        os.makedirs(template)
        if args.train:
            secs = spam_peers.train_bayes(template, account, train["spam"], train["ham"])
            print("spam_bench: Bayes trained on %d spam + %d ham in %.1f s, copied to "
                  "every user" % (args.train, args.train, secs))
        for name in args.only:
            w = work if name == "mailprocd" else as_mta_delivers(work)
            w = w[:args.spawn_messages] if name == "spawn" else w
            results[name] = run_peer(name, base, template, args, account, w, warm_msgs)
            report(results[name], args)
            if results[name].get("diagnostics"):
                print("    last log lines:\n" + "".join(
                    "      " + l + "\n" for l in results[name]["diagnostics"].splitlines()))
    except (RuntimeError, OSError) as e:
        print("spam_bench: %s" % e, file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print("spam_bench: kept %s" % base)
        else:
            shutil.rmtree(base, ignore_errors=True)

    m = rate(results.get("mailprocd"))
    for other, what in (("spamd", "spamd"), ("bound", "SA-bound"), ("spawn", "spawn")):
        o = rate(results.get(other))
        if m and o:
            print("ratio mailprocd/%s (msgs/s): %.2f" % (what, m / o))
    for a, b in (("bound", "spamd"), ("spamd", "spawn")):
        ra, rb = rate(results.get(a)), rate(results.get(b))
        if ra and rb:
            print("ratio %s/%s (msgs/s): %.2f" % (a, b, ra / rb))
    # CPU per message, which the machine's load hardly changes: the
    # bound's over the peer's (1.0: as cheap as checking alone).
    b = cpu_per_msg(results.get("bound"))
    for other in ("mailprocd", "spamd"):
        o = cpu_per_msg(results.get(other))
        if b and o:
            print("ratio SA-bound/%s (CPU per message): %.2f" % (other, b / o))
    bad = any(r["errors"] or ("ok" in r and r.get("seconds") is None)
              for r in results.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
