"""mpharness.py - helpers for the mailprocd integration tests.

Starts the real daemon (config, db sources, compile, start, readiness, stop),
talks SMTP/LMTP over raw sockets, waits for deliveries in maildirs and
mboxes, and reads the process tree from /proc.  Nothing here finds a process
by name: every pid comes from the master's pid and the ppid links in /proc.
"""

import collections
import os
import pwd
import random
import re
import secrets
import select
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SANITIZED = os.environ.get("MAILPROCD_SANITIZED") == "1"
# For a test whose length is mostly a wait the scenario prescribes (a
# reply held 20 s; the daemon's own intervals, queue_scan_interval and
# relay_idle_timeout, are settings the tests set short instead), for the
# slow real peers (Mailman 3 starts in 12-25 s), and for the SpamAssassin
# scenarios that take four times as long under the sanitizers: most of the
# code they run is run under the sanitizers by shorter tests, and the
# whole command must stay within its time budget (20 minutes on 2 cores).
normal_pass_only = pytest.mark.skipif(
    SANITIZED, reason="a long wait; run in the normal pass only (time budget)")
IS_ROOT = os.geteuid() == 0
# How long to wait for anything asynchronous (delivery, start-up, stop).
DEADLINE = 60.0 if SANITIZED else 20.0
# Longest a spare queue file stays in incoming/ (QSPARES_MAX_AGE_MS, and
# as long again until the receiver's timer removes it), with a margin.
SPARE_LIFETIME = 6.0
# Socket read timeout for one reply.
REPLY_TIMEOUT = 30.0 if SANITIZED else 10.0
SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "runtime error:",
                      "LeakSanitizer")

DOMAIN = "example.test"
HOSTNAME = "mx.example.test"
CLIENT_NAME = "client.example.test"
SENDER = "sender@remote.test"

# Daemons started and not yet stopped, for the per-test sanitizer check and
# the emergency clean-up at session end.
LIVE = []


# ---------------------------------------------------------------- binaries

def build_dir():
    return Path(os.environ.get("MAILPROCD_BUILD", REPO / "build"))


def binary(rel):
    path = build_dir() / rel
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"binary not found: {path} (set MAILPROCD_BUILD to the "
                    f"meson build directory)")
    return path


def mailprocd_bin():
    return binary("src/master/mailprocd")


def mailprocctl_bin():
    return binary("src/ctl/mailprocctl")


# ---------------------------------------------------------------- accounts

class Account:
    """A local account that processes run as (or that owns files)."""

    def __init__(self, name, uid, gid, home=None):
        self.name, self.uid, self.gid, self.home = name, uid, gid, home

    @classmethod
    def lookup(cls, name):
        pw = pwd.getpwnam(name)
        return cls(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)

    def __repr__(self):
        return f"Account({self.name}, uid={self.uid}, gid={self.gid})"


def create_user(prefix, home=None):
    """Create a throwaway system account (root only).  Deleted by
    delete_user()."""
    name = f"{prefix}{secrets.token_hex(3)}"
    cmd = ["useradd", "--system", "--user-group", "--shell",
           "/usr/sbin/nologin", "--no-create-home",
           "--home-dir", str(home) if home else "/nonexistent", name]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"useradd failed: {res.stderr}")
    return Account.lookup(name)


def delete_user(acct):
    res = subprocess.run(["userdel", acct.name], capture_output=True,
                         text=True)
    if res.returncode != 0:
        print(f"warning: userdel {acct.name}: {res.stderr.strip()}")


def as_user(acct, argv):
    """argv run as acct (via setpriv) when we are root; else unchanged."""
    if acct is None or not IS_ROOT or acct.uid == 0:
        return [str(a) for a in argv]
    return ["setpriv", f"--reuid={acct.uid}", f"--regid={acct.gid}",
            "--clear-groups", "--"] + [str(a) for a in argv]


def chown_tree(path, acct):
    """Give a tree to acct (root only; a no-op otherwise)."""
    if not IS_ROOT or acct is None:
        return
    path = Path(path)
    os.chown(path, acct.uid, acct.gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            os.chown(os.path.join(dirpath, n), acct.uid, acct.gid,
                     follow_symlinks=False)


def make_traversable(path):
    """Let other accounts reach path through its parents (o+rx, like a
    usual /home), for the directories we own (pytest's basetemp is 0700)."""
    p = Path(path).resolve()
    want = stat.S_IROTH | stat.S_IXOTH
    for d in [p] + list(p.parents):
        if str(d) == "/":
            break
        st = os.stat(d)
        if st.st_uid == os.geteuid() and (st.st_mode & want) != want:
            os.chmod(d, stat.S_IMODE(st.st_mode) | want)


# ---------------------------------------------------------------- waiting

def wait_for(pred, timeout=None, what="condition", interval=0.05):
    """Poll pred() until it returns something true; fail after timeout."""
    deadline = time.monotonic() + (timeout or DEADLINE)
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout or DEADLINE:.0f}s "
                        f"waiting for {what() if callable(what) else what}")
        time.sleep(interval)


# Ports for the daemons' listeners come from below the kernel's ephemeral
# range (/proc/sys/net/ipv4/ip_local_port_range, 32768-60999): a port the
# kernel handed out by bind(0) is free only until some client's connect()
# takes it as its local port, and then the daemon's listen fails with
# "Address already in use" (it happened once in CI).  Nothing takes these
# without asking for them, but a port handed out is free only until its
# taker binds it: a later call (a second daemon of the test, a policy or
# metrics listener added to a daemon's ports) must not hand it out again
# meanwhile.  (Once in CI a policy daemon's start-up failed with "Address
# already in use" on one of its ports; which process held it was not
# seen, and this is the likeliest way.)  So the recently handed out are
# skipped.
PORT_RANGE = (20000, 32767)
_HANDED_OUT = collections.deque(maxlen=2048)


def free_ports(n):
    """n distinct free loopback TCP ports, below the ephemeral range, none
    of them handed out by one of the last calls."""
    socks = []
    try:
        while len(socks) < n:
            port = random.randint(*PORT_RANGE)
            if port in _HANDED_OUT:
                continue
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
            _HANDED_OUT.append(port)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------------------- /proc

def proc_stat(pid):
    """dict(pid, comm, state, ppid, pgrp, nice, start) or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("latin-1")
    except (FileNotFoundError, ProcessLookupError):
        return None
    lp, rp = data.index("("), data.rindex(")")
    rest = data[rp + 2:].split()
    return {"pid": int(pid), "comm": data[lp + 1:rp], "state": rest[0],
            "ppid": int(rest[1]), "pgrp": int(rest[2]),
            "nice": int(rest[16]), "start": int(rest[19])}


def all_procs():
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(d)
            if st:
                out[st["pid"]] = st
    return out


def children(pid, procs=None):
    procs = procs or all_procs()
    return sorted(p for p, st in procs.items()
                  if st["ppid"] == pid and st["state"] != "Z")


def descendants(pid, procs=None):
    procs = procs or all_procs()
    out, todo = [], [pid]
    while todo:
        cur = todo.pop()
        for c in children(cur, procs):
            out.append(c)
            todo.append(c)
    return sorted(out)


def alive(pid, start=None):
    st = proc_stat(pid)
    return bool(st) and st["state"] != "Z" and (start is None or
                                                st["start"] == start)


def wait_gone(pid, start, timeout):
    """Wait up to timeout seconds for the process pid (started at start,
    so that a reused pid does not count) to end; True when it did."""
    end = time.monotonic() + timeout
    while alive(pid, start):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def proc_status(pid):
    """/proc/PID/status as a dict of str -> str."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def proc_ids(pid):
    """(uids, gids, groups): real/effective/saved/fs uid and gid lists."""
    st = proc_status(pid)
    return ([int(x) for x in st["Uid"].split()],
            [int(x) for x in st["Gid"].split()],
            [int(x) for x in st.get("Groups", "").split()])


def rss_kb(pid):
    return int(proc_status(pid)["VmRSS"].split()[0])


def _tcp_inode(local_port, remote_port):
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            lport = int(fields[1].rsplit(":", 1)[1], 16)
            rport = int(fields[2].rsplit(":", 1)[1], 16)
            if lport == local_port and rport == remote_port:
                inode = int(fields[9])
                if inode:
                    return inode
    return None


def pid_holding_socket(inode, pids):
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid
                except OSError:
                    pass
        except OSError:
            pass
    return None


# ---------------------------------------------------------------- replies

class Reply:
    """One SMTP/LMTP reply (possibly multi-line)."""

    ENH = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?: |$)")

    def __init__(self, code, lines, raw):
        self.code, self.lines, self.raw = code, lines, raw
        m = self.ENH.match(lines[-1])
        self.enh = m.group(1) if m else None

    @property
    def text(self):
        return "\n".join(self.lines)

    def __repr__(self):
        return f"Reply({self.raw!r})"

    def __str__(self):
        return self.raw.decode("latin-1").rstrip()


def expect(reply, code, enh=None):
    """Assert reply has code (int or tuple) and enhanced code prefix enh."""
    codes = code if isinstance(code, tuple) else (code,)
    assert reply.code in codes, f"expected {code}, got {reply}"
    if enh is not None:
        assert reply.enh is not None and reply.enh.startswith(enh), \
            f"expected enhanced code {enh}, got {reply}"
    return reply


class Conn:
    """A raw SMTP/LMTP client connection: TCP port on 127.0.0.1 or a unix
    socket path.  Reads replies strictly (CRLF only, matching codes)."""

    def __init__(self, target, timeout=None):
        self.timeout = timeout or REPLY_TIMEOUT
        if isinstance(target, int):
            self.sock = socket.create_connection(("127.0.0.1", target),
                                                 timeout=self.timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(self.timeout)
            self.sock.connect(str(target))
        self.buf = b""
        self.eof = False

    def fileno(self):
        return self.sock.fileno()

    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline):
        if self.eof:
            raise EOFError("connection closed by server")
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply from server")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no reply from server") from None
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            raise EOFError("connection closed by server")
        self.buf += data

    def readline(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buf:
            if len(self.buf) > 100000:
                raise AssertionError(f"reply line too long: {self.buf[:80]!r}")
            self._fill(deadline)
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def reply(self, timeout=None):
        raw, lines, code = b"", [], None
        while True:
            line = self.readline(timeout)
            raw += line
            m = re.match(rb"^(\d{3})(?:([ -])(.*))?\r\n$", line, re.S)
            assert m, f"malformed reply line {line!r} (after {raw!r})"
            c = int(m.group(1))
            assert code is None or c == code, f"mixed codes in reply {raw!r}"
            code = c
            lines.append((m.group(3) or b"").decode("latin-1"))
            if m.group(2) != b"-":
                return Reply(code, lines, raw)

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply(timeout)

    def hello(self, lmtp=False, name=CLIENT_NAME):
        """Read the greeting and say EHLO/LHLO; returns the EHLO reply."""
        g = self.reply()
        expect(g, 220)
        return expect(self.cmd(f"{'LHLO' if lmtp else 'EHLO'} {name}"), 250)

    def wait_closed(self, timeout=None):
        """Read until EOF; return what came.  Fails if still open."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while True:
                self._fill(deadline)
        except EOFError:
            data, self.buf = self.buf, b""
            return data
        except TimeoutError:
            raise AssertionError(
                f"server did not close the connection; got {self.buf!r}")

    def closed_by_server(self, timeout=0.5):
        """True if the server closed (reading nothing else)."""
        try:
            deadline = time.monotonic() + timeout
            while True:
                self._fill(deadline)
        except EOFError:
            return True
        except TimeoutError:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def transaction(conn, rcpts, msg, sender=SENDER, lmtp=False):
    """MAIL, RCPT..., DATA, message (dot-stuffed here), end.  Returns
    (rcpt replies, final replies): LMTP one per accepted recipient."""
    expect(conn.cmd(f"MAIL FROM:<{sender}>"), 250)
    rr = [conn.cmd(f"RCPT TO:<{r}>") for r in rcpts]
    ok = sum(1 for r in rr if r.code == 250)
    if not ok:
        return rr, []
    expect(conn.cmd("DATA"), 354)
    conn.send(dot_stuff(msg) + b".\r\n")
    return rr, conn.replies(ok if lmtp else 1)


# ---------------------------------------------------------------- messages

def new_msgid():
    return f"<{secrets.token_hex(10)}@itest.example>"


def make_message(msgid=None, subject="integration test", body=None,
                 to="rcpt@example.test", headers=()):
    """An RFC 5322 message as bytes with CRLF line ends.  body: bytes with
    CRLF (or str lines joined with CRLF)."""
    msgid = msgid or new_msgid()
    if body is None:
        body = f"Hello from the integration tests.\r\nid {msgid}\r\n".encode()
    elif isinstance(body, str):
        body = body.encode()
    head = [f"From: <{SENDER}>", f"To: <{to}>", f"Subject: {subject}",
            f"Message-ID: {msgid}", "Date: Mon, 01 Jan 2024 00:00:00 +0000"]
    head += list(headers)
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def mid(msg):
    """The Message-ID header value of a message (bytes): a unique marker."""
    m = re.search(rb"(?mi)^Message-ID: (<[^>\r\n]+>)", msg)
    assert m, "message has no Message-ID"
    return m.group(1)


def dot_stuff(msg):
    """Dot-stuff a CRLF message for the wire and make sure it ends in CRLF."""
    out = re.sub(rb"(?m)^\.", b"..", msg)
    if not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def lf(msg):
    return msg.replace(b"\r\n", b"\n")


class Delivered:
    """A delivered copy split into the prefix we add and the message."""

    def __init__(self, content, mbox=False):
        self.content = content
        lines = content.split(b"\n")
        self.from_line = None
        i = 0
        if mbox:
            assert lines[0].startswith(b"From "), \
                f"mbox message does not start with 'From ': {content[:120]!r}"
            self.from_line = lines[0].decode("latin-1")
            i = 1
            assert content.endswith(b"\n\n"), \
                f"mbox message does not end with a blank line: {content[-80:]!r}"
        m = re.match(rb"^Return-Path: (<[^>]*>)$", lines[i])
        assert m, f"line {i + 1} is not Return-Path: {lines[i]!r}"
        self.return_path = m.group(1).decode()
        m = re.match(rb"^Delivered-To: (\S+)$", lines[i + 1])
        assert m, f"line {i + 2} is not Delivered-To: {lines[i + 1]!r}"
        self.delivered_to = m.group(1).decode()
        assert lines[i + 2].startswith(b"Received: "), \
            f"line {i + 3} is not a Received: header: {lines[i + 2]!r}"
        j = i + 3
        while j < len(lines) and lines[j][:1] in (b" ", b"\t"):
            j += 1
        self.received = b" ".join(lines[i + 2:j]).decode("latin-1")
        self.rest = b"\n".join(lines[j:])
        if mbox:
            self.rest = self.rest[:-1]   # the trailing blank line


def maildir_messages(maildir):
    """[(path, content)] of the messages in maildir/new and maildir/cur."""
    out = []
    for sub in ("new", "cur"):
        d = Path(maildir) / sub
        try:
            names = sorted(os.listdir(d))
        except FileNotFoundError:
            continue
        for n in names:
            try:
                out.append((d / n, (d / n).read_bytes()))
            except FileNotFoundError:
                pass
    return out


def mbox_messages(path):
    """The messages of an mbox, each starting with its 'From ' line."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    parts = re.split(rb"(?m)^(?=From )", data)
    return [p for p in parts if p]


def find_marked(messages, marker):
    if isinstance(marker, str):
        marker = marker.encode()
    return [m for m in messages if marker in m]


def wait_maildir(maildir, marker, count=1, timeout=None):
    """Wait until count messages containing marker are in maildir; returns
    their contents (after a short extra look for duplicates)."""
    def found():
        return find_marked([c for _, c in maildir_messages(maildir)], marker)
    wait_for(lambda: len(found()) >= count, timeout,
             f"{count} message(s) with {marker!r} in {maildir}")
    return found()


def wait_mbox(path, marker, count=1, timeout=None):
    def found():
        return find_marked(mbox_messages(path), marker)
    wait_for(lambda: len(found()) >= count, timeout,
             f"{count} message(s) with {marker!r} in {path}")
    return found()


# ---------------------------------------------------------------- daemon

STANDARD_USERS = ("alice", "bob", "carol", "frank", "multi", "stopper",
                  "folder", "dave")


def standard_rules():
    return """# rules for the integration tests
alice@example.test
    maildir ~/Maildir/

bob@example.test
    mbox ~/mbox

Frank@Example.TEST
    maildir ~/Maildir/ ; stop

multi@example.test
    maildir ~/Maildir/
    mbox ~/mbox

stopper@example.test
    maildir ~/Maildir/ ; stop
    mbox ~/mbox

folder@example.test
    maildir ~/Maildir/.Lists/
"""


def standard_uids():
    return """# uid source: KEY ACCOUNT
alice@example.test      alice
bob@example.test        bob
carol@example.test      carol
FRANK@example.TEST      frank
multi@example.test      multi
stopper@example.test    stopper
folder@example.test     folder
"""


class Daemon:
    """One mailprocd instance with its own directory tree, ports, config
    and databases.  run_as: the account the daemon runs as (None: us)."""

    def __init__(self, root, run_as=None, settings=None, rules=None,
                 uids=None, gids="# gid source\n", homes=STANDARD_USERS,
                 unix_socket=True, single_user=True, asan_options=None):
        self.root = Path(root)
        self.run_as = run_as
        self.single_user = single_user
        self.lmtp_port, self.smtp_port, relay = free_ports(3)
        self.conf = self.root / "mailprocd.conf"
        self.queue_dir = self.root / "queue"
        self.db_dir = self.root / "db"
        self.src_dir = self.root / "src"
        self.run_dir = self.root / "run"
        self.home_base = self.root / "homes"
        self.sock_path = self.run_dir / "lmtp.sock" if unix_socket else None
        self.settings = {
            "hostname": HOSTNAME,
            "queue_dir": self.queue_dir,
            "db_dir": self.db_dir,
            "db_source_dir": self.src_dir,
            "run_dir": self.run_dir,
            "max_message_size": "10M",
            "max_sessions": "50",
            "session_timeout": "60s",
            "default_delivery": "maildir ~/Maildir/",
            "workers_per_user": "1",
            "worker_idle_timeout": "300s",
            "relay_host": f"127.0.0.1:{relay}",
            "retry_schedule": "1s 1s 2s 5s",
            "max_queue_lifetime": "1d",
            "recipient_delimiter": "+",
            "spam_engine": "none",
        }
        if single_user:
            self.settings["home_base"] = self.home_base
        self.settings.update(settings or {})
        self.queue_dir = Path(self.settings["queue_dir"])
        self.run_dir = Path(self.settings["run_dir"])
        self.db_dir = Path(self.settings["db_dir"])
        self.rules = standard_rules() if rules is None else rules
        self.uids = standard_uids() if uids is None else uids
        self.gids = gids
        self.homes = homes if single_user else ()
        self.asan_options = asan_options
        self.proc = None
        self.starts = 0
        self.log_path = None
        self.log_paths = []
        self._checked = {}
        self.prepare()

    # -- files

    def config_text(self):
        lines = ["# written by the mailprocd integration tests"]
        lines.append(f"listen lmtp 127.0.0.1:{self.lmtp_port}")
        lines.append(f"listen smtp 127.0.0.1:{self.smtp_port}")
        if self.sock_path:
            lines.append(f"listen lmtp unix:{self.sock_path}")
        for k, v in self.settings.items():
            if v is not None:
                lines.append(f"{k} {v}")
        return "\n".join(lines) + "\n"

    def prepare(self):
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        if IS_ROOT:
            make_traversable(self.root)
        self.db_dir.mkdir(exist_ok=True)
        self.conf.write_text(self.config_text())
        self.write_sources()
        self.home_base.mkdir(exist_ok=True)
        for h in self.homes:
            (self.home_base / h).mkdir(exist_ok=True)
        chown_tree(self.root, self.run_as)

    def write_sources(self, srcdir=None, rules=None, uids=None, gids=None,
                      lists="# lists source\n"):
        d = Path(srcdir or self.src_dir)
        d.mkdir(parents=True, exist_ok=True)
        files = {"rules": self.rules if rules is None else rules,
                 "uid": self.uids if uids is None else uids,
                 "gid": self.gids if gids is None else gids,
                 "lists": lists}
        for name, text in files.items():
            (d / name).write_text(text)
        chown_tree(d, self.run_as)

    def home(self, account):
        return self.home_base / account

    def maildir(self, account):
        return self.home(account) / "Maildir"

    def mbox(self, account):
        return self.home(account) / "mbox"

    # -- commands

    def run(self, argv, input=None, timeout=None):
        """Run a command as the daemon's account; checks sanitizer output."""
        res = subprocess.run(as_user(self.run_as, argv), input=input,
                             capture_output=True, timeout=timeout or DEADLINE)
        res.out = (res.stdout + res.stderr).decode("utf-8", "replace")
        bad = sanitizer_lines(res.out)
        assert not bad, f"sanitizer report from {argv}:\n" + "\n".join(bad)
        return res

    def ctl(self, *args, input=None):
        return self.run([mailprocctl_bin(), "-f", self.conf, *args],
                        input=input)

    def compile(self, srcdir=None, expect_ok=True):
        args = ["db", "compile"] + ([str(srcdir)] if srcdir else [])
        res = self.ctl(*args)
        if expect_ok:
            assert res.returncode == 0, \
                f"mailprocctl db compile failed ({res.returncode}):\n{res.out}"
        return res

    def check_config(self):
        return self.run([mailprocd_bin(), "-n", "-f", self.conf])

    # -- process

    def start(self, wait=True):
        assert self.proc is None, "already started"
        self.starts += 1
        self.log_path = self.root / f"mailprocd-{self.starts}.log"
        self.log_paths.append(self.log_path)
        logf = open(self.log_path, "wb")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        env.setdefault("LSAN_OPTIONS", "suppressions=%s:print_suppressions=0" % (
            Path(__file__).resolve().parent.parent / "lsan.supp"))
        if self.asan_options:
            env["ASAN_OPTIONS"] += ":" + self.asan_options
        try:
            self.proc = subprocess.Popen(
                as_user(self.run_as, [mailprocd_bin(), "-d", "-f", self.conf]),
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True, env=env)
        finally:
            logf.close()
        LIVE.append(self)
        if wait:
            self.wait_ready()
        return self

    def targets(self):
        t = [self.lmtp_port, self.smtp_port]
        if self.sock_path:
            t.append(self.sock_path)
        return t

    def wait_ready(self):
        """Wait until every listener greets with 220 (and answers QUIT)."""
        deadline = time.monotonic() + DEADLINE
        for t in self.targets():
            while True:
                self.assert_running("during start-up")
                try:
                    with Conn(t, timeout=5) as c:
                        g = c.reply()
                        assert g.code == 220, f"greeting on {t}: {g}"
                        expect(c.cmd("QUIT"), 221)
                    break
                except (OSError, EOFError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"mailprocd not ready on {t} after "
                                f"{DEADLINE:.0f}s; log:\n{self.log_tail()}")
                time.sleep(0.05)

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def assert_running(self, when=""):
        if self.proc.poll() is not None:
            pytest.fail(f"mailprocd exited with {self.proc.returncode} "
                        f"{when}; log:\n{self.log_tail()}")

    def children(self):
        return children(self.pid)

    def descendants(self):
        return descendants(self.pid)

    def workers(self):
        """Grandchildren of the master: the per-user workers."""
        procs = all_procs()
        out = []
        for c in children(self.pid, procs):
            out += children(c, procs)
        return sorted(out)

    def receiver_pid(self, conn):
        """The process serving conn (found through the socket inode)."""
        inode = wait_for(lambda: _tcp_inode(conn.sock.getpeername()[1],
                                            conn.local_port()),
                         5, "the server side of the connection in /proc/net")
        pid = pid_holding_socket(inode, self.descendants())
        assert pid, "no mailprocd process holds the accepted connection"
        return pid

    def role(self, pid):
        """The log ident a process used (e.g. mailprocd/receiver), or '?'."""
        m = re.search(rf"(?m)^(\S+)\[{pid}\]:", self.log())
        return m.group(1) if m else "?"

    def _group_members(self):
        pg = self.pid
        return [p for p, st in all_procs().items()
                if st["pgrp"] == pg and st["state"] != "Z"]

    def stop(self, expect_status=0, timeout=None, send_signal=True):
        """SIGTERM the master (unless send_signal is false: it was sent
        already), wait, check exit status, leftovers and the sanitizer
        output."""
        assert self.proc is not None
        tree = [(p, proc_stat(p)) for p in self.descendants()]
        tree = [(p, st["start"]) for p, st in tree if st]
        problems = []
        if send_signal:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            rc = self.proc.wait(timeout or DEADLINE)
        except subprocess.TimeoutExpired:
            rc = None
            problems.append(f"master did not exit within "
                            f"{timeout or DEADLINE:.0f}s of SIGTERM")
        left = []
        end = time.monotonic() + 10
        while time.monotonic() < end:
            left = sorted(set(self._group_members()) |
                          {p for p, s in tree if alive(p, s)})
            if not left:
                break
            time.sleep(0.1)
        if left:
            problems.append(f"processes left after stop: {left}")
        self._kill_all(tree)
        self._finish()
        if rc is not None and rc != expect_status:
            problems.append(f"exit status {rc}, expected {expect_status}")
        bad = self.sanitizer_report()
        if bad:
            problems.append("sanitizer report:\n" + "\n".join(bad))
        if problems:
            pytest.fail("mailprocd stop: " + "; ".join(problems) +
                        f"\nlog:\n{self.log_tail()}")
        return rc

    def crash(self):
        """kill -9 the master and everything it started (a machine crash as
        far as the daemon can tell)."""
        tree = [(p, proc_stat(p)) for p in self.descendants()]
        tree = [(p, st["start"]) for p, st in tree if st]
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._kill_all(tree)
        self.proc.wait(DEADLINE)
        wait_for(lambda: not any(alive(p, s) for p, s in tree) and
                 not self._group_members(), 10, "killed processes to go")
        self._finish()

    def _kill_all(self, tree=()):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for p, s in tree:
            if alive(p, s):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.proc.poll() is None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def _finish(self):
        if self in LIVE:
            LIVE.remove(self)
        self.proc = None

    def emergency_kill(self):
        if self.proc is not None:
            self._kill_all([(p, None) for p in self.descendants()])
            self._finish()

    def restart(self):
        self.stop()
        return self.start()

    # -- log

    def log(self):
        """The current run's log (stderr)."""
        try:
            return self.log_path.read_text(errors="replace")
        except (FileNotFoundError, AttributeError):
            return ""

    def all_logs(self):
        return "".join(p.read_text(errors="replace") for p in self.log_paths
                       if p.exists())

    def log_tail(self, n=60):
        return "\n".join(self.log().splitlines()[-n:])

    def sanitizer_report(self):
        return sanitizer_lines(self.all_logs())

    def new_sanitizer_lines(self):
        """Sanitizer lines that appeared since the last call."""
        text = self.all_logs()
        start = self._checked.get("off", 0)
        self._checked["off"] = len(text)
        return sanitizer_lines(text[start:])

    def wait_log(self, regex, timeout=None, what=None):
        rx = re.compile(regex, re.M)
        return wait_for(lambda: rx.search(self.log()), timeout,
                        what or f"log line matching {regex!r}")

    # -- queue

    def queue_files(self, sub):
        try:
            return sorted(os.listdir(self.queue_dir / sub))
        except FileNotFoundError:
            return []

    def spares(self):
        """Spare queue files in incoming/ (src/queue/qspares.c): empty,
        without the committed mark, and young (the receiver removes one
        within about 4 s of its making).  They hold no message."""
        out, now = [], time.time()
        for name in self.queue_files("incoming"):
            try:
                st = os.stat(self.queue_dir / "incoming" / name)
            except FileNotFoundError:
                continue
            if (not st.st_mode & stat.S_IXUSR and st.st_size == 0
                    and now - st.st_mtime < SPARE_LIFETIME):
                out.append(name)
        return out

    def queue_empty(self):
        """No message in incoming/, active/ or deferred/ (spares are not
        messages)."""
        spares = set(self.spares())
        return not any(f for s in ("incoming", "active", "deferred")
                       for f in self.queue_files(s)
                       if not (s == "incoming" and f in spares))


def sanitizer_lines(text, context=25):
    """Each sanitizer report line in text with up to `context` lines after
    it (the stack), as a list of lines; [] when there is none."""
    lines = text.splitlines()
    out, until = [], -1
    for i, line in enumerate(lines):
        if any(p in line for p in SANITIZER_PATTERNS):
            if i > until and out:
                out.append("...")
            until = max(until, i + context)
        if i <= until:
            out.append(line)
    return out


# ---------------------------------------------------------------- blasting

def blast(sock, prefix, total, chunk=65536, monitor=None, stall=5.0):
    """Send prefix + total bytes of 'a' (no CRLF) while reading whatever the
    server says.  Stops when everything is sent, the server closes or
    resets, or it stops reading for `stall` seconds.  monitor() is called
    about every MiB.  Returns dict(sent, received, closed, stalled)."""
    sock.setblocking(False)
    data = memoryview(b"a" * chunk)
    pending = memoryview(prefix)
    sent, received, closed, stalled = 0, b"", False, False
    last_progress = time.monotonic()
    next_mon = 0
    while sent < total and not closed:
        r, w, _ = select.select([sock], [sock], [], 0.2)
        if r:
            try:
                d = sock.recv(65536)
                if not d:
                    closed = True
                received += d
            except (ConnectionResetError, BrokenPipeError):
                closed = True
        if w and not closed:
            buf = pending if len(pending) else data[:min(chunk, total - sent)]
            try:
                n = sock.send(buf)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                n = 0
            except BlockingIOError:
                n = 0
            if n:
                last_progress = time.monotonic()
                if len(pending):
                    pending = pending[n:]
                else:
                    sent += n
        if monitor and sent >= next_mon:
            monitor()
            next_mon += 1 << 20
        if time.monotonic() - last_progress > stall:
            stalled = True
            break
    sock.setblocking(True)
    return {"sent": sent, "received": received, "closed": closed,
            "stalled": stalled}


def module_daemon(tmp_path_factory, run_as, name, **kw):
    """A compiled, started daemon for a whole module; the module fixture
    stops it (stop() checks exit status and sanitizer output)."""
    d = Daemon(tmp_path_factory.mktemp(name), run_as=run_as, **kw)
    d.compile()
    d.start()
    return d


def settle():
    """A short pause before checking that something did NOT happen."""
    time.sleep(2.0 if SANITIZED else 0.5)


# ---------------------------------------------------------------- SMTP sink

class SmtpSink:
    """A real SMTP server (Debian's python3-aiosmtpd) on a free loopback
    port, standing for the relay_host: records every message the relay
    hands it and counts connections.  reject: {address: reply} for
    recipients to refuse at RCPT (e.g. "550 5.1.1 no such user")."""

    def __init__(self, reject=None):
        from aiosmtpd.controller import Controller
        import threading

        self.reject = dict(reject or {})
        self.messages = []              # dicts: from, to, data (bytes)
        self.connections = 0
        self.lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, options):
                if address in sink.reject:
                    return sink.reject[address]
                envelope.rcpt_tos.append(address)
                return "250 2.1.5 Ok"

            async def handle_DATA(self, server, session, envelope):
                with sink.lock:
                    sink.messages.append({"from": envelope.mail_from,
                                          "to": list(envelope.rcpt_tos),
                                          "data": bytes(envelope.original_content)})
                return "250 2.0.0 Ok: queued"

        class Counting(Controller):
            def factory(self):
                with sink.lock:
                    sink.connections += 1
                return super().factory()

        [self.port] = free_ports(1)
        self.controller = Counting(Handler(), hostname="127.0.0.1", port=self.port,
                                   data_size_limit=64 * 1024 * 1024)
        self.controller.start()
        with self.lock:
            self.connections = 0        # the controller's own readiness probe
        self.address = f"127.0.0.1:{self.port}"

    def stop(self):
        self.controller.stop()

    def received(self, pred=lambda m: True):
        with self.lock:
            return [m for m in self.messages if pred(m)]

    def wait(self, pred, n=1, timeout=None, what="messages at the SMTP sink"):
        return wait_for(lambda: len(self.received(pred)) >= n and self.received(pred),
                        timeout, f"{n} {what}")


def parse_dsn(data):
    """A DSN (bytes) as (message, [per-recipient dicts]) with Python's
    email package; asserts its RFC 3464 structure."""
    import email
    from email import policy

    m = email.message_from_bytes(data, policy=policy.default)
    assert m.get_content_type() == "multipart/report", m.get_content_type()
    assert m.get_param("report-type") == "delivery-status"
    parts = list(m.iter_parts())
    assert [p.get_content_type() for p in parts][:2] == \
        ["text/plain", "message/delivery-status"], [p.get_content_type() for p in parts]
    status = parts[1]
    # message/delivery-status: a list of header blocks, first the per-message one
    blocks = [dict(b.items()) for b in status.get_payload()]
    assert "Reporting-MTA" in blocks[0], blocks[0]
    return m, blocks[1:]


# ---------------------------------------------------------------- policy service

def policy_request(**attrs):
    """A Postfix policy request (bytes): request=smtpd_access_policy, the
    given attributes in order (protocol_state=..., recipient=...), and the
    empty line that ends it."""
    lines = ["request=smtpd_access_policy"]
    lines += [f"{k}={v}" for k, v in attrs.items()]
    return ("\n".join(lines) + "\n\n").encode()


def rcpt_request(recipient, sender=SENDER, client="192.0.2.10", size=0,
                 instance="1.2.3.0", count=0, state="RCPT", **more):
    """The request Postfix sends at RCPT (or another state)."""
    return policy_request(protocol_state=state, protocol_name="ESMTP",
                          client_address=client, client_name="mail.remote.test",
                          reverse_client_name="mail.remote.test",
                          helo_name="mail.remote.test", sender=sender,
                          recipient=recipient, recipient_count=count,
                          queue_id="", instance=instance, size=size, **more)


class PolicyConn:
    """A raw connection to the policy service (TCP port on 127.0.0.1 or a
    unix socket path), as Postfix's check_policy_service keeps one."""

    def __init__(self, target, timeout=None):
        self.timeout = timeout or REPLY_TIMEOUT
        if isinstance(target, int):
            self.sock = socket.create_connection(("127.0.0.1", target),
                                                 timeout=self.timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(self.timeout)
            self.sock.connect(str(target))
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def answer(self, timeout=None):
        """One answer: its action (the text after action=).  Asserts the
        exact form `action=TEXT\\n\\n`."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no policy answer; got {self.buf!r}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError(f"no policy answer; got {self.buf!r}") from None
            except ConnectionResetError:
                data = b""
            if not data:
                raise EOFError(f"policy connection closed; got {self.buf!r}")
            self.buf += data
        raw, _, self.buf = self.buf.partition(b"\n\n")
        m = re.fullmatch(rb"action=([^\n]*)", raw)
        assert m, f"malformed policy answer {raw!r}"
        return m.group(1).decode()

    def ask(self, request, timeout=None):
        self.send(request)
        return self.answer(timeout)

    def closed_by_server(self, timeout=None):
        """True once the server closed (or reset) the connection; data it
        sent before is kept in self.buf."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not data:
                return True
            self.buf += data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class PolicyDaemon(Daemon):
    """A Daemon with the policy service on a loopback port and a unix
    socket (run_dir/policy.sock); start() also waits for those."""

    def __init__(self, root, **kw):
        [self.policy_port] = free_ports(1)
        super().__init__(root, **kw)
        self.policy_sock = self.run_dir / "policy.sock"

    def config_text(self):
        return super().config_text() + (
            f"listen policy 127.0.0.1:{self.policy_port}\n"
            f"listen policy unix:{self.run_dir / 'policy.sock'}\n")

    def policy_targets(self):
        return [self.policy_port, self.policy_sock]

    def wait_ready(self):
        super().wait_ready()
        deadline = time.monotonic() + DEADLINE
        for t in self.policy_targets():
            while True:
                self.assert_running("during start-up")
                try:
                    with PolicyConn(t, timeout=5) as c:
                        assert c.ask(policy_request(protocol_state="CONNECT")) == "DUNNO"
                    break
                except (OSError, EOFError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"policy service not ready on {t} after "
                                f"{DEADLINE:.0f}s; log:\n{self.log_tail()}")
                time.sleep(0.05)

    def policy_pid(self):
        """The policy service process (its log ident is mailprocd/policy)."""
        for p in self.children():
            if self.role(p) == "mailprocd/policy":
                return p
        return None


# ---------------------------------------------------------------- metrics

def http_request(port, method="GET", path="/metrics", raw=None, timeout=None):
    """One HTTP/1.0 request to 127.0.0.1:port (or the bytes raw as they
    are); returns (status, headers dict with lower-case names, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout or REPLY_TIMEOUT) as s:
        s.sendall(raw if raw is not None else
                  f"{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3}) ", lines[0] + " ")
    assert m, f"not an HTTP reply: {data[:200]!r}"
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(m.group(1)), headers, body


def metrics_samples(text):
    """The samples of an exposition, parsed by prometheus_client:
    {(name, ((label, value), ...sorted)): value}."""
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class MetricsDaemon(Daemon):
    """A Daemon with `listen metrics` on a loopback port; start() also
    waits for GET /metrics.  Combine with PolicyDaemon by inheriting both
    (class D(MetricsDaemon, PolicyDaemon))."""

    def __init__(self, root, **kw):
        [self.metrics_port] = free_ports(1)
        super().__init__(root, **kw)

    def config_text(self):
        return super().config_text() + f"listen metrics 127.0.0.1:{self.metrics_port}\n"

    def wait_ready(self):
        super().wait_ready()
        deadline = time.monotonic() + DEADLINE
        while True:
            self.assert_running("during start-up")
            try:
                if http_request(self.metrics_port, timeout=5)[0] == 200:
                    return
            except (OSError, AssertionError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"metrics not served after {DEADLINE:.0f}s; "
                            f"log:\n{self.log_tail()}")
            time.sleep(0.05)

    def scrape_text(self):
        status, headers, body = http_request(self.metrics_port)
        assert status == 200, f"GET /metrics: {status} {body[:200]!r}"
        return body.decode("utf-8")

    def scrape(self):
        """Every sample now (see metrics_samples)."""
        return metrics_samples(self.scrape_text())

    def sample(self, name, **labels):
        """One sample's value now (KeyError if there is none)."""
        return self.scrape()[(name, tuple(sorted(labels.items())))]

    def metrics_pid(self):
        """The metrics service process (log ident mailprocd/metrics)."""
        for p in self.children():
            if self.role(p) == "mailprocd/metrics":
                return p
        return None
