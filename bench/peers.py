"""peers.py - the three systems the benchmark compares, each set up in its
own work directory, delivering into the same maildir layout
(MAILROOT/uN/Maildir/) on the same disk, as the same unprivileged account:

  Dovecot   a private LMTP instance on loopback (dovecot -F -c FILE),
            default mail_fsync (optimized: the mail file is fsynced);
  procmail  one `procmail -m RCFILE MAILDIR/` per message, message on stdin,
            as an MTA's local delivery agent runs it;
  mailprocd single-user mode, home_base = MAILROOT, one rules entry per user.

Each has prepare(), start(), deliver(work, connections) and stop().
"""
import os
import shutil
import subprocess

import load
import sysutil


class Dovecot:
    name = "dovecot"
    transport = "lmtp"

    def __init__(self, workdir, mailroot, users, account):
        self.workdir, self.mailroot, self.users = workdir, mailroot, users
        self.account = account
        self.port = None
        self.proc = None
        self.conf = os.path.join(workdir, "dovecot.conf")
        self.log = os.path.join(workdir, "dovecot.log")

    def prepare(self):
        if shutil.which("dovecot") is None:
            raise RuntimeError("dovecot is not installed (scripts/setup.sh)")
        self.port = sysutil.free_port()
        # Rootless (not started by root): every internal service runs as
        # the invoking user as well.
        internal = ""
        if not self.account.switch:
            internal = ("default_internal_user = %s\n"
                        "default_internal_group = %s\n"
                        "default_login_user = %s\n") % (
                self.account.name, self.account.group, self.account.name)
        with open(self.conf, "w") as f:
            f.write(DOVECOT_CONF % {
                "base": os.path.join(self.workdir, "run"),
                "state": os.path.join(self.workdir, "state"),
                "log": self.log,
                "uid": self.account.uid, "gid": self.account.gid,
                "mailroot": self.mailroot, "port": self.port,
                "internal": internal,
            })

    def start(self):
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", self.conf],
                                     stdin=subprocess.DEVNULL)
        sysutil.wait_listening(self.port, self.proc)

    def deliver(self, work, connections):
        return load.run_lmtp("127.0.0.1", self.port, work, connections)

    def stop(self):
        if self.proc is not None:
            sysutil.stop_process(self.proc)

    def diagnostics(self):
        return _tail(self.log)


DOVECOT_CONF = """\
# private Dovecot LMTP instance for bench/lmtp_bench.py
base_dir = %(base)s
state_dir = %(state)s
log_path = %(log)s
protocols = lmtp
listen = 127.0.0.1
ssl = no
%(internal)s
# mail_fsync stays at its default (optimized): the saved mail is fsynced.
mail_location = maildir:~/Maildir
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=%(uid)d gid=%(gid)d home=%(mailroot)s/%%n allow_all_users=yes
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %(port)d
  }
}
"""


class Procmail:
    name = "procmail"
    transport = "spawn"

    def __init__(self, workdir, mailroot, users, account):
        self.workdir, self.mailroot, self.users = workdir, mailroot, users
        self.account = account
        self.rcfile = os.path.join(workdir, "procmailrc")

    def prepare(self):
        self.procmail = shutil.which("procmail")
        if self.procmail is None:
            raise RuntimeError("procmail is not installed (scripts/setup.sh)")
        # $1 is the first argument after the rcfile: the user's maildir.
        with open(self.rcfile, "w") as f:
            f.write("# bench/lmtp_bench.py: deliver into the maildir given as $1\n"
                    ":0\n$1\n")
        os.chmod(self.rcfile, 0o644)

    def start(self):
        pass

    def deliver(self, work, connections):
        env = {"PATH": "/usr/bin:/bin", "HOME": self.mailroot}
        kwargs = dict(self.account.popen_kwargs(), env=env, cwd=self.mailroot)

        def argv_for(rcpt):
            user = rcpt.split("@", 1)[0]
            return [self.procmail, "-m", self.rcfile,
                    os.path.join(self.mailroot, user, "Maildir") + "/"]
        return load.run_spawned(argv_for, work, connections, kwargs)

    def stop(self):
        pass

    def diagnostics(self):
        return ""


class Mailprocd:
    name = "mailprocd"
    transport = "lmtp"

    def __init__(self, workdir, mailroot, users, account, build,
                 spam_engine="none", rules="    maildir ~/Maildir/\n", extra_conf=""):
        self.workdir, self.mailroot, self.users = workdir, mailroot, users
        self.extra_conf = extra_conf     # settings lines after the benchmark's own
        self.account = account
        # The instructions of every user's rules entry, and the engine
        # they may ask ("if spam ...").
        self.spam_engine, self.rules = spam_engine, rules
        self.daemon = os.path.join(build, "src", "master", "mailprocd")
        self.ctl = os.path.join(build, "src", "ctl", "mailprocctl")
        self.conf = os.path.join(workdir, "mailprocd.conf")
        self.log = os.path.join(workdir, "mailprocd.log")
        self.port = None
        self.proc = None
        self.stragglers = []

    def prepare(self):
        for exe in (self.daemon, self.ctl):
            if not os.access(exe, os.X_OK):
                raise RuntimeError("%s is missing: build first (ninja -C build)" % exe)
        # Copies in the work directory: the build tree may not be reachable
        # by the unprivileged account (a checkout under /root).
        bindir = os.path.join(self.workdir, "bin")
        os.makedirs(bindir, exist_ok=True)
        self.daemon = shutil.copy2(self.daemon, bindir)
        self.ctl = shutil.copy2(self.ctl, bindir)
        self.port = sysutil.free_port()
        src = os.path.join(self.workdir, "db-src")
        os.makedirs(src, exist_ok=True)
        with open(self.conf, "w") as f:
            f.write(MAILPROCD_CONF % {"dir": self.workdir, "port": self.port,
                                      "mailroot": self.mailroot,
                                      "spam": self.spam_engine})
            f.write(self.extra_conf)
        with open(os.path.join(src, "uid"), "w") as f:
            for n in range(self.users):
                f.write("%s %s\n" % (load.recipient(n), load.user_name(n)))
        with open(os.path.join(src, "rules"), "w") as f:
            for n in range(self.users):
                f.write("%s\n%s\n" % (load.recipient(n), self.rules))
        self.account.chown_tree(self.workdir)
        subprocess.run([self.ctl, "-f", self.conf, "db", "compile"], check=True,
                       stdout=subprocess.DEVNULL, **self.account.popen_kwargs())

    def start(self):
        with open(self.log, "w") as logf:
            self.proc = subprocess.Popen([self.daemon, "-d", "-f", self.conf],
                                         stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT,
                                         **self.account.popen_kwargs())
        sysutil.wait_listening(self.port, self.proc)

    def deliver(self, work, connections):
        return load.run_lmtp("127.0.0.1", self.port, work, connections)

    def stop(self):
        """Stop the master by its pid, then wait for the processes it had
        (a worker finishing after the master would write into the next
        peer's time, or into a removed work directory)."""
        if self.proc is not None:
            below = sysutil.descendants(self.proc.pid)
            sysutil.stop_process(self.proc)
            self.stragglers = sysutil.wait_gone(below)
            self.proc = None

    def diagnostics(self):
        return _tail(self.log)


MAILPROCD_CONF = """\
# mailprocd for bench/lmtp_bench.py (single-user mode)
hostname        bench.test
listen          lmtp 127.0.0.1:%(port)d
queue_dir       %(dir)s/queue
db_dir          %(dir)s/db
db_source_dir   %(dir)s/db-src
run_dir         %(dir)s/run
home_base       %(mailroot)s
default_delivery maildir ~/Maildir/
spam_engine     %(spam)s
"""


def _tail(path, lines=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""
