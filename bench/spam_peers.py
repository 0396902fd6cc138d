"""spam_peers.py - the four systems bench/spam_bench.py compares, each
classifying the same corpus messages with the same SpamAssassin 4.0 rules
(local tests only) and, for the three that deliver, putting spam into
MAILROOT/uN/Maildir/.Junk/ and the rest into MAILROOT/uN/Maildir/, as the
same unprivileged account:

  SpawnSA   procmail spawned per message, running `spamassassin -L` per
            message (rules parsed every time), as an MTA's local delivery
            agent with a .procmailrc does;
  Spamd     procmail spawned per message, running spamc, talking to a
            private spamd on loopback (rules compiled once, one child per
            core, per-user Bayes through --virtual-config-dir);
  Bound     bench/sa_bound.pl: Mail::SpamAssassin in process, one per core,
            no delivery: the ceiling of what embedding SpamAssassin gives;
  mailprocd (peers.Mailprocd with spam_engine spamassassin) over LMTP.

User N's home is MAILROOT/uN and its Bayes data MAILROOT/uN/.spamassassin
for every peer (train_bayes fills it the same way for all).  Each peer has
prepare(), start(), deliver(work, connections), stop(), diagnostics(),
and Bound and Mailprocd warm(messages) for spam_bench.py --warm: checks
(mailprocd: delivers) messages that are not measured, before the clock,
so that the run measures the steady state.
"""
import os
import shutil
import subprocess
import sys
import time

import load
import peers
import sysutil

JUNK = ".Junk"
# The GTUBE test string: any SpamAssassin scores it spam (1000 points).
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

# procmail recipes: $1 is the user's maildir (ending in /), $2 its home.
# HOME is what SpamAssassin expands ~ with (~/.spamassassin).
RC_HEAD = "HOME=$2\n"
RC_TAIL = (":0\n"
           "* ^X-Spam-Flag: YES\n"
           "$1" + JUNK + "/\n"
           ":0\n"
           "$1\n")


def home(mailroot, n):
    return os.path.join(mailroot, load.user_name(n))


def create_junk_maildirs(mailroot, users, owner):
    """Maildir/.Junk/{tmp,new,cur} next to the inbox for every user."""
    for n in range(users):
        junk = os.path.join(home(mailroot, n), "Maildir", JUNK)
        for p in [junk] + [os.path.join(junk, d) for d in ("tmp", "new", "cur")]:
            os.makedirs(p, mode=0o700, exist_ok=True)
            if owner is not None:
                os.chown(p, owner[0], owner[1])


def _new_dirs(mailroot, users):
    for n in range(users):
        box = os.path.join(home(mailroot, n), "Maildir")
        yield "inbox", os.path.join(box, "new")
        yield "junk", os.path.join(box, JUNK, "new")


def count_boxes(mailroot, users):
    """{"inbox": files, "junk": files} over all users' new/ directories."""
    out = {"inbox": 0, "junk": 0}
    for box, d in _new_dirs(mailroot, users):
        try:
            out[box] += len(os.listdir(d))
        except FileNotFoundError:
            pass
    return out


def count_scanned(mailroot, users):
    """Delivered files that carry an X-Spam-Status header in their header."""
    n = 0
    for _, d in _new_dirs(mailroot, users):
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        for name in names:
            with open(os.path.join(d, name), "rb") as f:
                head = f.read(1 << 16).split(b"\n\n", 1)[0]
            if b"\nX-Spam-Status:" in b"\n" + head:
                n += 1
    return n


def wait_boxes(mailroot, users, expected, deadline, interval=0.05):
    """Poll until expected files are in inbox + junk; the time, or None.
    A poll lists every new/ directory (about 0.2 ms of CPU for 10 users),
    taken from the peer on the same cores: every 50 ms it costs under
    0.5 % of a core (every 5 ms it was 4 %, which the bound, waited for
    by exit, never paid), and the end is seen at most 50 ms late."""
    while True:
        c = count_boxes(mailroot, users)
        if c["inbox"] + c["junk"] >= expected:
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def mark_seen(mailroot, users):
    """Move every file of the users' new/ directories to cur/, as a mail
    reader does: the warm-up's deliveries are then not counted."""
    for _, d in _new_dirs(mailroot, users):
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        cur = os.path.join(os.path.dirname(d), "cur")
        for name in names:
            os.rename(os.path.join(d, name), os.path.join(cur, name + ":2,"))


def train_bayes(template, account, spam, ham):
    """Teach template/.spamassassin (HOME=template) the given messages
    with sa-learn as the account; install_bayes copies it to each user.
    Returns the seconds it took."""
    t0 = time.monotonic()
    for label, msgs in (("spam", spam), ("ham", ham)):
        d = os.path.join(template, "learn-" + label)
        os.makedirs(d)
        for i, (_, data) in enumerate(msgs):
            with open(os.path.join(d, "%04d" % i), "wb") as f:
                f.write(data)
    account.chown_tree(template)
    env = {"PATH": "/usr/bin:/bin", "HOME": template}
    kw = dict(account.popen_kwargs(), env=env, cwd=template,
              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for args in (["--no-sync", "--spam", "learn-spam"], ["--no-sync", "--ham", "learn-ham"],
                 ["--sync"]):
        p = subprocess.run(["sa-learn"] + args, **kw)
        if p.returncode != 0:
            raise RuntimeError("sa-learn %s: exit %d: %s" % (
                " ".join(args), p.returncode, p.stderr.decode(errors="replace").strip()))
    for label in ("spam", "ham"):
        shutil.rmtree(os.path.join(template, "learn-" + label))
    return time.monotonic() - t0


def install_bayes(template, mailroot, users, account):
    """MAILROOT/uN/.spamassassin for every user: a copy of the template's
    (trained or not), with an empty user_prefs so that no peer writes one
    of its own."""
    src = os.path.join(template, ".spamassassin")
    for n in range(users):
        dst = os.path.join(home(mailroot, n), ".spamassassin")
        if os.path.isdir(src):
            shutil.copytree(src, dst)
        else:
            os.makedirs(dst)
        with open(os.path.join(dst, "user_prefs"), "w") as f:
            f.write("# bench/spam_bench.py: defaults only\n")
        os.chmod(dst, 0o700)
        account.chown_tree(dst)


class _Spawned:
    """procmail spawned per message with a filter recipe (subclasses)."""
    transport = "spawn"

    def __init__(self, workdir, mailroot, users, account):
        self.workdir, self.mailroot, self.users = workdir, mailroot, users
        self.account = account
        self.rcfile = os.path.join(workdir, "procmailrc")

    def filter_recipe(self):
        raise NotImplementedError

    def prepare(self):
        self.procmail = shutil.which("procmail")
        if self.procmail is None:
            raise RuntimeError("procmail is not installed (scripts/setup.sh)")
        with open(self.rcfile, "w") as f:
            f.write("# bench/spam_bench.py %s: $1 maildir, $2 home, $3 user\n" % self.name)
            f.write(RC_HEAD + self.filter_recipe() + RC_TAIL)
        os.chmod(self.rcfile, 0o644)

    def start(self):
        pass

    def deliver(self, work, connections):
        env = {"PATH": "/usr/bin:/bin", "HOME": self.mailroot}
        kwargs = dict(self.account.popen_kwargs(), env=env, cwd=self.mailroot)

        def argv_for(rcpt):
            user = rcpt.split("@", 1)[0]
            h = os.path.join(self.mailroot, user)
            return [self.procmail, "-m", self.rcfile,
                    os.path.join(h, "Maildir") + "/", h, user]
        return load.run_spawned(argv_for, work, connections, kwargs)

    def stop(self):
        pass

    def diagnostics(self):
        return ""


class SpawnSA(_Spawned):
    name = "spawn"
    label = "procmail + spamassassin -L"

    def prepare(self):
        if shutil.which("spamassassin") is None:
            raise RuntimeError("spamassassin is not installed (scripts/setup.sh --bench)")
        super().prepare()

    def filter_recipe(self):
        return ":0fw\n| spamassassin -L\n"


class Spamd(_Spawned):
    name = "spamd"
    label = "procmail + spamc -> spamd"

    def __init__(self, workdir, mailroot, users, account, children):
        super().__init__(workdir, mailroot, users, account)
        self.children = children
        self.port = None
        self.proc = None
        self.pidfile = os.path.join(workdir, "spamd.pid")
        self.log = os.path.join(workdir, "spamd.log")
        self.helper = os.path.join(workdir, "spamd-home")

    def prepare(self):
        for exe in ("/usr/sbin/spamd", "/usr/bin/spamc"):
            if not os.access(exe, os.X_OK):
                raise RuntimeError("%s is missing (scripts/setup.sh --bench)" % exe)
        self.port = sysutil.free_port()
        super().prepare()
        os.makedirs(self.helper, exist_ok=True)
        self.account.chown_tree(self.helper)

    def filter_recipe(self):
        # -u names the user: spamd finds its Bayes data by it.
        return ":0fw\n| spamc -d 127.0.0.1 -p %d -u $3\n" % self.port

    def start(self):
        # Virtual users (one account, a home each): -x with
        # --virtual-config-dir puts user N's state in MAILROOT/uN/.spamassassin.
        argv = ["/usr/sbin/spamd", "--local", "--ipv4-only",
                "--listen=127.0.0.1:%d" % self.port, "--allowed-ips=127.0.0.1",
                "--max-children=%d" % self.children,
                "--min-children=%d" % self.children,
                "--min-spare=1", "--max-spare=%d" % self.children,
                "--pidfile=%s" % self.pidfile, "--syslog=%s" % self.log,
                "--helper-home-dir=%s" % self.helper,
                "--nouser-config",
                "--virtual-config-dir=%s/%%u/.spamassassin" % self.mailroot,
                "--username=%s" % self.account.name,
                "--groupname=%s" % self.account.group]
        # As root, spamd drops to the account itself (it must, to bind
        # and write its pidfile first); otherwise it runs as the caller.
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT,
                                     env={"PATH": "/usr/bin:/bin:/usr/sbin",
                                          "HOME": self.helper})
        sysutil.wait_listening(self.port, self.proc, timeout=60)
        self._wait_children()

    def _wait_children(self, timeout=60.0):
        """spamd listens before its children have forked: wait for them
        (found as the children of its pid in /proc), so that start-up is
        not counted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(sysutil.children(self.proc.pid)) >= self.children:
                return
            time.sleep(0.1)
        raise RuntimeError("spamd started fewer than %d children" % self.children)

    def stop(self):
        if self.proc is not None:
            sysutil.stop_process(self.proc)

    def diagnostics(self):
        return peers._tail(self.log)


class Bound:
    """bench/sa_bound.pl over the messages; deliver() returns what it
    printed.  Checking only: nothing is delivered."""
    name = "bound"
    label = "SpamAssassin in process"
    transport = "none"

    def __init__(self, workdir, mailroot, users, account, procs):
        self.workdir, self.mailroot, self.users = workdir, mailroot, users
        self.account = account
        self.procs = procs
        self.script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sa_bound.pl")
        self.manifest = os.path.join(workdir, "manifest")
        self.stderr = ""
        self.cpu = None          # CPU seconds of the checks, from the script
        self.warm_cpu = 0.0      # --warm: what the children used before the clock
        self.minflt = None       # the children's minor faults (warm-up left out)
        self.warm_messages = []  # --warm: one a child, checked before the clock

    def prepare(self):
        if not os.access("/usr/bin/perl", os.X_OK):
            raise RuntimeError("perl is missing")
        # A copy: the checkout may not be reachable by the account.
        self.script = shutil.copy2(self.script, self.workdir)

    def start(self):
        pass

    def deliver(self, work, connections):
        """Writes the messages (LF line ends) and runs the script; returns
        (Stats, start, end, spam) with the script's own timing."""
        msgdir = os.path.join(self.workdir, "msgs")
        os.makedirs(msgdir, exist_ok=True)
        with open(self.manifest, "w") as mf:
            for i, (rcpt, msg) in enumerate(work):
                path = os.path.join(msgdir, "%05d" % i)
                with open(path, "wb") as f:
                    f.write(msg.replace(b"\r\n", b"\n"))
                user = rcpt.split("@", 1)[0]
                mf.write("%s\t%s\n" % (os.path.join(self.mailroot, user), path))
        argv = ["/usr/bin/perl", self.script, "--procs", str(self.procs)]
        if self.warm_messages:
            warmlist = os.path.join(self.workdir, "warmlist")
            with open(warmlist, "w") as wl:
                for i, msg in enumerate(self.warm_messages):
                    path = os.path.join(msgdir, "warm%02d" % i)
                    with open(path, "wb") as f:
                        f.write(msg.replace(b"\r\n", b"\n"))
                    wl.write(path + "\n")
            argv += ["--warm", warmlist]
        self.account.chown_tree(self.workdir)
        p = subprocess.run(argv + [self.manifest],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.workdir,
                           env={"PATH": "/usr/bin:/bin", "HOME": self.workdir},
                           **self.account.popen_kwargs())
        self.stderr = p.stderr.decode(errors="replace")
        fields = dict(kv.split("=", 1) for kv in p.stdout.decode().split() if "=" in kv)
        if p.returncode != 0 or "checked" not in fields:
            raise RuntimeError("sa_bound.pl: exit %d: %s" % (
                p.returncode, self.stderr.strip().splitlines()[-1:] or "no output"))
        stats = load.Stats()
        stats.ok = int(fields["checked"])
        self.cpu = float(fields["cpu"])
        self.warm_cpu = float(fields.get("warm_cpu", 0))
        self.minflt = int(fields["minflt"]) if "minflt" in fields else None
        return stats, 0.0, float(fields["seconds"]), int(fields["spam"])

    def warm(self, messages):
        """Nothing now: sa_bound.pl's children each check one of these
        first (--warm), its clock and CPU starting after."""
        self.warm_messages = [msg for _, msg in messages[:self.procs]]
        return []

    def stop(self):
        pass

    def diagnostics(self):
        return "\n".join(self.stderr.splitlines()[-20:])


class NotSupported(RuntimeError):
    """This mailprocd build does not score spam."""


class Mailprocd(peers.Mailprocd):
    """mailprocd with spam_engine spamassassin; user R (one past the
    benchmark's users) is the probe: a GTUBE message to it must land in
    its Junk before the run counts."""
    label = "mailprocd, embedded SpamAssassin"

    def __init__(self, workdir, mailroot, users, account, build, extra_conf=""):
        super().__init__(workdir, mailroot, users + 1, account, build,
                         spam_engine="spamassassin",
                         rules=("    if spam maildir ~/Maildir/.Junk/ ; stop\n"
                                "    maildir ~/Maildir/\n"), extra_conf=extra_conf)
        self.bench_users = users

    def prepare(self):
        load.create_maildirs(self.mailroot, self.users, self.account.owner())
        create_junk_maildirs(self.mailroot, self.users, self.account.owner())
        try:
            super().prepare()
        except subprocess.CalledProcessError as e:
            raise NotSupported("mailprocctl db compile failed (exit %d, its message "
                               "above)" % e.returncode) from None

    def start(self):
        try:
            super().start()
        except RuntimeError as e:
            raise NotSupported("mailprocd does not start with spam_engine "
                               "spamassassin: %s" % e) from None
        self._probe()

    def warm(self, messages):
        """Deliver one message to each benchmark user (messages: one
        (rcpt, bytes) per user) and wait until each is in a new/
        directory: every user's worker has then forked from the spawner
        and checked a message.  They are moved to cur/ so that the run
        counts only its own.  Returns the pids of the daemon's processes
        then, for warm_gone()."""
        stats, _, _ = load.run_lmtp("127.0.0.1", self.port, messages, 1)
        if stats.errors:
            raise RuntimeError("warm-up refused: %s" % stats.errors[0])
        if wait_boxes(self.mailroot, self.bench_users, len(messages),
                      time.monotonic() + 120) is None:
            raise RuntimeError("warm-up messages not delivered within 120 s")
        time.sleep(0.5)    # the workers report their results and go idle
        mark_seen(self.mailroot, self.bench_users)
        self.warm_pids = set(sysutil.descendants(self.proc.pid))
        return self.warm_pids

    def warm_gone(self):
        """The processes present after the warm-up that are gone now (a
        warm worker expired or was replaced: the run was not warm)."""
        now = set(sysutil.descendants(self.proc.pid))
        return sorted(getattr(self, "warm_pids", set()) - now)

    def _probe(self):
        probe = self.bench_users
        rcpt = load.recipient(probe)
        msg = ("From: probe <probe@sender.test>\r\nTo: <%s>\r\n"
               "Subject: GTUBE probe\r\nMessage-ID: <probe@bench.test>\r\n\r\n"
               "%s\r\n" % (rcpt, GTUBE)).encode()
        stats, _, _ = load.run_lmtp("127.0.0.1", self.port, [(rcpt, msg)], 1)
        if stats.errors:
            raise NotSupported("GTUBE probe refused: %s" % stats.errors[0])
        box = os.path.join(home(self.mailroot, probe), "Maildir")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if os.listdir(os.path.join(box, JUNK, "new")):
                return
            if os.listdir(os.path.join(box, "new")):
                raise NotSupported("spam_engine spamassassin is accepted but not "
                                   "applied (GTUBE went to the inbox)")
            if self.proc.poll() is not None:
                raise NotSupported("mailprocd exited during the GTUBE probe")
            time.sleep(0.01)
        raise NotSupported("GTUBE probe not delivered within 60 s")


def run_sa_version():
    """SpamAssassin's version line, for the report."""
    try:
        p = subprocess.run(["spamassassin", "--version"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, timeout=60)
        return p.stdout.decode(errors="replace").splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return "SpamAssassin (version unknown)"


if __name__ == "__main__":
    sys.exit("spam_peers.py is a module of bench/spam_bench.py")
