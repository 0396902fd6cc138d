/*
 * user_policy_codec.c - the compiled form of a user's policy as the policy
 * database stores it.  Integers are big-endian:
 *
 *   "MPUP" version(u8 = 1) greylist(u8 0|1) maxsize(u64) n(u16)
 *   n x [ action(u8 1 allow, 2 block) kind(u8 1 sender, 2 client, 3 helo)
 *         line(u32) patternlen(u16) pattern textlen(u16) text ]
 *
 * The bytes come from a process running as the user who wrote the file,
 * so the decoder trusts nothing: every length against what is left and
 * against the parser's limits, every value as the parser would check it,
 * and exactly the bytes given.  Regexes are compiled when first matched.
 */
#include "policy/user_policy_private.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define MAGIC "MPUP"
#define VERSION 1

static void put_u8(struct buf *b, unsigned v)
{
	buf_putc(b, (char)(unsigned char)v);
}

static void put_u16(struct buf *b, size_t v)
{
	put_u8(b, (unsigned)(v >> 8) & 0xff);
	put_u8(b, (unsigned)v & 0xff);
}

static void put_u32(struct buf *b, uint32_t v)
{
	put_u16(b, v >> 16);
	put_u16(b, v & 0xffff);
}

static void put_u64(struct buf *b, uint64_t v)
{
	put_u32(b, (uint32_t)(v >> 32));
	put_u32(b, (uint32_t)v);
}

static void put_str(struct buf *b, const char *s)
{
	size_t len = s ? strlen(s) : 0;
	put_u16(b, len);
	buf_append(b, s ? s : "", len);
}

void user_policy_encode(const struct user_policy *p, struct buf *out)
{
	buf_append(out, MAGIC, 4);
	put_u8(out, VERSION);
	put_u8(out, p->greylist ? 1 : 0);
	put_u64(out, p->maxsize);
	put_u16(out, p->nrules);
	for (size_t i = 0; i < p->nrules; i++) {
		const struct up_rule *r = &p->rules[i];
		put_u8(out, r->action == UPA_ALLOW ? 1 : 2);
		put_u8(out, (unsigned)r->kind);
		put_u32(out, (uint32_t)r->line);
		put_str(out, r->pattern);
		put_str(out, r->text);
	}
}

struct reader {
	const unsigned char *p;
	size_t left;
};

static int get(struct reader *rd, size_t n, uint64_t *v)
{
	if (rd->left < n)
		return -1;
	*v = 0;
	for (size_t i = 0; i < n; i++)
		*v = (*v << 8) | rd->p[i];
	rd->p += n;
	rd->left -= n;
	return 0;
}

/* A u16-counted string without NUL bytes; NULL (with *bad) if malformed. */
static char *get_str(struct reader *rd, size_t *len, int *bad)
{
	uint64_t n;
	if (get(rd, 2, &n) < 0 || rd->left < n || memchr(rd->p, '\0', (size_t)n) != NULL) {
		*bad = 1;
		return NULL;
	}
	char *s = xstrndup((const char *)rd->p, (size_t)n);
	rd->p += n;
	rd->left -= n;
	*len = (size_t)n;
	return s;
}

static int decode_rule(struct reader *rd, struct up_rule *r)
{
	uint64_t action, kind, line;
	size_t plen = 0, tlen = 0;
	const char *why;
	int bad = 0;

	if (get(rd, 1, &action) < 0 || get(rd, 1, &kind) < 0 || get(rd, 4, &line) < 0)
		return -1;
	if ((action != 1 && action != 2) || kind < UPK_SENDER || kind > UPK_HELO ||
	    line < 1 || line > USER_POLICY_MAX_FILE + 1)
		return -1;
	r->action = action == 1 ? UPA_ALLOW : UPA_BLOCK;
	r->kind = (enum up_kind)kind;
	r->line = (int)line;
	r->pattern = get_str(rd, &plen, &bad);
	if (bad)
		return -1;
	r->text = get_str(rd, &tlen, &bad);
	if (bad)
		return -1;
	if (tlen == 0) {
		free(r->text);
		r->text = NULL;
	} else if (r->action != UPA_BLOCK || up_check_text(r->text, tlen, &why) < 0) {
		return -1;
	}
	switch (r->kind) {
	case UPK_SENDER:
		if (up_check_glob(r->pattern, plen, &why) < 0)
			return -1;
		break;
	case UPK_CLIENT:
		if (up_parse_cidr(r->pattern, r, &why) < 0)
			return -1;
		break;
	case UPK_HELO:
		if (up_check_regex_body(r->pattern, plen, &why) < 0)
			return -1;
		break;
	}
	r->rule = up_rule_text(r->kind, r->pattern);
	return 0;
}

int user_policy_decode(const void *data, size_t len, struct user_policy **out)
{
	struct reader rd = { data, len };
	uint64_t version, greylist, maxsize, n;

	*out = NULL;
	if (len < 4 || memcmp(data, MAGIC, 4) != 0)
		return -1;
	rd.p += 4;
	rd.left -= 4;
	if (get(&rd, 1, &version) < 0 || version != VERSION ||
	    get(&rd, 1, &greylist) < 0 || greylist > 1 ||
	    get(&rd, 8, &maxsize) < 0 || get(&rd, 2, &n) < 0 || n > USER_POLICY_MAX_RULES)
		return -1;
	struct user_policy *p = xcalloc(1, sizeof(*p));
	p->greylist = (int)greylist;
	p->maxsize = maxsize;
	if (n > 0)
		p->rules = xcalloc((size_t)n, sizeof(*p->rules));
	size_t helo_rules = 0;
	for (size_t i = 0; i < n; i++) {
		p->nrules = i + 1;      /* so that free sees what is there */
		if (decode_rule(&rd, &p->rules[i]) < 0)
			goto bad;
		if (p->rules[i].kind == UPK_HELO && ++helo_rules > USER_POLICY_MAX_HELO_RULES)
			goto bad;
	}
	if (rd.left != 0)
		goto bad;
	*out = p;
	return 0;
bad:
	user_policy_free(p);
	return -1;
}
