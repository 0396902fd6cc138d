"""test_members.py - members-only mailing lists, checked before the queue,
with `members_source file` (the `members` source compiled into the main
database): against the real daemon over real sockets, a member's post is
accepted, a non-member's refused with 550 5.7.1 at RCPT over SMTP but
accepted over LMTP (no backscatter), +detail and case are ignored, the
list manager's own addresses and lists without members-only are open to
anyone, a list without members data lets mail through and logs it, a
recompiled members source is seen at once, and the policy service (and
`mailprocctl policy check`) answers the same."""

import os
import subprocess

import pytest

import mpharness as H
from mpharness import PolicyConn, rcpt_request

LISTS = """
devs@lists.example.test      mailman3  lmtp:127.0.0.1:{port}   members-only
announce@lists.example.test  mailman3  lmtp:127.0.0.1:{port}
nodata@lists.example.test    mailman3  lmtp:127.0.0.1:{port}   members-only
"""

MEMBERS = """
# the members of devs: a first line, then indented lines
devs@lists.example.test   alice@example.org
    Bob+lists@Example.ORG
    carol@example.net
announce@lists.example.test   alice@example.org
"""

MEMBER = "alice@example.org"
STRANGER = "mallory@example.com"
REFUSED = "550 5.7.1"


def write_members(d, text):
    p = d.src_dir / "members"
    p.write_text(text)
    H.chown_tree(d.src_dir, d.run_as)


@pytest.fixture(scope="module")
def d(tmp_path_factory, run_as):
    [sink_port] = H.free_ports(1)   # nothing listens: RCPT-time checks only
    dm = H.PolicyDaemon(tmp_path_factory.mktemp("members"), run_as=run_as,
                        settings={"members_source": "file"})
    dm.write_sources(lists=LISTS.format(port=sink_port))
    write_members(dm, MEMBERS)
    dm.compile()
    dm.start()
    yield dm
    dm.stop()


def rcpt(d, sender, rcpt_addr, lmtp=False):
    """The reply to RCPT TO:<rcpt_addr> after MAIL FROM:<sender>."""
    with H.Conn(d.lmtp_port if lmtp else d.smtp_port) as c:
        c.hello(lmtp=lmtp)
        H.expect(c.cmd(f"MAIL FROM:<{sender}>"), 250)
        r = c.cmd(f"RCPT TO:<{rcpt_addr}>")
        c.cmd("QUIT")
        return r


def policy(d, sender, recipient):
    with PolicyConn(d.policy_port) as c:
        return c.ask(rcpt_request(recipient, sender=sender))


def test_member_post_accepted_and_queued(d):
    with H.Conn(d.smtp_port) as c:
        c.hello()
        msg = H.make_message(subject="a post from a member")
        rr, final = H.transaction(c, ["devs@lists.example.test"], msg, sender=MEMBER)
        H.expect(rr[0], 250)
        H.expect(final[0], 250)


def test_non_member_refused_over_smtp(d):
    r = rcpt(d, STRANGER, "devs@lists.example.test")
    H.expect(r, 550, "5.7.1")
    assert "only members may post" in r.text
    d.wait_log(r"<devs@lists\.example\.test> refused: <mallory@example\.com> is no member")


def test_null_sender_refused_over_smtp(d):
    H.expect(rcpt(d, "", "devs@lists.example.test"), 550, "5.7.1")


def test_non_member_accepted_over_lmtp(d):
    """The MTA in front would bounce a refusal to a perhaps forged sender."""
    H.expect(rcpt(d, STRANGER, "devs@lists.example.test", lmtp=True), 250)


@pytest.mark.parametrize("sender", ["ALICE@Example.Org", "alice+news@example.org",
                                    "bob@example.org", "BOB+other@example.org"])
def test_detail_and_case_ignored(d, sender):
    H.expect(rcpt(d, sender, "devs@lists.example.test"), 250)


def test_detail_and_case_of_the_list_address_ignored(d):
    H.expect(rcpt(d, STRANGER, "DEVS@Lists.Example.Test"), 550, "5.7.1")
    H.expect(rcpt(d, MEMBER, "DEVS@Lists.Example.Test"), 250)


@pytest.mark.parametrize("local", ["devs-request", "devs-join", "devs-leave", "devs-owner",
                                   "devs-bounces+x=y", "devs-confirm+abc"])
def test_manager_addresses_open_to_anyone(d, local):
    H.expect(rcpt(d, STRANGER, f"{local}@lists.example.test"), 250)


def test_list_without_members_only_open(d):
    H.expect(rcpt(d, STRANGER, "announce@lists.example.test"), 250)


def test_list_without_members_data_lets_through_and_logs(d):
    H.expect(rcpt(d, STRANGER, "nodata@lists.example.test"), 250)
    d.wait_log(r"<nodata@lists\.example\.test> is members-only, but no members data "
               r"for <nodata@lists\.example\.test>: accepted")


def test_policy_service_answers_the_same(d):
    assert policy(d, STRANGER, "devs@lists.example.test").startswith(REFUSED)
    assert policy(d, "Bob+x@EXAMPLE.org", "devs@lists.example.test") == "DUNNO"
    assert policy(d, STRANGER, "devs-request@lists.example.test") == "DUNNO"
    assert policy(d, STRANGER, "announce@lists.example.test") == "DUNNO"
    assert policy(d, STRANGER, "nodata@lists.example.test") == "DUNNO"


def test_policy_check_says_why(d):
    res = d.ctl("policy", "check", input=rcpt_request("devs@lists.example.test",
                                                      sender=STRANGER))
    assert res.returncode == 0, res.out
    lines = res.stdout.decode().splitlines()
    assert lines[0].startswith("action=" + REFUSED), res.out
    assert any("<mallory@example.com> is no member, owner or moderator of "
               "<devs@lists.example.test>" in ln for ln in lines), res.out
    res = d.ctl("policy", "check", input=rcpt_request("nodata@lists.example.test",
                                                      sender=STRANGER))
    assert res.stdout.decode().startswith("action=DUNNO"), res.out
    assert "no members data for <nodata@lists.example.test>: let through" in res.out


def test_recompiled_members_seen_at_the_next_lookup(d):
    newcomer = "dave@example.org"
    H.expect(rcpt(d, newcomer, "devs@lists.example.test"), 550, "5.7.1")
    try:
        write_members(d, MEMBERS.replace("    carol@example.net\n",
                                         f"    carol@example.net\n    {newcomer}\n"))
        d.compile()
        H.expect(rcpt(d, newcomer, "devs@lists.example.test"), 250)
        assert policy(d, newcomer, "devs@lists.example.test") == "DUNNO"
    finally:
        write_members(d, MEMBERS)
        d.compile()
    H.expect(rcpt(d, newcomer, "devs@lists.example.test"), 550, "5.7.1")


def test_lists_sync_needs_mailman3(d):
    res = d.ctl("lists", "sync")
    assert res.returncode == 1, res.out
    assert f"lists sync: members_source is not mailman3 in {d.conf}" in res.out, res.out
    assert not (d.db_dir / "state" / "members.mdb").exists()


@pytest.mark.parametrize("text,error", [
    ("    alice@example.org\n", "members:1: an indented line must follow a LIST@DOMAIN line"),
    ("devs@lists.example.test  not-an-address\n",
     'members:1: "not-an-address" is no address'),
    ("devs\n", 'members:1: "devs" is no list address'),
    ("devs@lists.example.test a@example.org\ndevs@lists.example.test b@example.org\n",
     "members:2: the list devs@lists.example.test is named twice"),
])
def test_members_source_errors(tmp_path, run_as, text, error):
    dm = H.Daemon(tmp_path / "bad", run_as=run_as, settings={"members_source": "file"})
    write_members(dm, text)
    res = dm.compile(expect_ok=False)
    assert res.returncode == 1, res.out
    assert error in res.out, res.out


# ------------------------------------------------ members_source mailman3
# Against a real private Mailman 3 core (mailman_instance.py), one for the
# module, started only when these tests run.

import mailman_instance  # noqa: E402

MM_LIST = "devs@lists.example.test"


@pytest.fixture(scope="module")
def mm(tmp_path_factory):
    inst = mailman_instance.MailmanInstance.module(tmp_path_factory, "members-mailman")
    list_id = inst.create_list(MM_LIST)
    inst.subscribe(list_id, "Alice+mm@Example.ORG")
    inst.subscribe(list_id, "boss@example.org", role="owner")
    inst.subscribe(list_id, "mod@example.org", role="moderator")
    inst.list_id = list_id
    yield inst
    inst.stop()


def mailman_daemon(root, run_as, mm, interval="1h", credentials=None):
    dm = H.PolicyDaemon(root, run_as=run_as, settings={
        "members_source": f"mailman3 {mm.rest_root} {credentials or mm.credentials}",
        "members_sync_interval": interval})
    dm.write_sources(lists=f"{MM_LIST}  mailman3  {mm.lmtp_dest}  members-only\n"
                           f"late@lists.example.test  mailman3  {mm.lmtp_dest}  members-only\n")
    dm.compile()
    return dm


@pytest.fixture(scope="module")
def dmm(tmp_path_factory, run_as, mm):
    dm = mailman_daemon(tmp_path_factory.mktemp("members-mm"), run_as, mm)
    dm.start()
    yield dm
    dm.stop()


def test_lists_sync_process_fetches_at_start(dmm):
    dmm.wait_log(r"mailprocd/listsync.*lists sync: 1 lists, 3 addresses from http://")
    procs = [p for p in dmm.children() if dmm.role(p) == "mailprocd/listsync"]
    assert len(procs) == 1, dmm.log_tail()
    if dmm.run_as is not None:
        assert set(H.proc_ids(procs[0])[0]) == {dmm.run_as.uid}
    H.expect(rcpt(dmm, "alice@example.org", MM_LIST), 250)
    H.expect(rcpt(dmm, "BOSS@example.org", MM_LIST), 250)
    H.expect(rcpt(dmm, "mod+x@example.org", MM_LIST), 250)
    H.expect(rcpt(dmm, STRANGER, MM_LIST), 550, "5.7.1")
    H.expect(rcpt(dmm, STRANGER, MM_LIST, lmtp=True), 250)
    assert policy(dmm, STRANGER, MM_LIST).startswith(REFUSED)
    assert policy(dmm, "alice+x@example.org", MM_LIST) == "DUNNO"


def test_member_added_through_rest_posts_after_lists_sync(dmm, mm):
    newcomer = "newcomer@example.org"
    dmm.wait_log(r"lists sync: 1 lists")
    H.expect(rcpt(dmm, newcomer, MM_LIST), 550, "5.7.1")
    mm.subscribe(mm.list_id, newcomer)
    res = dmm.ctl("lists", "sync")
    assert res.returncode == 0, res.out
    assert f"{MM_LIST}: 2 members, 1 owners, 1 moderators" in res.stdout.decode(), res.out
    H.expect(rcpt(dmm, newcomer, MM_LIST), 250)
    assert policy(dmm, newcomer, MM_LIST) == "DUNNO"


def test_lists_sync_pages_through_the_rosters(dmm, mm):
    """One entry a page: every page of the lists and of each roster."""
    mm.subscribe(mm.list_id, "pager@example.org")
    members = mm.members(mm.list_id)
    assert len(members) >= 2
    env = dict(os.environ, MAILPROCD_LISTS_PAGE_SIZE="1")
    res = subprocess.run(H.as_user(dmm.run_as, [H.mailprocctl_bin(), "-f", dmm.conf,
                                                "lists", "sync"]),
                         env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{MM_LIST}: {len(members)} members, 1 owners, 1 moderators" in res.stdout, \
        res.stdout
    assert "1 list fetched" in res.stdout, res.stdout
    for m in members:
        H.expect(rcpt(dmm, m, MM_LIST), 250)


def test_list_without_data_lets_through(dmm):
    """late@ is in the lists source but not (yet) in Mailman."""
    dmm.wait_log(r"lists sync: 1 lists")
    H.expect(rcpt(dmm, STRANGER, "late@lists.example.test"), 250)
    dmm.wait_log(r"no members data for <late@lists\.example\.test>: accepted")


def test_wrong_credentials_fail_and_keep_the_data(tmp_path, run_as, mm, dmm):
    dm = mailman_daemon(tmp_path / "badauth", run_as, mm, credentials="restadmin:wrong")
    res = dm.ctl("lists", "sync")
    assert res.returncode == 1, res.out
    assert "HTTP status 401" in res.out, res.out
    assert not (dm.db_dir / "state" / "members.mdb").exists()


def test_reload_to_members_file(tmp_path, run_as, mm):
    """SIGHUP from mailman3 to file: the lists sync process ends and is not
    started again; the receiver and the policy service read the members
    source from then on."""
    import signal
    dm = mailman_daemon(tmp_path / "reload", run_as, mm)
    write_members(dm, f"{MM_LIST}  {STRANGER}\n")
    dm.compile()
    dm.start()
    try:
        dm.wait_log(r"lists sync: 1 lists")
        [sync] = [p for p in dm.children() if dm.role(p) == "mailprocd/listsync"]
        H.expect(rcpt(dm, STRANGER, MM_LIST), 550, "5.7.1")
        dm.settings["members_source"] = "file"
        dm.conf.write_text(dm.config_text())
        H.chown_tree(dm.root, dm.run_as)
        os.kill(dm.pid, signal.SIGHUP)
        H.wait_for(lambda: not H.alive(sync), what="the lists sync process to end")
        H.wait_for(lambda: rcpt(dm, STRANGER, MM_LIST).code == 250,
                   what="the receiver to read the members source")
        H.expect(rcpt(dm, "alice@example.org", MM_LIST), 550, "5.7.1")
        assert policy(dm, "alice@example.org", MM_LIST).startswith(REFUSED)
        assert policy(dm, STRANGER, MM_LIST) == "DUNNO"
        assert [p for p in dm.children() if dm.role(p) == "mailprocd/listsync"] == []
        dm.wait_log(r"lists sync \(pid \d+\) ended: the configuration no longer needs it")
        assert "lists sync (pid" not in "".join(
            l for l in dm.log().splitlines(True) if "restarting" in l)
    finally:
        dm.stop()


@pytest.mark.skipif(not H.IS_ROOT, reason="root mode needs root")
def test_root_mode_fetches_as_user(tmp_path, mm):
    """As root, the lists sync process and `mailprocctl lists sync` run as
    `user`, and members.mdb is the user's."""
    H.make_traversable(tmp_path)
    home = tmp_path / "home"
    svc = H.create_user("mpt-ls-")
    acct = H.create_user("mpt-lm-", home=home)
    dm = None
    try:
        home.mkdir()
        os.chown(home, acct.uid, acct.gid)
        dm = H.PolicyDaemon(tmp_path / "root", run_as=None, single_user=False,
                            rules="a@example.test\n    maildir ~/Maildir/\n",
                            uids=f"a@example.test {acct.name}\n", settings={
                                "user": svc.name,
                                "members_source": f"mailman3 {mm.rest_root} {mm.credentials}"})
        dm.write_sources(lists=f"{MM_LIST}  mailman3  {mm.lmtp_dest}  members-only\n")
        dm.compile()
        dm.start()
        dm.wait_log(r"mailprocd/listsync.*lists sync: 1 lists")
        [sync] = [p for p in dm.children() if dm.role(p) == "mailprocd/listsync"]
        assert set(H.proc_ids(sync)[0]) == {svc.uid}
        store = dm.db_dir / "state" / "members.mdb"
        st = os.stat(store)
        assert (st.st_uid, st.st_gid) == (svc.uid, svc.gid)
        res = dm.ctl("lists", "sync")
        assert res.returncode == 0, res.out
        st2 = os.stat(store)
        assert st2.st_ino != st.st_ino          # a new file, swapped in
        assert (st2.st_uid, st2.st_gid) == (svc.uid, svc.gid)
        H.expect(rcpt(dm, STRANGER, MM_LIST), 550, "5.7.1")
        H.expect(rcpt(dm, "alice@example.org", MM_LIST), 250)
    finally:
        if dm is not None and dm.proc is not None:
            dm.stop()
        H.delete_user(svc)
        H.delete_user(acct)


def test_stop_during_a_stalled_fetch(tmp_path, run_as):
    """A REST server that accepts and never answers: the lists sync process
    still ends at once on the daemon's stop, leaving no file behind."""
    import socket
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        dm = H.PolicyDaemon(tmp_path / "stall", run_as=run_as, settings={
            "members_source": f"mailman3 http://127.0.0.1:{port}/3.1 restadmin:x"})
        dm.compile()
        dm.start()
        try:
            srv.settimeout(H.DEADLINE)
            conn, _ = srv.accept()      # the fetch at start, now stalled
        finally:
            dm.stop()                   # fails unless every process ends soon
        conn.close()
        assert "lists sync: stopped during a fetch" in dm.log(), dm.log_tail()
        assert list((dm.db_dir / "state").glob("members.mdb*")) == []


def test_mailman_down_keeps_old_data_until_stale(tmp_path, run_as, mm):
    """Last in the module: it stops the module's Mailman."""
    dm = mailman_daemon(tmp_path / "down", run_as, mm, interval="1s")
    dm.start()
    try:
        dm.wait_log(r"lists sync: 1 lists")
        H.expect(rcpt(dm, STRANGER, MM_LIST), 550, "5.7.1")
        mm.stop(remove=False)
        res = dm.ctl("lists", "sync")
        assert res.returncode == 1, res.out
        assert "the members fetched before stay" in res.out, res.out
        assert f"GET {mm.rest_root}/lists" in res.out, res.out
        dm.wait_log(r"mailprocd/listsync.*lists sync: GET .*the members fetched before stay")
        # the old data still decides ...
        H.expect(rcpt(dm, STRANGER, MM_LIST), 550, "5.7.1")
        H.expect(rcpt(dm, "alice@example.org", MM_LIST), 250)
        # ... until it is older than 10 sync intervals: then mail goes through
        H.wait_for(lambda: rcpt(dm, STRANGER, MM_LIST).code == 250, timeout=60,
                   what="stale members data letting a non-member through")
        dm.wait_log(r"the members of <devs@lists\.example\.test> were fetched \d+ s ago, "
                    r"more than 10 x members_sync_interval: accepted")
    finally:
        dm.stop()
