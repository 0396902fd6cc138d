/*
 * metrics_http.h - a minimal HTTP server (libevent's evhttp) for
 * GET /metrics, used by `mailprocd: metrics` and by mailmond.
 *
 * Only GET (and HEAD) of /metrics is answered, 200 with
 * "Content-Type: text/plain; version=0.0.4; charset=utf-8"; another path
 * is 404, another method 405, anything evhttp cannot parse 400 (evhttp's
 * own limits on header and body sizes apply; connections time out).
 */
#ifndef MP_METRICS_HTTP_H
#define MP_METRICS_HTTP_H

struct buf;
struct event_base;
struct metrics_http;

/* Fills out with the exposition, at each request. */
typedef void (*metrics_render_fn)(struct buf *out, void *arg);

/* Serve on the listening sockets fds[0..n-1] (already bound and listening,
 * non-blocking).  NULL (logged) on failure. */
struct metrics_http *metrics_http_start(struct event_base *base, const int *fds, int n,
    metrics_render_fn render, void *arg);
void metrics_http_free(struct metrics_http *h);

#endif
