"""test_metrics_http.py - `listen metrics` against the real daemon: the
exposition of a real scrape passes `promtool check metrics` and parses with
prometheus_client, with every family of the contract; HEAD; garbage, other
paths and other methods get 4xx and the service keeps serving; the figures
live in the master's regions and survive a reload and the restart of a
killed owner or of the metrics service; each process holds only the
regions it should (read-write for its owner, read-only for the metrics
service and the qmgr, none elsewhere); in root mode the metrics service
runs as `user`; `mailprocctl status` prints the figures; and a real
Prometheus server scrapes the daemon."""

import mmap
import os
import signal
import socket
import struct
import subprocess
import time
import urllib.parse
import urllib.request
import json

import pytest

import mpharness as H

# The contract's families (issue12-contract.md) and their types.
FAMILIES = {
    "mailprocd_build_info": "gauge",
    "mailprocd_start_time_seconds": "gauge",
    "mailprocd_sessions": "gauge",
    "mailprocd_sessions_started_total": "counter",
    "mailprocd_messages_received_total": "counter",
    "mailprocd_received_bytes_total": "counter",
    "mailprocd_recipients_accepted_total": "counter",
    "mailprocd_rejections_total": "counter",
    "mailprocd_queue_messages": "gauge",
    "mailprocd_queue_oldest_age_seconds": "gauge",
    "mailprocd_deliveries_total": "counter",
    "mailprocd_delivery_delay_seconds": "histogram",
    "mailprocd_spam_checks_total": "counter",
    "mailprocd_spam_check_duration_seconds": "histogram",
    "mailprocd_workers": "gauge",
    "mailprocd_bounces_total": "counter",
    "mailprocd_policy_answers_total": "counter",
    "mailprocd_policy_bad_requests_total": "counter",
}

REGIONS = ("receiver", "qmgr", "policy")


@pytest.fixture(scope="module")
def d(tmp_path_factory, run_as):
    dm = H.MetricsDaemon(tmp_path_factory.mktemp("metrics"), run_as=run_as)
    dm.compile()
    dm.start()
    yield dm
    dm.stop()


def families(text):
    """{family name as written in # TYPE: type}, from the text itself."""
    out = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            assert name not in out, f"second TYPE line for {name}"
            out[name] = typ
    return out


def roles(d):
    """{role: pid} of the master's children: by the log ident, and the
    receiver and the metrics service by the listening socket they hold (a
    fresh receiver may not have logged yet)."""
    kids = d.children()
    out = {}
    for p in kids:
        r = d.role(p)
        if r != "?":
            out[r.split("/")[-1]] = p
    for role, port in (("receiver", d.smtp_port), ("metrics", getattr(d, "metrics_port", None))):
        inode = port and H._tcp_inode(port, 0)
        pid = inode and H.pid_holding_socket(inode, kids)
        if pid:
            out[role] = pid
    return out


def child_by_role(d, role):
    return roles(d).get(role)


def region_links(pid):
    """{fd: region name} of the metrics regions pid holds open."""
    out = {}
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("/memfd:mailprocd-metrics-"):
            out[int(fd)] = target.split("-")[2].split(" ")[0]
    return out


def region_maps(pid):
    """{region name: set of permissions} of pid's mappings of regions."""
    out = {}
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            if "memfd:mailprocd-metrics-" not in line:
                continue
            perms = line.split()[1]
            name = line.split("memfd:mailprocd-metrics-")[1].split()[0]
            out.setdefault(name, set()).add(perms)
    return out


def counters(samples):
    return {k: v for k, v in samples.items()
            if k[0].endswith("_total") or k[0].endswith("_count") or k[0].endswith("_bucket")
            or k[0].endswith("_sum")}


def smtp_session(d, n_messages=1):
    """One real SMTP session that sends n_messages to a known user."""
    with H.Conn(d.smtp_port) as c:
        H.expect(c.reply(), 220)
        H.expect(c.cmd(f"EHLO {H.CLIENT_NAME}"), 250)
        for _ in range(n_messages):
            H.transaction(c, ["alice@example.test"], H.make_message())
        H.expect(c.cmd("QUIT"), 221)


# ------------------------------------------------------------ the format

def test_scrape_passes_promtool_and_parses(d):
    smtp_session(d)
    status, headers, body = H.http_request(d.metrics_port)
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode("utf-8")
    res = subprocess.run(["promtool", "check", "metrics"], input=body,
                         capture_output=True, timeout=H.DEADLINE)
    report = (res.stdout + res.stderr).decode()
    assert res.returncode == 0 and report.strip() == "", report
    fams = families(text)
    for name, typ in FAMILIES.items():
        assert fams.get(name) == typ, f"{name}: {fams.get(name)}, expected {typ}"
    # prometheus_client's parser takes every line
    from prometheus_client.parser import text_string_to_metric_families
    parsed = list(text_string_to_metric_families(text))
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert sum(len(f.samples) for f in parsed) == len(lines)
    samples = H.metrics_samples(text)
    assert samples[("mailprocd_build_info", (("version", "0.1.0"),))] == 1
    start = samples[("mailprocd_start_time_seconds", ())]
    assert abs(start - time.time()) < 3600
    # each histogram: cumulative buckets ending in +Inf == count
    for stage in ("queue", "worker", "total"):
        le = [(float(k[1][0][1]), v) for k, v in samples.items()
              if k[0] == "mailprocd_delivery_delay_seconds_bucket" and
              k[1][1] == ("stage", stage)]
        assert len(le) == 17 and le[-1][0] == float("inf")
        assert [v for _, v in le] == sorted(v for _, v in le)
        assert le[-1][1] == samples[("mailprocd_delivery_delay_seconds_count",
                                     (("stage", stage),))]


def test_head_and_query_string(d):
    status, headers, body = H.http_request(d.metrics_port, "HEAD")
    assert status == 200 and body == b""
    assert int(headers["content-length"]) > 1000
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    status, _, body = H.http_request(d.metrics_port, path="/metrics?x=1")
    assert status == 200 and b"mailprocd_build_info" in body
    # HTTP/1.1 with keep-alive: two answers on one connection
    with socket.create_connection(("127.0.0.1", d.metrics_port), timeout=H.REPLY_TIMEOUT) as s:
        req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        s.sendall(req + req[:-2] + b"Connection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 2


# Requests that must get a 4xx: (raw bytes, the statuses allowed).
BAD = [
    (b"GET / HTTP/1.0\r\n\r\n", {404}),
    (b"GET /metricsx HTTP/1.0\r\n\r\n", {404}),
    (b"GET /metrics/ HTTP/1.0\r\n\r\n", {404}),
    (b"GET /../metrics HTTP/1.0\r\n\r\n", {404}),
    (b"POST /metrics HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", {405}),
    (b"PUT /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n", {405}),
    (b"DELETE /metrics HTTP/1.0\r\n\r\n", {405}),
    (b"OPTIONS /metrics HTTP/1.0\r\n\r\n", {405}),
    (b"BREW /metrics HTTP/1.0\r\n\r\n", {405}),
    (b"GARBAGE\r\n\r\n", {400}),
    (b"GET /metrics HTTP/9.9\r\n\r\n", {400}),
    (b"GET metrics HTTP/1.0\r\n\r\n", {404}),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", {400}),
    (b"GET /metrics HTTP/1.0\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", {400}),
    (b"GET /metrics HTTP/1.0\r\n" + b"X: y\r\n" * 3000 + b"\r\n", {400}),
    (b"POST /metrics HTTP/1.0\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 100000,
     {413}),
    (b"GET /metrics HTTP/1.0\r\nContent-Length: -5\r\n\r\n", {400}),
]


@pytest.mark.parametrize("raw,allowed", BAD, ids=[str(i) for i in range(len(BAD))])
def test_garbage_gets_4xx_and_service_goes_on(d, raw, allowed):
    pid = H.wait_for(d.metrics_pid, what="the metrics service")
    try:
        status, _, body = H.http_request(d.metrics_port, raw=raw)
    except (ConnectionResetError, BrokenPipeError):
        pytest.fail("connection reset instead of a 4xx")
    assert status in allowed, f"{raw[:60]!r}: {status} {body[:100]!r}"
    assert b"mailprocd_" not in body
    # the same process still serves
    assert d.metrics_pid() == pid
    assert H.http_request(d.metrics_port)[0] == 200
    d.assert_running()


def test_stalled_client_does_not_block_others(d):
    with socket.create_connection(("127.0.0.1", d.metrics_port)) as stalled:
        stalled.sendall(b"GET /metr")
        for _ in range(3):
            assert H.http_request(d.metrics_port, timeout=5)[0] == 200


# ------------------------------------------------------------ the regions

def _master_region_fd(d, name):
    for fd, region in region_links(d.pid).items():
        if region == name:
            return fd
    pytest.fail(f"the master holds no {name} region")


def _poke(d, offset, value):
    """Add value to the counter at offset of the receiver's region, through
    the master's descriptor (root only: it is mode 0400)."""
    fd = _master_region_fd(d, "receiver")
    with open(f"/proc/{d.pid}/fd/{fd}", "r+b") as f:
        with mmap.mmap(f.fileno(), 0) as m:
            (old,) = struct.unpack_from("=Q", m, offset)
            struct.pack_into("=Q", m, offset, old + value)


# receiver_figures.h: the header (24 bytes), sessions[2] (int64), then
# sessions_total[FP_SMTP] (uint64)
SESSIONS_TOTAL_SMTP = 24 + 16
SMTP_TOTAL = ("mailprocd_sessions_started_total", (("protocol", "smtp"),))


def _kill_and_wait_restart(d, role):
    old = child_by_role(d, role)
    assert old, f"no {role} process"
    before = set(d.children())
    os.kill(old, signal.SIGKILL)

    def restarted():
        new = set(d.children()) - before
        return len(new) == 1 and old not in d.children() and new.pop()
    return H.wait_for(restarted, what=f"a new {role} process")


def _assert_kept(d, before):
    after = d.scrape()
    lower = {k: (v, after.get(k)) for k, v in counters(before).items()
             if after.get(k) is None or after[k] < v}
    assert not lower, f"counters went down: {lower}"
    return after


@pytest.mark.skipif(not H.IS_ROOT, reason="writes into a region (mode 0400): needs root")
def test_figures_survive_reload_and_restarts(d):
    """A marker added to the receiver's region (as its own metrics_inc
    would) and whatever real traffic counted stay through SIGHUP and the
    restart of a killed receiver, qmgr and metrics service."""
    smtp_session(d, 2)
    base = d.scrape()[SMTP_TOTAL]
    _poke(d, SESSIONS_TOTAL_SMTP, 1000)
    before = d.scrape()
    assert before[SMTP_TOTAL] == base + 1000

    os.kill(d.pid, signal.SIGHUP)
    d.wait_log(r"reloaded .* sent to \d+ process")
    d.wait_log(r"mailprocd/metrics\[\d+\]: configuration \d+ in use",
               what="the metrics service's reload")
    before = _assert_kept(d, before)

    for role in ("receiver", "qmgr", "metrics"):
        _kill_and_wait_restart(d, role)
        d.wait_ready()
        before = _assert_kept(d, before)
    # the restarted receiver counts on top of what was there
    smtp_session(d)
    assert d.scrape()[SMTP_TOTAL] >= base + 1000


def test_each_process_holds_only_its_regions(d):
    smtp_session(d)         # a worker, too
    workers = H.wait_for(d.workers, what="a worker")
    pids = H.wait_for(lambda: (lambda r: len(r) == 3 and r)(
        {k: v for k, v in roles(d).items() if k in ("receiver", "qmgr", "metrics")}),
        what="the receiver, qmgr and metrics service")
    others = set(d.children()) - set(pids.values())
    assert len(others) == 2     # the spawner and the relay
    # the master keeps all six descriptors and maps none
    master_links = sorted(region_links(d.pid).values())
    assert master_links == sorted(REGIONS * 2)
    assert region_maps(d.pid) == {}
    # an owner: its own region read-write, no descriptor left open
    rc = pids["receiver"]
    assert region_maps(rc) == {"receiver": {"rw-s"}}
    assert region_links(rc) == {}
    # the qmgr: its own read-write, the others read-only
    q = pids["qmgr"]
    assert region_maps(q) == {"qmgr": {"rw-s"}, "receiver": {"r--s"}, "policy": {"r--s"}}
    assert region_links(q) == {}
    # the metrics service: every region, read-only
    m = pids["metrics"]
    assert region_maps(m) == {r: {"r--s"} for r in REGIONS}
    assert region_links(m) == {}
    # nobody else holds or maps one, workers included
    for p in sorted(others) + workers:
        assert region_links(p) == {} and region_maps(p) == {}, f"pid {p} ({d.role(p)})"


def test_no_metrics_child_without_listener(daemons):
    dm = daemons("plain")
    dm.start()
    time.sleep(0.3)
    assert "metrics" not in roles(dm), roles(dm)
    assert len(dm.children()) == 4     # receiver, qmgr, spawner, relay
    # the regions exist all the same (`mailprocctl status` shows them)
    assert sorted(region_links(dm.pid).values()) == sorted(REGIONS * 2)


def test_status_prints_the_figures(d):
    smtp_session(d)
    res = d.ctl("status")
    assert res.returncode == 0, res.out
    out = res.stdout.decode()
    assert "figures (zeros left out):" in out
    assert "build_info version=0.1.0" in out
    samples = d.scrape()
    start = int(samples[("mailprocd_start_time_seconds", ())])
    line = [ln for ln in out.splitlines() if ln.split()[:1] == ["start_time_seconds"]]
    assert line and line[0].split()[-1] == str(start), out


def test_check_config_with_metrics_listener(d, tmp_path):
    res = d.check_config()
    assert res.returncode == 0, res.out
    bad = tmp_path / "bad.conf"
    bad.write_text(d.conf.read_text() + "listen metrics nowhere\n")
    H.chown_tree(tmp_path, d.run_as)
    res = d.run([H.mailprocd_bin(), "-n", "-f", bad])
    assert res.returncode == 1
    n = len(bad.read_text().splitlines())
    assert f"{bad}:{n}: listen: expected HOST:PORT" in res.out, res.out


# ------------------------------------------------------------ root mode

@pytest.mark.skipif(not H.IS_ROOT, reason="root mode needs root")
def test_root_mode_metrics_runs_as_user(tmp_path):
    H.make_traversable(tmp_path)
    svc = H.create_user("mpt-m-")
    dm = None
    try:
        dm = H.MetricsDaemon(tmp_path / "d", run_as=None, single_user=False,
                             rules="a@example.test\n    discard\n",
                             uids=f"a@example.test {svc.name}\n",
                             settings={"user": svc.name})
        dm.compile()
        dm.start()
        pid = H.wait_for(dm.metrics_pid, what="the metrics service")
        uids, gids, _ = H.proc_ids(pid)
        assert set(uids) == {svc.uid} and set(gids) == {svc.gid}
        assert region_maps(pid) == {r: {"r--s"} for r in REGIONS}
        text = dm.scrape_text()
        assert families(text).keys() >= FAMILIES.keys()
        dm.stop()
        dm = None
    finally:
        if dm is not None and dm.proc is not None:
            dm.stop()
        H.delete_user(svc)


# ------------------------------------------------------------ Prometheus

def _prom_query(port, query):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as r:
        data = json.load(r)
    assert data["status"] == "success", data
    return data["data"]["result"]


@H.normal_pass_only
def test_real_prometheus_scrapes(d, tmp_path):
    smtp_session(d)
    [port] = H.free_ports(1)
    conf = tmp_path / "prometheus.yml"
    conf.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: mailprocd-test\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{d.metrics_port}']\n")
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen(
        ["/usr/bin/prometheus", f"--config.file={conf}",
         f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        def scraped():
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                up = _prom_query(port, 'up{job="mailprocd-test"}')
                built = _prom_query(port, 'mailprocd_build_info{job="mailprocd-test"}')
            except OSError:
                return False
            return (up and up[0]["value"][1] == "1" and built and
                    built[0]["metric"]["version"] == "0.1.0")
        H.wait_for(scraped, 30, "Prometheus to scrape mailprocd", interval=0.5)
        hist = _prom_query(port, 'mailprocd_delivery_delay_seconds_count{stage="total"}')
        assert hist, "the histogram's series is not there"
        # no scrape problem reported by Prometheus for the target
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5) as r:
            targets = json.load(r)["data"]["activeTargets"]
        mine = [t for t in targets if t["labels"]["job"] == "mailprocd-test"]
        assert mine and mine[0]["health"] == "up" and mine[0]["lastError"] == "", mine
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
