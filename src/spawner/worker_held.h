/*
 * worker_held.h - the results a worker holds back until its batch's
 * maildir deliveries are durable (worker_held.c).
 *
 * Results are numbered in the order the recipients are delivered (seq,
 * counting from the worker's start); a job's results are consecutive.  A
 * result is final once its recipient's rules have run; a commit failure
 * may still turn a final result into a failure (held_fail).  Sending
 * takes the final results from the front, and the jobs whose results
 * are all sent.
 */
#ifndef MP_WORKER_HELD_H
#define MP_WORKER_HELD_H

#include "deliver/deliver.h"
#include "lib/buf.h"

#include <stddef.h>
#include <stdint.h>

struct held_result {
	uint32_t index;                 /* the recipient in the queue file */
	int final;
	struct delivery_result r;
	struct buf where, forward, done;
	uint32_t verdict, is_spam;      /* MSG_RESULT's verdict fields */
	int64_t score;
	char *headers;
};

struct held_job {
	char *qid;
	size_t start;                   /* seq of its first result */
	int complete;                   /* all its results were added */
};

struct held {
	struct held_result *res;        /* seq base .. base + n - 1 */
	size_t base, n, cap;
	struct held_job *jobs;
	size_t njobs, capjobs;
};

void held_job_begin(struct held *h, const char *qid);
void held_job_end(struct held *h);
/* A new result for the current job; *seq says which. */
struct held_result *held_result_new(struct held *h, uint32_t index, size_t *seq);
/* The result numbered seq, NULL when it was sent already. */
struct held_result *held_result_get(struct held *h, size_t seq);
/* A delivery of the result numbered seq (instruction instr of its rules,
 * -1 for the default delivery) is not durable after all: the worse
 * status wins as in the rules' own folding, and instr leaves the done
 * list. */
void held_fail(struct held *h, size_t seq, int instr, const struct delivery_result *failure);
/* Remove instruction n from a done list "N,M,..." in place. */
void held_done_remove(struct buf *done, int n);
/* What can go now: *nres final results from the front, and *njobs jobs
 * (from the front) whose results are all among them. */
void held_ready(const struct held *h, size_t *nres, size_t *njobs);
/* Forget the first nres results and njobs jobs (sent). */
void held_drop(struct held *h, size_t nres, size_t njobs);
/* Results of job j (of those held) among the first nres: [from, to). */
void held_job_range(const struct held *h, size_t j, size_t nres, size_t *from, size_t *to);

#endif
