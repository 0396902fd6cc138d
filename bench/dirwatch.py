"""dirwatch.py - when did each file appear in a directory: inotify (through
ctypes, IN_CREATE and IN_MOVED_TO, so maildir's link or rename from tmp/
to new/) read by a thread that stamps every name with time.monotonic() as
the event arrives; where inotify is missing, a thread polling every
millisecond instead.

    w = DirWatcher(path); w.start()
    ... w.seen() -> {name: monotonic time first seen} ...
    w.stop()
"""
import ctypes
import ctypes.util
import os
import select
import struct
import threading
import time

IN_CREATE = 0x100
IN_MOVED_TO = 0x80
_EVENT = struct.Struct("iIII")   # wd, mask, cookie, len; then the name


class DirWatcher:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.times = {}
        self.fd = None
        self.kind = "inotify"
        self.stop_r, self.stop_w = os.pipe()
        self.thread = None
        try:
            self._inotify()
        except OSError:
            self.kind = "polling"

    def _inotify(self):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(fd, os.fsencode(self.path), IN_CREATE | IN_MOVED_TO) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, "inotify_add_watch %s" % self.path)
        self.fd = fd

    def start(self):
        # Files there already are not news.
        for name in os.listdir(self.path):
            self.times[name] = None
        target = self._read_events if self.fd is not None else self._poll
        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def _note(self, name, when):
        with self.lock:
            self.times.setdefault(name, when)

    def _read_events(self):
        while True:
            ready, _, _ = select.select([self.fd, self.stop_r], [], [])
            when = time.monotonic()
            if self.stop_r in ready:
                return
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            off = 0
            while off + _EVENT.size <= len(data):
                _, _, _, n = _EVENT.unpack_from(data, off)
                name = data[off + _EVENT.size:off + _EVENT.size + n].rstrip(b"\0")
                off += _EVENT.size + n
                if name:
                    self._note(os.fsdecode(name), when)

    def _poll(self):
        while True:
            ready, _, _ = select.select([self.stop_r], [], [], 0.001)
            if ready:
                return
            when = time.monotonic()
            for name in os.listdir(self.path):
                self._note(name, when)

    def seen(self):
        """{name: time first seen} of the files that appeared since start."""
        with self.lock:
            return {k: v for k, v in self.times.items() if v is not None}

    def stop(self):
        os.write(self.stop_w, b"x")
        if self.thread is not None:
            self.thread.join()
        for fd in (self.fd, self.stop_r, self.stop_w):
            if fd is not None:
                os.close(fd)
        self.fd = None
