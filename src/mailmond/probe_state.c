/*
 * probe_state.c - a probe's pending sends, its state and figures (see
 * probe_state.h).
 */
#include "mailmond/probe_state.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

void probe_init(struct probe *p, const struct mm_probe_conf *conf)
{
	memset(p, 0, sizeof(*p));
	p->conf = conf;
	p->state = PROBE_OK;
	p->next_seq = 1;
	p->sender_pid = -1;
	p->sender_fd = -1;
}

void probe_free(struct probe *p)
{
	free(p->pending);
	p->pending = NULL;
	p->npending = p->cap = 0;
}

const char *probe_state_name(enum probe_state s)
{
	switch (s) {
	case PROBE_OK: return "ok";
	case PROBE_LATE: return "late";
	case PROBE_LOST: return "lost";
	}
	return "?";
}

static void drop_first(struct probe *p, size_t n)
{
	memmove(p->pending, p->pending + n, (p->npending - n) * sizeof(p->pending[0]));
	p->npending -= n;
}

static void turn(struct probe *p, enum probe_state to, double delay, probe_change_fn fn,
    void *arg)
{
	if (p->state == to)
		return;
	p->state = to;
	fn(p, to == PROBE_OK ? "recovered" : probe_state_name(to), delay, arg);
}

void probe_send_started(struct probe *p, uint64_t seq, uint64_t now)
{
	if (seq >= p->next_seq)
		p->next_seq = seq + 1;  /* (the monitor numbers its sends from it) */
	if (p->npending == PROBE_OUTSTANDING_MAX) {
		/* cannot happen before lost_after gives the oldest up, unless
		 * lost_after is many thousand intervals: forget the oldest */
		drop_first(p, 1);
		p->lost++;
	}
	if (p->npending == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 16;
		p->pending = xreallocarray(p->pending, p->cap, sizeof(p->pending[0]));
	}
	p->pending[p->npending++] = (struct probe_send_rec){ .seq = seq, .start_mono = now };
}

void probe_send_accepted(struct probe *p, uint64_t seq)
{
	(void)seq;
	p->sent++;
}

static struct probe_send_rec *find(struct probe *p, uint64_t seq)
{
	for (size_t i = 0; i < p->npending; i++) {
		if (p->pending[i].seq == seq)
			return &p->pending[i];
	}
	return NULL;
}

void probe_send_failed(struct probe *p, uint64_t seq, uint64_t now, probe_change_fn fn,
    void *arg)
{
	struct probe_send_rec *r = find(p, seq);
	p->send_failures++;
	if (r == NULL || r->late)
		return;
	r->late = 1;
	p->late++;
	if (p->state == PROBE_OK)
		turn(p, PROBE_LATE, (double)(now - r->start_mono) / 1e6, fn, arg);
}

int probe_arrival_kind(const struct probe *p, uint64_t seq)
{
	if (seq == 0 || seq >= p->next_seq)
		return PROBE_ARRIVED_NEVER_SENT;
	for (size_t i = 0; i < PROBE_ARRIVED_MEMORY; i++) {
		if (p->arrived[i] == seq)
			return PROBE_ARRIVED_AGAIN;
	}
	return 0;
}

int probe_arrived(struct probe *p, uint64_t seq, double delay, probe_change_fn fn, void *arg)
{
	size_t n = 0;
	int kind = probe_arrival_kind(p, seq);

	if (kind != 0)
		return kind;
	p->arrived[p->arrived_next] = seq;
	p->arrived_next = (p->arrived_next + 1) % PROBE_ARRIVED_MEMORY;
	/* this one and every earlier send: the path works */
	while (n < p->npending && p->pending[n].seq <= seq)
		n++;
	drop_first(p, n);
	p->received++;
	p->last_delay = delay;
	metrics_observe(&p->delay, &metrics_delay_bounds, delay);
	turn(p, PROBE_OK, delay, fn, arg);
	return 0;
}

double probe_delay(const struct probe *p, uint64_t seq, uint64_t arrival_mono,
    uint64_t arrival_wall, uint64_t sent_wall)
{
	for (size_t i = 0; i < p->npending; i++) {
		const struct probe_send_rec *r = &p->pending[i];
		if (r->seq == seq)
			return arrival_mono > r->start_mono ?
			    (double)(arrival_mono - r->start_mono) / 1e6 : 0.0;
	}
	return arrival_wall > sent_wall ? (double)(arrival_wall - sent_wall) / 1e6 : 0.0;
}

void probe_check(struct probe *p, uint64_t now, uint64_t late_after, uint64_t lost_after,
    probe_change_fn fn, void *arg)
{
	size_t lost = 0;
	for (size_t i = 0; i < p->npending; i++) {
		struct probe_send_rec *r = &p->pending[i];
		uint64_t age = now - r->start_mono;
		if (!r->late && age >= late_after) {
			r->late = 1;
			p->late++;
			if (p->state == PROBE_OK)
				turn(p, PROBE_LATE, (double)age / 1e6, fn, arg);
		}
		if (age >= lost_after) {
			/* pending is in send order: this and all before it */
			lost = i + 1;
			p->lost++;
			if (p->state != PROBE_LOST)
				turn(p, PROBE_LOST, (double)age / 1e6, fn, arg);
		}
	}
	drop_first(p, lost);
}

uint64_t probe_next_check(const struct probe *p, uint64_t late_after, uint64_t lost_after)
{
	uint64_t next = UINT64_MAX;
	for (size_t i = 0; i < p->npending; i++) {
		const struct probe_send_rec *r = &p->pending[i];
		uint64_t at = r->start_mono + (r->late ? lost_after : late_after);
		if (at < next)
			next = at;
	}
	return next;
}
