"""test_install.py - `meson install --destdir` from the build under test
(MAILPROCD_BUILD; it works from a sanitizer build too, but runs in the
normal pass only): the programs in sbin
and runnable, every man page of docs/ in its section, the example configs,
dashboard and LICENSE under the docdir, the systemd units (checked by
`systemd-analyze verify` and for the settings the daemon depends on), the
sysusers.d and tmpfiles.d snippets applied by the real systemd-sysusers and
systemd-tmpfiles to a scratch root, and the installed example config passed
by the installed `mailprocd -n` in root mode.

Installing into a scratch tree needs no root; applying the snippets
(chown) and the root-mode check do, and are skipped otherwise.
"""

import json
import os
import re
import shutil
import smtplib
import stat
import subprocess
from pathlib import Path

import pytest

import mpharness as H

PROGRAMS = ["mailprocd", "mailmond", "mailprocctl"]
needs_root = pytest.mark.skipif(not H.IS_ROOT, reason="needs root (chown, root mode)")
# What is installed does not depend on the build's sanitizers, and the
# sanitized pass spends about 30 s here: the normal pass alone (time budget).
pytestmark = H.normal_pass_only


def introspect(what):
    res = subprocess.run(["meson", "introspect", str(H.build_dir()), what],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    """The installed tree: dest, and the configured directories as paths
    inside it."""
    dest = tmp_path_factory.mktemp("destdir")
    res = subprocess.run(["meson", "install", "-C", str(H.build_dir()), "--no-rebuild",
                          "--quiet", "--destdir", str(dest)],
                         capture_output=True, text=True)
    assert res.returncode == 0, f"meson install failed:\n{res.stdout}\n{res.stderr}"
    opts = {o["name"]: o["value"] for o in introspect("--buildoptions")}
    prefix = Path(opts["prefix"])

    def inside(p):
        p = Path(p) if Path(p).is_absolute() else prefix / p
        return dest / p.relative_to("/")

    pc = subprocess.run(["pkg-config", "--variable=systemdsystemunitdir", "systemd"],
                        capture_output=True, text=True).stdout.strip()
    unitdir = opts["systemdsystemunitdir"] or pc or "/lib/systemd/system"
    return {
        "dest": dest,
        "prefix": prefix,
        "version": introspect("--projectinfo")["version"],
        "sbin": inside(opts["sbindir"]),
        "bin": inside(opts["bindir"]),
        "sbin_real": prefix / opts["sbindir"],
        "man": inside(opts["mandir"]),
        "doc": inside(Path(opts["datadir"]) / "doc" / "mailprocd"),
        "units": inside(unitdir),
        "sysusers": inside(opts["sysusersdir"] or "/usr/lib/sysusers.d") / "mailprocd.conf",
        "tmpfiles": inside(opts["tmpfilesdir"] or "/usr/lib/tmpfiles.d") / "mailprocd.conf",
    }


def conf_values(path, key):
    """The values of key in a mailprocd/mailmond config (comments off)."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].split()
        if line and line[0] == key:
            out.append(line[1:])
    return out


def unit_settings(path):
    """{(section, key): [values]} of a unit file; a small parser, enough for
    what systemd-analyze does not judge (which settings are chosen)."""
    settings, section = {}, None
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault((section, key.strip()), []).append(value.strip())
    return settings


def test_programs_in_sbin_and_runnable(inst):
    for name in PROGRAMS:
        path = inst["sbin"] / name
        assert path.is_file() and os.access(path, os.X_OK), f"{name} not in sbin"
        assert not (inst["bin"] / name).exists(), f"{name} also in bin"
        res = subprocess.run([str(path), "-V"], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        assert res.stdout == f"{name} {inst['version']}\n"


def test_every_man_page_in_its_section(inst):
    pages = sorted(p for p in (H.REPO / "docs").iterdir() if re.search(r"\.[1-9]$", p.name))
    assert pages
    installed = sorted(p.relative_to(inst["man"]) for p in inst["man"].rglob("*") if p.is_file())
    assert installed == sorted(Path(f"man{p.suffix[1:]}") / p.name for p in pages)
    for p in pages:
        assert (inst["man"] / f"man{p.suffix[1:]}" / p.name).read_bytes() == p.read_bytes()


def test_examples_dashboard_and_license_under_docdir(inst):
    doc = inst["doc"]
    for name in ["mailprocd.conf", "mailmond.conf"]:
        assert (doc / "examples" / name).read_bytes() == (H.REPO / "etc" / name).read_bytes()
    for dash in (H.REPO / "docs" / "grafana").glob("*.json"):
        assert (doc / "grafana" / dash.name).read_bytes() == dash.read_bytes()
    lic = (doc / "LICENSE").read_text()
    assert lic == (H.REPO / "LICENSE").read_text()
    assert "BSD 2-Clause" in lic and "Copyright (c) 2026 the mailprocd authors" in lic
    # nothing into /etc: an install must not overwrite an admin's config
    assert not (inst["dest"] / "etc").exists() and not (inst["dest"] / "usr/local/etc").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_units_pass_systemd_analyze_verify(inst, tmp_path):
    """verify needs the Exec programs where the unit says: the copies point
    into the destdir (the only change).  It exits 0 even on unknown keys or
    bad values, so any output fails too."""
    copies = []
    for unit in ["mailprocd.service", "mailmond.service"]:
        text = (inst["units"] / unit).read_text()
        assert str(inst["sbin_real"]) + "/" in text
        copy = tmp_path / unit
        copy.write_text(text.replace(str(inst["sbin_real"]) + "/", str(inst["sbin"]) + "/"))
        copies.append(str(copy))
        for page in re.findall(r"man:([\w.]+)\((\d)\)", text):
            assert (inst["man"] / f"man{page[1]}" / f"{page[0]}.{page[1]}").is_file(), page
    res = subprocess.run(["systemd-analyze", "verify", "--man=no"] + copies,
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0 and res.stdout + res.stderr == "", res.stdout + res.stderr


def test_mailprocd_unit_fits_the_daemon(inst):
    u = unit_settings(inst["units"] / "mailprocd.service")
    sbin = inst["sbin_real"]
    # in the foreground, watched directly; checked before start and reload
    assert u[("Service", "Type")] == ["exec"]
    assert u[("Service", "ExecStart")] == [f"{sbin}/mailprocd -d"]
    assert u[("Service", "ExecStartPre")] == [f"{sbin}/mailprocd -n"]
    assert u[("Service", "ExecReload")] == [f"{sbin}/mailprocd -n", "/bin/kill -HUP $MAINPID"]
    assert ("Service", "PIDFile") not in u
    # the master alone gets SIGTERM (it lets deliveries finish)
    assert u[("Service", "KillMode")] == ["mixed"]
    # root-started, privilege-separating, workers write homes and run
    # users' commands (setgid postdrop among them)
    for key in ["User", "DynamicUser", "CapabilityBoundingSet", "SystemCallFilter"]:
        assert ("Service", key) not in u, key
    assert u.get(("Service", "ProtectHome"), ["no"]) == ["no"]
    assert u.get(("Service", "NoNewPrivileges"), ["no"]) == ["no"]
    assert u.get(("Service", "ProtectSystem"), ["no"])[-1] in ("no", "yes", "full")
    assert ("Service", "PrivateUsers") not in u
    # the hard limit covers the example's max_sessions and listeners
    # (mailprocd(8), OPEN FILES); the soft one stays for workers' programs
    example = inst["doc"] / "examples" / "mailprocd.conf"
    sessions = int(conf_values(example, "max_sessions")[0][0])
    needed = 2 * sessions + len(conf_values(example, "listen")) + 64
    soft, _, hard = u[("Service", "LimitNOFILE")][0].partition(":")
    assert int(soft) == 1024 and int(hard) >= needed, (soft, hard, needed)
    assert u[("Install", "WantedBy")] == ["multi-user.target"]


def test_mailmond_unit_runs_as_its_account(inst):
    u = unit_settings(inst["units"] / "mailmond.service")
    example = inst["doc"] / "examples" / "mailmond.conf"
    account = conf_values(example, "user")[0][0]
    assert u[("Service", "User")] == [account]
    assert u[("Service", "ExecStart")] == [f"{inst['sbin_real']}/mailmond -d"]
    # the probes' maildir is writable under ProtectSystem=strict
    writable = " ".join(u[("Service", "ReadWritePaths")]).split()
    for probe in conf_values(example, "probe"):
        maildir = probe[probe.index("maildir") + 1]
        assert any(maildir.startswith(w.rstrip("/") + "/") for w in writable), maildir


def stat_of(path):
    st = path.stat()
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


@needs_root
def test_sysusers_and_tmpfiles_make_what_the_daemon_expects(inst, tmp_path):
    """The real systemd-sysusers and systemd-tmpfiles on a scratch root: the
    accounts the example configs name, and the example config's queue, db
    and run dirs with the owners and modes the daemon creates and checks
    (queue 0700 to `user`, databases root's and not writable by others)."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    res = subprocess.run(["systemd-sysusers", f"--root={root}", str(inst["sysusers"])],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    accounts = {}
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        accounts[f[0]] = (int(f[2]), int(f[3]), f[6])
    example = inst["doc"] / "examples" / "mailprocd.conf"
    user = conf_values(example, "user")[0][0]
    mm_user = conf_values(inst["doc"] / "examples" / "mailmond.conf", "user")[0][0]
    for name in (user, mm_user):
        assert name in accounts and accounts[name][0] != 0
        assert accounts[name][2] == "/usr/sbin/nologin"
    res = subprocess.run(["systemd-tmpfiles", "--create", f"--root={root}", str(inst["tmpfiles"])],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    uid, gid, _ = accounts[user]

    def at(key):
        return root / conf_values(example, key)[0][0].lstrip("/")

    assert stat_of(at("queue_dir")) == (0o700, uid, gid)
    db_mode, db_uid, _ = stat_of(at("db_dir"))
    assert db_uid == 0 and db_mode & 0o022 == 0
    assert stat_of(at("run_dir")) == (0o755, 0, 0)
    mm_uid, mm_gid, _ = accounts[mm_user]
    for probe in conf_values(inst["doc"] / "examples" / "mailmond.conf", "probe"):
        maildir = Path(probe[probe.index("maildir") + 1])
        assert stat_of(root / maildir.parent.relative_to("/"))[1:] == (mm_uid, mm_gid)


@needs_root
def test_installed_example_config_passes_check(inst, tmp_path):
    """The installed mailprocd -n, in root mode, on the installed example:
    only `user` (a throwaway account instead of _mailprocd, which this host
    need not have) and the database dirs (scratch ones, compiled by the
    installed mailprocctl) are changed."""
    acct = H.create_user("mpinst")
    try:
        src, db = tmp_path / "src", tmp_path / "db"
        src.mkdir()
        (src / "uid").write_text(f"postmaster@example.test {acct.name}\n")
        text = (inst["doc"] / "examples" / "mailprocd.conf").read_text()
        changed = []
        for key, value in [("user", acct.name), ("db_dir", db), ("db_source_dir", src)]:
            text, n = re.subn(rf"^{key}\s+\S+", f"{key} {value}", text, flags=re.M)
            changed.append(n)
        assert changed == [1, 1, 1]
        conf = tmp_path / "mailprocd.conf"
        conf.write_text(text)
        res = subprocess.run([str(inst["sbin"] / "mailprocctl"), "-f", str(conf), "db", "compile"],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        res = subprocess.run([str(inst["sbin"] / "mailprocd"), "-n", "-f", str(conf)],
                             capture_output=True, text=True)
        assert res.returncode == 0 and res.stdout == f"{conf}: ok (root mode: start it as root)\n", \
            res.stdout + res.stderr
    finally:
        H.delete_user(acct)


@needs_root
def test_daemon_runs_from_the_install_on_the_tmpfiles_tree(inst, tmp_path):
    """The installed mailprocd, root mode, on the directories the real
    systemd-tmpfiles made from the installed snippet (in a scratch root
    where _mailprocd is a throwaway account): it starts, writes its pid
    file into run_dir, the receiver (as `user`) queues a message sent over
    LMTP, the owners and modes are the daemon's own (it had nothing to fix),
    and SIGTERM stops it cleanly."""
    acct = H.create_user("mpinst")
    proc = None
    try:
        root = tmp_path / "root"
        (root / "etc").mkdir(parents=True)
        (root / "etc/passwd").write_text(
            f"_mailprocd:x:{acct.uid}:{acct.gid}::/nonexistent:/usr/sbin/nologin\n")
        (root / "etc/group").write_text(f"_mailprocd:x:{acct.gid}:\n")
        for tool in (["systemd-sysusers", f"--root={root}", str(inst["sysusers"])],
                     ["systemd-tmpfiles", "--create", f"--root={root}", str(inst["tmpfiles"])]):
            res = subprocess.run(tool, capture_output=True, text=True)
            assert res.returncode == 0, res.stderr
        H.make_traversable(root)
        queue, db, run = (root / "var/spool/mailprocd", root / "var/lib/mailprocd/db",
                          root / "run/mailprocd")
        made = {p: stat_of(p) for p in (queue, db, run)}
        assert made[queue] == (0o700, acct.uid, acct.gid)

        src = tmp_path / "src"
        src.mkdir()
        (src / "uid").write_text(f"postmaster@example.test {acct.name}\n")
        port = H.free_ports(1)[0]
        text = (inst["doc"] / "examples" / "mailprocd.conf").read_text()
        text = re.sub(r"^listen\s.*\n", "", text, flags=re.M)
        for key, value in [("user", acct.name), ("queue_dir", queue), ("db_dir", db),
                           ("db_source_dir", src), ("run_dir", run)]:
            text, n = re.subn(rf"^{key}\s+\S+", f"{key} {value}", text, flags=re.M)
            assert n == 1, key
        conf = tmp_path / "mailprocd.conf"
        conf.write_text(text + f"listen lmtp 127.0.0.1:{port}\n")
        res = subprocess.run([str(inst["sbin"] / "mailprocctl"), "-f", str(conf), "db", "compile"],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr

        log = open(tmp_path / "daemon.log", "w+")
        proc = subprocess.Popen([str(inst["sbin"] / "mailprocd"), "-d", "-f", str(conf)],
                                stdout=log, stderr=subprocess.STDOUT)
        H.wait_for(lambda: (run / "mailprocd.pid").exists() or proc.poll() is not None,
                   what="the pid file")
        assert proc.poll() is None, (tmp_path / "daemon.log").read_text()
        assert (run / "mailprocd.pid").read_text() == f"{proc.pid}\n"
        client = H.wait_for(lambda: _lmtp(port), what="the LMTP listener")
        try:
            refused = client.sendmail("sender@example.test", ["postmaster@example.test"],
                                      b"Subject: installed\r\n\r\nfrom the install\r\n")
            assert refused == {}
        finally:
            client.quit()
        for p, before in made.items():
            assert stat_of(p) == before, p
        state = stat_of(db / "state")
        assert state[1:] == (acct.uid, acct.gid) and state[0] & 0o077 == 0

        proc.send_signal(15)
        assert proc.wait(timeout=H.DEADLINE) == 0, (tmp_path / "daemon.log").read_text()
        proc = None
        out = (tmp_path / "daemon.log").read_text()
        assert not [l for l in out.splitlines() if any(s in l for s in H.SANITIZER_PATTERNS)], out
    finally:
        if proc is not None:
            for pid in H.descendants(proc.pid):
                os.kill(pid, 9)
            proc.kill()
            proc.wait()
        H.delete_user(acct)


def _lmtp(port):
    try:
        c = smtplib.LMTP("127.0.0.1", port, timeout=H.REPLY_TIMEOUT)
    except OSError:
        return None
    return c
