/*
 * worker.c - the per-user delivery worker.
 *
 * Runs as the recipient's uid/gid.  Waits for jobs from the qmgr; each job
 * names a queue file (an open read-only descriptor: the worker cannot open
 * the queue directory itself) and the recipients of this user, each with
 * the part of its rules to run.  The worker reads each recipient's rules
 * entry from the databases itself and runs it only when it runs as this
 * worker's own uid/gid (spawner/trust.c): the qmgr picks neither the
 * account nor the commands.  For each recipient worker_deliver()
 * (worker_rules.c) runs the rules, and one result goes back, with the
 * addresses to forward to, which the qmgr queues for the relay.
 *
 * The qmgr may send several jobs before the first is answered
 * (worker_batch_size).  The worker takes every job already waiting on its
 * socket as one batch: it delivers them all, maildir copies written into
 * tmp/ only, then commits the batch (maildir_batch.c: the files' fsyncs
 * at once, links into new/, one fsync per new/), and only then sends the
 * results (held in worker_held.c), each job's followed by its
 * MSG_JOB_DONE.  Before a spam check turn it commits and reports what it
 * has, so that the job being checked is the first the qmgr waits for.
 */
#include "spawner/worker.h"
#include "spawner/worker_private.h"
#include "spawner/worker_held.h"
#include "db/db.h"
#include "db/rules_entry.h"
#include "deliver/deliver.h"
#include "lib/fsutil.h"
#include "lib/ipc.h"
#include "lib/xalloc.h"
#include "lib/log.h"
#include "lib/msgtypes.h"
#include "lib/buf.h"
#include "queue/qfile.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct ipc_msg job, out, turn;
static volatile sig_atomic_t stop_requested;
static struct rule_instruction default_instr;
static int qmgr_fd = -1;
static struct db *worker_db;
static struct held held;
/* Jobs that came while the worker waited for a check turn, in order. */
static struct ipc_msg *stashed[WORKER_BATCH_MAX];
static size_t nstashed;

static void stash(const struct ipc_msg *m)
{
	if (nstashed == WORKER_BATCH_MAX)
		fatal("more than %d jobs from qmgr at once", WORKER_BATCH_MAX);
	size_t size = offsetof(struct ipc_msg, data) + m->len;
	stashed[nstashed] = xmalloc(size);
	memcpy(stashed[nstashed++], m, size);
}

/* The first stashed job into m; 0 when none. */
static int unstash(struct ipc_msg *m)
{
	if (nstashed == 0)
		return 0;
	memcpy(m, stashed[0], offsetof(struct ipc_msg, data) + stashed[0]->len);
	free(stashed[0]);
	memmove(stashed, stashed + 1, --nstashed * sizeof(stashed[0]));
	return 1;
}

const struct config *worker_cfg;
const struct rule_instruction *worker_default = &default_instr;
struct trust_self worker_self;
static const char *worker_home;

/* The databases, opened on first need (and again after a failure). */
static struct db *databases(void)
{
	char err[512];

	if (worker_db == NULL && (worker_self.root_mode ?
	    db_open_root_only(worker_cfg->db_dir, &worker_db, err, sizeof(err)) :
	    db_open(worker_cfg->db_dir, &worker_db, err, sizeof(err))) < 0) {
		log_warn("worker: cannot open the databases: %s", err);
		worker_db = NULL;
	}
	return worker_db;
}

/* Read rc's rules from the databases and check that its part runs as
 * this worker (trust.c); anything else is refused, loudly. */
static int check_rcpt(const struct qfile *qf, const char *qid, struct worker_rcpt *rc,
    struct delivery_result *r)
{
	char err[512];
	const char *address = qf->rcpt[rc->index].address;

	if (trust_worker_part(databases(), worker_cfg->recipient_delimiter, &worker_self,
	    address, rc->run, rc->version, &rc->res, &rc->entry, err, sizeof(err)) == 0) {
		rc->home = strncmp(rc->run, "only:", 5) == 0 || rc->res.home == NULL ?
		    worker_home : rc->res.home;
		return 0;
	}
	log_warn("qid=%s to=<%s>: REFUSED part \"%s\" in the worker of %s (uid %lu): %s",
	    qid, address, rc->run, worker_self.account, (unsigned long)worker_self.uid, err);
	deliver_result_set(r, DELIVERY_TEMPFAIL, "4.3.0", "worker refused the job: %s", err);
	return -1;
}

/* The verdict rc's rules ran with, for its uid=/gid= parts (only a
 * primary part's counts), kept with its held result. */
static void keep_verdict(struct held_result *hr, const struct worker_rcpt *rc,
    const struct worker_spam *ws)
{
	uint32_t state = VERDICT_NONE;
	const char *headers = "";

	if (rc != NULL && rc->spam_used && ws->done && strncmp(rc->run, "only:", 5) != 0) {
		state = ws->checked ? VERDICT_CHECKED : VERDICT_UNCHECKED;
		if (ws->headers != NULL && strlen(ws->headers) <= MSG_VERDICT_HEADERS_MAX)
			headers = ws->headers;
	}
	hr->verdict = state;
	hr->is_spam = state == VERDICT_CHECKED && ws->is_spam;
	hr->score = state == VERDICT_CHECKED ? (int64_t)(ws->score * 1000.0) : 0;
	hr->headers = xstrdup(headers);
}

static int send_result(int fd, const char *qid, const struct held_result *hr)
{
	const struct delivery_result *r = &hr->r;

	ipc_init(&out, MSG_RESULT);
	ipc_add_str(&out, qid);
	ipc_add_u32(&out, hr->index);
	ipc_add_u32(&out, (uint32_t)r->status);
	ipc_add_str(&out, r->dsn);
	ipc_add_str(&out, r->status == DELIVERY_OK && r->text[0] == '\0' ? "delivered" : r->text);
	ipc_add_str(&out, hr->where.data ? hr->where.data : "");
	ipc_add_str(&out, hr->forward.data ? hr->forward.data : "");
	ipc_add_str(&out, hr->done.data ? hr->done.data : "");
	ipc_add_u32(&out, hr->verdict);
	ipc_add_u32(&out, hr->is_spam);
	ipc_add_i64(&out, hr->score);
	ipc_add_str(&out, hr->headers ? hr->headers : "");
	ipc_add_u32(&out, r->action < RESULT_ACTION_COUNT ? r->action : RESULT_ACTION_NONE);
	return ipc_send(fd, &out);
}

/* A job is done; a worker due for replacement says so with its last one
 * and leaves (the qmgr takes back what else it sent). */
static void send_done(int fd, const char *qid, int may_retire)
{
	int retiring = may_retire && worker_spam_retiring();

	ipc_init(&out, MSG_JOB_DONE);
	ipc_add_str(&out, qid);
	ipc_add_u32(&out, (uint32_t)retiring);
	ipc_add_u32(&out, (uint32_t)worker_spam_checks());
	if (ipc_send(fd, &out) < 0)
		exit(1);
	if (retiring) {
		log_info("worker retiring after %lu spam checks", worker_spam_checks());
		worker_spam_exit();
		exit(0);
	}
}

/* A batched maildir delivery did not become durable. */
static void commit_failed(size_t seq, int instr, const struct delivery_result *r, void *arg)
{
	struct delivery_result one = *r;
	one.action = RESULT_ACTION_MAILDIR;
	held_fail(&held, seq, instr, &one);
}

/* Whether the qmgr closed its end of the socket (it died, or stopped
 * after stop_grace_time): nothing sent now would be heard. */
static int qmgr_gone(int fd)
{
	struct pollfd p = { .fd = fd, .events = 0 };
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR)) != 0;
}

/* Commit the batch's maildir deliveries, then send every final result
 * and the end of every job whose results are all sent.  at_end: nothing
 * else is being delivered (a worker due to retire may leave now).  With
 * the qmgr gone the copies not yet committed are taken back instead: it
 * heard of none of them, so the qmgr that follows delivers them again,
 * and committed they would be second copies. */
static void flush(int fd, int at_end)
{
	size_t nres, njobs;

	if (qmgr_gone(fd)) {
		log_info("the qmgr is gone: uncommitted maildir copies taken back: %zu "
		    "(the next qmgr delivers them again)", maildir_batch_pending());
		maildir_batch_discard();
		exit(1);
	}
	maildir_batch_commit(commit_failed, NULL);
	maildir_batch_open();
	held_ready(&held, &nres, &njobs);
	for (size_t j = 0; j < held.njobs; j++) {
		size_t from, to;
		held_job_range(&held, j, nres, &from, &to);
		for (size_t i = from; i < to; i++)
			if (send_result(fd, held.jobs[j].qid, &held.res[i]) < 0)
				exit(1);        /* the qmgr is gone; it retries what it missed */
		if (j < njobs)
			send_done(fd, held.jobs[j].qid, at_end && j + 1 == held.njobs);
		if (j >= njobs)
			break;          /* the job still runs */
	}
	held_drop(&held, nres, njobs);
}

void worker_check_begin(void)
{
	/* the qmgr must hear everything before this job first: a stopped
	 * check fails the first job it waits for */
	flush(qmgr_fd, 0);
	ipc_init(&turn, MSG_CHECK_WAIT);
	if (ipc_send(qmgr_fd, &turn) < 0)
		exit(1);        /* the qmgr is gone; it retries what it missed */
	for (;;) {
		struct pollfd p = { .fd = qmgr_fd, .events = POLLIN };
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			fatal("poll: %s", strerror(errno));
		int r = ipc_recv(qmgr_fd, &turn);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0)
			exit(1);
		if (turn.type == MSG_JOB) {
			stash(&turn);   /* sent before the qmgr heard of this check */
			continue;
		}
		if (turn.fd >= 0)
			close(turn.fd);
		turn.fd = -1;
		if (turn.type != MSG_CHECK_GO || ipc_end(&turn) < 0)
			fatal("unexpected message type %u from qmgr while waiting for a check turn",
			    turn.type);
		return;
	}
}

void worker_check_end(void)
{
	ipc_init(&turn, MSG_CHECK_END);
	if (ipc_send(qmgr_fd, &turn) < 0)
		exit(1);
}

/* MSG_LEARN: teach this user's Bayes data the message in the passed file. */
static void handle_learn(int fd)
{
	uint32_t is_spam;
	int mfd = job.fd;
	char err[512] = "";
	int ok = 0;

	job.fd = -1;
	if (ipc_get_u32(&job, &is_spam) < 0 || ipc_end(&job) < 0 || mfd < 0 || is_spam > 1) {
		if (mfd >= 0)
			close(mfd);
		fatal("malformed learn request from qmgr");
	}
	struct stat st;
	char *msg = NULL;
	if (fstat(mfd, &st) < 0 || st.st_size > (off_t)worker_cfg->max_message_size) {
		snprintf(err, sizeof(err), "cannot read the message");
	} else {
		msg = xmalloc((size_t)st.st_size + 1);
		if (pread_all(mfd, msg, (size_t)st.st_size, 0) < 0)
			snprintf(err, sizeof(err), "cannot read the message: %s", strerror(errno));
		else
			ok = worker_spam_learn(msg, (size_t)st.st_size, (int)is_spam, err, sizeof(err)) == 0;
	}
	free(msg);
	close(mfd);
	if (ok)
		log_info("learned a message as %s", is_spam ? "spam" : "ham");
	ipc_init(&out, MSG_LEARN_DONE);
	ipc_add_u32(&out, (uint32_t)ok);
	ipc_add_str(&out, ok ? (is_spam ? "learned as spam" : "learned as ham") : err);
	if (ipc_send(fd, &out) < 0)
		exit(1);
}

static void handle_job(int fd)
{
	const char *qid;
	uint32_t n, spam_skip;
	struct worker_rcpt rc[MSG_JOB_MAX_RCPTS];
	struct qfile qf;
	int qfd = job.fd;

	job.fd = -1;
	if (ipc_get_str(&job, &qid) < 0 || ipc_get_u32(&job, &spam_skip) < 0 ||
	    ipc_get_u32(&job, &n) < 0 || n > MSG_JOB_MAX_RCPTS)
		goto malformed;
	for (uint32_t i = 0; i < n; i++) {
		memset(&rc[i], 0, sizeof(rc[i]));
		if (ipc_get_u32(&job, &rc[i].index) < 0 || ipc_get_u64(&job, &rc[i].version) < 0 ||
		    ipc_get_str(&job, &rc[i].run) < 0 ||
		    ipc_get_u32(&job, &rc[i].given_verdict) < 0 ||
		    ipc_get_u32(&job, &rc[i].given_is_spam) < 0 ||
		    ipc_get_i64(&job, &rc[i].given_score) < 0 ||
		    ipc_get_str(&job, &rc[i].given_headers) < 0 ||
		    rc[i].given_verdict > VERDICT_CHECKED)
			goto malformed;
	}
	if (ipc_end(&job) < 0 || qfd < 0)
		goto malformed;

	int read_ok = qfile_read(qfd, &qf) == 0 && strcmp(qf.qid, qid) == 0;
	int read_errno = errno;
	struct worker_spam ws = { .stopped_before = spam_skip != 0 };
	held_job_begin(&held, qid);
	for (uint32_t i = 0; i < n; i++) {
		size_t seq;
		if (maildir_batch_pending() >= MAILDIR_BATCH_MAX)
			flush(fd, 0);
		struct held_result *hr = held_result_new(&held, rc[i].index, &seq);
		struct delivery_result r = { 0 };
		struct buf where = BUF_INIT, forward = BUF_INIT, done = BUF_INIT;
		maildir_batch_tag(seq, -1);
		rc[i].seq = seq;
		if (!read_ok) {
			r.status = DELIVERY_TEMPFAIL;
			snprintf(r.dsn, sizeof(r.dsn), "4.3.0");
			snprintf(r.text, sizeof(r.text), "cannot read queue file: %s", strerror(read_errno));
		} else if (rc[i].index >= qf.nrcpt) {
			r.status = DELIVERY_TEMPFAIL;
			snprintf(r.dsn, sizeof(r.dsn), "4.3.0");
			snprintf(r.text, sizeof(r.text), "recipient index out of range");
		} else if (check_rcpt(&qf, qid, &rc[i], &r) == 0) {
			worker_deliver(&qf, qfd, &rc[i], &ws, &r, &where, &forward, &done);
			rules_entry_free(&rc[i].entry);
			db_resolution_free(&rc[i].res);
		}
		/* a check turn may have sent the results before this one */
		hr = held_result_get(&held, seq);
		hr->r = r;
		hr->where = where;
		hr->forward = forward;
		hr->done = done;
		keep_verdict(hr, &rc[i], &ws);
		hr->final = 1;
	}
	held_job_end(&held);
	worker_spam_reset(&ws);
	if (read_ok)
		qfile_free(&qf);
	close(qfd);
	return;
malformed:
	if (qfd >= 0)
		close(qfd);
	fatal("malformed job from qmgr");
}

/* SIGTERM from the spawner: the daemon's stop grace time is over.  A pipe
 * running is stopped; the worker leaves when its job is over (the qmgr
 * records nothing it did not hear: the rest is delivered again). */
static void on_sigterm(int sig)
{
	stop_requested = 1;
	deliver_pipe_stop();
}

static void catch_sigterm(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigterm;     /* no SA_RESTART: poll() returns */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
}

/* After a job: the jobs already waiting on the socket join the batch. */
static void take_batch(int fd)
{
	for (size_t taken = 1; taken < WORKER_BATCH_MAX && !stop_requested; taken++) {
		if (unstash(&job)) {
			handle_job(fd);
			continue;
		}
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 0) <= 0 || (p.revents & (POLLHUP | POLLERR)))
			return;         /* none waiting, or the qmgr is gone (flush) */
		int r = ipc_recv(fd, &job);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (r <= 0) {
			flush(fd, 0);   /* the qmgr is gone: nothing more to read */
			exit(r == 0 ? 0 : 1);
		}
		if (job.type != MSG_JOB) {
			if (job.fd >= 0)
				close(job.fd);
			fatal("unexpected message type %u from qmgr in a batch of jobs", job.type);
		}
		handle_job(fd);
	}
}

void worker_main(const struct config *cfg, int fd, int root_mode, const char *account,
    const char *home)
{
	char err[256];
	/* The qmgr retires idle workers by closing the socket; this is only a
	 * safety net should that message never come. */
	int safety_ms = (int)((cfg->worker_idle_timeout * 2 + 60) * 1000);

	worker_cfg = cfg;
	qmgr_fd = fd;
	worker_self = (struct trust_self){ .root_mode = root_mode, .uid = getuid(),
	    .gid = getgid(), .account = account, .home_base = cfg->home_base };
	worker_home = home;
	if (rules_parse_instruction(cfg->default_delivery, &default_instr, err, sizeof(err)) < 0)
		fatal("default_delivery: %s", err);
	deliver_set_pipe_timeout((unsigned)cfg->pipe_timeout);
	deliver_set_lock_timeout_ms((unsigned)cfg->mbox_lock_timeout * 1000);
	worker_spam_init(account, home);
	maildir_batch_open();
	catch_sigterm();
	while (!stop_requested) {
		if (unstash(&job)) {
			handle_job(fd);
			take_batch(fd);
			flush(fd, 1);
			continue;
		}
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int sync_ms = worker_spam_next_sync_ms();
		int r = poll(&p, 1, sync_ms >= 0 && sync_ms < safety_ms ? sync_ms : safety_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0 && sync_ms >= 0) {
			worker_spam_sync();
			continue;
		}
		if (r <= 0 || (p.revents & (POLLHUP | POLLERR)))
			break;  /* the qmgr is gone: it hears nothing of what is left */
		r = ipc_recv(fd, &job);
		if (r == 0)
			break;
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			fatal("reading from qmgr: %s", strerror(errno));
		}
		if (job.type == MSG_JOB) {
			handle_job(fd);
			take_batch(fd);
			flush(fd, 1);
		} else if (job.type == MSG_LEARN) {
			handle_learn(fd);
		} else {
			if (job.fd >= 0)
				close(job.fd);
			fatal("unexpected message type %u from qmgr", job.type);
		}
	}
	worker_spam_exit();
	exit(0);
}
