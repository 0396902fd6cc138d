/*
 * dsn.c - composing a delivery status notification (RFC 3464 report in an
 * RFC 3462 multipart/report).  See dsn.h.
 *
 * Everything is checked before anything is written, so a refused report
 * leaves the output as it was.  Values from outside go through dsn_clean
 * (one printable ASCII line, bounded) and are folded; the boundary is
 * random and checked against everything that came from outside.
 */
#include "dsn/dsn.h"
#include "dsn/dsn_private.h"
#include "lib/xalloc.h"
#include "proto/smtp_received.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DSN_BOUNDARY_TRIES 8
#define DSN_RANDOM_BYTES 12
#define DSN_MSGID_RANDOM_BYTES 8

/* The cleaned values, made once. */
struct dsn_ctx {
	const struct dsn_report *r;
	char *host, *qid, *sender;
	char **addr, **diag;    /* per recipient */
	char boundary[64];
	int any_failed, any_delayed, eightbit;
};

static int report_valid(const struct dsn_report *r)
{
	if (r == NULL || r->rcpts == NULL || r->nrcpts == 0 || r->orig_sender == NULL ||
	    r->orig_sender[0] == '\0' || r->reporting_host == NULL ||
	    (r->orig_headers == NULL && r->orig_headers_len > 0))
		return 0;
	for (size_t i = 0; i < r->nrcpts; i++) {
		const struct dsn_rcpt *rc = &r->rcpts[i];
		if (rc->address == NULL || rc->address[0] == '\0' ||
		    (rc->action != DSN_FAILED && rc->action != DSN_DELAYED) ||
		    !dsn_status_valid(rc->status))
			return 0;
	}
	return 1;
}

static int outside_text_has(const struct dsn_ctx *c, const char *s)
{
	const struct dsn_report *r = c->r;

	if (r->orig_headers_len > 0 && memmem(r->orig_headers, r->orig_headers_len, s, strlen(s)))
		return 1;
	if (strstr(c->sender, s) != NULL)
		return 1;
	for (size_t i = 0; i < r->nrcpts; i++)
		if (strstr(c->addr[i], s) != NULL || strstr(c->diag[i], s) != NULL)
			return 1;
	return 0;
}

/* A random boundary found nowhere in what came from outside.  -1 only if
 * every try collides, which takes predictable randomness. */
static int make_boundary(struct dsn_ctx *c)
{
	char hex[2 * DSN_RANDOM_BYTES + 1];

	for (int i = 0; i < DSN_BOUNDARY_TRIES; i++) {
		dsn_random_hex(hex, DSN_RANDOM_BYTES);
		snprintf(c->boundary, sizeof(c->boundary), "=_mailprocd_%s", hex);
		if (!outside_text_has(c, c->boundary))
			return 0;
	}
	return -1;
}

static void ctx_free(struct dsn_ctx *c)
{
	for (size_t i = 0; i < c->r->nrcpts; i++) {
		free(c->addr[i]);
		free(c->diag[i]);
	}
	free(c->addr);
	free(c->diag);
	free(c->host);
	free(c->qid);
	free(c->sender);
}

static int ctx_init(struct dsn_ctx *c, const struct dsn_report *r)
{
	memset(c, 0, sizeof(*c));
	c->r = r;
	/* a name, or an address literal such as [192.0.2.1] or [IPv6:2001:db8::1] */
	c->host = dsn_filter(r->reporting_host, r->reporting_host[0] == '[' ? ".-[]:" : ".-",
	    DSN_HOST_MAX);
	if (c->host[0] == '\0') {
		free(c->host);
		return -1;
	}
	c->qid = dsn_filter(r->qid, "", DSN_QID_MAX);
	c->sender = dsn_clean(r->orig_sender, DSN_ADDRESS_MAX, 1);
	c->addr = xcalloc(r->nrcpts, sizeof(char *));
	c->diag = xcalloc(r->nrcpts, sizeof(char *));
	for (size_t i = 0; i < r->nrcpts; i++) {
		c->addr[i] = dsn_clean(r->rcpts[i].address, DSN_ADDRESS_MAX, 1);
		c->diag[i] = dsn_clean(r->rcpts[i].diagnostic, DSN_TEXT_MAX, 0);
		if (r->rcpts[i].action == DSN_FAILED)
			c->any_failed = 1;
		else
			c->any_delayed = 1;
	}
	for (size_t i = 0; i < r->orig_headers_len; i++)
		if ((unsigned char)r->orig_headers[i] >= 0x80)
			c->eightbit = 1;
	if (make_boundary(c) < 0) {
		ctx_free(c);
		return -1;
	}
	return 0;
}

static void put_date(struct buf *b, const char *name, int64_t t)
{
	char date[40];
	rfc5322_date(date, (time_t)t);
	buf_printf(b, "%s: %s\n", name, date);
}

static void put_headers(struct dsn_ctx *c, struct buf *b)
{
	const struct dsn_report *r = c->r;
	char hex[2 * DSN_RANDOM_BYTES + 1], stamp[32];
	time_t now = (time_t)r->now;
	struct tm tm;

	buf_printf(b, "From: Mail Delivery System <MAILER-DAEMON@%s>\n", c->host);
	char *to = dsn_angle_addr(c->sender);
	dsn_put_wrapped(b, "To: ", to, " ");
	free(to);
	buf_printf(b, "Subject: %s\n", c->any_failed ? "Undelivered Mail Returned to Sender" :
	    "Delayed Mail (still being retried)");
	put_date(b, "Date", r->now);
	if (gmtime_r(&now, &tm) == NULL || strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm) == 0)
		snprintf(stamp, sizeof(stamp), "%lld", (long long)r->now);
	dsn_random_hex(hex, DSN_MSGID_RANDOM_BYTES);
	buf_printf(b, "Message-ID: <%s.%s%s%s@%s>\n", stamp, c->qid, c->qid[0] ? "." : "", hex,
	    c->host);
	buf_puts(b, "Auto-Submitted: auto-replied\n");
	buf_puts(b, "MIME-Version: 1.0\n");
	buf_printf(b, "Content-Type: multipart/report; report-type=delivery-status;\n"
	    "\tboundary=\"%s\"\n", c->boundary);
	buf_printf(b, "Content-Transfer-Encoding: %s\n", c->eightbit ? "8bit" : "7bit");
	buf_puts(b, "\nThis is a MIME-encapsulated message.\n\n");
}

static void put_rcpt_list(struct dsn_ctx *c, struct buf *b, enum dsn_action which)
{
	for (size_t i = 0; i < c->r->nrcpts; i++) {
		if (c->r->rcpts[i].action != which)
			continue;
		char *first = xasprintf("<%s>: ", c->addr[i]);
		char *why = xasprintf("%s%s%s", c->r->rcpts[i].status, c->diag[i][0] ? " " : "",
		    c->diag[i]);
		dsn_put_wrapped(b, first, why, "    ");
		buf_putc(b, '\n');
		free(first);
		free(why);
	}
}

static void put_explanation(struct dsn_ctx *c, struct buf *b)
{
	buf_printf(b, "--%s\n", c->boundary);
	buf_puts(b, "Content-Description: Notification\n"
	    "Content-Type: text/plain; charset=us-ascii\n\n");
	buf_printf(b, "This is the mail system at host %s.\n\n", c->host);
	if (c->any_failed) {
		buf_puts(b, "I'm sorry to have to inform you that your message could not\n"
		    "be delivered to one or more recipients.  The reasons are below.\n\n");
		put_rcpt_list(c, b, DSN_FAILED);
	}
	if (c->any_delayed) {
		buf_puts(b, "Your message could not be delivered yet to the recipients\n"
		    "below.  The mail system will keep trying; you do not need to send\n"
		    "it again.\n\n");
		put_rcpt_list(c, b, DSN_DELAYED);
		if (c->r->retry_until > 0) {
			char date[40];
			rfc5322_date(date, (time_t)c->r->retry_until);
			buf_printf(b, "It will be retried until %s.\n\n", date);
		}
	}
	if (c->qid[0])
		buf_printf(b, "The message had the queue id %s here.\n", c->qid);
	buf_puts(b, "A delivery report and the headers of your message follow.\n\n");
}

static void put_report(struct dsn_ctx *c, struct buf *b)
{
	const struct dsn_report *r = c->r;

	buf_printf(b, "--%s\n", c->boundary);
	buf_puts(b, "Content-Description: Delivery report\n"
	    "Content-Type: message/delivery-status\n\n");
	buf_printf(b, "Reporting-MTA: dns; %s\n", c->host);
	if (c->qid[0])
		buf_printf(b, "X-Mailprocd-Queue-ID: %s\n", c->qid);
	put_date(b, "Arrival-Date", r->arrival);
	for (size_t i = 0; i < r->nrcpts; i++) {
		buf_putc(b, '\n');
		dsn_put_wrapped(b, "Final-Recipient: rfc822; ", c->addr[i], " ");
		buf_printf(b, "Action: %s\n", r->rcpts[i].action == DSN_FAILED ? "failed" : "delayed");
		buf_printf(b, "Status: %s\n", r->rcpts[i].status);
		if (c->diag[i][0])
			dsn_put_wrapped(b, "Diagnostic-Code: x-mailprocd; ", c->diag[i], " ");
		if (r->rcpts[i].action == DSN_DELAYED && r->retry_until > 0)
			put_date(b, "Will-Retry-Until", r->retry_until);
	}
	buf_putc(b, '\n');
}

/* The original's headers without the blank line that ends them, NUL and
 * CR dropped, ending with LF. */
static void put_orig_headers(struct dsn_ctx *c, struct buf *b)
{
	const char *h = c->r->orig_headers;
	size_t len = c->r->orig_headers_len;

	while (len > 0 && (h[len - 1] == '\n' || h[len - 1] == '\r'))
		len--;
	buf_printf(b, "--%s\n", c->boundary);
	buf_puts(b, "Content-Description: Undelivered Message Headers\n"
	    "Content-Type: text/rfc822-headers\n");
	if (c->eightbit)
		buf_puts(b, "Content-Transfer-Encoding: 8bit\n");
	buf_putc(b, '\n');
	for (size_t i = 0; i < len; i++)
		if (h[i] != '\0' && h[i] != '\r')
			buf_putc(b, h[i]);
	buf_puts(b, "\n\n");
}

int dsn_compose(const struct dsn_report *r, struct buf *out)
{
	struct dsn_ctx c;

	if (out == NULL || !report_valid(r) || ctx_init(&c, r) < 0)
		return -1;
	put_headers(&c, out);
	put_explanation(&c, out);
	put_report(&c, out);
	if (r->orig_headers_len > 0)
		put_orig_headers(&c, out);
	buf_printf(out, "--%s--\n", c.boundary);
	ctx_free(&c);
	return 0;
}

size_t dsn_header_section_len(const char *msg, size_t len, size_t max)
{
	size_t lim = len < max ? len : max;

	if (msg == NULL)
		return 0;
	if (lim > 0 && msg[0] == '\n')
		return 1;
	for (size_t i = 1; i < lim; i++)
		if (msg[i] == '\n' && msg[i - 1] == '\n')
			return i + 1;
	if (lim == len)
		return len;
	/* cut by max: end after the last whole line */
	for (size_t i = lim; i > 0; i--)
		if (msg[i - 1] == '\n')
			return i;
	return lim;
}
