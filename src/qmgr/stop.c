/*
 * stop.c - the qmgr's graceful stop (SIGTERM from the master): no new jobs
 * are handed out, the jobs in flight at the workers and at the relay get
 * stop_grace_time to finish and have their results recorded, then the
 * loop ends.  What is still running then is logged as cut short and left
 * without a result on disk: it is still pending, and the next start
 * delivers it again at once (at least once).  The results a cut job did
 * report for some of its recipients are recorded.
 */
#include "qmgr/qmgr_private.h"
#include "lib/log.h"
#include "lib/strmap.h"

#include <event2/event.h>
#include <time.h>

static time_t stop_deadline;
static struct event *stop_timer;

/* Log what w's job did not finish, and take the job from w: recorded as
 * far as it got when some recipients have a result, else forgotten. */
static void cut_job(struct worker *w)
{
	struct job *job = w->job;
	int reported = 0;

	if (job->kind != JOB_DELIVER) {
		log_warn("stop: cut short: a learn request (worker %ld of %s)", (long)w->pid,
		    w->user->account);
		return;          /* answered by workers_close_all() */
	}
	for (size_t i = 0; i < job->n; i++) {
		if (job->rcpt[i].have_result) {
			reported++;
			continue;
		}
		log_warn("qid=%s: stop: cut short: delivery to <%s> (worker %ld of %s); "
		    "delivered again after the restart", job->msg->qid,
		    job->msg->qf.rcpt[job->rcpt[i].index].address, (long)w->pid, w->user->account);
	}
	worker_take_job(w);             /* busy no longer when it was the last */
	if (reported > 0)
		sched_job_failed(job, "mail system stopping: delivery cut short");
	else
		sched_job_free(job);    /* no result: pending */
}

static int cut_user(const char *key, void *value, void *ctx)
{
	struct user *u = value;
	struct worker *w;

	TAILQ_FOREACH(w, &u->workers, entry) {
		/* every job it holds (a learn request stays: see cut_job) */
		while (w->job != NULL && w->job->kind == JOB_DELIVER)
			cut_job(w);
		if (w->job != NULL)
			cut_job(w);
	}
	return 0;
}

void stop_check(void)
{
	if (!Q.stopping)
		return;
	int busy = workers_busy(), relayed = relay_inflight();
	if (busy > 0 || relayed > 0) {
		if (time(NULL) < stop_deadline)
			return;
		log_warn("stop: %d delivery job%s and %d relay job%s still running after "
		    "stop_grace_time (%llu s)", busy, busy == 1 ? "" : "s", relayed,
		    relayed == 1 ? "" : "s", (unsigned long long)Q.cfg->stop_grace_time);
		strmap_each(Q.users, cut_user, NULL);
		/* the relay's jobs are logged by relay_close() */
	}
	event_base_loopbreak(Q.base);
}

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
	stop_check();
}

void stop_begin(void)
{
	struct timeval second = { .tv_sec = 1 };

	if (Q.stopping)
		return;
	Q.stopping = 1;
	stop_deadline = time(NULL) + (time_t)Q.cfg->stop_grace_time;
	log_info("stopping: %d delivery job%s and %d relay job%s in flight (stop_grace_time %llu s)",
	    workers_busy(), workers_busy() == 1 ? "" : "s", relay_inflight(),
	    relay_inflight() == 1 ? "" : "s", (unsigned long long)Q.cfg->stop_grace_time);
	stop_timer = event_new(Q.base, -1, EV_PERSIST, on_stop_timer, NULL);
	if (stop_timer == NULL || event_add(stop_timer, &second) < 0)
		log_warn("stop: cannot set a timer; checking on the periodic tick");
}

void stop_free(void)
{
	if (stop_timer != NULL)
		event_free(stop_timer);
	stop_timer = NULL;
}
