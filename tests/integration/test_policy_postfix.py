"""test_policy_postfix.py - mailprocd's policy service behind a real Postfix.

A private Postfix (postfix_instance.py) relays example.test to mailprocd's
LMTP listener and asks mailprocd's policy service (`listen policy`) at RCPT
and at end of data, as the recipe in mailprocd.policy(5) says.  Python's
smtplib talks to Postfix's smtpd, so every answer here went the whole way:
client -> Postfix smtpd -> policy request -> mailprocd -> action= -> the
SMTP reply, and accepted mail goes on through Postfix's queue and LMTP
client into mailprocd and a maildir.

Users' own policy files are written into the accounts' homes (single-user
mode: home_base/NAME/.mailprocd/policy) and compiled with `mailprocctl
policy sync`.  Each test uses its own senders, so greylisting triplets of
one test never help another.
"""

import os
import time
from pathlib import Path

import pytest

import mpharness as H
import postfix_instance as P

pytestmark = pytest.mark.skipif(P.available() is not None,
                                reason=P.available() or "")

# greylist_delay of the daemon, in seconds: the retry that must still be
# too early goes through Postfix within it even on a slow sanitizer run
GREYLIST_DELAY = 3 if H.SANITIZED else 2
FOREIGN = "elsewhere.test"  # Postfix relays it; mailprocd's databases do not know it

RULES = H.standard_rules() + """
sam@example.test    maxsize=3K
    maildir ~/Maildir/

gina@example.test
    maildir ~/Maildir/

bruno@example.test
    maildir ~/Maildir/
"""

UIDS = H.standard_uids() + """
sam@example.test        sam
gina@example.test       gina
bruno@example.test      bruno
"""

POLICIES = {
    # greylisting only
    "gina": "greylist on\n",
    # blocks, an allow that wins over them and over greylisting, maxsize
    "bruno": """# bruno's own policy (written by bruno, no root needed)
block    sender  *@spam.test            "We do not take mail from you"
block    helo    /\\.dynamic\\./
block    sender  vip@friends.test       "never seen: allow wins"
allow    sender  *@friends.test         # allow wins over block and greylist
greylist on
maxsize  2K
""",
}


def write_policy(d, account, text):
    """~/.mailprocd/policy of an account, owned by the account (in
    single-user mode: the daemon's user)."""
    home = d.home(account)
    pdir = home / ".mailprocd"
    pdir.mkdir(parents=True, exist_ok=True)
    (pdir / "policy").write_text(text)
    H.chown_tree(home, d.run_as)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, run_as):
    """(daemon, postfix): mailprocd with the users' policies synced, and a
    private Postfix asking it."""
    d = H.PolicyDaemon(tmp_path_factory.mktemp("polpfx"), run_as=run_as,
                     rules=RULES, uids=UIDS,
                     homes=H.STANDARD_USERS + ("sam", "gina", "bruno"),
                     settings={"greylist_delay": f"{GREYLIST_DELAY}s",
                               "greylist_max_age": "1h",
                               "greylist_auto_allow": "0",
                               "policy_sync_interval": "0"})
    for account, text in POLICIES.items():
        write_policy(d, account, text)
    d.compile()
    d.start()
    pfx = None
    try:
        res = d.ctl("policy", "sync")
        assert res.returncode == 0, f"mailprocctl policy sync:\n{res.out}"
        for account in POLICIES:
            errs = d.home(account) / ".mailprocd" / "policy.errors"
            assert not errs.exists() or not errs.read_text().strip(), \
                f"{account}'s policy did not compile: {errs.read_text()}"
        pfx = P.PostfixInstance(
            tmp_path_factory.mktemp("pfx"),
            lmtp=f"inet:127.0.0.1:{d.lmtp_port}",
            policy=f"inet:127.0.0.1:{d.policy_port}",
            relay_domains=[H.DOMAIN], discard_domains=[FOREIGN],
            extra_smtpd={"unix": f"unix:{d.policy_sock}"})
        pfx.start()
        yield d, pfx
    finally:
        try:
            if pfx is not None:
                pfx.stop()
        finally:
            d.stop()


def diag(d, pfx):
    return (f"\n--- Postfix maillog:\n{pfx.maillog_tail()}"
            f"\n--- mailprocd log:\n{d.log_tail(40)}")


def rcpt(pfx, sender, rcpt, size=None, helo="client.example.test",
         listener="smtp"):
    """One MAIL/RCPT through Postfix; returns (code, text) of the RCPT."""
    with pfx.smtp(listener, helo=helo) as s:
        opts = [f"SIZE={size}"] if size is not None else []
        code, msg = s.mail(sender, opts)
        assert code == 250, f"MAIL FROM:<{sender}>: {code} {msg!r}"
        code, msg = s.rcpt(rcpt)
        return code, msg.decode("latin-1")


def send(pfx, sender, rcpt, msg, helo="client.example.test"):
    """A whole transaction through Postfix; returns (rcpt reply, data
    reply), data reply None when the RCPT was refused."""
    with pfx.smtp(helo=helo) as s:
        code, text = s.mail(sender)
        assert code == 250, f"MAIL FROM:<{sender}>: {code} {text!r}"
        rr = s.rcpt(rcpt)
        if rr[0] != 250:
            return (rr[0], rr[1].decode("latin-1")), None
        dr = s.data(msg)
        return (rr[0], rr[1].decode("latin-1")), (dr[0], dr[1].decode("latin-1"))


def decode(reply):
    """smtplib's (code, bytes) as (code, str)."""
    return reply[0], reply[1].decode("latin-1")


def expect_reply(got, code, enh, d, pfx, contains=None):
    c, text = got
    assert c == code and text.startswith(enh + " "), \
        f"expected {code} {enh}, got {c} {text!r}" + diag(d, pfx)
    if contains:
        assert contains in text, f"{contains!r} not in {text!r}" + diag(d, pfx)


def delivered(d, account, msg, what):
    """The message arrives in the account's maildir, through Postfix's
    queue and its LMTP client into mailprocd."""
    try:
        return H.wait_maildir(d.maildir(account), H.mid(msg))
    except BaseException:
        print(what)
        raise


# ---------------------------------------------------------------- answers

def test_known_user_without_policy_is_accepted_and_delivered(stack):
    d, pfx = stack
    msg = H.make_message(to="alice@example.test")
    rr, dr = send(pfx, "plain@remote.test", "alice@example.test", msg)
    expect_reply(rr, 250, "2.1.5", d, pfx)
    assert dr[0] == 250, f"DATA: {dr}" + diag(d, pfx)
    delivered(d, "alice", msg, diag(d, pfx))


def test_unknown_recipient_gets_550_5_1_1(stack):
    d, pfx = stack
    got = rcpt(pfx, "someone@remote.test", "nobody@example.test")
    # exactly what Postfix says of its own unknown users: smtpd puts
    # "<rcpt>: Recipient address rejected: " before the service's text
    assert got == (550, "5.1.1 <nobody@example.test>: Recipient address "
                        "rejected: User unknown"), f"{got}" + diag(d, pfx)


def test_size_over_entry_maxsize_gets_552_at_rcpt(stack):
    d, pfx = stack
    # sam's rules entry says maxsize=3K; Postfix's own limit is 50M
    expect_reply(rcpt(pfx, "big@remote.test", "sam@example.test", size=10000),
                 552, "5.3.4", d, pfx)
    expect_reply(rcpt(pfx, "big@remote.test", "sam@example.test", size=1000),
                 250, "2.1.5", d, pfx)


def test_actual_size_over_maxsize_gets_552_at_end_of_data(stack):
    d, pfx = stack
    # no SIZE= on MAIL FROM: only the end-of-message check can see it
    body = ("x" * 70 + "\r\n") * 100
    msg = H.make_message(to="sam@example.test", body=body)
    rr, dr = send(pfx, "nosize@remote.test", "sam@example.test", msg)
    expect_reply(rr, 250, "2.1.5", d, pfx)
    expect_reply(dr, 552, "5.3.4", d, pfx)
    H.settle()
    assert not H.find_marked([c for _, c in H.maildir_messages(
        d.maildir("sam"))], H.mid(msg)), "refused message was delivered"


def test_actual_size_checked_against_every_recipient(stack):
    d, pfx = stack
    # two recipients: at end of data Postfix names none of them
    # (recipient_count=2), so the service must remember sam's limit from
    # his RCPT request by the transaction's instance
    body = ("y" * 70 + "\r\n") * 100
    msg = H.make_message(to="alice@example.test", body=body)
    with pfx.smtp() as s:
        assert s.mail("two@remote.test")[0] == 250
        expect_reply(decode(s.rcpt("alice@example.test")), 250, "2.1.5", d, pfx)
        expect_reply(decode(s.rcpt("sam@example.test")), 250, "2.1.5", d, pfx)
        expect_reply(decode(s.data(msg)), 552, "5.3.4", d, pfx)
        # the next, small message of the same session is not refused
        # (Postfix 3.7 wants a RSET after a refusal at end of data)
        small = H.make_message(to="alice@example.test")
        s.rset()
        assert s.mail("two@remote.test")[0] == 250
        expect_reply(decode(s.rcpt("alice@example.test")), 250, "2.1.5", d, pfx)
        expect_reply(decode(s.rcpt("sam@example.test")), 250, "2.1.5", d, pfx)
        expect_reply(decode(s.data(small)), 250, "2.0.0", d, pfx)
    delivered(d, "alice", small, diag(d, pfx))
    delivered(d, "sam", small, diag(d, pfx))
    assert not H.find_marked([c for _, c in H.maildir_messages(
        d.maildir("alice"))], H.mid(msg)), "refused message was delivered"


def test_users_own_maxsize_gets_552_even_when_allowed(stack):
    d, pfx = stack
    # bruno's `maxsize 2K`; his allow skips his blocks and greylisting,
    # never his size limit
    expect_reply(rcpt(pfx, "vip@friends.test", "bruno@example.test",
                      size=5000), 552, "5.3.4", d, pfx)


def test_users_block_sender_refuses_with_the_users_text(stack):
    d, pfx = stack
    expect_reply(rcpt(pfx, "pusher@spam.test", "bruno@example.test"),
                 550, "5.7.1", d, pfx,
                 contains="We do not take mail from you")


def test_users_block_helo_refuses(stack):
    d, pfx = stack
    got = rcpt(pfx, "dyn@remote.test", "bruno@example.test",
               helo="host-1-2-3-4.dynamic.isp.test")
    expect_reply(got, 550, "5.7.1", d, pfx)
    # the same sender from a well-named host is only greylisted
    expect_reply(rcpt(pfx, "dyn@remote.test", "bruno@example.test"),
                 450, "4.7.1", d, pfx)


def test_allow_wins_over_block_and_greylist(stack):
    d, pfx = stack
    # vip@friends.test is blocked by one rule and allowed by another, and
    # bruno greylists: the first attempt is accepted and delivered
    msg = H.make_message(to="bruno@example.test")
    rr, dr = send(pfx, "vip@friends.test", "bruno@example.test", msg)
    expect_reply(rr, 250, "2.1.5", d, pfx)
    assert dr[0] == 250, f"DATA: {dr}" + diag(d, pfx)
    delivered(d, "bruno", msg, diag(d, pfx))


def test_greylisting_defers_then_accepts_and_delivers(stack):
    d, pfx = stack
    sender, to = "first-time@remote.test", "gina@example.test"
    got = rcpt(pfx, sender, to)
    expect_reply(got, 450, "4.7.1", d, pfx, contains="Greylisted")
    # too early: still deferred
    expect_reply(rcpt(pfx, sender, to), 450, "4.7.1", d, pfx)
    time.sleep(GREYLIST_DELAY + 0.5)
    msg = H.make_message(to=to)
    rr, dr = send(pfx, sender, to, msg)
    expect_reply(rr, 250, "2.1.5", d, pfx)
    assert dr[0] == 250, f"DATA: {dr}" + diag(d, pfx)
    delivered(d, "gina", msg, diag(d, pfx))
    # another sender to the same user starts its own triplet
    expect_reply(rcpt(pfx, "second@remote.test", to), 450, "4.7.1", d, pfx)


def test_foreign_domain_is_left_alone(stack):
    d, pfx = stack
    # a domain the databases do not know: DUNNO, so Postfix's other
    # restrictions decide (here: relay it, to its discard transport)
    to = f"nobody@{FOREIGN}"
    msg = H.make_message(to=to)
    rr, dr = send(pfx, "any@remote.test", to, msg)
    expect_reply(rr, 250, "2.1.5", d, pfx)
    assert dr[0] == 250, f"DATA: {dr}" + diag(d, pfx)
    pfx.wait_log(rf"to=<{to}>.*relay=none.*status=sent")


def test_unix_socket_policy_service(stack):
    d, pfx = stack
    # the same service on `listen policy unix:PATH`, as
    # check_policy_service unix:PATH from a second smtpd
    expect_reply(rcpt(pfx, "someone@remote.test", "ghost@example.test",
                      listener="unix"), 550, "5.1.1", d, pfx)
    expect_reply(rcpt(pfx, "pusher@spam.test", "bruno@example.test",
                      listener="unix"), 550, "5.7.1", d, pfx,
                 contains="We do not take mail from you")


# ---------------------------------------------------------------- root mode

@pytest.fixture(scope="module")
def root_stack(tmp_path_factory):
    """(daemon, postfix, account): mailprocd started as root, a real
    account whose own policy file (its file, mode 0600, in its 0700 home)
    blocks a sender and greylists, and a private Postfix asking it."""
    base = tmp_path_factory.mktemp("polpfx-root")
    H.make_traversable(base)
    homes = base / "home"
    homes.mkdir()
    os.chmod(homes, 0o711)
    users, d, pfx = [], None, None
    try:
        svc = H.create_user("mpt-s-")
        users.append(svc)
        acct = H.create_user("mpt-r-", home=homes / "r")
        users.append(acct)
        home = homes / "r"
        (home / ".mailprocd").mkdir(parents=True)
        policy = home / ".mailprocd" / "policy"
        policy.write_text('block sender *@spam.test "Not from you, says r"\n'
                          'greylist on\n')
        os.chmod(policy, 0o600)
        os.chmod(home, 0o700)
        H.chown_tree(home, acct)
        d = H.PolicyDaemon(base / "d", run_as=None, single_user=False,
                           rules="r@example.test\n    maildir ~/Maildir/\n",
                           uids=f"r@example.test {acct.name}\n",
                           settings={"user": svc.name,
                                     "greylist_delay": f"{GREYLIST_DELAY}s",
                                     "greylist_max_age": "1h",
                                     "greylist_auto_allow": "0",
                                     "policy_sync_interval": "0"})
        d.compile()
        d.start()
        res = d.ctl("policy", "sync")
        assert res.returncode == 0, f"mailprocctl policy sync:\n{res.out}"
        pfx = P.PostfixInstance(
            tmp_path_factory.mktemp("pfx-root"),
            lmtp=f"inet:127.0.0.1:{d.lmtp_port}",
            policy=f"inet:127.0.0.1:{d.policy_port}",
            relay_domains=[H.DOMAIN])
        pfx.start()
        yield d, pfx, acct
    finally:
        try:
            if pfx is not None:
                pfx.stop()
        finally:
            try:
                if d is not None and d.proc is not None:
                    d.stop()
            finally:
                for u in users:
                    H.delete_user(u)


def test_root_mode_users_own_policy_through_postfix(root_stack):
    """The issue's promise: an unprivileged user's own file acts in the
    SMTP dialogue of the host's Postfix, with no root in the loop."""
    d, pfx, acct = root_stack
    expect_reply(rcpt(pfx, "pusher@spam.test", "r@example.test"),
                 550, "5.7.1", d, pfx, contains="Not from you, says r")
    sender = "stranger@remote.test"
    expect_reply(rcpt(pfx, sender, "r@example.test"), 450, "4.7.1", d, pfx)
    time.sleep(GREYLIST_DELAY + 0.5)
    msg = H.make_message(to="r@example.test")
    rr, dr = send(pfx, sender, "r@example.test", msg)
    expect_reply(rr, 250, "2.1.5", d, pfx)
    assert dr[0] == 250, f"DATA: {dr}" + diag(d, pfx)
    [(path, _)] = [(p, c) for p, c in H.wait_for(
        lambda: [(p, c) for p, c in H.maildir_messages(
            Path(acct.home) / "Maildir") if H.mid(msg) in c],
        what="the message in r's maildir")]
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (acct.uid, acct.gid), \
        f"{path} owned by {st.st_uid}:{st.st_gid}, not {acct}"
