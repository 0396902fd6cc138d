"""test_mailmond.py - mailmond, the delivery delay monitor, against the real
mailprocd: probes sent over SMTP and LMTP (TCP and a unix socket), seen in
the maildir through inotify, removed, and their delays exported; the
daemon stopped makes the probe late (alert once), started again recovered
(alert once more); a probe that never arrives is late, then lost; a sender
that gets no answer times out; config errors as file:line with -n.

The figures are read from mailmond's own /metrics, parsed by
prometheus_client and checked by `promtool check metrics`.  Intervals and
thresholds are sub-second to 2 s so that the module stays fast.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

import mpharness as H
import postfix_instance as P

PROBE_RE = re.compile(rb"^X-Mailmond-Probe:.*\bseq=(\d+);", re.M | re.I)


def mailmond_bin():
    return H.binary("src/mailmond/mailmond")


class Mailmond:
    """One mailmond process with its config file and log.  As root it is
    started as root with `user` (it must give root up itself); otherwise
    as ourselves."""

    def __init__(self, root, run_as, probes, settings=None, alert=True):
        self.root = root
        self.run_as = run_as
        self.port = H.free_ports(1)[0]
        self.conf = root / "mailmond.conf"
        self.alerts = root / "alerts"
        self.fds_dir = root / "alert-fds"
        self.fds_dir.mkdir(exist_ok=True)
        self.log_path = root / "mailmond.log"
        self.proc = None
        self.pid = self.start_time = None
        lines = ["# written by test_mailmond.py"]
        lines += [f"probe {p}" for p in probes]
        opts = {"interval": "300ms", "late_after": "10s", "lost_after": "1h",
                "timeout": "5s", "listen": f"metrics 127.0.0.1:{self.port}",
                "helo": "mailmond.example.test",
                "from": "mailmond@example.test"}
        if alert:
            opts["alert_command"] = (
                '"echo \\"$PROBE $STATE $DELAY\\" >> ' + str(self.alerts) +
                '; ls -l /proc/$$/fd > ' + str(self.fds_dir) + '/$STATE.$$"')
        opts.update(settings or {})
        if H.IS_ROOT and run_as is not None:
            opts["user"] = run_as.name
        lines += [f"{k} {v}" for k, v in opts.items() if v is not None]
        self.conf.write_text("\n".join(lines) + "\n")
        H.chown_tree(root, run_as)

    def start(self, detach=False):
        """Start it with -d (a child of ours), or without (it detaches:
        its pid is found through its listening socket)."""
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        env.setdefault("LSAN_OPTIONS", "suppressions=%s:print_suppressions=0" % (
            H.REPO / "tests" / "lsan.supp"))
        argv = [str(mailmond_bin())] + ([] if detach else ["-d", "-v"]) + \
            ["-f", str(self.conf)]
        with open(self.log_path, "ab") as logf:
            # as root, root itself starts it: mailmond drops to `user`
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT, start_new_session=True, env=env)
        if detach:
            try:
                rc = self.proc.wait(H.DEADLINE)
            except subprocess.TimeoutExpired:
                pytest.fail(f"mailmond without -d did not return\n{self.log()}")
            assert rc == 0, self.log()
            self.proc = None
            inode = H.wait_for(lambda: H._tcp_inode(self.port, 0),
                               what="the detached mailmond's listener")
            self.pid = H.wait_for(
                lambda: H.pid_holding_socket(inode, H.all_procs()),
                what="the process holding the listener")
        else:
            self.pid = self.proc.pid
        self.start_time = H.proc_stat(self.pid)["start"]
        H.wait_for(lambda: self.scrape_text() is not None or self.dead(),
                   what="mailmond's /metrics")
        assert not self.dead(), f"mailmond exited:\n{self.log()}"
        return self

    def dead(self):
        if self.proc is not None:
            return self.proc.poll() is not None
        return not H.alive(self.pid, self.start_time)

    def stop(self):
        if self.pid is None:
            return
        if not self.dead():
            os.kill(self.pid, signal.SIGTERM)
        if self.proc is not None:
            try:
                rc = self.proc.wait(H.DEADLINE)
            except subprocess.TimeoutExpired:
                rc = None
        else:
            rc = 0 if H.wait_gone(self.pid, self.start_time, H.DEADLINE) else None
        if rc is None:
            self.kill()
            pytest.fail(f"mailmond did not stop on SIGTERM\n{self.log()}")
        self.proc = self.pid = None
        bad = H.sanitizer_lines(self.log())
        assert not bad, "sanitizer report from mailmond:\n" + "\n".join(bad)
        assert rc == 0, f"mailmond exit status {rc}\n{self.log()}"

    def kill(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.pid is not None and H.alive(self.pid, self.start_time):
            os.kill(self.pid, signal.SIGKILL)
        self.proc = self.pid = None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alert_lines(self):
        try:
            return self.alerts.read_text().splitlines()
        except FileNotFoundError:
            return []

    def scrape_text(self):
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                assert r.status == 200
                return r.read().decode()
        except OSError:
            return None

    def scrape(self):
        """{(name, ((label, value), ...)): value} parsed by
        prometheus_client."""
        from prometheus_client.parser import text_string_to_metric_families
        text = self.scrape_text()
        assert text is not None, f"no /metrics\n{self.log()}"
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def figure(self, name, probe, **labels):
        labels["probe"] = probe
        return self.scrape().get((name, tuple(sorted(labels.items()))))

    def state(self, probe):
        m = self.scrape()
        on = [s for s in ("ok", "late", "lost")
              if m.get(("mailmond_probe_state",
                        (("probe", probe), ("state", s)))) == 1]
        assert len(on) == 1, f"probe state gauges: {on}"
        return on[0]

    def wait_figure(self, name, probe, at_least, what=None):
        return H.wait_for(
            lambda: (self.figure(name, probe) or 0) >= at_least,
            what=what or (lambda: f"{name}{{probe={probe}}} >= {at_least}; "
                                  f"log:\n{self.log()[-3000:]}"))


@pytest.fixture
def mailmonds(tmp_path):
    made = []

    def make(name, run_as, probes, **kw):
        root = tmp_path / name
        root.mkdir()
        if H.IS_ROOT:
            H.make_traversable(root)
        H.chown_tree(root, run_as)
        m = Mailmond(root, run_as, probes, **kw)
        made.append(m)
        return m

    yield make
    for m in made:
        m.kill()


def probe_files(maildir):
    """{seq: path} of the probe files in maildir/new and cur."""
    out = {}
    for sub in ("new", "cur"):
        d = maildir / sub
        if not d.is_dir():
            continue
        for f in d.iterdir():
            m = PROBE_RE.search(f.read_bytes()[:65536])
            if m:
                out[int(m.group(1))] = f
    return out


def arrived_seqs(log, probe):
    return {int(s) for s in re.findall(
        rf"probe {re.escape(probe)} seq (\d+) arrived: delay \d+\.\d+s", log)}


def test_probes_seen_removed_and_exported(daemons, mailmonds, run_as):
    d = daemons("d")
    d.start()
    maildir = d.maildir("alice")
    # what was there before start-up: a stranger's probe (another run) and
    # a message that is not a probe
    (maildir / "new").mkdir(parents=True, exist_ok=True)
    (maildir / "cur").mkdir(exist_ok=True)
    (maildir / "tmp").mkdir(exist_ok=True)
    stale = maildir / "new" / "1.stale.example"
    stale.write_bytes(b"X-Mailmond-Probe: name=smtp; seq=7; sent=1000000; "
                      b"run=0123456789abcdef\nSubject: old\n\nold\n")
    other = maildir / "new" / "2.other.example"
    other.write_bytes(b"Subject: a letter\n\nnot a probe\n")
    H.chown_tree(d.home("alice"), run_as)
    m = mailmonds("m", run_as, [
        f"smtp smtp:127.0.0.1:{d.smtp_port} to alice@example.test "
        f"maildir {maildir}"])
    m.start()
    if H.IS_ROOT and run_as is not None:
        uids, gids, _ = H.proc_ids(m.pid)
        assert set(uids) == {run_as.uid} and set(gids) == {run_as.gid}, \
            "mailmond did not give root up"

    m.wait_figure("mailmond_probes_received_total", "smtp", 3)
    fig = m.scrape()
    lab = (("probe", "smtp"),)
    received = fig[("mailmond_probes_received_total", lab)]
    assert fig[("mailmond_probe_delay_seconds_count", lab)] == received
    assert fig[("mailmond_probe_delay_seconds_sum", lab)] > 0
    assert fig[("mailmond_probe_delay_seconds_bucket",
                (("le", "+Inf"), ("probe", "smtp")))] == received
    assert 0 < fig[("mailmond_probe_last_delay_seconds", lab)] < 60
    assert fig[("mailmond_probes_sent_total", lab)] >= received
    assert fig[("mailmond_probe_send_failures_total", lab)] == 0
    assert fig[("mailmond_probes_late_total", lab)] == 0
    assert fig[("mailmond_probes_lost_total", lab)] == 0
    assert m.state("smtp") == "ok"

    # one log line per probe; every probe seen is gone from the maildir
    log = m.log()
    seen = arrived_seqs(log, "smtp")
    assert len(seen) >= received and {1, 2, 3} <= seen
    assert not seen & set(probe_files(maildir)), \
        f"probes logged as arrived are still in {maildir}"
    # the stranger's probe was removed as stale, the letter left alone and
    # logged once
    assert not stale.exists()
    assert re.search(r"1\.stale\.example: stale probe smtp seq 7", log)
    assert other.exists()
    assert len(re.findall(r"2\.other\.example: not a probe: left alone",
                          log)) == 1
    assert m.alert_lines() == []

    # the exposition passes promtool
    text = m.scrape_text()
    res = subprocess.run(["promtool", "check", "metrics"], input=text,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    m.stop()


def test_daemon_stopped_late_then_recovered(daemons, mailmonds, run_as):
    d = daemons("d")
    d.start()
    maildir = d.maildir("alice")
    m = mailmonds("m", run_as, [
        f"direct lmtp:127.0.0.1:{d.lmtp_port} to alice@example.test "
        f"maildir {maildir}"])
    m.start()
    m.wait_figure("mailmond_probes_received_total", "direct", 1)
    assert m.state("direct") == "ok"

    d.stop()
    H.wait_for(lambda: m.alert_lines(), what="the late alert")
    failures = m.figure("mailmond_probe_send_failures_total", "direct")
    assert m.state("direct") == "late"
    # it stays late while more probes fail: no second alert
    m.wait_figure("mailmond_probe_send_failures_total", "direct", failures + 3)
    lines = m.alert_lines()
    assert len(lines) == 1, lines
    probe, state, delay = lines[0].split()
    assert (probe, state) == ("direct", "late")
    assert float(delay) >= 0

    d.start()
    H.wait_for(lambda: len(m.alert_lines()) >= 2, what="the recovered alert")
    received = m.figure("mailmond_probes_received_total", "direct")
    m.wait_figure("mailmond_probes_received_total", "direct", received + 3)
    lines = m.alert_lines()
    assert len(lines) == 2, lines
    probe, state, delay = lines[1].split()
    assert (probe, state) == ("direct", "recovered")
    assert 0 < float(delay) < 60
    assert m.state("direct") == "ok"
    assert m.figure("mailmond_probes_late_total", "direct") >= 1
    assert m.figure("mailmond_probes_lost_total", "direct") == 0

    # the alert commands kept none of mailmond's descriptors (its
    # listener, the inotify descriptor, libevent's) and were all reaped
    fd_lists = list(m.fds_dir.iterdir())
    assert len(fd_lists) == 2
    for f in fd_lists:
        text = f.read_text()
        assert "socket:" not in text and "anon_inode" not in text, text
    # (a child that just ended may be a zombie for a moment)
    H.wait_for(lambda: not [p for p, st in H.all_procs().items()
                            if st["ppid"] == m.pid and st["state"] == "Z"],
               what="mailmond to reap its children")
    m.stop()


def test_lost_probe(daemons, mailmonds, run_as):
    """Sent and accepted, but it goes to bob's mbox, never to the watched
    maildir: late after late_after, lost after lost_after, one alert
    each."""
    d = daemons("d")
    d.start()
    m = mailmonds("m", run_as, [
        f"nowhere smtp:127.0.0.1:{d.smtp_port} to bob@example.test "
        f"maildir {d.maildir('alice')}"],
        settings={"interval": "1s", "late_after": "500ms",
                  "lost_after": "1500ms"})
    m.start()
    m.wait_figure("mailmond_probes_lost_total", "nowhere", 2)
    # a send counts as sent once the server accepted it, which on a loaded
    # machine can come after lost_after has given it up
    m.wait_figure("mailmond_probes_sent_total", "nowhere", 2)
    assert m.state("nowhere") == "lost"
    fig = m.scrape()
    lab = (("probe", "nowhere"),)
    assert fig[("mailmond_probes_sent_total", lab)] >= 2
    assert fig[("mailmond_probe_send_failures_total", lab)] == 0
    assert fig[("mailmond_probes_received_total", lab)] == 0
    assert fig[("mailmond_probes_late_total", lab)] >= \
        fig[("mailmond_probes_lost_total", lab)]
    # the alert commands are children of mailmond: they may write after the figures
    H.wait_for(lambda: len(m.alert_lines()) >= 2, what="the late and lost alerts")
    assert [ln.split()[:2] for ln in m.alert_lines()] == \
        [["nowhere", "late"], ["nowhere", "lost"]]
    # DELAY of the lost alert is the age of the probe given up
    assert float(m.alert_lines()[1].split()[2]) >= 1.5
    H.wait_for(lambda: os.path.getsize(d.mbox("bob")) > 0
               if d.mbox("bob").exists() else False,
               what="the probes in bob's mbox")
    m.stop()


def test_lmtp_unix_socket(daemons, mailmonds, run_as):
    d = daemons("d")
    d.start()
    maildir = d.maildir("alice")
    m = mailmonds("m", run_as, [
        f"sock lmtp:unix:{d.sock_path} to alice@example.test "
        f"maildir {maildir}"], alert=False)
    m.start()
    m.wait_figure("mailmond_probes_received_total", "sock", 2)
    assert {1, 2} <= arrived_seqs(m.log(), "sock")
    assert m.figure("mailmond_probe_send_failures_total", "sock") == 0
    assert m.state("sock") == "ok"
    m.stop()


def test_detaches_without_d(daemons, mailmonds, run_as):
    """Without -d the command returns at once and mailmond goes on in a
    session of its own, detached from ours, not as root."""
    d = daemons("d")
    d.start()
    m = mailmonds("m", run_as, [
        f"bg lmtp:unix:{d.sock_path} to alice@example.test "
        f"maildir {d.maildir('alice')}"], alert=False)
    m.start(detach=True)
    st = H.proc_stat(m.pid)
    assert st["pgrp"] == m.pid and os.getsid(m.pid) == m.pid
    assert os.getsid(m.pid) != os.getsid(0)
    if H.IS_ROOT and run_as is not None:
        assert set(H.proc_ids(m.pid)[0]) == {run_as.uid}
    m.wait_figure("mailmond_probes_received_total", "bg", 1)
    # it logs to syslog, not to where its stderr was
    assert "arrived" not in m.log()
    m.stop()


@pytest.mark.skipif(P.available() is not None, reason=P.available() or "")
def test_whole_path_through_postfix(daemons, mailmonds, run_as, tmp_path):
    """The probe goes to a real (private) Postfix, which hands it to
    mailprocd over LMTP: the delay measured is the whole path's."""
    d = daemons("d")
    d.start()
    pfx = P.PostfixInstance(tmp_path / "pfx", lmtp=f"inet:127.0.0.1:{d.lmtp_port}",
                            policy=None, relay_domains=[H.DOMAIN])
    (tmp_path / "pfx").mkdir()
    pfx.start()
    try:
        m = mailmonds("m", run_as, [
            f"mta smtp:127.0.0.1:{pfx.port} to alice@example.test "
            f"maildir {d.maildir('alice')}"],
            settings={"interval": "1s", "helo": "client.example.test"},
            alert=False)
        m.start()
        m.wait_figure("mailmond_probes_received_total", "mta", 2,
                      what=lambda: f"probes through Postfix; maillog:\n"
                                   f"{pfx.maillog_tail()}\n{m.log()[-2000:]}")
        assert m.figure("mailmond_probe_send_failures_total", "mta") == 0
        # Postfix did relay them: its queue ids are in the maillog
        assert re.search(r"to=<alice@example.test>.*relay=127\.0\.0\.1"
                         r".*status=sent", pfx.maillog())
        m.stop()
    finally:
        pfx.stop()


def test_send_timeout_makes_probe_late(mailmonds, run_as, tmp_path):
    """A server that accepts the connection and never answers: the sender
    child gives up after `timeout`; meanwhile the loop still serves
    /metrics."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    try:
        m = mailmonds("m", run_as, [
            f"mute smtp:127.0.0.1:{port} to alice@example.test "
            f"maildir {tmp_path / 'm' / 'Maildir'}"],
            settings={"timeout": "700ms", "interval": "2s"})
        m.start()
        assert m.scrape_text() is not None
        m.wait_figure("mailmond_probe_send_failures_total", "mute", 1)
        assert m.state("mute") == "late"
        assert re.search(r"probe mute seq 1: not sent: no answer within 0\.7s",
                         m.log())
        # the alert command is a child of mailmond: it may write after the figure
        H.wait_for(lambda: m.alert_lines(), what="the late alert")
        assert [ln.split()[:2] for ln in m.alert_lines()] == [["mute", "late"]]
        # it created the maildir it watches
        for sub in ("tmp", "new", "cur"):
            assert (tmp_path / "m" / "Maildir" / sub).is_dir()
        m.stop()
    finally:
        srv.close()


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def test_metrics_out_of_descriptors_pauses_accept(mailmonds, run_as, tmp_path):
    """Idle clients holding every descriptor of the metrics listener: accept()
    fails with EMFILE, and the listener rests a second instead of retrying
    at once forever (libevent's default: a spinning loop writing a log line
    per try); once they leave, /metrics answers again."""
    import resource
    m = mailmonds("m", run_as, [
        f"idle smtp:127.0.0.1:1 to alice@example.test "
        f"maildir {tmp_path / 'm' / 'Maildir'}"],
        settings={"interval": "1h"}, alert=False)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (32, hard))     # inherited
    try:
        m.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    held = []
    try:
        for _ in range(40):
            c = socket.create_connection(("127.0.0.1", m.port), timeout=5)
            c.sendall(b"GET /met")      # a request that never ends
            held.append(c)
        cpu0 = cpu_ticks(m.pid)
        time.sleep(2)
        log = m.log()
        assert log.count("Error from accept() call") == 0, log[-2000:]
        assert len(re.findall(r"metrics: accept: Too many open files", log)) == 1, log[-2000:]
        # a spinning loop would take about 2 s (200 ticks) of CPU here
        assert cpu_ticks(m.pid) - cpu0 < 50, "the loop spins"
    finally:
        for c in held:
            c.close()
    H.wait_for(lambda: m.scrape_text() is not None, what="/metrics after the clients left")
    m.stop()


def check_config(path, run_as=None):
    res = subprocess.run([str(mailmond_bin()), "-n", "-f", str(path)],
                         capture_output=True, text=True, timeout=H.DEADLINE)
    bad = H.sanitizer_lines(res.stdout + res.stderr)
    assert not bad, "\n".join(bad)
    return res


def test_config_errors_file_line(tmp_path, run_as):
    user = f"user {run_as.name}\n" if H.IS_ROOT and run_as else ""
    good = tmp_path / "good.conf"
    good.write_text(
        "# probes\n"
        "probe local smtp:127.0.0.1:25 to mon+local@example.test "
        "maildir /var/lib/mailmond/Maildir/\n"
        "probe direct lmtp:unix:/run/mailprocd/lmtp.sock "
        "to mon@example.test maildir /var/lib/mailmond/Maildir/\n"
        "interval 60s\nlate_after 5m\nlost_after 1h\n"
        "listen metrics 127.0.0.1:9120\n"
        'alert_command "/usr/local/bin/notify-oncall --quiet"  # comment\n'
        + user)
    res = check_config(good)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"{good}: ok"

    bad = tmp_path / "bad.conf"
    bad.write_text(
        "probe local smtp:127.0.0.1:25 to mon@example.test maildir /m/\n"
        "interval 60s\n"
        "late_aftr 5m\n"
        "probe x ftp:127.0.0.1:25 to mon@example.test maildir /m/\n"
        "lost_after soon\n"
        'alert_command "unterminated\n'
        "probe local smtp:127.0.0.1:26 to mon@example.test maildir /m/\n"
        + user)
    res = check_config(bad)
    assert res.returncode == 1
    err = res.stderr
    assert f'{bad}:3: unknown setting "late_aftr"' in err
    assert f'{bad}:4: probe x: bad target "ftp:127.0.0.1:25"' in err
    assert f'{bad}:5: lost_after: bad duration "soon"' in err
    assert f"{bad}:6: unterminated quoted string" in err
    assert f"{bad}:7: probe local is defined twice (first on line 1)" in err
    assert len(err.strip().splitlines()) == 5, err

    # the shipped example is valid (with an account that exists here)
    example = tmp_path / "example.conf"
    text = (H.REPO / "etc" / "mailmond.conf").read_text()
    example.write_text(re.sub(r"(?m)^user\s+\S+\n", user, text))
    res = check_config(example)
    assert res.returncode == 0, res.stderr

    if H.IS_ROOT:
        # started as root without `user`: refused
        noroot = tmp_path / "noroot.conf"
        noroot.write_text(good.read_text().replace(user, ""))
        res = check_config(noroot)
        assert res.returncode == 1
        assert "does not run as root" in res.stderr


# -- robustness: probes that reach the watched maildir in unusual ways.
# The probe is addressed to bob (an mbox), the maildir watched is alice's:
# the test takes this run's probe from bob's mbox and puts it into the
# watched maildir itself, the way the case at hand would.

def detour_probe(daemons, mailmonds, run_as, name, settings=None):
    """(d, m, maildir, probe bytes): mailmond's first probe, taken from
    bob's mbox, not yet in the watched maildir."""
    d = daemons("d")
    d.start()
    maildir = d.maildir("alice")
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    H.chown_tree(d.home("alice"), run_as)
    opts = {"interval": "1h", "late_after": "2s", "lost_after": "1h"}
    opts.update(settings or {})
    m = mailmonds("m", run_as, [
        f"{name} smtp:127.0.0.1:{d.smtp_port} to bob@example.test "
        f"maildir {maildir}"], settings=opts)
    m.start()
    msgs = H.wait_for(
        lambda: [x for x in H.mbox_messages(d.mbox("bob"))
                 if PROBE_RE.search(x)],
        what=lambda: f"the probe in bob's mbox\n{m.log()[-2000:]}")
    msg = msgs[0].split(b"\n", 1)[1]        # without the mbox From line
    return d, m, maildir, msg


def give(path, run_as):
    if H.IS_ROOT and run_as is not None:
        os.chown(path, run_as.uid, run_as.gid)


def test_file_created_empty_then_written_is_counted(daemons, mailmonds,
                                                    run_as):
    """A probe file created straight in new/ (IN_CREATE while empty) and
    written after: counted when it is closed (IN_CLOSE_WRITE), once."""
    d, m, maildir, msg = detour_probe(daemons, mailmonds, run_as, "slow")
    path = maildir / "new" / "3.slow-writer.example"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        give(path, run_as)
        H.wait_for(lambda: "3.slow-writer.example: created empty" in m.log(),
                   what=lambda: f"the empty file seen\n{m.log()[-2000:]}")
        os.write(fd, msg)
    finally:
        os.close(fd)
    m.wait_figure("mailmond_probes_received_total", "slow", 1)
    H.wait_for(lambda: not path.exists(), what="the probe removed")
    log = m.log()
    assert arrived_seqs(log, "slow") == {1}
    assert "arrived again" not in log
    assert "found by a rescan" not in log
    assert "slow-writer.example: not a probe" not in log
    assert m.figure("mailmond_probes_received_total", "slow") == 1

    # written at once and closed (IN_CREATE and IN_CLOSE_WRITE both see
    # it): counted once; a letter written so is left alone, logged once
    letter = maildir / "new" / "4.letter.example"
    with open(letter, "wb") as f:
        f.write(b"Subject: hello\n\nnot a probe\n")
    H.wait_for(lambda: "4.letter.example: not a probe" in m.log(),
               what="the letter seen")
    m.stop()
    assert len(re.findall(r"4\.letter\.example: not a probe", m.log())) == 1


def test_new_removed_or_renamed_is_watched_again(daemons, mailmonds, run_as):
    """new/ renamed away, then removed: mailmond creates it again, watches
    it again (logged) and the probes go on being counted."""
    d = daemons("d")
    d.start()
    maildir = d.maildir("alice")
    m = mailmonds("m", run_as, [
        f"direct lmtp:127.0.0.1:{d.lmtp_port} to alice@example.test "
        f"maildir {maildir}"], alert=False)
    m.start()
    m.wait_figure("mailmond_probes_received_total", "direct", 1)

    os.rename(maildir / "new", maildir / "new.old")
    H.wait_for(lambda: "new was renamed: created again and watched" in m.log(),
               what=lambda: f"the new/ watched again\n{m.log()[-2000:]}")
    assert (maildir / "new").is_dir()
    received = m.figure("mailmond_probes_received_total", "direct")
    m.wait_figure("mailmond_probes_received_total", "direct", received + 2)

    shutil.rmtree(maildir / "new")
    H.wait_for(lambda: "new was removed: created again and watched" in m.log(),
               what=lambda: f"the new/ watched again\n{m.log()[-2000:]}")
    assert (maildir / "new").is_dir()
    received = m.figure("mailmond_probes_received_total", "direct")
    m.wait_figure("mailmond_probes_received_total", "direct", received + 2)
    assert not probe_files(maildir).keys() & arrived_seqs(m.log(), "direct")
    assert m.figure("mailmond_probes_late_total", "direct") == 0
    m.stop()


def test_arrival_inotify_missed_found_by_rescan(daemons, mailmonds, run_as):
    """A probe that arrived without inotify telling (as on NFS written by
    another host; here: written through a descriptor kept open, so no
    event reports the complete file) is found by the one rescan before it
    would turn late, and counted, not late; the hint is logged once."""
    d, m, maildir, msg = detour_probe(daemons, mailmonds, run_as, "nfs")
    tmp = maildir / "tmp" / "5.unseen.example"
    tmp.write_bytes(b"Subject: not yet\n\n")
    give(tmp, run_as)
    fd = os.open(tmp, os.O_RDWR)
    try:
        os.rename(tmp, maildir / "new" / tmp.name)
        H.wait_for(lambda: "5.unseen.example: not a probe" in m.log(),
                   what=lambda: f"the file seen\n{m.log()[-2000:]}")
        # (the rescan comes late_after, 2 s, after the send)
        assert m.figure("mailmond_probes_late_total", "nfs") == 0, \
            "the probe turned late before the test could place it: too slow"
        os.pwrite(fd, msg, 0)       # the probe now; no event says so
        m.wait_figure("mailmond_probes_received_total", "nfs", 1)
    finally:
        os.close(fd)
    log = m.log()
    assert arrived_seqs(log, "nfs") == {1}
    assert len(re.findall(r"/new: probes found by a rescan, not by inotify",
                          log)) == 1, log[-2000:]
    assert m.figure("mailmond_probes_late_total", "nfs") == 0
    assert m.state("nfs") == "ok"
    assert m.alert_lines() == []
    assert not (maildir / "new" / tmp.name).exists()
    m.stop()


def test_delay_by_monotonic_clock(daemons, mailmonds, run_as):
    """The wall clock set an hour back between sending and arrival (here:
    the header's wall-clock send time an hour later than it was; the other
    way round too): the delay of this run's probe is its monotonic one."""
    d, m, maildir, msg = detour_probe(daemons, mailmonds, run_as, "jump",
                                      settings={"interval": "1s"})
    sent = int(re.search(rb"\bsent=(\d+);", msg).group(1))
    for shift, name in ((3600, "6.ahead.example"), (-3600, "7.behind.example")):
        seq = int(PROBE_RE.search(msg).group(1))
        body = re.sub(rb"\bsent=\d+;",
                      b"sent=%d;" % (sent - shift * 1000000), msg)
        tmp = maildir / "tmp" / name
        tmp.write_bytes(body)
        give(tmp, run_as)
        os.rename(tmp, maildir / "new" / name)
        H.wait_for(lambda: seq in arrived_seqs(m.log(), "jump"),
                   what=lambda: f"seq {seq} counted\n{m.log()[-2000:]}")
        delay = float(re.search(
            rf"probe jump seq {seq} arrived: delay (\d+\.\d+)s",
            m.log()).group(1))
        assert 0 < delay < 60, (shift, delay)
        assert 0 < m.figure("mailmond_probe_last_delay_seconds", "jump") < 60
        assert re.search(rf"probe jump seq {seq}: by the wall clock its delay "
                         rf"is -?\d+\.\d+s: the clock was set", m.log())
        # the next probe from bob's mbox
        msg = H.wait_for(
            lambda: [x for x in H.mbox_messages(d.mbox("bob"))
                     if b"seq=%d;" % (seq + 1) in x],
            what="the next probe")[0].split(b"\n", 1)[1]
        sent = int(re.search(rb"\bsent=(\d+);", msg).group(1))
    assert m.figure("mailmond_probe_delay_seconds_sum", "jump") < 120
    m.stop()


ALERT_SCRIPT = """#!/bin/sh
# writes its alert, then (for the states in $HANG) hangs in a child of
# its own, whose pid it leaves in DIR/hang.$STATE
dir=$(dirname "$0")
echo "$PROBE $STATE $DELAY" >> "$dir/m/alerts"
case " $HANG " in
*" $STATE "*)
    sleep 30 &
    echo $! > "$dir/m/hang.$STATE"
    wait ;;
esac
"""


def hanging_alerts(mailmonds, run_as, tmp_path, hang, settings):
    script = tmp_path / "alert.sh"
    script.write_text(ALERT_SCRIPT)
    script.chmod(0o755)
    opts = {"interval": "1h", "late_after": "300ms", "lost_after": "800ms",
            "alert_command": f'"HANG=\\"{hang}\\" /bin/sh {script}"'}
    opts.update(settings)
    # nothing listens on port 1: the send fails, the probe is late at
    # once and lost after lost_after
    m = mailmonds("m", run_as, [
        f"down smtp:127.0.0.1:1 to alice@example.test "
        f"maildir {tmp_path / 'm' / 'Maildir'}"], settings=opts)
    return m.start()


def test_hanging_alert_killed_and_next_runs_after(mailmonds, run_as, tmp_path):
    """The late alert hangs (a child of its shell sleeps): the lost change
    waits for it; after alert_timeout its whole process group is killed
    (logged), then the lost alert runs: once per change, in order."""
    m = hanging_alerts(mailmonds, run_as, tmp_path, "late",
                       {"alert_timeout": "1s"})
    H.wait_for(lambda: len(m.alert_lines()) >= 2,
               what=lambda: f"two alerts\n{m.log()[-3000:]}")
    assert [ln.split()[:2] for ln in m.alert_lines()] == \
        [["down", "late"], ["down", "lost"]]
    assert float(m.alert_lines()[1].split()[2]) >= 0.8
    sleeper = int((m.root / "hang.late").read_text())
    H.wait_for(lambda: not H.alive(sleeper),
               what="the hanging alert's child killed")
    log = m.log()
    pid = re.search(r"probe down: alert_command \(late, pid (\d+)\) still "
                    r"running after 1\.000s \(alert_timeout\): killing its "
                    r"process group", log)
    assert pid, log[-3000:]
    waits = log.index(f"probe down: alert (lost) waits for the one running "
                      f"(late, pid {pid.group(1)})")
    killed = log.index(f"probe down: alert_command (late, pid {pid.group(1)}) "
                       f"killed after alert_timeout")
    started = log.index("probe down: alert_command (lost) started")
    assert waits < killed < started
    H.wait_for(lambda: "probe down: alert_command (lost, pid" in m.log()
               and re.search(r"alert_command \(lost, pid \d+\) done", m.log()),
               what="the lost alert reaped")
    m.stop()
    assert len(m.alert_lines()) == 2


def test_alert_running_at_stop_is_killed(mailmonds, run_as, tmp_path):
    """mailmond stopped while an alert hangs: the alert's process group is
    killed, the change still waiting is logged as not run."""
    m = hanging_alerts(mailmonds, run_as, tmp_path, "late lost", {})
    H.wait_for(lambda: (m.root / "hang.late").exists() and
               (m.root / "hang.late").read_text().endswith("\n"),
               what="the late alert hanging")
    H.wait_for(lambda: "probe down: alert (lost) waits for the one running"
               in m.log(), what="the lost change waiting")
    sleeper = int((m.root / "hang.late").read_text())
    assert H.alive(sleeper)
    m.stop()
    H.wait_for(lambda: not H.alive(sleeper), timeout=2,
               what="the hanging alert's child killed at stop")
    log = m.log()
    assert re.search(r"probe down: alert_command \(late, pid \d+\) killed: "
                     r"mailmond stops", log), log[-2000:]
    assert "probe down: 1 alert not run: mailmond stops" in log
    assert [ln.split()[:2] for ln in m.alert_lines()] == [["down", "late"]]
