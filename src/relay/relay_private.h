/*
 * relay_private.h - what the files of the relay share:
 *   relay.c        process entry, event loop, the qmgr socket, the job
 *                  queue, handing jobs to connections, stopping
 *   outbox.c       results to the qmgr, queued when its socket is full
 *   job.c          jobs: decoding MSG_RELAY_JOB, per-recipient results,
 *                  reporting them
 *   conn.c         a connection: resolving, non-blocking connect, the
 *                  bufferevent, timers, reply input, closing
 *   conn_smtp.c    greeting, EHLO/HELO and its capabilities, RSET, QUIT
 *   conn_tx.c      a mail transaction: MAIL, RCPT, DATA (pipelined when
 *                  offered), the message, the replies per recipient
 *   message_id.c   the Message-ID a list manager's copy gets when it has none
 *
 * A job either goes to relay_host over SMTP (forwards, bounces: dest NULL)
 * or to a mailing list manager's LMTP server (dest "lmtp:..."); connections
 * are cached per destination and only carry jobs for theirs.
 */
#ifndef MP_RELAY_PRIVATE_H
#define MP_RELAY_PRIVATE_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/util.h>         /* struct evutil_addrinfo */

#include "conf/config.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/msgtypes.h"
#include "relay/relay.h"
#include "relay/send_body.h"
#include "relay/smtp_client_reply.h"

struct bufferevent;
struct event;
struct event_base;
struct evdns_base;
struct evdns_getaddrinfo_request;

/* Unsent message data below which more is read from the queue file, and
 * the amount kept queued on the socket. */
#define RELAY_OUT_LOW (64 * 1024)
#define RELAY_OUT_HIGH (256 * 1024)
/* Unprocessed server input beyond which the socket is not read. */
#define RELAY_IN_HIGH (64 * 1024)
/* Longest address accepted in a job (RFC 5321 path, without <>). */
#define RELAY_ADDR_MAX 254
/* Longest result text (longer ones are cut), and the size of the buffers
 * they are formatted in (a peer name, a reply text and some words). */
#define RELAY_TEXT_MAX 1000
#define RELAY_TEXT_BUF 1400

struct relay_rcpt {
	char *address;
	int done;                       /* the result is known */
	enum relay_status status;
	char dsn[12];
	char *text;
};

struct relay_job {
	TAILQ_ENTRY(relay_job) entry;
	uint64_t id;
	char *sender;                   /* "" for <> */
	int fd;                         /* the queue file, read-only */
	uint64_t msg_offset;
	uint64_t msg_size;
	int eightbit;
	uint32_t nrcpt;
	struct relay_rcpt *rcpt;
	char *dest;                     /* "lmtp:..." of a list manager, or NULL */
	char *qid;                      /* the message's queue id */
	char *add_header;               /* a line to send before the message
	                                 * ("Message-ID: <...>\r\n"), or NULL */
};
TAILQ_HEAD(relay_job_list, relay_job);

enum conn_state {
	CONN_RESOLVING,
	CONN_CONNECTING,
	CONN_GREETING,
	CONN_EHLO,
	CONN_HELO,
	CONN_IDLE,                      /* ready, no job */
	CONN_TX,                        /* in a mail transaction */
	CONN_RSET,                      /* after a failed transaction */
	CONN_QUIT,
	CONN_DEAD,                      /* closed; freed from the event loop */
};

enum tx_stage { TX_MAIL, TX_RCPT, TX_DATA, TX_BODY, TX_DOT };

struct relay_tx {
	enum tx_stage stage;
	uint32_t sent[MSG_RELAY_MAX_RCPTS];     /* job indexes given in RCPT TO */
	uint32_t nsent;
	uint32_t pos;                   /* RCPT replies received */
	uint32_t naccepted;
	unsigned char accepted[MSG_RELAY_MAX_RCPTS];    /* by job index */
	uint32_t dot_pos;               /* LMTP: replies to the end of data so far */
	int mail_ok;
	int discard;                    /* 354 with no recipient: "." sent, the
	                                 * reply does not count */
	struct send_body body;
};

struct relay_conn {
	TAILQ_ENTRY(relay_conn) entry;
	struct relay *r;
	enum conn_state state;
	unsigned id;
	char *dest;                     /* the list manager's "lmtp:...", or NULL */
	int lmtp;                       /* LHLO, one reply per recipient after data */
	char *host, *port;              /* what it connects to (port NULL: unix socket) */
	int numeric;                    /* host is an address */
	struct evdns_getaddrinfo_request *dns_req;
	struct evutil_addrinfo *ai_owned;       /* resolver answer, or NULL */
	struct evutil_addrinfo *ai_next;        /* next address to try */
	int fd;                         /* socket while connecting */
	struct event *connect_ev;
	struct bufferevent *bev;
	struct event *timer;
	char addr[INET6_ADDRSTRLEN + 8]; /* "192.0.2.1", "[2001:db8::1]" */
	char peer[320];                 /* "name[address]" */
	char conn_err[400];             /* why the last address failed */
	struct smtp_client_reply reply;
	int esmtp, pipelining, eightbitmime, size_offered;
	uint64_t size_max;              /* 0: no limit given */
	unsigned nmsgs;                 /* transactions started */
	int retiring;                   /* to an old relay_host: no new job */
	struct relay_job *job;          /* the job it carries, or NULL */
	struct relay_tx tx;
};
TAILQ_HEAD(relay_conn_list, relay_conn);

/* glibc's sys/queue.h lacks it */
#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                      \
	for ((var) = TAILQ_FIRST(head);                                 \
	    (var) != NULL && ((tvar) = TAILQ_NEXT(var, field), 1);      \
	    (var) = (tvar))
#endif

struct out_item;
TAILQ_HEAD(out_list, out_item);

struct relay {
	struct config *cfg;             /* swapped in place by a reload */
	struct event_base *base;
	struct evdns_base *dns;         /* only for a relay_host by name */
	char *host;                     /* relay_host without port and [] */
	char *port;
	int numeric;                    /* host is an address */
	struct evutil_addrinfo *numeric_ai;
	struct evutil_addrinfo **old_ai;        /* of earlier relay_hosts: connections
	                                         * being set up may walk them */
	size_t nold_ai;
	char *relay_host;               /* the relay_host host and port come from */
	struct event *master_ev;        /* reloads from the master */
	int ipc_fd;
	struct event *ipc_rev, *ipc_wev;
	struct event *kick_ev;          /* deferred dispatch and clean-up */
	struct event *stop_ev;          /* end of the stop grace period */
	struct event *term_ev, *int_ev; /* SIGTERM, SIGINT: stop */
	struct relay_job_list queue;
	size_t nqueued;
	struct relay_conn_list conns;
	struct relay_conn_list dead;
	int nconns;
	struct out_list outbox;
	int stopping;                   /* the qmgr closed its end, or SIGTERM */
	int gone;                       /* the qmgr cannot read results */
	time_t backoff_until;
	unsigned next_conn_id;
};

/* ---- relay.c ---- */
/* Run the dispatcher (and free closed connections) when the loop regains
 * control. */
void relay_kick(struct relay *r);
/* The next queued job for dest (NULL: relay_host), or NULL. */
struct relay_job *relay_next_job(struct relay *r, const char *dest);
/* Whether two destinations are the same (NULL is relay_host). */
int relay_same_dest(const char *a, const char *b);
/* A connection could not be set up for job: retry it later on another
 * connection to its destination if some work, otherwise fail it and every
 * job queued for its destination. */
void relay_setup_failed(struct relay *r, struct relay_job *job, const char *dsn,
    const char *text);

/* ---- outbox.c ---- */
/* Queue a message to the qmgr (results, done); never blocks. */
void relay_send_result(struct relay *r, uint64_t job_id, uint32_t index,
    enum relay_status status, const char *dsn, const char *text);
void relay_send_done(struct relay *r, uint64_t job_id);
/* The qmgr socket is writable (r->ipc_wev): send what waits. */
void outbox_writable(evutil_socket_t fd, short what, void *arg);
/* Forget what waits (the qmgr is gone, or the end). */
void outbox_drop(struct relay *r);
/* Tell the qmgr a relay started (nonce 0: the jobs an earlier one held are
 * lost), or answer its MSG_RELAY_PING. */
void relay_send_hello(struct relay *r, uint64_t nonce);

/* ---- job.c ---- */
/* Decode a MSG_RELAY_JOB (m->fd taken over).  NULL when malformed (logged;
 * MSG_RELAY_DONE sent when the job id could be read). */
struct relay_job *job_decode(struct relay *r, struct ipc_msg *m);
/* Record a recipient's result (the first one counts). */
void job_result(struct relay_job *job, uint32_t index, enum relay_status status,
    const char *dsn, const char *text);
/* Recipients without a result yet. */
uint32_t job_pending(const struct relay_job *job);
/* Give every recipient without a result this one, report all results and
 * MSG_RELAY_DONE, free the job. */
void job_finish(struct relay *r, struct relay_job *job, enum relay_status status,
    const char *dsn, const char *text);
void job_free(struct relay_job *job);

/* ---- conn.c ---- */
/* Open a connection that will run job first (job may be NULL). */
void conn_new(struct relay *r, struct relay_job *job);
/* Connection set up or transaction over: run the next job or go idle. */
void conn_ready(struct relay_conn *c);
/* Close now: the socket, timers, resolver; c is freed later. */
void conn_close(struct relay_conn *c);
/* The connection could not be set up: close, then relay_setup_failed. */
void conn_setup_failed(struct relay_conn *c, const char *dsn, const char *fmt, ...)
    MP_PRINTF(3, 4);
/* (Re)start the stage timer. */
void conn_arm(struct relay_conn *c, int seconds);
/* Queue a command line (CRLF added). */
void conn_cmd(struct relay_conn *c, const char *fmt, ...) MP_PRINTF(2, 3);
size_t conn_output_pending(const struct relay_conn *c);
void conn_output(struct relay_conn *c, const void *p, size_t n);
/* "in reply to WHAT" text: "host NAME[ADDR] said: REPLY (in reply to WHAT)". */
void conn_said(const struct relay_conn *c, const char *what, char *out, size_t outlen);
/* The stop: what to do with this connection. */
void conn_stop(struct relay_conn *c);

/* The status a reply gives (2xx sent, 5xx permanent when allowed, else
 * temporary) and its enhanced code in dsn (class 4 when temporary). */
enum relay_status conn_reply_status(const struct relay_conn *c, int may_be_permanent,
    char *dsn, size_t dsnlen);

/* ---- conn_smtp.c ---- */
/* Connected: wait for the greeting. */
void smtp_start(struct relay_conn *c);
/* A line of a multi-line reply / a complete reply, by state. */
void smtp_on_line(struct relay_conn *c);
void smtp_on_reply(struct relay_conn *c);
enum conn_failure {
	FAIL_LOST,                      /* end of file or socket error */
	FAIL_TIMEOUT,                   /* the stage timer expired */
	FAIL_PROTOCOL,                  /* a malformed reply */
};
/* The conversation broke: report by state (detail: the error, or NULL). */
void smtp_on_failure(struct relay_conn *c, enum conn_failure kind, const char *detail);
void smtp_rset(struct relay_conn *c);
void smtp_quit(struct relay_conn *c);

/* ---- conn_tx.c ---- */
/* ---- message_id.c ---- */
/* For a job to a list manager: when the message has no Message-ID header,
 * job->add_header = "Message-ID: <QID.mailprocd@HOSTNAME>\r\n" (the same
 * on every attempt).  -1 when the queue file cannot be read. */
int message_id_prepare(struct relay_job *job, const char *hostname);

/* Start a transaction for job on a ready connection.  Returns 1 when
 * started, 0 when the job was finished without one (nothing to send, too
 * large for the server). */
int tx_start(struct relay_conn *c, struct relay_job *job);
void tx_on_reply(struct relay_conn *c);
/* The socket took data: send more of the message. */
void tx_on_drained(struct relay_conn *c);
/* The transaction cannot go on (connection lost, timeout, 421, read
 * error): every recipient without a result gets a temporary failure with
 * this reason, the job is reported and the connection closed. */
void tx_abort(struct relay_conn *c, const char *dsn, const char *text);
/* The stage name for messages ("sending message body"...). */
const char *tx_stage_doing(const struct relay_conn *c);

#endif
