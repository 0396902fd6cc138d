/*
 * verdicts.c - the uid=/gid= parts of a recipient and the spam verdict.
 *
 * A recipient whose rules run instructions as other accounts is delivered
 * in parts, one worker per account (scheduler.c).  Only the primary part
 * (the entry's own account) checks the message for spam, with that
 * account's SpamAssassin data; the uid=/gid= parts must not parse the
 * message for spam as another user, and must see the same verdict, or
 * `spam` conditions and `stop` would mean different things in different
 * parts.  So when the entry wants a verdict, its uid=/gid= parts are held
 * here, in jobs of their own, until the primary part's result brings the
 * verdict; then they run with it.  A primary part that ends without one
 * (its worker died, it was refused) fails its held parts temporarily: the
 * recipient is retried as a whole.
 */
#include "qmgr/qmgr_private.h"
#include "lib/log.h"
#include "lib/msgtypes.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void part_verdict_free(struct part_verdict *v)
{
	free(v->headers);
	memset(v, 0, sizeof(*v));
}

void verdicts_hold(struct qmsg *m, struct job *job)
{
	m->held = xreallocarray(m->held, m->nheld + 1, sizeof(*m->held));
	m->held[m->nheld++] = job;
}

/* Every part of job has its verdict (or its failure): off it goes. */
static void release(struct qmsg *m, size_t k)
{
	struct job *job = m->held[k];
	size_t left = 0;

	m->held[k] = m->held[--m->nheld];
	for (size_t i = 0; i < job->n; i++)
		left += !job->rcpt[i].have_result;
	if (left == 0)
		sched_job_finished(job);        /* nothing left to run */
	else
		user_enqueue(job->user, job);
}

/* Give the held parts of recipient index their verdict, or (v NULL, or a
 * verdict of none) a temporary failure saying why not. */
static void settle_index(struct qmsg *m, size_t index, const struct part_verdict *v,
    const char *why)
{
	for (size_t k = 0; k < m->nheld;) {
		struct job *job = m->held[k];
		for (size_t i = 0; i < job->n; i++) {
			struct job_rcpt *jr = &job->rcpt[i];
			if (jr->index != index || !jr->awaiting_verdict)
				continue;
			jr->awaiting_verdict = 0;
			job->held--;
			if (v != NULL && v->state != VERDICT_NONE) {
				jr->verdict = *v;
				jr->verdict.headers = v->headers ? xstrdup(v->headers) : NULL;
				continue;
			}
			job_rcpt_tempfail(jr, why);
		}
		if (job->held == 0)
			release(m, k);  /* m->held[k] is another job now */
		else
			k++;
	}
}

void verdicts_got(struct qmsg *m, size_t index, const struct part_verdict *v)
{
	if (m->nheld > 0)
		settle_index(m, index, v, "the primary part gave no spam verdict");
}

void verdicts_job_over(struct job *job)
{
	struct qmsg *m = job->msg;

	/* nothing waits for a uid=/gid= part's verdict */
	if (m == NULL || job->user == NULL || job->for_verdicts)
		return;
	for (size_t i = 0; i < job->n && m->nheld > 0; i++)
		settle_index(m, job->rcpt[i].index, NULL,
		    "the primary part ended without a spam verdict");
}

void verdicts_free(struct qmsg *m)
{
	for (size_t k = 0; k < m->nheld; k++)
		sched_job_free(m->held[k]);
	free(m->held);
	m->held = NULL;
	m->nheld = 0;
}
