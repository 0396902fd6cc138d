/*
 * content.c - Content-Type (type, subtype, charset and boundary
 * parameters, RFC 2231 "name*=charset'lang'%XX" too) and
 * Content-Transfer-Encoding, read leniently from hostile headers: a type
 * that cannot be read is text/plain (RFC 2045 section 5.2), unknown
 * encodings are taken as identity.
 */
#include "mime/mime_private.h"

#include <string.h>
#include <strings.h>

static const char *skip_cfws(const char *p, const char *end)
{
	while (p < end) {
		if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
			p++;
		} else if (*p == '(') {
			int level = 0;
			for (; p < end; p++) {
				if (*p == '\\' && p + 1 < end)
					p++;
				else if (*p == '(')
					level++;
				else if (*p == ')' && --level == 0) {
					p++;
					break;
				}
			}
		} else {
			break;
		}
	}
	return p;
}

static int token_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

static size_t token_len(const char *p, const char *end)
{
	const char *q = p;
	while (q < end && token_char((unsigned char)*q))
		q++;
	return (size_t)(q - p);
}

static int eq(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

/* Read a parameter value at p into val (NUL-terminated, cut at cap - 1
 * bytes; *too_long set then); returns the position after it. */
static const char *param_value(const char *p, const char *end, char *val, size_t cap,
    size_t *vlen, int *too_long)
{
	size_t n = 0;
	*too_long = 0;
	if (p < end && *p == '"') {
		for (p++; p < end && *p != '"'; p++) {
			if (*p == '\\' && p + 1 < end)
				p++;
			if (n + 1 < cap)
				val[n++] = *p;
			else
				*too_long = 1;
		}
		if (p < end)
			p++;
	} else {
		/* Unquoted values in the wild hold tspecials ("----=_Part"). */
		for (; p < end && *p != ';' && *p != ' ' && *p != '\t' && *p != '('; p++) {
			if (n + 1 < cap)
				val[n++] = *p;
			else
				*too_long = 1;
		}
	}
	val[n] = '\0';
	*vlen = n;
	return p;
}

/* RFC 2231 extended value: charset'language'%XX...; the charset is
 * ignored (boundaries and charset names are ASCII). */
static size_t ext_decode(char *val, size_t n)
{
	char *q1 = memchr(val, '\'', n);
	char *q2 = q1 ? memchr(q1 + 1, '\'', n - (size_t)(q1 + 1 - val)) : NULL;
	if (q2 == NULL)
		return n;
	size_t o = 0;
	for (size_t i = (size_t)(q2 + 1 - val); i < n; i++) {
		char ch = val[i];
		if (ch == '%' && i + 2 < n && hexval((unsigned char)val[i + 1]) >= 0 &&
		    hexval((unsigned char)val[i + 2]) >= 0) {
			ch = (char)(hexval((unsigned char)val[i + 1]) << 4 |
			    hexval((unsigned char)val[i + 2]));
			i += 2;
		}
		val[o++] = ch;
	}
	val[o] = '\0';
	return o;
}

static void set_charset(struct content *c, const char *v, size_t n)
{
	if (n >= sizeof(c->charset))
		n = 0;          /* no real charset name is that long */
	memcpy(c->charset, v, n);
	c->charset[n] = '\0';
}

static void set_boundary(struct content *c, const char *v, size_t n, int too_long)
{
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	if (too_long || n == 0 || n > MIME_BOUNDARY_MAX || memchr(v, '\0', n) != NULL) {
		c->boundary_len = 0;
		return;
	}
	memcpy(c->boundary, v, n);
	c->boundary[n] = '\0';
	c->boundary_len = n;
}

static void parse_params(const char *p, const char *end, struct content *c)
{
	char val[MIME_BOUNDARY_MAX + 2];
	int have_cs = 0, have_b = 0;

	while (p < end) {
		p = skip_cfws(p, end);
		if (p < end && *p != ';') {
			/* Junk: resynchronise at the next ';'. */
			const char *semi = memchr(p, ';', (size_t)(end - p));
			if (semi == NULL)
				return;
			p = semi;
		}
		if (p >= end)
			return;
		p = skip_cfws(p + 1, end);
		const char *name = p;
		size_t nlen = token_len(p, end);
		int ext = 0;
		p += nlen;
		if (nlen > 1 && name[nlen - 1] == '*') {
			ext = 1;        /* RFC 2231 name*= */
			nlen--;
		}
		p = skip_cfws(p, end);
		if (nlen == 0 || p >= end || *p != '=')
			continue;
		p = skip_cfws(p + 1, end);
		size_t vlen;
		int too_long;
		p = param_value(p, end, val, sizeof(val), &vlen, &too_long);
		if (ext && !too_long)
			vlen = ext_decode(val, vlen);
		/* A plain parameter wins over an extended one. */
		if (eq(name, nlen, "charset") && (have_cs == 0 || (have_cs == 2 && !ext))) {
			set_charset(c, val, too_long ? sizeof(c->charset) : vlen);
			have_cs = ext ? 2 : 1;
		} else if (eq(name, nlen, "boundary") && (have_b == 0 || (have_b == 2 && !ext))) {
			set_boundary(c, val, vlen, too_long);
			have_b = ext ? 2 : 1;
		}
	}
}

void content_parse_type(const char *v, size_t n, int default_message, struct content *c)
{
	c->kind = default_message ? CT_MESSAGE : CT_TEXT;
	c->digest = 0;
	c->charset[0] = '\0';
	c->boundary[0] = '\0';
	c->boundary_len = 0;
	if (v == NULL)
		return;

	const char *end = v + n;
	const char *p = skip_cfws(v, end);
	size_t tlen = token_len(p, end);
	const char *type = p;
	p = skip_cfws(p + tlen, end);
	if (tlen == 0 || p >= end || *p != '/') {
		c->kind = CT_TEXT;
		return;
	}
	p = skip_cfws(p + 1, end);
	const char *sub = p;
	size_t slen = token_len(p, end);
	if (slen == 0) {
		c->kind = CT_TEXT;
		return;
	}
	if (eq(type, tlen, "text")) {
		c->kind = CT_TEXT;
	} else if (eq(type, tlen, "multipart")) {
		c->kind = CT_MULTIPART;
		c->digest = eq(sub, slen, "digest");
	} else if (eq(type, tlen, "message") &&
	    (eq(sub, slen, "rfc822") || eq(sub, slen, "global"))) {
		c->kind = CT_MESSAGE;
	} else {
		c->kind = CT_OTHER;
	}
	parse_params(p + slen, end, c);
}

void content_parse_cte(const char *v, size_t n, struct content *c)
{
	c->cte = CTE_IDENTITY;
	if (v == NULL)
		return;
	const char *end = v + n;
	const char *p = skip_cfws(v, end);
	size_t tlen = token_len(p, end);
	if (eq(p, tlen, "quoted-printable"))
		c->cte = CTE_QP;
	else if (eq(p, tlen, "base64"))
		c->cte = CTE_BASE64;
}
