"""test_postfix_guide.py - the recipes of mailprocd.postfix(7), fed as they
stand to a real private Postfix and a real mailprocd, then proved by mail.

The recipes are the blocks after a `.\\" recipe: NAME` comment line in the
man page (the policy recipe also in mailprocd.policy(5), which must say the
same).  The test changes nothing in them but:
  - the ports 127.0.0.1:24 (LMTP), :10025 (the return smtpd) and :10040
    (the policy service), replaced by free loopback ports;
  - the prefix /var/spool/postfix, replaced by the private Postfix's
    queue_directory.
main.cf recipes go in with `postconf -c DIR -e`, master.cf recipes are
appended to master.cf, mailprocd.conf recipes are added to the daemon's
configuration.  Around them the test's Postfix is postfix_instance.py's
(private directories, no DNS, its log in a file) with three changes of its
own: mynetworks is 127.0.0.1/32, so the test's "outside" clients connect
from 127.0.0.2; local_recipient_maps and message_size_limit have Postfix's
defaults (the password database; 10 MB); mail for the world goes to
Postfix's discard transport; master.cf has Debian's chrooted lmtp and a local service.

Two Postfix instances share one root-mode mailprocd: "tcp" (local users and
virtual domains by LMTP over TCP, the return smtpd, the policy service) and
"unix" (the same by the unix socket in its queue directory's private/).
"""

import os
import re
import smtplib
import stat
import subprocess
from pathlib import Path

import pytest

import mpharness as H
import postfix_instance as P

pytestmark = pytest.mark.skipif(P.available() is not None,
                                reason=P.available() or "")

GUIDE = H.REPO / "docs" / "mailprocd.postfix.7"
POLICY_PAGE = H.REPO / "docs" / "mailprocd.policy.5"
OUTSIDE = "127.0.0.2"   # a client not in mynetworks (127.0.0.1/32)
LOCAL_DOMAIN = P.MYHOSTNAME  # $myhostname, in the host's mydestination
VIRTUAL = "example.com"      # in the recipes' virtual_mailbox_domains
FORWARDER = "fwd@example.net"
LOST = "lost@example.net"    # forwards to a local user Postfix does not know
LATE = "late@example.net"    # its account's home does not exist: deferred
FOREIGN = "someone@elsewhere.test"


# ---------------------------------------------------------------- recipes

def recipes(page):
    """{name: text} of the marked blocks of a man page, unescaped."""
    out = {}
    lines = Path(page).read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r'^\.\\" recipe: (\S+)', lines[i])
        i += 1
        if not m:
            continue
        while not lines[i].startswith((".EX", ".nf")):
            assert lines[i].startswith(('.\\"', ".PP")), \
                f"{page}: recipe {m[1]}: {lines[i]!r} before its block"
            i += 1
        i += 1
        body = []
        while not lines[i].startswith((".EE", ".fi")):
            body.append(lines[i])
            i += 1
        text = "\n".join(body) + "\n"
        assert "\\" not in text.replace("\\-", "").replace("\\e", ""), \
            f"{page}: recipe {m[1]} has a groff escape the test cannot undo"
        plain = text.replace("\\-", "-").replace("\\e", "\\")
        assert m[1] not in out, f"{page}: recipe {m[1]} twice"
        out[m[1]] = plain
    return out


GUIDE_RECIPES = recipes(GUIDE)


def recipe(name, ports, spool=None):
    """A recipe with the test's ports and spool directory."""
    text = GUIDE_RECIPES[name]
    text = re.sub(r"127\.0\.0\.1:(24|10025|10040)\b",
                  lambda m: f"127.0.0.1:{ports[m[1]]}", text)
    if spool is not None:
        text = text.replace("/var/spool/postfix", str(spool))
    return text


def main_cf_lines(text):
    """'name = value' lines of a main.cf text (continuations joined)."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            assert out, f"continuation without a setting: {line!r}"
            out[-1] += " " + line.strip()
        else:
            out.append(line.strip())
    for s in out:
        assert re.match(r"^\w+ = ", s), f"not a main.cf setting: {s!r}"
    return out


class GuidePostfix(P.PostfixInstance):
    """A private Postfix with recipes applied on top of the fixture's
    configuration."""

    def __init__(self, root, main_recipes, master_recipes):
        super().__init__(root, lmtp="inet:127.0.0.1:9", policy=None,
                         relay_domains=[],
                         main_cf={"mynetworks": "127.0.0.1/32"})
        self.main_recipes = main_recipes
        self.master_recipes = master_recipes

    def main_cf_settings(self):
        s = super().main_cf_settings()
        # Postfix's defaults: passwd and the aliases; 10 MB (the fixture's
        # 50 MB is over local(8)'s default mailbox_size_limit)
        del s["local_recipient_maps"]
        del s["message_size_limit"]
        # the world: a sink (the fixture's refuses it at RCPT)
        s["default_transport"] = "discard:the world"
        # what a Debian host has before the recipes (they leave it alone)
        s["mydestination"] = "$myhostname, localhost.localdomain, localhost"
        return s

    def master_cf(self):
        text = super().master_cf()
        plain = "lmtp unix - - n - - lmtp\n"
        assert plain in text
        # Debian's master.cf: lmtp chrooted in the queue directory
        text = text.replace(plain, "lmtp unix - - y - - lmtp\n")
        text += "local unix - n n - - local\n"
        return text + "".join(self.master_recipes)

    def write_config(self):
        super().write_config()
        for text in self.main_recipes:
            for setting in main_cf_lines(text):
                self.postconf("-e", setting)

    def postconf(self, *args):
        res = subprocess.run(["postconf", "-c", str(self.etc), *args],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, f"postconf {args}: {res.stderr}"
        return res.stdout

    def smtp_from(self, port, source):
        """An smtplib client from the address source, after EHLO."""
        s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test",
                         timeout=H.REPLY_TIMEOUT * 3,
                         source_address=(source, 0))
        code, msg = s.ehlo("client.test")
        assert code == 250, f"EHLO: {code} {msg!r}"
        return s


class GuideDaemon(H.Daemon):
    """The root-mode daemon with the mailprocd.conf recipes added."""

    def __init__(self, root, recipe_texts, **kw):
        self.extra = []
        settings = kw.pop("settings")
        for text in recipe_texts:
            for line in text.splitlines():
                if not line.strip() or line.startswith("#"):
                    continue
                key, _, value = line.strip().partition(" ")
                if key == "listen":
                    self.extra.append(line.strip())
                else:
                    settings[key] = value.strip()
        super().__init__(root, settings=settings, **kw)

    def config_text(self):
        return super().config_text() + "".join(f"{x}\n" for x in self.extra)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(daemon, tcp postfix, unix postfix, local account, virtual account,
    ports)."""
    base = tmp_path_factory.mktemp("pfxguide")
    H.make_traversable(base)
    homes = base / "home"
    homes.mkdir()
    os.chmod(homes, 0o711)
    users, d, started = [], None, []
    try:
        svc = H.create_user("mpt-s-")
        users.append(svc)
        lu = H.create_user("mpt-l-", home=homes / "l")
        users.append(lu)
        vu = H.create_user("mpt-v-", home=homes / "v")
        users.append(vu)
        late = H.create_user("mpt-n-")  # home /nonexistent
        users.append(late)
        for acct in (lu, vu):
            Path(acct.home).mkdir()
            os.chmod(acct.home, 0o700)
            H.chown_tree(acct.home, acct)
        local_addr = f"{lu.name}@{LOCAL_DOMAIN}"
        ports = dict(zip(("24", "10025", "10040"), H.free_ports(3)))
        tcp = GuidePostfix(
            base / "pfx-tcp",
            main_recipes=[recipe("local-tcp", ports),
                          recipe("virtual-tcp", ports),
                          recipe("policy-main", ports)],
            master_recipes=[recipe("return-smtpd", ports)])
        unix = GuidePostfix(
            base / "pfx-unix",
            main_recipes=[recipe("local-unix", ports),
                          recipe("virtual-unix", ports)],
            master_recipes=[])
        # `postfix check` makes the queue's private/ for the socket
        unix.write_config()
        unix.postfix("check")
        d = GuideDaemon(
            base / "d",
            [recipe("mailprocd-lmtp-tcp", ports),
             recipe("mailprocd-lmtp-unix", ports, spool=unix.queue),
             recipe("mailprocd-relay", ports),
             recipe("mailprocd-policy", ports)],
            run_as=None, single_user=False,
            rules=f"{local_addr}\n    maildir ~/Maildir/\n"
                  f"vera@{VIRTUAL}\n    maildir ~/Maildir/\n"
                  f"{FORWARDER}\n    forward {local_addr}\n"
                  f"{LOST}\n    forward nosuch@{LOCAL_DOMAIN}\n"
                  f"{LATE}\n    maildir ~/Maildir/\n",
            uids=f"{local_addr} {lu.name}\n"
                 f"vera@{VIRTUAL} {vu.name}\n"
                 f"{FORWARDER} {vu.name}\n"
                 f"{LOST} {vu.name}\n"
                 f"{LATE} {late.name}\n",
            settings={"user": svc.name, "delay_warning_time": "2s"})
        d.compile()
        d.start()
        for port in (ports["24"], ports["10040"]):
            P._wait_port(port, H.DEADLINE, None, "mailprocd")
        for pfx in (tcp, unix):
            started.append(pfx)
            pfx.start()
        P._wait_port(ports["10025"], H.DEADLINE, None, "the return smtpd")
        yield d, tcp, unix, lu, vu, ports
    finally:
        try:
            for pfx in started:
                pfx.stop()
        finally:
            try:
                if d is not None and d.proc is not None:
                    d.stop()
            finally:
                for u in users:
                    H.delete_user(u)


def diag(d, *pfxs):
    return "".join(f"\n--- Postfix maillog ({p.root.name}):\n{p.maillog_tail()}"
                   for p in pfxs) + f"\n--- mailprocd log:\n{d.log_tail(40)}"


def send(pfx, rcpt, msg, sender="someone@remote.test"):
    """A whole transaction from an outside client to pfx's public smtpd."""
    with pfx.smtp_from(pfx.port, OUTSIDE) as s:
        refused = s.sendmail(sender, [rcpt], msg)
        assert not refused, refused


def delivered(d, pfx, acct, msg, relay_rx):
    """msg arrives in acct's maildir, and Postfix's log says it went by the
    LMTP next hop relay_rx."""
    maildir = Path(acct.home) / "Maildir"
    try:
        H.wait_maildir(maildir, H.mid(msg))
        qid = pfx.wait_log(rf"(\w+): message-id={re.escape(H.mid(msg).decode())}")[1]
        pfx.wait_log(rf"{qid}: to=<[^>]+>.*relay={relay_rx}.*status=sent")
    except BaseException:
        print(diag(d, pfx))
        raise


def returned(pfx):
    """Postfix queue ids of the mail the return smtpd took in."""
    return set(re.findall(r"postfix/mailprocd/smtpd\[\d+\]: (\w+): "
                          r"client=\S*\[127\.0\.0\.1\]", pfx.maillog()))


def reply(got):
    return got[0], got[1].decode("latin-1")


# ---------------------------------------------------------------- the page

def test_every_recipe_is_there_and_policy_pages_agree():
    names = {"mailprocd-lmtp-tcp", "local-tcp", "virtual-tcp",
             "mailprocd-lmtp-unix", "local-unix", "virtual-unix",
             "mailprocd-relay", "return-smtpd", "mailprocd-policy",
             "policy-main"}
    assert set(GUIDE_RECIPES) == names
    policy = recipes(POLICY_PAGE)
    for name in ("policy-main", "mailprocd-policy"):
        assert policy[name] == GUIDE_RECIPES[name], \
            f"recipe {name} differs between {GUIDE.name} and {POLICY_PAGE.name}"


# ---------------------------------------------------------------- delivery

def test_local_user_over_tcp(stack):
    d, tcp, unix, lu, vu, ports = stack
    to = f"{lu.name}@{LOCAL_DOMAIN}"
    msg = H.make_message(to=to)
    send(tcp, to, msg)
    delivered(d, tcp, lu, msg, rf"127\.0\.0\.1\[127\.0\.0\.1\]:{ports['24']}")


def test_virtual_user_over_tcp(stack):
    d, tcp, unix, lu, vu, ports = stack
    msg = H.make_message(to=f"vera@{VIRTUAL}")
    send(tcp, f"vera@{VIRTUAL}", msg)
    delivered(d, tcp, vu, msg, rf"127\.0\.0\.1\[127\.0\.0\.1\]:{ports['24']}")


def test_local_user_over_unix_socket_in_chroot(stack):
    d, tcp, unix, lu, vu, ports = stack
    to = f"{lu.name}@{LOCAL_DOMAIN}"
    msg = H.make_message(to=to)
    send(unix, to, msg)
    delivered(d, unix, lu, msg, r"\S*\[private/mailprocd\]")


def test_virtual_user_over_unix_socket_in_chroot(stack):
    d, tcp, unix, lu, vu, ports = stack
    msg = H.make_message(to=f"vera@{VIRTUAL}")
    send(unix, f"vera@{VIRTUAL}", msg)
    delivered(d, unix, vu, msg, r"\S*\[private/mailprocd\]")


def test_unix_socket_belongs_to_postfix_alone(stack):
    d, tcp, unix, lu, vu, ports = stack
    st = os.stat(unix.queue / "private" / "mailprocd")
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == H.Account.lookup("postfix").uid


# ---------------------------------------------------------------- return path

def test_forward_comes_back_through_the_return_smtpd(stack):
    """fwd@example.net's rule forwards to the local user: mailprocd relays
    it to 127.0.0.1:10025, Postfix takes it there and delivers it to the
    local user, by LMTP into mailprocd again."""
    d, tcp, unix, lu, vu, ports = stack
    msg = H.make_message(to=FORWARDER)
    send(tcp, FORWARDER, msg)
    try:
        H.wait_maildir(Path(lu.home) / "Maildir", H.mid(msg))
        m = H.mid(msg).decode()
        # two Postfix queue ids with this message-id: the original, and
        # the forward, which the return smtpd received
        ids = re.findall(rf"(\w+): message-id={re.escape(m)}", tcp.maillog())
        back = returned(tcp) & set(ids)
        assert len(back) == 1, "the forward did not come in on :10025 (once)"
        [qid] = back
        tcp.wait_log(rf"{qid}: to=<{re.escape(lu.name)}@[^>]+>.*"
                     rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{ports['24']}.*status=sent")
    except BaseException:
        print(diag(d, tcp))
        raise


def test_bounce_comes_back_through_the_return_smtpd(stack):
    """lost@example.net forwards to a local user Postfix does not know: the
    return smtpd refuses that recipient at RCPT (Postfix's own
    local_recipient_maps check), mailprocd bounces the message to its
    sender, vera@example.com, through the return smtpd again, and Postfix
    delivers the bounce to vera by LMTP."""
    d, tcp, unix, lu, vu, ports = stack
    msg = H.make_message(to=LOST)
    send(tcp, LOST, msg, sender=f"vera@{VIRTUAL}")
    try:
        [dsn] = H.wait_maildir(Path(vu.home) / "Maildir", H.mid(msg))
        assert b"Action: failed" in dsn and b"5.1.1" in dsn, dsn.decode()
        tcp.wait_log(rf"postfix/mailprocd/smtpd\[\d+\]: NOQUEUE: reject: "
                     rf"RCPT from \S*\[127\.0\.0\.1\]: 550 5\.1\.1 "
                     rf"<nosuch@{re.escape(LOCAL_DOMAIN)}>")
        def bounce_ids():
            log = tcp.maillog()
            bounced = set(re.findall(r"(\w+): from=<>,", log))
            to_vera = set(re.findall(
                rf"(\w+): to=<vera@{VIRTUAL}>.*status=sent", log))
            return returned(tcp) & bounced & to_vera
        H.wait_for(bounce_ids, what="a bounce in on :10025 and out to vera")
    except BaseException:
        print(diag(d, tcp))
        raise


def test_delay_warning_comes_back_through_the_return_smtpd(stack):
    """late@example.net cannot be delivered yet (its account's home does
    not exist): after delay_warning_time (2s here) mailprocd sends its
    sender, vera@example.com, a delay warning through the return smtpd,
    and Postfix delivers it to vera by LMTP."""
    d, tcp, unix, lu, vu, ports = stack
    msg = H.make_message(to=LATE)
    send(tcp, LATE, msg, sender=f"vera@{VIRTUAL}")
    try:
        [dsn] = H.wait_maildir(Path(vu.home) / "Maildir", H.mid(msg))
        assert b"Action: delayed" in dsn, dsn.decode()
        m = re.search(rb"(?mi)^Message-ID: (<[^>\r\n]+>)", dsn)
        qid = tcp.wait_log(rf"(\w+): message-id={re.escape(m[1].decode())}")[1]
        assert qid in returned(tcp), "the warning did not come in on :10025"
        tcp.wait_log(rf"{qid}: to=<vera@{VIRTUAL}>.*status=sent")
    except BaseException:
        print(diag(d, tcp))
        raise


def test_return_smtpd_refuses_other_clients(stack):
    d, tcp, unix, lu, vu, ports = stack
    for rcpt in (FOREIGN, f"{lu.name}@{LOCAL_DOMAIN}"):
        with tcp.smtp_from(ports["10025"], OUTSIDE) as s:
            assert s.mail("x@remote.test")[0] == 250
            code, text = reply(s.rcpt(rcpt))
            assert code == 554 and text.startswith("5.7.1 ") and \
                "Client host rejected" in text, f"{code} {text}" + diag(d, tcp)


def test_return_smtpd_relays_for_mailprocds_address(stack):
    # 127.0.0.1, where mailprocd's relay connects from, may send anywhere:
    # forwards go out to the world (here Postfix's discard transport)
    d, tcp, unix, lu, vu, ports = stack
    msg = H.make_message(to=FOREIGN)
    with tcp.smtp_from(ports["10025"], "127.0.0.1") as s:
        assert not s.sendmail("x@remote.test", [FOREIGN], msg)
    qid = tcp.wait_log(rf"(\w+): message-id={re.escape(H.mid(msg).decode())}")[1]
    assert qid in returned(tcp), diag(d, tcp)
    tcp.wait_log(rf"{qid}: to=<{FOREIGN}>.*relay=none.*status=sent")


def test_public_smtpd_is_no_open_relay(stack):
    d, tcp, unix, lu, vu, ports = stack
    with tcp.smtp_from(tcp.port, OUTSIDE) as s:
        assert s.mail("x@remote.test")[0] == 250
        code, text = reply(s.rcpt(FOREIGN))
        assert code == 554 and text.startswith("5.7.1 ") and \
            "Relay access denied" in text, f"{code} {text}" + diag(d, tcp)


# ---------------------------------------------------------------- RCPT check

def test_unknown_virtual_user_refused_at_rcpt_by_the_policy_service(stack):
    d, tcp, unix, lu, vu, ports = stack
    with tcp.smtp_from(tcp.port, OUTSIDE) as s:
        assert s.mail("x@remote.test")[0] == 250
        got = reply(s.rcpt(f"nobody@{VIRTUAL}"))
        # the policy service's words, as smtpd passes them on
        assert got == (550, f"5.1.1 <nobody@{VIRTUAL}>: Recipient address "
                            f"rejected: User unknown"), f"{got}" + diag(d, tcp)
        got = reply(s.rcpt(f"vera@{VIRTUAL}"))
        assert got[0] == 250, f"{got}" + diag(d, tcp)
