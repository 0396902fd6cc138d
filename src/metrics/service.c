/*
 * service.c - `mailprocd: metrics`: maps every region read-only, serves
 * GET /metrics (metrics_http.c) rendered by expose_all(), takes reloads
 * over its config link like the other children, exits on SIGTERM.  The
 * HTTP parsing happens here, never in a root process.
 */
#include "metrics/service.h"
#include "conf/config_swap.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "metrics/expose.h"
#include "metrics/metrics_http.h"

#include <event2/event.h>
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

struct metrics_service {
	struct config *cfg;
	struct event_base *base;
	struct metrics_view view;
	struct event *ev_master;
};

static void render(struct buf *out, void *arg)
{
	struct metrics_service *s = arg;
	struct timeval tv;

	gettimeofday(&tv, NULL);
	expose_all(out, &s->view, (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec);
}

static void on_sigterm(evutil_socket_t sig, short what, void *arg)
{
	struct metrics_service *s = arg;

	log_info("stopping");
	event_base_loopexit(s->base, NULL);
}

static void on_master(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_service *s = arg;
	int swapped = config_swap_receive(fd, s->cfg);

	if (swapped < 0) {
		event_del(s->ev_master);        /* the master is gone; so are we soon */
		return;
	}
	if (swapped > 0)
		log_info("configuration %llu in use", (unsigned long long)s->cfg->generation);
}

int metrics_service_main(struct config *cfg, const int *listen_fds,
    int ro_fds[METRICS_REGION_COUNT], int master_fd)
{
	struct metrics_service s = { .cfg = cfg };
	int fds[CONFIG_MAX_LISTEN], n = 0, status = 0;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	metrics_view_map(&s.view, ro_fds);
	s.base = event_base_new();
	if (s.base == NULL)
		fatal("cannot create the event loop");
	struct event *ev_term = evsignal_new(s.base, SIGTERM, on_sigterm, &s);
	s.ev_master = event_new(s.base, master_fd, EV_READ | EV_PERSIST, on_master, &s);
	if (ev_term == NULL || s.ev_master == NULL || event_add(ev_term, NULL) < 0 ||
	    event_add(s.ev_master, NULL) < 0)
		fatal("cannot set up the event loop");

	for (int i = 0; i < cfg->nlisten; i++)
		if (cfg->listen[i].proto == LISTEN_METRICS && listen_fds[i] >= 0)
			fds[n++] = listen_fds[i];
	struct metrics_http *http = metrics_http_start(s.base, fds, n, render, &s);
	if (http == NULL) {
		status = 1;
	} else {
		log_info("metrics service ready: %d listener(s)", n);
		if (event_base_dispatch(s.base) < 0) {
			log_warn("event loop failed");
			status = 1;
		}
	}
	metrics_http_free(http);
	event_free(ev_term);
	event_free(s.ev_master);
	event_base_free(s.base);
	return status;
}
