/*
 * dsn_text.c - the small text tools of the DSN composer: values made safe
 * to put in a header field or a line of the report, folding, the status
 * code check, random tokens.  See dsn_private.h.
 */
#include "dsn/dsn_private.h"
#include "lib/buf.h"
#include "lib/xalloc.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

char *dsn_clean(const char *s, size_t max, int keep_space)
{
	size_t len = s ? strlen(s) : 0, o = 0;
	char *out = xmalloc((len < max ? len : max) + 4);
	int space = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || c == ' ') {
			if (keep_space && c != ' ' && c != '\t')
				c = '?';
			else {
				space = o > 0;
				continue;
			}
		}
		if (o + (size_t)space + 1 > max) {
			if (max >= 3) {
				if (o > max - 3)
					o = max - 3;
				memcpy(out + o, "...", 3);
				o += 3;
			}
			break;
		}
		if (space)
			out[o++] = ' ';
		space = 0;
		out[o++] = c < 0x80 ? (char)c : '?';
	}
	out[o] = '\0';
	return out;
}

char *dsn_filter(const char *s, const char *allowed, size_t max)
{
	size_t len = s ? strlen(s) : 0, o = 0;
	char *out = xmalloc((len < max ? len : max) + 1);

	for (size_t i = 0; i < len && o < max; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x80 && (isalnum(c) || (c != '\0' && strchr(allowed, c) != NULL)))
			out[o++] = (char)c;
	}
	out[o] = '\0';
	return out;
}

void dsn_put_wrapped(struct buf *b, const char *first, const char *text, const char *cont)
{
	size_t col = strlen(first);
	int at_start = 1;       /* nothing of text on this line yet */

	buf_puts(b, first);
	while (*text) {
		const char *sp = strchr(text, ' ');
		size_t wlen = sp ? (size_t)(sp - text) : strlen(text);
		if (!at_start && col + 1 + wlen > DSN_LINE_WANT) {
			buf_putc(b, '\n');
			buf_puts(b, cont);
			col = strlen(cont);
		} else if (!at_start) {
			buf_putc(b, ' ');
			col++;
		}
		buf_append(b, text, wlen);
		col += wlen;
		at_start = 0;
		text += wlen;
		while (*text == ' ')
			text++;
	}
	buf_putc(b, '\n');
}

static int digits(const char **p, int max)
{
	int n = 0;
	while (isdigit((unsigned char)**p) && n <= max) {
		(*p)++;
		n++;
	}
	return n >= 1 && n <= max;
}

int dsn_status_valid(const char *status)
{
	const char *p = status;

	if (p == NULL || (p[0] != '2' && p[0] != '4' && p[0] != '5') || p[1] != '.')
		return 0;
	p += 2;
	if (!digits(&p, 3) || *p++ != '.' || !digits(&p, 3))
		return 0;
	return *p == '\0';
}

void dsn_random_hex(char *out, size_t n)
{
	static uint64_t counter;
	unsigned char raw[64];

	if (n > sizeof(raw))
		n = sizeof(raw);
	if (getrandom(raw, n, GRND_NONBLOCK) != (ssize_t)n) {
		/* unique enough as a fallback: time, pid and a counter mixed */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t x = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^
		    ((uint64_t)getpid() << 32) ^ ++counter;
		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			raw[i] = (unsigned char)(x >> 24);
		}
	}
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

static int is_atext(unsigned char c)
{
	return c != '\0' && c < 0x80 && (isalnum(c) || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static int is_dot_atom(const char *s, size_t len)
{
	if (len == 0 || s[0] == '.' || s[len - 1] == '.')
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!(is_atext((unsigned char)s[i]) || (s[i] == '.' && s[i - 1] != '.')))
			return 0;
	return 1;
}

static int is_quoted_string(const char *s, size_t len)
{
	size_t i = 1;

	if (len < 2 || s[0] != '"' || s[len - 1] != '"')
		return 0;
	while (i < len - 1) {
		if (s[i] == '\\') {
			if (i + 1 >= len - 1)
				return 0;       /* it escapes the closing quote */
			i += 2;
		} else if (s[i] == '"') {
			return 0;
		} else {
			i++;
		}
	}
	return 1;
}

char *dsn_angle_addr(const char *addr)
{
	const char *at = strrchr(addr, '@');
	size_t llen = at ? (size_t)(at - addr) : strlen(addr);
	struct buf b = BUF_INIT;

	buf_putc(&b, '<');
	if (is_dot_atom(addr, llen) || is_quoted_string(addr, llen)) {
		buf_append(&b, addr, llen);
	} else {
		buf_putc(&b, '"');
		for (size_t i = 0; i < llen; i++) {
			if (addr[i] == '"' || addr[i] == '\\')
				buf_putc(&b, '\\');
			buf_putc(&b, addr[i]);
		}
		buf_putc(&b, '"');
	}
	if (at != NULL) {
		buf_putc(&b, '@');
		int literal = at[1] == '[';
		for (const char *p = at + 1; *p; p++) {
			unsigned char c = (unsigned char)*p;
			int ok = isalnum(c) || c == '.' || c == '-' ||
			    (literal && (c == '[' || c == ']' || c == ':'));
			buf_putc(&b, ok && c < 0x80 ? (char)c : '?');
		}
	}
	buf_putc(&b, '>');
	return buf_steal(&b);
}
