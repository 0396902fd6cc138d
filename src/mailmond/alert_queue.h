/*
 * alert_queue.h - one probe's alerts: at most one alert_command runs at a
 * time for a probe; the state changes meanwhile wait here, in order, so
 * that each change still gets its own run.
 */
#ifndef MM_ALERT_QUEUE_H
#define MM_ALERT_QUEUE_H

#include <stddef.h>
#include <sys/types.h>

/* Changes waiting beyond this many (an alert that hangs until
 * alert_timeout each time while the probe flaps): the oldest waiting one
 * is dropped, and counted. */
#define ALERT_QUEUE_MAX 64

struct alert_change {
	char state[16];         /* "late", "lost", "recovered" */
	double delay;
};

struct alert_queue {
	struct alert_change waiting[ALERT_QUEUE_MAX];
	size_t first, n;
	size_t dropped;         /* dropped since the last alert_queue_next */
	/* the alert that runs (pid -1: none) */
	pid_t pid;
	struct alert_change running;
	int timed_out;          /* killed for alert_timeout */
};

void alert_queue_init(struct alert_queue *q);
/* A state change to alert about (after those waiting). */
void alert_queue_push(struct alert_queue *q, const char *state, double delay);
/* When no alert runs and one waits: take it into *out (the caller starts
 * it and sets q->pid) and return 1; else 0. */
int alert_queue_next(struct alert_queue *q, struct alert_change *out);
/* The running alert ended (reaped). */
void alert_queue_done(struct alert_queue *q);

#endif
