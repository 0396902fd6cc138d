/*
 * mime.c - entry points of the MIME analyser: parse a message into its
 * top-level headers and body text, look a header up, free the result.
 * The headers and all their strings are handed back in one allocation.
 */
#include "mime/mime.h"
#include "mime/mime_private.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void ctx_init(struct mime_ctx *c, size_t limit, int flags)
{
	memset(c, 0, sizeof(*c));
	c->flags = flags;
	c->limit = limit;
	charset_cache_init(&c->cs);
}

static void ctx_free(struct mime_ctx *c)
{
	buf_free(&c->arena);
	free(c->hdrs);
	buf_free(&c->raw);
	buf_free(&c->out);
	buf_free(&c->tmp);
	buf_free(&c->scratch);
	charset_cache_free(&c->cs);
}

/* One block: the header array, then the names and values it points to. */
static void headers_hand_over(struct mime_ctx *c, struct mime_message *out)
{
	if (c->nhdrs == 0)
		return;
	size_t array = c->nhdrs * sizeof(struct mime_header);
	char *block = xmalloc(array + c->arena.len);
	struct mime_header *h = (struct mime_header *)(void *)block;
	char *strs = block + array;

	memcpy(strs, c->arena.data, c->arena.len);
	for (size_t i = 0; i < c->nhdrs; i++) {
		h[i].name = strs + c->hdrs[i].name_off;
		h[i].value = strs + c->hdrs[i].value_off;
	}
	out->headers = h;
	out->nheaders = c->nhdrs;
}

int mime_parse(const char *msg, size_t len, size_t body_limit, int flags, struct mime_message *out)
{
	struct mime_ctx c;

	if (out == NULL)
		return -1;
	memset(out, 0, sizeof(*out));
	if (msg == NULL && len > 0)
		return -1;
	ctx_init(&c, body_limit, flags);
	if (len > 0)
		walk_message(&c, msg, msg + len);
	headers_hand_over(&c, out);
	if (flags & MIME_HEADERS_ONLY) {
		out->body_text = xstrdup("");
	} else {
		out->body_text_len = c.out.len;
		out->body_text = buf_steal(&c.out);
		out->body_truncated = c.truncated;
	}
	ctx_free(&c);
	return 0;
}

const char *mime_header_first(const struct mime_message *m, const char *name)
{
	for (size_t i = 0; i < m->nheaders; i++)
		if (strcasecmp(m->headers[i].name, name) == 0)
			return m->headers[i].value;
	return NULL;
}

void mime_message_free(struct mime_message *m)
{
	if (m == NULL)
		return;
	free(m->headers);
	free(m->body_text);
	memset(m, 0, sizeof(*m));
}
