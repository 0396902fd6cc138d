"""test_docs_agree.py - the settings of the parser (the key table of
src/conf/config.c), of mailprocd.conf(5) and of the example
etc/mailprocd.conf are the same set, and every value the example shows is
the default that mailprocd.conf(5) states, unless the example's comment on
that setting says it is not the default.  No page promises for a later
release what the code does already."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def parser_settings():
    src = (ROOT / "src/conf/config.c").read_text()
    table = src[src.index("} keys[] = {"):]
    table = table[:table.index("};")]
    keys = re.findall(r'\{ "(\w+)", h_\w+', table)
    assert len(keys) > 30, "the key table of config.c was not found"
    return set(keys)


def man_sections():
    """{setting: text of its .TP entry} from mailprocd.conf(5)."""
    man = (ROOT / "docs/mailprocd.conf.5").read_text()
    out = {}
    for part in re.split(r"(?m)^\.TP\n", man):
        m = re.match(r"\.BI? ([a-z_]+)(?=[ \n])", part)
        if m:
            out[m.group(1)] = part[m.end():]
    return out


def unroff(s):
    s = re.sub(r"^\.[A-Z]+ ", "", s.strip())
    s = re.sub(r"\\f[BIPR]", "", s).replace("\\-", "-")
    s = s.strip().rstrip(".").strip()
    if s.startswith('"') and s.endswith('"'):
        s = s[1:-1]
    return s


def man_default(text):
    """The value after `Default:` in a setting's entry, or None."""
    m = re.search(r"Default:[ \t]*([^\n]*)(?:\n([^\n]*))?", text)
    if not m:
        return None
    value = m.group(1).strip() or (m.group(2) or "")
    value = unroff(value.split(" .")[0] if value.startswith(".") else value)
    return value or None


def example_lines():
    """[(setting, value, comments)] of etc/mailprocd.conf, commented-out
    settings (`#key value`) included; comments: the line's own comment and
    the prose comment block right above it."""
    out, block = [], []
    for line in (ROOT / "etc/mailprocd.conf").read_text().splitlines():
        m = re.match(r"#?([a-z_]+)[ \t]+([^#]*?)\s*(#.*)?$", line)
        if m:
            out.append((m.group(1), m.group(2), (m.group(3) or "") + " ".join(block)))
            continue
        block = block + [line] if line.startswith("# ") else []
    return out


def test_parser_and_man_page_name_the_same_settings():
    documented = set(man_sections())
    keys = parser_settings()
    assert keys - documented == set(), "settings missing in mailprocd.conf(5)"
    assert documented - keys == set(), "mailprocd.conf(5) documents unknown settings"


def test_parser_and_example_config_name_the_same_settings():
    shown = {k for k, _, _ in example_lines()}
    keys = parser_settings()
    assert keys - shown == set(), "settings missing in etc/mailprocd.conf"
    assert shown - keys == set(), "etc/mailprocd.conf shows unknown settings"


def test_example_values_are_the_documented_defaults():
    defaults = {k: man_default(t) for k, t in man_sections().items()}
    wrong = []
    for key, value, comments in example_lines():
        if key == "listen" or "default" in comments.lower():
            continue
        if defaults.get(key) is None:
            wrong.append(f"{key}: mailprocd.conf(5) states no default and the "
                         "example does not say it shows none")
        elif value != defaults[key]:
            wrong.append(f"{key} {value}: the default is {defaults[key]}")
    assert wrong == []


def test_example_claims_to_show_every_default():
    head = (ROOT / "etc/mailprocd.conf").read_text()[:600]
    assert "Every setting is shown" in head


def test_no_page_puts_off_what_is_built():
    """Spam filtering and members-only lists were once "a later release";
    both are in the code now (and any such promise goes stale)."""
    stale = []
    for page in sorted((ROOT / "docs").glob("*.[578]")):
        text = re.sub(r"\s+", " ", page.read_text())
        for m in re.finditer(r"(?i)[^.]*\b(later|future) release[^.]*", text):
            stale.append(f"{page.name}: {m.group(0).strip()}")
    assert stale == []


def test_example_config_parses():
    """The parser takes every line of the example; what -n may still say on
    a machine not set up for it is about the machine (the `user` account,
    the databases), never the syntax of a line."""
    import subprocess
    import mpharness as H
    conf = ROOT / "etc/mailprocd.conf"
    res = subprocess.run([str(H.mailprocd_bin()), "-n", "-f", str(conf)],
                         capture_output=True, text=True)
    machine = re.compile(r"user: unknown account$|owner=\S+: unknown user|current\.mdb")
    bad = [l for l in res.stderr.splitlines() if not machine.search(l)]
    assert bad == []
