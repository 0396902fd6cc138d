"""test_config_db.py - `mailprocd -n` config checks, `mailprocctl db
compile` errors (file:line, exit 1, old database kept), database swaps seen
by a running daemon, `db lookup` and `queue`."""

import re

import pytest

import mpharness as H
from mpharness import SENDER, Conn, expect


def line_of(text, needle):
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in text")


def assert_file_line(out, name, lines):
    """out reports `...name:LINE: message` for one of lines."""
    lines = lines if isinstance(lines, (list, tuple)) else [lines]
    alts = "|".join(str(n) for n in lines)
    assert re.search(rf"(?m)(^|/|\s){re.escape(name)}:({alts}): \S", out), \
        f"expected {name}:{alts}: message in:\n{out}"


def test_check_good_config_exits_0(daemons):
    d = daemons("good")
    res = d.check_config()
    assert res.returncode == 0, res.out


BAD_CONFIG_LINES = {
    "unknown-key": "frobnicate yes",
    "bad-size": "max_message_size 10Q",
    "bad-duration": "session_timeout forever",
    "bad-listen-kind": "listen carrierpigeon 127.0.0.1:2526",
    "missing-value": "queue_dir",
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIG_LINES))
def test_check_bad_config_reports_file_line(daemons, case):
    d = daemons("bad", compile=False)
    text = d.config_text()
    # the bad line goes in the middle, not at the end
    lines = text.splitlines()
    lines.insert(3, BAD_CONFIG_LINES[case])
    d.conf.write_text("\n".join(lines) + "\n")
    res = d.check_config()
    assert res.returncode == 1, f"exit {res.returncode}:\n{res.out}"
    assert_file_line(res.out, str(d.conf), 4)


def test_check_does_not_start_daemon(daemons):
    d = daemons("nostart")
    res = d.check_config()
    assert res.returncode == 0, res.out
    with pytest.raises(OSError):
        Conn(d.smtp_port, timeout=2)


NEWGUY_RULES = "\nnewguy@example.test\n    maildir ~/Maildir/\n"
NEWGUY_UID = "newguy@example.test newguy\n"


def compile_error_cases():
    r, u = H.standard_rules(), H.standard_uids()
    cases = {
        "bad-instruction": (r + NEWGUY_RULES + "    frobnicate ~/x\n",
                            u + NEWGUY_UID, "rules", "frobnicate"),
        "uid-without-account": (r + NEWGUY_RULES, u + "newguy@example.test\n",
                                "uid", "newguy@example.test"),
        "write-without-uid": (r + NEWGUY_RULES, u, "rules",
                              "newguy@example.test"),
        "instruction-before-key": ("    maildir ~/Maildir/\n" + r,
                                   u + NEWGUY_UID, "rules", "maildir"),
        "bad-key": (r + "\nnot an address\n    maildir ~/Maildir/\n",
                    u + NEWGUY_UID, "rules", "not an address"),
    }
    # mistakes in the rules language, each in newguy's entry
    for name, line, needle in [
            ("bad-regex", "if subject ~ /a(b/ maildir ~/Maildir/", "a(b"),
            ("unknown-condition", "if colour ~ /red/ maildir ~/Maildir/", "colour"),
            ("missing-operand", "if size > maildir ~/Maildir/", "if size"),
            ("bad-number", "if size > 12Q maildir ~/Maildir/", "12Q"),
            ("condition-without-action", "if spam", "if spam"),
            ("bad-forward", "forward not-an-address", "not-an-address"),
            ("uid-root", "maildir ~/Maildir/ uid=root", "uid=root"),
            ("reject-without-text", "reject", "reject"),
            ("huge-line", "if subject ~ /" + "a" * 100000 + "/ maildir ~/Maildir/",
             "if subject"),
            ("catastrophic-is-fine-but-unclosed", "if body ~ /(a+)+$ maildir ~/x/",
             "(a+)+$")]:
        cases["rules-" + name] = (r + NEWGUY_RULES + "    " + line + "\n",
                                  u + NEWGUY_UID, "rules", needle)
    return cases


@pytest.mark.parametrize("case", sorted(compile_error_cases()))
def test_compile_error_reports_and_keeps_old_db(daemons, case):
    rules, uids, bad_file, needle = compile_error_cases()[case]
    d = daemons("cerr", homes=H.STANDARD_USERS + ("newguy",)).start()
    d.write_sources(rules=rules, uids=uids)
    res = d.compile(expect_ok=False)
    assert res.returncode == 1, f"exit {res.returncode}:\n{res.out}"
    text = rules if bad_file == "rules" else uids
    n = line_of(text, needle)
    # an entry error may point at the key line or its instruction
    assert_file_line(res.out, bad_file, [n, n + 1] if case ==
                     "write-without-uid" else n)
    # the running daemon still has the old database, and nothing from the
    # failed compile
    with Conn(d.smtp_port) as c:
        c.hello()
        expect(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        expect(c.cmd("RCPT TO:<alice@example.test>"), 250)
        expect(c.cmd("RCPT TO:<carol@example.test>"), 250)
        expect(c.cmd("RCPT TO:<newguy@example.test>"), 550, "5.1.1")
    lk = d.ctl("db", "lookup", "alice@example.test")
    assert lk.returncode == 0 and "alice" in lk.out, lk.out
    # and a restart still finds a valid database
    d.restart()
    with Conn(d.smtp_port) as c:
        c.hello()
        expect(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        expect(c.cmd("RCPT TO:<alice@example.test>"), 250)


def test_db_swap_seen_by_running_daemon(daemons):
    d = daemons("swap").start()
    with Conn(d.smtp_port) as c:
        c.hello()
        expect(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        expect(c.cmd("RCPT TO:<dave@example.test>"), 550, "5.1.1")
        expect(c.cmd("RCPT TO:<carol@example.test>"), 250)
        expect(c.cmd("RSET"), 250)
        # add dave, remove carol; compile while this session is open
        uids = "\n".join(l for l in H.standard_uids().splitlines()
                         if not l.startswith("carol@")) + "\n"
        d.write_sources(rules=H.standard_rules() +
                        "\ndave@example.test\n    maildir ~/Maildir/\n",
                        uids=uids + "dave@example.test dave\n")
        d.compile()
        m = H.make_message(to="dave@example.test")
        expect(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        expect(c.cmd("RCPT TO:<dave@example.test>"), 250)
        expect(c.cmd("RCPT TO:<carol@example.test>"), 550, "5.1.1")
        expect(c.cmd("DATA"), 354)
        c.send(H.dot_stuff(m) + b".\r\n")
        expect(c.reply(), 250)
    [got] = H.wait_maildir(d.maildir("dave"), H.mid(m))
    assert H.Delivered(got).delivered_to == "dave@example.test"
    # new sessions see it too
    with Conn(d.lmtp_port) as c:
        c.hello(lmtp=True)
        expect(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        expect(c.cmd("RCPT TO:<Dave@Example.Test>"), 250)


def test_compile_from_srcdir_argument(daemons, tmp_path):
    d = daemons("srcdir").start()
    other = tmp_path / "other-src"
    d.write_sources(srcdir=other, rules=H.standard_rules(),
                    uids=H.standard_uids() + "dave@example.test dave\n")
    d.compile(srcdir=other)
    with Conn(d.smtp_port) as c:
        c.hello()
        expect(c.cmd(f"MAIL FROM:<{SENDER}>"), 250)
        expect(c.cmd("RCPT TO:<dave@example.test>"), 250)


def test_db_lookup_shows_resolution(daemons):
    d = daemons("lookup")
    res = d.ctl("db", "lookup", "Alice+News@EXAMPLE.test")
    assert res.returncode == 0, res.out
    assert "alice@example.test" in res.out.lower(), res.out
    assert re.search(r"\balice\b", res.out), res.out
    assert "Maildir" in res.out, "rule lines not shown:\n" + res.out
    res = d.ctl("db", "lookup", "frank@example.test")
    assert res.returncode == 0 and "frank" in res.out, res.out


def test_queue_listing_runs(daemons):
    d = daemons("qlist").start()
    res = d.ctl("queue")
    assert res.returncode == 0, res.out
