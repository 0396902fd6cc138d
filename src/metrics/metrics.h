/*
 * metrics.h - the daemon's figures (counters, gauges, histograms) and where
 * they live.
 *
 * Each figure is kept by the one process that owns it (DESIGN.md): the
 * receiver, the qmgr, the policy service.  Each owner's figures are one
 * fixed struct (receiver_figures.h, qmgr_figures.h, policy_figures.h) in a
 * shared memory region: a memfd the master creates at start-up and keeps
 * for its lifetime, so the figures survive a reload and a child's restart.
 * The master never maps or reads one.  The owner maps its own region
 * read-write; `mailprocd: metrics` (which serves GET /metrics) and the qmgr
 * (for `mailprocctl status`) map every region read-only, through a
 * read-only descriptor.  Workers and every root process get none.
 *
 * Updates are relaxed atomic adds and stores on naturally aligned 64-bit
 * words, so a reader never sees a torn value and two processes of one kind
 * (none today) could share a region.
 */
#ifndef MP_METRICS_H
#define MP_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_MAGIC 0x4d504d31u       /* "MPM1" */
#define METRICS_LAYOUT_VERSION 1

enum metrics_region_kind {
	METRICS_RECEIVER,
	METRICS_QMGR,
	METRICS_POLICY,
	METRICS_REGION_COUNT
};

/* First in every region; the master writes it when it creates the memfd. */
struct metrics_region_header {
	uint32_t magic;
	uint32_t version;
	uint32_t kind;          /* enum metrics_region_kind */
	uint32_t size;          /* of the whole region struct */
	uint64_t created_usec;  /* wall clock, when the master created it */
};

/* A histogram: per-bucket (not cumulative) counts for the bounds of its
 * family, the count of all observations (the +Inf bucket) and their sum in
 * microseconds.  At most METRICS_MAX_BUCKETS finite bounds. */
#define METRICS_MAX_BUCKETS 20
struct metrics_hist {
	uint64_t bucket[METRICS_MAX_BUCKETS];
	uint64_t count;
	uint64_t sum_usec;
};

/* Bucket bounds in seconds, ascending. */
struct metrics_bounds {
	int n;
	double le[METRICS_MAX_BUCKETS];
};
/* Delivery delays and probe delays: 10 ms .. 1 day. */
extern const struct metrics_bounds metrics_delay_bounds;
/* Spam check durations: 50 ms .. 2 min. */
extern const struct metrics_bounds metrics_spam_bounds;

/* Relaxed atomic updates (gauges are int64_t, counters uint64_t). */
static inline void metrics_inc(uint64_t *counter, uint64_t n)
{
	__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}
static inline void metrics_gauge_set(int64_t *gauge, int64_t v)
{
	__atomic_store_n(gauge, v, __ATOMIC_RELAXED);
}
static inline void metrics_gauge_add(int64_t *gauge, int64_t d)
{
	__atomic_fetch_add(gauge, d, __ATOMIC_RELAXED);
}
static inline uint64_t metrics_read(const uint64_t *counter)
{
	return __atomic_load_n(counter, __ATOMIC_RELAXED);
}
static inline int64_t metrics_gauge_read(const int64_t *gauge)
{
	return __atomic_load_n(gauge, __ATOMIC_RELAXED);
}
/* One observation of seconds (negative counts as 0). */
void metrics_observe(struct metrics_hist *h, const struct metrics_bounds *b, double seconds);

/* ---- regions (metrics.c) ---- */

/* The master, at start-up: one memfd per region kind, sized and with its
 * header written; fds[kind] (close-on-exec).  -1 (logged) on failure. */
int metrics_regions_create(int fds[METRICS_REGION_COUNT]);
/* A read-only descriptor for the same memfd (through /proc/self/fd), for
 * the processes that only read; -1 with errno. */
int metrics_region_reopen_ro(int fd);

/* An owner child, at start: map its region read-write and point the
 * matching pointer below at it.  Until then (and in programs that have no
 * region, such as mailprocctl and the unit tests) each pointer points at a
 * private zeroed struct, so code updating figures never checks for NULL.
 * -1 (logged) when fd is not a valid region of that kind; the pointer then
 * stays on the private struct. */
int metrics_attach(enum metrics_region_kind kind, int fd);
/* A reader: map fd read-only and check its header; NULL (logged) when it
 * is not a valid region of that kind. */
const void *metrics_map_ro(enum metrics_region_kind kind, int fd);

struct metrics_receiver;
struct metrics_qmgr;
struct metrics_policy;
extern struct metrics_receiver *metrics_receiver;
extern struct metrics_qmgr *metrics_qmgr;
extern struct metrics_policy *metrics_policy;

/* The regions one reader sees; NULL for a region it could not map. */
struct metrics_view {
	const struct metrics_receiver *receiver;
	const struct metrics_qmgr *qmgr;
	const struct metrics_policy *policy;
};

/* Map the regions of fds read-only into v (a region that cannot be mapped,
 * or whose fd is -1, stays NULL; logged) and close the descriptors (-1
 * afterwards). */
void metrics_view_map(struct metrics_view *v, int fds[METRICS_REGION_COUNT]);

/* The qmgr's view for `mailprocctl status`: the other owners' regions
 * read-only (the master's wiring fills it at the qmgr's start), its own
 * through metrics_qmgr.  All NULL in other processes. */
extern struct metrics_view metrics_status_view;

#endif
