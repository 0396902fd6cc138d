/*
 * body.c - the text of text parts: lines are transfer-decoded into a raw
 * buffer, and at the end of the part the raw bytes are converted to UTF-8,
 * cleaned (CRLF to LF, NUL to a space) and appended to the body text,
 * parts joined with '\n'.
 *
 * The line break before a boundary belongs to the boundary, so a line
 * break is only written when another line of the part follows (or the
 * message ends).  Text without transfer encoding is converted straight
 * from the message, without a copy.  Work is bounded by body_limit: a part collects at most
 * 4 * room + 64 decoded bytes (room = what is left of the limit), enough
 * for any charset to fill the room, and once the body text is full the
 * walk stops.
 */
#include "mime/mime_private.h"

#include <stdint.h>
#include <string.h>

void text_begin(struct mime_ctx *c, const struct content *ct)
{
	size_t room = c->limit - c->out.len;

	c->state = ST_TEXT;
	c->t_cte = ct->cte;
	memcpy(c->t_charset, ct->charset, sizeof(c->t_charset));
	c->t_pending_nl = 0;
	c->t_sp = c->t_se = c->t_eol = NULL;
	b64_init(&c->t_b64);
	buf_reset(&c->raw);
	c->raw_cap = room > (SIZE_MAX - 64) / 4 ? SIZE_MAX - 1 : room * 4 + 64;
	c->raw_full = 0;
}

/* Append within the cap; 1 if something did not fit. */
static int raw_put(struct mime_ctx *c, const char *s, size_t n)
{
	size_t room = c->raw_cap > c->raw.len ? c->raw_cap - c->raw.len : 0;
	buf_append(&c->raw, s, n < room ? n : room);
	return n > room;
}

void text_line(struct mime_ctx *c, const char *p, size_t n, const char *nl)
{
	int full = 0, soft;

	switch (c->t_cte) {
	case CTE_BASE64:
		full = b64_feed(&c->t_b64, p, n, &c->raw, c->raw_cap);
		break;
	case CTE_QP:
		if (c->t_pending_nl)
			full = raw_put(c, "\n", 1);
		full |= qp_decode_line(p, n, &c->raw, c->raw_cap, &soft);
		c->t_pending_nl = nl != NULL && !soft;
		break;
	case CTE_IDENTITY:
		/* The text is the input itself, from the first line to the end
		 * of the last (CRLF become LF when cleaned): no copy. */
		if (c->t_sp == NULL)
			c->t_sp = p;
		c->t_se = p + n;
		c->t_eol = nl ? nl + 1 : NULL;
		if ((size_t)(c->t_se - c->t_sp) > c->raw_cap) {
			c->t_se = c->t_sp + c->raw_cap;
			c->t_eol = NULL;
			full = 1;
		}
		break;
	}
	if (full) {
		/* More text than the limit can hold: finish here. */
		c->raw_full = 1;
		text_end(c, 0);
	}
}

/* CRLF to LF and NUL to a space, in place; the new length. */
static size_t clean(char *s, size_t n)
{
	if (memchr(s, '\r', n) == NULL && strnlen(s, n) == n)
		return n;       /* the usual case */
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '\r' && i + 1 < n && s[i + 1] == '\n')
			continue;
		s[o++] = ch == '\0' ? ' ' : ch;
	}
	return o;
}

/* Convert the part's raw bytes straight onto the body text, clean them
 * there and cut what passes the limit. */
static void emit(struct mime_ctx *c, const char *text, size_t tlen)
{
	size_t room = c->limit - c->out.len;
	size_t sep = c->out.len > 0;

	if (tlen == 0)
		return;
	if (room <= sep) {
		c->truncated = 1;
		c->done = 1;
		return;
	}
	room -= sep;
	if (sep)
		buf_putc(&c->out, '\n');
	size_t start = c->out.len;
	/* Cleaning at most halves the text, so twice the room (and a bit)
	 * is enough to tell whether it overflows. */
	size_t max = room > (SIZE_MAX - 16) / 2 ? SIZE_MAX : room * 2 + 16;
	charset_to_utf8(&c->cs, c->t_charset, strlen(c->t_charset), text, tlen,
	    &c->out, max);
	size_t len = clean(c->out.data + start, c->out.len - start);
	if (len == 0) {
		c->out.len = start - sep;       /* nothing: no separator either */
	} else {
		if (len > room) {
			len = utf8_cut(c->out.data + start, room);
			c->truncated = 1;
			c->done = 1;
		}
		c->out.len = start + len;
	}
	if (c->out.data)
		c->out.data[c->out.len] = '\0';
}

void text_end(struct mime_ctx *c, int eof)
{
	if (c->state != ST_TEXT)
		return;
	c->state = ST_SKIP;
	if (c->t_cte == CTE_IDENTITY) {
		/* The last line break belongs to the text only at the end of
		 * the message; before a boundary it belongs to the boundary. */
		const char *e = eof && c->t_eol ? c->t_eol : c->t_se;
		if (c->t_sp != NULL)
			emit(c, c->t_sp, (size_t)(e - c->t_sp));
	} else {
		if (eof && c->t_pending_nl && c->t_cte == CTE_QP)
			c->raw_full |= raw_put(c, "\n", 1);
		emit(c, c->raw.data, c->raw.len);
	}
	if (c->raw_full) {
		c->truncated = 1;
		c->done = 1;
	}
}
