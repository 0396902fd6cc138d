#!/usr/bin/python3
"""policy_sync_bench.py - the cost of a policy sync round with many accounts.

N virtual accounts (default 10,000) under home_base in single-user mode,
F of them (default 500) with a ~/.mailprocd/policy of a dozen lines.  Times
`mailprocctl policy sync` (one full round, as the daemon's "policy sync"
child runs it every policy_sync_interval):

- first: every file is new (F readers forked);
- unchanged: nothing changed (one lstat per account, no fork);
- C changed (default 10): C files rewritten (C readers).

Each of the last two is repeated R times (default 5); the median and the
spread are printed, with the process's CPU time (user + system, of
mailprocctl and its children).  As root, everything runs as `nobody` (root
mode would skip accounts of uid 0).

    bench/policy_sync_bench.py [-n 10000] [-f 500] [-c 10] [-r 5] [--build build]
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

POLICY = """# bench policy {i}
block sender *@spam{i}.example.test "We do not take mail from you"
block sender *@*.spam.example.test
block client 203.0.{b}.0/24
block client 2001:db8:{i:x}::/48
block helo /\\.dynamic\\./
block helo /^unknown-{i}$/
allow sender *@friends.example.test
allow sender boss{i}@work.example.test
allow client 198.51.100.{b}
greylist on
maxsize 5M
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=10000, help="accounts")
    ap.add_argument("-f", type=int, default=500, help="accounts with a policy file")
    ap.add_argument("-c", type=int, default=10, help="files changed per round")
    ap.add_argument("-r", type=int, default=5, help="repetitions")
    ap.add_argument("--build", default=os.environ.get("MAILPROCD_BUILD",
                                                      os.path.join(REPO, "build")))
    a = ap.parse_args()
    ctl = os.path.join(os.path.abspath(a.build), "src/ctl/mailprocctl")
    base = tempfile.mkdtemp(prefix="polsync-bench-")
    run_as = []
    if os.geteuid() == 0:
        os.chmod(base, 0o755)
        run_as = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    try:
        homes = os.path.join(base, "homes")
        src = os.path.join(base, "src")
        for d in (homes, src, os.path.join(base, "db"), os.path.join(base, "run")):
            os.makedirs(d)
        conf = os.path.join(base, "mailprocd.conf")
        with open(conf, "w") as f:
            f.write(f"""listen lmtp 127.0.0.1:1
hostname bench.example.test
queue_dir {base}/queue
db_dir {base}/db
db_source_dir {src}
run_dir {base}/run
home_base {homes}
spam_engine none
""")
        names = [f"u{i:05d}" for i in range(a.n)]
        with open(os.path.join(src, "uid"), "w") as f:
            for n in names:
                f.write(f"{n}@example.test {n}\n")
        for name, text in (("rules", ""), ("gid", ""), ("lists", "")):
            with open(os.path.join(src, name), "w") as f:
                f.write(text)
        with_file = names[:: max(1, a.n // a.f)][: a.f]
        for i, n in enumerate(names):
            os.mkdir(os.path.join(homes, n))
        for i, n in enumerate(with_file):
            write_policy(homes, n, i, 0)
        if run_as:
            subprocess.run(["chown", "-R", "65534:65534", base], check=True)

        def ctl_run(*args):
            t0 = time.monotonic()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            res = subprocess.run(run_as + [ctl, "-f", conf, *args],
                                 capture_output=True, text=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall = time.monotonic() - t0
            if res.returncode != 0:
                sys.exit(f"mailprocctl {' '.join(args)} failed:\n{res.stdout}{res.stderr}")
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            return wall, cpu, res.stdout.strip()

        ctl_run("db", "compile")
        print(f"{a.n} accounts, {len(with_file)} with a policy file; "
              f"{os.cpu_count()} CPUs")
        wall, cpu, out = ctl_run("policy", "sync")
        print(f"first round (all new):  {wall * 1000:8.1f} ms wall "
              f"{cpu * 1000:8.1f} ms CPU   [{out}]")
        report("unchanged", [ctl_run("policy", "sync") for _ in range(a.r)])
        rounds = []
        for r in range(a.r):
            for i, n in enumerate(with_file[r * a.c % len(with_file):][: a.c]):
                write_policy(homes, n, i, r + 1)
                if run_as:
                    p = os.path.join(homes, n, ".mailprocd")
                    subprocess.run(["chown", "-R", "65534:65534", p], check=True)
            rounds.append(ctl_run("policy", "sync"))
        report(f"{a.c} changed", rounds)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def write_policy(homes, name, i, gen):
    d = os.path.join(homes, name, ".mailprocd")
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, "policy.tmp")
    with open(tmp, "w") as f:
        f.write(POLICY.format(i=i + gen * 1000, b=(i + gen) % 256))
    os.rename(tmp, os.path.join(d, "policy"))


def report(what, runs):
    walls = [w * 1000 for w, _, _ in runs]
    cpus = [c * 1000 for _, c, _ in runs]
    print(f"{what + ':':23s} {statistics.median(walls):8.1f} ms wall "
          f"{statistics.median(cpus):8.1f} ms CPU   (median of {len(runs)}; wall "
          f"{min(walls):.1f}..{max(walls):.1f})   [{runs[-1][2]}]")


if __name__ == "__main__":
    main()
