#!/usr/bin/python3
"""metrics_bench.py - what mailprocd's figures cost: on the delivery path,
and per scrape as the queue grows, beside Debian's postfix_exporter.

delivery  M messages over C LMTP connections to R users (bench/load.py, as
          lmtp_bench.py), maildir out, measured until every file is in
          new/: mailprocd without `listen metrics`, then with it and a
          client process scraping GET /metrics every --interval (100 ms),
          alternating for --rounds rounds.  Prints delivered msgs/s of
          each and the difference.
backlog   a queue of N messages held deferred (--backlog 1000,10000): each
          peer takes N messages for a destination where nothing listens
          and keeps them (retry in an hour); then a client scrapes --scrapes
          times, one after the other, and prints latency p50/p99/max and
          the body size.  Peers: mailprocd (each message forwarded to a
          relay_host on a closed port: N outbound messages in deferred/)
          with `listen metrics`, and a private Postfix 3.7
          (tests/integration/postfix_instance.py, relayed over LMTP to a
          closed port: N messages in its deferred queue) read by Debian's
          prometheus-postfix-exporter, which asks Postfix's showq for the
          whole queue on every scrape and tails the Postfix log.
mailmond  mailmond sends a probe every --probe-interval over LMTP to
          mailprocd; the bench sends its own messages on the same path
          into another maildir and stamps their arrival with inotify
          (bench/dirwatch.py); prints both delay distributions.

    bench/metrics_bench.py [--only delivery,backlog,mailmond] [--backlog 1000,10000]

Run as root (Postfix needs it; mailprocd and the exporter run as nobody);
see bench/RESULTS.md for figures.  Processes are stopped by pid, the work
directory removed (--keep keeps it).
"""
import argparse
import multiprocessing
import os
import re
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import dirwatch   # noqa: E402
import load       # noqa: E402
import peers      # noqa: E402
import sysutil    # noqa: E402

PARTS = ("delivery", "backlog", "mailmond")
EXPORTER = "/usr/bin/prometheus-postfix-exporter"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(PARTS),
                   help="comma-separated parts (default %s)" % ",".join(PARTS))
    p.add_argument("-m", "--messages", type=int, default=2000, help="delivery: messages (default 2000)")
    p.add_argument("-r", "--users", type=int, default=50, help="delivery: users (default 50)")
    p.add_argument("-c", "--connections", type=int, default=4, help="LMTP/SMTP connections (default 4)")
    p.add_argument("-s", "--size", type=int, default=4096, help="message size in bytes (default 4096)")
    p.add_argument("--rounds", type=int, default=5,
                   help="delivery: rounds of (without, with) metrics (default 5)")
    p.add_argument("--interval", type=float, default=0.1,
                   help="delivery: seconds between scrapes (default 0.1)")
    p.add_argument("--backlog", default="1000,10000",
                   help="backlog: comma-separated queue sizes (default 1000,10000)")
    p.add_argument("--scrapes", type=int, default=200, help="backlog: scrapes per size (default 200)")
    p.add_argument("--peers", default="mailprocd,postfix",
                   help="backlog: peers (default mailprocd,postfix)")
    p.add_argument("--probes", type=int, default=30, help="mailmond: probes (default 30)")
    p.add_argument("--probe-interval", type=float, default=1.0,
                   help="mailmond: seconds between probes (default 1)")
    p.add_argument("--build", default=os.path.join(REPO, "build"),
                   help="mailprocd build directory (default build/)")
    p.add_argument("--dir", default="/var/tmp", help="work directory's parent (default /var/tmp)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    a = p.parse_args()
    a.only = [x.strip() for x in a.only.split(",") if x.strip()]
    for x in a.only:
        if x not in PARTS:
            p.error("unknown part %r (choose from %s)" % (x, ", ".join(PARTS)))
    a.backlog = [int(x) for x in a.backlog.split(",") if x.strip()]
    a.peers = [x.strip() for x in a.peers.split(",") if x.strip()]
    return a


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def pct(values, q):
    """The q-th percentile (nearest rank) of values."""
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q / 100.0 * len(v) + 0.5)) - 1))]


# ------------------------------------------------------------------ HTTP

def http_get(port, path="/metrics", timeout=30):
    """GET over a new connection (HTTP/1.0, as Prometheus would with no
    keep-alive); returns (status, body bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(("GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" % path).encode())
        chunks = []
        while True:
            c = s.recv(262144)
            if not c:
                break
            chunks.append(c)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return (int(m.group(1)) if m else 0), body


def timed_scrape(port):
    t0 = time.monotonic()
    status, body = http_get(port)
    return time.monotonic() - t0, status, body


def wait_http(port, proc=None, timeout=30):
    end = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("exited with %d before serving HTTP" % proc.returncode)
        try:
            if http_get(port, timeout=5)[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > end:
            raise RuntimeError("nothing serves GET /metrics on port %d" % port)
        time.sleep(0.05)


def sample(body, name, labels=""):
    """The value of one sample line 'name{labels} value' (labels exactly as
    rendered, '' for none), or None."""
    rx = re.compile(r"^%s%s (\S+)" % (re.escape(name), re.escape(labels)), re.M)
    m = rx.search(body.decode("utf-8", "replace"))
    return float(m.group(1)) if m else None


def cpu_seconds(pid):
    """utime + stime of pid so far, from /proc."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metrics_child(master, port):
    """The pid below master holding the listening socket of 127.0.0.1:port
    (the `mailprocd: metrics` child)."""
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            w = line.split()
            if w[1].endswith(":%04X" % port) and w[3] == "0A":
                inode = w[9]
    for pid in sysutil.descendants(master):
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == "socket:[%s]" % inode:
                    return pid
        except OSError:
            pass
    raise RuntimeError("no process below %d listens on port %d" % (master, port))


def scraper(port, interval, stop, out):
    """A separate process (not a thread: it must not take the GIL from the
    LMTP client threads) scraping every interval until stop is set."""
    lat, bad = [], 0
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            d, status, _ = timed_scrape(port)
            if status == 200:
                lat.append(d)
            else:
                bad += 1
        except OSError:
            bad += 1
        stop.wait(max(0.0, interval - (time.monotonic() - t0)))
    out.put((lat, bad))


# ------------------------------------------------------------------ senders

def send_all(proto, port, work, connections, timeout=120):
    """work over parallel SMTP or LMTP connections; returns (ok, errors)."""
    if proto == "lmtp":
        stats, _, _ = load.run_lmtp("127.0.0.1", port, work, connections, timeout)
        return stats.ok, stats.errors
    stats = load.Stats()

    def client(items):
        try:
            with smtplib.SMTP("127.0.0.1", port, local_hostname="client.bench.test",
                              timeout=timeout) as s:
                for rcpt, msg in items:
                    try:
                        s.sendmail(load.SENDER, [rcpt], msg)
                        stats.success()
                    except smtplib.SMTPException as e:
                        stats.failure("%s: %s" % (rcpt, e))
        except (OSError, smtplib.SMTPException) as e:
            stats.failure("connection: %s" % e)
    threads = [threading.Thread(target=client, args=(work[c::connections],))
               for c in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stats.ok, stats.errors


def count_files(top):
    n = 0
    for _, _, files in os.walk(top):
        n += len(files)
    return n


def wait_count(what, fn, n, timeout):
    end = time.monotonic() + timeout
    while True:
        have = fn()
        if have >= n:
            return have
        if time.monotonic() > end:
            raise RuntimeError("%s: %d of %d after %.0f s" % (what, have, n, timeout))
        time.sleep(0.2)


# ------------------------------------------------------------------ part 1

def delivery_run(base, tag, args, account, work, metrics):
    workdir = os.path.join(base, "delivery-" + tag)
    mailroot = os.path.join(workdir, "mail")
    os.makedirs(mailroot)
    os.chmod(workdir, 0o755)
    load.create_maildirs(mailroot, args.users, account.owner())
    port = sysutil.free_port()
    extra = "listen metrics 127.0.0.1:%d\n" % port if metrics else ""
    peer = peers.Mailprocd(workdir, mailroot, args.users, account, args.build, extra_conf=extra)
    res = {"tag": tag, "load": loadavg()}
    scr = None
    try:
        peer.prepare()
        peer.start()
        if metrics:
            wait_http(port, peer.proc)
            mpid = metrics_child(peer.proc.pid, port)
            cpu0 = cpu_seconds(mpid)
            stop, out = multiprocessing.Event(), multiprocessing.Queue()
            scr = multiprocessing.Process(target=scraper, args=(port, args.interval, stop, out))
            scr.start()
        os.sync()
        start = time.monotonic()
        ok, errors = send_all("lmtp", peer.port, work, args.connections)
        res["accepted_s"] = time.monotonic() - start
        done = load.wait_delivered(mailroot, args.users, ok, time.monotonic() + 300)
        if scr is not None:
            stop.set()
            lat, bad = out.get(timeout=30)
            scr.join(10)
            scr = None
            res["metrics_cpu"] = cpu_seconds(mpid) - cpu0
            res.update(scrapes=len(lat), scrape_errors=bad,
                       scrape_p50=pct(lat, 50) if lat else None,
                       scrape_p99=pct(lat, 99) if lat else None)
            # the figures saw what the maildirs saw (the worker's result
            # reaches the qmgr just after the file: wait briefly)
            end = time.monotonic() + 10
            while True:
                v = sample(http_get(port)[1], "mailprocd_deliveries_total",
                           '{status="delivered",action="maildir"}')
                if v == ok or time.monotonic() > end:
                    break
                time.sleep(0.1)
            res["counted"] = v
        if done is None or errors:
            raise RuntimeError("%d delivered of %d; errors: %s" % (
                load.count_delivered(mailroot, args.users), ok, errors[:3]))
        res["rate"] = ok / (done - start)
        res["seconds"] = done - start
    finally:
        if scr is not None:
            scr.terminate()
            scr.join(10)
        peer.stop()
        # what the daemon said about anything but a plain delivery (a run
        # much slower than the others is explained here, or nowhere)
        try:
            with open(peer.log, errors="replace") as f:
                res["notes"] = [l.rstrip() for l in f
                                if re.search(r"status=(deferred|bounced)|\b(warn(ing)?|error|"
                                             r"retry|time(d ?)?out)\b", l, re.I)]
        except OSError:
            res["notes"] = []
        shutil.rmtree(workdir, ignore_errors=True)
    return res


def part_delivery(base, args, account):
    print("\n== delivery: %d msgs x %d B, %d users, %d LMTP conns; scrape every %.0f ms ==" % (
        args.messages, args.size, args.users, args.connections, args.interval * 1000))
    work = load.workload(args.messages, args.users, args.size)
    rows = []
    for rnd in range(1, args.rounds + 1):
        for tag, metrics in (("without", False), ("with", True)):
            r = delivery_run(base, tag, args, account, work, metrics)
            r["round"] = rnd
            rows.append(r)
            extra = ""
            if metrics:
                extra = (", %d scrapes (%d failed), metrics process CPU %.0f ms, scrape p50 %.2f ms"
                         " p99 %.2f ms, counted %s") % (
                    r["scrapes"], r["scrape_errors"], r["metrics_cpu"] * 1e3, r["scrape_p50"] * 1e3,
                    r["scrape_p99"] * 1e3, "%.0f" % r["counted"] if r["counted"] is not None else "-")
            print("round %d %-7s metrics: %7.1f msgs/s (%.2f s, accepted in %.2f s), load %s%s" % (
                rnd, tag, r["rate"], r["seconds"], r["accepted_s"], r["load"], extra))
            for line in r["notes"][:5]:
                print("    log: " + line)
            if len(r["notes"]) > 5:
                print("    log: ... %d lines like these" % len(r["notes"]))
    wo = [r["rate"] for r in rows if r["tag"] == "without"]
    wi = [r["rate"] for r in rows if r["tag"] == "with"]
    mw, mi = statistics.median(wo), statistics.median(wi)
    print("median without %.1f, with %.1f msgs/s: difference %+.1f%%" % (
        mw, mi, (mi - mw) / mw * 100))
    ratios = [b / a for a, b in zip(wo, wi)]
    print("with/without per round: %s; median %.3f" % (
        ", ".join("%.2f" % x for x in ratios), statistics.median(ratios)))


# ------------------------------------------------------------------ part 2

class MailprocdBacklog:
    name = "mailprocd"

    def __init__(self, workdir, account, build):
        self.workdir, self.account = workdir, account
        self.mailroot = os.path.join(workdir, "mail")
        os.makedirs(self.mailroot)
        os.chmod(workdir, 0o755)
        load.create_maildirs(self.mailroot, 10, account.owner())
        self.port = sysutil.free_port()
        closed = sysutil.free_port()
        extra = ("listen metrics 127.0.0.1:%d\n"
                 "relay_host 127.0.0.1:%d\n"
                 "retry_schedule 1h\n"
                 "max_queue_lifetime 1d\n") % (self.port, closed)
        self.peer = peers.Mailprocd(workdir, self.mailroot, 10, account, build,
                                    rules="    forward someone@remote.test\n",
                                    extra_conf=extra)
        self.proto = "lmtp"

    def start(self):
        self.peer.prepare()
        self.peer.start()
        wait_http(self.port, self.peer.proc)
        self.in_port = self.peer.port

    def held(self):
        return count_files(os.path.join(self.workdir, "queue", "deferred"))

    def queue_figure(self, body):
        return sample(body, "mailprocd_queue_messages", '{state="deferred"}')

    def stop(self):
        self.peer.stop()


class PostfixBacklog:
    name = "postfix"

    def __init__(self, workdir, account, build):
        from postfix_instance import PostfixInstance, available
        why = available()
        if why:
            raise RuntimeError(why)
        if not os.access(EXPORTER, os.X_OK):
            raise RuntimeError("%s missing (scripts/setup.sh --bench)" % EXPORTER)
        self.account = account
        closed = sysutil.free_port()
        # Retries an hour apart: the queue stays still while it is scraped.
        self.pf = PostfixInstance(
            os.path.join(workdir, "postfix"), "inet:127.0.0.1:%d" % closed, None,
            [load.DOMAIN], main_cf={"minimal_backoff_time": "1h",
                                    "maximal_backoff_time": "1h",
                                    "queue_run_delay": "1h"})
        self.port = sysutil.free_port()
        self.exporter = None
        self.proto = "smtp"
        self.log = os.path.join(workdir, "exporter.log")

    def start(self):
        self.pf.start()
        self.in_port = self.pf.port
        argv = [EXPORTER, "--web.listen-address=127.0.0.1:%d" % self.port,
                "--postfix.showq_path=%s" % (self.pf.queue / "public" / "showq"),
                "--postfix.logfile_path=%s" % self.pf.log_path]
        with open(self.log, "wb") as logf:
            self.exporter = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                             stderr=subprocess.STDOUT, **exporter_account())
        wait_http(self.port, self.exporter)

    def held(self):
        return count_files(self.pf.queue / "deferred")

    def queue_figure(self, body):
        return sample(body, "postfix_showq_message_size_bytes_count", '{queue="deferred"}')

    def stop(self):
        if self.exporter is not None:
            sysutil.stop_process(self.exporter)
            self.exporter = None
        self.pf.stop(remove=False)


def exporter_account():
    """As Debian's unit runs it: user prometheus, groups adm and postdrop
    (the showq socket is in Postfix's public/, mode 0710 group postdrop)."""
    import grp
    import pwd
    try:
        pw = pwd.getpwnam("prometheus")
    except KeyError:
        pw = pwd.getpwnam("nobody")
    return {"user": pw.pw_uid, "group": pw.pw_gid,
            "extra_groups": [grp.getgrnam(g).gr_gid for g in ("adm", "postdrop")]}


def backlog_run(base, name, n, args, account):
    workdir = os.path.join(base, "backlog-%s-%d" % (name, n))
    os.makedirs(workdir)
    os.chmod(workdir, 0o755)
    cls = MailprocdBacklog if name == "mailprocd" else PostfixBacklog
    peer = cls(workdir, account, args.build)
    res = {"name": name, "n": n}
    try:
        peer.start()
        work = load.workload(n, 10, 1024)
        t0 = time.monotonic()
        ok, errors = send_all(peer.proto, peer.in_port, work, args.connections)
        if errors:
            raise RuntimeError("%s: %d sent, errors: %s" % (name, ok, errors[:3]))
        wait_count("%s deferred" % name, peer.held, n, 600)
        res["fill_s"] = time.monotonic() - t0
        time.sleep(1)   # let the last deferrals settle
        res["load"] = loadavg()
        lat, sizes, figure = [], set(), None
        for _ in range(args.scrapes):
            d, status, body = timed_scrape(peer.port)
            if status != 200:
                raise RuntimeError("%s: GET /metrics %d" % (name, status))
            lat.append(d)
            sizes.add(len(body))
            figure = peer.queue_figure(body)
        res.update(p50=pct(lat, 50), p99=pct(lat, 99), max=max(lat),
                   size=max(sizes), figure=figure, held=peer.held())
    finally:
        peer.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return res


def part_backlog(base, args, account):
    print("\n== backlog: scrape latency with N messages deferred, %d scrapes each ==" % args.scrapes)
    print("%-9s %6s %9s %9s %9s %9s %8s %9s  %s" % (
        "peer", "N", "p50 ms", "p99 ms", "max ms", "body B", "held", "figure", "load (fill time)"))
    for n in args.backlog:
        for name in args.peers:
            try:
                r = backlog_run(base, name, n, args, account)
            except RuntimeError as e:
                print("%-9s %6d FAILED: %s" % (name, n, e))
                continue
            print("%-9s %6d %9.2f %9.2f %9.2f %9d %8d %9s  %s (%.0f s)" % (
                name, n, r["p50"] * 1e3, r["p99"] * 1e3, r["max"] * 1e3, r["size"],
                r["held"], "%.0f" % r["figure"] if r["figure"] is not None else "-",
                r["load"], r["fill_s"]))


# ------------------------------------------------------------------ part 3

MAILMOND_CONF = """\
# mailmond for bench/metrics_bench.py
probe bench lmtp:127.0.0.1:%(lmtp)d to %(rcpt)s maildir %(maildir)s
interval %(interval)s
late_after 30s
listen metrics 127.0.0.1:%(port)d
from bench@sender.test
"""


def part_mailmond(base, args, account):
    print("\n== mailmond: %d probes every %.1f s over LMTP to mailprocd, beside the bench's own ==" % (
        args.probes, args.probe_interval))
    workdir = os.path.join(base, "mailmond")
    mailroot = os.path.join(workdir, "mail")
    os.makedirs(mailroot)
    os.chmod(workdir, 0o755)
    load.create_maildirs(mailroot, 2, account.owner())   # u0: mailmond's, u1: the bench's
    peer = peers.Mailprocd(workdir, mailroot, 2, account, args.build)
    mm = None
    watch = None
    try:
        peer.prepare()
        peer.start()
        exe = shutil.copy2(os.path.join(args.build, "src", "mailmond", "mailmond"),
                           os.path.join(workdir, "bin"))
        mport = sysutil.free_port()
        conf = os.path.join(workdir, "mailmond.conf")
        with open(conf, "w") as f:
            f.write(MAILMOND_CONF % {"lmtp": peer.port, "rcpt": load.recipient(0),
                                     "maildir": load.maildir_new(mailroot, 0)[:-4],
                                     "interval": "%dms" % int(args.probe_interval * 1000),
                                     "port": mport})
        if account.switch:
            with open(conf, "a") as f:
                f.write("user %s\n" % account.name)
        mlog = os.path.join(workdir, "mailmond.log")
        with open(mlog, "wb") as logf:
            mm = subprocess.Popen([exe, "-d", "-f", conf], stdin=subprocess.DEVNULL,
                                  stdout=logf, stderr=subprocess.STDOUT)
        wait_http(mport, mm)
        new = load.maildir_new(mailroot, 1)
        watch = dirwatch.DirWatcher(new)
        watch.start()
        # the bench's own probes, half an interval after mailmond's
        time.sleep(args.probe_interval / 2)
        sent = {}
        conn = None
        for i in range(args.probes):
            t_next = time.monotonic() + args.probe_interval
            msg = load.make_message(100000 + i, load.recipient(1), 1024)
            t0 = time.monotonic()
            # a new connection each time, as mailmond's probe child makes
            conn = smtplib.LMTP("127.0.0.1", peer.port, local_hostname="client.bench.test")
            conn.sendmail(load.SENDER, [load.recipient(1)], msg)
            conn.quit()
            sent[i] = t0
            time.sleep(max(0.0, t_next - time.monotonic()))
        time.sleep(2)
        seen = sorted(watch.seen().values())
        own = [t - s for s, t in zip(sorted(sent.values()), seen)]
        body = http_get(mport)[1]
        text = open(mlog, errors="replace").read()
        mm_delays = [float(x) for x in re.findall(r"arrived: delay ([0-9.]+)s", text)]
        print("mailmond log lines with a delay: %d; its figures: received %s, last %s s" % (
            len(mm_delays),
            sample(body, "mailmond_probes_received_total", '{probe="bench"}'),
            sample(body, "mailmond_probe_last_delay_seconds", '{probe="bench"}')))
        for label, d in (("mailmond", mm_delays), ("bench (send to inotify)", own)):
            if d:
                print("%-24s n=%3d p50 %.2f ms p90 %.2f ms max %.2f ms" % (
                    label, len(d), pct(d, 50) * 1e3, pct(d, 90) * 1e3, max(d) * 1e3))
            else:
                print("%-24s no delays (log: %s)" % (label, text[-300:]))
    finally:
        if watch is not None:
            watch.stop()
        if mm is not None:
            sysutil.stop_process(mm)
        peer.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    args = parse_args()
    account = sysutil.Account()
    base = tempfile.mkdtemp(prefix="mailprocd-metrics-bench.", dir=args.dir)
    os.chmod(base, 0o755)
    print("metrics_bench: %s (%s), as %s; parts %s; load %s; %d cpus" % (
        base, sysutil.fs_type(base), account.name, ",".join(args.only), loadavg(),
        os.cpu_count()))
    try:
        if "delivery" in args.only:
            part_delivery(base, args, account)
        if "backlog" in args.only:
            part_backlog(base, args, account)
        if "mailmond" in args.only:
            part_mailmond(base, args, account)
    finally:
        if args.keep:
            print("metrics_bench: kept %s" % base)
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
