/*
 * greylist_redis.c - greylisting state in Redis, shared by several MX
 * hosts (keys "mailprocd:gl:...", see greylist_key.h).
 *
 * One hiredis async connection on the service's libevent loop, commands
 * pipelined.  A check is an MGET of the triplet and the client record;
 * the decision is greylist_decide's (the same as LMDB's).  When it
 * changed nothing (a retry before the delay) it answers at once: one
 * round trip.  Otherwise what changed goes back as SET ... EX (Redis
 * expires the records itself) and the answer waits for that to be
 * acknowledged, so that another host asked afterwards sees it: two round
 * trips.  Two hosts checking the same triplet at the same instant may
 * both count it; that is harmless.
 *
 * Never a stall: each request has its own 500 ms timer (hiredis 0.14 has
 * no async timeout); a late answer is ignored and the connection dropped.
 * While there is no connection, checks answer UNAVAILABLE at once and a
 * reconnect is tried with a growing delay (0.1 s to 5 s).  Trouble is
 * logged once a minute at most.
 */
#include "policy/greylist_store.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 1000
#define LOG_INTERVAL 60

struct gl_redis {
	char *host;
	int port;
	const struct greylist_params *params;
	struct event_base *base;
	redisAsyncContext *ac;          /* NULL: waiting to reconnect */
	int connected;
	struct event *reconnect;
	struct event *connect_timeout;
	long backoff_ms;
	time_t last_log;
	int down_logged;                /* said it was down; say when it is back */
};

struct greylist_req {
	struct gl_redis *r;
	greylist_done_fn done;
	void *arg;
	struct event *timer;
	int finished;                   /* answered or cancelled: the reply only frees */
	time_t now;
	struct buf tkey, ckey;
	struct greylist_answer answer;  /* decided, given once stored */
};

static struct timeval ms_tv(long ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	return tv;
}

/* Trouble, once a minute at most. */
static void MP_PRINTF(2, 3) log_down(struct gl_redis *r, const char *fmt, ...)
{
	time_t now = time(NULL);
	char msg[512];
	va_list ap;

	r->down_logged = 1;
	if (r->last_log != 0 && now - r->last_log < LOG_INTERVAL)
		return;
	r->last_log = now;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warn("greylist: redis %s:%d: %s; greylisting answers UNAVAILABLE meanwhile "
	    "(logged once a minute at most)", r->host, r->port, msg);
}

static void schedule_reconnect(struct gl_redis *r)
{
	struct timeval tv = ms_tv(r->backoff_ms);
	evtimer_del(r->connect_timeout);
	evtimer_add(r->reconnect, &tv);
	r->backoff_ms *= 2;
	if (r->backoff_ms > BACKOFF_MAX_MS)
		r->backoff_ms = BACKOFF_MAX_MS;
}

/* Forget the connection (pending replies come back NULL) and reconnect. */
static void drop(struct gl_redis *r)
{
	redisAsyncContext *ac = r->ac;
	r->ac = NULL;
	r->connected = 0;
	schedule_reconnect(r);
	if (ac != NULL)
		redisAsyncFree(ac);
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
	struct gl_redis *r = ac->data;
	if (r->ac != ac)
		return;
	if (status != REDIS_OK) {
		r->ac = NULL;           /* hiredis frees it */
		log_down(r, "cannot connect: %s", ac->errstr);
		schedule_reconnect(r);
		return;
	}
	r->connected = 1;
	r->backoff_ms = BACKOFF_MIN_MS;
	evtimer_del(r->connect_timeout);
	if (r->down_logged) {
		log_info("greylist: redis %s:%d: connected again", r->host, r->port);
		r->down_logged = 0;
	}
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct gl_redis *r = ac->data;
	if (r->ac != ac)                /* our own redisAsyncFree */
		return;
	r->ac = NULL;
	r->connected = 0;
	log_down(r, "connection lost: %s", ac->errstr[0] != '\0' ? ac->errstr : "closed");
	schedule_reconnect(r);
}

static void start_connect(struct gl_redis *r)
{
	struct timeval tv = ms_tv(CONNECT_TIMEOUT_MS);
	redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);

	if (ac == NULL || ac->err != 0) {
		log_down(r, "cannot connect: %s", ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		schedule_reconnect(r);
		return;
	}
	ac->data = r;
	if (redisLibeventAttach(ac, r->base) != REDIS_OK) {
		redisAsyncFree(ac);
		log_down(r, "cannot attach to the event loop");
		schedule_reconnect(r);
		return;
	}
	redisAsyncSetConnectCallback(ac, connect_cb);
	redisAsyncSetDisconnectCallback(ac, disconnect_cb);
	r->ac = ac;
	r->connected = 0;
	evtimer_add(r->connect_timeout, &tv);
}

static void reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
	start_connect(arg);
}

static void connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gl_redis *r = arg;
	if (r->ac == NULL || r->connected)
		return;
	log_down(r, "no connection within %d ms", CONNECT_TIMEOUT_MS);
	drop(r);
}

static int parse_port(const char *s)
{
	char *end;
	long v;
	errno = 0;
	v = strtol(s != NULL ? s : "", &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 65535)
		return 6379;
	return (int)v;
}

struct gl_redis *gl_redis_open(const char *host, const char *port,
    const struct greylist_params *params, struct event_base *base)
{
	struct gl_redis *r = xcalloc(1, sizeof(*r));
	r->host = xstrdup(host);
	r->port = parse_port(port);
	r->params = params;
	r->base = base;
	r->backoff_ms = BACKOFF_MIN_MS;
	r->reconnect = evtimer_new(base, reconnect_cb, r);
	r->connect_timeout = evtimer_new(base, connect_timeout_cb, r);
	start_connect(r);
	return r;
}

static void req_free(struct greylist_req *req)
{
	event_free(req->timer);
	buf_free(&req->tkey);
	buf_free(&req->ckey);
	free(req);
}

static void answer(struct greylist_req *req, const struct greylist_answer *a)
{
	req->finished = 1;
	evtimer_del(req->timer);
	req->done(req->arg, a);
}

static const struct greylist_answer unavailable = { .verdict = GREYLIST_UNAVAILABLE };

/* No answer in time: UNAVAILABLE, and a connection that lets answers wait
 * this long is not worth keeping. */
static void req_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct greylist_req *req = arg;
	struct gl_redis *r = req->r;

	if (req->finished)
		return;
	answer(req, &unavailable);
	/* req may be freed from here on (drop calls its reply back) */
	log_down(r, "no answer within %d ms", GREYLIST_REDIS_TIMEOUT_MS);
	if (r->ac != NULL)
		drop(r);
}

/* The reply to the last SET of a check: the records are in Redis, so a
 * host asked after this answer sees them. */
static void stored_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	struct greylist_req *req = privdata;
	redisReply *reply = reply_ptr;

	if (!req->finished) {
		if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
			if (reply != NULL)
				log_down(req->r, "SET: %s", reply->str);
			answer(req, &unavailable);
		} else {
			answer(req, &req->answer);
		}
	}
	req_free(req);
}

/* 0, or -1 when the command could not be queued. */
static int set_record(redisAsyncContext *ac, const struct buf *key, const struct buf *text,
    long ttl, struct greylist_req *last_for)
{
	return redisAsyncCommand(ac, last_for != NULL ? stored_cb : NULL, last_for,
	    "SET %b %b EX %ld", key->data, key->len, text->data, text->len, ttl) == REDIS_OK ?
	    0 : -1;
}

static void reply_cb(redisAsyncContext *ac, void *reply_ptr, void *privdata)
{
	struct greylist_req *req = privdata;
	struct gl_redis *r = req->r;
	redisReply *reply = reply_ptr;
	struct greylist_triplet t = { 0 };
	struct greylist_client c = { 0 };
	struct buf text = BUF_INIT;
	int write, rc = 0;

	if (req->finished) {
		req_free(req);
		return;
	}
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
		if (reply != NULL)
			log_down(r, "unexpected answer to MGET: %s", reply->type ==
			    REDIS_REPLY_ERROR ? reply->str : "not two values");
		answer(req, &unavailable);
		req_free(req);
		return;
	}
	if (reply->element[0]->type == REDIS_REPLY_STRING)
		greylist_triplet_decode(reply->element[0]->str, reply->element[0]->len, &t);
	if (reply->element[1]->type == REDIS_REPLY_STRING)
		greylist_client_decode(reply->element[1]->str, reply->element[1]->len, &c);
	write = greylist_decide(r->params, req->now, &c, &t, &req->answer);
	if (write == 0) {               /* nothing changed: answer now */
		answer(req, &req->answer);
		req_free(req);
		return;
	}
	/* Answer once the last SET is acknowledged (stored_cb), so that what
	 * this host answered is what the others see. */
	if (write & GREYLIST_WRITE_TRIPLET) {
		greylist_triplet_encode(&t, &text);
		rc = set_record(ac, &req->tkey, &text, greylist_triplet_ttl(r->params, req->now, &t),
		    (write & GREYLIST_WRITE_CLIENT) ? NULL : req);
	}
	if (rc == 0 && (write & GREYLIST_WRITE_CLIENT)) {
		buf_reset(&text);
		greylist_client_encode(&c, &text);
		rc = set_record(ac, &req->ckey, &text, greylist_client_ttl(r->params, req->now, &c),
		    req);
	}
	buf_free(&text);
	if (rc < 0) {
		answer(req, &unavailable);
		req_free(req);
	}
}

struct greylist_req *gl_redis_check(struct gl_redis *r, const struct buf *triplet_key,
    const struct buf *client_key, time_t now, greylist_done_fn done, void *arg)
{
	struct greylist_req *req;
	struct timeval tv = ms_tv(GREYLIST_REDIS_TIMEOUT_MS);

	if (r->ac == NULL) {            /* down: no waiting */
		done(arg, &unavailable);
		return NULL;
	}
	req = xcalloc(1, sizeof(*req));
	req->r = r;
	req->done = done;
	req->arg = arg;
	req->now = now;
	buf_append(&req->tkey, triplet_key->data, triplet_key->len);
	buf_append(&req->ckey, client_key->data, client_key->len);
	req->timer = evtimer_new(r->base, req_timeout_cb, req);
	if (redisAsyncCommand(r->ac, reply_cb, req, "MGET %b %b", req->tkey.data, req->tkey.len,
	    req->ckey.data, req->ckey.len) != REDIS_OK) {
		req_free(req);
		done(arg, &unavailable);
		return NULL;
	}
	evtimer_add(req->timer, &tv);
	return req;
}

void gl_redis_cancel(struct greylist_req *req)
{
	req->finished = 1;
	evtimer_del(req->timer);
}

void gl_redis_close(struct gl_redis *r)
{
	redisAsyncContext *ac = r->ac;
	r->ac = NULL;
	if (ac != NULL)
		redisAsyncFree(ac);     /* pending checks answer UNAVAILABLE */
	event_free(r->reconnect);
	event_free(r->connect_timeout);
	free(r->host);
	free(r);
}

int gl_redis_peek(const char *host, const char *port, const struct greylist_params *params,
    const struct buf *triplet_key, const struct buf *client_key, time_t now,
    struct greylist_answer *out, char *err, size_t errlen)
{
	struct timeval tv = ms_tv(GREYLIST_REDIS_TIMEOUT_MS);
	struct greylist_triplet t = { 0 };
	struct greylist_client c = { 0 };
	redisContext *ctx = redisConnectWithTimeout(host, parse_port(port), tv);
	redisReply *reply = NULL;
	int ret = -1;

	if (ctx == NULL || ctx->err != 0) {
		snprintf(err, errlen, "redis %s:%s: %s", host, port,
		    ctx != NULL ? ctx->errstr : "out of memory");
		goto out;
	}
	redisSetTimeout(ctx, tv);
	reply = redisCommand(ctx, "MGET %b %b", triplet_key->data, triplet_key->len,
	    client_key->data, client_key->len);
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
		snprintf(err, errlen, "redis %s:%s: %s", host, port,
		    reply == NULL ? ctx->errstr : reply->type == REDIS_REPLY_ERROR ? reply->str :
		    "unexpected answer to MGET");
		goto out;
	}
	if (reply->element[0]->type == REDIS_REPLY_STRING)
		greylist_triplet_decode(reply->element[0]->str, reply->element[0]->len, &t);
	if (reply->element[1]->type == REDIS_REPLY_STRING)
		greylist_client_decode(reply->element[1]->str, reply->element[1]->len, &c);
	greylist_decide(params, now, &c, &t, out);
	ret = 0;
out:
	if (reply != NULL)
		freeReplyObject(reply);
	if (ctx != NULL)
		redisFree(ctx);
	return ret;
}
