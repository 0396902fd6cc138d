/*
 * backlog.c - the queue files waiting on disk, not loaded: the index of
 * them (diskindex.c), the scans that list the directories into it, and the
 * refill that loads from it as the active set has room.
 *
 * The index is kept up to date by the qmgr's own moves: a deferred message
 * put back to disk (evict_msg) goes in with its due time and its user's
 * lane, new mail left on disk for lack of room with its arrival, and a
 * message loaded leaves it.  A refill takes from it, new mail (oldest
 * first) and due deferred mail (round-robin over the users' lanes, oldest
 * due first in each) in turns, and never lists the directories.  A scan,
 * at start and every queue_scan_interval, lists them in slices of
 * SCAN_SLICE files per turn of the event loop (new mail and results are
 * served in between) and reconciles the index with them: files added by
 * hand go in (a deferred one with its mtime as due time, in its user's
 * lane when the mtime has a tag, see below), files removed by hand are
 * forgotten.
 *
 * A message put back to disk keeps its lane across a restart: its user's
 * tag (backlog_tag, 1..999999) is in the nanoseconds of its file's mtime,
 * as tag * 1000 + TAG_MARK, which the scan reads with the due time.
 */
#include "qmgr/qmgr_private.h"
#include "qmgr/diskindex.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/strmap.h"
#include "lib/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCAN_SLICE 2000
/* Lanes: DI_LANE_FRESH, DI_LANE_UNKNOWN, then mail for the relay, then
 * one per user. */
#define LANE_RELAY 2
#define LANE_FIRST_USER 3

static struct diskindex *ix;
static struct event *refill_ev, *due_ev, *scan_ev;
static time_t due_armed;        /* when due_ev fires (0: not armed) */
static uint32_t next_lane = LANE_FIRST_USER;
/* Lanes by tag (its decimal), and each lane's tag. */
static struct strmap *lane_of_tag;
static uint32_t *tag_of_lane;
#define TAG_MAX 999999
#define TAG_MARK 999            /* an mtime's nanoseconds: tag * 1000 + TAG_MARK */
/* Whose turn it is at the next room in the active set: due deferred mail
 * (1) or new mail (0).  Kept across refills: when room frees one message
 * at a time, a refill that always began with new mail would never load
 * deferred mail while new mail waits. */
static int deferred_turn;

static const enum qdir scan_order[] = { QDIR_ACTIVE, QDIR_INCOMING, QDIR_DEFERRED };
static struct {
	int running;
	int again;              /* another scan was asked for meanwhile */
	size_t step;            /* in scan_order */
	DIR *d;
	size_t added, gone;
	int first;              /* the one at start */
} scan;

static void refill(void);

static void publish(void)
{
	char oldest[DI_QID_MAX];
	di_oldest(ix, oldest);
	figures_scan_begin();
	figures_disk(di_count_fresh(ix), di_count_deferred(ix),
	    oldest[0] ? figures_qid_usec(oldest) : 0);
}

/* The due timer fires at the earliest due time in the index, when that
 * is still to come (what is due already is loaded as room frees). */
static void arm_due(void)
{
	uint32_t due;
	time_t now = time(NULL);

	if (!di_next_due(ix, &due) || (time_t)due <= now) {
		if (due_armed != 0)
			evtimer_del(due_ev);
		due_armed = 0;
		return;
	}
	if (due_armed != 0 && due_armed <= (time_t)due)
		return;
	struct timeval tv = { .tv_sec = (time_t)due - now };
	evtimer_add(due_ev, &tv);
	due_armed = (time_t)due;
}

static void due_fire(evutil_socket_t fd, short what, void *arg)
{
	due_armed = 0;
	if (!Q.stopping)
		refill();
}

uint32_t backlog_tag(struct user *u)
{
	const char *key = u != NULL ? u->key : "";
	uint32_t h = 2166136261u;

	if (u != NULL && u->lane_tag != 0)
		return u->lane_tag;
	for (const char *p = key; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	h = 1 + h % TAG_MAX;
	if (u != NULL)
		u->lane_tag = h;
	return h;
}

long backlog_mtime_nsec(const struct qmsg *m)
{
	return m->lane_tag != 0 ? (long)m->lane_tag * 1000 + TAG_MARK : 0;
}

/* The lane of a tag: one per tag seen (two users whose tags are the same
 * share one), DI_LANE_UNKNOWN for none or past DI_LANES_MAX lanes. */
static uint32_t lane_for(uint32_t tag)
{
	char key[16];
	if (tag == 0 || tag > TAG_MAX)
		return DI_LANE_UNKNOWN;
	snprintf(key, sizeof(key), "%u", tag);
	uintptr_t lane = (uintptr_t)strmap_get(lane_of_tag, key);
	if (lane != 0)
		return (uint32_t)lane;
	if (next_lane > DI_LANES_MAX)
		return DI_LANE_UNKNOWN;
	lane = next_lane++;
	strmap_put(lane_of_tag, key, (void *)lane);
	tag_of_lane = xreallocarray(tag_of_lane, next_lane, sizeof(*tag_of_lane));
	tag_of_lane[lane] = tag;
	return (uint32_t)lane;
}

static uint32_t tag_of_mtime(const struct stat *st)
{
	long ns = st->st_mtim.tv_nsec;
	return ns % 1000 == TAG_MARK ? (uint32_t)(ns / 1000) : 0;
}

static void put(const char *qid, enum qdir dir, time_t due, uint32_t lane)
{
	struct di_item it = { .dir = (int)dir, .due = due > 0 ? (uint32_t)due : 0, .lane = lane };
	snprintf(it.qid, sizeof(it.qid), "%s", qid);
	if (di_put(ix, &it) < 0)
		log_warn("qid=%s: cannot be indexed", qid);
}

void backlog_put_msg(const struct qmsg *m)
{
	put(m->qid, QDIR_DEFERRED, m->due, lane_for(m->lane_tag));
	arm_due();
}

void backlog_put_file(const char *qid, enum qdir dir, const struct stat *st)
{
	if (di_seen(ix, qid))
		return;
	if (dir == QDIR_DEFERRED)
		put(qid, dir, st ? st->st_mtime : 0, st ? lane_for(tag_of_mtime(st)) : DI_LANE_UNKNOWN);
	else
		put(qid, dir, 0, DI_LANE_FRESH);
	Q.backlog = 1;
	if (dir == QDIR_DEFERRED)
		arm_due();
}

void backlog_loaded(const char *qid)
{
	di_del(ix, qid);
}

/* Load from the index as far as the active set has room: new mail and due
 * deferred mail in turns. */
static void refill(void)
{
	time_t now = time(NULL);
	struct di_item it;

	for (;;) {
		int take_due = deferred_turn;
		int got = take_due ? di_take_due(ix, (uint32_t)now, &it) : di_take_fresh(ix, &it);
		if (!got) {
			take_due = !take_due;
			got = take_due ? di_take_due(ix, (uint32_t)now, &it) : di_take_fresh(ix, &it);
		}
		if (!got)
			break;
		if (sched_load(it.qid, (enum qdir)it.dir) < 0) {
			di_put_back(ix, &it);   /* no room: the turn stays with its side */
			break;
		}
		deferred_turn = !take_due;
	}
	Q.backlog = scan.running || di_count_fresh(ix) > 0 || di_any_due(ix, (uint32_t)now);
	arm_due();
	publish();
}

static void refill_fire(evutil_socket_t fd, short what, void *arg)
{
	if (!Q.stopping)
		refill();
}

void qmgr_refill_soon(void)
{
	struct timeval tv = { 0 };
	if (refill_ev != NULL && !evtimer_pending(refill_ev, NULL))
		evtimer_add(refill_ev, &tv);
}

static void mark_flushed(const char *qid, uint32_t lane, void *ctx)
{
	long ns = lane >= LANE_RELAY && lane < next_lane ? (long)tag_of_lane[lane] * 1000 + TAG_MARK : 0;
	struct timespec times[2] = { { .tv_nsec = UTIME_OMIT },
		{ .tv_sec = QMGR_MTIME_FLUSHED, .tv_nsec = ns } };
	size_t *n = ctx;
	if (utimensat(Q.queue_dirfd[QDIR_DEFERRED], qid, times, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno != ENOENT)
			log_warn("qid=%s: cannot mark it for the flush: %s", qid, strerror(errno));
		return;
	}
	(*n)++;
}

void qmgr_flush_disk(void)
{
	size_t n = 0;
	di_all_due(ix, QMGR_MTIME_FLUSHED, mark_flushed, &n);
	if (n > 0)
		log_info("flush: %zu deferred message%s on disk retried as room frees", n,
		    n == 1 ? "" : "s");
	arm_due();
	refill();
}

/* ---- the scans ---- */

static void scan_next_dir(void)
{
	if (scan.d != NULL)
		closedir(scan.d);
	scan.d = NULL;
	while (scan.step < sizeof(scan_order) / sizeof(*scan_order)) {
		int fd = dup(Q.queue_dirfd[scan_order[scan.step]]);
		scan.d = fd >= 0 ? fdopendir(fd) : NULL;
		if (scan.d != NULL) {
			rewinddir(scan.d);
			return;
		}
		log_warn("cannot scan the queue: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		scan.step++;
	}
}

static void scan_done(void)
{
	scan.running = 0;
	if (scan.first || scan.added > 0 || scan.gone > 0)
		log_info("queue listed: %zu message%s loaded, %zu new mail and %zu deferred on disk "
		    "(%zu found, %zu gone)", strmap_count(Q.msgs), strmap_count(Q.msgs) == 1 ? "" : "s",
		    di_count_fresh(ix), di_count_deferred(ix), scan.added, scan.gone);
	scan.first = 0;
	arm_due();
	refill();
	if (scan.again) {
		scan.again = 0;
		backlog_scan();
	}
}

/* One slice of the scan: up to SCAN_SLICE directory entries. */
static void scan_fire(evutil_socket_t fd, short what, void *arg)
{
	struct dirent *de;
	size_t n = 0;

	if (Q.stopping) {
		if (scan.d != NULL)
			closedir(scan.d);
		scan.d = NULL;
		scan.running = 0;
		return;
	}
	while (scan.d != NULL && n < SCAN_SLICE) {
		enum qdir dir = scan_order[scan.step];
		errno = 0;
		de = readdir(scan.d);
		if (de == NULL) {
			if (errno != 0)
				log_warn("cannot scan the queue: %s", strerror(errno));
			else
				scan.gone += di_sweep(ix, (int)dir);
			scan.step++;
			scan_next_dir();
			continue;
		}
		n++;
		if (de->d_name[0] == '.' || strlen(de->d_name) >= QID_MAX || !qid_valid(de->d_name) ||
		    strmap_get(Q.msgs, de->d_name) != NULL || di_seen(ix, de->d_name))
			continue;
		if (dir == QDIR_DEFERRED) {
			struct stat st;
			if (fstatat(Q.queue_dirfd[dir], de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			put(de->d_name, dir, st.st_mtime, lane_for(tag_of_mtime(&st)));
		} else {
			put(de->d_name, dir, 0, DI_LANE_FRESH);
		}
		scan.added++;
	}
	if (scan.d == NULL) {
		scan_done();
		return;
	}
	/* serve what the slice found, then the next slice after what waits */
	refill();
	struct timeval tv = { 0 };
	evtimer_add(scan_ev, &tv);
}

void backlog_scan(void)
{
	if (scan.running) {
		scan.again = 1;
		return;
	}
	scan.running = 1;
	scan.step = 0;
	scan.added = scan.gone = 0;
	di_scan_begin(ix);
	scan_next_dir();
	Q.backlog = 1;
	struct timeval tv = { 0 };
	evtimer_add(scan_ev, &tv);
}

void backlog_init(void)
{
	ix = di_new();
	lane_of_tag = strmap_new();
	/* the relay's lane first */
	tag_of_lane = xcalloc(LANE_FIRST_USER, sizeof(*tag_of_lane));
	next_lane = LANE_RELAY;
	lane_for(backlog_tag(NULL));
	refill_ev = evtimer_new(Q.base, refill_fire, NULL);
	due_ev = evtimer_new(Q.base, due_fire, NULL);
	scan_ev = evtimer_new(Q.base, scan_fire, NULL);
	scan.first = 1;
}

void backlog_free(void)
{
	if (scan.d != NULL)
		closedir(scan.d);
	scan.d = NULL;
	scan.running = 0;
	event_free(refill_ev);
	event_free(due_ev);
	event_free(scan_ev);
	refill_ev = due_ev = scan_ev = NULL;
	due_armed = 0;
	di_free(ix);
	ix = NULL;
	strmap_free(lane_of_tag);
	lane_of_tag = NULL;
	free(tag_of_lane);
	tag_of_lane = NULL;
}

void backlog_status(struct buf *b)
{
	buf_printf(b, "on disk new=%zu deferred=%zu lanes=%zu scan=%s\n", di_count_fresh(ix),
	    di_count_deferred(ix), di_lanes(ix), scan.running ? "running" : "idle");
}
