/*
 * relay_link.c - the qmgr's side of the relay: jobs for outbound messages
 * (forwards and bounces) and for mailing list managers (LMTP) go to the
 * relay process, results come back.
 *
 * The relay takes several jobs at once and queues them itself; the qmgr
 * keeps at most RELAY_MAX_INFLIGHT outstanding and the rest waiting here.
 * Each job carries an id; results name it.  Ids are unique for the
 * daemon's lifetime, not per qmgr: the first is the realtime clock in
 * nanoseconds when this qmgr started, so a relay that outlived an earlier
 * qmgr can never answer for a job of ours.  The master restarts a relay
 * that dies with the same socket, so the qmgr cannot see it go: a new relay
 * says MSG_RELAY_HELLO, and every job the old one held fails temporarily
 * (and is retried).  A job unanswered for RELAY_JOB_TIMEOUT fails the same
 * way.  No job goes out before the relay has answered this qmgr's
 * MSG_RELAY_PING: the HELLO of a relay started before the qmgr may still
 * wait in the socket, and must not fail jobs the relay is sending (they
 * would go out twice).
 */
#include "qmgr/qmgr_private.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/msgtypes.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RELAY_MAX_INFLIGHT 32
/* Long enough for a 50 MB message over a slow link after a long queue in
 * the relay; the relay's own SMTP timeouts normally answer first. */
#define RELAY_JOB_TIMEOUT (60 * 60)

static struct {
	int fd;
	struct event *ev;
	struct job_list waiting;
	struct job_list inflight;
	int ninflight;
	uint64_t next_id;
	uint64_t nonce;         /* of our MSG_RELAY_PING */
	int ready;              /* the relay answered it */
} R = { .fd = -1 };

static struct ipc_msg rmsg;

static int send_job(struct job *job)
{
	struct qmsg *m = job->msg;
	int fd = openat(Q.queue_dirfd[m->dir], m->qid, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	char reason[300];

	if (fd < 0) {
		snprintf(reason, sizeof(reason), "cannot open queue file: %s", strerror(errno));
		sched_job_failed(job, reason);
		return 0;
	}
	job->relay_id = ++R.next_id;
	ipc_init(&rmsg, MSG_RELAY_JOB);
	ipc_add_u64(&rmsg, job->relay_id);
	ipc_add_str(&rmsg, m->qf.sender);
	ipc_add_u64(&rmsg, (uint64_t)m->qf.msg_offset);
	ipc_add_u64(&rmsg, m->qf.msg_size);
	ipc_add_u32(&rmsg, (uint32_t)m->qf.eightbit);
	ipc_add_u32(&rmsg, (uint32_t)job->n);
	for (size_t i = 0; i < job->n; i++)
		ipc_add_str(&rmsg, m->qf.rcpt[job->rcpt[i].index].address);
	ipc_add_str(&rmsg, job->lmtp_dest ? job->lmtp_dest : "");
	ipc_add_str(&rmsg, m->qid);
	ipc_set_fd(&rmsg, fd);
	int r = ipc_send(R.fd, &rmsg);
	int e = errno;
	close(fd);
	if (r < 0) {
		snprintf(reason, sizeof(reason), "cannot hand the message to the relay: %s",
		    strerror(e));
		sched_job_failed(job, reason);
		return 0;
	}
	job->relay_sent = time(NULL);
	job->started_usec = figures_now_usec();
	TAILQ_INSERT_TAIL(&R.inflight, job, entry);
	R.ninflight++;
	return 1;
}

void relay_dispatch(void)
{
	struct job *job;

	while (!Q.stopping && R.ready && R.ninflight < RELAY_MAX_INFLIGHT &&
	    (job = TAILQ_FIRST(&R.waiting)) != NULL) {
		TAILQ_REMOVE(&R.waiting, job, entry);
		send_job(job);
	}
}

void relay_enqueue(struct job *job)
{
	TAILQ_INSERT_TAIL(&R.waiting, job, entry);
}

static struct job *inflight_job(uint64_t id)
{
	struct job *job;
	TAILQ_FOREACH(job, &R.inflight, entry)
		if (job->relay_id == id)
			return job;
	return NULL;
}

static void job_done(struct job *job)
{
	TAILQ_REMOVE(&R.inflight, job, entry);
	R.ninflight--;
	sched_job_finished(job);
}

/* Fail every job in flight (the relay that held them is gone). */
static void fail_inflight(const char *reason)
{
	struct job *job;
	while ((job = TAILQ_FIRST(&R.inflight)) != NULL) {
		TAILQ_REMOVE(&R.inflight, job, entry);
		R.ninflight--;
		sched_job_failed(job, reason);
	}
}

static void on_result(void)
{
	uint64_t id;
	uint32_t idx, status;
	const char *dsn, *text;

	if (ipc_get_u64(&rmsg, &id) < 0 || ipc_get_u32(&rmsg, &idx) < 0 ||
	    ipc_get_u32(&rmsg, &status) < 0 || ipc_get_str(&rmsg, &dsn) < 0 ||
	    ipc_get_str(&rmsg, &text) < 0 || ipc_end(&rmsg) < 0 ||
	    status > DELIVERY_PERMFAIL) {
		log_warn("malformed result from the relay");
		return;
	}
	struct job *job = inflight_job(id);
	if (job == NULL || idx >= job->n) {
		log_warn("relay result for unknown job %llu recipient %u", (unsigned long long)id, idx);
		return;
	}
	struct job_rcpt *jr = &job->rcpt[idx];
	jr->have_result = 1;
	struct delivery_result *r = job_rcpt_result(jr);
	r->status = (enum delivery_status)status;
	snprintf(r->dsn, sizeof(r->dsn), "%s", dsn);
	snprintf(r->text, sizeof(r->text), "%s", text);
	free(jr->where);
	jr->where = xstrdup(job->lmtp_dest ? job->lmtp_dest : "relay");
}

static void on_done(void)
{
	uint64_t id;
	if (ipc_get_u64(&rmsg, &id) < 0 || ipc_end(&rmsg) < 0) {
		log_warn("malformed message from the relay");
		return;
	}
	struct job *job = inflight_job(id);
	if (job == NULL) {
		log_warn("relay finished unknown job %llu", (unsigned long long)id);
		return;
	}
	job_done(job);
}

/* The relay's HELLO: the answer to our ping (jobs may go out), or a relay
 * that started after that (the jobs the one before held are lost); any
 * other is from before our time. */
static void on_hello(void)
{
	uint64_t nonce;

	if (ipc_get_u64(&rmsg, &nonce) < 0 || ipc_end(&rmsg) < 0) {
		log_warn("malformed message from the relay");
		return;
	}
	if (nonce == R.nonce && !R.ready) {
		R.ready = 1;
		log_debug("the relay is ready");
	} else if (nonce == 0 && R.ready) {
		if (R.ninflight > 0)
			log_warn("relay restarted with %d job%s in flight; retrying them later",
			    R.ninflight, R.ninflight == 1 ? "" : "s");
		fail_inflight("the relay restarted during delivery");
	}
}

/* Until the relay answers (it may be starting, or stopping and not
 * reading): again at every tick. */
static void send_ping(void)
{
	ipc_init(&rmsg, MSG_RELAY_PING);
	ipc_add_u64(&rmsg, R.nonce);
	if (ipc_send(R.fd, &rmsg) < 0)
		log_debug("cannot ping the relay: %s", strerror(errno));
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	for (;;) {
		int r = ipc_recv(R.fd, &rmsg);
		if (r <= 0)
			break;
		if (rmsg.fd >= 0) {
			close(rmsg.fd);
			rmsg.fd = -1;
		}
		switch (rmsg.type) {
		case MSG_RELAY_RESULT:
			on_result();
			break;
		case MSG_RELAY_DONE:
			on_done();
			break;
		case MSG_RELAY_HELLO:
			on_hello();
			break;
		default:
			log_warn("unexpected message type %u from the relay", rmsg.type);
			break;
		}
	}
	relay_dispatch();
}

void relay_check_timeouts(void)
{
	time_t now = time(NULL);
	struct job *job, *next;

	if (!R.ready)
		send_ping();
	for (job = TAILQ_FIRST(&R.inflight); job != NULL; job = next) {
		next = TAILQ_NEXT(job, entry);
		if (now - job->relay_sent < RELAY_JOB_TIMEOUT)
			continue;
		log_warn("qid=%s: no answer from the relay for %d s", job->msg->qid, RELAY_JOB_TIMEOUT);
		TAILQ_REMOVE(&R.inflight, job, entry);
		R.ninflight--;
		sched_job_failed(job, "no answer from the relay");
	}
	relay_dispatch();
}

/* The first job id: after every id an earlier qmgr of this daemon gave
 * (it started earlier and gave fewer than one a nanosecond). */
static uint64_t first_job_id(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int relay_inflight(void)
{
	return R.ninflight;
}

void relay_init(int fd)
{
	R.fd = fd;
	R.next_id = first_job_id();
	R.nonce = R.next_id;
	TAILQ_INIT(&R.waiting);
	TAILQ_INIT(&R.inflight);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	R.ev = event_new(Q.base, fd, EV_READ | EV_PERSIST, on_readable, NULL);
	if (R.ev == NULL || event_add(R.ev, NULL) < 0)
		fatal("cannot watch the relay socket");
	send_ping();
}

/* Stopping: jobs still out or waiting are forgotten, not failed (nothing
 * recorded, so the next start sends them again). */
void relay_close(void)
{
	struct job *job;

	while ((job = TAILQ_FIRST(&R.inflight)) != NULL) {
		TAILQ_REMOVE(&R.inflight, job, entry);
		for (size_t i = 0; i < job->n; i++)
			if (!job->rcpt[i].have_result)
				log_warn("qid=%s: stop: cut short: %s <%s> (relay job %llu); "
				    "sent again after the restart", job->msg->qid,
				    job->lmtp_dest ? "list manager, to" : "forward to",
				    job->msg->qf.rcpt[job->rcpt[i].index].address,
				    (unsigned long long)job->relay_id);
		sched_job_free(job);
	}
	while ((job = TAILQ_FIRST(&R.waiting)) != NULL) {
		TAILQ_REMOVE(&R.waiting, job, entry);
		sched_job_free(job);
	}
	R.ninflight = 0;
	if (R.ev != NULL)
		event_free(R.ev);
	R.ev = NULL;
}
