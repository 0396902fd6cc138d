/*
 * watcher.h - watching the probe maildirs for arrivals with inotify
 * (IN_MOVED_TO, IN_CREATE and IN_CLOSE_WRITE on DIR/new), never by
 * polling.  A file created empty is looked at again when it is closed
 * after writing.  When new/ is removed or renamed (IN_DELETE_SELF,
 * IN_MOVE_SELF, IN_IGNORED) it is created again, watched again and
 * looked through once.
 *
 * Each maildir is created (tmp, new, cur) when missing, watched, then
 * scanned once for what arrived before.  A file is opened with O_NOFOLLOW
 * and at most PROBE_READ_MAX bytes of it are read; a probe (one with the
 * probe header) is handed to the arrival callback and removed; anything
 * else is left alone and logged once.
 */
#ifndef MM_WATCHER_H
#define MM_WATCHER_H

#include "mailmond/probe_msg.h"

#include <stdint.h>

struct event_base;
struct watcher;

/* A probe arrived (monotonic and wall-clock usec) in maildir dir. */
typedef void (*watcher_arrival_fn)(const struct probe_id *id, uint64_t arrival_mono,
    uint64_t arrival_wall, const char *dir, const char *file, void *arg);

struct watcher *watcher_new(struct event_base *base, watcher_arrival_fn fn, void *arg);
/* Add a maildir (several probes may share one: added once).  0, or -1
 * (logged). */
int watcher_add(struct watcher *w, const char *maildir);
/* Look through DIR/new of every maildir once (after all were added). */
void watcher_scan_all(struct watcher *w);
/* Look through maildir/new once more (before a probe there is declared
 * late or lost: inotify may have missed it, as on NFS written by another
 * host).  Probes found so are logged once per maildir as a hint. */
void watcher_rescan(struct watcher *w, const char *maildir);
void watcher_free(struct watcher *w);

#endif
