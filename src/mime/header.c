/*
 * header.c - header field lines: recognising the start of a field,
 * unfolding, cleaning a decoded value (control bytes, blanks), and the
 * store of the message's own header section with its names and values
 * in one arena.
 */
#include "mime/mime_private.h"
#include "lib/xalloc.h"

#include <stdint.h>
#include <string.h>

int header_line_start(const char *line, size_t n, size_t *name_len, size_t *value_off)
{
	size_t i = 0;
	/* Field names are printable ASCII but the colon (RFC 5322 ftext). */
	while (i < n && (unsigned char)line[i] > 0x20 && (unsigned char)line[i] < 0x7f &&
	    line[i] != ':')
		i++;
	if (i == 0)
		return 0;
	*name_len = i;
	/* Obsolete syntax allows blanks before the colon. */
	while (i < n && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i >= n || line[i] != ':')
		return 0;
	*value_off = i + 1;
	return 1;
}

void header_unfold(const char *s, size_t n, struct buf *out)
{
	const char *end = s + n;

	buf_reserve(out, n);
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *e = nl ? nl : end;
		size_t k = (size_t)(e - s);
		if (nl && k > 0 && s[k - 1] == '\r')
			k--;
		memcpy(out->data + out->len, s, k);
		out->len += k;
		s = nl ? nl + 1 : end;
	}
	out->data[out->len] = '\0';
}

size_t header_clean(char *s, size_t n, size_t *len)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			s[i] = ' ';
	}
	size_t a = 0;
	while (a < n && (s[a] == ' ' || s[a] == '\t'))
		a++;
	while (n > a && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	*len = n - a;
	return a;
}

void headers_store(struct mime_ctx *c, const char *name, size_t nlen,
    const char *val, size_t vlen)
{
	if (c->nhdrs >= MIME_MAX_HEADERS)
		return;
	if (c->nhdrs == c->caphdrs) {
		c->caphdrs = c->caphdrs ? c->caphdrs * 2 : 32;
		c->hdrs = xreallocarray(c->hdrs, c->caphdrs, sizeof(*c->hdrs));
	}
	struct hdr_rec *h = &c->hdrs[c->nhdrs++];

	h->name_off = c->arena.len;
	buf_append(&c->arena, name, nlen);
	buf_putc(&c->arena, '\0');

	buf_reset(&c->tmp);
	header_unfold(val, vlen, &c->tmp);
	size_t start = c->arena.len;
	rfc2047_decode(&c->cs, &c->scratch, c->tmp.data, c->tmp.len, &c->arena);
	size_t len;
	size_t skip = header_clean(c->arena.data + start, c->arena.len - start, &len);
	if (skip)
		memmove(c->arena.data + start, c->arena.data + start + skip, len);
	c->arena.len = start + len;
	h->value_off = start;
	buf_putc(&c->arena, '\0');
}
