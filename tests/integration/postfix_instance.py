"""postfix_instance.py - a private, real Postfix for the integration tests.

Debian's postfix (3.7) runs from a temp dir with its own main.cf, master.cf,
queue and data directories: `postfix -c DIR check`, then `postfix -c DIR
start` (root only), and it is stopped by the pid in its master.pid (SIGTERM,
then wait), never by name.  The system's Postfix is not touched.

The instance's smtpd listens on a free loopback port, relays the test's
domains to an LMTP server (mailprocd's listener) and asks a policy service
at RCPT and at end of data, as the recipe in mailprocd.policy(5) says.  It
never uses DNS.  Its log goes to a file in the temp dir (postlogd), so a
failing test can print it: PostfixInstance.maillog().

Also here: Postgrey, Debian's greylisting policy server, run on a loopback
port with its own db dir and stopped by pid (the fixture's self-test and the
benchmark's peer).
"""

import os
import pty
import re
import select
import shutil
import signal
import smtplib
import socket
import subprocess
import time
from pathlib import Path

import mpharness as H

POSTFIX = "/usr/sbin/postfix"
POSTGREY = "/usr/sbin/postgrey"
MYHOSTNAME = "pfx.example.test"


def available():
    """None when a private Postfix can run here, else why not (for skip)."""
    if not H.IS_ROOT:
        return "a private Postfix instance needs root (CI runs as root)"
    if not os.access(POSTFIX, os.X_OK):
        return f"{POSTFIX} not installed (Debian package postfix)"
    return None


def _wait_port(port, timeout, check=None, what="a listener"):
    """Wait until a TCP connection to 127.0.0.1:port succeeds."""
    end = time.monotonic() + timeout
    while True:
        if check:
            check()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            pass
        if time.monotonic() > end:
            raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} "
                               f"within {timeout:.0f}s")
        time.sleep(0.05)


def _output_on_tty(argv, timeout=30):
    """What argv prints with its stdout and stderr on a pseudo-terminal."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave,
                                stderr=slave)
    finally:
        os.close(slave)
    out = b""
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    data = os.read(master, 65536)
                except OSError:      # EIO: the other side is closed
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return out.decode("utf-8", "replace").replace("\r\n", "\n")


class PostfixInstance:
    """One private Postfix.

    root: an empty directory it may own (config in root/etc, queue in
    root/queue, data in root/data, log in root/maillog).
    lmtp: the LMTP next hop, e.g. "inet:127.0.0.1:24" or "unix:/path".
    policy: the policy service as check_policy_service takes it,
    "inet:127.0.0.1:PORT" or "unix:/path", or None for no policy check.
    relay_domains: the domains this instance accepts and relays by LMTP.
    discard_domains: also accepted, but delivered to Postfix's discard
    transport (for mail that must go somewhere harmless).
    extra_smtpd: {name: policy} for more smtpd listeners, each on its own
    port (self.ports[name]) with its own check_policy_service.
    main_cf: extra or overriding main.cf settings.
    """

    def __init__(self, root, lmtp, policy, relay_domains,
                 discard_domains=(), extra_smtpd=None, main_cf=None):
        self.root = Path(root)
        self.etc = self.root / "etc"
        self.queue = self.root / "queue"
        self.data = self.root / "data"
        self.log_path = self.root / "maillog"
        self.lmtp = lmtp
        self.policy = policy
        self.relay_domains = list(relay_domains)
        self.discard_domains = list(discard_domains)
        self.extra_smtpd = dict(extra_smtpd or {})
        self.main_cf = dict(main_cf or {})
        names = ["smtp"] + list(self.extra_smtpd)
        self.ports = dict(zip(names, H.free_ports(len(names))))
        self.port = self.ports["smtp"]
        self.master_pid = None
        self.master_start = None

    # -- configuration

    @staticmethod
    def restrictions(policy):
        """The recipe: reject_unauth_destination first (never relay for
        the world), then the policy service; and again at end of data."""
        rcpt = "reject_unauth_destination"
        eod = ""
        if policy:
            rcpt += f", check_policy_service {policy}"
            eod = f"check_policy_service {policy}"
        return rcpt, eod

    def main_cf_settings(self):
        rcpt, eod = self.restrictions(self.policy)
        domains = self.relay_domains + self.discard_domains
        s = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "command_directory": "/usr/sbin",
            "daemon_directory": "/usr/lib/postfix/sbin",
            "meta_directory": "/etc/postfix",
            "shlib_directory": "/usr/lib/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": MYHOSTNAME,
            "mydomain": "example.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "relay_domains": ", ".join(domains),
            "relay_recipient_maps": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "transport_maps": f"texthash:{self.etc / 'transport'}",
            "relay_transport": f"lmtp:{self.lmtp}",
            "default_transport": "error:outside the test's domains",
            "smtpd_recipient_restrictions": rcpt,
            "smtpd_relay_restrictions": "",
            "smtpd_end_of_data_restrictions": eod,
            "smtpd_banner": "$myhostname ESMTP private test Postfix",
            "smtpd_peername_lookup": "no",
            "smtpd_client_restrictions": "",
            "smtpd_helo_restrictions": "",
            "smtpd_sender_restrictions": "",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "smtpd_client_connection_rate_limit": "0",
            "smtpd_policy_service_timeout": "10s",
            "smtpd_policy_service_max_idle": "30s",
            "smtpd_policy_service_try_limit": "1",
            "message_size_limit": str(50 * 1024 * 1024),
            "disable_dns_lookups": "yes",
            "smtp_host_lookup": "native",
            "lmtp_host_lookup": "native",
            "lmtp_connect_timeout": "5s",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "biff": "no",
            "append_dot_mydomain": "no",
            "maillog_file": self.log_path,
            "maillog_file_prefixes": self.root,
            "smtputf8_enable": "no",
            "tls_random_source": "",
            "smtpd_tls_security_level": "none",
            "smtp_tls_security_level": "none",
            "lmtp_tls_security_level": "none",
        }
        s.update(self.main_cf)
        return s

    def master_cf(self):
        svc = [
            # name type private unpriv chroot wakeup maxproc command
            f"127.0.0.1:{self.port} inet n - n - - smtpd",
        ]
        for name, policy in self.extra_smtpd.items():
            rcpt, eod = self.restrictions(policy)
            svc.append(f"127.0.0.1:{self.ports[name]} inet n - n - - smtpd\n"
                       f"  -o syslog_name=postfix/{name}\n"
                       f"  -o {{smtpd_recipient_restrictions={rcpt}}}\n"
                       f"  -o {{smtpd_end_of_data_restrictions={eod}}}")
        svc += [
            "pickup unix n - n 1 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "lmtp unix - - n - - lmtp",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        return "\n".join(svc) + "\n"

    def write_config(self):
        # queue_directory is root's; Postfix makes what is under it
        for d in (self.root, self.etc, self.queue):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o755)
        H.make_traversable(self.root)
        lines = [f"{k} = {v}" for k, v in self.main_cf_settings().items()]
        (self.etc / "main.cf").write_text(
            "# a private Postfix for the mailprocd integration tests\n" +
            "\n".join(lines) + "\n")
        (self.etc / "master.cf").write_text(self.master_cf())
        transport = [f"{d} lmtp:{self.lmtp}" for d in self.relay_domains]
        transport += [f"{d} discard:" for d in self.discard_domains]
        (self.etc / "transport").write_text("\n".join(transport) + "\n")

    # -- process

    def postfix(self, *args, check=True):
        argv = [POSTFIX, "-c", str(self.etc), *args]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if check and res.returncode != 0:
            # Postfix's commands write their errors to stderr only when it
            # is a terminal (else to syslog, or the maillog once postlogd
            # runs): run it once more on a pseudo-terminal to show them
            raise RuntimeError(
                f"postfix -c {self.etc} {' '.join(args)} failed "
                f"({res.returncode}):\n{res.stdout}{res.stderr}"
                f"{_output_on_tty(argv)}\nmaillog:\n{self.maillog()}")
        return res

    def start(self):
        why = available()
        if why:
            raise RuntimeError(why)
        self.write_config()
        # check creates the queue and data directories with their owners
        # and refuses a broken main.cf/master.cf with a clear message
        self.postfix("check")
        self.postfix("start")
        pidfile = self.queue / "pid" / "master.pid"
        end = time.monotonic() + H.DEADLINE
        while self.master_pid is None:
            try:
                pid = int(pidfile.read_text().split()[0])
                st = H.proc_stat(pid)
                if st:
                    self.master_pid, self.master_start = pid, st["start"]
                    break
            except (FileNotFoundError, ValueError, IndexError):
                pass
            if time.monotonic() > end:
                raise RuntimeError(f"no Postfix master pid in {pidfile}; "
                                   f"maillog:\n{self.maillog()}")
            time.sleep(0.05)
        for name, port in self.ports.items():
            _wait_port(port, H.DEADLINE, self._assert_running,
                       f"Postfix smtpd {name}")
        return self

    def _assert_running(self):
        if not H.alive(self.master_pid, self.master_start):
            raise RuntimeError(f"the Postfix master ({self.master_pid}) "
                               f"exited; maillog:\n{self.maillog()}")

    def stop(self, remove=True):
        """SIGTERM the master (it stops its children), wait, remove the
        directories."""
        if self.master_pid is not None:
            kids = H.descendants(self.master_pid)
            tree = [(p, H.proc_stat(p)) for p in kids]
            tree = [(p, st["start"]) for p, st in tree if st]
            try:
                os.kill(self.master_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            ok = H.wait_gone(self.master_pid, self.master_start, 20)
            for p, s in tree:
                ok = H.wait_gone(p, s, 5) and ok
            if not ok:
                for p, s in [(self.master_pid, self.master_start)] + tree:
                    if H.alive(p, s):
                        os.kill(p, signal.SIGKILL)
            self.master_pid = None
            if not ok:
                raise RuntimeError("Postfix did not stop within 20s of "
                                   "SIGTERM (killed)")
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- log and queue

    def maillog(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no maillog yet)"

    def maillog_tail(self, n=80):
        return "\n".join(self.maillog().splitlines()[-n:])

    def wait_log(self, regex, timeout=None):
        rx = re.compile(regex, re.M)
        return H.wait_for(lambda: rx.search(self.maillog()), timeout,
                          lambda: f"Postfix maillog line {regex!r}; "
                                  f"maillog:\n{self.maillog_tail()}")

    def queue_ids(self):
        """The ids of the messages in Postfix's queue (any state)."""
        out = []
        for sub in ("incoming", "active", "deferred", "hold", "maildrop"):
            for dirpath, _, files in os.walk(self.queue / sub):
                out += files
        return out

    def smtp(self, name="smtp", helo="client.example.test"):
        """An smtplib client connected to one of the smtpd listeners,
        after EHLO."""
        s = smtplib.SMTP("127.0.0.1", self.ports[name],
                         local_hostname=helo, timeout=H.REPLY_TIMEOUT * 3)
        code, msg = s.ehlo(helo)
        assert code == 250, f"EHLO: {code} {msg!r}"
        return s


class Postgrey:
    """Debian's postgrey on a loopback port, own db dir, run as the
    postgrey account; stopped by pid."""

    def __init__(self, root, delay, extra=()):
        self.root = Path(root)
        self.dbdir = self.root / "db"
        self.delay = delay
        self.extra = list(extra)
        [self.port] = H.free_ports(1)
        self.proc = None
        self.log_path = self.root / "postgrey.log"

    def start(self):
        if not os.access(POSTGREY, os.X_OK):
            raise RuntimeError(f"{POSTGREY} not installed (Debian package "
                               f"postgrey)")
        self.dbdir.mkdir(parents=True, exist_ok=True)
        H.make_traversable(self.root)
        user = "postgrey"
        try:
            acct = H.Account.lookup(user)
        except KeyError:
            acct = H.Account.lookup("nobody")
            user = acct.name
        group = subprocess.run(["id", "-gn", user], capture_output=True,
                               text=True).stdout.strip()
        if H.IS_ROOT:
            os.chown(self.dbdir, acct.uid, acct.gid)
        argv = [POSTGREY, f"--inet=127.0.0.1:{self.port}",
                f"--dbdir={self.dbdir}", f"--delay={self.delay}",
                "--whitelist-clients=/dev/null",
                "--whitelist-recipients=/dev/null"]
        if H.IS_ROOT:
            argv += [f"--user={user}", f"--group={group}"]
        argv += self.extra
        logf = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            logf.close()
        _wait_port(self.port, H.DEADLINE, self._assert_running, "postgrey")
        return self

    def _assert_running(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"postgrey exited with {self.proc.returncode}:"
                               f"\n{self.log()}")

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
