/*
 * receiver.c - the receiver process: one libevent loop for all SMTP and
 * LMTP sessions on the listening sockets the master opened.
 *
 * Holds what the sessions share: the databases (opened once, reopened
 * later if they could not be opened), the socket to the qmgr, the session
 * count for max_sessions and the count per client address for
 * max_sessions_per_client (client_count.c), and the spare queue files
 * (queue/qspares.c) that the commit threads make while mail comes fast.
 * SIGTERM stops accepting, closes idle sessions with 421, lets sessions
 * in a transaction finish for up to stop_grace_time, then returns.  A
 * reload from the master swaps the configuration in place: sessions and
 * listeners go on.
 */
#include "receiver/receiver.h"
#include "receiver/receiver_private.h"
#include "receiver/commit_pool.h"
#include "receiver/qmgr_notify.h"
#include "conf/config_swap.h"
#include "db/db.h"
#include "conf/config.h"
#include "lists/members.h"
#include "lib/ipc.h"
#include "lib/msgtypes.h"
#include "lib/xalloc.h"
#include "queue/qspares.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

/* Seconds between attempts to open the databases after a failure, and
 * between warnings about it. */
#define DB_RETRY_INTERVAL 1
#define DB_WARN_INTERVAL 60

/* Open incoming/ for the commits to share its fsyncs; without it (logged)
 * each commit opens and fsyncs it alone. */
static void incoming_sync_open(struct receiver *r)
{
	char path[PATH_MAX];

	if (snprintf(path, sizeof(path), "%s/incoming", r->cfg->queue_dir) >= (int)sizeof(path)) {
		log_warn("%s/incoming: %s", r->cfg->queue_dir, strerror(ENAMETOOLONG));
		return;
	}
	if (fsync_group_open(&r->incoming_sync, path) < 0) {
		log_warn("cannot open %s (each commit will): %s", path, strerror(errno));
		return;
	}
	r->incoming_sync_open = 1;
}

/* The commit threads' chore: spare queue files while mail comes fast. */
static void make_spares(void *arg)
{
	struct receiver *r = arg;
	qspares_refill(r->spares);
}

static void watch_spares(struct receiver *r)
{
	struct timeval tv = { .tv_sec = QSPARES_MAX_AGE_MS / 1000,
	    .tv_usec = QSPARES_MAX_AGE_MS % 1000 * 1000 };
	if (r->ev_spares != NULL && !evtimer_pending(r->ev_spares, NULL))
		evtimer_add(r->ev_spares, &tv);
}

/* While spares are ready, those too old to use are removed every
 * QSPARES_MAX_AGE_MS: a queue that went quiet keeps none for long.  A
 * commit still under way may make more after it: watched too. */
static void on_spares_timer(evutil_socket_t fd, short what, void *arg)
{
	struct receiver *r = arg;
	if (qspares_expire(r->spares) > 0 ||
	    (r->commits != NULL && commit_pool_pending(r->commits) > 0))
		watch_spares(r);
}

int receiver_take_spare(struct receiver *r, char *qid, uint64_t *ticket)
{
	if (r->spares == NULL)
		return -1;
	/* the commit that follows may make spares: they will be watched */
	watch_spares(r);
	return qspares_take(r->spares, qid, ticket);
}

void receiver_no_spare_taken(struct receiver *r, const char *qid)
{
	if (r->spares != NULL)
		qspares_note_id(r->spares, qid);
}

static void db_try_open(struct receiver *r)
{
	char err[512] = "";
	time_t now = time(NULL);

	r->db_retry_at = now + DB_RETRY_INTERVAL;
	if (db_open(r->cfg->db_dir, &r->db, err, sizeof(err)) == 0) {
		if (r->db_warned_at != 0)
			log_info("databases in %s opened", r->cfg->db_dir);
		r->db_warned_at = 0;
		return;
	}
	r->db = NULL;
	if (r->db_warned_at == 0 || now - r->db_warned_at >= DB_WARN_INTERVAL) {
		log_warn("cannot open the databases in %s: %s (recipients get 451 "
		    "until they can be opened)", r->cfg->db_dir, err);
		r->db_warned_at = now;
	} else {
		log_debug("cannot open the databases in %s: %s", r->cfg->db_dir, err);
	}
}

struct db *receiver_db(struct receiver *r)
{
	if (r->db == NULL && time(NULL) >= r->db_retry_at)
		db_try_open(r);
	return r->db;
}

struct members *receiver_members(struct receiver *r)
{
	char err[256];

	if (r->members != NULL && r->members_kind != r->cfg->members_source) {
		members_close(r->members);
		r->members = NULL;
	}
	if (r->members == NULL && r->cfg->members_source != MEMBERS_NONE) {
		r->members = members_open(r->cfg, err, sizeof(err));
		r->members_kind = r->cfg->members_source;
	}
	return r->members;
}

void receiver_notify_qmgr(struct receiver *r, const char *qid)
{
	if (r->notify != NULL)
		qmgr_notify_send(r->notify, qid);
}

void receiver_session_gone(struct receiver *r)
{
	if (r->stopping && r->nsessions == 0)
		event_base_loopexit(r->base, NULL);
}

/* ---- accepting ---- */

/* "421 ENH TEXT" and close, before any session: counted like any other
 * refusal. */
static void refuse_connection(int fd, enum fig_rejection reason, const char *text)
{
	char msg[256];
	int len = snprintf(msg, sizeof(msg), "421 %s %s\r\n", fig_rejection_code[reason], text);

	metrics_inc(&metrics_receiver->rejections[reason], 1);
	/* a fresh socket's send buffer is empty: this does not block */
	ssize_t n = send(fd, msg, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)n;
	close(fd);
}

/* This client already has max_sessions_per_client sessions (unix-socket
 * clients are not counted). */
static int over_client_limit(struct receiver *r, const struct listen_spec *spec,
    const struct sockaddr *sa, socklen_t salen)
{
	uint64_t limit = r->cfg->max_sessions_per_client;
	struct client_key key;

	if (limit == 0 || spec->is_unix || client_key_from(sa, salen, &key) < 0)
		return 0;
	uint32_t n = client_count_get(r->clients, &key);
	if (n < limit)
		return 0;
	char client[64];
	session_format_client(sa, salen, client, sizeof(client));
	log_info("%s: %lu sessions open from this address (max_sessions_per_client %llu): "
	    "connection refused", client, (unsigned long)n, (unsigned long long)limit);
	return 1;
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct listener *l = arg;
	struct receiver *r = l->r;

	if (r->stopping) {
		close(fd);
		return;
	}
	if (r->nsessions >= r->cfg->max_sessions) {
		log_warn("too many sessions (%llu): connection refused",
		    (unsigned long long)r->nsessions);
		refuse_connection(fd, FR_TOO_MANY_SESSIONS, "Too many connections");
		return;
	}
	if (over_client_limit(r, l->spec, sa, (socklen_t)salen)) {
		refuse_connection(fd, FR_TOO_MANY_FROM_CLIENT,
		    "Too many connections from your address");
		return;
	}
	if (evutil_make_socket_nonblocking(fd) < 0) {
		log_warn("cannot make a connection non-blocking: %s", strerror(errno));
		close(fd);
		return;
	}
	session_start(r, l->spec, fd, sa, (socklen_t)salen);
}

static void listeners_enable(struct receiver *r, int on)
{
	for (int i = 0; i < r->nlisteners; i++) {
		if (on)
			evconnlistener_enable(r->listeners[i].evl);
		else
			evconnlistener_disable(r->listeners[i].evl);
	}
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
	struct receiver *r = arg;
	if (!r->stopping)
		listeners_enable(r, 1);
}

/* accept() failed (EMFILE, ENFILE, ENOBUFS ...): pause for a second
 * instead of spinning on the ready listening socket. */
static void on_accept_error(struct evconnlistener *evl, void *arg)
{
	struct listener *l = arg;
	struct receiver *r = l->r;
	struct timeval tv = { .tv_sec = 1 };

	log_warn("accept: %s; pausing for a second",
	    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	listeners_enable(r, 0);
	event_add(r->ev_accept_retry, &tv);
}

static int listeners_open(struct receiver *r, const int *listen_fds)
{
	for (int i = 0; i < r->cfg->nlisten; i++) {
		const struct listen_spec *spec = &r->cfg->listen[i];
		if ((spec->proto != LISTEN_SMTP && spec->proto != LISTEN_LMTP) || listen_fds[i] < 0)
			continue;
		struct listener *l = &r->listeners[r->nlisteners];
		l->r = r;
		l->spec = spec;
		l->evl = evconnlistener_new(r->base, on_accept, l, LEV_OPT_CLOSE_ON_EXEC,
		    0, listen_fds[i]);
		if (l->evl == NULL) {
			log_warn("cannot listen on socket %d", listen_fds[i]);
			return -1;
		}
		evconnlistener_set_error_cb(l->evl, on_accept_error);
		r->nlisteners++;
	}
	if (r->nlisteners == 0)
		log_warn("no SMTP or LMTP listener configured");
	return 0;
}

/* ---- stopping ---- */

static void on_grace_over(evutil_socket_t fd, short what, void *arg)
{
	struct receiver *r = arg;
	struct session *s;

	log_warn("stop grace period over; dropping %llu session(s)",
	    (unsigned long long)r->nsessions);
	while ((s = TAILQ_FIRST(&r->sessions)) != NULL)
		session_kill(s);
	event_base_loopexit(r->base, NULL);
}

static void on_sigterm(evutil_socket_t sig, short what, void *arg)
{
	struct receiver *r = arg;
	struct timeval grace = { .tv_sec = (time_t)r->cfg->stop_grace_time };
	struct session *s, *next;

	if (r->stopping)
		return;
	log_info("stopping: %llu session(s) open", (unsigned long long)r->nsessions);
	r->stopping = 1;
	listeners_enable(r, 0);
	for (s = TAILQ_FIRST(&r->sessions); s != NULL; s = next) {
		next = TAILQ_NEXT(s, entry);
		session_stop(s);        /* may free s */
	}
	if (r->nsessions == 0) {
		event_base_loopexit(r->base, NULL);
		return;
	}
	event_add(r->ev_grace, &grace);
}

/* ---- reloading ---- */

static void on_master(evutil_socket_t fd, short what, void *arg)
{
	struct receiver *r = arg;
	int swapped = config_swap_receive(fd, r->cfg);

	if (swapped < 0) {
		event_del(r->ev_master);        /* the master is gone; so are we soon */
		return;
	}
	if (swapped == 0)
		return;
	/* the old strings are freed: nothing may point to them */
	r->hostname = r->cfg->hostname ? r->cfg->hostname : "localhost";
	log_info("configuration %llu in use", (unsigned long long)r->cfg->generation);
}

/* ---- set-up and tear-down ---- */

static void receiver_free(struct receiver *r)
{
	struct session *s;

	while ((s = TAILQ_FIRST(&r->sessions)) != NULL)
		session_kill(s);
	/* commits under way finish, and the qmgr hears of them */
	commit_pool_stop(r->commits);
	if (r->spares != NULL) {
		struct qspares_counts c;
		qspares_counts(r->spares, &c);
		if (c.made > 0)
			log_info("spare queue files: %llu made, %llu used, %llu removed unused, %llu left",
			    (unsigned long long)c.made, (unsigned long long)c.used,
			    (unsigned long long)c.unused, (unsigned long long)c.ready);
		qspares_free(r->spares);
	}
	if (r->incoming_sync_open)
		fsync_group_close(&r->incoming_sync);
	for (int i = 0; i < r->nlisteners; i++)
		evconnlistener_free(r->listeners[i].evl);
	if (r->ev_sigterm)
		event_free(r->ev_sigterm);
	if (r->ev_grace)
		event_free(r->ev_grace);
	if (r->ev_accept_retry)
		event_free(r->ev_accept_retry);
	if (r->ev_spares)
		event_free(r->ev_spares);
	client_count_free(r->clients);
	qmgr_notify_free(r->notify);
	if (r->ev_master)
		event_free(r->ev_master);
	if (r->db)
		db_close(r->db);
	members_close(r->members);
	if (r->base)
		event_base_free(r->base);
	free(r);
}

static void set_nonblocking(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		log_warn("cannot make the qmgr socket non-blocking: %s", strerror(errno));
}

int receiver_main(struct config *cfg, const int *listen_fds, int qmgr_fd, int master_fd)
{
	struct receiver *r = xcalloc(1, sizeof(*r));
	int status = 0;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	r->cfg = cfg;
	r->hostname = cfg->hostname ? cfg->hostname : "localhost";
	r->qmgr_fd = qmgr_fd;
	TAILQ_INIT(&r->sessions);
	/* the region outlives us: the sessions of a receiver that died are
	 * gone with it */
	for (int i = 0; i < FP_COUNT; i++)
		metrics_gauge_set(&metrics_receiver->sessions[i], 0);
	r->clients = client_count_new();
	if (qmgr_fd >= 0)
		set_nonblocking(qmgr_fd);

	r->base = event_base_new();
	if (r->base == NULL)
		fatal("cannot create the event loop");
	r->ev_sigterm = evsignal_new(r->base, SIGTERM, on_sigterm, r);
	r->ev_grace = evtimer_new(r->base, on_grace_over, r);
	r->ev_accept_retry = evtimer_new(r->base, on_accept_retry, r);
	r->ev_master = event_new(r->base, master_fd, EV_READ | EV_PERSIST, on_master, r);
	if (r->ev_sigterm == NULL || r->ev_grace == NULL || r->ev_accept_retry == NULL ||
	    r->ev_master == NULL || event_add(r->ev_sigterm, NULL) < 0 ||
	    event_add(r->ev_master, NULL) < 0)
		fatal("cannot set up the event loop");

	if (qmgr_fd >= 0)
		r->notify = qmgr_notify_new(r->base, qmgr_fd);
	incoming_sync_open(r);
	if (r->incoming_sync_open)
		r->spares = qspares_new(cfg->queue_dir, &r->incoming_sync);
	if (r->spares != NULL && (r->ev_spares = evtimer_new(r->base, on_spares_timer, r)) == NULL)
		fatal("cannot set up the event loop");
	r->commits = commit_pool_start(r->base, RECEIVER_COMMIT_THREADS,
	    r->spares != NULL ? make_spares : NULL, r);
	if (r->commits == NULL)
		log_warn("committing messages on the event loop (slower)");
	db_try_open(r);
	if (listeners_open(r, listen_fds) < 0) {
		status = 1;
	} else {
		log_debug("receiver ready: %d listener(s)", r->nlisteners);
		if (event_base_dispatch(r->base) < 0) {
			log_warn("event loop failed");
			status = 1;
		}
	}
	receiver_free(r);
	return status;
}
