"""test_debian_package.py - the Debian package (debian/), built, installed,
run and purged on this host, as root.

Once per module, `dpkg-buildpackage -b -us -uc` with
DEB_BUILD_OPTIONS=nocheck builds mailprocd_VERSION_ARCH.deb from a copy of
the source tree in a temp dir (the checkout is not touched; the build
compiles everything again: 12-20 s of the module's 15-23 s here).  Then `dpkg -i`
installs it, the installed `mailprocd -n` passes the installed default
config, the installed daemon (not under systemd: the test starts
/usr/sbin/mailprocd -d itself with the installed config, unchanged) takes
one message over its unix socket with smtplib and delivers it into a
maildir, and `dpkg --purge` removes the accounts, directories and config it
made, never the delivered mail.  A second install shows that a purge keeps
a queue that still holds mail.  The host is left as it was: the package
purged (also when a test fails).

Needs root, dpkg-buildpackage and debhelper (scripts/setup.sh), and a host
where systemd is not running (it would start the packaged service).
"""

import grp
import json
import os
import pwd
import secrets
import shutil
import smtplib
import stat
import subprocess
from pathlib import Path

import pytest

import mpharness as H

# The package build compiles the whole tree again (time budget): the
# normal pass only; what is tested does not depend on the sanitizers.
pytestmark = [
    H.normal_pass_only,
    pytest.mark.skipif(not H.IS_ROOT, reason="dpkg -i and --purge need root"),
    pytest.mark.skipif(shutil.which("dpkg-buildpackage") is None or shutil.which("dh") is None,
                       reason="no dpkg-buildpackage/debhelper (scripts/setup.sh installs them)"),
    pytest.mark.skipif(Path("/run/systemd/system").exists(),
                       reason="systemd runs here: installing would start the packaged service"),
]

PACKAGE = "mailprocd"
ACCOUNTS = ["_mailprocd", "_mailmond"]
CONF = Path("/etc/mailprocd/mailprocd.conf")
SOCKET = Path("/run/mailprocd/lmtp")
PIDFILE = Path("/run/mailprocd/mailprocd.pid")
QUEUE = Path("/var/spool/mailprocd")
# Everything the package made outside its own file list.
MADE_DIRS = [QUEUE, Path("/var/lib/mailprocd"), Path("/run/mailprocd"),
             Path("/var/lib/mailmond"), Path("/etc/mailprocd")]
WANTS = Path("/etc/systemd/system/multi-user.target.wants")

# Left out of the copy: builds, caches, and a package build made in place.
TOP_SKIP = {".git", "build", "demo-run", ".pytest_cache"}
DEBIAN_SKIP = {".debhelper", PACKAGE, "tmp", "files", "debhelper-build-stamp"}


def run(argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)


def dpkg_status():
    res = run(["dpkg-query", "-W", "-f=${db:Status-Status}", PACKAGE])
    return res.stdout if res.returncode == 0 else "not-installed"


def account_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        pass
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def copy_ignore(src, names):
    src = Path(src)
    if src == H.REPO:
        return [n for n in names if n in TOP_SKIP or n.startswith(("build-", "obj-"))]
    if src == H.REPO / "debian":
        return [n for n in names if n in DEBIAN_SKIP or n.endswith((".substvars", ".log", ".debhelper"))]
    return [n for n in names if n == "__pycache__"]


def meson_version():
    res = run(["meson", "introspect", "--projectinfo", H.REPO / "meson.build"])
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["version"]


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    """The built package: {deb, src, log}."""
    top = tmp_path_factory.mktemp("debbuild")
    src = top / "mailprocd"
    shutil.copytree(H.REPO, src, ignore=copy_ignore, symlinks=True)
    env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck parallel=2 noautodbgsym")
    res = run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=src, env=env)
    log = res.stdout + res.stderr
    assert res.returncode == 0, "dpkg-buildpackage failed:\n" + log[-6000:]
    arch = run(["dpkg-architecture", "-qDEB_HOST_ARCH"]).stdout.strip()
    path = top / f"{PACKAGE}_{meson_version()}_{arch}.deb"
    assert path.is_file(), sorted(p.name for p in top.iterdir())
    return {"deb": path, "src": src, "log": log}


def check_clean_host():
    """The test installs and purges; it must not touch a host that has the
    package or its accounts already (a leftover of a killed run: purge it
    by hand)."""
    assert dpkg_status() == "not-installed", f"{PACKAGE} is installed on this host"
    for name in ACCOUNTS:
        assert not account_exists(name), f"the account {name} exists on this host"
    for d in MADE_DIRS:
        assert not d.exists(), f"{d} exists on this host"


def install(deb_path):
    check_clean_host()
    res = run(["dpkg", "-i", deb_path])
    assert res.returncode == 0, f"dpkg -i failed:\n{res.stdout}\n{res.stderr}"
    return res


def purge():
    return run(["dpkg", "--purge", PACKAGE])


def stop_daemon(proc):
    """SIGTERM to the master; it must stop cleanly."""
    proc.terminate()
    assert proc.wait(timeout=H.DEADLINE) == 0


def kill_daemon(proc):
    if proc is not None and proc.poll() is None:
        for pid in H.descendants(proc.pid):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        proc.kill()
        proc.wait()


def restore_host():
    """After a test, whatever happened: the package purged, and what it
    made and a purge left removed (none of it was there before the
    install: check_clean_host), so that a failure does not stay behind."""
    if dpkg_status() != "not-installed":
        purge()
    for d in MADE_DIRS:
        shutil.rmtree(d, ignore_errors=True)
    for name in ACCOUNTS:
        if account_exists(name):
            run(["userdel", name])
        if account_exists(name):
            run(["groupdel", name])


@pytest.fixture(scope="module")
def installed(deb):
    """The package installed once for the module; purged at the end if a
    test did not (the host is left as it was)."""
    res = install(deb["deb"])
    try:
        yield res
    finally:
        restore_host()


def start_daemon(tmp_path):
    """The installed daemon with the installed config, in the foreground
    (no systemd here): returns the process once its socket answers."""
    log = open(tmp_path / "mailprocd.log", "w+")
    proc = subprocess.Popen(["/usr/sbin/mailprocd", "-d"], stdout=log, stderr=subprocess.STDOUT)
    H.wait_for(lambda: PIDFILE.exists() or proc.poll() is not None, what="the pid file")
    assert proc.poll() is None, (tmp_path / "mailprocd.log").read_text()
    assert PIDFILE.read_text() == f"{proc.pid}\n"
    H.wait_for(SOCKET.exists, what=f"the socket {SOCKET}")
    return proc


def lmtp_send(rcpts, msg):
    client = smtplib.LMTP(str(SOCKET), timeout=H.REPLY_TIMEOUT)
    try:
        return client.sendmail("sender@example.test", rcpts, msg)
    finally:
        client.quit()


def test_package_builds_without_the_tests_packages(deb):
    """nocheck: the unit tests are neither built nor run, and the build
    dependencies left under the nocheck profile name no test package."""
    builddirs = list(deb["src"].glob("obj-*"))
    assert len(builddirs) == 1, builddirs
    assert (builddirs[0] / "build.ninja").is_file()
    assert not (builddirs[0] / "tests" / "unit").exists()
    assert "meson test" not in deb["log"] and "Ok:" not in deb["log"]
    res = run(["perl", "-MDpkg::Control::Info", "-MDpkg::Deps", "-e",
               "my $bd = Dpkg::Control::Info->new('debian/control')->get_source->{'Build-Depends'};"
               "print deps_parse($bd, build_dep => 1, reduce_profiles => 1,"
               " build_profiles => ['nocheck'])->output(), qq(\\n);"], cwd=deb["src"])
    assert res.returncode == 0, res.stderr
    assert "debhelper-compat" in res.stdout and "cmocka" not in res.stdout, res.stdout
    full = run(["perl", "-MDpkg::Control::Info", "-MDpkg::Deps", "-e",
                "print Dpkg::Control::Info->new('debian/control')->get_source->{'Build-Depends'};"],
               cwd=deb["src"])
    assert "libcmocka-dev <!nocheck>" in full.stdout


def test_package_contents(deb, tmp_path):
    """The programs, units and snippets where Debian 12 wants them, the
    default config and database sources as conffiles, and the maintainer
    scripts that create the accounts and directories."""
    files = run(["dpkg-deb", "-c", deb["deb"]]).stdout
    paths = {line.split()[-1].lstrip(".") for line in files.splitlines()}
    for p in ["/usr/sbin/mailprocd", "/usr/sbin/mailprocctl", "/usr/sbin/mailmond",
              "/lib/systemd/system/mailprocd.service", "/lib/systemd/system/mailmond.service",
              "/usr/lib/sysusers.d/mailprocd.conf", "/usr/lib/tmpfiles.d/mailprocd.conf",
              "/usr/share/man/man8/mailprocd.8.gz", "/usr/share/man/man5/mailprocd.conf.5.gz",
              "/usr/share/doc/mailprocd/examples/mailprocd.conf",
              "/usr/share/doc/mailprocd/README.Debian", "/usr/share/doc/mailprocd/copyright",
              "/usr/share/doc/mailprocd/grafana/mailprocd-dashboard.json"]:
        assert p in paths, p
    ctrl = tmp_path / "control"
    assert run(["dpkg-deb", "-e", deb["deb"], ctrl]).returncode == 0
    assert (ctrl / "conffiles").read_text().split() == [
        "/etc/mailprocd/mailprocd.conf", "/etc/mailprocd/rules", "/etc/mailprocd/uid"]
    postinst = (ctrl / "postinst").read_text()
    assert "systemd-sysusers" in postinst and "mailprocd.conf" in postinst
    assert "systemd-tmpfiles" in postinst
    assert postinst.index("mailprocctl db compile") < postinst.index("deb-systemd-invoke")
    # mailmond is not started by the package, but stopped on removal
    assert "deb-systemd-invoke stop mailmond.service" in (ctrl / "prerm").read_text()


def test_install_makes_accounts_dirs_and_config(installed):
    assert dpkg_status() == "installed"
    for name in ACCOUNTS:
        pw = pwd.getpwnam(name)
        assert pw.pw_uid != 0 and pw.pw_shell == "/usr/sbin/nologin", pw
        assert grp.getgrgid(pw.pw_gid).gr_name == name
    mp = pwd.getpwnam("_mailprocd")
    mm = pwd.getpwnam("_mailmond")

    def st(p):
        s = p.stat()
        return stat.S_IMODE(s.st_mode), s.st_uid, s.st_gid

    assert st(QUEUE) == (0o700, mp.pw_uid, mp.pw_gid)
    assert st(Path("/var/lib/mailprocd/db"))[1] == 0
    assert st(Path("/run/mailprocd")) == (0o755, 0, 0)
    assert st(Path("/var/lib/mailmond"))[1:] == (mm.pw_uid, mm.pw_gid)
    # the databases are compiled, so the service can start as installed
    assert Path("/var/lib/mailprocd/db/current.mdb").exists()
    # nothing that takes a port: mailprocd listens on unix sockets only,
    # mailmond (metrics port, probes) is not enabled
    listens = [line.split() for line in CONF.read_text().splitlines()
               if line.split()[:1] == ["listen"]]
    assert listens and all(w[2].startswith("unix:") for w in listens), listens
    assert (WANTS / "mailprocd.service").is_symlink()
    assert not (WANTS / "mailmond.service").exists()


def test_installed_mailprocd_n_passes_the_default_config(installed):
    res = run(["/usr/sbin/mailprocd", "-n"])
    assert res.returncode == 0 and res.stdout == f"{CONF}: ok (root mode: start it as root)\n", \
        res.stdout + res.stderr


def test_installed_daemon_delivers_into_a_maildir(installed, tmp_path):
    """The installed daemon and config as installed; only the database
    sources get the recipient (as an admin does: uid, then db compile)."""
    home = tmp_path / "home"
    acct = H.create_user("mpdeb", home=home)
    proc = None
    uid_src = Path("/etc/mailprocd/uid")
    shipped = uid_src.read_text()
    try:
        home.mkdir()
        H.chown_tree(home, acct)
        H.make_traversable(home)
        uid_src.write_text(shipped + f"rcpt@example.test {acct.name}\n")
        res = run(["/usr/sbin/mailprocctl", "db", "compile"])
        assert res.returncode == 0, res.stderr
        proc = start_daemon(tmp_path)
        sock = SOCKET.stat()
        assert stat.S_IMODE(sock.st_mode) == 0o600 and sock.st_uid == 0
        marker = "installed-" + secrets.token_hex(6)
        msg = f"Subject: {marker}\r\nMessage-ID: <{marker}>\r\n\r\nfrom the package\r\n".encode()
        assert lmtp_send(["rcpt@example.test"], msg) == {}
        got = H.wait_maildir(home / "Maildir", marker)
        assert len(got) == 1
        stop_daemon(proc)
        proc = None
        assert not PIDFILE.exists()
    finally:
        kill_daemon(proc)
        uid_src.write_text(shipped)
        # the delivered mail stays for the purge test; the account goes
        H.delete_user(acct)


def test_purge_removes_what_it_made_not_the_mail(installed, tmp_path_factory):
    maildirs = list(Path(tmp_path_factory.getbasetemp()).glob("test_installed_daemon*/home/Maildir"))
    res = purge()
    assert res.returncode == 0, res.stdout + res.stderr
    assert dpkg_status() == "not-installed"
    for name in ACCOUNTS:
        assert not account_exists(name), name
    for d in MADE_DIRS:
        assert not d.exists(), d
    for p in [Path("/usr/sbin/mailprocd"), Path("/usr/lib/sysusers.d/mailprocd.conf"),
              Path("/lib/systemd/system/mailprocd.service"), WANTS / "mailprocd.service"]:
        assert not p.exists() and not p.is_symlink(), p
    # the mail delivered by the previous test is the user's
    for md in maildirs:
        assert H.maildir_messages(md), md


def test_purge_keeps_a_queue_that_holds_mail(deb, tmp_path):
    """Mail for the postmaster without an account waits in the queue (root
    mode runs no worker as root); purge keeps it with its owner _mailprocd,
    removes the rest, and says so.  A source file the administrator added
    to /etc/mailprocd stays too."""
    install(deb["deb"])
    proc = None
    try:
        proc = start_daemon(tmp_path)
        marker = "queued-" + secrets.token_hex(6)
        msg = f"Subject: {marker}\r\n\r\nfor the postmaster\r\n".encode()
        assert lmtp_send(["postmaster"], msg) == {}
        stop_daemon(proc)
        proc = None
        queued = [p for p in QUEUE.rglob("*") if p.is_file()]
        assert len(queued) == 1 and marker.encode() in queued[0].read_bytes()
        owner = queued[0].stat().st_uid
        admins = Path("/etc/mailprocd/lists")
        admins.write_text("# the administrator's own lists\n")

        res = purge()
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"{QUEUE} still holds undelivered mail" in res.stderr
        assert admins.read_text() == "# the administrator's own lists\n"
        assert "/etc/mailprocd kept" in res.stderr and "lists" in res.stderr
        assert not Path("/etc/mailprocd/mailprocd.conf").exists()
        assert dpkg_status() == "not-installed"
        assert queued[0].read_bytes().count(marker.encode()) == 1
        assert pwd.getpwnam("_mailprocd").pw_uid == owner
        assert not account_exists("_mailmond")
        for d in MADE_DIRS:
            assert d in (QUEUE, admins.parent) or not d.exists(), d
    finally:
        kill_daemon(proc)
        restore_host()
