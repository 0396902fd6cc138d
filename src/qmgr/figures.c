/*
 * figures.c - the qmgr's figures (metrics/qmgr_figures.h), kept in its
 * metrics region through metrics_qmgr: the queue by state and its oldest
 * message, deliveries by status and action, delays by stage, spam checks,
 * workers by state, bounces.
 *
 * Counters only grow, and survive a restart of the qmgr (the region is the
 * master's).  Gauges describe this qmgr's own queue and workers: they
 * start from zero (figures_start) and are kept as things change, never by
 * a scan per change.  The queue is the active set (exact, kept as messages
 * come, move and go; the oldest arrival from a heap, O(log n) per change)
 * plus what the last scan of the queue directories left on disk (refill,
 * once a minute at least, and as room frees), and corrupt/ as counted at
 * the last minute's scan.
 */
#include "qmgr/qmgr_private.h"
#include "lib/msgtypes.h"
#include "lib/xalloc.h"
#include "metrics/qmgr_figures.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define USEC 1000000ull

/* The active set by queue state, and what the last scan left on disk. */
static size_t loaded[FQ_COUNT];
static size_t on_disk[FQ_COUNT];
static uint64_t disk_oldest_usec;       /* 0: none */
/* Put back to disk since the scan under way listed the directories: the
 * scan's counts do not have them. */
static size_t evicted_deferred;
static uint64_t evicted_oldest_usec;

/* The loaded messages, oldest arrival on top. */
static struct qmsg **heap;
static size_t heap_n, heap_cap;

static uint64_t now_usec(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * USEC + (uint64_t)tv.tv_usec;
}

static uint64_t arrival_usec(const struct qmsg *m)
{
	if (m->qf.arrival_sec < 0)
		return 1;
	return (uint64_t)m->qf.arrival_sec * USEC + (uint64_t)m->qf.arrival_usec;
}

/* ---- the heap (fig_heap: the index + 1, 0 while not in it) ---- */

static void heap_set(size_t i, struct qmsg *m)
{
	heap[i] = m;
	m->fig_heap = i + 1;
}

static void heap_up(size_t i)
{
	struct qmsg *m = heap[i];
	while (i > 0 && arrival_usec(heap[(i - 1) / 2]) > arrival_usec(m)) {
		heap_set(i, heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_set(i, m);
}

static void heap_down(size_t i)
{
	struct qmsg *m = heap[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= heap_n)
			break;
		if (c + 1 < heap_n && arrival_usec(heap[c + 1]) < arrival_usec(heap[c]))
			c++;
		if (arrival_usec(heap[c]) >= arrival_usec(m))
			break;
		heap_set(i, heap[c]);
		i = c;
	}
	heap_set(i, m);
}

static void heap_add(struct qmsg *m)
{
	if (heap_n == heap_cap) {
		heap_cap = heap_cap ? 2 * heap_cap : 256;
		heap = xreallocarray(heap, heap_cap, sizeof(*heap));
	}
	heap[heap_n++] = m;
	heap_up(heap_n - 1);
}

static void heap_remove(struct qmsg *m)
{
	size_t i = m->fig_heap - 1;
	m->fig_heap = 0;
	struct qmsg *last = heap[--heap_n];
	if (i == heap_n)
		return;
	heap[i] = last;
	heap_up(i);
	heap_down(last->fig_heap - 1);
}

/* ---- the queue ---- */

static enum fig_queue_state state_of(enum qdir d)
{
	return d == QDIR_DEFERRED ? FQ_DEFERRED : FQ_ACTIVE;
}

static void publish_queue(void)
{
	struct metrics_qmgr *f = metrics_qmgr;
	uint64_t oldest = heap_n > 0 ? arrival_usec(heap[0]) : 0;

	if (disk_oldest_usec != 0 && (oldest == 0 || disk_oldest_usec < oldest))
		oldest = disk_oldest_usec;
	for (int s = 0; s < FQ_COUNT; s++)
		metrics_gauge_set(&f->queue_messages[s], (int64_t)(loaded[s] + on_disk[s]));
	__atomic_store_n(&f->queue_oldest_arrival_usec, oldest, __ATOMIC_RELAXED);
}

void figures_start(void)
{
	struct metrics_qmgr *f = metrics_qmgr;

	memset(loaded, 0, sizeof(loaded));
	memset(on_disk, 0, sizeof(on_disk));
	disk_oldest_usec = 0;
	figures_scan_begin();
	for (int s = 0; s < FW_COUNT; s++)
		metrics_gauge_set(&f->workers[s], 0);
	publish_queue();
}

void figures_msg_in(struct qmsg *m)
{
	m->fig_state = (int)state_of(m->dir);
	loaded[m->fig_state]++;
	heap_add(m);
	publish_queue();
}

void figures_msg_moved(struct qmsg *m)
{
	if (m->fig_heap == 0 || (int)state_of(m->dir) == m->fig_state)
		return;
	loaded[m->fig_state]--;
	m->fig_state = (int)state_of(m->dir);
	loaded[m->fig_state]++;
	publish_queue();
}

void figures_msg_out(struct qmsg *m)
{
	if (m->fig_heap == 0)
		return;
	loaded[m->fig_state]--;
	heap_remove(m);
	publish_queue();
}

static uint64_t older(uint64_t a, uint64_t b)
{
	return a == 0 || (b != 0 && b < a) ? b : a;
}

void figures_msg_to_disk(struct qmsg *m)
{
	uint64_t a = arrival_usec(m);
	on_disk[FQ_DEFERRED]++;
	disk_oldest_usec = older(disk_oldest_usec, a);
	evicted_deferred++;
	evicted_oldest_usec = older(evicted_oldest_usec, a);
	figures_msg_out(m);
}

void figures_scan_begin(void)
{
	evicted_deferred = 0;
	evicted_oldest_usec = 0;
}

void figures_msg_left_on_disk(const char *qid, enum qdir dir)
{
	uint64_t a = figures_qid_usec(qid);
	on_disk[state_of(dir)]++;
	if (a != 0 && (disk_oldest_usec == 0 || a < disk_oldest_usec))
		disk_oldest_usec = a;
	publish_queue();
}

void figures_disk(size_t active, size_t deferred, uint64_t oldest_usec)
{
	on_disk[FQ_ACTIVE] = active;
	on_disk[FQ_DEFERRED] = deferred + evicted_deferred;
	disk_oldest_usec = older(oldest_usec, evicted_oldest_usec);
	figures_scan_begin();
	publish_queue();
}

uint64_t figures_qid_usec(const char *qid)
{
	uint64_t sec = 0, usec = 0;

	for (int i = 0; i < 11; i++) {
		char c = qid[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'Z' ? c - 'A' + 10 : -1;
		if (d < 0)
			return 0;
		if (i < 7)
			sec = sec * 36 + (uint64_t)d;
		else
			usec = usec * 36 + (uint64_t)d;
	}
	return usec < USEC ? sec * USEC + usec : 0;
}

void figures_corrupt_scan(const char *queue_dir)
{
	char path[4096];
	int64_t n = 0;

	snprintf(path, sizeof(path), "%s/corrupt", queue_dir);
	DIR *d = opendir(path);
	if (d == NULL)
		return;         /* none yet, or unreadable: the figure stays */
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		n += qid_valid(de->d_name);
	closedir(d);
	on_disk[FQ_CORRUPT] = (size_t)n;
	publish_queue();
}

void figures_corrupt_add(void)
{
	on_disk[FQ_CORRUPT]++;
	publish_queue();
}

/* ---- deliveries and their delays ---- */

static const enum fig_delivery_action action_fig[RESULT_ACTION_COUNT] = {
	[RESULT_ACTION_NONE] = FA_NONE, [RESULT_ACTION_MAILDIR] = FA_MAILDIR,
	[RESULT_ACTION_MBOX] = FA_MBOX, [RESULT_ACTION_PIPE] = FA_PIPE,
	[RESULT_ACTION_FORWARD] = FA_FORWARD, [RESULT_ACTION_LIST] = FA_LIST,
	[RESULT_ACTION_DISCARD] = FA_DISCARD,
};

static void observe_final(const struct qmsg *m, uint64_t started_usec)
{
	struct metrics_qmgr *f = metrics_qmgr;
	uint64_t now = now_usec(), arrival = arrival_usec(m);
	double total = ((double)now - (double)arrival) / 1e6;
	double queue = total, worker = 0;

	if (started_usec != 0) {
		queue = ((double)started_usec - (double)arrival) / 1e6;
		worker = ((double)now - (double)started_usec) / 1e6;
	}
	metrics_observe(&f->delay[FS_QUEUE], &metrics_delay_bounds, queue);
	metrics_observe(&f->delay[FS_WORKER], &metrics_delay_bounds, worker);
	metrics_observe(&f->delay[FS_TOTAL], &metrics_delay_bounds, total);
}

void figures_result(const struct qmsg *m, const struct delivery_result *r,
    uint64_t started_usec)
{
	enum fig_delivery_status st = r->status == DELIVERY_OK ? FD_DELIVERED :
	    r->status == DELIVERY_PERMFAIL ? FD_BOUNCED : FD_DEFERRED;
	enum fig_delivery_action a = r->action < RESULT_ACTION_COUNT ? action_fig[r->action] : FA_NONE;

	metrics_inc(&metrics_qmgr->deliveries[st][a], 1);
	if (st != FD_DEFERRED)
		observe_final(m, started_usec);
}

void figures_expired(const struct qmsg *m)
{
	metrics_inc(&metrics_qmgr->deliveries[FD_BOUNCED][FA_NONE], 1);
	observe_final(m, 0);
}

void figures_bounce(void)
{
	metrics_inc(&metrics_qmgr->bounces_sent, 1);
}

uint64_t figures_now_usec(void)
{
	return now_usec();
}

/* ---- spam checks ---- */

void figures_spam_verdict(uint32_t verdict, int is_spam)
{
	enum fig_spam_verdict v = verdict != VERDICT_CHECKED ? FV_UNCHECKED : is_spam ? FV_SPAM : FV_HAM;
	metrics_inc(&metrics_qmgr->spam_checks[v], 1);
}

void figures_spam_duration(const struct timespec *since)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double s = (double)(now.tv_sec - since->tv_sec) + (double)(now.tv_nsec - since->tv_nsec) / 1e9;
	metrics_observe(&metrics_qmgr->spam_duration, &metrics_spam_bounds, s);
}

/* ---- workers (fig_state: the state counted + 1, 0 while not counted) ---- */

static enum fig_worker_state worker_state_of(const struct worker *w)
{
	if (w->job == NULL)
		return FW_IDLE;
	return w->check == CHECK_RUNNING ? FW_CHECKING : w->check == CHECK_WAITING ? FW_WAITING :
	    FW_BUSY;
}

void figures_worker(struct worker *w)
{
	int s = (int)worker_state_of(w);
	if (w->fig_state == s + 1)
		return;
	if (w->fig_state != 0)
		metrics_gauge_add(&metrics_qmgr->workers[w->fig_state - 1], -1);
	metrics_gauge_add(&metrics_qmgr->workers[s], 1);
	w->fig_state = s + 1;
}

void figures_worker_gone(struct worker *w)
{
	if (w->fig_state != 0)
		metrics_gauge_add(&metrics_qmgr->workers[w->fig_state - 1], -1);
	w->fig_state = 0;
}

void figures_spawning(void)
{
	metrics_gauge_set(&metrics_qmgr->workers[FW_STARTING], Q.nspawning);
}
