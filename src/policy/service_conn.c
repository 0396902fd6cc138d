/*
 * service_conn.c - one connection to the policy service: Postfix keeps it
 * open and sends request after request, possibly several before reading
 * an answer.
 *
 * Requests are parsed as bytes arrive and decided at once; answers go out
 * strictly in the order of the requests, so one that waits for the
 * greylist store (Redis) holds back the answers behind it, never the
 * other connections.  A protocol error stops reading: the answers already
 * due go out, then the connection closes; a client that closes while an
 * answer waits for the greylist store has that request cancelled.  A
 * client that stops sending in the middle of a request, or sends
 * nothing, is closed after session_timeout; one that does not read its
 * answers is not read from.  Connections, answers written and requests
 * that could not be parsed are counted in the service's figures
 * (policy_figures.h).
 */
#include "policy/service_private.h"
#include "policy/greylist.h"
#include "metrics/policy_figures.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

static void pconn_progress(struct pconn *c);

static size_t output_pending(const struct pconn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

static void format_client(const struct sockaddr *sa, socklen_t salen, char *out, size_t outlen)
{
	char addr[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET && salen >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr));
		snprintf(out, outlen, "%s:%u", addr, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6 && salen >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof(addr));
		snprintf(out, outlen, "[%s]:%u", addr, ntohs(in6->sin6_port));
	} else {
		snprintf(out, outlen, "unix");
	}
}

static void pending_free(struct pending *p)
{
	if (p->gl != NULL)
		greylist_cancel(p->gl);         /* its answer is no longer wanted */
	policy_request_free(&p->req);
	decision_free(&p->d);
	free(p);
}

static void pconn_free(struct pconn *c)
{
	struct policy_service *svc = c->svc;
	struct pending *p;

	while ((p = TAILQ_FIRST(&c->pending)) != NULL) {
		TAILQ_REMOVE(&c->pending, p, entry);
		pending_free(p);
	}
	policy_parser_free(&c->parser);
	bufferevent_free(c->bev);
	TAILQ_REMOVE(&svc->conns, c, entry);
	svc->nconns--;
	metrics_gauge_add(&metrics_policy->sessions, -1);
	free(c);
	service_conn_gone(svc);
}

void pconn_kill(struct pconn *c)
{
	pconn_free(c);
}

/* One line per answer that is not DUNNO, with the reason. */
static void log_answer(struct pconn *c, const struct pending *p)
{
	const struct policy_request *r = &p->req;

	if (p->d.temporary)
		service_trouble(c->svc, p->d.reason);
	if (strcmp(p->d.action, "DUNNO") == 0)
		return;
	log_info("policy: action=%s state=%s client=%s helo=%s sender=<%s> recipient=<%s> "
	    "size=%s instance=%s reason=\"%s\"", p->d.action,
	    policy_request_get(r, PA_PROTOCOL_STATE), policy_request_get(r, PA_CLIENT_ADDRESS),
	    policy_request_get(r, PA_HELO_NAME), policy_request_get(r, PA_SENDER),
	    policy_request_get(r, PA_RECIPIENT), policy_request_get(r, PA_SIZE),
	    policy_request_get(r, PA_INSTANCE), p->d.reason);
}

/* Write the answers that are ready, in order. */
static void flush_answers(struct pconn *c)
{
	struct pending *p;

	while ((p = TAILQ_FIRST(&c->pending)) != NULL && p->done) {
		TAILQ_REMOVE(&c->pending, p, entry);
		c->npending--;
		log_answer(c, p);
		metrics_inc(&metrics_policy->answers[p->d.figure], 1);
		char *line = xasprintf("action=%s\n\n", p->d.action);
		if (bufferevent_write(c->bev, line, strlen(line)) < 0)
			log_warn("%s: cannot queue a policy answer", c->client);
		free(line);
		pending_free(p);
	}
}

static void on_greylist_done(void *arg, const struct greylist_answer *a)
{
	struct pending *p = arg;
	struct pconn *c = p->c;
	struct decide_ctx ctx;
	enum decide_grey v = a->verdict == GREYLIST_PASS ? DECIDE_GREY_PASS :
	    a->verdict == GREYLIST_DEFER ? DECIDE_GREY_DEFER : DECIDE_GREY_UNAVAILABLE;

	service_decide_ctx(c->svc, &ctx);
	decide_greylisted(&ctx, &p->d, v, a->retry_in, a->auto_allowed, time(NULL));
	p->gl = NULL;
	p->done = 1;
	pconn_progress(c);       /* may free c; nothing may follow */
}

static void start_request(struct pconn *c, struct pending *p)
{
	struct decide_ctx ctx;
	time_t now = time(NULL);

	service_decide_ctx(c->svc, &ctx);
	if (decide(&ctx, &p->req, now, &p->d) == DECIDE_DONE) {
		p->done = 1;
		return;
	}
	struct greylist *g = service_greylist(c->svc);
	if (g == NULL) {
		decide_greylisted(&ctx, &p->d, DECIDE_GREY_UNAVAILABLE, 0, 0, now);
		p->done = 1;
		return;
	}
	/* done may be called before this returns: p->done then says so */
	struct greylist_req *r = greylist_check(g, p->d.gl_client, p->d.gl_sender,
	    p->d.gl_recipient, now, on_greylist_done, p);
	if (!p->done)
		p->gl = r;
}

/* Parse buffered input into at most one new request.  1 when one was
 * started, 0 when there is no complete request (or no room), -1 on a
 * protocol error. */
static int read_one_request(struct pconn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	if (c->npending >= SERVICE_MAX_PENDING)
		return 0;
	while (evbuffer_get_length(in) > 0) {
		size_t n = evbuffer_get_contiguous_space(in), used;
		const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
		enum policy_parse_status st = policy_parser_feed(&c->parser, data, n, &used);
		evbuffer_drain(in, used);
		if (st == POLICY_PARSE_ERROR) {
			metrics_inc(&metrics_policy->bad_requests, 1);
			log_warn("%s: policy protocol error (%s); closing the connection",
			    c->client, c->parser.error);
			return -1;
		}
		if (st == POLICY_PARSE_DONE) {
			struct pending *p = xcalloc(1, sizeof(*p));
			p->c = c;
			policy_parser_take(&c->parser, &p->req);
			decision_init(&p->d);
			TAILQ_INSERT_TAIL(&c->pending, p, entry);
			c->npending++;
			start_request(c, p);
			return 1;
		}
	}
	return 0;
}

/* Whatever can happen now: answers out, requests in, reading paused or
 * resumed, the connection closed once it has said everything. */
static void pconn_progress(struct pconn *c)
{
	if (c->busy)
		return;         /* the call below us loops again */
	c->busy = 1;
	for (;;) {
		flush_answers(c);
		if (c->closing == 2)
			break;
		int r = read_one_request(c);
		if (r < 0) {
			c->closing = 2;         /* nothing more is read */
			evbuffer_drain(bufferevent_get_input(c->bev),
			    evbuffer_get_length(bufferevent_get_input(c->bev)));
		}
		if (r <= 0)
			break;
	}
	flush_answers(c);
	c->busy = 0;
	int full = c->npending >= SERVICE_MAX_PENDING || output_pending(c) > SERVICE_OUTPUT_HIGH;
	if (c->closing || full)
		bufferevent_disable(c->bev, EV_READ);
	else
		bufferevent_enable(c->bev, EV_READ);
	/* a closing connection has read its last request: buffered input
	 * other than complete requests is dropped.  Once the client closed,
	 * answers still waiting for the greylist store are not waited for:
	 * their requests are cancelled. */
	if ((c->closing && c->npending == 0 && output_pending(c) == 0) ||
	    (c->peer_closed && c->npending > 0))
		pconn_free(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	pconn_progress(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	pconn_progress(arg);     /* output drained: resume reading, or close */
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct pconn *c = arg;

	if (what & BEV_EVENT_TIMEOUT) {
		log_info("%s: policy connection idle for %llu s%s; closing", c->client,
		    (unsigned long long)c->svc->cfg->session_timeout,
		    policy_parser_pending(&c->parser) ? " in the middle of a request" : "");
		pconn_free(c);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		log_debug("%s: policy connection error", c->client);
		pconn_free(c);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		/* the client said all it had to say: answer what can be
		 * answered now, then close */
		if (c->closing == 0)
			c->closing = 1;
		c->peer_closed = 1;
		pconn_progress(c);
	}
}

void pconn_start(struct policy_service *svc, int fd, const struct sockaddr *sa,
    socklen_t salen)
{
	struct pconn *c = xcalloc(1, sizeof(*c));
	struct timeval tv = { .tv_sec = (time_t)svc->cfg->session_timeout };

	c->svc = svc;
	format_client(sa, salen, c->client, sizeof(c->client));
	policy_parser_init(&c->parser);
	TAILQ_INIT(&c->pending);
	c->bev = bufferevent_socket_new(svc->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		log_warn("%s: cannot set up a policy connection", c->client);
		close(fd);
		free(c);
		return;
	}
	TAILQ_INSERT_TAIL(&svc->conns, c, entry);
	svc->nconns++;
	metrics_gauge_add(&metrics_policy->sessions, 1);
	metrics_inc(&metrics_policy->sessions_total, 1);
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ);
	log_debug("%s: policy connection", c->client);
}

void pconn_stop(struct pconn *c)
{
	/* what the client sent before the stop is answered too: one last
	 * read of what the socket holds (non-blocking) */
	if (c->closing == 0)
		evbuffer_read(bufferevent_get_input(c->bev), bufferevent_getfd(c->bev), -1);
	if (c->closing == 0)
		c->closing = 1;
	pconn_progress(c);       /* may free c */
}
