/*
 * workers.c - the qmgr's pool of per-user workers.
 *
 * Each user (delivery identity) has a queue of waiting jobs and up to
 * workers_per_user workers; all users together up to max_workers.  Users
 * with waiting jobs sit in a ring served round-robin, one job per user per
 * pass, so a user with a flood of mail cannot take another user's turn.
 * A busy worker may hold up to worker_batch_size of its user's jobs (one
 * more per pass): it answers them in order, each with its results and
 * MSG_JOB_DONE, and commits the maildir deliveries of those it has read
 * together (one fsync of new/ for them all).
 * Workers are started by the spawner on request; an idle worker is retired
 * after worker_idle_timeout by closing its socket, and at the max_workers
 * cap the least recently used idle worker makes room.  After a reload the
 * workers forked before it retire (idle ones at once, busy ones after
 * their job), so that every delivery soon runs with the new settings.
 */
#include "qmgr/qmgr_private.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/msgtypes.h"
#include "lib/strmap.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How long a spawn request may go unanswered.  With SpamAssassin the
 * spawner spends its first seconds loading and compiling the rules (about
 * 2 s here, 40 s under AddressSanitizer) before it reads any request. */
#define SPAWN_TIMEOUT 30
#define SPAWN_TIMEOUT_SPAM 180

static struct ipc_msg wmsg;

void user_enqueue(struct user *u, struct job *job)
{
	TAILQ_INSERT_TAIL(&u->waiting, job, entry);
	if (!u->in_ring) {
		TAILQ_INSERT_TAIL(&Q.ring, u, ring);
		u->in_ring = 1;
	}
}

/* Give up on a job that could not be handed over: every recipient gets a
 * temporary failure with the reason. */
static void job_fail(struct job *job, const char *reason)
{
	if (job->kind == JOB_LEARN)
		control_learn_done(job, 0, reason);
	else
		sched_job_failed(job, reason);
}

static void idle_expired(evutil_socket_t fd, short what, void *arg);
static void worker_readable(evutil_socket_t fd, short what, void *arg);

static void worker_set_idle(struct worker *w)
{
	struct timeval tv = { .tv_sec = (time_t)Q.cfg->worker_idle_timeout };
	w->job = NULL;
	w->idle_since = time(NULL);
	evtimer_add(w->idle_ev, &tv);
	figures_worker(w);
}

struct job *worker_take_job(struct worker *w)
{
	struct job *job = TAILQ_FIRST(&w->held);
	if (job == NULL)
		return NULL;
	TAILQ_REMOVE(&w->held, job, entry);
	w->nheld--;
	w->job = TAILQ_FIRST(&w->held);
	if (w->job == NULL)
		worker_set_idle(w);
	else
		figures_worker(w);
	return job;
}

/* job went to w: it holds it after those it already has. */
static void worker_hold(struct worker *w, struct job *job)
{
	TAILQ_INSERT_TAIL(&w->held, job, entry);
	w->nheld++;
	if (w->job == NULL)
		w->job = job;
	job->started_usec = figures_now_usec();
	evtimer_del(w->idle_ev);
	figures_worker(w);
}

/* Jobs w holds that it never started (it retires, or was stopped during
 * a spam check, before reading them) go back to the front of its user's
 * queue, in their order. */
static void requeue_held(struct worker *w)
{
	struct job *job;
	while ((job = TAILQ_LAST(&w->held, job_list)) != NULL) {
		TAILQ_REMOVE(&w->held, job, entry);
		w->nheld--;
		job->started_usec = 0;
		TAILQ_INSERT_HEAD(&w->user->waiting, job, entry);
		if (!w->user->in_ring) {
			TAILQ_INSERT_TAIL(&Q.ring, w->user, ring);
			w->user->in_ring = 1;
		}
	}
	w->job = NULL;
}

static void worker_remove(struct worker *w)
{
	struct user *u = w->user;
	checks_forget(w);
	figures_worker_gone(w);
	TAILQ_REMOVE(&u->workers, w, entry);
	TAILQ_REMOVE(&Q.all_workers, w, all_entry);
	u->nworkers--;
	Q.nworkers--;
	event_free(w->read_ev);
	event_free(w->idle_ev);
	close(w->fd);           /* the worker sees end of file and exits */
	free(w);
}

static int worker_send_learn(struct worker *w, struct job *job)
{
	ipc_init(&wmsg, MSG_LEARN);
	ipc_add_u32(&wmsg, (uint32_t)job->learn_spam);
	ipc_set_fd(&wmsg, job->learn_fd);
	if (ipc_send(w->fd, &wmsg) < 0) {
		char reason[300];
		snprintf(reason, sizeof(reason), "cannot hand the message to the worker: %s",
		    strerror(errno));
		w->dead = errno != EMSGSIZE;
		job_fail(job, reason);
		return 0;
	}
	worker_hold(w, job);
	return 1;
}

/* The MSG_JOB payload of m without recipients: str qid, u32, u32. */
size_t job_head_bytes(const struct qmsg *m)
{
	return 4 + strlen(m->qid) + 1 + 4 + 4;
}

/* What one recipient part adds: u32 index, u64 version, str run, u32
 * verdict, u32 is_spam, i64 score, str headers (up to
 * MSG_VERDICT_HEADERS_MAX for a part that waits for a verdict). */
size_t job_part_bytes(const char *run, int for_verdict)
{
	return 4 + 8 + 4 + strlen(run) + 1 + 4 + 4 + 8 + 4 +
	    (for_verdict ? MSG_VERDICT_HEADERS_MAX : 0) + 1;
}

/* Hand job to w: 1 when sent, 0 when it failed (job_fail: the job is
 * over), -1 when w holds jobs already and its socket has no room for one
 * more now (the job is untouched: the caller keeps it). */
static int worker_send_job(struct worker *w, struct job *job)
{
	if (job->kind == JOB_LEARN)
		return worker_send_learn(w, job);
	struct qmsg *m = job->msg;
	struct user *u = w->user;
	int fd = openat(Q.queue_dirfd[m->dir], m->qid, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		char reason[300];
		snprintf(reason, sizeof(reason), "cannot open queue file: %s", strerror(errno));
		job_fail(job, reason);
		return 0;
	}
	/* the sizes here are what job_head_bytes and job_part_bytes say */
	ipc_init(&wmsg, MSG_JOB);
	ipc_add_str(&wmsg, m->qid);
	ipc_add_u32(&wmsg, (uint32_t)checks_skip(m, u));
	size_t n = 0;
	for (size_t i = 0; i < job->n; i++)
		n += !job->rcpt[i].have_result;
	ipc_add_u32(&wmsg, (uint32_t)n);
	for (size_t i = 0; i < job->n; i++) {
		const struct job_rcpt *jr = &job->rcpt[i];
		if (jr->have_result)
			continue;       /* a part whose verdict never came (verdicts.c) */
		ipc_add_u32(&wmsg, (uint32_t)jr->index);
		ipc_add_u64(&wmsg, jr->rules_version);
		ipc_add_str(&wmsg, jr->run);
		ipc_add_u32(&wmsg, (uint32_t)jr->verdict.state);
		ipc_add_u32(&wmsg, (uint32_t)jr->verdict.is_spam);
		ipc_add_i64(&wmsg, jr->verdict.score_milli);
		ipc_add_str(&wmsg, jr->verdict.headers);
	}
	ipc_set_fd(&wmsg, fd);
	int r = ipc_send(w->fd, &wmsg);
	int e = errno;
	close(fd);
	if (r < 0 && w->job != NULL && (e == EAGAIN || e == EWOULDBLOCK))
		return -1;      /* its socket is full of the jobs it holds */
	if (r < 0) {
		char reason[300];
		snprintf(reason, sizeof(reason), "cannot hand job to worker: %s", strerror(e));
		job_fail(job, reason);
		/* a dead worker is removed when its end of file is read */
		if (e != EMSGSIZE)
			w->dead = 1;
		return 0;
	}
	worker_hold(w, job);
	return 1;
}

static struct worker *idle_worker_of(struct user *u)
{
	struct worker *w;
	TAILQ_FOREACH(w, &u->workers, entry)
		if (w->job == NULL && !w->dead)
			return w;
	return NULL;
}

/* A busy worker of u that can take one more of u's delivery jobs: not
 * dead, not of an older configuration (it retires once its jobs are
 * done), holding deliveries only, fewer than worker_batch_size; the one
 * holding fewest.  NULL when none. */
static struct worker *worker_with_room(struct user *u)
{
	struct worker *w, *best = NULL;
	struct job *next = TAILQ_FIRST(&u->waiting);

	if (next == NULL || next->kind != JOB_DELIVER)
		return NULL;
	TAILQ_FOREACH(w, &u->workers, entry) {
		if (w->job == NULL || w->dead || w->generation < Q.cfg->generation ||
		    w->job->kind != JOB_DELIVER || w->nheld >= Q.cfg->worker_batch_size)
			continue;
		if (best == NULL || w->nheld < best->nheld)
			best = w;
	}
	return best;
}

/* Whether w may be retired to make room: idle, and not a fresh worker
 * (no job done yet) of a user with mail waiting: users at the cap would
 * otherwise take each other's fresh workers for ever, none getting to
 * work. */
static int retirable(const struct worker *w)
{
	return w->job == NULL && (TAILQ_EMPTY(&w->user->waiting) || w->jobs > 0 || w->dead);
}

/* At the max_workers cap: retire an idle worker of another user, one of a
 * user with nothing waiting first, then the least recently used.  Returns
 * 1 when room was made; 0 with *none set when no worker of any user (for
 * itself included) could go, so that nothing can until a worker is idle.
 * Walks the workers (at most max_workers), not the users. */
static int make_room(struct user *for_user, int *none)
{
	struct worker *w, *best = NULL;
	int best_waiting = 0;

	*none = 1;
	TAILQ_FOREACH(w, &Q.all_workers, all_entry) {
		if (!retirable(w))
			continue;
		*none = 0;
		if (w->user == for_user)
			continue;
		int waiting = !TAILQ_EMPTY(&w->user->waiting);
		if (best == NULL || waiting < best_waiting ||
		    (waiting == best_waiting && w->idle_since < best->idle_since)) {
			best = w;
			best_waiting = waiting;
		}
	}
	if (best == NULL)
		return 0;
	log_debug("max_workers reached: retiring idle worker %ld of %s",
	    (long)best->pid, best->user->account);
	worker_remove(best);
	return 1;
}

static void spawn_request(struct user *u)
{
	struct spawn_req *req = xcalloc(1, sizeof(*req));
	struct ipc_msg *m = &wmsg;

	req->id = ++Q.next_spawn_id;
	req->user = u;
	req->sent = time(NULL);
	ipc_init(m, MSG_SPAWN_REQ);
	ipc_add_u32(m, req->id);
	ipc_add_u32(m, (uint32_t)u->uid);
	ipc_add_u32(m, (uint32_t)u->gid);
	ipc_add_str(m, u->account);
	ipc_add_str(m, u->witness);
	ipc_add_u32(m, u->witness_part);
	if (ipc_send(Q.spawner_fd, m) < 0) {
		/* retried by the periodic timer's dispatch */
		log_warn("cannot ask the spawner for a worker: %s", strerror(errno));
		free(req);
		return;
	}
	TAILQ_INSERT_TAIL(&Q.spawns, req, entry);
	u->spawning++;
	Q.nspawning++;
	figures_spawning();
}

void workers_dispatch(void)
{
	int progress = 1;
	int cap_user = (int)Q.cfg->workers_per_user;
	int cap_all = (int)Q.cfg->max_workers;

	/* no worker can be retired: every request at the cap fails alike
	 * until a worker is idle, which no step of this dispatch makes (one
	 * whose send fails during it is dead and goes at the next) */
	int no_room = 0;

	if (Q.stopping)
		return;
	while (progress) {
		progress = 0;
		struct user *u, *next;
		for (u = TAILQ_FIRST(&Q.ring); u != NULL; u = next) {
			next = TAILQ_NEXT(u, ring);
			if (TAILQ_EMPTY(&u->waiting)) {
				TAILQ_REMOVE(&Q.ring, u, ring);
				u->in_ring = 0;
				continue;
			}
			struct worker *w = idle_worker_of(u);
			if (w != NULL) {
				struct job *job = TAILQ_FIRST(&u->waiting);
				TAILQ_REMOVE(&u->waiting, job, entry);
				worker_send_job(w, job);
				progress = 1;
				continue;
			}
			if (u->nworkers + u->spawning < cap_user &&
			    (Q.nworkers + Q.nspawning < cap_all ||
			    (!no_room && make_room(u, &no_room)))) {
				spawn_request(u);
				continue;
			}
			/* u has all the workers it may have (none still
			 * starting, which would take the job): one more job
			 * for a busy one, which takes it with those it holds */
			w = u->spawning == 0 ? worker_with_room(u) : NULL;
			if (w != NULL) {
				struct job *job = TAILQ_FIRST(&u->waiting);
				TAILQ_REMOVE(&u->waiting, job, entry);
				if (worker_send_job(w, job) < 0)
					/* no room on its socket: the job waits for
					 * the next dispatch (after a result) */
					TAILQ_INSERT_HEAD(&u->waiting, job, entry);
				else
					progress = 1;
			}
		}
		/* the next round starts one user further on */
		u = TAILQ_FIRST(&Q.ring);
		if (u != NULL && TAILQ_NEXT(u, ring) != NULL) {
			TAILQ_REMOVE(&Q.ring, u, ring);
			TAILQ_INSERT_TAIL(&Q.ring, u, ring);
		}
	}
}

/* A user that cannot get a worker: its waiting jobs are deferred. */
static void fail_waiting(struct user *u, const char *reason)
{
	struct job *job;
	while ((job = TAILQ_FIRST(&u->waiting)) != NULL) {
		TAILQ_REMOVE(&u->waiting, job, entry);
		job_fail(job, reason);
	}
}

void workers_spawn_reply(int ok, uint32_t id, pid_t pid, int fd, const char *reason)
{
	struct spawn_req *req;
	TAILQ_FOREACH(req, &Q.spawns, entry)
		if (req->id == id)
			break;
	if (req == NULL) {
		/* an answer to a request we gave up on, or from before a restart */
		if (fd >= 0)
			close(fd);
		return;
	}
	TAILQ_REMOVE(&Q.spawns, req, entry);
	struct user *u = req->user;
	free(req);
	u->spawning--;
	Q.nspawning--;
	figures_spawning();
	if (!ok) {
		log_warn("no worker for %s (uid %lu): %s", u->account, (unsigned long)u->uid, reason);
		if (u->nworkers == 0 && u->spawning == 0)
			fail_waiting(u, reason);
		workers_dispatch();
		return;
	}
	struct worker *w = xcalloc(1, sizeof(*w));
	TAILQ_INIT(&w->held);
	w->pid = pid;
	w->fd = fd;
	w->user = u;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	w->started = time(NULL);
	w->generation = Q.cfg->generation;
	w->read_ev = event_new(Q.base, fd, EV_READ | EV_PERSIST, worker_readable, w);
	w->idle_ev = evtimer_new(Q.base, idle_expired, w);
	event_add(w->read_ev, NULL);
	TAILQ_INSERT_TAIL(&u->workers, w, entry);
	TAILQ_INSERT_TAIL(&Q.all_workers, w, all_entry);
	u->nworkers++;
	Q.nworkers++;
	worker_set_idle(w);
	workers_dispatch();
}

void workers_check_spawn_timeouts(void)
{
	time_t now = time(NULL);
	struct spawn_req *req, *next;
	for (req = TAILQ_FIRST(&Q.spawns); req != NULL; req = next) {
		next = TAILQ_NEXT(req, entry);
		if (now - req->sent >= (Q.cfg->spam_engine ? SPAWN_TIMEOUT_SPAM : SPAWN_TIMEOUT))
			workers_spawn_reply(0, req->id, -1, -1, "the spawner did not answer");
	}
	workers_dispatch();
}

/* A job ended: a delivery goes back to the scheduler, a learn job's
 * answer to mailprocctl. */
static void job_ended(struct job *job, const char *why)
{
	if (job->kind == JOB_LEARN)
		control_learn_done(job, 0, why);
	else
		sched_job_finished(job);
}

/* Every job w held ends: those without results are temporary failures
 * (retried), as for a single job; when the watchdog stopped w during a
 * spam check, only the job being checked (the first: the worker reports
 * all before it before it asks for a turn) is tried again unchecked, and
 * the jobs after it, never started, go back to the queue. */
static void worker_gone(struct worker *w, const char *why)
{
	struct job_list jobs = TAILQ_HEAD_INITIALIZER(jobs);
	struct job *job;
	int stopped = w->check_stopped;
	if (w->job != NULL && !stopped)
		log_warn("worker %ld of %s %s during a job", (long)w->pid, w->user->account, why);
	job = TAILQ_FIRST(&w->held);
	if (job != NULL) {
		TAILQ_REMOVE(&w->held, job, entry);
		w->nheld--;
	}
	if (stopped)
		requeue_held(w);
	else
		TAILQ_CONCAT(&jobs, &w->held, entry);
	w->nheld = 0;
	w->job = NULL;
	worker_remove(w);
	if (job == NULL)
		return;
	if (stopped && job->kind == JOB_DELIVER)
		sched_job_failed(job, "spam check stopped after spam_timeout; trying again unchecked");
	else
		job_ended(job, stopped ? "the check was stopped after spam_timeout" :
		    "the worker exited before answering");
	while ((job = TAILQ_FIRST(&jobs)) != NULL) {
		TAILQ_REMOVE(&jobs, job, entry);
		job_ended(job, "the worker exited before answering");
	}
}

/* MSG_JOB_DONE: str qid, u32 retiring, u32 checks.  Returns 1 when the
 * worker leaves (it was removed). */
static int on_job_done(struct worker *w)
{
	const char *qid;
	uint32_t retiring, checks;
	struct job *job = w->job;

	if (ipc_get_str(&wmsg, &qid) < 0 || ipc_get_u32(&wmsg, &retiring) < 0 ||
	    ipc_get_u32(&wmsg, &checks) < 0 || ipc_end(&wmsg) < 0 ||
	    job->kind != JOB_DELIVER || strcmp(qid, job->msg->qid) != 0) {
		log_warn("worker %ld sent a malformed end of job", (long)w->pid);
		return 0;
	}
	w->checks = checks;
	w->jobs++;
	checks_forget(w);       /* a turn not given back is over with the job */
	worker_take_job(w);
	sched_job_finished(job);
	if (retiring) {
		log_debug("worker %ld of %s retires after %u spam checks", (long)w->pid,
		    w->user->account, checks);
		/* it leaves without reading what else it was sent */
		requeue_held(w);
		worker_remove(w);
		return 1;
	}
	/* (unless finishing the job gave it another: then after that one) */
	if (w->job == NULL && w->generation < Q.cfg->generation) {
		log_debug("worker %ld of %s retires: the configuration was reloaded",
		    (long)w->pid, w->user->account);
		worker_remove(w);
		return 1;
	}
	return 0;
}

static void on_learn_done(struct worker *w)
{
	uint32_t ok;
	const char *text;
	struct job *job = w->job;

	if (job == NULL || job->kind != JOB_LEARN || ipc_get_u32(&wmsg, &ok) < 0 ||
	    ipc_get_str(&wmsg, &text) < 0 || ipc_end(&wmsg) < 0) {
		log_warn("worker %ld sent a malformed learn answer", (long)w->pid);
		return;
	}
	worker_take_job(w);
	checks_forget(w);
	control_learn_done(job, ok != 0, text);
}

static void on_result(struct worker *w)
{
	const char *qid, *dsn, *text, *where, *forward, *done, *headers;
	uint32_t index, status, verdict, is_spam, action;
	int64_t score;
	struct job *job = w->job;

	if (ipc_get_str(&wmsg, &qid) < 0 || ipc_get_u32(&wmsg, &index) < 0 ||
	    ipc_get_u32(&wmsg, &status) < 0 || ipc_get_str(&wmsg, &dsn) < 0 ||
	    ipc_get_str(&wmsg, &text) < 0 || ipc_get_str(&wmsg, &where) < 0 ||
	    ipc_get_str(&wmsg, &forward) < 0 || ipc_get_str(&wmsg, &done) < 0 ||
	    ipc_get_u32(&wmsg, &verdict) < 0 || ipc_get_u32(&wmsg, &is_spam) < 0 ||
	    ipc_get_i64(&wmsg, &score) < 0 || ipc_get_str(&wmsg, &headers) < 0 ||
	    ipc_get_u32(&wmsg, &action) < 0 ||
	    ipc_end(&wmsg) < 0 || status > DELIVERY_PERMFAIL || verdict > VERDICT_CHECKED ||
	    action >= RESULT_ACTION_COUNT || action == RESULT_ACTION_LIST ||
	    job == NULL || job->kind != JOB_DELIVER || strcmp(qid, job->msg->qid) != 0) {
		log_warn("worker %ld sent a malformed result", (long)w->pid);
		return;
	}
	for (size_t i = 0; i < job->n; i++) {
		struct job_rcpt *jr = &job->rcpt[i];
		if (jr->index != index || jr->have_result)
			continue;
		jr->have_result = 1;
		struct delivery_result *r = job_rcpt_result(jr);
		r->status = (enum delivery_status)status;
		r->action = action;
		snprintf(r->dsn, sizeof(r->dsn), "%s", dsn);
		snprintf(r->text, sizeof(r->text), "%s", text);
		free(jr->where);
		jr->where = xstrdup(where);
		free(jr->forward);
		jr->forward = forward[0] ? xstrdup(forward) : NULL;
		free(jr->done);
		jr->done = done[0] ? xstrdup(done) : NULL;
		/* one check per job (the worker checks a message once for
		 * its user): the first primary part's verdict is it */
		if (verdict != VERDICT_NONE && !job->spam_counted &&
		    strncmp(jr->run, "only:", 5) != 0) {
			job->spam_counted = 1;
			figures_spam_verdict(verdict, is_spam != 0);
		}
		if (strncmp(jr->run, "primary", 7) == 0) {
			/* its uid=/gid= parts may be waiting for this */
			struct part_verdict v = { .state = (int)verdict, .is_spam = is_spam != 0,
			    .score_milli = score, .headers = (char *)headers };
			if (strlen(headers) > MSG_VERDICT_HEADERS_MAX)
				v.headers = NULL;       /* the jobs have no room for more */
			verdicts_got(job->msg, jr->index, &v);
		}
		return;
	}
	log_warn("worker %ld reported recipient %u not in its job", (long)w->pid, index);
}

static void worker_readable(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	for (;;) {
		int r = ipc_recv(w->fd, &wmsg);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r <= 0) {
			worker_gone(w, r == 0 ? "exited" : "failed");
			workers_dispatch();
			return;
		}
		if (wmsg.fd >= 0) {
			close(wmsg.fd);
			wmsg.fd = -1;
		}
		if (wmsg.type == MSG_RESULT) {
			on_result(w);
		} else if (wmsg.type == MSG_JOB_DONE && w->job != NULL) {
			on_job_done(w);
			/* dispatching may retire this very worker: do not touch
			 * w afterwards; the persistent event brings us back for
			 * anything still unread */
			workers_dispatch();
			return;
		} else if (wmsg.type == MSG_CHECK_WAIT && ipc_end(&wmsg) == 0) {
			checks_wait(w);
		} else if (wmsg.type == MSG_CHECK_END && ipc_end(&wmsg) == 0) {
			checks_end(w);
		} else if (wmsg.type == MSG_LEARN_DONE && w->job != NULL) {
			on_learn_done(w);
			workers_dispatch();
			return;
		} else {
			log_warn("worker %ld sent unexpected message type %u", (long)w->pid, wmsg.type);
		}
	}
}

static void idle_expired(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	if (w->job == NULL) {
		log_debug("retiring idle worker %ld of %s", (long)w->pid, w->user->account);
		worker_remove(w);
	}
}

static int retire_stale_idle(const char *key, void *value, void *ctx)
{
	struct user *u = value;
	struct worker *w, *next;

	for (w = TAILQ_FIRST(&u->workers); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (w->job == NULL && w->generation < Q.cfg->generation) {
			log_debug("retiring idle worker %ld of %s: the configuration was reloaded",
			    (long)w->pid, u->account);
			worker_remove(w);
		}
	}
	return 0;
}

void workers_retire_stale(void)
{
	strmap_each(Q.users, retire_stale_idle, NULL);
}

static int count_busy(const char *key, void *value, void *ctx)
{
	struct user *u = value;
	struct worker *w;
	TAILQ_FOREACH(w, &u->workers, entry)
		*(int *)ctx += w->job != NULL;
	return 0;
}

int workers_busy(void)
{
	int n = 0;
	strmap_each(Q.users, count_busy, &n);
	return n;
}

static int close_user_workers(const char *key, void *value, void *ctx)
{
	struct user *u = value;
	struct worker *w;
	while ((w = TAILQ_FIRST(&u->workers)) != NULL) {
		struct job_list jobs = TAILQ_HEAD_INITIALIZER(jobs);
		struct job *job;
		TAILQ_CONCAT(&jobs, &w->held, entry);
		w->nheld = 0;
		w->job = NULL;
		worker_remove(w);
		while ((job = TAILQ_FIRST(&jobs)) != NULL) {
			TAILQ_REMOVE(&jobs, job, entry);
			job_ended(job, "stopping");
		}
	}
	return 0;
}

void workers_close_all(void)
{
	strmap_each(Q.users, close_user_workers, NULL);
}
