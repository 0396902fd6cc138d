/*
 * worker_private.h - what the worker's files share:
 *   worker.c        the job loop: jobs in, one result per recipient out
 *   worker_rules.c  one recipient: loop checks, rules, deliveries
 */
#ifndef MP_WORKER_PRIVATE_H
#define MP_WORKER_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "conf/config.h"
#include "deliver/deliver.h"
#include "lib/buf.h"
#include "queue/qfile.h"

struct rule_instruction;

/* One recipient of a job, as the qmgr sent it (see MSG_JOB). */
struct worker_rcpt {
	uint32_t index;
	const char *address;
	const char *extension;
	const char *account;
	const char *home;
	const void *rules;
	size_t rules_len;
	const char *run;        /* "all", "primary" or "only:N,..." */
};

extern const struct config *worker_cfg;
extern const struct rule_instruction *worker_default;   /* default_delivery */

/* Deliver one recipient: fills total (the worst result of its copies),
 * appends the destinations to where and the forward addresses (comma-
 * separated) to forward. */
void worker_deliver(const struct qfile *qf, int qfd, const struct worker_rcpt *rc,
    struct delivery_result *total, struct buf *where, struct buf *forward);

#endif
