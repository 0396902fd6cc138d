#!/usr/bin/python3
"""lmtp_bench.py - delivery throughput of mailprocd against Dovecot LMTP and
against procmail spawned per message.

M messages of ~4 KB go to R users (round-robin) over C LMTP connections
from a real client (Python smtplib.LMTP, one thread per connection), to a
private Dovecot LMTP instance and to mailprocd, both on loopback; procmail
gets the same messages as M processes, C at a time.  Every peer writes to
maildirs on the same disk as the same unprivileged account (nobody when run
as root) with its default durability (each fsyncs the mail file).

For each peer it prints "accepted" msgs/s (until the last LMTP reply or
procmail exit) and "delivered" msgs/s (until all M files are in the
maildirs' new/): mailprocd acknowledges once a message is durable in its
queue and delivers afterwards, so the two differ for it.

Workloads (--workload, several in one run, each at every -m):
  rr           round-robin: message i on connection i % C (the default);
  streams      per-user streams: one LMTP session per user carrying that
               user's messages in sequence, C sessions at a time, users
               taken in turn (Postfix's lmtp client, smtp-source -s lanes);
  smtp-source  the same streams sent by Postfix's /usr/sbin/smtp-source
               (-L -d -s 1, one process per user, C at a time).
procmail runs only round-robin.  Each workload and size prints every peer's
line and the ratio to Dovecot, then a table of them all.

    bench/lmtp_bench.py [-m 2000[,10000]] [-r 50] [-c 4] [--workload rr,streams,smtp-source]
                        [--only dovecot,procmail,mailprocd] [--delivery-nice N]

Run as root or as a user; see bench/RESULTS.md for figures.  Run it on a disk
where nothing was removed in the last 5 minutes (and use --keep when runs
follow each other): ext4 without a journal reads every recently freed inode
when it allocates one, and an earlier bench's clean-up can take a fifth of
the CPU of the next run.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load      # noqa: E402
import peers     # noqa: E402
import sysutil   # noqa: E402

PEERS = ("dovecot", "procmail", "mailprocd")
WORKLOADS = ("rr", "streams", "smtp-source")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--messages", default="2000",
                   help="messages, or a comma-separated list of counts (default 2000)")
    p.add_argument("--workload", default="rr",
                   help="comma-separated workloads: %s (default rr)" % ", ".join(WORKLOADS))
    p.add_argument("-r", "--users", type=int, default=50, help="users (default 50)")
    p.add_argument("-c", "--connections", type=int, default=4,
                   help="LMTP connections / parallel procmail processes (default 4)")
    p.add_argument("-s", "--size", type=int, default=4096, help="message size in bytes (default 4096)")
    p.add_argument("--only", default=",".join(PEERS),
                   help="comma-separated peers to run (default %s)" % ",".join(PEERS))
    p.add_argument("--build", default=os.path.join(REPO, "build"),
                   help="mailprocd build directory (default build/)")
    p.add_argument("--dir", default="/var/tmp",
                   help="where the maildirs and work files go (default /var/tmp; a disk, not tmpfs)")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for delivery (default 300)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--delivery-nice", type=int, choices=range(20), metavar="0..19",
                   help="mailprocd's delivery_nice (default: mailprocd's)")
    a = p.parse_args()
    a.only = [x.strip() for x in a.only.split(",") if x.strip()]
    try:
        a.counts = [int(x) for x in a.messages.split(",") if x.strip()]
    except ValueError:
        p.error("-m takes message counts: %r" % a.messages)
    a.workloads = [x.strip() for x in a.workload.split(",") if x.strip()]
    for x in a.workloads:
        if x not in WORKLOADS:
            p.error("unknown workload %r (choose from %s)" % (x, ", ".join(WORKLOADS)))
    if "smtp-source" in a.workloads and not os.access(load.SMTP_SOURCE, os.X_OK):
        p.error("%s is missing (apt install postfix)" % load.SMTP_SOURCE)
    for x in a.only:
        if x not in PEERS:
            p.error("unknown peer %r (choose from %s)" % (x, ", ".join(PEERS)))
    if not a.counts or min(a.counts + [a.users, a.connections, a.size]) < 1:
        p.error("-m, -r, -c and -s must be positive")
    return a


def make_peer(name, workdir, mailroot, args, account):
    if name == "dovecot":
        return peers.Dovecot(workdir, mailroot, args.users, account)
    if name == "procmail":
        return peers.Procmail(workdir, mailroot, args.users, account)
    conf = ("delivery_nice %d\n" % args.delivery_nice) if args.delivery_nice is not None else ""
    return peers.Mailprocd(workdir, mailroot, args.users, account, args.build, extra_conf=conf)


def send(peer, workload, work, args):
    """Send the messages the workload's way.  Returns (Stats, start, end)."""
    if workload == "rr":
        return peer.deliver(work, args.connections)
    if workload == "streams":
        return load.run_lmtp_streams("127.0.0.1", peer.port, work, args.connections)
    return load.run_smtp_source("127.0.0.1", peer.port, work, args.connections, args.size)


def run_peer(name, base, args, account, workload, work):
    """Set up, run and tear down one peer.  Returns a result dict."""
    workdir = os.path.join(base, "%s-%s-%d" % (name, workload, args.messages))
    mailroot = os.path.join(workdir, "mail")
    os.makedirs(mailroot)
    os.chmod(workdir, 0o755)
    account.chown_tree(workdir)
    load.create_maildirs(mailroot, args.users, account.owner())
    peer = make_peer(name, workdir, mailroot, args, account)
    result = {"name": name, "transport": peer.transport, "errors": []}
    try:
        peer.prepare()
        peer.start()
        os.sync()   # the previous peer's dirty pages are not this one's cost
        stats, start, accepted = send(peer, workload, work, args)
        delivered = load.wait_delivered(mailroot, args.users, stats.ok,
                                        time.monotonic() + args.timeout)
        result.update(ok=stats.ok, errors=stats.errors,
                      accepted_s=accepted - start,
                      delivered_s=None if delivered is None else delivered - start,
                      on_disk=load.count_delivered(mailroot, args.users))
    except (RuntimeError, OSError) as e:
        result["errors"].append(str(e))
    finally:
        peer.stop()
        if result["errors"]:
            result["diagnostics"] = peer.diagnostics()
    return result


def rate(n, seconds):
    return n / seconds if seconds else float("inf")


def report(r, args, workload):
    head = "%-9s %-11s %d msgs x %d B, %d users, %d conns:" % (
        r["name"], workload, args.messages, args.size, args.users, args.connections)
    if "ok" not in r:
        print("%s FAILED: %s" % (head, "; ".join(r["errors"][:3])))
        return
    line = "%s accepted %7.1f msgs/s (%.2f s)" % (head, rate(r["ok"], r["accepted_s"]), r["accepted_s"])
    if r["delivered_s"] is None:
        line += ", delivered only %d of %d after %.0f s" % (r["on_disk"], r["ok"], args.timeout)
    else:
        line += ", delivered %7.1f msgs/s (%.2f s)" % (rate(r["ok"], r["delivered_s"]), r["delivered_s"])
    print(line)
    if r["errors"]:
        print("    %d errors, first: %s" % (len(r["errors"]), r["errors"][0]))


def delivered_rate(r):
    if r and "ok" in r and r["delivered_s"] and not r["errors"]:
        return rate(r["ok"], r["delivered_s"])
    return None


def run_workload(workload, base, args, account):
    """Every peer on one workload at args.messages.  Returns {peer: result}."""
    if workload == "rr":
        work = load.workload(args.messages, args.users, args.size)
    else:
        work = load.user_streams(args.messages, args.users, args.size)
    results = {}
    for name in args.only:
        if name == "procmail" and workload != "rr":
            continue    # spawned per message: no sessions to stream
        results[name] = run_peer(name, base, args, account, workload, work)
        report(results[name], args, workload)
        if results[name].get("diagnostics"):
            print("    last log lines:\n" + "".join(
                "      " + l + "\n" for l in results[name]["diagnostics"].splitlines()))
    m = delivered_rate(results.get("mailprocd"))
    for other in ("dovecot", "procmail"):
        o = delivered_rate(results.get(other))
        if m and o:
            print("ratio mailprocd/%s (delivered msgs/s): %.2f" % (other, m / o))
    sys.stdout.flush()
    return results


def table(rows, args):
    """The runs side by side: delivered msgs/s (mailprocd's accepted too)."""
    print("\n| workload | messages | Dovecot LMTP | mailprocd | ratio |")
    print("|---|---|---|---|---|")
    for workload, messages, results in rows:
        d = delivered_rate(results.get("dovecot"))
        m = delivered_rate(results.get("mailprocd"))
        r = results.get("mailprocd") or {}
        acc = rate(r["ok"], r["accepted_s"]) if r.get("ok") else None
        print("| %s | %d | %s | %s%s | %s |" % (
            workload, messages, "%.0f" % d if d else "-", "%.0f" % m if m else "-",
            " (accepted %.0f/s)" % acc if acc else "",
            "**%.2f**" % (m / d) if m and d else "-"))


def main():
    args = parse_args()
    account = sysutil.Account()
    base = tempfile.mkdtemp(prefix="mailprocd-bench.", dir=args.dir)
    os.chmod(base, 0o755)   # the servers' own accounts must reach it
    kind = sysutil.fs_type(base)
    print("lmtp_bench: %s (%s), peers run as %s; %s; %s" % (
        base, kind, account.name, ", ".join(args.only), ", ".join(args.workloads)))
    if kind in ("tmpfs", "ramfs"):
        print("lmtp_bench: warning: %s is %s, fsync costs nothing there" % (base, kind))
    rows = []
    try:
        for workload in args.workloads:
            for count in args.counts:
                args.messages = count
                rows.append((workload, count, run_workload(workload, base, args, account)))
    finally:
        if args.keep:
            print("lmtp_bench: kept %s" % base)
        else:
            shutil.rmtree(base, ignore_errors=True)
    if len(rows) > 1:
        table(rows, args)
    bad = any(r["errors"] or r.get("delivered_s") is None
              for _, _, results in rows for r in results.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
