/*
 * service.c - the policy service process: its event loop, the listening
 * sockets of `listen policy`, the connection limit, what the decisions
 * read (the databases, users' policies, the greylist store, the
 * transactions remembered for END-OF-MESSAGE), reloads and the stop.
 *
 * Nothing here blocks: lookups are LMDB reads, and the greylist store is
 * a local LMDB write or an asynchronous Redis call.  What cannot be read
 * is tried again later, and meanwhile the answers are DUNNO.
 */
#include "policy/service.h"
#include "policy/service_private.h"
#include "policy/greylist.h"
#include "policy/tx_memory.h"
#include "conf/config_swap.h"
#include "db/db.h"
#include "lists/members.h"
#include "metrics/policy_figures.h"
#include "conf/config.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

/* Seconds between attempts to open what could not be opened. */
#define RETRY_INTERVAL 1
#define GREYLIST_RETRY_INTERVAL 10
#define TROUBLE_LOG_INTERVAL 60

/* ---- what the decisions read ---- */

static void db_try_open(struct policy_service *svc)
{
	char err[512] = "";

	svc->db_retry_at = time(NULL) + RETRY_INTERVAL;
	if (db_open(svc->cfg->db_dir, &svc->db, err, sizeof(err)) < 0) {
		svc->db = NULL;
		char *why = xasprintf("cannot open the databases in %s: %s", svc->cfg->db_dir, err);
		service_trouble(svc, why);
		free(why);
	}
}

void service_trouble(struct policy_service *svc, const char *reason)
{
	time_t now = time(NULL);

	if (svc->trouble_logged_at != 0 && now - svc->trouble_logged_at < TROUBLE_LOG_INTERVAL) {
		log_debug("policy: %s", reason);
		return;
	}
	svc->trouble_logged_at = now;
	log_warn("policy: %s; answering DUNNO meanwhile (logged once a minute at most)", reason);
}

struct greylist *service_greylist(struct policy_service *svc)
{
	char err[512] = "";
	time_t now = time(NULL);

	if (svc->greylist != NULL || now < svc->greylist_retry_at)
		return svc->greylist;
	svc->greylist = greylist_open(svc->cfg, svc->base, err, sizeof(err));
	if (svc->greylist == NULL) {
		svc->greylist_retry_at = now + GREYLIST_RETRY_INTERVAL;
		char *why = xasprintf("cannot open the greylist state: %s", err);
		service_trouble(svc, why);
		free(why);
	}
	return svc->greylist;
}

/* The members of the lists, per members_source (a reload may change it). */
static struct members *service_members(struct policy_service *svc)
{
	char err[256];

	if (svc->members != NULL && svc->members_kind != svc->cfg->members_source) {
		members_close(svc->members);
		svc->members = NULL;
	}
	if (svc->members == NULL && svc->cfg->members_source != MEMBERS_NONE) {
		svc->members = members_open(svc->cfg, err, sizeof(err));
		svc->members_kind = svc->cfg->members_source;
	}
	return svc->members;
}

void service_decide_ctx(struct policy_service *svc, struct decide_ctx *ctx)
{
	if (svc->db == NULL && time(NULL) >= svc->db_retry_at)
		db_try_open(svc);
	memset(ctx, 0, sizeof(*ctx));
	ctx->cfg = svc->cfg;
	ctx->db = svc->db;
	ctx->members = service_members(svc);
	ctx->txs = svc->txs;
	service_policies(svc, ctx);
}

void service_conn_gone(struct policy_service *svc)
{
	if (svc->stopping && svc->nconns == 0)
		event_base_loopexit(svc->base, NULL);
}

/* ---- accepting ---- */

static void listeners_enable(struct policy_service *svc, int on)
{
	for (int i = 0; i < svc->nlisteners; i++) {
		if (on)
			evconnlistener_enable(svc->listeners[i].evl);
		else
			evconnlistener_disable(svc->listeners[i].evl);
	}
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct plistener *l = arg;
	struct policy_service *svc = l->svc;

	if (svc->stopping) {
		close(fd);
		return;
	}
	if (svc->nconns >= svc->cfg->max_sessions) {
		/* the policy protocol has no greeting to refuse with: Postfix
		 * sees the close, retries and falls back to its default */
		log_warn("policy: too many connections (%llu, max_sessions): connection refused",
		    svc->nconns);
		close(fd);
		return;
	}
	if (evutil_make_socket_nonblocking(fd) < 0) {
		log_warn("cannot make a policy connection non-blocking: %s", strerror(errno));
		close(fd);
		return;
	}
	pconn_start(svc, fd, sa, (socklen_t)salen);
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
	struct policy_service *svc = arg;
	if (!svc->stopping)
		listeners_enable(svc, 1);
}

/* accept() failed (EMFILE ...): pause a second instead of spinning. */
static void on_accept_error(struct evconnlistener *evl, void *arg)
{
	struct plistener *l = arg;
	struct timeval tv = { .tv_sec = 1 };

	log_warn("policy: accept: %s; pausing for a second",
	    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	listeners_enable(l->svc, 0);
	event_add(l->svc->ev_accept_retry, &tv);
}

static int listeners_open(struct policy_service *svc, const int *listen_fds)
{
	for (int i = 0; i < svc->cfg->nlisten; i++) {
		const struct listen_spec *spec = &svc->cfg->listen[i];
		if (spec->proto != LISTEN_POLICY || listen_fds[i] < 0)
			continue;
		struct plistener *l = &svc->listeners[svc->nlisteners];
		l->svc = svc;
		l->spec = spec;
		l->evl = evconnlistener_new(svc->base, on_accept, l, LEV_OPT_CLOSE_ON_EXEC, 0,
		    listen_fds[i]);
		if (l->evl == NULL) {
			log_warn("cannot listen on policy socket %d", listen_fds[i]);
			return -1;
		}
		evconnlistener_set_error_cb(l->evl, on_accept_error);
		svc->nlisteners++;
	}
	if (svc->nlisteners == 0)
		log_warn("no policy listener");
	return 0;
}

/* ---- stopping and reloading ---- */

static void on_grace_over(evutil_socket_t fd, short what, void *arg)
{
	struct policy_service *svc = arg;
	struct pconn *c;

	log_warn("policy: stop grace period over; dropping %llu connection(s)", svc->nconns);
	while ((c = TAILQ_FIRST(&svc->conns)) != NULL)
		pconn_kill(c);
	event_base_loopexit(svc->base, NULL);
}

static void on_sigterm(evutil_socket_t sig, short what, void *arg)
{
	struct policy_service *svc = arg;
	struct timeval grace = { .tv_sec = (time_t)svc->cfg->stop_grace_time };
	struct pconn *c, *next;

	if (svc->stopping)
		return;
	log_info("stopping: %llu policy connection(s) open", svc->nconns);
	svc->stopping = 1;
	listeners_enable(svc, 0);
	for (c = TAILQ_FIRST(&svc->conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		pconn_stop(c);           /* may free c */
	}
	if (svc->nconns == 0) {
		event_base_loopexit(svc->base, NULL);
		return;
	}
	event_add(svc->ev_grace, &grace);
}

static void on_master(evutil_socket_t fd, short what, void *arg)
{
	struct policy_service *svc = arg;
	int swapped = config_swap_receive(fd, svc->cfg);

	if (swapped < 0) {
		event_del(svc->ev_master);      /* the master is gone; so are we soon */
		return;
	}
	if (swapped == 0)
		return;
	if (svc->greylist != NULL)
		greylist_reconfigure(svc->greylist, svc->cfg);
	service_policies_reload(svc);
	log_info("configuration %llu in use", (unsigned long long)svc->cfg->generation);
}

/* ---- set-up and tear-down ---- */

static void service_free(struct policy_service *svc)
{
	struct pconn *c;

	while ((c = TAILQ_FIRST(&svc->conns)) != NULL)
		pconn_kill(c);
	for (int i = 0; i < svc->nlisteners; i++)
		evconnlistener_free(svc->listeners[i].evl);
	if (svc->ev_sigterm)
		event_free(svc->ev_sigterm);
	if (svc->ev_grace)
		event_free(svc->ev_grace);
	if (svc->ev_accept_retry)
		event_free(svc->ev_accept_retry);
	if (svc->ev_master)
		event_free(svc->ev_master);
	if (svc->greylist)
		greylist_close(svc->greylist);
	service_policies_close(svc);
	tx_memory_free(svc->txs);
	if (svc->db)
		db_close(svc->db);
	members_close(svc->members);
	if (svc->base)
		event_base_free(svc->base);
	free(svc);
}

int policy_service_main(struct config *cfg, const int *listen_fds, int master_fd)
{
	struct policy_service *svc = xcalloc(1, sizeof(*svc));
	int status = 0;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	svc->cfg = cfg;
	TAILQ_INIT(&svc->conns);
	/* the region outlives us: the connections of a service that died
	 * are gone with it */
	metrics_gauge_set(&metrics_policy->sessions, 0);
	svc->txs = tx_memory_new(SERVICE_TX_MAX, SERVICE_TX_TTL);
	tx_memory_set_max_bytes(svc->txs, SERVICE_TX_MAX_BYTES);
	svc->base = event_base_new();
	if (svc->base == NULL)
		fatal("cannot create the event loop");
	svc->ev_sigterm = evsignal_new(svc->base, SIGTERM, on_sigterm, svc);
	svc->ev_grace = evtimer_new(svc->base, on_grace_over, svc);
	svc->ev_accept_retry = evtimer_new(svc->base, on_accept_retry, svc);
	svc->ev_master = event_new(svc->base, master_fd, EV_READ | EV_PERSIST, on_master, svc);
	if (svc->ev_sigterm == NULL || svc->ev_grace == NULL || svc->ev_accept_retry == NULL ||
	    svc->ev_master == NULL || event_add(svc->ev_sigterm, NULL) < 0 ||
	    event_add(svc->ev_master, NULL) < 0)
		fatal("cannot set up the event loop");

	db_try_open(svc);
	service_greylist(svc);
	if (listeners_open(svc, listen_fds) < 0) {
		status = 1;
	} else {
		log_info("policy service ready: %d listener(s)", svc->nlisteners);
		if (event_base_dispatch(svc->base) < 0) {
			log_warn("event loop failed");
			status = 1;
		}
	}
	service_free(svc);
	return status;
}
