/*
 * qmgr_figures.h - the figures the qmgr owns (see metrics.h): the queue,
 * deliveries and their delays, spam checks, workers.  Rendered by
 * expose_qmgr.c.
 */
#ifndef MP_QMGR_FIGURES_H
#define MP_QMGR_FIGURES_H

#include "metrics/metrics.h"

/* mailprocd_queue_messages{state} */
enum fig_queue_state { FQ_ACTIVE, FQ_DEFERRED, FQ_CORRUPT, FQ_COUNT };
/* mailprocd_deliveries_total{status}: one per recipient result (a deferral
 * counts each time; delivered and bounced are final) */
enum fig_delivery_status { FD_DELIVERED, FD_DEFERRED, FD_BOUNCED, FD_COUNT };
/* ...{action}: what delivered (or tried to) */
enum fig_delivery_action {
	FA_MAILDIR, FA_MBOX, FA_PIPE, FA_FORWARD, FA_LIST, FA_DISCARD, FA_NONE, FA_COUNT
};
/* mailprocd_delivery_delay_seconds{stage}: once per final result */
enum fig_delay_stage { FS_QUEUE, FS_WORKER, FS_TOTAL, FS_COUNT };
/* mailprocd_spam_checks_total{verdict} */
enum fig_spam_verdict { FV_SPAM, FV_HAM, FV_UNCHECKED, FV_COUNT };
/* mailprocd_workers{state} */
enum fig_worker_state { FW_STARTING, FW_IDLE, FW_BUSY, FW_WAITING, FW_CHECKING, FW_COUNT };

struct metrics_qmgr {
	struct metrics_region_header hdr;
	int64_t queue_messages[FQ_COUNT];
	uint64_t queue_oldest_arrival_usec;     /* 0: the queue is empty */
	uint64_t deliveries[FD_COUNT][FA_COUNT];
	struct metrics_hist delay[FS_COUNT];    /* metrics_delay_bounds */
	uint64_t spam_checks[FV_COUNT];
	struct metrics_hist spam_duration;      /* metrics_spam_bounds */
	int64_t workers[FW_COUNT];
	uint64_t bounces_sent;                  /* DSNs queued */
};

#endif
