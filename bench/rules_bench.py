#!/usr/bin/python3
"""rules_bench.py - rule evaluation: mailprocd's evaluator against procmail.

One rules entry of 50 conditions (30 header regexes on Subject, List-Id
and X-Mailer, 10 on the envelope sender, 10 on the size), each on its own
instruction ending the entry when it holds, as users write them, applied
to M generated messages (default 10,000, ~3 KB, some matching one rule or
another, the rest falling through to the default).  The same 50 tests as
a .procmailrc of 50 recipes.

- mailprocd: bench/rules_eval (built with the project) runs the entry the
  way a worker does (message parsed as far as the conditions need, entry
  walked with rules_walk), all messages in one process: what a persistent
  worker pays per message.
- procmail: spawned once per message, as an MTA runs it, C at a time, with
  the envelope sender in SENDER and every recipe delivering to /dev/null
  after logging which rule held.

Neither writes mail to disk: this measures deciding, not delivering.  Both
must agree on where every message goes (the script compares the counts
per rule and fails if they differ).

    bench/rules_bench.py [-m 10000] [-c 4] [--build build]
"""
import argparse
import collections
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load      # noqa: E402
import sysutil   # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def conditions():
    """50 (ours, procmail's) condition pairs."""
    out = []
    for k in range(10):
        out.append((f"subject ~ /(offer|deal)-k{k:02d}x/",
                    f"* ^Subject:.*(offer|deal)-k{k:02d}x"))
        out.append((f"header List-Id ~ /<list-{k:02d}\\.example\\.test>/",
                    f"* ^List-Id:.*<list-{k:02d}\\.example\\.test>"))
        out.append((f"header X-Mailer ~ /^Mailer-{k:02d} /",
                    f"* ^X-Mailer: Mailer-{k:02d} "))
    for k in range(10):
        out.append((f"sender ~ /@dom-{k:02d}\\.example$/",
                    f"* SENDER ?? @dom-{k:02d}\\.example$"))
    for k in range(10):
        n = 200000 + k * 20000
        out.append((f"size > {n}", f"* > {n}"))
    return out


def write_rules(path_ours, path_procmail, conds):
    with open(path_ours, "w") as f:
        f.write("# one rules entry: 50 conditions, one per instruction\n")
        for i, (ours, _) in enumerate(conds):
            f.write(f"    if {ours} maildir ~/Maildir/.r{i:02d}/ ; stop\n")
    with open(path_procmail, "w") as f:
        f.write("SHELL=/bin/sh\nVERBOSE=no\nLOGABSTRACT=no\n")
        for i, (_, pm) in enumerate(conds):
            f.write(f":0\n{pm}\n{{\n  LOG=\"rule={i + 2}\n\"\n  :0\n  /dev/null\n}}\n")
        f.write(":0\n{\n  LOG=\"rule=default\n\"\n  :0\n  /dev/null\n}\n")


WORDS = ("meeting notes report invoice hello update weekly digest lunch plan "
         "project review build release draft question answer").split()


def make_messages(n, rnd):
    """n (sender, message bytes with LF) pairs; about 40% match a rule."""
    out = []
    for i in range(n):
        headers = [f"From: person{i}@host.example", "To: bench@example.test",
                   f"Message-ID: <bench-{i}@example.test>",
                   "Date: Mon, 01 Jan 2024 00:00:00 +0000"]
        subject = " ".join(rnd.choice(WORDS) for _ in range(5))
        roll = rnd.random()
        if roll < 0.08:
            subject += f" {rnd.choice(['offer', 'deal'])}-k{rnd.randrange(10):02d}x"
        headers.append(f"Subject: {subject}")
        if 0.08 <= roll < 0.16:
            headers.append(f"List-Id: Bench list <list-{rnd.randrange(10):02d}.example.test>")
        else:
            headers.append("List-Id: Other <other.lists.example.test>")
        if 0.16 <= roll < 0.24:
            headers.append(f"X-Mailer: Mailer-{rnd.randrange(10):02d} v1.{i % 7}")
        else:
            headers.append("X-Mailer: Generic Mailer 3.1")
        if 0.24 <= roll < 0.32:
            sender = f"user{i}@dom-{rnd.randrange(10):02d}.example"
        else:
            sender = f"user{i}@elsewhere.example"
        body_lines = 40
        if 0.32 <= roll < 0.36:
            body_lines = 2600 + rnd.randrange(2000)     # 200K-370K: size rules
        body = "".join(" ".join(rnd.choice(WORDS) for _ in range(10)) + "\n"
                       for _ in range(body_lines))
        out.append((sender, ("\n".join(headers) + "\n\n" + body).encode()))
    return out


def run_ours(tool, entry, senders_file, paths):
    p = subprocess.run([tool, entry, senders_file] + paths, capture_output=True, check=True)
    counts = collections.Counter()
    for line in p.stdout.decode().splitlines():
        m = re.match(r"line (\d+): (\d+)$", line)
        if m:
            counts[int(m.group(1))] += int(m.group(2))
        elif line.startswith("default: "):
            counts["default"] += int(line.split()[1])
    secs = float(re.search(r"in ([\d.]+) s", p.stderr.decode()).group(1))
    return counts, secs


def run_procmail(rcfile, msgs, parallel, account, workdir):
    procmail = shutil.which("procmail")
    if procmail is None:
        raise SystemExit("procmail is not installed (scripts/setup.sh)")
    log = os.path.join(workdir, "procmail.log")
    env = {"PATH": "/usr/bin:/bin", "HOME": workdir}
    kwargs = dict(account.popen_kwargs(), env=env, cwd=workdir)
    work = [(sender, msg) for sender, msg in msgs]

    def argv_for(sender):
        return [procmail, "-m", f"SENDER={sender}", f"LOGFILE={log}", rcfile]
    stats, start, end = load.run_spawned(argv_for, work, parallel, kwargs)
    if stats.errors:
        raise SystemExit(f"procmail failed: {stats.errors[:3]}")
    counts = collections.Counter()
    with open(log) as f:
        for line in f:
            m = re.match(r"rule=(\w+)$", line.strip())
            if m:
                v = m.group(1)
                counts["default" if v == "default" else int(v)] += 1
    return counts, end - start


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--messages", type=int, default=10000)
    p.add_argument("-c", "--parallel", type=int, default=4,
                   help="procmail processes at a time (default 4)")
    p.add_argument("--build", default=os.path.join(REPO, "build"))
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    tool = os.path.join(a.build, "bench", "rules_eval")
    if not os.access(tool, os.X_OK):
        raise SystemExit(f"{tool} is missing: build the project first (ninja -C {a.build})")

    account = sysutil.Account()
    work = tempfile.mkdtemp(prefix="mailprocd-rules-bench.", dir="/var/tmp")
    try:
        os.chmod(work, 0o755)
        conds = conditions()
        entry, rcfile = os.path.join(work, "entry"), os.path.join(work, "procmailrc")
        write_rules(entry, rcfile, conds)
        msgs = make_messages(a.messages, random.Random(a.seed))
        paths = []
        mdir = os.path.join(work, "msgs")
        os.mkdir(mdir)
        for i, (_, m) in enumerate(msgs):
            path = os.path.join(mdir, str(i))
            with open(path, "wb") as f:
                f.write(m)
            paths.append(path)
        senders = os.path.join(work, "senders")
        with open(senders, "w") as f:
            f.write("".join(s + "\n" for s, _ in msgs))
        account.chown_tree(work)

        ours, t_ours = run_ours(tool, entry, senders, paths)
        theirs, t_theirs = run_procmail(rcfile, msgs, a.parallel, account, work)
        n = a.messages
        held = n - ours["default"]
        print(f"rules: 50 conditions, {n} messages ({held} held a rule, "
              f"{ours['default']} fell through)")
        print(f"mailprocd evaluator (1 process, 1 core): {n / t_ours:10.1f} msgs/s "
              f"({t_ours:.3f} s, {t_ours / n * 1e6:.1f} us/msg)")
        print(f"procmail spawned per message ({a.parallel} at a time): "
              f"{n / t_theirs:10.1f} msgs/s ({t_theirs:.2f} s)")
        print(f"ratio mailprocd/procmail: {t_theirs / t_ours:.1f}")
        if ours != theirs:
            diff = {k: (ours.get(k, 0), theirs.get(k, 0))
                    for k in set(ours) | set(theirs) if ours.get(k, 0) != theirs.get(k, 0)}
            print(f"DISAGREE (rule line: mailprocd, procmail): {diff}")
            return 1
        print("both engines sent every message to the same rule")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
