/*
 * multipart.c - the walk over a message: one pass over its lines that
 * reads each entity's header section, follows multipart boundaries with a
 * stack (innermost first; an outer boundary also closes the parts inside
 * it, which copes with missing final boundaries) and message/rfc822
 * nesting, and hands the lines of text parts to body.c.
 *
 * Each line is looked at once, and a line is compared with the boundaries
 * only when it starts with "--", so the walk is linear in the message
 * times at most MIME_MAX_DEPTH boundary compares for such lines.  Skipped
 * content (attachments, preambles) is jumped over with memchr for '-'.
 */
#include "mime/mime_private.h"

#include <string.h>
#include <strings.h>

static void entity_begin(struct mime_ctx *c, int depth, int default_message)
{
	c->state = ST_HEADERS;
	c->depth = depth;
	c->default_message = default_message;
	c->h_name = NULL;
	c->ct = c->cte = NULL;
}

static int name_is(const char *name, size_t n, const char *lit, size_t litlen)
{
	return n == litlen && strncasecmp(name, lit, n) == 0;
}

/* The header field in progress is complete. */
static void field_end(struct mime_ctx *c)
{
	if (c->h_name == NULL)
		return;
	if (c->top)
		headers_store(c, c->h_name, c->h_name_len, c->h_val,
		    (size_t)(c->h_end - c->h_val));
	if (c->ct == NULL && name_is(c->h_name, c->h_name_len, "Content-Type", 12)) {
		c->ct = c->h_val;
		c->ct_end = c->h_end;
	} else if (c->cte == NULL &&
	    name_is(c->h_name, c->h_name_len, "Content-Transfer-Encoding", 25)) {
		c->cte = c->h_val;
		c->cte_end = c->h_end;
	}
	c->h_name = NULL;
}

static void parse_content(struct mime_ctx *c, struct content *ct)
{
	if (c->ct != NULL) {
		buf_reset(&c->tmp);
		header_unfold(c->ct, (size_t)(c->ct_end - c->ct), &c->tmp);
		content_parse_type(c->tmp.data, c->tmp.len, c->default_message, ct);
	} else {
		content_parse_type(NULL, 0, c->default_message, ct);
	}
	if (c->cte != NULL) {
		buf_reset(&c->tmp);
		header_unfold(c->cte, (size_t)(c->cte_end - c->cte), &c->tmp);
		content_parse_cte(c->tmp.data, c->tmp.len, ct);
	} else {
		content_parse_cte(NULL, 0, ct);
	}
}

/* The header section of the current entity is over: decide what its body is. */
static void headers_end(struct mime_ctx *c)
{
	struct content ct;

	field_end(c);
	if (c->top) {
		c->top = 0;
		if (c->flags & MIME_HEADERS_ONLY) {
			c->done = 1;
			return;
		}
	}
	parse_content(c, &ct);
	c->state = ST_SKIP;
	switch (ct.kind) {
	case CT_MULTIPART:
		if (ct.boundary_len == 0) {
			/* No usable boundary: show it as text rather than hide it. */
			text_begin(c, &ct);
			break;
		}
		if (c->depth < MIME_MAX_DEPTH && c->nframes < MIME_MAX_DEPTH) {
			struct frame *f = &c->frames[c->nframes++];
			memcpy(f->boundary, ct.boundary, ct.boundary_len);
			f->blen = ct.boundary_len;
			f->depth = c->depth;
			f->digest = ct.digest;
		}
		break;
	case CT_MESSAGE:
		if (ct.cte != CTE_IDENTITY || c->depth >= MIME_MAX_DEPTH)
			break;
		if (++c->nparts > MIME_MAX_PARTS) {
			c->done = 1;
			return;
		}
		entity_begin(c, c->depth + 1, 0);
		break;
	case CT_TEXT:
		text_begin(c, &ct);
		break;
	case CT_OTHER:
		break;
	}
	if (c->state == ST_SKIP && c->nframes == 0)
		c->done = 1;    /* nothing after this can be text */
}

static void header_line(struct mime_ctx *c, const char *p, size_t n, const char *nl)
{
	size_t nlen, voff;

	if (n == 0) {
		headers_end(c);
		return;
	}
	if (p[0] == ' ' || p[0] == '\t') {
		if (c->h_name != NULL)
			c->h_end = p + n;
		return;
	}
	if (header_line_start(p, n, &nlen, &voff)) {
		field_end(c);
		c->h_name = p;
		c->h_name_len = nlen;
		c->h_val = p + voff;
		c->h_end = p + n;
		return;
	}
	if (c->top && c->first_line && n >= 5 && memcmp(p, "From ", 5) == 0)
		return;         /* mbox envelope line */
	/* Not a header field: the section ends without its blank line (as
	 * Postfix and Python's email read it) and this line is body. */
	for (;;) {
		headers_end(c);
		if (c->done || c->state == ST_SKIP)
			return;
		if (c->state == ST_TEXT) {
			text_line(c, p, n, nl);
			return;
		}
		/* message/rfc822 whose header section this line also ends;
		 * bounded by MIME_MAX_DEPTH. */
	}
}

static void entity_end(struct mime_ctx *c, int eof)
{
	if (c->state == ST_HEADERS)
		field_end(c);
	else if (c->state == ST_TEXT)
		text_end(c, eof);
}

/* After "--boundary": 1 for a delimiter, 2 for the close delimiter ("--"),
 * either followed by blanks only; 0 for anything else. */
static int delimiter_tail(const char *s, size_t n)
{
	int kind = 1;
	if (n >= 2 && s[0] == '-' && s[1] == '-') {
		kind = 2;
		s += 2;
		n -= 2;
	}
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t')
			return 0;
	return kind;
}

/* A line starting with "--": a boundary of an open multipart?  The
 * innermost multipart is tried first.  The match is exact (RFC 2046,
 * as Python's email reads it), not a prefix: "--b10" is not a delimiter
 * of "b1", which matters when nesting past the depth limit hides "b10". */
static int boundary_line(struct mime_ctx *c, const char *p, size_t n)
{
	for (int i = c->nframes - 1; i >= 0; i--) {
		const struct frame *f = &c->frames[i];
		if (n - 2 < f->blen || memcmp(p + 2, f->boundary, f->blen) != 0)
			continue;
		int kind = delimiter_tail(p + 2 + f->blen, n - 2 - f->blen);
		if (kind == 0)
			continue;
		int final = kind == 2;
		int depth = f->depth, digest = f->digest;
		entity_end(c, 0);
		if (c->done)
			return 1;
		if (final) {
			c->nframes = i;
			c->state = ST_SKIP;
			if (c->nframes == 0)
				c->done = 1;
		} else {
			c->nframes = i + 1;
			if (++c->nparts > MIME_MAX_PARTS)
				c->done = 1;
			else
				entity_begin(c, depth + 1, digest);
		}
		return 1;
	}
	return 0;
}

/* The first line at or after p (a line start) that begins with "--", or
 * NULL.  Looks for '-' first: base64 attachments have none. */
static const char *next_dash_line(const char *p, const char *end)
{
	const char *line = p;
	while (p < end) {
		const char *q = memchr(p, '-', (size_t)(end - p));
		if (q == NULL || end - q < 2)
			return NULL;
		if (q[1] == '-' && (q == line || q[-1] == '\n'))
			return q;
		p = q + 1;
	}
	return NULL;
}

void walk_message(struct mime_ctx *c, const char *p, const char *end)
{
	c->top = 1;
	c->first_line = 1;
	entity_begin(c, 0, 0);
	while (p < end && !c->done) {
		if (c->state == ST_SKIP) {
			p = next_dash_line(p, end);
			if (p == NULL)
				break;
		}
		if (c->state == ST_TEXT && c->nframes == 0 && c->t_cte == CTE_IDENTITY) {
			/* No boundary can end it: the text runs to the end. */
			text_line(c, p, (size_t)(end - p), NULL);
			p = end;
			break;
		}
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl ? nl : end) - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (c->nframes > 0 && n >= 2 && p[0] == '-' && p[1] == '-' &&
		    boundary_line(c, p, n)) {
			p = nl ? nl + 1 : end;
			continue;
		}
		switch (c->state) {
		case ST_HEADERS:
			header_line(c, p, n, nl);
			break;
		case ST_TEXT:
			text_line(c, p, n, nl);
			break;
		case ST_SKIP:
			break;
		}
		c->first_line = 0;
		p = nl ? nl + 1 : end;
	}
	if (!c->done && c->state == ST_HEADERS)
		headers_end(c);
	if (!c->done && c->state == ST_TEXT)
		text_end(c, 1);
}
