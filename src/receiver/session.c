/*
 * session.c - one SMTP or LMTP connection on the receiver's event loop.
 *
 * Input is processed in order, all of it, each time bytes arrive: every
 * complete command line goes through the command table, and after a
 * successful DATA the bytes go to the message stream until the end of
 * data, after which commands resume.  Replies are queued on the
 * bufferevent and go out when the loop regains control, so pipelined
 * commands (RFC 2920) need no special case.  Memory stays bounded: lines
 * are assembled in a fixed buffer, message data is streamed to the queue,
 * and a client that sends commands without reading the replies is no
 * longer read from once SESSION_OUTPUT_HIGH bytes of replies wait.
 * While a message is being committed, input waits: session_resume() picks
 * it up, together with an end of input that arrived meanwhile.  Sessions
 * open and started, and every refusal (session_refuse), are counted in the
 * receiver's figures (receiver_figures.h).
 */
#include "receiver/receiver_private.h"
#include "proto/smtp_reply.h"
#include "lib/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

static size_t output_pending(const struct session *s)
{
	return evbuffer_get_length(bufferevent_get_output(s->bev));
}

static void reply_line(struct session *s, int code, int more, const char *enh,
    const char *fmt, va_list ap)
{
	char text[SMTP_REPLY_MAX], line[SMTP_REPLY_MAX];

	vsnprintf(text, sizeof(text), fmt, ap);
	size_t n = smtp_reply_line(line, code, more, enh, text);
	if (bufferevent_write(s->bev, line, n) < 0)
		log_warn("%s: cannot queue reply", s->client);
}

void session_reply(struct session *s, int code, const char *enh, const char *fmt, ...)
{
	va_list ap;

	/* a refusal goes through session_refuse, which counts it; one that
	 * does not is a bug to log, not a reason to drop every session */
	if (code >= 400)
		log_warn("%s: BUG: reply %d sent uncounted (use session_refuse)", s->client, code);
	va_start(ap, fmt);
	reply_line(s, code, 0, enh, fmt, ap);
	va_end(ap);
}

void session_refuse(struct session *s, enum fig_rejection reason, int code,
    const char *fmt, ...)
{
	va_list ap;

	if ((unsigned)reason >= FR_COUNT) {
		log_warn("%s: BUG: refusal %d with an unknown reason %d", s->client, code,
		    (int)reason);
		va_start(ap, fmt);
		reply_line(s, code, 0, NULL, fmt, ap);
		va_end(ap);
		return;
	}
	metrics_inc(&metrics_receiver->rejections[reason], 1);
	va_start(ap, fmt);
	reply_line(s, code, 0, fig_rejection_code[reason], fmt, ap);
	va_end(ap);
}

void session_reply_more(struct session *s, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	reply_line(s, code, 1, NULL, fmt, ap);
	va_end(ap);
}

void session_reset_transaction(struct session *s)
{
	struct transaction *tx = &s->tx;
	for (size_t i = 0; i < tx->nrcpts; i++)
		free(tx->rcpts[i]);
	free(tx->rcpts);
	free(tx->maxsize);
	memset(tx, 0, sizeof(*tx));
}

int session_busy(const struct session *s)
{
	return s->tx.active || s->data.active;
}

void session_close(struct session *s)
{
	s->closing = 1;
	bufferevent_disable(s->bev, EV_READ);
}

static void session_free(struct session *s)
{
	struct receiver *r = s->r;

	data_abort(s);
	session_reset_transaction(s);
	log_debug("session end client=%s messages=%lu", s->client, s->nmessages);
	bufferevent_free(s->bev);
	TAILQ_REMOVE(&r->sessions, s, entry);
	r->nsessions--;
	metrics_gauge_add(&metrics_receiver->sessions[s->proto], -1);
	if (s->counted)
		client_count_remove(r->clients, &s->client_key);
	free(s);
	receiver_session_gone(r);
}

/* Called last in every callback: free the session once it is closing and
 * everything it had to say went out. */
static void session_check_done(struct session *s)
{
	if (s->closing && output_pending(s) == 0)
		session_free(s);
}

/* Bytes in command mode: assemble a line, run it. */
static size_t command_input(struct session *s, const char *p, size_t n)
{
	size_t used;

	switch (smtp_line_feed(&s->line, p, n, &used)) {
	case SMTP_LINE_READY:
		command_execute(s, s->line.buf, s->line.len);
		break;
	case SMTP_LINE_TOO_LONG:
		session_refuse(s, FR_LINE_TOO_LONG, 500, "Error: line too long");
		break;
	case SMTP_LINE_MORE:
		break;
	}
	return used;
}

static void pause_reading(struct session *s)
{
	s->paused = 1;
	bufferevent_disable(s->bev, EV_READ);
}

static void say_shutting_down(struct session *s)
{
	session_refuse(s, FR_SHUTTING_DOWN, 421, "Service shutting down");
	session_close(s);
}

/* Everything the client has sent so far, in order. */
static void session_process(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);

	while (!s->closing && !data_committing(s)) {
		if (output_pending(s) > SESSION_OUTPUT_HIGH) {
			pause_reading(s);
			return;
		}
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			break;
		size_t used = s->data.active ?
		    data_consume(s, v.iov_base, v.iov_len) :
		    command_input(s, v.iov_base, v.iov_len);
		if (evbuffer_drain(in, used) < 0)
			panic("evbuffer_drain failed");
	}
	if (s->r->stopping && !s->closing && !session_busy(s))
		say_shutting_down(s);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	session_process(s);
	session_check_done(s);
}

/* The output buffer is empty: resume reading if it was paused, or finish
 * closing. */
static void on_write(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	if (s->paused && !s->closing) {
		s->paused = 0;
		bufferevent_enable(s->bev, EV_READ);
		session_process(s);
	}
	session_check_done(s);
}

/* The client closed its side: whatever is still buffered gets processed,
 * an unfinished transaction is dropped, replies are still sent. */
static void session_input_ended(struct session *s)
{
	session_process(s);
	if (session_busy(s))
		log_debug("%s: connection closed in a transaction", s->client);
	data_abort(s);
	session_reset_transaction(s);
	session_close(s);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	if (what & BEV_EVENT_ERROR) {
		log_debug("%s: connection error: %s", s->client,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		session_free(s);
		return;
	}
	if (data_committing(s)) {
		/* the reply to the message comes first */
		if (what & BEV_EVENT_EOF)
			s->input_ended = 1;
		else if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING))
			bufferevent_enable(s->bev, EV_READ);
		else if (what & BEV_EVENT_TIMEOUT)
			session_free(s);        /* replies are not being read */
		return;
	}
	if (what & BEV_EVENT_EOF) {
		session_input_ended(s);
	} else if (what & BEV_EVENT_TIMEOUT) {
		if ((what & BEV_EVENT_WRITING) || s->closing) {
			log_debug("%s: timeout sending replies", s->client);
			session_free(s);
			return;
		}
		log_info("%s: idle timeout%s", s->client,
		    session_busy(s) ? " in a transaction" : "");
		data_abort(s);
		session_reset_transaction(s);
		session_refuse(s, FR_TIMEOUT, 421, "Timeout");
		session_close(s);
	}
	session_check_done(s);
}

void session_resume(struct session *s)
{
	session_process(s);
	if (s->input_ended && !data_committing(s) && !s->closing)
		session_input_ended(s);
	session_check_done(s);
}

void session_stop(struct session *s)
{
	if (s->closing || session_busy(s))
		return;
	say_shutting_down(s);
	session_check_done(s);
}

void session_kill(struct session *s)
{
	if (session_busy(s))
		log_warn("%s: transaction still running at the end of the stop grace "
		    "period; dropped", s->client);
	session_free(s);
}

void session_format_client(const struct sockaddr *sa, socklen_t salen, char *out,
    size_t outlen)
{
	char addr[INET6_ADDRSTRLEN];

	snprintf(out, outlen, "unix");
	if (sa->sa_family == AF_INET && salen >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		if (inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr)))
			snprintf(out, outlen, "[%s]", addr);
	} else if (sa->sa_family == AF_INET6 &&
	    salen >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			if (inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], addr, sizeof(addr)))
				snprintf(out, outlen, "[%s]", addr);
		} else if (inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof(addr))) {
			snprintf(out, outlen, "[IPv6:%s]", addr);
		}
	}
}

void session_start(struct receiver *r, const struct listen_spec *spec, int fd,
    const struct sockaddr *sa, socklen_t salen)
{
	struct session *s = xcalloc(1, sizeof(*s));

	s->r = r;
	s->lmtp = spec->proto == LISTEN_LMTP;
	s->proto = s->lmtp ? FP_LMTP : FP_SMTP;
	if (spec->is_unix)
		snprintf(s->client, sizeof(s->client), "unix");
	else
		session_format_client(sa, salen, s->client, sizeof(s->client));
	smtp_line_init(&s->line);

	s->bev = bufferevent_socket_new(r->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		log_warn("%s: cannot set up the connection", s->client);
		close(fd);
		free(s);
		return;
	}
	TAILQ_INSERT_TAIL(&r->sessions, s, entry);
	r->nsessions++;
	metrics_gauge_add(&metrics_receiver->sessions[s->proto], 1);
	metrics_inc(&metrics_receiver->sessions_total[s->proto], 1);
	if (!spec->is_unix && client_key_from(sa, salen, &s->client_key) == 0) {
		client_count_add(r->clients, &s->client_key);
		s->counted = 1;
	}
	log_debug("session start client=%s proto=%s", s->client, s->lmtp ? "LMTP" : "SMTP");

	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SESSION_INPUT_HIGH);
	if (r->cfg->session_timeout > 0) {
		struct timeval tv = { .tv_sec = (time_t)r->cfg->session_timeout };
		bufferevent_set_timeouts(s->bev, &tv, &tv);
	}
	session_reply(s, 220, NULL, "%s %s mailprocd", r->hostname,
	    s->lmtp ? "LMTP" : "ESMTP");
	if (bufferevent_enable(s->bev, EV_READ | EV_WRITE) < 0) {
		log_warn("%s: cannot enable the connection", s->client);
		session_free(s);
	}
}
