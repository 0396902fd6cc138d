/*
 * expose.h - rendering the daemon's figures as Prometheus text exposition
 * format 0.0.4 (expose.c puts them together; each owner's figures are
 * rendered by the file next to its struct), and as the short table of
 * `mailprocctl status` (status_table.c, from the same text).
 */
#ifndef MP_EXPOSE_H
#define MP_EXPOSE_H

#include "metrics/metrics.h"

struct buf;

/* Every family of every region in v (a NULL region is left out), with
 * now_usec the wall clock used for ages. */
void expose_all(struct buf *out, const struct metrics_view *v, uint64_t now_usec);

/* One owner's families each (expose_receiver.c, expose_qmgr.c,
 * expose_policy.c). */
void expose_receiver(struct buf *out, const struct metrics_receiver *r, uint64_t now_usec);
void expose_qmgr(struct buf *out, const struct metrics_qmgr *q, uint64_t now_usec);
void expose_policy(struct buf *out, const struct metrics_policy *p, uint64_t now_usec);

/* The figures of an exposition as a short table (histograms as count and
 * average), for `mailprocctl status`. */
void status_table(struct buf *out, const char *exposition);

#endif
