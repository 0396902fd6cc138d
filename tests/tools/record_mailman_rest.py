#!/usr/bin/python3
"""record_mailman_rest.py - record the REST answers the members sync reads
from a real Mailman 3 core (Debian's mailman3 3.3.8), for the unit tests of
the JSON handling (tests/unit/test_mailman_json.c).

    record_mailman_rest.py OUTDIR

Starts a private core (sqlite, own var dir and ports, NullMTA) in a
temporary directory, makes two lists with a few members, an owner and a
moderator, stores the raw answers of GET /lists and GET
/lists/ID/roster/ROLE (whole, paged with count/page, past the last page,
an empty list) and of an unknown list (HTTP 404), and stops the core by
the pid in its master.pid."""

import base64
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

USER, PASSWORD = "restadmin", "record-pass"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(var, lmtp, smtp, rest):
    return f"""[mailman]
layout: local
site_owner: owner@lists.example.test
[paths.local]
var_dir: {var}
bin_dir: /usr/lib/mailman3/bin
[database]
class: mailman.database.sqlite.SQLiteDatabase
url: sqlite:///$DATA_DIR/mailman.db
[mta]
incoming: mailman.mta.null.NullMTA
lmtp_host: 127.0.0.1
lmtp_port: {lmtp}
smtp_host: 127.0.0.1
smtp_port: {smtp}
[webservice]
hostname: 127.0.0.1
port: {rest}
api_version: 3.1
admin_user: {USER}
admin_pass: {PASSWORD}
[archiver.prototype]
enable: no
[runner.archive]
start: no
[runner.digest]
start: no
[runner.nntp]
start: no
"""


class Rest:
    def __init__(self, port):
        self.root = f"http://127.0.0.1:{port}/3.1/"
        self.auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    def call(self, method, path, data=None):
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.root + path, data=body, method=method,
                                     headers={"Authorization": self.auth})
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read().decode()


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mm-record-") as tmp:
        cfg = Path(tmp) / "mailman.cfg"
        rest_port = free_port()
        cfg.write_text(config(Path(tmp) / "var", free_port(), free_port(), rest_port))
        argv = ["/usr/bin/mailman", "-C", str(cfg)]
        if os.geteuid() == 0:
            argv.append("--run-as-root")
        subprocess.run(argv + ["start"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, cwd=tmp, check=True, timeout=120)
        pidfile = Path(tmp) / "var" / "master.pid"
        rest = Rest(rest_port)
        try:
            for _ in range(600):
                try:
                    rest.call("GET", "system/versions")
                    break
                except (OSError, urllib.error.URLError):
                    time.sleep(0.1)
            rest.call("POST", "domains", {"mail_host": "lists.example.test"})
            for name in ("devs", "empty"):
                rest.call("POST", "lists", {"fqdn_listname": f"{name}@lists.example.test"})
            devs = "devs.lists.example.test"
            for addr, role in (("alice@example.org", "member"), ("Bob@Example.ORG", "member"),
                               ("carol+lists@example.net", "member"),
                               ("owner@example.org", "owner"), ("mod@example.org", "moderator")):
                rest.call("POST", "members", {
                    "list_id": devs, "subscriber": addr, "role": role,
                    "pre_verified": "true", "pre_confirmed": "true",
                    "pre_approved": "true", "send_welcome_message": "false"})
            files = {
                "lists.json": "lists",
                "lists_page1.json": "lists?count=1&page=1",
                "lists_page2.json": "lists?count=1&page=2",
                "roster_member.json": f"lists/{devs}/roster/member",
                "roster_member_page1.json": f"lists/{devs}/roster/member?count=2&page=1",
                "roster_member_page2.json": f"lists/{devs}/roster/member?count=2&page=2",
                "roster_owner.json": f"lists/{devs}/roster/owner",
                "roster_moderator.json": f"lists/{devs}/roster/moderator",
                "roster_empty.json": "lists/empty.lists.example.test/roster/member",
            }
            for name, path in files.items():
                (out / name).write_text(rest.call("GET", path))
            try:
                rest.call("GET", "lists/nosuch.lists.example.test/roster/member")
            except urllib.error.HTTPError as e:
                (out / "error_404.json").write_text(e.read().decode())
        finally:
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
            while os.path.exists(f"/proc/{pid}"):
                time.sleep(0.1)


if __name__ == "__main__":
    main()
