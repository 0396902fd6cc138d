/*
 * smtp_addr.c - RFC 5321 paths: <[@route,...:]local-part@domain>.
 *
 * Two passes: find the closing '>' (honouring quoted strings) and check the
 * length, then parse the text between the brackets strictly.  Nothing is
 * written beyond outlen; the canonical form is never longer than the input.
 */
#include "proto/smtp_addr.h"

#include <string.h>

/* RFC 5322 atext */
static int is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* qtextSMTP: %d32-33 / %d35-91 / %d93-126 */
static int is_qtext(unsigned char c)
{
	return c >= 32 && c <= 126 && c != '"' && c != '\\';
}

/* dtext of an address literal: %d33-90 / %d94-126 */
static int is_dtext(unsigned char c)
{
	return c >= 33 && c <= 126 && c != '[' && c != ']' && c != '\\';
}

static int is_let_dig(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int smtp_addr_is_dot_string(const char *s, size_t len)
{
	int need_atext = 1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.' && !need_atext)
			need_atext = 1;
		else if (is_atext(c))
			need_atext = 0;
		else
			return 0;
	}
	return !need_atext;
}

/* Domain name (labels of letters, digits, hyphens, not starting or ending
 * with a hyphen, 1..63 long) or address literal "[dtext]".  Returns the
 * length of the domain at s, which must be followed by one of `stop`
 * (or the end of [s, end)), or 0 when malformed. */
static size_t domain_len(const char *s, const char *end, const char *stop)
{
	const char *p = s;
	if (p < end && *p == '[') {
		for (p++; p < end && is_dtext((unsigned char)*p); p++)
			;
		if (p >= end || *p != ']' || p == s + 1)
			return 0;
		p++;
	} else {
		for (;;) {
			const char *label = p;
			while (p < end && (is_let_dig((unsigned char)*p) || *p == '-'))
				p++;
			size_t n = (size_t)(p - label);
			if (n == 0 || n > 63 || *label == '-' || p[-1] == '-')
				return 0;
			if (p < end && *p == '.') {
				p++;
				continue;
			}
			break;
		}
	}
	if (p < end && strchr(stop, *p) == NULL)
		return 0;
	return (size_t)(p - s);
}

/* "@domain,@domain:" before the mailbox; skipped. */
static const char *skip_source_route(const char *p, const char *end)
{
	for (;;) {
		if (p >= end || *p != '@')
			return NULL;
		p++;
		size_t n = domain_len(p, end, ",:");
		if (n == 0)
			return NULL;
		p += n;
		if (p >= end)
			return NULL;
		if (*p++ == ':')
			return p;
	}
}

struct out {
	char *s;
	size_t len, cap;        /* cap excludes the terminator */
	int overflow;
};

static void out_put(struct out *o, const char *p, size_t n)
{
	if (n > o->cap - o->len) {
		o->overflow = 1;
		return;
	}
	memcpy(o->s + o->len, p, n);
	o->len += n;
	o->s[o->len] = '\0';
}

/* A quoted-string local part at *pp; writes its canonical form. */
static int quoted_local(const char **pp, const char *end, struct out *o)
{
	char raw[SMTP_PATH_MAX + 1];
	size_t n = 0;
	const char *p = *pp + 1;

	for (; p < end && *p != '"'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '\\') {
			if (++p >= end || (unsigned char)*p < 32 || (unsigned char)*p > 126)
				return -1;
			c = (unsigned char)*p;
		} else if (!is_qtext(c)) {
			return -1;
		}
		if (n >= sizeof(raw) - 1)
			return -1;
		raw[n++] = (char)c;
	}
	if (p >= end)
		return -1;
	*pp = p + 1;
	if (n > 0 && smtp_addr_is_dot_string(raw, n)) {
		out_put(o, raw, n);
		return 0;
	}
	out_put(o, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		if (raw[i] == '"' || raw[i] == '\\')
			out_put(o, "\\", 1);
		out_put(o, &raw[i], 1);
	}
	out_put(o, "\"", 1);
	return 0;
}

static int dot_string_local(const char **pp, const char *end, struct out *o)
{
	const char *p = *pp;
	while (p < end && (is_atext((unsigned char)*p) || *p == '.'))
		p++;
	if (!smtp_addr_is_dot_string(*pp, (size_t)(p - *pp)))
		return -1;
	out_put(o, *pp, (size_t)(p - *pp));
	*pp = p;
	return 0;
}

/* The mailbox in [p, end): local-part "@" domain. */
static enum smtp_path_status mailbox(const char *p, const char *end, struct out *o)
{
	int r = (*p == '"') ? quoted_local(&p, end, o) : dot_string_local(&p, end, o);
	if (r < 0)
		return SMTP_PATH_BAD_ADDRESS;
	if (p >= end)
		return SMTP_PATH_NO_DOMAIN;
	if (*p != '@')
		return SMTP_PATH_BAD_ADDRESS;
	p++;
	size_t n = domain_len(p, end, "");
	if (n == 0 || p + n != end)
		return SMTP_PATH_BAD_ADDRESS;
	out_put(o, "@", 1);
	out_put(o, p, n);
	return o->overflow ? SMTP_PATH_TOO_LONG : SMTP_PATH_OK;
}

/* The closing '>' of a path whose content starts at p, skipping quoted
 * strings; NULL when there is none. */
static const char *closing_bracket(const char *p)
{
	int quoted = 0;
	for (; *p; p++) {
		if (quoted) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '"')
				quoted = 0;
		} else if (*p == '"') {
			quoted = 1;
		} else if (*p == '>') {
			return p;
		}
	}
	return NULL;
}

enum smtp_path_status smtp_addr_parse_path(const char **pp, char *out,
    size_t outlen, int allow_null)
{
	const char *start = *pp + 1;
	struct out o = { out, 0, outlen - 1, 0 };

	out[0] = '\0';
	if (**pp != '<')
		return SMTP_PATH_SYNTAX;
	const char *end = closing_bracket(start);
	if (end == NULL)
		return strlen(start) > SMTP_PATH_MAX ? SMTP_PATH_TOO_LONG : SMTP_PATH_SYNTAX;
	if ((size_t)(end - start) > SMTP_PATH_MAX)
		return SMTP_PATH_TOO_LONG;
	*pp = end + 1;
	if (start == end)
		return allow_null ? SMTP_PATH_OK : SMTP_PATH_BAD_ADDRESS;

	const char *p = start;
	if (*p == '@' && (p = skip_source_route(p, end)) == NULL)
		return SMTP_PATH_BAD_ADDRESS;
	if (p >= end)
		return SMTP_PATH_BAD_ADDRESS;
	enum smtp_path_status st = mailbox(p, end, &o);
	if (st != SMTP_PATH_OK)
		out[0] = '\0';
	return st;
}
