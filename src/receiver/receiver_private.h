/*
 * receiver_private.h - what the files of the receiver share: the process
 * state (struct receiver), one SMTP/LMTP session (struct session), and
 * the functions each file offers the others.
 *
 *   receiver.c  process set-up, listeners, accept, signals, db, qmgr
 *   session.c   a connection: bufferevent callbacks, the input loop that
 *               feeds commands and message data, replies, flow control,
 *               closing
 *   commands.c  the command table: a check step and an act step per verb
 *   data.c      DATA: the queue file, the streamed message, the replies
 *   commit_pool.c  the threads that make queue files durable
 *   client_count.c sessions per client address (max_sessions_per_client)
 */
#ifndef MP_RECEIVER_PRIVATE_H
#define MP_RECEIVER_PRIVATE_H

#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include "conf/config.h"
#include "receiver/client_count.h"
#include "lib/fsync_group.h"
#include "lib/log.h"
#include "metrics/receiver_figures.h"
#include "proto/smtp_data.h"
#include "proto/smtp_line.h"
#include "proto/smtp_parse.h"

struct bufferevent;
struct event;
struct event_base;
struct evconnlistener;
struct qwriter;
struct commit_pool;
struct qspares;
struct qmgr_notify;
struct pending_commit;
struct db;
struct receiver;

/* Replies waiting to be sent beyond which no further command is read
 * (a client that pipelines without reading cannot grow our memory). */
#define SESSION_OUTPUT_HIGH (64 * 1024)
/* Unprocessed input beyond which libevent stops reading the socket. */
#define SESSION_INPUT_HIGH (64 * 1024)
/* Threads that commit queue files (fsync) while the loop goes on. */
#define RECEIVER_COMMIT_THREADS 8

struct listener {
	struct receiver *r;
	const struct listen_spec *spec;
	struct evconnlistener *evl;
};

struct session;
TAILQ_HEAD(session_list, session);

struct receiver {
	struct config *cfg;             /* swapped in place by a reload */
	const char *hostname;           /* cfg's: set again after a reload */
	struct event_base *base;
	struct listener listeners[CONFIG_MAX_LISTEN];
	int nlisteners;
	struct event *ev_sigterm;
	struct event *ev_grace;         /* end of the stop grace period */
	struct event *ev_accept_retry;  /* listeners paused after EMFILE */
	struct event *ev_master;        /* reloads from the master */
	struct session_list sessions;
	uint64_t nsessions;
	struct client_count *clients;   /* sessions per client IP address */
	int stopping;
	struct db *db;                  /* NULL until it could be opened */
	struct members *members;        /* per members_source; NULL: none */
	int members_kind;               /* the members_source it was opened for */
	time_t db_retry_at;
	time_t db_warned_at;
	int qmgr_fd;
	struct qmgr_notify *notify;     /* announcements to the qmgr; NULL: none */
	struct commit_pool *commits;    /* NULL: commits run inline */
	struct fsync_group incoming_sync;       /* commits share incoming/'s fsyncs */
	int incoming_sync_open;                 /* 0: each commit makes its own */
	struct qspares *spares;         /* queue files made ahead; NULL: none */
	struct event *ev_spares;        /* removes the spares that grew too old */
};

/* The envelope of the current mail transaction. */
struct transaction {
	int active;                     /* MAIL was accepted */
	char sender[SMTP_PATH_MAX + 1];
	int eightbit;
	uint64_t size_param;            /* MAIL SIZE=, 0 when not given */
	char **rcpts;
	uint64_t *maxsize;              /* per recipient: its entry's maxsize=, 0 none */
	size_t nrcpts, cap;
};

/* The message being received after DATA. */
struct data_stream {
	int active;
	struct smtp_data machine;
	struct qwriter *qw;             /* NULL once dropped (too big, error) */
	uint64_t size;                  /* message bytes seen (after unstuffing) */
	int too_big;
	int error;                      /* errno of the first queue failure */
	struct pending_commit *commit;  /* committing: no input is read */
	size_t *qindex;                 /* per transaction recipient: its queue index */
	unsigned char *over;            /* per transaction recipient: over its maxsize */
};

struct session {
	TAILQ_ENTRY(session) entry;
	struct receiver *r;
	struct bufferevent *bev;
	int lmtp;
	enum fig_protocol proto;        /* FP_SMTP or FP_LMTP, for the figures */
	char client[64];                /* "[192.0.2.1]", "[IPv6:::1]", "unix" */
	struct client_key client_key;   /* counted in r->clients when counted */
	int counted;
	char helo[SMTP_HELO_MAX + 1];   /* "" until HELO/EHLO/LHLO */
	const char *protocol;           /* "SMTP", "ESMTP", "LMTP"; NULL before */
	struct smtp_line line;
	struct transaction tx;
	struct data_stream data;
	int closing;                    /* close once the replies are sent */
	int paused;                     /* reading stopped: too much output */
	int input_ended;                /* EOF seen while committing */
	unsigned long nmessages;
};

/* ---- receiver.c ---- */
/* The databases, opening them again if an earlier open failed (at most
 * once a second).  NULL when they cannot be opened. */
struct db *receiver_db(struct receiver *r);
/* The lists' members per members_source (NULL: none); follows reloads. */
struct members *receiver_members(struct receiver *r);
/* Tell the qmgr about a committed message; never blocks. */
void receiver_notify_qmgr(struct receiver *r, const char *qid);
/* A session was freed. */
void receiver_session_gone(struct receiver *r);
/* A spare queue file for a new message (its descriptor, its queue id in
 * qid, its ticket of incoming_sync), or -1 when none is ready: create one
 * then. */
int receiver_take_spare(struct receiver *r, char *qid, uint64_t *ticket);
/* When none was: the message's queue file got the queue id qid (spares
 * made before it are not used after it). */
void receiver_no_spare_taken(struct receiver *r, const char *qid);

/* ---- session.c ---- */
void session_start(struct receiver *r, const struct listen_spec *spec, int fd,
    const struct sockaddr *sa, socklen_t salen);
/* "[192.0.2.1]", "[IPv6:2001:db8::1]", or "unix" for anything else. */
void session_format_client(const struct sockaddr *sa, socklen_t salen, char *out,
    size_t outlen);
/* Queue one positive (2xx, 3xx) reply line; enh NULL for replies without
 * an enhanced code.  A 4xx or 5xx goes through session_refuse (a panic
 * here: our bug). */
void session_reply(struct session *s, int code, const char *enh,
    const char *fmt, ...) MP_PRINTF(4, 5);
/* Queue one 4xx or 5xx reply line, with the enhanced code of reason, and
 * count it in mailprocd_rejections_total. */
void session_refuse(struct session *s, enum fig_rejection reason, int code,
    const char *fmt, ...) MP_PRINTF(4, 5);
/* A line of a multi-line reply that is not the last. */
void session_reply_more(struct session *s, int code, const char *fmt, ...)
    MP_PRINTF(3, 4);
/* Stop reading; the connection closes once the queued replies are sent. */
void session_close(struct session *s);
/* Forget the envelope (RSET, HELO, after DATA). */
void session_reset_transaction(struct session *s);
/* A mail transaction is in progress (MAIL given or DATA running). */
int session_busy(const struct session *s);
/* SIGTERM: idle sessions get 421 and close; busy ones finish first. */
void session_stop(struct session *s);
/* End of the grace period: drop the session at once. */
void session_kill(struct session *s);
/* The commit is done: go on with the input that waited, and with a
 * close or end of input that came meanwhile. */
void session_resume(struct session *s);

/* ---- commands.c ---- */
/* Parse and run one command line (len bytes, buffer writable at len). */
void command_execute(struct session *s, char *line, size_t len);

/* ---- data.c ---- */
/* The act step of DATA: open the queue file and answer 354. */
void data_begin(struct session *s);
/* Take message bytes; returns how many were used (fewer than n after the
 * end of data, which has then been handled). */
size_t data_consume(struct session *s, const char *p, size_t n);
/* Whether the message is being committed (the session waits). */
int data_committing(const struct session *s);
/* Drop an unfinished message (connection lost, timeout, stop); a commit
 * under way finishes without the session. */
void data_abort(struct session *s);

#endif
