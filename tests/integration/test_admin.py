"""test_admin.py - what an administrator expects of every program: -V and
-h (and --version/--help), process titles that name each process's role in
ps, `mailprocd -n` judging a file in the mode it is written for whoever
runs the check, and config errors that carry file:line."""

import os
import re
import smtplib
import subprocess
from pathlib import Path

import pytest

import mpharness as H
from mpharness import SENDER

ROOT = Path(__file__).resolve().parent.parent.parent


def project_version():
    text = (ROOT / "meson.build").read_text()
    return re.search(r"version\s*:\s*'([^']+)'", text).group(1)


def mailmond_bin():
    return H.binary("src/mailmond/mailmond")


PROGRAMS = [("mailprocd", H.mailprocd_bin), ("mailprocctl", H.mailprocctl_bin),
            ("mailmond", mailmond_bin)]


# ---------------------------------------------------------------- -V and -h

@pytest.mark.parametrize("name,binary", PROGRAMS)
@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version_prints_name_and_meson_version(name, binary, flag):
    res = subprocess.run([str(binary()), flag], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{name} {project_version()}\n"


@pytest.mark.parametrize("name,binary", PROGRAMS)
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_prints_usage_on_stdout(name, binary, flag):
    res = subprocess.run([str(binary()), flag], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"usage: {name} ")
    assert "-V" in res.stdout and "-h" in res.stdout


@pytest.mark.parametrize("name,binary", PROGRAMS)
def test_unknown_option_is_a_usage_error(name, binary):
    res = subprocess.run([str(binary()), "--no-such-option"], capture_output=True,
                         text=True)
    assert res.returncode == 2
    assert "usage:" in res.stderr and res.stdout == ""


# ---------------------------------------------------------------- titles

def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().rstrip(b"\0").replace(b"\0", b" ").decode()


def ps_args(pid):
    res = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True,
                         text=True)
    return res.stdout.strip()


def send(d, rcpt):
    m = H.make_message(to=rcpt)
    with smtplib.SMTP("127.0.0.1", d.smtp_port, local_hostname=H.CLIENT_NAME,
                      timeout=H.REPLY_TIMEOUT) as s:
        assert s.sendmail(SENDER, [rcpt], m) == {}
    return m


class TitledDaemon(H.Daemon):
    """A daemon with the optional children too: policy, lists sync and
    metrics."""

    def __init__(self, *a, **kw):
        self.policy_port, self.metrics_port, self.mailman_port = H.free_ports(3)
        super().__init__(*a, **kw)

    def config_text(self):
        # the lists sync process runs (and finds no Mailman there)
        return super().config_text() + (
            f"listen policy 127.0.0.1:{self.policy_port}\n"
            f"listen metrics 127.0.0.1:{self.metrics_port}\n"
            f"members_source mailman3 http://127.0.0.1:{self.mailman_port}/3.1 u:p\n")


CHILD_TITLES = {"mailprocd: receiver", "mailprocd: qmgr", "mailprocd: spawner",
                "mailprocd: relay", "mailprocd: policy sync", "mailprocd: policy",
                "mailprocd: lists sync", "mailprocd: metrics"}


DELIVERY_SIDE = {"mailprocd: qmgr", "mailprocd: spawner", "mailprocd: relay"}


def check_nice(d, delivery_nice):
    """The processes that deliver (qmgr, spawner, relay, workers) run
    delivery_nice below the master; the others at its priority."""
    base = H.proc_stat(d.pid)["nice"]
    lowered = min(base + delivery_nice, 19)
    got = {cmdline(p): H.proc_stat(p)["nice"] for p in d.children()}
    assert got == {t: lowered if t in DELIVERY_SIDE else base for t in CHILD_TITLES}, got
    assert {H.proc_stat(p)["nice"] for p in d.workers()} == {lowered}


def check_titles(d, account, maildir):
    assert cmdline(d.pid) == "mailprocd: master"
    assert ps_args(d.pid) == "mailprocd: master"
    titles = {cmdline(p) for p in d.children()}
    assert titles == CHILD_TITLES
    for p in d.children():
        # comm (top, ps -o comm, pgrep) keeps the program's name first
        assert H.proc_stat(p)["comm"].startswith("mailprocd: ")
    m = send(d, f"{account}@example.test")
    H.wait_maildir(maildir, H.mid(m))
    workers = d.workers()
    assert workers, "no worker after a delivery"
    assert {cmdline(p) for p in workers} == {f"mailprocd: worker {account}"}
    assert {ps_args(p) for p in workers} == {f"mailprocd: worker {account}"}
    check_nice(d, 10)     # the default


def test_ps_names_each_process_single_user(tmp_path, run_as):
    d = TitledDaemon(tmp_path / "d", run_as=run_as)
    d.compile()
    d.start()
    try:
        check_titles(d, "alice", d.maildir("alice"))
    finally:
        d.stop()


@pytest.mark.skipif(not H.IS_ROOT, reason="root mode needs root (CI runs as root)")
def test_ps_names_each_process_root_mode(tmp_path):
    H.make_traversable(tmp_path)
    users = []
    try:
        svc = H.create_user("mpt-s-")
        users.append(svc)
        home = tmp_path / "home-a"
        ua = H.create_user("mpt-a-", home=home)
        users.append(ua)
        home.mkdir()
        os.chown(home, ua.uid, ua.gid)
        rules = "a@example.test\n    maildir ~/Maildir/\n"
        uids = f"a@example.test {ua.name}\n"
        d = TitledDaemon(tmp_path / "d", run_as=None, single_user=False,
                         settings={"user": svc.name, "delivery_nice": "3"},
                         rules=rules, uids=uids)
        d.compile()
        d.start()
        try:
            titles = {cmdline(p) for p in d.children()}
            assert titles == CHILD_TITLES
            m = send(d, "a@example.test")
            H.wait_maildir(home / "Maildir", H.mid(m))
            assert {cmdline(p) for p in d.workers()} == {f"mailprocd: worker {ua.name}"}
            check_nice(d, 3)
            assert cmdline(d.pid) == "mailprocd: master"
            assert H.proc_stat(d.pid)["comm"] == "mailprocd: mast"   # 15 bytes
        finally:
            d.stop()
    finally:
        for d_ in list(H.LIVE):
            if d_.root == tmp_path / "d":
                d_.emergency_kill()
        for u in users:
            H.delete_user(u)


# ---------------------------------------------------------------- -n

def check(d, conf=None, acct="run_as"):
    """mailprocd -n on conf (default d's) as d's account, or as acct."""
    argv = [str(H.mailprocd_bin()), "-n", "-f", str(conf or d.conf)]
    who = d.run_as if acct == "run_as" else acct
    return subprocess.run(H.as_user(who, argv), capture_output=True, text=True)


@pytest.fixture
def sd(tmp_path, run_as):
    """A single-user daemon's files (not started), owned by run_as."""
    d = H.Daemon(tmp_path / "d", run_as=run_as)
    d.compile()
    return d


def test_check_passes_as_its_account_and_says_the_mode(sd):
    res = check(sd)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"{sd.conf}: ok (single-user mode")


@pytest.mark.skipif(not H.IS_ROOT, reason="needs root (CI runs as root)")
def test_root_checks_a_single_user_file_as_single_user(sd):
    """The demo's case: root checks the file the daemon runs as another
    account; it passes as it does for that account."""
    res = check(sd, acct=None)
    assert res.returncode == 0, res.stderr
    assert "single-user mode" in res.stdout and res.stderr == ""


@pytest.mark.skipif(not H.IS_ROOT, reason="needs root (CI runs as root)")
def test_root_checks_a_socket_owner_it_cannot_judge(sd):
    """owner= of a unix listener must be the daemon's account in
    single-user mode; root checking the file does not know that account,
    so it does not hold root's uid against it.  The account itself still
    gets the error for another owner."""
    conf = sd.root / "owner.conf"
    conf.write_text(sd.conf.read_text() +
                    f"listen lmtp unix:{sd.run_dir}/o.sock owner={sd.run_as.name}\n")
    H.chown_tree(conf, sd.run_as)
    res = check(sd, conf, acct=None)
    assert (res.returncode, res.stderr) == (0, ""), res.stderr
    conf.write_text(sd.conf.read_text() + f"listen lmtp unix:{sd.run_dir}/o.sock owner=root\n")
    res = check(sd, conf)
    assert res.returncode == 1 and "owner=root needs the daemon started as root" in res.stderr


@pytest.mark.skipif(not H.IS_ROOT, reason="needs root (CI runs as root)")
def test_root_checks_the_demo_config(tmp_path):
    """scripts/demo.sh's own files, set up as it does, checked by root (the
    demo runs the daemon as nobody): ok, as for nobody."""
    demo = tmp_path / "demo"
    (demo / "db-src").mkdir(parents=True)
    (demo / "db").mkdir()
    conf = demo / "mailprocd.conf"
    conf.write_text((ROOT / "etc/demo/mailprocd.conf.in").read_text()
                    .replace("@DEMO_DIR@", str(demo)))
    for f in ("rules", "uid"):
        (demo / "db-src" / f).write_text((ROOT / "etc/demo" / f).read_text())
    res = subprocess.run([str(H.mailprocctl_bin()), "-f", str(conf), "db", "compile"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([str(H.mailprocd_bin()), "-n", "-f", str(conf)],
                         capture_output=True, text=True)
    assert (res.returncode, res.stderr) == (0, ""), res.stderr
    assert "single-user mode" in res.stdout


@pytest.mark.skipif(not H.IS_ROOT, reason="needs root (CI runs as root)")
def test_root_starting_a_single_user_file_still_refuses(sd):
    res = subprocess.run([str(H.mailprocd_bin()), "-d", "-f", str(sd.conf)],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert "needs `user`" in res.stderr


def test_a_file_with_user_is_checked_for_root_mode_whoever_checks(sd):
    conf = sd.root / "rootmode.conf"
    text = re.sub(r"(?m)^home_base .*\n", "", sd.conf.read_text())
    conf.write_text(text + "user no_such_account_mpt\n")
    H.chown_tree(conf, sd.run_as)
    n = len(text.splitlines()) + 1
    for who in (sd.run_as, None) if H.IS_ROOT else (None,):
        res = check(sd, conf, acct=who)
        assert res.returncode == 1
        assert res.stderr == f"{conf}:{n}: user: unknown account\n"


def test_setting_errors_found_after_parsing_carry_their_line(sd):
    conf = sd.root / "bad.conf"
    text = re.sub(r"(?m)^default_delivery .*\n", "", sd.conf.read_text())
    conf.write_text(text + "# a comment\ndefault_delivery forward x@example.test\n")
    H.chown_tree(conf, sd.run_as)
    n = len(text.splitlines()) + 2
    res = check(sd, conf)
    assert res.returncode == 1
    assert res.stderr == (f"{conf}:{n}: default_delivery: must be maildir, "
                          "mbox or pipe\n")


def test_uid_without_a_value_says_so(sd):
    conf = sd.root / "bad.conf"
    text = re.sub(r"(?m)^default_delivery .*\n", "", sd.conf.read_text())
    conf.write_text(text + "default_delivery maildir ~/Maildir/ uid=\n")
    H.chown_tree(conf, sd.run_as)
    res = check(sd, conf)
    assert res.returncode == 1
    assert res.stderr == (f"{conf}:{len(text.splitlines()) + 1}: default_delivery: "
                          "uid= needs a value: uid=NAME or uid=NUMBER\n")


def test_user_and_home_base_name_both_lines(sd):
    conf = sd.root / "bad.conf"
    text = sd.conf.read_text()
    hb = next(i for i, l in enumerate(text.splitlines(), 1) if l.startswith("home_base "))
    conf.write_text(text + "user nobody\n# the last line\n")
    H.chown_tree(conf, sd.run_as)
    n = len(text.splitlines()) + 1
    res = check(sd, conf)
    assert res.returncode == 1
    assert res.stderr == (f"{conf}:{n}: home_base (single-user mode, line {hb}) and "
                          f"user (root mode, line {n}) exclude each other\n")


def test_reload_error_after_parsing_carries_its_line(tmp_path, run_as):
    """SIGHUP with a default_delivery the rules parser refuses: logged as
    file:line like -n says it, and the running configuration stays."""
    import signal
    d = H.Daemon(tmp_path / "d", run_as=run_as)
    d.compile()
    d.start()
    try:
        text = re.sub(r"(?m)^default_delivery .*\n", "", d.conf.read_text())
        d.conf.write_text(text + "default_delivery discard\n")
        n = len(text.splitlines()) + 1
        os.kill(d.pid, signal.SIGHUP)
        d.wait_log(re.escape(f"{d.conf}:{n}: default_delivery: must be maildir, mbox or pipe"))
        d.wait_log("keeping the running configuration")
        m = send(d, "alice@example.test")
        H.wait_maildir(d.maildir("alice"), H.mid(m))
    finally:
        d.stop()


def test_mailmond_user_error_carries_its_line(tmp_path):
    conf = tmp_path / "mailmond.conf"
    conf.write_text(
        "# probes\n"
        "probe local smtp:127.0.0.1:25 to mon@example.test maildir /var/tmp/m/\n"
        "user no_such_account_mpt\n"
        "interval 60s\n")
    res = subprocess.run([str(mailmond_bin()), "-n", "-f", str(conf)],
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr == f'{conf}:3: user: unknown account "no_such_account_mpt"\n'
