"""mailman_instance.py - a private, real Mailman 3 core for the tests.

Debian's mailman3 (3.3.8) runs from a temp dir with its own mailman.cfg:
var_dir (queue, sqlite database, logs, master.pid) in the temp dir, its LMTP
server and its REST API on free loopback ports, `incoming` set to
mailman.mta.null.NullMTA (no postmap, no alias files) and its outgoing SMTP
sent to an SmtpSink (mpharness) that the test runs and reads.  It is started
with `mailman -C CFG start` (which puts the master in the background), is
ready when the REST API answers and the LMTP server greets, and is stopped
by the pid in var_dir/master.pid (SIGTERM, then wait for the master and its
runners), never by name.  The system's Mailman is not touched.

Starting takes 12-25 s on a busy 2-core machine: share one instance per
test module (MailmanInstance.module()).  stop(remove=False) and start()
again on the same var_dir keep the lists and the queue (a restart).
"""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import mpharness as H

MAILMAN = "/usr/bin/mailman"
ADMIN_USER = "restadmin"
ADMIN_PASS = "test-rest-pass"
# Runners the tests need: LMTP in, the pipeline and the posting chain, the
# email commands (-request, -join), the messages Mailman writes itself
# (virgin), SMTP out, retries, bounces, and REST.  Not archive, digest or
# nntp (nothing to archive to; fewer Python processes to start).
UNUSED_RUNNERS = ("archive", "digest", "nntp")
START_TIMEOUT = 120.0 if H.SANITIZED else 90.0


def available():
    """None when a private Mailman can run here, else why not (for skip)."""
    if not os.access(MAILMAN, os.X_OK):
        return f"{MAILMAN} not installed (Debian package mailman3)"
    return None


class MailmanInstance:
    """One private Mailman 3 core.

    root: an empty directory (config root/mailman.cfg, var_dir root/var).
    sink: the SmtpSink Mailman sends its outgoing mail to (one is made and
    stopped by us when None).
    runners_off: more runners not to start (the lists benchmark stops
    "in" and "pipeline" so that only the LMTP hand-over costs CPU).
    """

    def __init__(self, root, sink=None, runners_off=()):
        self.root = Path(root)
        self.var_dir = self.root / "var"
        self.cfg = self.root / "mailman.cfg"
        self.lmtp_port, self.rest_port = H.free_ports(2)
        self.own_sink = sink is None
        self.sink = sink or H.SmtpSink()
        self.master_pid = None
        self.master_start = None
        self.rest_root = f"http://127.0.0.1:{self.rest_port}/3.1"
        self.credentials = f"{ADMIN_USER}:{ADMIN_PASS}"
        self.lmtp_dest = f"lmtp:127.0.0.1:{self.lmtp_port}"
        self.runners_off = tuple(UNUSED_RUNNERS) + tuple(runners_off)

    @classmethod
    def module(cls, tmp_path_factory, name="mailman"):
        """A started instance for a module fixture (stop() it at the end)."""
        why = available()
        if why:
            import pytest
            pytest.skip(why)
        return cls(tmp_path_factory.mktemp(name)).start()

    # -- configuration

    def config_text(self):
        runners = "".join(f"\n[runner.{r}]\nstart: no\n"
                          for r in self.runners_off)
        return f"""# a private Mailman 3 core for the mailprocd integration tests
[mailman]
layout: local
site_owner: owner@lists.example.test
noreply_address: noreply

[paths.local]
var_dir: {self.var_dir}
# Debian installs the runner scripts here (the default is next to argv[0])
bin_dir: /usr/lib/mailman3/bin

[database]
class: mailman.database.sqlite.SQLiteDatabase
url: sqlite:///$DATA_DIR/mailman.db

[logging.root]
level: info

[logging.smtp]
level: info

[mta]
incoming: mailman.mta.null.NullMTA
outgoing: mailman.mta.deliver.deliver
lmtp_host: 127.0.0.1
lmtp_port: {self.lmtp_port}
smtp_host: 127.0.0.1
smtp_port: {self.sink.port}
smtp_user:
smtp_pass:

[webservice]
hostname: 127.0.0.1
port: {self.rest_port}
use_https: no
show_tracebacks: yes
api_version: 3.1
admin_user: {ADMIN_USER}
admin_pass: {ADMIN_PASS}

[archiver.prototype]
enable: no
{runners}"""

    def write_config(self):
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.write_text(self.config_text())

    # -- process

    def argv(self, *args):
        argv = [MAILMAN, "-C", str(self.cfg)]
        if H.IS_ROOT:
            argv.append("--run-as-root")
        return argv + list(args)

    def mailman(self, *args, check=True, timeout=120):
        """Run a mailman command.  Its output goes to a file, not a pipe:
        `mailman start` leaves the master behind holding what it got."""
        out = self.root / "command.out"
        with open(out, "wb") as f:
            res = subprocess.run(self.argv(*args), stdout=f,
                                 stderr=subprocess.STDOUT, timeout=timeout,
                                 cwd=self.root, stdin=subprocess.DEVNULL)
        res.out = out.read_text(errors="replace")
        if check and res.returncode != 0:
            raise RuntimeError(f"mailman {' '.join(args)} failed "
                               f"({res.returncode}):\n{res.out}"
                               f"\nlog:\n{self.log_tail()}")
        return res

    def start(self):
        why = available()
        if why:
            raise RuntimeError(why)
        assert self.master_pid is None, "already started"
        self.write_config()
        pidfile = self.var_dir / "master.pid"
        try:
            # `mailman start` forks the master into the background, returns
            self.mailman("start")
            end = time.monotonic() + START_TIMEOUT
            while self.master_pid is None:
                try:
                    pid = int(pidfile.read_text().split()[0])
                    st = H.proc_stat(pid)
                    if st:
                        self.master_pid = pid
                        self.master_start = st["start"]
                        break
                except (FileNotFoundError, ValueError, IndexError):
                    pass
                if time.monotonic() > end:
                    raise RuntimeError(f"no Mailman master pid in {pidfile}"
                                       f"; log:\n{self.log_tail()}")
                time.sleep(0.1)
            self._wait_ready(end)
        except BaseException:
            self.stop(remove=False)
            raise
        return self

    def _assert_running(self):
        if not H.alive(self.master_pid, self.master_start):
            raise RuntimeError(f"the Mailman master ({self.master_pid}) "
                               f"exited; log:\n{self.log_tail()}")

    def _wait_ready(self, end):
        """Until the REST API answers and the LMTP server greets."""
        while True:
            self._assert_running()
            try:
                self.rest("GET", "system/versions", timeout=2)
                break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > end:
                raise RuntimeError(f"Mailman REST did not answer on port "
                                   f"{self.rest_port}; log:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.2)
        while True:
            self._assert_running()
            try:
                with socket.create_connection(("127.0.0.1", self.lmtp_port),
                                              timeout=2) as s:
                    if s.recv(512).startswith(b"220"):
                        s.sendall(b"QUIT\r\n")
                        break
            except OSError:
                pass
            if time.monotonic() > end:
                raise RuntimeError(f"Mailman LMTP did not greet on port "
                                   f"{self.lmtp_port}; log:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.2)

    def running(self):
        return self.master_pid is not None and \
            H.alive(self.master_pid, self.master_start)

    def stop(self, remove=True):
        """SIGTERM the master (it stops its runners), wait for all of them;
        remove the directory unless remove is false (then start() again is
        a restart with the same lists and queue)."""
        problem = None
        if self.master_pid is not None:
            tree = [(p, H.proc_stat(p))
                    for p in H.descendants(self.master_pid)]
            tree = [(p, st["start"]) for p, st in tree if st]
            try:
                os.kill(self.master_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            ok = H.wait_gone(self.master_pid, self.master_start, 30)
            for p, s in tree:
                ok = H.wait_gone(p, s, 10) and ok
            if not ok:
                for p, s in [(self.master_pid, self.master_start)] + tree:
                    if H.alive(p, s):
                        os.kill(p, signal.SIGKILL)
                problem = "Mailman did not stop within 30s of SIGTERM (killed)"
            self.master_pid = None
        if remove:
            if self.own_sink:
                self.sink.stop()
            shutil.rmtree(self.root, ignore_errors=True)
        if problem:
            raise RuntimeError(problem)

    # -- logs

    def log(self, name="mailman.log"):
        try:
            return (self.var_dir / "logs" / name).read_text(errors="replace")
        except FileNotFoundError:
            return f"(no {name} yet)"

    def log_tail(self, n=60):
        return "\n".join(self.log().splitlines()[-n:])

    # -- REST

    def rest(self, method, path, data=None, timeout=30):
        """One REST call; returns the decoded JSON answer (None when empty).
        Raises urllib.error.HTTPError for a 4xx/5xx answer."""
        url = path if path.startswith("http") else f"{self.rest_root}/{path}"
        body = None
        headers = {"Authorization": "Basic " + base64.b64encode(
            self.credentials.encode()).decode()}
        if data is not None:
            body = urllib.parse.urlencode(data).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        req = urllib.request.Request(url, data=body, method=method,
                                     headers=headers)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def rest_raw(self, path):
        """The raw JSON text of a GET (for the recorded responses)."""
        url = f"{self.rest_root}/{path}"
        req = urllib.request.Request(url, headers={
            "Authorization": "Basic " + base64.b64encode(
                self.credentials.encode()).decode()})
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read().decode()

    def create_list(self, address, open_posting=True):
        """Create the domain (when new) and the list; with open_posting a
        member's post is distributed without moderation.  Returns the
        list id (devs.lists.example.test)."""
        local, domain = address.split("@")
        try:
            self.rest("POST", "domains", {"mail_host": domain})
        except urllib.error.HTTPError as e:
            if e.code != 400:        # 400: the domain exists already
                raise
        self.rest("POST", "lists", {"fqdn_listname": address})
        list_id = f"{local}.{domain}"
        if open_posting:
            self.rest("PATCH", f"lists/{list_id}/config",
                      {"default_member_action": "accept",
                       "send_welcome_message": "false"})
        return list_id

    def subscribe(self, list_id, address, role="member"):
        """Subscribe address, verified, confirmed and approved already."""
        return self.rest("POST", "members", {
            "list_id": list_id, "subscriber": address, "role": role,
            "pre_verified": "true", "pre_confirmed": "true",
            "pre_approved": "true", "send_welcome_message": "false"})

    def members(self, list_id, role="member"):
        ans = self.rest("GET", f"lists/{list_id}/roster/{role}")
        return sorted(e["email"] for e in ans.get("entries", []))

    # -- what Mailman sent

    def sent_to(self, marker):
        """The addresses the sink received a message containing marker
        for (each once per delivery)."""
        out = []
        for m in self.sink.received(lambda m: marker.encode() in m["data"]):
            out += m["to"]
        return sorted(out)

    def wait_distributed(self, marker, members, timeout=None):
        """Wait until Mailman has sent the message with marker to every
        address in members; returns the sink's messages for it."""
        want = sorted(members)
        H.wait_for(lambda: set(want) <= set(self.sent_to(marker)),
                   timeout or 60,
                   lambda: f"Mailman to send {marker} to {want} (got "
                           f"{self.sent_to(marker)}); log:\n"
                           f"{self.log_tail()}")
        return self.sink.received(lambda m: marker.encode() in m["data"])


# ------------------------------------------------- recorded REST responses

# What record_rest() asks a fresh instance, and the file each answer goes
# to (tests/unit/data/mailman3/NAME.json): the JSON the members fetch
# parses, recorded from the real Mailman rather than written by hand.
RECORDED = [
    ("lists", "lists"),
    ("lists_count1_page1", "lists?count=1&page=1"),
    ("lists_count1_page2", "lists?count=1&page=2"),
    ("devs_roster_member", "lists/devs.lists.example.test/roster/member"),
    ("devs_roster_owner", "lists/devs.lists.example.test/roster/owner"),
    ("devs_roster_moderator",
     "lists/devs.lists.example.test/roster/moderator"),
    ("devs_roster_member_count2_page1",
     "lists/devs.lists.example.test/roster/member?count=2&page=1"),
    ("devs_roster_member_count2_page2",
     "lists/devs.lists.example.test/roster/member?count=2&page=2"),
    ("empty_roster_member", "lists/empty.lists.example.test/roster/member"),
    ("empty_roster_moderator",
     "lists/empty.lists.example.test/roster/moderator"),
    ("members", "members"),
    ("members_find_devs_member",
     "members/find?list_id=devs.lists.example.test&role=member"),
]


def record_rest(instance, outdir):
    """Make two lists (devs: 3 members in mixed case, one owner, one
    moderator; empty: no members), then write each RECORDED answer."""
    m = instance
    devs = m.create_list("devs@lists.example.test")
    m.create_list("empty@lists.example.test")
    for a in ("alice@example.test", "Bob.Smith@Example.TEST",
              "carol+lists@example.test"):
        m.subscribe(devs, a)
    m.subscribe(devs, "owner1@example.test", role="owner")
    m.subscribe(devs, "mod1@example.test", role="moderator")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for name, path in RECORDED:
        text = m.rest_raw(path)
        json.loads(text)                  # it is JSON
        (outdir / f"{name}.json").write_text(text + "\n")
    # the answers to errors: a wrong password and an unknown list
    bad = MailmanInstance.__new__(MailmanInstance)
    bad.rest_root, bad.credentials = m.rest_root, f"{ADMIN_USER}:wrong"
    for name, inst, path in (("error_401", bad, "lists"),
                             ("error_404", m,
                              "lists/nosuch.lists.example.test/roster/member")):
        try:
            inst.rest_raw(path)
            raise RuntimeError(f"GET {path} did not fail")
        except urllib.error.HTTPError as e:
            (outdir / f"{name}.json").write_text(
                e.read().decode() + "\n")


if __name__ == "__main__":
    # python3 tests/integration/mailman_instance.py --record DIR
    import sys
    import tempfile
    if len(sys.argv) != 3 or sys.argv[1] != "--record":
        sys.exit("usage: mailman_instance.py --record DIR")
    inst = MailmanInstance(tempfile.mkdtemp(prefix="mailman-record-"))
    try:
        inst.start()
        record_rest(inst, sys.argv[2])
    finally:
        inst.stop()
