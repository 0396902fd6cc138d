/*
 * relay.c - the relay process: one libevent loop serving the qmgr.
 *
 * Jobs arrive on the qmgr socket and wait in a FIFO queue.  The dispatcher
 * gives the oldest job to an idle connection to its destination (relay_host,
 * or a list manager's LMTP server), or opens a new one while fewer than
 * RELAY_MAX_CONNS to that destination exist.  Results go back through an outbox
 * that is flushed as the socket takes them, so a slow qmgr never blocks
 * the loop.  When the qmgr closes its end, or on SIGTERM, the relay
 * stops: queued jobs are handed back (a temporary result), idle
 * connections say QUIT, jobs in flight finish within stop_grace_time (or
 * are dropped unsent if their results could not be read anyway), then
 * relay_main returns.
 */
#include "relay/relay_private.h"
#include "conf/config_swap.h"
#include "lib/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

static struct ipc_msg imsg;

static void relay_stop(struct relay *r);

/* ---- the job queue ---- */

void relay_kick(struct relay *r)
{
	event_active(r->kick_ev, EV_TIMEOUT, 0);
}

int relay_same_dest(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

struct relay_job *relay_next_job(struct relay *r, const char *dest)
{
	struct relay_job *job;
	TAILQ_FOREACH(job, &r->queue, entry) {
		if (relay_same_dest(job->dest, dest)) {
			TAILQ_REMOVE(&r->queue, job, entry);
			r->nqueued--;
			return job;
		}
	}
	return NULL;
}

/* Connections to dest that are set up (or about to be, after RSET). */
static int established(const struct relay *r, const char *dest)
{
	const struct relay_conn *c;
	int n = 0;
	TAILQ_FOREACH(c, &r->conns, entry)
		if ((c->state == CONN_IDLE || c->state == CONN_TX || c->state == CONN_RSET) &&
		    relay_same_dest(c->dest, dest))
			n++;
	return n;
}

/* Fail the queued jobs for dest. */
static void fail_queue_dest(struct relay *r, const char *dest, const char *dsn,
    const char *text)
{
	struct relay_job *job;
	while ((job = relay_next_job(r, dest)) != NULL)
		job_finish(r, job, RELAY_TEMPFAIL, dsn, text);
}

static void fail_queue(struct relay *r, const char *dsn, const char *text)
{
	struct relay_job *job;
	while ((job = TAILQ_FIRST(&r->queue)) != NULL) {
		TAILQ_REMOVE(&r->queue, job, entry);
		r->nqueued--;
		job_finish(r, job, RELAY_TEMPFAIL, dsn, text);
	}
}

void relay_setup_failed(struct relay *r, struct relay_job *job, const char *dsn,
    const char *text)
{
	if (!r->stopping && established(r, job->dest) > 0) {
		/* others get through: the server may limit connections */
		TAILQ_INSERT_HEAD(&r->queue, job, entry);
		r->nqueued++;
		r->backoff_until = time(NULL) + RELAY_CONNECT_BACKOFF;
	} else {
		/* the destination is down: its jobs wait in the qmgr's queue */
		char *dest = job->dest ? xstrdup(job->dest) : NULL;
		job_finish(r, job, RELAY_TEMPFAIL, dsn, text);
		fail_queue_dest(r, dest, dsn, text);
		free(dest);
	}
	relay_kick(r);
}

/* Open a connection for each queued job that no connection to its
 * destination will take soon (one after its RSET), up to RELAY_MAX_CONNS
 * per destination. */
static void open_connections(struct relay *r)
{
	struct relay_job *job, *next;

	TAILQ_FOREACH_SAFE(job, &r->queue, entry, next) {
		if (r->stopping)
			return;
		int nconns = 0, soon = 0, before = 0;
		struct relay_conn *c;
		TAILQ_FOREACH(c, &r->conns, entry) {
			if (!relay_same_dest(c->dest, job->dest))
				continue;
			nconns++;
			soon += c->state == CONN_RSET;
		}
		for (struct relay_job *o = TAILQ_FIRST(&r->queue); o != job;
		    o = TAILQ_NEXT(o, entry))
			before += relay_same_dest(o->dest, job->dest);
		if (before < soon || nconns >= RELAY_MAX_CONNS ||
		    (nconns > 0 && time(NULL) < r->backoff_until))
			continue;
		TAILQ_REMOVE(&r->queue, job, entry);
		r->nqueued--;
		conn_new(r, job);
	}
}

static void dispatch(struct relay *r)
{
	struct relay_conn *c, *next;

	TAILQ_FOREACH_SAFE(c, &r->conns, entry, next) {
		if (c->state != CONN_IDLE)
			continue;
		struct relay_job *job;
		TAILQ_FOREACH(job, &r->queue, entry)
			if (relay_same_dest(job->dest, c->dest))
				break;
		if (job != NULL)
			conn_ready(c);
	}
	open_connections(r);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	struct relay_conn *c;

	while ((c = TAILQ_FIRST(&r->dead)) != NULL) {
		TAILQ_REMOVE(&r->dead, c, entry);
		event_free(c->timer);
		free(c->dest);
		free(c->host);
		free(c->port);
		free(c);
	}
	if (r->gone && !r->stopping)
		relay_stop(r);
	dispatch(r);
	if (r->stopping && r->nconns == 0 && (TAILQ_EMPTY(&r->outbox) || r->gone))
		event_base_loopbreak(r->base);
}

/* ---- the qmgr socket ---- */

/* The qmgr closed its end.  If it cannot read either (closed rather than
 * shut down for writing), results would be lost: jobs in flight are then
 * abandoned before their end of data, so nothing is sent twice. */
static void qmgr_closed(struct relay *r)
{
	struct pollfd p = { .fd = r->ipc_fd, .events = POLLOUT };

	if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)))
		r->gone = 1;
	relay_stop(r);
}

static void on_ipc_readable(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;

	for (int i = 0; i < 64 && !r->stopping; i++) {
		int n = ipc_recv(fd, &imsg);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n < 0 && errno == EBADMSG) {
			log_warn("relay: malformed message from the qmgr");
			continue;
		}
		if (n <= 0) {
			if (n < 0)
				log_warn("relay: reading from the qmgr: %s", strerror(errno));
			qmgr_closed(r);
			return;
		}
		if (imsg.type == MSG_RELAY_PING) {
			uint64_t nonce;
			if (imsg.fd >= 0)
				close(imsg.fd);
			if (ipc_get_u64(&imsg, &nonce) < 0 || ipc_end(&imsg) < 0)
				log_warn("relay: malformed message from the qmgr");
			else
				relay_send_hello(r, nonce);
			continue;
		}
		if (imsg.type != MSG_RELAY_JOB) {
			log_warn("relay: unexpected message type %u from the qmgr", imsg.type);
			if (imsg.fd >= 0)
				close(imsg.fd);
			continue;
		}
		struct relay_job *job = job_decode(r, &imsg);
		if (job != NULL) {
			TAILQ_INSERT_TAIL(&r->queue, job, entry);
			r->nqueued++;
		}
		relay_kick(r);
	}
}

/* ---- stopping ---- */

static void on_stop_grace(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	struct relay_conn *c, *next;

	log_warn("relay: stop grace period over; dropping %d connection%s", r->nconns,
	    r->nconns == 1 ? "" : "s");
	TAILQ_FOREACH_SAFE(c, &r->conns, entry, next) {
		if (c->state == CONN_TX && c->job != NULL) {
			log_warn("relay: stop: cut short job %" PRIu64 " (%" PRIu32
			    " recipient%s, first <%s>) while %s; it is sent again after the restart",
			    c->job->id, c->job->nrcpt, c->job->nrcpt == 1 ? "" : "s",
			    c->job->rcpt[0].address, tx_stage_doing(c));
			tx_abort(c, "4.3.0", "mail system stopping");
		} else if (c->state == CONN_TX)
			tx_abort(c, "4.3.0", "mail system stopping");
		else
			conn_close(c);
	}
	event_base_loopbreak(r->base);
}

static void relay_stop(struct relay *r)
{
	struct relay_conn *c, *next;
	struct timeval grace = { .tv_sec = (time_t)r->cfg->stop_grace_time };

	if (r->stopping)
		return;
	r->stopping = 1;
	event_del(r->ipc_rev);
	log_debug("relay: stopping (%d connection%s)", r->nconns, r->nconns == 1 ? "" : "s");
	fail_queue(r, "4.3.0", "mail system stopping");
	TAILQ_FOREACH_SAFE(c, &r->conns, entry, next)
		conn_stop(c);
	event_add(r->stop_ev, &grace);
	relay_kick(r);
}

/* SIGTERM (from the master's stop): as when the qmgr closes its end, but
 * the qmgr is still there to record the results. */
static void on_sigterm(evutil_socket_t sig, short what, void *arg)
{
	struct relay *r = arg;

	log_info("relay: stopping on signal %d: %zu job%s queued, %d connection%s",
	    (int)sig, r->nqueued, r->nqueued == 1 ? "" : "s", r->nconns, r->nconns == 1 ? "" : "s");
	relay_stop(r);
}

/* ---- set-up ---- */

/* Split relay_host "HOST:PORT" (HOST may be "[v6 address]"). */
static int parse_relay_host(struct relay *r, const char *hp)
{
	const char *colon = strrchr(hp, ':');
	unsigned char tmp[sizeof(struct in6_addr)];

	free(r->relay_host);
	r->relay_host = xstrdup(hp);
	if (colon == NULL || colon == hp || colon[1] == '\0')
		return -1;
	if (hp[0] == '[' && colon[-1] == ']')
		r->host = xstrndup(hp + 1, (size_t)(colon - hp) - 2);
	else
		r->host = xstrndup(hp, (size_t)(colon - hp));
	r->port = xstrdup(colon + 1);
	if (r->host[0] == '\0')
		return -1;
	r->numeric = inet_pton(AF_INET, r->host, tmp) == 1 ||
	    inet_pton(AF_INET6, r->host, tmp) == 1;
	return 0;
}

static int resolver_setup(struct relay *r)
{
	struct evutil_addrinfo hints = {
		.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP,
	};

	if (r->numeric) {
		hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
		int e = evutil_getaddrinfo(r->host, r->port, &hints, &r->numeric_ai);
		if (e != 0) {
			log_warn("relay_host %s: %s", r->relay_host, evutil_gai_strerror(e));
			return -1;
		}
		return 0;
	}
	if (r->dns != NULL)
		return 0;
	r->dns = evdns_base_new(r->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (r->dns == NULL) {
		log_warn("relay: cannot set up the resolver");
		return -1;
	}
	return 0;
}

/* The connections to the old relay_host take no new job: idle ones say
 * QUIT now, the others after the job they carry. */
static void retire_connections(struct relay *r)
{
	struct relay_conn *c, *next;

	TAILQ_FOREACH_SAFE(c, &r->conns, entry, next) {
		if (c->dest != NULL)
			continue;       /* a list manager's: relay_host is not theirs */
		c->retiring = 1;
		if (c->state == CONN_IDLE)
			smtp_quit(c);
	}
}

/* A new relay_host after a reload: new jobs go there; the transactions
 * under way, and connections being set up for a job, carry on with the old
 * one. */
static void relay_host_changed(struct relay *r)
{
	char *old_host = r->host, *old_port = r->port;
	int old_numeric = r->numeric;
	struct evutil_addrinfo *old_ai = r->numeric_ai;

	if (old_ai != NULL) {
		r->old_ai = xreallocarray(r->old_ai, r->nold_ai + 1, sizeof(*r->old_ai));
		r->old_ai[r->nold_ai++] = old_ai;
		r->numeric_ai = NULL;
	}
	r->host = r->port = NULL;
	if (parse_relay_host(r, r->cfg->relay_host) == 0 && resolver_setup(r) == 0) {
		log_info("relay: relay_host is now %s", r->relay_host);
		free(old_host);
		free(old_port);
		retire_connections(r);
		relay_kick(r);
		return;
	}
	/* cannot be: the master checked it; keep the old one */
	log_warn("relay: cannot use relay_host %s; keeping %s:%s", r->cfg->relay_host, old_host,
	    old_port);
	free(r->host);
	free(r->port);
	if (r->numeric_ai != NULL)
		evutil_freeaddrinfo(r->numeric_ai);
	r->host = old_host;
	r->port = old_port;
	r->numeric = old_numeric;
	r->numeric_ai = old_ai;
	if (old_ai != NULL)
		r->nold_ai--;
}

static void on_master(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	int swapped = config_swap_receive(fd, r->cfg);

	if (swapped < 0) {
		event_del(r->master_ev);        /* the master is gone; so are we soon */
		return;
	}
	if (swapped == 0)
		return;
	log_info("relay: configuration %llu in use", (unsigned long long)r->cfg->generation);
	if (strcmp(r->cfg->relay_host, r->relay_host) != 0)
		relay_host_changed(r);
}

static void free_old_ai(struct relay *r)
{
	for (size_t i = 0; i < r->nold_ai; i++)
		evutil_freeaddrinfo(r->old_ai[i]);
	free(r->old_ai);
	r->old_ai = NULL;
	r->nold_ai = 0;
}

int relay_main(int ipc_fd, struct config *cfg, int master_fd)
{
	struct relay R, *r = &R;
	int fl;

	memset(r, 0, sizeof(*r));
	r->cfg = cfg;
	r->ipc_fd = ipc_fd;
	TAILQ_INIT(&r->queue);
	TAILQ_INIT(&r->conns);
	TAILQ_INIT(&r->dead);
	TAILQ_INIT(&r->outbox);
	signal(SIGPIPE, SIG_IGN);       /* a server that goes away is an error, not a signal */
	if (cfg->relay_host == NULL || parse_relay_host(r, cfg->relay_host) < 0) {
		log_warn("relay: bad relay_host \"%s\"", cfg->relay_host ? cfg->relay_host : "");
		goto fail;
	}
	fl = fcntl(ipc_fd, F_GETFL);
	if (fl < 0 || fcntl(ipc_fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		log_warn("relay: qmgr socket: %s", strerror(errno));
		goto fail;
	}
	r->base = event_base_new();
	if (r->base == NULL) {
		log_warn("relay: event_base_new failed");
		goto fail;
	}
	if (resolver_setup(r) < 0)
		goto fail;
	r->ipc_rev = event_new(r->base, ipc_fd, EV_READ | EV_PERSIST, on_ipc_readable, r);
	r->ipc_wev = event_new(r->base, ipc_fd, EV_WRITE, outbox_writable, r);
	r->kick_ev = event_new(r->base, -1, 0, on_kick, r);
	r->stop_ev = evtimer_new(r->base, on_stop_grace, r);
	r->term_ev = evsignal_new(r->base, SIGTERM, on_sigterm, r);
	r->int_ev = evsignal_new(r->base, SIGINT, on_sigterm, r);
	if (master_fd >= 0) {
		r->master_ev = event_new(r->base, master_fd, EV_READ | EV_PERSIST, on_master, r);
		if (r->master_ev == NULL || event_add(r->master_ev, NULL) < 0) {
			log_warn("relay: cannot set up events");
			goto fail;
		}
	}
	if (!r->ipc_rev || !r->ipc_wev || !r->kick_ev || !r->stop_ev || !r->term_ev || !r->int_ev ||
	    event_add(r->ipc_rev, NULL) < 0 || event_add(r->term_ev, NULL) < 0 ||
	    event_add(r->int_ev, NULL) < 0) {
		log_warn("relay: cannot set up events");
		goto fail;
	}
	log_debug("relay: started, relay_host=%s", cfg->relay_host);
	relay_send_hello(r, 0);

	event_base_dispatch(r->base);

	/* only after the grace period can connections remain */
	struct relay_conn *c, *next;
	TAILQ_FOREACH_SAFE(c, &r->conns, entry, next)
		conn_close(c);
	fail_queue(r, "4.3.0", "mail system stopping");
	on_kick(-1, 0, r);      /* frees the closed connections */
	outbox_drop(r);
	event_free(r->ipc_rev);
	event_free(r->ipc_wev);
	event_free(r->kick_ev);
	event_free(r->stop_ev);
	event_free(r->term_ev);
	event_free(r->int_ev);
	if (r->master_ev)
		event_free(r->master_ev);
	if (r->dns)
		evdns_base_free(r->dns, 1);
	if (r->numeric_ai)
		evutil_freeaddrinfo(r->numeric_ai);
	free_old_ai(r);
	event_base_free(r->base);
	free(r->host);
	free(r->port);
	free(r->relay_host);
	log_debug("relay: stopped");
	return 0;
fail:
	if (r->ipc_rev)
		event_free(r->ipc_rev);
	if (r->ipc_wev)
		event_free(r->ipc_wev);
	if (r->kick_ev)
		event_free(r->kick_ev);
	if (r->stop_ev)
		event_free(r->stop_ev);
	if (r->term_ev)
		event_free(r->term_ev);
	if (r->int_ev)
		event_free(r->int_ev);
	if (r->master_ev)
		event_free(r->master_ev);
	if (r->dns)
		evdns_base_free(r->dns, 0);
	if (r->base)
		event_base_free(r->base);
	free(r->host);
	free(r->port);
	free(r->relay_host);
	return -1;
}
