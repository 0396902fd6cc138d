/*
 * metrics_http.c - GET /metrics over HTTP with libevent's evhttp, for
 * `mailprocd: metrics` and mailmond.  evhttp parses the requests (what it
 * cannot parse gets 400 from it); this file answers them: 200 with the
 * exposition for GET and HEAD of /metrics, 404 for another path, 405 for
 * another method.  Headers and bodies are bounded, idle connections time
 * out.  When accept() fails for want of descriptors (or memory), the
 * listener pauses for a second: libevent would otherwise try again at
 * once, forever, spinning and logging a line each time, while idle clients
 * hold every descriptor.  See metrics_http.h.
 */
#include "metrics/metrics_http.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HTTP_MAX_HEADERS_SIZE 8192
#define HTTP_MAX_BODY_SIZE 4096
#define HTTP_TIMEOUT_SECONDS 10
/* The type libevent 2.1 gives a method it does not know (its internal
 * EVHTTP_REQ_UNKNOWN_); allowed, so that such a request gets our 405. */
#define HTTP_REQ_UNKNOWN (1 << 15)
/* How long a listener rests after accept() failed. */
#define HTTP_ACCEPT_PAUSE_SECONDS 1

/* A listening socket and the timer that takes it up again after a pause. */
struct http_listener {
	struct evconnlistener *lev;
	struct event *resume;
	time_t logged;          /* the last pause said in the log */
};

struct metrics_http {
	struct evhttp *http;
	metrics_render_fn render;
	void *arg;
	struct http_listener *listeners;
	int nlisteners;
	struct metrics_http *next;      /* every server of this process */
};

/* libevent hands a listener's error callback the argument of its accept
 * callback (evhttp's), not one of ours: the listener is looked up here. */
static struct metrics_http *servers;

/* An error reply with a short plain text body (none for HEAD). */
static void send_error(struct evhttp_request *req, int code, const char *reason)
{
	struct evbuffer *body = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "text/plain; charset=utf-8");
	if (body != NULL)
		evbuffer_add_printf(body, "%d %s\n", code, reason);
	evhttp_send_reply(req, code, reason,
	    evhttp_request_get_command(req) == EVHTTP_REQ_HEAD ? NULL : body);
	if (body != NULL)
		evbuffer_free(body);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct metrics_http *h = arg;
	enum evhttp_cmd_type method = evhttp_request_get_command(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;

	if (path == NULL || strcmp(path, "/metrics") != 0) {
		send_error(req, HTTP_NOTFOUND, "Not Found");
		return;
	}
	if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		send_error(req, 405, "Method Not Allowed");
		return;
	}

	struct buf text = BUF_INIT;
	struct evbuffer *body = evbuffer_new();
	h->render(&text, h->arg);
	if (body == NULL || evbuffer_add(body, text.data ? text.data : "", text.len) < 0) {
		buf_free(&text);
		if (body != NULL)
			evbuffer_free(body);
		send_error(req, HTTP_INTERNAL, "Internal Server Error");
		return;
	}
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	evhttp_add_header(headers, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	if (method == EVHTTP_REQ_HEAD) {
		/* the length GET would have, and no body (evhttp 2.1 would send it) */
		char length[32];
		snprintf(length, sizeof(length), "%zu", text.len);
		evhttp_add_header(headers, "Content-Length", length);
		evbuffer_drain(body, evbuffer_get_length(body));
	}
	buf_free(&text);
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct http_listener *l = arg;

	evconnlistener_enable(l->lev);
}

static void on_accept_error(struct evconnlistener *lev, void *unused)
{
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { .tv_sec = HTTP_ACCEPT_PAUSE_SECONDS };

	for (struct metrics_http *h = servers; h != NULL; h = h->next) {
		for (int i = 0; i < h->nlisteners; i++) {
			struct http_listener *l = &h->listeners[i];
			if (l->lev != lev)
				continue;
			evconnlistener_disable(lev);
			evtimer_add(l->resume, &tv);
			time_t now = time(NULL);
			if (now - l->logged >= 60) {
				l->logged = now;
				log_warn("metrics: accept: %s; not accepting for %d s (said once a "
				    "minute)", evutil_socket_error_to_string(err),
				    HTTP_ACCEPT_PAUSE_SECONDS);
			}
			return;
		}
	}
}

struct metrics_http *metrics_http_start(struct event_base *base, const int *fds, int n,
    metrics_render_fn render, void *arg)
{
	struct metrics_http *h = xcalloc(1, sizeof(*h));

	h->render = render;
	h->arg = arg;
	h->http = evhttp_new(base);
	if (h->http == NULL) {
		log_warn("metrics: cannot create the HTTP server");
		free(h);
		return NULL;
	}
	/* every method reaches on_request, which answers 405: evhttp's own
	 * answer to a method it was not allowed is 501, and a 4xx is wanted */
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
	    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
	    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH | HTTP_REQ_UNKNOWN);
	evhttp_set_max_headers_size(h->http, HTTP_MAX_HEADERS_SIZE);
	evhttp_set_max_body_size(h->http, HTTP_MAX_BODY_SIZE);
	evhttp_set_timeout(h->http, HTTP_TIMEOUT_SECONDS);
	evhttp_set_gencb(h->http, on_request, h);
	h->next = servers;
	servers = h;
	h->listeners = xcalloc(n > 0 ? (size_t)n : 1, sizeof(*h->listeners));
	for (int i = 0; i < n; i++) {
		if (fds[i] < 0)
			continue;
		evutil_make_socket_nonblocking(fds[i]);
		struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(h->http, fds[i]);
		struct http_listener *l = &h->listeners[h->nlisteners];
		l->lev = bound != NULL ? evhttp_bound_socket_get_listener(bound) : NULL;
		l->resume = l->lev != NULL ? evtimer_new(base, on_resume, l) : NULL;
		if (l->resume == NULL) {
			log_warn("metrics: cannot serve on descriptor %d", fds[i]);
			metrics_http_free(h);
			return NULL;
		}
		evconnlistener_set_error_cb(l->lev, on_accept_error);
		h->nlisteners++;
	}
	return h;
}

void metrics_http_free(struct metrics_http *h)
{
	if (h == NULL)
		return;
	for (struct metrics_http **p = &servers; *p != NULL; p = &(*p)->next) {
		if (*p == h) {
			*p = h->next;
			break;
		}
	}
	for (int i = 0; i < h->nlisteners; i++)
		event_free(h->listeners[i].resume);
	free(h->listeners);
	if (h->http != NULL)
		evhttp_free(h->http);
	free(h);
}
