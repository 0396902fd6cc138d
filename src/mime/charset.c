/*
 * charset.c - text in a declared charset to UTF-8 for the MIME analyser.
 *
 * UTF-8 (and US-ASCII, and unknown names) is validated here, ISO-8859-1
 * is read as Windows-1252 (as browsers and mail readers do) here too, and
 * every other charset goes through iconv.  Invalid or incomplete input
 * becomes U+FFFD; conversion never fails.  Charset names come from hostile
 * mail, so only plain names reach iconv_open, each message opens at most
 * CHARSET_MAX_OPENS converters, and the converters are kept in a small
 * per-message cache.
 */
#include "mime/mime_private.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

static const char replacement[3] = { (char)0xef, (char)0xbf, (char)0xbd };

/* Windows-1252 0x80-0x9f; the five holes stay C1 controls. */
static const uint16_t cp1252_c1[32] = {
	0x20ac, 0x0081, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021,
	0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008d, 0x017d, 0x008f,
	0x0090, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
	0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x009d, 0x017e, 0x0178,
};

enum cs_kind { CS_UTF8, CS_CP1252, CS_ICONV };

void charset_cache_init(struct charset_cache *cc)
{
	memset(cc, 0, sizeof(*cc));
}

void charset_cache_free(struct charset_cache *cc)
{
	for (int i = 0; i < cc->n; i++)
		if (cc->e[i].cd != (iconv_t)-1)
			iconv_close(cc->e[i].cd);
	cc->n = 0;
}

size_t utf8_cut(const char *s, size_t n)
{
	size_t i = n;
	/* Step back over continuation bytes to the lead byte of the last
	 * character and keep that character only if it is complete. */
	while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80 && n - i < 3)
		i--;
	if (i == 0)
		return 0;
	unsigned char lead = (unsigned char)s[i - 1];
	size_t need = lead < 0x80 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
	return n - (i - 1) >= need ? n : i - 1;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if (c == 0xe0 && s[1] < 0xa0)
			return 0;       /* overlong */
		if (c == 0xed && s[1] >= 0xa0)
			return 0;       /* surrogate */
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
		    (s[3] & 0xc0) != 0x80)
			return 0;
		if (c == 0xf0 && s[1] < 0x90)
			return 0;       /* overlong */
		if (c == 0xf4 && s[1] >= 0x90)
			return 0;       /* above U+10FFFF */
		return 4;
	}
	return 0;
}

/* Append k bytes if they fit within the limit; 0 when full. */
static int put(struct buf *out, size_t stop, const char *s, size_t k)
{
	if (out->len + k > stop)
		return 0;
	buf_append(out, s, k);
	return 1;
}

int utf8_append_valid(struct buf *out, const char *in, size_t len, size_t max)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t stop = max > SIZE_MAX - out->len ? SIZE_MAX : out->len + max;
	size_t i = 0;

	while (i < len) {
		/* A run of valid characters is copied at once. */
		size_t j = i;
		while (j < len) {
			/* ASCII eight bytes at a time. */
			while (len - j >= 8) {
				uint64_t w;
				memcpy(&w, s + j, 8);
				if (w & 0x8080808080808080ULL)
					break;
				j += 8;
			}
			if (j >= len)
				break;
			if (s[j] < 0x80) {
				j++;
				continue;
			}
			size_t k = utf8_seq(s + j, len - j);
			if (k == 0)
				break;
			j += k;
		}
		if (j > i) {
			size_t k = j - i;
			if (out->len + k > stop) {
				k = utf8_cut(in + i, stop - out->len);
				buf_append(out, in + i, k);
				return 1;
			}
			buf_append(out, in + i, k);
			i = j;
		}
		if (i < len) {
			if (!put(out, stop, replacement, 3))
				return 1;
			i++;
		}
	}
	return 0;
}

static void cp1252_append(struct buf *out, const char *in, size_t len, size_t max)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t room = len < max / 3 ? len * 3 : max;

	buf_reserve(out, room);
	char *o = out->data + out->len;
	char *stop = o + room;
	for (size_t i = 0; i < len; i++) {
		unsigned int u = s[i];
		if (u < 0x80) {
			if (o == stop)
				break;
			*o++ = (char)u;
			continue;
		}
		if (u < 0xa0)
			u = cp1252_c1[u - 0x80];
		if (u < 0x800) {
			if (stop - o < 2)
				break;
			*o++ = (char)(0xc0 | (u >> 6));
			*o++ = (char)(0x80 | (u & 0x3f));
		} else {
			if (stop - o < 3)
				break;
			*o++ = (char)(0xe0 | (u >> 12));
			*o++ = (char)(0x80 | ((u >> 6) & 0x3f));
			*o++ = (char)(0x80 | (u & 0x3f));
		}
	}
	out->len = (size_t)(o - out->data);
	out->data[out->len] = '\0';
}

/* Normalise a charset name into name[]: lower case, only characters that
 * charset names use.  0 if it is unusable (then read as UTF-8). */
static int charset_name(const char *cs, size_t n, char name[MIME_CHARSET_MAX])
{
	if (n == 0 || n >= MIME_CHARSET_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)cs[i];
		if (ch >= 'A' && ch <= 'Z')
			ch = (unsigned char)(ch - 'A' + 'a');
		else if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '_' || ch == '.' || ch == ':' || ch == '+'))
			return 0;
		name[i] = (char)ch;
	}
	name[n] = '\0';
	return 1;
}

static enum cs_kind charset_kind(const char *name)
{
	static const char *const utf8[] = { "utf-8", "utf8", "us-ascii", "ascii",
		"ansi_x3.4-1968", "iso-646-us", "unknown-8bit", "x-unknown", "default", NULL };
	static const char *const cp1252[] = { "iso-8859-1", "iso8859-1", "iso_8859-1",
		"latin1", "latin-1", "l1", "windows-1252", "cp1252", "x-cp1252", NULL };
	for (int i = 0; utf8[i]; i++)
		if (strcmp(name, utf8[i]) == 0)
			return CS_UTF8;
	for (int i = 0; cp1252[i]; i++)
		if (strcmp(name, cp1252[i]) == 0)
			return CS_CP1252;
	return CS_ICONV;
}

static iconv_t charset_open(struct charset_cache *cc, const char *name)
{
	for (int i = 0; i < cc->n; i++)
		if (strcmp(cc->e[i].name, name) == 0)
			return cc->e[i].cd;
	if (cc->opens >= CHARSET_MAX_OPENS)
		return (iconv_t)-1;
	cc->opens++;
	iconv_t cd = iconv_open("UTF-8", name);
	int slot;
	if (cc->n < CHARSET_CACHE_SIZE) {
		slot = cc->n++;
	} else {
		slot = cc->next;
		cc->next = (cc->next + 1) % CHARSET_CACHE_SIZE;
		if (cc->e[slot].cd != (iconv_t)-1)
			iconv_close(cc->e[slot].cd);
	}
	memcpy(cc->e[slot].name, name, strlen(name) + 1);
	cc->e[slot].cd = cd;
	return cd;
}

static void iconv_append(iconv_t cd, const char *in, size_t len, struct buf *out, size_t max)
{
	char chunk[4096];
	char *ip = (char *)in;
	size_t ileft = len;
	size_t room = max;
	int flushing = 0;

	iconv(cd, NULL, NULL, NULL, NULL);
	for (;;) {
		char *op = chunk;
		size_t oleft = sizeof(chunk);
		size_t r = flushing ? iconv(cd, NULL, NULL, &op, &oleft) :
		    iconv(cd, &ip, &ileft, &op, &oleft);
		int err = r == (size_t)-1 ? errno : 0;
		size_t got = sizeof(chunk) - oleft;
		/* iconv writes whole characters, but not always valid ones
		 * (glibc lets "UTF-8" input above U+10FFFF through): check. */
		size_t before = out->len;
		if (utf8_append_valid(out, chunk, got, room))
			return;
		room -= out->len - before;
		if (err == E2BIG && got > 0)
			continue;
		if (flushing)
			return;
		if (err == EILSEQ || err == EINVAL) {
			/* A bad byte is skipped; an incomplete end is dropped. */
			if (room < 3)
				return;
			buf_append(out, replacement, 3);
			room -= 3;
			if (err == EINVAL || ileft == 0) {
				ileft = 0;
			} else {
				ip++;
				ileft--;
			}
		} else if (err != 0) {
			return;
		}
		if (ileft == 0)
			flushing = 1;
	}
}

void charset_to_utf8(struct charset_cache *cc, const char *cs, size_t cslen,
    const char *in, size_t len, struct buf *out, size_t max)
{
	char name[MIME_CHARSET_MAX];

	if (len == 0 || max == 0)
		return;
	if (!charset_name(cs, cslen, name)) {
		utf8_append_valid(out, in, len, max);
		return;
	}
	switch (charset_kind(name)) {
	case CS_UTF8:
		utf8_append_valid(out, in, len, max);
		return;
	case CS_CP1252:
		cp1252_append(out, in, len, max);
		return;
	case CS_ICONV:
		break;
	}
	iconv_t cd = charset_open(cc, name);
	if (cd == (iconv_t)-1)
		utf8_append_valid(out, in, len, max);
	else
		iconv_append(cd, in, len, out, max);
}
