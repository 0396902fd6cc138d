/*
 * smtp_received.h - the Received: trace header (RFC 5321 4.4) that the
 * receiver puts before each message, and the RFC 5322 date it ends with.
 * Lines end with LF (the queue stores LF).
 */
#ifndef MP_SMTP_RECEIVED_H
#define MP_SMTP_RECEIVED_H

#include <time.h>

#include "lib/buf.h"

struct smtp_received {
	const char *helo;       /* what the client said in HELO/EHLO/LHLO */
	const char *client;     /* "[192.0.2.1]", "[IPv6:2001:db8::1]", "unix" */
	const char *hostname;   /* ours */
	const char *protocol;   /* "SMTP", "ESMTP", "LMTP" */
	const char *qid;
	const char *rcpt;       /* the one recipient, or NULL when several */
	time_t when;
};

/* Append the header:
 *   Received: from HELO (CLIENT)\n
 *   \tby HOSTNAME (mailprocd) with PROTOCOL id QID\n
 *   \tfor <RCPT>; DATE\n
 * Without a single recipient the second line ends with ";" and the third
 * is "\tDATE\n". */
void smtp_received_format(struct buf *b, const struct smtp_received *r);

/* "Mon, 2 Jan 2006 15:04:05 +0100" in local time, independent of the
 * locale. */
void rfc5322_date(char out[40], time_t t);

#endif
