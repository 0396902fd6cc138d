/*
 * conn_smtp.c - the parts of the SMTP conversation around transactions:
 * the greeting, EHLO (HELO when EHLO gets a 5xx; LHLO to an LMTP server,
 * RFC 2033, with no fallback) and the capabilities it
 * announces (PIPELINING, 8BITMIME, SIZE), RSET after a failed
 * transaction, QUIT, and what a broken conversation means in each state.
 */
#include "relay/relay_private.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Our name in EHLO/HELO: the configured hostname when it is a plain
 * domain name (it goes into a command line). */
static const char *helo_name(const struct relay_conn *c)
{
	const char *h = c->r->cfg->hostname;

	if (h == NULL || h[0] == '\0' || strlen(h) > 255)
		return "localhost";
	for (const char *p = h; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
			return "localhost";
	return h;
}

void smtp_start(struct relay_conn *c)
{
	smtp_client_reply_init(&c->reply);
	c->state = CONN_GREETING;
	conn_arm(c, RELAY_REPLY_TIMEOUT);
}

static void ehlo_keyword(struct relay_conn *c, const char *t)
{
	size_t n = strcspn(t, " ");

	if (n == 10 && strncasecmp(t, "PIPELINING", n) == 0) {
		c->pipelining = 1;
	} else if (n == 8 && strncasecmp(t, "8BITMIME", n) == 0) {
		c->eightbitmime = 1;
	} else if (n == 4 && strncasecmp(t, "SIZE", n) == 0) {
		const char *v = t + n + strspn(t + n, " ");
		char *end;
		c->size_offered = 1;
		c->size_max = 0;
		if (*v >= '0' && *v <= '9') {
			errno = 0;
			unsigned long long m = strtoull(v, &end, 10);
			if (errno == 0 && (*end == '\0' || *end == ' '))
				c->size_max = m;
		}
	}
}

void smtp_on_line(struct relay_conn *c)
{
	if (c->state == CONN_EHLO && c->reply.code == 250 && c->reply.nlines >= 2)
		ehlo_keyword(c, c->reply.line_text);
}

static void send_helo(struct relay_conn *c, const char *verb)
{
	c->esmtp = c->pipelining = c->eightbitmime = c->size_offered = 0;
	c->size_max = 0;
	conn_cmd(c, "%s %s", verb, helo_name(c));
	c->state = verb[0] == 'H' ? CONN_HELO : CONN_EHLO;
	conn_arm(c, RELAY_REPLY_TIMEOUT);
}

static void setup_refused(struct relay_conn *c, const char *what)
{
	char dsn[12], text[RELAY_TEXT_BUF];

	conn_reply_status(c, 0, dsn, sizeof(dsn));
	if (what == NULL)
		snprintf(text, sizeof(text), "host %s refused to talk to me: %s", c->peer,
		    c->reply.text);
	else
		conn_said(c, what, text, sizeof(text));
	conn_setup_failed(c, dsn, "%s", text);
}

void smtp_on_reply(struct relay_conn *c)
{
	int cls = c->reply.code / 100;

	switch (c->state) {
	case CONN_GREETING:
		if (cls == 2)
			send_helo(c, c->lmtp ? "LHLO" : "EHLO");
		else
			setup_refused(c, NULL);
		break;
	case CONN_EHLO:
		if (cls == 2) {
			smtp_on_line(c);
			c->esmtp = 1;
			conn_ready(c);
		} else if (cls == 5 && !c->lmtp) {
			send_helo(c, "HELO");
		} else {
			setup_refused(c, c->lmtp ? "LHLO command" : "EHLO command");
		}
		break;
	case CONN_HELO:
		if (cls == 2)
			conn_ready(c);
		else
			setup_refused(c, "HELO command");
		break;
	case CONN_TX:
		tx_on_reply(c);
		break;
	case CONN_RSET:
		if (cls == 2)
			conn_ready(c);
		else
			smtp_quit(c);
		break;
	case CONN_IDLE:
		log_debug("relay: connection %u: %s says: %s", c->id, c->peer, c->reply.text);
		conn_close(c);
		break;
	case CONN_QUIT:
	default:
		conn_close(c);
		break;
	}
}

static const char *setup_doing(const struct relay_conn *c)
{
	switch (c->state) {
	case CONN_GREETING:
		return "receiving the initial server greeting";
	case CONN_EHLO:
		return c->lmtp ? "performing the LHLO handshake" : "performing the EHLO handshake";
	case CONN_HELO:
		return "performing the HELO handshake";
	default:
		return "setting up the connection";
	}
}

void smtp_on_failure(struct relay_conn *c, enum conn_failure kind, const char *detail)
{
	char text[RELAY_TEXT_BUF];
	const char *doing;

	switch (c->state) {
	case CONN_GREETING:
	case CONN_EHLO:
	case CONN_HELO:
		doing = setup_doing(c);
		break;
	case CONN_TX:
		doing = tx_stage_doing(c);
		break;
	default:
		/* idle, RSET, QUIT: no job depends on it */
		log_debug("relay: connection %u to %s: %s%s%s", c->id, c->peer,
		    kind == FAIL_TIMEOUT ? "timeout" : kind == FAIL_LOST ? "lost" : "malformed reply",
		    detail ? ": " : "", detail ? detail : "");
		conn_close(c);
		return;
	}
	if (kind == FAIL_LOST)
		snprintf(text, sizeof(text), "lost connection with %s while %s%s%s", c->peer,
		    doing, detail ? ": " : "", detail ? detail : "");
	else if (kind == FAIL_TIMEOUT)
		snprintf(text, sizeof(text), "conversation with %s timed out while %s",
		    c->peer, doing);
	else
		snprintf(text, sizeof(text), "malformed reply from %s while %s: %s", c->peer,
		    doing, detail ? detail : "?");
	const char *dsn = kind == FAIL_PROTOCOL ? "4.5.0" : "4.4.2";
	if (c->state == CONN_TX)
		tx_abort(c, dsn, text);
	else
		conn_setup_failed(c, dsn, "%s", text);
}

void smtp_rset(struct relay_conn *c)
{
	conn_cmd(c, "RSET");
	c->state = CONN_RSET;
	conn_arm(c, RELAY_REPLY_TIMEOUT);
}

void smtp_quit(struct relay_conn *c)
{
	if (c->bev == NULL) {
		conn_close(c);
		return;
	}
	conn_cmd(c, "QUIT");
	c->state = CONN_QUIT;
	conn_arm(c, RELAY_QUIT_TIMEOUT);
}
