/*
 * diskindex.h - what waits in the queue directories without being loaded:
 * a compact index the qmgr keeps up to date by its own moves (a message
 * put back to disk, new mail left on disk for lack of room) and by slow
 * scans of the directories, so that a refill takes from it instead of
 * listing the queue.  About 50 bytes per entry.
 *
 * Entries sit in lanes.  Lane DI_LANE_FRESH is new mail (active/ and
 * incoming/), oldest queue id first.  The other lanes hold deferred files,
 * one lane per user (DI_LANE_UNKNOWN: user not known, e.g. found by a
 * scan), each oldest due time first; due entries are taken from the lanes
 * round-robin, so one user's many due messages do not hold back another's.
 * Pure logic: no I/O.
 */
#ifndef MP_QMGR_DISKINDEX_H
#define MP_QMGR_DISKINDEX_H

#include <stddef.h>
#include <stdint.h>

#define DI_QID_MAX 32           /* as QID_MAX (queue/qfile.h) */
#define DI_LANE_FRESH 0
#define DI_LANE_UNKNOWN 1
#define DI_LANES_MAX 65535

struct diskindex;

struct di_item {
	char qid[DI_QID_MAX];
	int dir;                /* the caller's directory number (0..254) */
	uint32_t due;           /* deferred: when it is due (seconds); fresh: 0 */
	uint32_t lane;
};

struct diskindex *di_new(void);
void di_free(struct diskindex *ix);

/* Add qid (a valid queue id: [0-9A-Z], at most 31), or move it to this
 * dir, due time and lane when it is there already.  It counts as seen by
 * the scan under way.  -1 when qid cannot be indexed. */
int di_put(struct diskindex *ix, const struct di_item *it);
/* Forget qid: 1 when it was there. */
int di_del(struct diskindex *ix, const char *qid);
/* Whether qid is there; a scan under way notes it as seen. */
int di_seen(struct diskindex *ix, const char *qid);

/* Take (remove and return) the oldest new mail: 1, or 0 when none. */
int di_take_fresh(struct diskindex *ix, struct di_item *out);
/* Take a deferred entry due by now, from the next lane in turn that has
 * one, the oldest of that lane: 1, or 0 when none is due. */
int di_take_due(struct diskindex *ix, uint32_t now, struct di_item *out);
/* Put back what was just taken and could not be used: the index is as
 * before the take (the lane keeps its turn). */
void di_put_back(struct diskindex *ix, const struct di_item *it);

/* The earliest due time of a deferred entry: 1, or 0 when there is none. */
int di_next_due(const struct diskindex *ix, uint32_t *due);
size_t di_count_fresh(const struct diskindex *ix);
size_t di_count_deferred(const struct diskindex *ix);
/* Whether a deferred entry is due by now. */
int di_any_due(const struct diskindex *ix, uint32_t now);
/* The smallest queue id in the index (the oldest arrival), "" when empty;
 * for deferred entries taken since the last sweep it may be older than
 * what is left. */
void di_oldest(const struct diskindex *ix, char out[DI_QID_MAX]);
size_t di_lanes(const struct diskindex *ix);

/* A scan of the directories: di_scan_begin, then di_seen or di_put for
 * each file listed, then di_sweep(dir) when dir's listing is complete: the
 * entries of dir that were neither seen nor put since di_scan_begin are
 * gone from the disk and forgotten.  Returns how many. */
void di_scan_begin(struct diskindex *ix);
size_t di_sweep(struct diskindex *ix, int dir);

/* A flush: every deferred entry is due at due; each one's queue id and
 * lane are passed to fn first. */
void di_all_due(struct diskindex *ix, uint32_t due,
    void (*fn)(const char *qid, uint32_t lane, void *ctx), void *ctx);

#endif
