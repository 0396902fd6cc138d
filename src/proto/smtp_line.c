/*
 * smtp_line.c - bounded command line assembly (see smtp_line.h).
 */
#include "proto/smtp_line.h"

#include <string.h>

void smtp_line_init(struct smtp_line *l)
{
	l->len = 0;
	l->discarding = 0;
	l->ready = 0;
	l->buf[0] = '\0';
}

static enum smtp_line_status skip_rest(struct smtp_line *l, const char *p,
    size_t n, size_t *used)
{
	const char *lf = memchr(p, '\n', n);
	if (lf == NULL) {
		*used = n;
		return SMTP_LINE_MORE;
	}
	*used = (size_t)(lf - p) + 1;
	l->discarding = 0;
	return SMTP_LINE_MORE;
}

enum smtp_line_status smtp_line_feed(struct smtp_line *l, const char *p,
    size_t n, size_t *used)
{
	const size_t room = sizeof(l->buf) - 1;        /* SMTP_LINE_MAX + CR */

	if (l->discarding)
		return skip_rest(l, p, n, used);
	if (l->ready) {
		l->ready = 0;
		l->len = 0;
	}

	const char *lf = memchr(p, '\n', n);
	size_t take = lf ? (size_t)(lf - p) : n;
	if (take > room - l->len) {
		/* over the limit: report now, drop what we have, skip the rest */
		size_t skipped;
		l->len = 0;
		l->discarding = 1;
		skip_rest(l, p, n, &skipped);
		*used = skipped;
		return SMTP_LINE_TOO_LONG;
	}
	memcpy(l->buf + l->len, p, take);
	l->len += take;
	if (lf == NULL) {
		*used = n;
		return SMTP_LINE_MORE;
	}
	*used = take + 1;
	if (l->len > 0 && l->buf[l->len - 1] == '\r')
		l->len--;
	if (l->len > SMTP_LINE_MAX) {
		l->len = 0;
		return SMTP_LINE_TOO_LONG;
	}
	l->buf[l->len] = '\0';
	l->ready = 1;
	return SMTP_LINE_READY;
}
