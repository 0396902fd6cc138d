/*
 * service_private.h - the state of the policy service process shared by
 * its parts: the process (service.c) and its connections
 * (service_conn.c).  Private to src/policy.
 */
#ifndef MP_POLICY_SERVICE_PRIVATE_H
#define MP_POLICY_SERVICE_PRIVATE_H

#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include "conf/config.h"
#include "policy/decide.h"
#include "policy/policy_request.h"

struct bufferevent;
struct event;
struct event_base;
struct evconnlistener;
struct greylist;
struct greylist_req;
struct policy_store;

/* Requests one connection may have read and not yet answered; it is not
 * read from while it has that many, or SERVICE_OUTPUT_HIGH bytes of
 * answers the client did not read. */
#define SERVICE_MAX_PENDING 64
#define SERVICE_OUTPUT_HIGH (64 * 1024)
/* Transactions remembered for END-OF-MESSAGE, and for how long. */
#define SERVICE_TX_MAX 100000
#define SERVICE_TX_TTL 3600
#define SERVICE_TX_MAX_BYTES (64u * 1024 * 1024)   /* their recipients, in all */

struct pending {
	struct pconn *c;
	struct policy_request req;
	struct decision d;
	int done;                       /* d.action is final */
	struct greylist_req *gl;        /* the greylist answer waited for */
	TAILQ_ENTRY(pending) entry;
};

struct pconn {
	struct policy_service *svc;
	struct bufferevent *bev;
	char client[80];                /* for the log: address or "unix" */
	struct policy_parser parser;
	TAILQ_HEAD(, pending) pending;  /* in the order of the requests */
	int npending;
	int closing;                    /* read no more; close once answered */
	int peer_closed;                /* end of input: nobody waits for answers
	                                 * that need the greylist store */
	int busy;                       /* in pconn_progress */
	TAILQ_ENTRY(pconn) entry;
};

struct plistener {
	struct policy_service *svc;
	struct evconnlistener *evl;
	const struct listen_spec *spec;
};

struct policy_service {
	struct config *cfg;
	struct event_base *base;
	struct plistener listeners[CONFIG_MAX_LISTEN];
	int nlisteners;
	TAILQ_HEAD(, pconn) conns;
	unsigned long long nconns;
	int stopping;
	struct event *ev_sigterm, *ev_grace, *ev_master, *ev_accept_retry;
	/* what the decisions read */
	struct db *db;
	time_t db_retry_at;
	struct members *members;        /* members_source file or mailman3, else NULL */
	int members_kind;               /* the members_source it was opened for */
	struct policy_store *store;
	time_t store_retry_at;
	struct greylist *greylist;
	time_t greylist_retry_at;
	struct tx_memory *txs;
	time_t trouble_logged_at;       /* temporary trouble: a line a minute */
};

/* service.c */
/* The context of one decision, with the databases (re)opened as needed. */
void service_decide_ctx(struct policy_service *svc, struct decide_ctx *ctx);
struct greylist *service_greylist(struct policy_service *svc);
void service_conn_gone(struct policy_service *svc);
/* A DUNNO because something is wrong: logged, at most a line a minute. */
void service_trouble(struct policy_service *svc, const char *reason);

/* service_policies.c: the users' own policies for ctx */
void service_policies(struct policy_service *svc, struct decide_ctx *ctx);
void service_policies_reload(struct policy_service *svc);
void service_policies_close(struct policy_service *svc);

/* service_conn.c */
void pconn_start(struct policy_service *svc, int fd, const struct sockaddr *sa,
    socklen_t salen);
/* SIGTERM: answer what was read, then close. */
void pconn_stop(struct pconn *c);
void pconn_kill(struct pconn *c);

#endif
