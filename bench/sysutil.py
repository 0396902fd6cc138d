"""sysutil.py - process and system helpers for the benchmark: which account
runs the peers, free loopback ports, waiting for a listener, stopping a
server by its pid, a process's children, and the file system type of a
directory."""
import grp
import os
import pwd
import signal
import socket
import subprocess
import time


class Account:
    """The account that runs the servers and owns the maildirs: `nobody`
    when the benchmark runs as root (no peer may deliver as root), else the
    invoking user."""

    def __init__(self):
        if os.geteuid() == 0:
            pw = pwd.getpwnam("nobody")
            self.uid, self.gid = pw.pw_uid, pw.pw_gid
            self.switch = True
        else:
            self.uid, self.gid = os.geteuid(), os.getegid()
            self.switch = False
        self.name = pwd.getpwuid(self.uid).pw_name
        self.group = grp.getgrgid(self.gid).gr_name

    def owner(self):
        return (self.uid, self.gid)

    def popen_kwargs(self):
        """Arguments for subprocess that start a child as this account,
        changing identity between fork and exec (no extra process)."""
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown_tree(self, top):
        for dirpath, dirnames, filenames in os.walk(top):
            os.chown(dirpath, self.uid, self.gid)
            for f in filenames:
                os.chown(os.path.join(dirpath, f), self.uid, self.gid)


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=20.0):
    """Wait until 127.0.0.1:port accepts a connection.  Raises when proc
    exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited with status %d before listening"
                               % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on 127.0.0.1:%d after %.0f s" % (port, timeout))


def stop_process(proc, timeout=70.0):
    """SIGTERM by pid, wait, SIGKILL if it does not go.  Returns the exit
    status."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def children(pid):
    """The pids whose parent is pid, from /proc."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            out.append(int(name))
    return out


def descendants(pid):
    """Every pid below pid (children, their children, ...), from /proc."""
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out.extend(kids)
        todo.extend(kids)
    return out


def _tree_stat_sum(pid, first, last):
    """The sum of fields first..last-1 (counted after "(comm) ") of
    /proc/PID/stat over pid and every process below it."""
    total = 0
    for p in [pid] + descendants(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                stat = f.read()
        except OSError:
            continue
        total += sum(int(x) for x in stat[stat.rfind(")") + 2:].split()[first:last])
    return total


def tree_cpu(pid):
    """CPU seconds (user + system) of pid and every process below it, with
    the children each of them has waited for: for a daemon, the work it
    did since it started, counted whatever the machine's load."""
    # utime stime cutime cstime: fields 14-17 of the stat line
    return _tree_stat_sum(pid, 11, 15) / os.sysconf("SC_CLK_TCK")


def tree_minor_faults(pid):
    """Minor page faults of pid and every process below it, with the
    children each has waited for (copy-on-write and first touches: a count
    the machine's load does not change)."""
    # minflt cminflt: fields 10-11 of the stat line
    return _tree_stat_sum(pid, 7, 9)


def wait_gone(pids, timeout=30.0):
    """Wait until none of pids exists (nor is a zombie); returns those
    still there at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for pid in pids:
            try:
                with open("/proc/%d/stat" % pid) as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        left.append(pid)
            except (OSError, IndexError):
                pass
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def fs_type(path):
    """The file system type of the mount holding path ("ext4", "tmpfs")."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            mnt = fields[1].replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                best, kind = mnt, fields[2]
    return kind
