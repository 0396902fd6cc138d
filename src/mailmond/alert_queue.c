/*
 * alert_queue.c - one probe's waiting alerts (see alert_queue.h).
 */
#include "mailmond/alert_queue.h"

#include <stdio.h>
#include <string.h>

void alert_queue_init(struct alert_queue *q)
{
	memset(q, 0, sizeof(*q));
	q->pid = -1;
}

void alert_queue_push(struct alert_queue *q, const char *state, double delay)
{
	if (q->n == ALERT_QUEUE_MAX) {
		q->first = (q->first + 1) % ALERT_QUEUE_MAX;
		q->n--;
		q->dropped++;
	}
	struct alert_change *c = &q->waiting[(q->first + q->n) % ALERT_QUEUE_MAX];
	snprintf(c->state, sizeof(c->state), "%s", state);
	c->delay = delay;
	q->n++;
}

int alert_queue_next(struct alert_queue *q, struct alert_change *out)
{
	if (q->pid > 0 || q->n == 0)
		return 0;
	*out = q->waiting[q->first];
	q->first = (q->first + 1) % ALERT_QUEUE_MAX;
	q->n--;
	q->running = *out;
	q->timed_out = 0;
	return 1;
}

void alert_queue_done(struct alert_queue *q)
{
	q->pid = -1;
	q->timed_out = 0;
}
