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

struct watched {
	char *path;             /* the maildir */
	int newfd;              /* its new/ */
	int wd;
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

static uint64_t wall_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
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
static void look_at(struct watcher *w, struct watched *d, const char *name, int from_create)
{
	uint64_t arrival = wall_usec();
	struct stat st;
	char *text;
	const char *why;

	if (name[0] == '.')
		return;
	int fd = openat(d->newfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return;         /* gone already (seen by the scan and an event) */
		ignore(w, d, name, errno == ELOOP ? "a symbolic link" : strerror(errno));
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		ignore(w, d, name, "not a regular file");
		return;
	}
	if (from_create && st.st_size == 0) {
		close(fd);
		log_debug("%s/new/%s: created empty: looked at again once written", d->path, name);
		return;
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
		return;
	}
	if (r == PROBE_BAD) {
		char *m = xasprintf("bad probe header (%s)", why);
		ignore(w, d, name, m);
		free(m);
		return;
	}
	if (unlinkat(d->newfd, name, 0) < 0) {
		if (errno != ENOENT)
			log_warn("%s/new/%s: cannot remove: %s", d->path, name, strerror(errno));
		if (errno == ENOENT)
			return;         /* somebody else took it: not ours to count */
	}
	w->fn(&id, arrival, d->path, name, w->arg);
}

static void scan(struct watcher *w, struct watched *d)
{
	int fd = dup(d->newfd);
	DIR *dir = fd < 0 ? NULL : fdopendir(fd);
	if (dir == NULL) {
		log_warn("%s/new: %s", d->path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
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
		look_at(w, d, names[i], 0);
		free(names[i]);
	}
	free(names);
}

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
			if (ev->mask & IN_IGNORED) {
				log_warn("%s/new is no longer watched (removed?)", d->path);
				d->wd = -1;
				continue;
			}
			/* IN_CLOSE_WRITE: a file created here and written after its
			 * IN_CREATE is looked at again (a probe counted already is
			 * gone by then: nothing counts twice) */
			if (ev->len > 0 && (ev->mask & (IN_MOVED_TO | IN_CREATE | IN_CLOSE_WRITE)) &&
			    !(ev->mask & IN_ISDIR))
				look_at(w, d, ev->name, (ev->mask & IN_CREATE) != 0);
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

int watcher_add(struct watcher *w, const char *maildir)
{
	static const char *const subdirs[] = { "tmp", "new", "cur" };

	for (int i = 0; i < w->ndirs; i++) {
		if (strcmp(w->dirs[i].path, maildir) == 0)
			return 0;
	}
	if (w->ndirs == MAX_DIRS) {
		log_warn("%s: at most %d maildirs", maildir, MAX_DIRS);
		return -1;
	}
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
	char *newdir = xasprintf("%s/new", maildir);
	struct watched *d = &w->dirs[w->ndirs];
	d->newfd = open(newdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (d->newfd < 0) {
		log_warn("%s: %s", newdir, strerror(errno));
		free(newdir);
		return -1;
	}
	d->wd = inotify_add_watch(w->ifd, newdir, IN_MOVED_TO | IN_CREATE | IN_CLOSE_WRITE |
	    IN_ONLYDIR);
	if (d->wd < 0) {
		log_warn("inotify %s: %s", newdir, strerror(errno));
		close(d->newfd);
		free(newdir);
		return -1;
	}
	free(newdir);
	d->path = xstrdup(maildir);
	w->ndirs++;
	return 0;
}

void watcher_scan_all(struct watcher *w)
{
	for (int i = 0; i < w->ndirs; i++)
		scan(w, &w->dirs[i]);
}

void watcher_free(struct watcher *w)
{
	if (w == NULL)
		return;
	for (int i = 0; i < w->ndirs; i++) {
		close(w->dirs[i].newfd);
		free(w->dirs[i].path);
	}
	event_free(w->ev);
	close(w->ifd);
	strmap_free(w->ignored);
	free(w);
}
