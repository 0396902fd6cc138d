/*
 * cond_codec.c - the serialized form of a condition, stored inside a
 * compiled rules entry (db/rules_entry.c).  Integers are big-endian:
 *
 *   n(u8, 1..RULE_COND_MAX)
 *   n x [ kind(u8) op(u8) flags(u8: 1 not, 2 case-sensitive regex)
 *         spam:       nothing
 *         score:      IEEE 754 double (u64)
 *         size:       u64
 *         header:     namelen(u8) name  textlen(u16) text
 *         the others: textlen(u16) text ]
 *
 * The blob comes from the database or another process, so decoding checks
 * every length and value as the parser would (operators per kind, header
 * name characters, regex delimiters, no control characters, finite
 * scores) and takes exactly the bytes it is given.  Regexes are not
 * compiled here: the evaluator does that once per process.
 */
#include "rules/cond.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define FLAG_NOT 1
#define FLAG_CASEFUL 2

static void put_u8(struct buf *b, unsigned v)
{
	buf_putc(b, (char)(unsigned char)v);
}

static void put_u16(struct buf *b, size_t v)
{
	put_u8(b, (unsigned)(v >> 8) & 0xff);
	put_u8(b, (unsigned)v & 0xff);
}

static void put_u64(struct buf *b, uint64_t v)
{
	for (int shift = 56; shift >= 0; shift -= 8)
		put_u8(b, (unsigned)(v >> shift) & 0xff);
}

static void encode_one(const struct rule_cond *c, struct buf *out)
{
	uint64_t bits;

	put_u8(out, (unsigned)c->kind);
	put_u8(out, (unsigned)c->op);
	put_u8(out, (c->negate ? FLAG_NOT : 0) | (c->caseful ? FLAG_CASEFUL : 0));
	switch (c->kind) {
	case COND_SPAM:
		break;
	case COND_SCORE:
		memcpy(&bits, &c->score, sizeof(bits));
		put_u64(out, bits);
		break;
	case COND_SIZE:
		put_u64(out, c->size);
		break;
	default:
		if (c->kind == COND_HEADER) {
			put_u8(out, (unsigned)strlen(c->name));
			buf_puts(out, c->name);
		}
		put_u16(out, strlen(c->text));
		buf_puts(out, c->text);
		break;
	}
}

void rule_cond_encode(const struct rule_cond *c, int n, struct buf *out)
{
	put_u8(out, (unsigned)n);
	for (int i = 0; i < n; i++)
		encode_one(&c[i], out);
}

/* ---- decoding ---- */

struct reader {
	const unsigned char *p;
	size_t left;
};

static int get_u8(struct reader *r, unsigned *v)
{
	if (r->left < 1)
		return -1;
	*v = *r->p++;
	r->left--;
	return 0;
}

static int get_u16(struct reader *r, size_t *v)
{
	unsigned hi, lo;
	if (get_u8(r, &hi) < 0 || get_u8(r, &lo) < 0)
		return -1;
	*v = (size_t)hi << 8 | lo;
	return 0;
}

static int get_u64(struct reader *r, uint64_t *v)
{
	unsigned c;
	*v = 0;
	for (int i = 0; i < 8; i++) {
		if (get_u8(r, &c) < 0)
			return -1;
		*v = *v << 8 | c;
	}
	return 0;
}

/* len bytes as a C string; NULL when short or containing control
 * characters (NUL included). */
static char *get_string(struct reader *r, size_t len)
{
	if (len > r->left)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = r->p[i];
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return NULL;
	}
	char *s = xstrndup((const char *)r->p, len);
	r->p += len;
	r->left -= len;
	return s;
}

static int valid_header_name(const char *s)
{
	for (; *s; s++) {
		if ((unsigned char)*s < 33 || (unsigned char)*s > 126 || *s == ':')
			return 0;
	}
	return 1;
}

/* What the regex scanner of the parser accepts between the slashes: no
 * unescaped '/', no lone '\' at the end. */
static int valid_regex_literal(const char *s)
{
	for (; *s; s++) {
		if (*s == '/')
			return 0;
		if (*s == '\\' && *++s == '\0')
			return 0;
	}
	return 1;
}

static int valid_op(enum rule_cond_kind kind, unsigned op)
{
	switch (kind) {
	case COND_SPAM:
		return op == COND_OP_NONE;
	case COND_SCORE:
	case COND_SIZE:
		return op >= COND_OP_GT && op <= COND_OP_LE;
	default:
		return op == COND_OP_MATCH || op == COND_OP_CONTAINS;
	}
}

static int decode_text(struct reader *r, struct rule_cond *c)
{
	size_t len, namelen;
	unsigned u;

	if (c->kind == COND_HEADER) {
		if (get_u8(r, &u) < 0)
			return -1;
		namelen = u;
		if (namelen == 0 || namelen > RULE_HEADER_NAME_MAX ||
		    (c->name = get_string(r, namelen)) == NULL || !valid_header_name(c->name))
			return -1;
	}
	if (get_u16(r, &len) < 0 || len == 0 ||
	    len > (c->op == COND_OP_MATCH ? RULE_PATTERN_MAX : RULE_TEXT_MAX) ||
	    (c->text = get_string(r, len)) == NULL)
		return -1;
	return c->op == COND_OP_MATCH && !valid_regex_literal(c->text) ? -1 : 0;
}

static int decode_one(struct reader *r, struct rule_cond *c)
{
	unsigned kind, op, flags;
	uint64_t bits;

	if (get_u8(r, &kind) < 0 || get_u8(r, &op) < 0 || get_u8(r, &flags) < 0)
		return -1;
	if (kind < COND_SPAM || kind > COND_KIND_LAST ||
	    !valid_op((enum rule_cond_kind)kind, op) ||
	    (flags & ~(unsigned)(FLAG_NOT | FLAG_CASEFUL)) ||
	    ((flags & FLAG_CASEFUL) && op != COND_OP_MATCH))
		return -1;
	c->kind = (enum rule_cond_kind)kind;
	c->op = (enum rule_cond_op)op;
	c->negate = (flags & FLAG_NOT) != 0;
	c->caseful = (flags & FLAG_CASEFUL) != 0;
	switch (c->kind) {
	case COND_SPAM:
		return 0;
	case COND_SCORE:
		if (get_u64(r, &bits) < 0)
			return -1;
		memcpy(&c->score, &bits, sizeof(bits));
		/* false for NaN and the infinities too */
		return c->score >= -RULE_SCORE_MAX && c->score <= RULE_SCORE_MAX ? 0 : -1;
	case COND_SIZE:
		return get_u64(r, &c->size);
	default:
		return decode_text(r, c);
	}
}

int rule_cond_decode(const void *data, size_t len, struct rule_cond **out, int *n)
{
	struct reader r = { data, len };
	unsigned count;

	*out = NULL;
	*n = 0;
	if (data == NULL || get_u8(&r, &count) < 0 || count == 0 || count > RULE_COND_MAX)
		return -1;
	struct rule_cond *c = xcalloc(count, sizeof(*c));
	for (unsigned i = 0; i < count; i++) {
		if (decode_one(&r, &c[i]) < 0)
			goto bad;
	}
	if (r.left != 0)
		goto bad;
	*out = c;
	*n = (int)count;
	return 0;
bad:
	rule_cond_free(c, (int)count);
	return -1;
}
