/*
 * smtp_client_reply.c - assembling and checking the replies an SMTP server
 * sends the relay: bounded lines, consistent codes over multi-line
 * replies, enhanced status codes, a printable text for reports.
 */
#include "relay/smtp_client_reply.h"

#include <stdio.h>
#include <string.h>

void smtp_client_reply_init(struct smtp_client_reply *r)
{
	memset(r, 0, sizeof(*r));
	r->line_text = "";
}

static void start_reply(struct smtp_client_reply *r)
{
	r->code = 0;
	r->enh[0] = '\0';
	r->text[0] = '\0';
	r->text_len = 0;
	r->nlines = 0;
	r->line_text = "";
	r->line_len = 0;
	r->done = 0;
}

static enum smtp_client_status fail(struct smtp_client_reply *r, const char *why)
{
	r->bad = 1;
	r->error = why;
	return SMTP_CLIENT_BAD;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* "c.ddd.ddd" followed by a space or the end: copy it to r->enh. */
static void parse_enh(struct smtp_client_reply *r, const char *t)
{
	size_t i = 0;

	if (t[0] != '2' && t[0] != '4' && t[0] != '5')
		return;
	i = 1;
	for (int part = 0; part < 2; part++) {
		size_t digits = 0;
		if (t[i] != '.')
			return;
		i++;
		while (is_digit(t[i]) && digits < 4) {
			i++;
			digits++;
		}
		if (digits == 0 || digits > 3)
			return;
	}
	if (t[i] != ' ' && t[i] != '\0')
		return;
	memcpy(r->enh, t, i);
	r->enh[i] = '\0';
}

static void append_text(struct smtp_client_reply *r, const char *p, size_t n)
{
	size_t room = sizeof(r->text) - 1 - r->text_len;

	if (r->text_len > 0 && room > 0) {
		r->text[r->text_len++] = ' ';
		room--;
	}
	if (n > room)
		n = room;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		r->text[r->text_len++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	r->text[r->text_len] = '\0';
}

/* One complete line in r->line[0..line_len), line end removed. */
static enum smtp_client_status parse_line(struct smtp_client_reply *r)
{
	const char *l = r->line;
	size_t len = r->line_len;
	int last;

	if (len > SMTP_CLIENT_LINE_MAX)
		return fail(r, "reply line too long");
	if (++r->nlines > SMTP_CLIENT_LINES_MAX)
		return fail(r, "reply has too many lines");
	if (len < 3 || !is_digit(l[0]) || !is_digit(l[1]) || !is_digit(l[2]) ||
	    l[0] < '2' || l[0] > '5')
		return fail(r, "malformed reply code");
	if (len == 3)
		last = 1;
	else if (l[3] == ' ')
		last = 1;
	else if (l[3] == '-')
		last = 0;
	else
		return fail(r, "malformed reply line");
	int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	r->line[len] = '\0';
	r->line_text = len > 4 ? l + 4 : "";
	if (r->nlines == 1) {
		r->code = code;
		parse_enh(r, r->line_text);
	} else if (code != r->code) {
		return fail(r, "reply code changes within a multi-line reply");
	}
	append_text(r, l, len);
	if (!last)
		return SMTP_CLIENT_LINE;
	r->done = 1;
	return SMTP_CLIENT_DONE;
}

enum smtp_client_status smtp_client_reply_feed(struct smtp_client_reply *r,
    const char *p, size_t n, size_t *used)
{
	*used = 0;
	if (r->bad)
		return SMTP_CLIENT_BAD;
	if (r->done)
		start_reply(r);
	r->line_text = "";
	const char *lf = memchr(p, '\n', n);
	size_t take = lf ? (size_t)(lf - p) : n;
	/* room for SMTP_CLIENT_LINE_MAX bytes and a CR */
	if (take > SMTP_CLIENT_LINE_MAX + 1 - r->line_len) {
		*used = n;
		return fail(r, "reply line too long");
	}
	memcpy(r->line + r->line_len, p, take);
	r->line_len += take;
	if (lf == NULL) {
		*used = n;
		return SMTP_CLIENT_MORE;
	}
	*used = take + 1;
	if (r->line_len > 0 && r->line[r->line_len - 1] == '\r')
		r->line_len--;
	enum smtp_client_status st = parse_line(r);
	r->line_len = 0;
	return st;
}

void smtp_client_reply_dsn(const struct smtp_client_reply *r, char *out, size_t outlen)
{
	int cls = r->code / 100;

	if (r->enh[0] != '\0' && r->enh[0] - '0' == cls) {
		snprintf(out, outlen, "%s", r->enh);
		return;
	}
	snprintf(out, outlen, "%d.0.0", cls == 2 ? 2 : cls == 4 ? 4 : 5);
}
