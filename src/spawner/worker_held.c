/*
 * worker_held.c - the bookkeeping of a worker's held results: which job
 * each belongs to, which are final, and their correction when a batched
 * maildir delivery turns out not durable.  Pure: no I/O (worker.c sends).
 */
#include "spawner/worker_held.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

void held_job_begin(struct held *h, const char *qid)
{
	if (h->njobs == h->capjobs) {
		h->capjobs = h->capjobs ? h->capjobs * 2 : 8;
		h->jobs = xreallocarray(h->jobs, h->capjobs, sizeof(*h->jobs));
	}
	h->jobs[h->njobs++] = (struct held_job){ .qid = xstrdup(qid), .start = h->base + h->n };
}

void held_job_end(struct held *h)
{
	if (h->njobs > 0)
		h->jobs[h->njobs - 1].complete = 1;
}

struct held_result *held_result_new(struct held *h, uint32_t index, size_t *seq)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 16;
		h->res = xreallocarray(h->res, h->cap, sizeof(*h->res));
	}
	struct held_result *r = &h->res[h->n];
	memset(r, 0, sizeof(*r));
	r->index = index;
	*seq = h->base + h->n++;
	return r;
}

struct held_result *held_result_get(struct held *h, size_t seq)
{
	if (seq < h->base || seq >= h->base + h->n)
		return NULL;
	return &h->res[seq - h->base];
}

void held_done_remove(struct buf *done, int n)
{
	char *p = done->data;
	if (p == NULL)
		return;
	while (*p) {
		char *end = p + strcspn(p, ",");
		char *next = *end ? end + 1 : end;
		if (strtol(p, NULL, 10) == n && end > p) {
			if (*end == '\0' && p > done->data)
				p--;            /* the last one: its comma goes */
			memmove(p, next, strlen(next) + 1);
			done->len = strlen(done->data);
			return;
		}
		p = next;
	}
}

void held_fail(struct held *h, size_t seq, int instr, const struct delivery_result *failure)
{
	struct held_result *r = held_result_get(h, seq);
	if (r == NULL)
		return;
	/* as worker_rules.c folds: the worst status, the first among equals */
	if (failure->status > r->r.status ||
	    (failure->status == r->r.status && r->r.text[0] == '\0'))
		r->r = *failure;
	if (instr >= 0)
		held_done_remove(&r->done, instr);
}

void held_ready(const struct held *h, size_t *nres, size_t *njobs)
{
	size_t n = 0, j = 0;
	while (n < h->n && h->res[n].final)
		n++;
	while (j < h->njobs && h->jobs[j].complete &&
	    (j + 1 < h->njobs ? h->jobs[j + 1].start : h->base + h->n) <= h->base + n)
		j++;
	*nres = n;
	*njobs = j;
}

void held_job_range(const struct held *h, size_t j, size_t nres, size_t *from, size_t *to)
{
	size_t start = h->jobs[j].start, end = j + 1 < h->njobs ? h->jobs[j + 1].start :
	    h->base + h->n;
	if (start < h->base)
		start = h->base;
	if (end > h->base + nres)
		end = h->base + nres;
	*from = start - h->base;
	*to = end > start ? end - h->base : *from;
}

void held_drop(struct held *h, size_t nres, size_t njobs)
{
	for (size_t i = 0; i < nres; i++) {
		buf_free(&h->res[i].where);
		buf_free(&h->res[i].forward);
		buf_free(&h->res[i].done);
		free(h->res[i].headers);
	}
	if (h->n > nres)        /* (h->res is NULL while nothing was held) */
		memmove(h->res, h->res + nres, (h->n - nres) * sizeof(*h->res));
	h->n -= nres;
	h->base += nres;
	for (size_t j = 0; j < njobs; j++)
		free(h->jobs[j].qid);
	if (h->njobs > njobs)
		memmove(h->jobs, h->jobs + njobs, (h->njobs - njobs) * sizeof(*h->jobs));
	h->njobs -= njobs;
}
