/*
 * checks.c - turns for spam checks: at most spam_concurrency checks (and
 * learns) run at once, all users together, and a check that overruns is
 * stopped.
 *
 * SpamAssassin is CPU-bound: more checks at once than processor cores only
 * slow each other down, and a user with many messages (or many workers)
 * would take every core.  So a worker asks for a turn (MSG_CHECK_WAIT)
 * before it checks and says when it is done (MSG_CHECK_END); turns go
 * first to the users with the fewest checks running, then in the order
 * asked.  Only the check waits: deliveries run beside the others.
 *
 * A check still running spam_timeout plus a grace after its turn began has
 * got stuck where SpamAssassin's own time limit cannot reach (a regular
 * expression that never ends, a stopped process): the spawner kills the
 * worker, and the message's recipients it had not finished are tried again
 * at once, that user's copy unchecked (checks_skip).
 */
#include "qmgr/qmgr_private.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/msgtypes.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static struct ipc_msg cmsg;

static long ms_since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

/* Seconds past spam_timeout before a check counts as stuck: half the
 * timeout, between 10 s and a minute. */
static long grace_seconds(void)
{
	long g = (long)(Q.cfg->spam_timeout / 2);
	return g < 10 ? 10 : g > 60 ? 60 : g;
}

void checks_init(void)
{
	TAILQ_INIT(&Q.checks);
	checks_set_slots();
}

void checks_set_slots(void)
{
	Q.check_slots = (int)Q.cfg->spam_concurrency;
	if (Q.check_slots <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		Q.check_slots = n > 0 ? (int)n : 1;
	}
}

/* The waiting worker whose user has the fewest checks running; the first
 * to ask among equals. */
static struct worker *next_turn(void)
{
	struct worker *w, *best = NULL;
	TAILQ_FOREACH(w, &Q.checks, check_entry)
		if (w->check == CHECK_WAITING &&
		    (best == NULL || w->user->checks_running < best->user->checks_running))
			best = w;
	return best;
}

static void grant(void)
{
	struct worker *w;

	while (Q.checks_running < Q.check_slots && (w = next_turn()) != NULL) {
		ipc_init(&cmsg, MSG_CHECK_GO);
		if (ipc_send(w->fd, &cmsg) < 0) {
			/* it is gone; its end of file removes it */
			TAILQ_REMOVE(&Q.checks, w, check_entry);
			w->check = CHECK_NONE;
			w->dead = 1;
			figures_worker(w);
			continue;
		}
		w->check = CHECK_RUNNING;
		clock_gettime(CLOCK_MONOTONIC, &w->check_since);
		w->user->checks_running++;
		Q.checks_running++;
		figures_worker(w);
	}
}

void checks_wait(struct worker *w)
{
	if (w->check != CHECK_NONE || w->job == NULL) {
		log_warn("worker %ld asked for a spam check turn out of turn", (long)w->pid);
		return;
	}
	w->check = CHECK_WAITING;
	clock_gettime(CLOCK_MONOTONIC, &w->check_since);
	TAILQ_INSERT_TAIL(&Q.checks, w, check_entry);
	figures_worker(w);
	grant();
}

/* Take w out of the turns; 1 when it held one. */
static int leave(struct worker *w)
{
	int held = w->check == CHECK_RUNNING;
	if (w->check == CHECK_NONE)
		return 0;
	TAILQ_REMOVE(&Q.checks, w, check_entry);
	w->check = CHECK_NONE;
	figures_worker(w);
	if (held) {
		w->user->checks_running--;
		Q.checks_running--;
	}
	return held;
}

void checks_end(struct worker *w)
{
	if (w->check != CHECK_RUNNING) {
		log_warn("worker %ld ended a spam check it had no turn for", (long)w->pid);
		return;
	}
	/* a check's duration (a learn takes a turn too) */
	if (w->job != NULL && w->job->kind == JOB_DELIVER)
		figures_spam_duration(&w->check_since);
	leave(w);
	grant();
}

void checks_forget(struct worker *w)
{
	if (leave(w))
		grant();
}

/* The copy of the message for w's user is checked no more. */
static void skip_from_now_on(struct qmsg *m, struct user *u)
{
	if (checks_skip(m, u))
		return;
	m->spam_stopped = xreallocarray(m->spam_stopped, m->nspam_stopped + 1,
	    sizeof(*m->spam_stopped));
	m->spam_stopped[m->nspam_stopped++] = u;
	m->retry_now = 1;
}

static void stop(struct worker *w, long ms)
{
	struct job *job = w->job;

	log_warn("worker %ld of %s: spam check running for %ld ms, over spam_timeout (%llu s): "
	    "stopping it%s%s", (long)w->pid, w->user->account, ms,
	    (unsigned long long)Q.cfg->spam_timeout,
	    job && job->msg ? "; qid=" : "", job && job->msg ? job->msg->qid : "");
	ipc_init(&cmsg, MSG_KILL_WORKER);
	ipc_add_u32(&cmsg, (uint32_t)w->pid);
	if (ipc_send(Q.spawner_fd, &cmsg) < 0) {
		log_warn("cannot ask the spawner to stop worker %ld: %s", (long)w->pid,
		    strerror(errno));
		return;         /* asked again at the next tick */
	}
	w->check_stopped = 1;
	w->dead = 1;
	if (job != NULL && job->msg != NULL)
		skip_from_now_on(job->msg, w->user);
}

void checks_watchdog(void)
{
	long limit_ms = ((long)Q.cfg->spam_timeout + grace_seconds()) * 1000;
	struct worker *w;

	TAILQ_FOREACH(w, &Q.checks, check_entry) {
		if (w->check != CHECK_RUNNING || w->check_stopped)
			continue;
		long ms = ms_since(&w->check_since);
		if (ms > limit_ms)
			stop(w, ms);
	}
}

int checks_skip(const struct qmsg *m, const struct user *u)
{
	for (size_t i = 0; i < m->nspam_stopped; i++)
		if (m->spam_stopped[i] == u)
			return 1;
	return 0;
}
