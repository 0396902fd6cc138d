"""test_dashboard.py - the Grafana dashboard shipped in docs/grafana/.

Grafana itself is not packaged for Debian, so the dashboard cannot be
imported here for real.  What can go wrong with it is checked instead:
it is a well-formed dashboard (unique panel ids, a datasource variable, no
two panels on the same grid cells, every panel with a query); every query
is valid PromQL (promtool checks them as recording rules); and every
metric a query names is one that a real mailprocd and a real mailmond
export, so a renamed family breaks this test rather than a graph.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest

import mpharness as H
from test_mailmond import Mailmond

DASHBOARD = Path(__file__).resolve().parents[2] / "docs/grafana/mailprocd-dashboard.json"
METRIC_RE = re.compile(r"\b((?:mailprocd|mailmond)_[a-z0-9_]+)")


@pytest.fixture(scope="module")
def dashboard():
    return json.loads(DASHBOARD.read_text())


def graph_panels(dash):
    return [p for p in dash["panels"] if p["type"] != "row"]


def queries(dash):
    return [t["expr"] for p in graph_panels(dash) for t in p["targets"]]


def test_well_formed(dashboard):
    assert dashboard["title"] and dashboard["uid"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are not unique"
    cells = {}
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]
    for p in graph_panels(dashboard):
        assert p["targets"], f"{p['title']} has no query"
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), p["title"]
    # what the issue asks the picture to show
    text = " ".join(queries(dashboard))
    for family in ("mailprocd_queue_messages", "mailprocd_delivery_delay_seconds_bucket",
                   "mailprocd_deliveries_total", "mailprocd_rejections_total",
                   "mailprocd_spam_checks_total", "mailmond_probe_delay_seconds_bucket"):
        assert family in text, f"no panel shows {family}"
    for stage in ("queue", "worker", "total"):
        assert f'stage="{stage}"' in text, f"no panel for the {stage} delay"


def test_queries_are_valid_promql(dashboard, tmp_path):
    # Grafana's variables, as Grafana would fill them in
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}",
         "expr": e.replace("$__rate_interval", "1m").replace("$instance", ".*")}
        for i, e in enumerate(queries(dashboard))]}]}
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))     # JSON is YAML
    r = subprocess.run(["promtool", "check", "rules", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(rules['groups'][0]['rules'])} rules found" in r.stdout


def test_every_metric_is_exported(dashboard, run_as, tmp_path):
    d = H.MetricsDaemon(tmp_path / "d", run_as=run_as)
    d.compile()
    d.start()
    try:
        root = tmp_path / "mon"
        root.mkdir()
        if H.IS_ROOT:
            H.make_traversable(root)
        maildir = root / "Maildir"
        m = Mailmond(root, run_as, [f"p smtp:127.0.0.1:{d.smtp_port} to alice@example.test "
                                    f"maildir {maildir}"])
        m.start()
        try:
            names = {name for name, _ in d.scrape()} | {name for name, _ in m.scrape()}
        finally:
            m.kill()
    finally:
        d.stop()
    wanted = {n for e in queries(dashboard) for n in METRIC_RE.findall(e)}
    assert wanted, "no metric names found in the queries"
    missing = sorted(wanted - names)
    assert not missing, f"the dashboard queries metrics nobody exports: {missing}"
