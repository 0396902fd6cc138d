/*
 * rfc2047.c - encoded words ("=?charset?B|Q?text?=") in header values,
 * decoded to UTF-8.  Adjacent encoded words separated only by white space
 * are joined, and the bytes of adjacent words in the same charset are
 * converted together, so a character split across two words survives.
 * Text outside encoded words is kept and validated as UTF-8.
 *
 * Lenient like mail readers (a word need not stand between blanks) but
 * linear: a candidate word is given up at the first blank or '?' that
 * cannot belong to it, so no byte is scanned more than a few times.
 */
#include "mime/mime_private.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#define WORD_CHARSET_MAX 64

struct word {
	const char *cs;
	size_t cslen;
	int b64;
	const char *text;
	size_t tlen;
	const char *end;                /* just past "?=" */
};

static int charset_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (c != '\0' && strchr("-_.:+!#$%&'^`{|}~", c) != NULL);
}

/* p points at "=?" inside [p, end). */
static int parse_word(const char *p, const char *end, struct word *w)
{
	const char *q = p + 2;

	w->cs = q;
	while (q < end && charset_char((unsigned char)*q) && q - w->cs <= WORD_CHARSET_MAX)
		q++;
	w->cslen = (size_t)(q - w->cs);
	if (w->cslen == 0 || w->cslen > WORD_CHARSET_MAX)
		return 0;
	if (q < end && *q == '*') {     /* RFC 2231 language */
		const char *lang = ++q;
		while (q < end && q - lang <= WORD_CHARSET_MAX &&
		    (charset_char((unsigned char)*q)))
			q++;
	}
	if (end - q < 3 || q[0] != '?' || q[2] != '?')
		return 0;
	char enc = q[1];
	if (enc == 'b' || enc == 'B')
		w->b64 = 1;
	else if (enc == 'q' || enc == 'Q')
		w->b64 = 0;
	else
		return 0;
	q += 3;
	w->text = q;
	while (q < end && *q != '?' && *q != ' ' && *q != '\t')
		q++;
	if (end - q < 2 || q[0] != '?' || q[1] != '=')
		return 0;
	w->tlen = (size_t)(q - w->text);
	w->end = q + 2;
	return 1;
}

static int all_blank(const char *s, const char *end)
{
	for (; s < end; s++)
		if (*s != ' ' && *s != '\t')
			return 0;
	return 1;
}

/* The next "=?" in [p, end), or NULL.  memchr only looks as far as it
 * must (memmem may read, and sanitizers check, the whole rest each call). */
static const char *find_start(const char *p, const char *end)
{
	while (p < end) {
		const char *q = memchr(p, '=', (size_t)(end - p));
		if (q == NULL || end - q < 2)
			return NULL;
		if (q[1] == '?')
			return q;
		p = q + 1;
	}
	return NULL;
}

struct run {
	const char *cs;                 /* charset of the pending bytes */
	size_t cslen;
	int active;
};

static void flush(struct charset_cache *cc, struct run *r, struct buf *bytes, struct buf *out)
{
	if (!r->active)
		return;
	charset_to_utf8(cc, r->cs, r->cslen, bytes->data, bytes->len, out, SIZE_MAX);
	buf_reset(bytes);
	r->active = 0;
}

void rfc2047_decode(struct charset_cache *cc, struct buf *scratch,
    const char *s, size_t n, struct buf *out)
{
	const char *end = s + n;
	const char *lit = s;            /* start of text not yet written */
	const char *p = s;
	struct run run = { NULL, 0, 0 };
	struct word w;

	buf_reset(scratch);
	while (p < end) {
		const char *q = find_start(p, end);
		if (q == NULL)
			break;
		if (!parse_word(q, end, &w)) {
			p = q + 2;
			continue;
		}
		if (!(run.active && all_blank(lit, q))) {
			flush(cc, &run, scratch, out);
			utf8_append_valid(out, lit, (size_t)(q - lit), SIZE_MAX);
		}
		if (run.active && (run.cslen != w.cslen ||
		    strncasecmp(run.cs, w.cs, w.cslen) != 0))
			flush(cc, &run, scratch, out);
		if (w.b64) {
			struct b64 d;
			b64_init(&d);
			b64_feed(&d, w.text, w.tlen, scratch, SIZE_MAX);
		} else {
			q_decode_word(w.text, w.tlen, scratch);
		}
		run.cs = w.cs;
		run.cslen = w.cslen;
		run.active = 1;
		p = lit = w.end;
	}
	flush(cc, &run, scratch, out);
	utf8_append_valid(out, lit, (size_t)(end - lit), SIZE_MAX);
}
