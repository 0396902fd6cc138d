/*
 * metrics_http.c - GET /metrics over HTTP with libevent's evhttp, for
 * `mailprocd: metrics` and mailmond.  evhttp parses the requests (what it
 * cannot parse gets 400 from it); this file answers them: 200 with the
 * exposition for GET and HEAD of /metrics, 404 for another path, 405 for
 * another method.  Headers and bodies are bounded, idle connections time
 * out.  See metrics_http.h.
 */
#include "metrics/metrics_http.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTTP_MAX_HEADERS_SIZE 8192
#define HTTP_MAX_BODY_SIZE 4096
#define HTTP_TIMEOUT_SECONDS 10
/* The type libevent 2.1 gives a method it does not know (its internal
 * EVHTTP_REQ_UNKNOWN_); allowed, so that such a request gets our 405. */
#define HTTP_REQ_UNKNOWN (1 << 15)

struct metrics_http {
	struct evhttp *http;
	metrics_render_fn render;
	void *arg;
};

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
	for (int i = 0; i < n; i++) {
		if (fds[i] < 0)
			continue;
		evutil_make_socket_nonblocking(fds[i]);
		if (evhttp_accept_socket(h->http, fds[i]) < 0) {
			log_warn("metrics: cannot serve on descriptor %d", fds[i]);
			metrics_http_free(h);
			return NULL;
		}
	}
	return h;
}

void metrics_http_free(struct metrics_http *h)
{
	if (h == NULL)
		return;
	if (h->http != NULL)
		evhttp_free(h->http);
	free(h);
}
