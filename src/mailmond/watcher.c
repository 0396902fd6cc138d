/*
 * watcher.c - the probe maildirs' new/ directories through inotify (see
 * watcher.h).
 */
#include "mailmond/watcher.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/strmap.h"
#include "lib/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_DIRS 64
/* Names of files that are not probes, remembered so that each is logged
 * once; beyond this many the memory is cleared. */
#define IGNORED_MAX 10000
#define WATCH_MASK (IN_MOVED_TO | IN_CREATE | IN_CLOSE_WRITE | IN_DELETE_SELF | \
	IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW)

struct watched {
	char *path;             /* the maildir */
	/* its new/, open only while looked through: an open descriptor would
	 * keep inotify from reporting its removal (IN_DELETE_SELF) */
	int newfd;
	int wd;
	int rescan_found;       /* a rescan found probes: logged once */
};

struct watcher {
	int ifd;
	struct event *ev;
	struct watched dirs[MAX_DIRS];
	int ndirs;
	struct strmap *ignored; /* "wd/name" of files left alone */
	watcher_arrival_fn fn;
	void *arg;
};

static uint64_t clock_usec(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Leave a file alone, saying so once. */
static void ignore(struct watcher *w, struct watched *d, const char *name, const char *why)
{
	char *key = xasprintf("%d/%s", d->wd, name);
	if (strmap_get(w->ignored, key) == NULL) {
		if (strmap_count(w->ignored) >= IGNORED_MAX) {
			strmap_free(w->ignored);
			w->ignored = strmap_new();
		}
		strmap_put(w->ignored, key, (void *)1);
		log_info("%s/new/%s: %s: left alone", d->path, name, why);
	}
	free(key);
}

/* Look at new/NAME.  from_create: it was just created, so possibly still
 * empty, to be written after: then the IN_CLOSE_WRITE that follows is
 * waited for instead of calling it "not a probe". */
/* 1 when it was a probe (handed to the callback), else 0. */
static int look_at(struct watcher *w, struct watched *d, const char *name, int from_create)
{
	uint64_t arrival_mono = clock_usec(CLOCK_MONOTONIC);
	uint64_t arrival_wall = clock_usec(CLOCK_REALTIME);
	struct stat st;
	char *text;
	const char *why;

	if (name[0] == '.')
		return 0;
	int fd = openat(d->newfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;         /* gone already (seen by the scan and an event) */
		ignore(w, d, name, errno == ELOOP ? "a symbolic link" : strerror(errno));
		return 0;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		ignore(w, d, name, "not a regular file");
		return 0;
	}
	if (from_create && st.st_size == 0) {
		close(fd);
		log_debug("%s/new/%s: created empty: looked at again once written", d->path, name);
		return 0;
	}
	text = xmalloc(PROBE_READ_MAX);
	size_t len = 0;
	while (len < PROBE_READ_MAX) {
		ssize_t n = read(fd, text + len, PROBE_READ_MAX - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	struct probe_id id;
	enum probe_parse_result r = probe_msg_parse(text, len, &id, &why);
	free(text);
	if (r == PROBE_NONE) {
		ignore(w, d, name, "not a probe");
		return 0;
	}
	if (r == PROBE_BAD) {
		char *m = xasprintf("bad probe header (%s)", why);
		ignore(w, d, name, m);
		free(m);
		return 0;
	}
	if (unlinkat(d->newfd, name, 0) < 0) {
		if (errno != ENOENT)
			log_warn("%s/new/%s: cannot remove: %s", d->path, name, strerror(errno));
		if (errno == ENOENT)
			return 0;         /* somebody else took it: not ours to count */
	}
	w->fn(&id, arrival_mono, arrival_wall, d->path, name, w->arg);
	return 1;
}

/* Open d->path/new as d->newfd (no symbolic link).  0, or -1 (logged
 * unless it is gone: its IN_DELETE_SELF or IN_MOVE_SELF follows). */
static int enter(struct watched *d)
{
	char *newdir = xasprintf("%s/new", d->path);
	d->newfd = open(newdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (d->newfd < 0 && errno != ENOENT)
		log_warn("%s: %s", newdir, strerror(errno));
	free(newdir);
	return d->newfd < 0 ? -1 : 0;
}

static void leave(struct watched *d)
{
	close(d->newfd);
	d->newfd = -1;
}

/* Look through new/ once; the number of probes found. */
static int scan(struct watcher *w, struct watched *d)
{
	int found = 0;
	if (enter(d) < 0)
		return 0;
	int fd = dup(d->newfd);
	DIR *dir = fd < 0 ? NULL : fdopendir(fd);
	if (dir == NULL) {
		log_warn("%s/new: %s", d->path, strerror(errno));
		if (fd >= 0)
			close(fd);
		leave(d);
		return 0;
	}
	rewinddir(dir);
	/* collect first: look_at removes entries */
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(dir)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 32;
			names = xreallocarray(names, cap, sizeof(*names));
		}
		names[n++] = xstrdup(e->d_name);
	}
	closedir(dir);
	for (size_t i = 0; i < n; i++) {
		found += look_at(w, d, names[i], 0);
		free(names[i]);
	}
	free(names);
	leave(d);
	return found;
}

static void rewatch(struct watcher *w, struct watched *d, const char *what);

static struct watched *by_wd(struct watcher *w, int wd)
{
	for (int i = 0; i < w->ndirs; i++) {
		if (w->dirs[i].wd == wd)
			return &w->dirs[i];
	}
	return NULL;
}

static void on_inotify(evutil_socket_t fd, short what, void *arg)
{
	struct watcher *w = arg;
	char ev_buf[16 * (sizeof(struct inotify_event) + NAME_MAX + 1)]
	    __attribute__((aligned(__alignof__(struct inotify_event))));

	for (;;) {
		ssize_t n = read(fd, ev_buf, sizeof(ev_buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		for (char *p = ev_buf; p < ev_buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				log_warn("inotify queue overflow: scanning the maildirs again");
				watcher_scan_all(w);
				continue;
			}
			struct watched *d = by_wd(w, ev->wd);
			if (d == NULL)
				continue;
			if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
				/* the watch on new/ is gone (IN_IGNORED), or about to go,
				 * or watches a directory moved elsewhere */
				if (ev->mask & IN_IGNORED)
					d->wd = -1;     /* the kernel removed it already */
				rewatch(w, d, ev->mask & IN_MOVE_SELF ? "was renamed" :
				    ev->mask & IN_DELETE_SELF ? "was removed" :
				    "lost its watch");
				continue;
			}
			/* IN_CLOSE_WRITE: a file created here and written after its
			 * IN_CREATE is looked at again (a probe counted already is
			 * gone by then: nothing counts twice) */
			if (ev->len > 0 && (ev->mask & (IN_MOVED_TO | IN_CREATE | IN_CLOSE_WRITE)) &&
			    !(ev->mask & IN_ISDIR) && enter(d) == 0) {
				look_at(w, d, ev->name, (ev->mask & IN_CREATE) != 0);
				leave(d);
			}
		}
	}
}

struct watcher *watcher_new(struct event_base *base, watcher_arrival_fn fn, void *arg)
{
	struct watcher *w = xcalloc(1, sizeof(*w));
	w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->ifd < 0) {
		log_warn("inotify: %s", strerror(errno));
		free(w);
		return NULL;
	}
	w->ev = event_new(base, w->ifd, EV_READ | EV_PERSIST, on_inotify, w);
	event_add(w->ev, NULL);
	w->ignored = strmap_new();
	w->fn = fn;
	w->arg = arg;
	return w;
}

/* Create the maildir (tmp, new, cur) where missing.  0, or -1 (logged). */
static int make_maildir(const char *maildir)
{
	static const char *const subdirs[] = { "tmp", "new", "cur" };

	if (mkdir_p(maildir, 0700) < 0) {
		log_warn("%s: cannot create: %s", maildir, strerror(errno));
		return -1;
	}
	for (int i = 0; i < 3; i++) {
		char *sub = xasprintf("%s/%s", maildir, subdirs[i]);
		int r = mkdir(sub, 0700);
		if (r < 0 && errno != EEXIST) {
			log_warn("%s: cannot create: %s", sub, strerror(errno));
			free(sub);
			return -1;
		}
		free(sub);
	}
	return 0;
}

/* Watch d->path/new as d->wd.  0, or -1 (logged). */
static int open_new(struct watcher *w, struct watched *d)
{
	char *newdir = xasprintf("%s/new", d->path);
	d->newfd = -1;
	d->wd = inotify_add_watch(w->ifd, newdir, WATCH_MASK);
	if (d->wd < 0)
		log_warn("inotify %s: %s", newdir, strerror(errno));
	free(newdir);
	return d->wd < 0 ? -1 : 0;
}

/* new/ was removed or renamed (or its watch is gone otherwise): create it
 * again, watch the new one and look through it once. */
static void rewatch(struct watcher *w, struct watched *d, const char *what)
{
	if (d->wd >= 0)
		inotify_rm_watch(w->ifd, d->wd);    /* (after a rename it still holds) */
	d->wd = -1;
	if (make_maildir(d->path) < 0 || open_new(w, d) < 0) {
		log_warn("%s/new %s: not watched any more", d->path, what);
		return;
	}
	log_warn("%s/new %s: created again and watched", d->path, what);
	scan(w, d);
}

int watcher_add(struct watcher *w, const char *maildir)
{
	for (int i = 0; i < w->ndirs; i++) {
		if (strcmp(w->dirs[i].path, maildir) == 0)
			return 0;
	}
	if (w->ndirs == MAX_DIRS) {
		log_warn("%s: at most %d maildirs", maildir, MAX_DIRS);
		return -1;
	}
	if (make_maildir(maildir) < 0)
		return -1;
	struct watched *d = &w->dirs[w->ndirs];
	d->path = xstrdup(maildir);
	if (open_new(w, d) < 0) {
		free(d->path);
		d->path = NULL;
		return -1;
	}
	w->ndirs++;
	return 0;
}

void watcher_scan_all(struct watcher *w)
{
	for (int i = 0; i < w->ndirs; i++)
		scan(w, &w->dirs[i]);
}

void watcher_rescan(struct watcher *w, const char *maildir)
{
	for (int i = 0; i < w->ndirs; i++) {
		struct watched *d = &w->dirs[i];
		if (strcmp(d->path, maildir) != 0)
			continue;
		if (d->wd < 0)
			rewatch(w, d, "is not watched");   /* (looks through it) */
		else if (scan(w, d) > 0 && !d->rescan_found) {
			d->rescan_found = 1;
			log_warn("%s/new: probes found by a rescan, not by inotify: inotify "
			    "may not see this file system's changes (NFS written by another "
			    "host?); arrivals there are only seen when a probe is due", d->path);
		}
		return;
	}
}

void watcher_free(struct watcher *w)
{
	if (w == NULL)
		return;
	for (int i = 0; i < w->ndirs; i++) {
		free(w->dirs[i].path);
	}
	event_free(w->ev);
	close(w->ifd);
	strmap_free(w->ignored);
	free(w);
}
