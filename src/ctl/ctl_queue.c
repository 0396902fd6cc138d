/*
 * ctl_queue.c - `mailprocctl queue` (list) and `queue show ID`.
 *
 * The listing covers incoming/ (committed files only), active/, deferred/
 * and corrupt/, oldest first:
 *   QID QUEUE age=AGE size=BYTES from=<SENDER>
 *     to=<RCPT> state=STATE attempts=N [error="TEXT"]
 *   ...
 *   N messages            ("queue is empty" when there are none)
 * A file that cannot be parsed is listed as
 *   QID QUEUE age=AGE size=FILEBYTES unreadable: REASON
 * Files vanishing while we read (delivered meanwhile) are skipped.
 */
#include "conf/config.h"
#include "ctl/ctl.h"
#include "lib/xalloc.h"
#include "queue/qfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* incoming/ holds committed files the qmgr has not taken yet (and files
 * being written, which the listing skips) */
const char *const ctl_queue_dirs[CTL_QUEUE_NDIRS] = { "incoming", "active", "deferred", "corrupt" };

struct qitem {
	char qid[QID_MAX];
	const char *dir;
	int64_t when;           /* arrival, or mtime when unreadable */
	int ok;                 /* q is valid */
	struct qfile q;
	off_t file_size;
	char reason[128];
};

struct qlist {
	struct qitem *items;
	size_t n, cap;
};

/* Open dir/qid below queue_dir, refusing symlinks.  -1 with errno. */
int ctl_queue_open(const char *queue_dir, const char *dir, const char *qid)
{
	char *path = xasprintf("%s/%s/%s", queue_dir, dir, qid);
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	int saved = errno;
	free(path);
	errno = saved;
	return fd;
}

/* Read one file into it; 0, or -1 when it vanished. */
static int read_item(int fd, struct qitem *it)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -1;
	if (strcmp(it->dir, "incoming") == 0 && !qfile_mode_committed(st.st_mode))
		return -1;      /* still being received */
	it->file_size = st.st_size;
	it->when = st.st_mtime;
	if (qfile_read(fd, &it->q) == 0) {
		it->ok = 1;
		it->when = it->q.arrival_sec;
		return 0;
	}
	snprintf(it->reason, sizeof(it->reason), "%s",
	    errno == EBADMSG ? "malformed or uncommitted" : strerror(errno));
	return 0;
}

static void add_file(struct qlist *l, int dfd, const char *dir, const char *name)
{
	if (!qid_valid(name) || strlen(name) >= QID_MAX)
		return;
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return;         /* vanished, or not for us */
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->items = xreallocarray(l->items, l->cap, sizeof(*l->items));
	}
	struct qitem *it = &l->items[l->n];
	memset(it, 0, sizeof(*it));
	snprintf(it->qid, sizeof(it->qid), "%s", name);
	it->dir = dir;
	if (read_item(fd, it) == 0)
		l->n++;
	close(fd);
}

static int scan_dir(struct qlist *l, const char *queue_dir, const char *dir)
{
	char *path = xasprintf("%s/%s", queue_dir, dir);
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (d == NULL) {
		ctl_error("%s: %s", path, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		free(path);
		return -1;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.')
			add_file(l, dfd, dir, de->d_name);
	}
	closedir(d);
	free(path);
	return 0;
}

static int by_age(const void *a, const void *b)
{
	const struct qitem *x = a, *y = b;
	if (x->when != y->when)
		return x->when < y->when ? -1 : 1;
	return strcmp(x->qid, y->qid);
}

void ctl_print_recipient(const char *prefix, const struct qrcpt *r)
{
	printf("%s<%s> state=%s attempts=%d", prefix, r->address,
	    rcpt_state_name(r->state), r->attempts);
	if (r->last_error != NULL) {
		printf(" error=");
		ctl_print_quoted(r->last_error);
	}
	putchar('\n');
}

static void print_item(const struct qitem *it, int64_t now)
{
	char age[32];
	ctl_format_age(now - it->when, age, sizeof(age));
	if (!it->ok) {
		printf("%s %s age=%s size=%lld unreadable: %s\n", it->qid, it->dir, age,
		    (long long)it->file_size, it->reason);
		return;
	}
	printf("%s %s age=%s size=%llu from=<%s>\n", it->qid, it->dir, age,
	    (unsigned long long)it->q.msg_size, it->q.sender);
	for (size_t i = 0; i < it->q.nrcpt; i++)
		ctl_print_recipient("  to=", &it->q.rcpt[i]);
}

int ctl_queue_list(const struct config *cfg, char **args, int nargs)
{
	struct qlist l = { 0 };
	int status = CTL_OK;

	for (int i = 0; i < CTL_QUEUE_NDIRS; i++) {
		if (scan_dir(&l, cfg->queue_dir, ctl_queue_dirs[i]) < 0)
			status = CTL_ERROR;
	}
	if (l.n > 0)
		qsort(l.items, l.n, sizeof(*l.items), by_age);
	int64_t now = (int64_t)time(NULL);
	for (size_t i = 0; i < l.n; i++) {
		print_item(&l.items[i], now);
		if (l.items[i].ok)
			qfile_free(&l.items[i].q);
	}
	if (l.n == 0)
		printf("queue is empty\n");
	else
		printf("%zu message%s\n", l.n, l.n == 1 ? "" : "s");
	free(l.items);
	return status;
}
