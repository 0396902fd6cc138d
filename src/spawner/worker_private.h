/*
 * worker_private.h - what the worker's files share:
 *   worker.c        the job loop: jobs in, one result per recipient out
 *   worker_rules.c  one recipient: loop checks, rules, deliveries
 *   worker_spam.c   the spam verdict of a job, learning, the journal sync
 */
#ifndef MP_WORKER_PRIVATE_H
#define MP_WORKER_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "conf/config.h"
#include "db/db.h"
#include "db/rules_entry.h"
#include "deliver/deliver.h"
#include "lib/buf.h"
#include "queue/qfile.h"
#include "spawner/trust.h"

/* One recipient of a job: what the qmgr sent (see MSG_JOB), then what the
 * worker read from the databases itself (trust_worker_part). */
struct worker_rcpt {
	uint32_t index;
	uint64_t version;       /* of the entry the qmgr made run from */
	const char *run;        /* "all", "primary" or "only:N,..." */
	struct db_resolution res;
	struct rules_entry entry;
	const char *home;       /* the entry's account's, or this worker's for "only:" */
	/* an "only:" part: the primary part's spam verdict, from the job */
	uint32_t given_verdict; /* VERDICT_NONE, _UNCHECKED, _CHECKED */
	uint32_t given_is_spam;
	int64_t given_score;    /* x 1000 */
	const char *given_headers;
	int spam_used;          /* worker_deliver: the rules ran with the job's verdict */
	size_t seq;             /* its held result (worker_held.h) */
};

extern const struct config *worker_cfg;
extern const struct rule_instruction *worker_default;   /* default_delivery */
extern struct trust_self worker_self;

/* A job's spam verdict, computed on first need (worker_spam.c). */
struct worker_spam {
	int done;               /* computed (or skipped) */
	int checked;            /* scored: is_spam and score are real */
	int is_spam;
	double score;
	char *headers;          /* lines for the user's copy, or NULL */
	int stopped_before;     /* an earlier check of this message overran: none now */
	int filtered;           /* checked, and the message had X-Spam-* fields of its own: */
	int filtered_fd;        /* the copy to deliver, without them (a memfd) */
	uint64_t filtered_size;
	int view_built;
	struct buf view;        /* the copy as the rules see it (worker_spam_view) */
};

/* worker.c: a turn to run a spam check (or learn) from the qmgr, who lets
 * spam_concurrency run at once; blocks until it is our turn. */
void worker_check_begin(void);
void worker_check_end(void);

/* Deliver one recipient: fills total (the worst result of its copies),
 * appends the destinations to where, the forward addresses (comma-
 * separated) to forward and the numbers of the maildir/mbox/pipe
 * instructions that delivered ("N,M") to done.  ws: the job's spam verdict (shared by its
 * recipients, all of this worker's user). */
void worker_deliver(const struct qfile *qf, int qfd, struct worker_rcpt *rc,
    struct worker_spam *ws, struct delivery_result *total, struct buf *where,
    struct buf *forward, struct buf *done);

/* worker_spam.c */
void worker_spam_init(const char *user, const char *home);
/* Whether a recipient whose entry says spam= entry_spam (-1 default, 0, 1)
 * gets a verdict. */
int worker_spam_wanted(int entry_spam);
void worker_spam_get(struct worker_spam *ws, const struct qfile *qf, const char *msg,
    size_t len);
void worker_spam_reset(struct worker_spam *ws);
/* A uid=/gid= part: the verdict its primary part reported (rc->given_*)
 * instead of a check of its own; header lines other than X-Spam-* and
 * X-Mailprocd-Spam fields are refused. */
void worker_spam_given(struct worker_spam *ws, const struct worker_rcpt *rc,
    const struct qfile *qf, const char *msg, size_t len);
/* The message as this user's copy has it, for the rules' header and body
 * tests: the verdict's header lines on top, the message's own X-Spam-*
 * fields left out; msg itself when there is nothing to change. */
const char *worker_spam_view(struct worker_spam *ws, const char *msg, size_t len,
    size_t *outlen);
int worker_spam_retiring(void);
unsigned long worker_spam_checks(void);
int worker_spam_learn(const char *msg, size_t len, int is_spam, char *err, size_t errlen);
/* Milliseconds until the Bayes journal is due for a sync; -1 none due. */
int worker_spam_next_sync_ms(void);
void worker_spam_sync(void);
void worker_spam_exit(void);

#endif
