/*
 * probe_state.h - what mailmond knows about one probe: the sends not seen
 * yet, its state (ok, late, lost) and its figures.
 *
 * A send not seen late_after after it started (or one that could not be
 * sent at all) is late; not seen lost_after after it started, lost (and
 * forgotten).  The probe turns late when one of its sends turns late while
 * it is ok, lost when one turns lost while it is not lost, and recovered
 * (ok again) when a probe of this run arrives while it is late or lost.
 * Each change is reported once through the change callback.
 */
#ifndef MM_PROBE_STATE_H
#define MM_PROBE_STATE_H

#include "mailmond/mm_config.h"
#include "metrics/metrics.h"

#include <stdint.h>
#include <sys/types.h>

enum probe_state { PROBE_OK, PROBE_LATE, PROBE_LOST };

/* At most this many sends are remembered per probe; older ones are given
 * up as lost. */
#define PROBE_OUTSTANDING_MAX 4096
/* The sequence numbers of the last arrivals remembered, so that a probe
 * delivered twice (a retry after a lost reply, a forward loop) counts once. */
#define PROBE_ARRIVED_MEMORY 64

struct probe_send_rec {
	uint64_t seq;
	uint64_t start_mono;    /* monotonic microseconds */
	int late;               /* counted as late already */
};

struct probe {
	const struct mm_probe_conf *conf;
	enum probe_state state;
	uint64_t next_seq;
	struct probe_send_rec *pending;
	size_t npending, cap;
	/* the sender child, while one runs */
	pid_t sender_pid;
	int sender_fd;
	uint64_t sender_seq;
	/* figures */
	struct metrics_hist delay;
	double last_delay;
	uint64_t sent, received, late, lost, send_failures;
	/* the last arrivals' seqs (0: none), a ring */
	uint64_t arrived[PROBE_ARRIVED_MEMORY];
	size_t arrived_next;
};

/* STATE as alert_command sees it: "late", "lost" or "recovered". */
typedef void (*probe_change_fn)(struct probe *p, const char *state, double delay, void *arg);

void probe_init(struct probe *p, const struct mm_probe_conf *conf);
void probe_free(struct probe *p);
const char *probe_state_name(enum probe_state s);

/* A send of seq started at now (monotonic usec). */
void probe_send_started(struct probe *p, uint64_t seq, uint64_t now);
/* It was accepted by the server. */
void probe_send_accepted(struct probe *p, uint64_t seq);
/* It failed: the send counts as late at once. */
void probe_send_failed(struct probe *p, uint64_t seq, uint64_t now, probe_change_fn fn,
    void *arg);
/* Probe seq of this run arrived, delay seconds after it was sent.  0 when
 * it was counted; PROBE_ARRIVED_AGAIN when that seq arrived already (a
 * copy: nothing is counted or changed), PROBE_ARRIVED_NEVER_SENT when this
 * run sent no such seq (nothing counted). */
enum { PROBE_ARRIVED_AGAIN = 1, PROBE_ARRIVED_NEVER_SENT = 2 };
/* What probe_arrived would make of seq, changing nothing. */
int probe_arrival_kind(const struct probe *p, uint64_t seq);
int probe_arrived(struct probe *p, uint64_t seq, double delay, probe_change_fn fn, void *arg);
/* The delay in seconds (never negative) of probe seq of this run
 * arriving at arrival_mono (monotonic usec) and arrival_wall (wall-clock
 * usec), sent at sent_wall by its header: monotonic arrival minus the
 * send's monotonic start while this run still has that send pending (a
 * wall-clock jump in between changes nothing), else wall-clock arrival
 * minus sent_wall. */
double probe_delay(const struct probe *p, uint64_t seq, uint64_t arrival_mono,
    uint64_t arrival_wall, uint64_t sent_wall);
/* Move the sends that crossed late_after or lost_after by now. */
void probe_check(struct probe *p, uint64_t now, uint64_t late_after, uint64_t lost_after,
    probe_change_fn fn, void *arg);
/* When probe_check has something to do next (monotonic usec), or
 * UINT64_MAX. */
uint64_t probe_next_check(const struct probe *p, uint64_t late_after, uint64_t lost_after);

#endif
