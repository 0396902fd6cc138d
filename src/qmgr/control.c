/*
 * control.c - the qmgr's control socket: `mailprocctl learn` and
 * `mailprocctl status`.
 *
 * The master creates run_dir/control.sock (SOCK_SEQPACKET, mode 0600: the
 * administrator's) and hands the qmgr the listening descriptor.  Each
 * connection sends one request and gets one MSG_CTL_REPLY:
 *
 *   MSG_CTL_LEARN  the address is resolved like a delivery; the message
 *                  (a descriptor) goes to that user's own worker as a learn
 *                  job, queued with the user's deliveries (same fairness,
 *                  same open Bayes data); the reply comes when it is done.
 *   MSG_CTL_STATUS the queue, spam check turns, and each worker: user, pid,
 *                  uptime, state, spam checks, resident memory; then the
 *                  daemon's figures (metrics.h) as a short table.
 */
#include "qmgr/qmgr_private.h"
#include "db/db.h"
#include "lib/buf.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/msgtypes.h"
#include "lib/strmap.h"
#include "lib/xalloc.h"
#include "metrics/expose.h"
#include "metrics/qmgr_figures.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* A client that sends nothing is dropped after this long. */
#define CONTROL_REQUEST_TIMEOUT 10

struct control_conn {
	int fd;
	struct event *ev;
};

static struct ipc_msg cmsg;
static struct event *listen_ev;

static void conn_close(struct control_conn *c)
{
	if (c->ev != NULL)
		event_free(c->ev);
	close(c->fd);
	free(c);
}

/* Answer and hang up. */
static void reply_fd(int fd, int ok, const char *text)
{
	ipc_init(&cmsg, MSG_CTL_REPLY);
	ipc_add_u32(&cmsg, (uint32_t)ok);
	ipc_add_str(&cmsg, text);
	if (ipc_send(fd, &cmsg) < 0)
		log_debug("control: cannot reply: %s", strerror(errno));
	close(fd);
}

void control_learn_done(struct job *job, int ok, const char *text)
{
	reply_fd(job->ctl_fd, ok, text);
	job->ctl_fd = -1;
	if (job->learn_fd >= 0)
		close(job->learn_fd);
	job->learn_fd = -1;
	free(job->rcpt);
	free(job);
}

static void learn(struct control_conn *c, int msg_fd)
{
	const char *address;
	uint32_t is_spam;
	struct db_resolution res;
	char err[256] = "";

	if (ipc_get_str(&cmsg, &address) < 0 || ipc_get_u32(&cmsg, &is_spam) < 0 ||
	    ipc_end(&cmsg) < 0 || is_spam > 1 || msg_fd < 0) {
		if (msg_fd >= 0)
			close(msg_fd);
		reply_fd(c->fd, 0, "malformed learn request");
		return;
	}
	int found = Q.db ? db_resolve(Q.db, address, Q.cfg->recipient_delimiter, &res, err,
	    sizeof(err)) : -1;
	struct user *u = found > 0 ? sched_user_for(&res, err, sizeof(err)) : NULL;
	if (found >= 0)
		db_resolution_free(&res);
	if (u == NULL) {
		close(msg_fd);
		reply_fd(c->fd, 0, found == 0 ? "unknown address" :
		    err[0] ? err : "databases not available");
		return;
	}
	struct job *job = xcalloc(1, sizeof(*job));
	job->user = u;
	job->kind = JOB_LEARN;
	job->learn_fd = msg_fd;
	job->learn_spam = (int)is_spam;
	job->ctl_fd = c->fd;
	log_info("learn: %s as %s for %s", address, is_spam ? "spam" : "ham", u->account);
	user_enqueue(u, job);
	workers_dispatch();
}

static uint64_t rss_kib(pid_t pid)
{
	char path[64];
	unsigned long size = 0, resident = 0;

	snprintf(path, sizeof(path), "/proc/%ld/statm", (long)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) / 1024;
}

/* idle, busy (delivering), waiting (for a spam check turn) or checking */
static const char *worker_state(const struct worker *w)
{
	if (w->job == NULL)
		return "idle";
	return w->check == CHECK_RUNNING ? "checking" : w->check == CHECK_WAITING ? "waiting" :
	    "busy";
}

static int status_user(const char *key, void *value, void *ctx)
{
	struct user *u = value;
	struct buf *b = ctx;
	struct worker *w;
	time_t now = time(NULL);

	TAILQ_FOREACH(w, &u->workers, entry)
		buf_printf(b, "worker user=%s uid=%lu pid=%ld uptime=%lds state=%s checks=%lu "
		    "jobs=%lu held=%u rss=%lluK\n", u->account[0] ? u->account : "-",
		    (unsigned long)u->uid, (long)w->pid, (long)(now - w->started),
		    worker_state(w), w->checks, w->jobs, w->nheld,
		    (unsigned long long)rss_kib(w->pid));
	return 0;
}

/* Recipient results with this status so far, every action (the figures
 * of the metrics region: since the daemon started, across qmgr restarts). */
static uint64_t deliveries(enum fig_delivery_status st)
{
	uint64_t n = 0;
	for (int a = 0; a < FA_COUNT; a++)
		n += metrics_read(&metrics_qmgr->deliveries[st][a]);
	return n;
}

/* The figures of every region, as `listen metrics` would serve them, in
 * a short table. */
static void status_figures(struct buf *b)
{
	struct metrics_view v = metrics_status_view;
	struct buf text = BUF_INIT;
	struct timeval tv;

	v.qmgr = metrics_qmgr;
	gettimeofday(&tv, NULL);
	expose_all(&text, &v, (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec);
	status_table(b, text.data ? text.data : "");
	buf_free(&text);
}

static void status(struct control_conn *c)
{
	struct buf b = BUF_INIT;

	if (ipc_end(&cmsg) < 0) {
		reply_fd(c->fd, 0, "malformed status request");
		return;
	}
	buf_printf(&b, "qmgr pid=%ld uptime=%lds messages=%zu workers=%d spawning=%d\n",
	    (long)getpid(), (long)(time(NULL) - Q.started), strmap_count(Q.msgs), Q.nworkers,
	    Q.nspawning);
	buf_printf(&b, "active messages=%zu limit=%llu peak=%zu backlog=%s evicted=%lu\n",
	    strmap_count(Q.msgs), (unsigned long long)Q.cfg->max_active_messages, Q.peak_msgs,
	    Q.backlog ? "yes" : "no", Q.evicted);
	backlog_status(&b);
	buf_printf(&b, "deliveries sent=%llu deferred=%llu bounced=%llu\n",
	    (unsigned long long)deliveries(FD_DELIVERED), (unsigned long long)deliveries(FD_DEFERRED),
	    (unsigned long long)deliveries(FD_BOUNCED));
	if (Q.cfg->spam_engine)
		buf_printf(&b, "spam checks running=%d of %d\n", Q.checks_running, Q.check_slots);
	strmap_each(Q.users, status_user, &b);
	status_figures(&b);
	if (b.len > IPC_MAX_PAYLOAD - 64) {     /* thousands of workers: cut, say so */
		b.len = IPC_MAX_PAYLOAD - 64;
		buf_puts(&b, "\n(truncated)\n");
	}
	buf_putc(&b, '\0');
	reply_fd(c->fd, 1, b.data);
	buf_free(&b);
}

static void conn_readable(evutil_socket_t fd, short what, void *arg)
{
	struct control_conn *c = arg;

	if (what & EV_TIMEOUT) {
		conn_close(c);
		return;
	}
	int r = ipc_recv(c->fd, &cmsg);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	event_free(c->ev);
	c->ev = NULL;
	int mfd = cmsg.fd;
	cmsg.fd = -1;
	if (r <= 0) {
		if (mfd >= 0)
			close(mfd);
		conn_close(c);
		return;
	}
	if (cmsg.type == MSG_CTL_LEARN) {
		learn(c, mfd);
	} else {
		if (mfd >= 0)
			close(mfd);
		if (cmsg.type == MSG_CTL_STATUS)
			status(c);
		else
			reply_fd(c->fd, 0, "unknown request");
	}
	free(c);                /* the descriptor went with the reply or the job */
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warn("control: accept: %s", strerror(errno));
			return;
		}
		struct control_conn *c = xcalloc(1, sizeof(*c));
		struct timeval tv = { .tv_sec = CONTROL_REQUEST_TIMEOUT };
		c->fd = fd;
		c->ev = event_new(Q.base, fd, EV_READ | EV_PERSIST, conn_readable, c);
		if (c->ev == NULL || event_add(c->ev, &tv) < 0) {
			conn_close(c);
			continue;
		}
	}
}

void control_init(int listen_fd)
{
	if (listen_fd < 0)
		return;
	fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
	listen_ev = event_new(Q.base, listen_fd, EV_READ | EV_PERSIST, on_accept, NULL);
	if (listen_ev == NULL || event_add(listen_ev, NULL) < 0)
		log_warn("control: cannot watch the control socket");
}

void control_close(void)
{
	if (listen_ev != NULL)
		event_free(listen_ev);
	listen_ev = NULL;
}
