/*
 * dsn.h - delivery status notifications (RFC 3464 inside an RFC 3462
 * multipart/report): the bounce or delay warning sent back to the envelope
 * sender of a message.
 *
 * The notification has three parts: a text/plain explanation, the
 * message/delivery-status report, and the original's header section as
 * text/rfc822-headers (left out when there is none).  Every value that came
 * from outside (addresses, diagnostics, host, queue id) is written as
 * printable ASCII on lines of its own making: control characters (CR, LF
 * included) and non-ASCII bytes are replaced, long values are cut and
 * folded.  The original's headers are copied as they are (NUL and CR
 * removed); if they hold 8-bit bytes, the message is declared 8bit.
 */
#ifndef MP_DSN_H
#define MP_DSN_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

enum dsn_action { DSN_FAILED, DSN_DELAYED };

struct dsn_rcpt {
	const char *address;    /* the recipient as given in RCPT TO */
	enum dsn_action action;
	const char *status;     /* enhanced status code, e.g. "5.1.1" */
	const char *diagnostic; /* our text, or NULL */
};

struct dsn_report {
	const char *reporting_host;     /* our hostname */
	const char *qid;                /* the original's queue id, or NULL */
	int64_t arrival;                /* unix time the original arrived */
	const char *orig_sender;        /* its envelope sender: the DSN goes there */
	const struct dsn_rcpt *rcpts;
	size_t nrcpts;
	const char *orig_headers;       /* its header section (LF line ends), or NULL */
	size_t orig_headers_len;
	int64_t now;
	int64_t retry_until;            /* delayed recipients: when the retries end (0: not said) */
};

/* Append the whole DSN message (headers From: MAILER-DAEMON@host, To:
 * <sender>, Date, Message-ID, Subject, Auto-Submitted: auto-replied, MIME)
 * to out, LF line ends.  The subject says "Undelivered Mail Returned to
 * Sender" when any recipient failed, "Delayed Mail (still being retried)"
 * otherwise (a delay warning); a delayed recipient's report has
 * Will-Retry-Until when retry_until is set.  Returns 0, or -1 (out untouched) for a report that must not
 * be sent: no recipients, a null or empty orig_sender (never bounce a
 * bounce), no usable host, a recipient without an address, with an unknown
 * action or with a status that is not class.subject.detail (class 2, 4 or
 * 5, at most three digits each), or when no MIME boundary could be found
 * that is absent from the outside text (not with working randomness). */
int dsn_compose(const struct dsn_report *r, struct buf *out);

/* Length of the header section at the start of a message: up to and
 * including the blank line that ends it, or the whole message if there is
 * none.  At most max; a section cut by max ends after its last whole line
 * (when there is one). */
size_t dsn_header_section_len(const char *msg, size_t len, size_t max);

#endif
