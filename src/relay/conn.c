/*
 * conn.c - one connection to the relay host or to a list manager's LMTP
 * server (TCP or a unix socket): resolving the name (evdns,
 * never blocking), a non-blocking connect to each address in turn, the
 * bufferevent that carries commands and the message, the stage timer,
 * assembling replies, and closing.  Freeing is deferred to the loop so
 * that a callback may close the connection it runs for.
 */
#include "relay/relay_private.h"
#include "lib/lmtp_dest.h"
#include "lib/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

void conn_arm(struct relay_conn *c, int seconds)
{
	struct timeval tv = { .tv_sec = seconds };
	evtimer_add(c->timer, &tv);
}

size_t conn_output_pending(const struct relay_conn *c)
{
	return c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
}

void conn_output(struct relay_conn *c, const void *p, size_t n)
{
	if (evbuffer_add(bufferevent_get_output(c->bev), p, n) < 0)
		fatal("relay: out of memory queueing output");
}

void conn_cmd(struct relay_conn *c, const char *fmt, ...)
{
	char line[600];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		panic("relay: command too long");
	memcpy(line + n, "\r\n", 2);
	conn_output(c, line, (size_t)n + 2);
}

void conn_said(const struct relay_conn *c, const char *what, char *out, size_t outlen)
{
	snprintf(out, outlen, "host %s said: %s (in reply to %s)", c->peer, c->reply.text, what);
}

void conn_close(struct relay_conn *c)
{
	struct relay *r = c->r;

	if (c->state == CONN_DEAD)
		return;
	c->state = CONN_DEAD;
	if (c->job != NULL) {
		struct relay_job *job = c->job;
		c->job = NULL;
		job_finish(r, job, RELAY_TEMPFAIL, "4.4.2", "connection closed");
	}
	if (c->dns_req != NULL) {
		struct evdns_getaddrinfo_request *req = c->dns_req;
		c->dns_req = NULL;
		evdns_getaddrinfo_cancel(req);
	}
	if (c->connect_ev != NULL) {
		event_free(c->connect_ev);
		c->connect_ev = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	if (c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	evtimer_del(c->timer);
	if (c->ai_owned != NULL) {
		evutil_freeaddrinfo(c->ai_owned);
		c->ai_owned = NULL;
	}
	c->ai_next = NULL;
	TAILQ_REMOVE(&r->conns, c, entry);
	r->nconns--;
	TAILQ_INSERT_TAIL(&r->dead, c, entry);
	log_debug("relay: connection %u closed after %u message%s", c->id, c->nmsgs,
	    c->nmsgs == 1 ? "" : "s");
	relay_kick(r);
}

void conn_setup_failed(struct relay_conn *c, const char *dsn, const char *fmt, ...)
{
	struct relay *r = c->r;
	struct relay_job *job = c->job;
	char text[RELAY_TEXT_BUF];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	log_info("relay: %s", text);
	c->job = NULL;
	conn_close(c);
	if (job != NULL)
		relay_setup_failed(r, job, dsn, text);
}

void conn_ready(struct relay_conn *c)
{
	struct relay *r = c->r;

	c->state = CONN_IDLE;
	evtimer_del(c->timer);
	for (;;) {
		struct relay_job *job = c->job;
		c->job = NULL;
		if (job == NULL) {
			if (r->stopping || c->retiring || c->nmsgs >= RELAY_MAX_MSGS_PER_CONN) {
				smtp_quit(c);
				return;
			}
			job = relay_next_job(r, c->dest);
		}
		if (job == NULL)
			break;
		if (tx_start(c, job))
			return;
	}
	conn_arm(c, (int)c->r->cfg->relay_idle_timeout);
}

void conn_stop(struct relay_conn *c)
{
	switch (c->state) {
	case CONN_IDLE:
		smtp_quit(c);
		break;
	case CONN_TX:
		/* abandoned unless its results can still be reported */
		if (c->r->gone)
			tx_abort(c, "4.3.0", "mail system stopping");
		break;
	case CONN_RSET:
	case CONN_QUIT:
	case CONN_DEAD:
		break;
	default: {
		/* not set up yet: its job is failed like the queued ones */
		struct relay_job *job = c->job;
		c->job = NULL;
		conn_close(c);
		if (job != NULL)
			job_finish(c->r, job, RELAY_TEMPFAIL, "4.3.0", "mail system stopping");
		break;
	}
	}
}

enum relay_status conn_reply_status(const struct relay_conn *c, int may_be_permanent,
    char *dsn, size_t dsnlen)
{
	int cls = c->reply.code / 100;

	smtp_client_reply_dsn(&c->reply, dsn, dsnlen);
	if (cls == 2)
		return RELAY_SENT;
	if (cls == 5 && may_be_permanent)
		return RELAY_PERMFAIL;
	dsn[0] = '4';
	return RELAY_TEMPFAIL;
}

/* ---- input ---- */

static void on_read(struct bufferevent *bev, void *arg)
{
	struct relay_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (c->state != CONN_DEAD) {
		struct evbuffer_iovec v;
		size_t used;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			break;
		enum smtp_client_status st = smtp_client_reply_feed(&c->reply, v.iov_base,
		    v.iov_len, &used);
		if (evbuffer_drain(in, used) < 0)
			panic("evbuffer_drain failed");
		if (st == SMTP_CLIENT_BAD)
			smtp_on_failure(c, FAIL_PROTOCOL, c->reply.error);
		else if (st == SMTP_CLIENT_LINE) {
			smtp_on_line(c);
		} else if (st == SMTP_CLIENT_DONE) {
			smtp_on_reply(c);
		}
	}
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct relay_conn *c = arg;
	if (c->state == CONN_TX)
		tx_on_drained(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct relay_conn *c = arg;

	if (what & BEV_EVENT_EOF)
		smtp_on_failure(c, FAIL_LOST, NULL);
	else
		smtp_on_failure(c, FAIL_LOST,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct relay_conn *c = arg;

	if (c->state == CONN_IDLE) {
		smtp_quit(c);
		return;
	}
	smtp_on_failure(c, FAIL_TIMEOUT, NULL);
}

/* ---- connecting ---- */

static void format_addr(struct relay_conn *c, const struct sockaddr *sa)
{
	char a[INET6_ADDRSTRLEN];
	const char *host = c->host;

	c->addr[0] = '\0';
	if (sa->sa_family == AF_INET &&
	    inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, a, sizeof(a)))
		snprintf(c->addr, sizeof(c->addr), "%s", a);
	else if (sa->sa_family == AF_INET6 &&
	    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, a, sizeof(a)))
		snprintf(c->addr, sizeof(c->addr), "%s", a);
	else
		snprintf(c->addr, sizeof(c->addr), "?");
	snprintf(c->peer, sizeof(c->peer), "%s[%s]", host, c->addr);
}

/* "connect to 192.0.2.1:25" or "connect to mx.example[192.0.2.1]:25" */
static void connect_error(struct relay_conn *c, int err)
{
	int v6 = strchr(c->addr, ':') != NULL;

	if (c->port == NULL)
		snprintf(c->conn_err, sizeof(c->conn_err), "connect to %s: %s", c->peer,
		    strerror(err));
	else if (c->numeric)
		snprintf(c->conn_err, sizeof(c->conn_err), "connect to %s%s%s:%s: %s",
		    v6 ? "[" : "", c->addr, v6 ? "]" : "", c->port, strerror(err));
	else
		snprintf(c->conn_err, sizeof(c->conn_err), "connect to %s:%s: %s", c->peer,
		    c->port, strerror(err));
}

static void connected(struct relay_conn *c, int fd)
{
	struct relay *r = c->r;

	c->bev = bufferevent_socket_new(r->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		conn_setup_failed(c, "4.3.0", "cannot set up the connection to %s", c->peer);
		return;
	}
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, RELAY_IN_HIGH);
	bufferevent_setwatermark(c->bev, EV_WRITE, RELAY_OUT_LOW, 0);
	if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) < 0) {
		conn_setup_failed(c, "4.3.0", "cannot set up the connection to %s", c->peer);
		return;
	}
	log_debug("relay: connection %u to %s", c->id, c->peer);
	smtp_start(c);
}

static void try_connect(struct relay_conn *c);

static void on_connect(evutil_socket_t fd, short what, void *arg)
{
	struct relay_conn *c = arg;
	int err = 0;
	socklen_t len = sizeof(err);

	event_free(c->connect_ev);
	c->connect_ev = NULL;
	c->fd = -1;
	if (what & EV_TIMEOUT)
		err = ETIMEDOUT;
	else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == 0) {
		connected(c, fd);
		return;
	}
	close(fd);
	connect_error(c, err);
	try_connect(c);
}

/* Try the remaining addresses in turn. */
static void try_connect(struct relay_conn *c)
{
	struct relay *r = c->r;
	struct timeval tv = { .tv_sec = RELAY_CONNECT_TIMEOUT };

	c->state = CONN_CONNECTING;
	while (c->ai_next != NULL) {
		struct evutil_addrinfo *ai = c->ai_next;
		c->ai_next = ai->ai_next;
		if (ai->ai_socktype != SOCK_STREAM ||
		    (ai->ai_family != AF_INET && ai->ai_family != AF_INET6))
			continue;
		format_addr(c, ai->ai_addr);
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			connect_error(c, errno);
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			connected(c, fd);
			return;
		}
		if (errno == EINPROGRESS) {
			c->fd = fd;
			c->connect_ev = event_new(r->base, fd, EV_WRITE, on_connect, c);
			if (c->connect_ev != NULL && event_add(c->connect_ev, &tv) == 0)
				return;
			conn_setup_failed(c, "4.3.0", "cannot watch the connection to %s", c->peer);
			return;
		}
		connect_error(c, errno);
		close(fd);
	}
	conn_setup_failed(c, "4.4.1", "%s", c->conn_err[0] ? c->conn_err :
	    "no usable address for the relay host");
}

/* A list manager's unix socket: connect() there completes at once or
 * fails (EAGAIN: its backlog is full; tried again like a refusal). */
static void connect_unix(struct relay_conn *c)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	c->state = CONN_CONNECTING;
	snprintf(c->addr, sizeof(c->addr), "unix");
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", c->host);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		connect_error(c, errno);
	} else if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		connected(c, fd);
		return;
	} else {
		connect_error(c, errno);
		close(fd);
	}
	conn_setup_failed(c, "4.4.1", "%s", c->conn_err);
}

/* Where c connects: relay_host, or the list manager's destination. */
static int conn_target(struct relay_conn *c, struct relay_job *job)
{
	struct relay *r = c->r;
	struct lmtp_dest d;
	char err[300];

	if (job == NULL || job->dest == NULL) {
		c->host = xstrdup(r->host);
		c->port = xstrdup(r->port);
		c->numeric = r->numeric;
		return 0;
	}
	c->dest = xstrdup(job->dest);
	c->lmtp = 1;
	if (lmtp_dest_parse(job->dest, &d, err, sizeof(err)) < 0) {
		c->host = xstrdup(job->dest);
		snprintf(c->conn_err, sizeof(c->conn_err), "%s", err);
		return -1;
	}
	if (d.is_unix) {
		c->host = xstrdup(d.path);
		snprintf(c->peer, sizeof(c->peer), "unix:%s", d.path);
		return 0;
	}
	unsigned char tmp[sizeof(struct in6_addr)];
	c->host = xstrdup(d.host);
	c->port = xstrdup(d.port);
	c->numeric = inet_pton(AF_INET, d.host, tmp) == 1 || inet_pton(AF_INET6, d.host, tmp) == 1;
	return 0;
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct relay_conn *c = arg;

	if (result == EVUTIL_EAI_CANCEL) {
		/* the connection is closed and may be freed already */
		if (res)
			evutil_freeaddrinfo(res);
		return;
	}
	c->dns_req = NULL;
	if (result != 0) {
		if (res)
			evutil_freeaddrinfo(res);
		conn_setup_failed(c, "4.4.3", "%s %s: %s", c->lmtp ? "list manager" : "relay host",
		    c->host, evutil_gai_strerror(result));
		return;
	}
	c->ai_owned = res;
	c->ai_next = res;
	try_connect(c);
}

void conn_new(struct relay *r, struct relay_job *job)
{
	struct relay_conn *c = xcalloc(1, sizeof(*c));
	struct evutil_addrinfo hints = {
		.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP,
	};

	c->r = r;
	c->id = ++r->next_conn_id;
	c->fd = -1;
	c->job = job;
	c->timer = evtimer_new(r->base, on_timer, c);
	if (c->timer == NULL)
		fatal("relay: evtimer_new failed");
	TAILQ_INSERT_TAIL(&r->conns, c, entry);
	r->nconns++;
	int bad = conn_target(c, job);
	if (c->peer[0] == '\0')
		snprintf(c->peer, sizeof(c->peer), "%s", c->host);
	if (bad) {
		conn_setup_failed(c, "4.3.5", "%s", c->conn_err);
		return;
	}
	if (c->port == NULL) {
		connect_unix(c);
		return;
	}
	if (c->numeric && !c->lmtp) {
		c->ai_next = r->numeric_ai;
		try_connect(c);
		return;
	}
	if (c->numeric) {
		hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
		int e = evutil_getaddrinfo(c->host, c->port, &hints, &c->ai_owned);
		if (e != 0) {
			conn_setup_failed(c, "4.4.3", "list manager %s: %s", c->host,
			    evutil_gai_strerror(e));
			return;
		}
		c->ai_next = c->ai_owned;
		try_connect(c);
		return;
	}
	if (r->dns == NULL)
		r->dns = evdns_base_new(r->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (r->dns == NULL) {
		conn_setup_failed(c, "4.3.0", "cannot set up the resolver");
		return;
	}
	c->state = CONN_RESOLVING;
	hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
	struct evdns_getaddrinfo_request *req = evdns_getaddrinfo(r->dns, c->host, c->port,
	    &hints, on_resolved, c);
	/* NULL: the answer was immediate and on_resolved has run */
	if (req != NULL)
		c->dns_req = req;
}
