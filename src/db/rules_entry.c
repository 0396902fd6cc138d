/*
 * rules_entry.c - the serialized form of a compiled rules entry.
 *
 * Layout (integers big-endian):
 *   'R' version(2) maxsize(u64) spam(u8: 0 default, 1 off, 2 on) n(u32)
 *   n x [ action(u8) flags(u8: 1 uid, 2 gid) line(u32) uid(u32) gid(u32)
 *         arglen(u32, 0xffffffff = none) arg  condlen(u32) cond ]
 * cond is the condition in the form of rules/cond_codec.c (condlen 0: no
 * condition).  Version 1 had no conditions: such a blob is still read when
 * every condlen is 0.
 * A blob crosses process boundaries (the database, the worker's job
 * message), so decoding checks every length and value and refuses trailing
 * bytes.
 */
#include "db/rules_entry.h"
#include "rules/cond.h"
#include "lib/xalloc.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENTRY_MAGIC 'R'
#define ENTRY_VERSION 2
#define ENTRY_VERSION_NO_COND 1
#define NO_ARG 0xffffffffu
#define FLAG_UID 1
#define FLAG_GID 2
#define INSTR_MIN_SIZE (1 + 1 + 4 + 4 + 4 + 4 + 4)
#define MAX_INSTR 100000

const char *rule_action_name(enum rule_action a)
{
	switch (a) {
	case ACT_MAILDIR: return "maildir";
	case ACT_MBOX: return "mbox";
	case ACT_STOP: return "stop";
	case ACT_PIPE: return "pipe";
	case ACT_FORWARD: return "forward";
	case ACT_DISCARD: return "discard";
	case ACT_REJECT: return "reject";
	}
	return "unknown";
}

int rule_action_writes_as_user(enum rule_action a)
{
	return a == ACT_MAILDIR || a == ACT_MBOX || a == ACT_PIPE;
}

int rules_check_default_delivery(const char *text, char *err, size_t errlen)
{
	struct rule_instruction ins;
	char why[512];

	if (rules_parse_instruction(text, &ins, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "default_delivery: %s", why);
		return -1;
	}
	int ok = rule_action_writes_as_user(ins.action);
	rule_instruction_free(&ins);
	if (!ok) {
		snprintf(err, errlen, "default_delivery: must be maildir, mbox or pipe");
		return -1;
	}
	return 0;
}

static int action_has_arg(enum rule_action a)
{
	return a != ACT_STOP && a != ACT_DISCARD;
}

void rule_instruction_free(struct rule_instruction *in)
{
	free(in->arg);
	rule_cond_free(in->cond, in->ncond);
	memset(in, 0, sizeof(*in));
}

void rules_entry_free(struct rules_entry *e)
{
	for (int i = 0; i < e->ninstr; i++)
		rule_instruction_free(&e->instr[i]);
	free(e->instr);
	memset(e, 0, sizeof(*e));
}

/* ---- encoding ---- */

static void put_u8(struct buf *b, unsigned v)
{
	unsigned char c = (unsigned char)v;
	buf_append(b, &c, 1);
}

static void put_u32(struct buf *b, uint32_t v)
{
	unsigned char c[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
		(unsigned char)(v >> 8), (unsigned char)v };
	buf_append(b, c, 4);
}

static void put_u64(struct buf *b, uint64_t v)
{
	put_u32(b, (uint32_t)(v >> 32));
	put_u32(b, (uint32_t)v);
}

static void encode_instruction(const struct rule_instruction *in, struct buf *out)
{
	put_u8(out, (unsigned)in->action);
	put_u8(out, (in->has_uid ? FLAG_UID : 0) | (in->has_gid ? FLAG_GID : 0));
	put_u32(out, in->line > 0 ? (uint32_t)in->line : 0);
	put_u32(out, in->has_uid ? (uint32_t)in->uid : 0);
	put_u32(out, in->has_gid ? (uint32_t)in->gid : 0);
	if (in->arg == NULL) {
		put_u32(out, NO_ARG);
	} else {
		size_t len = strlen(in->arg);
		put_u32(out, (uint32_t)len);
		buf_append(out, in->arg, len);
	}
	if (in->ncond > 0) {
		struct buf c = BUF_INIT;
		rule_cond_encode(in->cond, in->ncond, &c);
		put_u32(out, (uint32_t)c.len);
		buf_append(out, c.data, c.len);
		buf_free(&c);
	} else {
		put_u32(out, 0);
	}
}

void rules_entry_encode(const struct rules_entry *e, struct buf *out)
{
	put_u8(out, ENTRY_MAGIC);
	put_u8(out, ENTRY_VERSION);
	put_u64(out, e->maxsize);
	put_u8(out, e->spam < 0 ? 0 : e->spam == 0 ? 1 : 2);
	put_u32(out, e->ninstr > 0 ? (uint32_t)e->ninstr : 0);
	for (int i = 0; i < e->ninstr; i++)
		encode_instruction(&e->instr[i], out);
}

/* ---- decoding ---- */

struct reader {
	const unsigned char *p;
	size_t left;
	unsigned version;
};

static int get_bytes(struct reader *r, void *out, size_t n)
{
	if (r->left < n)
		return -1;
	memcpy(out, r->p, n);
	r->p += n;
	r->left -= n;
	return 0;
}

static int get_u8(struct reader *r, unsigned *v)
{
	unsigned char c;
	if (get_bytes(r, &c, 1) < 0)
		return -1;
	*v = c;
	return 0;
}

static int get_u32(struct reader *r, uint32_t *v)
{
	unsigned char c[4];
	if (get_bytes(r, c, 4) < 0)
		return -1;
	*v = (uint32_t)c[0] << 24 | (uint32_t)c[1] << 16 | (uint32_t)c[2] << 8 | c[3];
	return 0;
}

static int get_u64(struct reader *r, uint64_t *v)
{
	uint32_t hi, lo;
	if (get_u32(r, &hi) < 0 || get_u32(r, &lo) < 0)
		return -1;
	*v = (uint64_t)hi << 32 | lo;
	return 0;
}

static int valid_action(unsigned a)
{
	return a >= ACT_MAILDIR && a <= ACT_REJECT;
}

static int decode_arg(struct reader *r, struct rule_instruction *in)
{
	uint32_t len;
	if (get_u32(r, &len) < 0)
		return -1;
	if (len == NO_ARG)
		return action_has_arg(in->action) ? -1 : 0;
	if (!action_has_arg(in->action) || len > r->left)
		return -1;
	if (memchr(r->p, '\0', len) != NULL)
		return -1;
	in->arg = xstrndup((const char *)r->p, len);
	r->p += len;
	r->left -= len;
	return 0;
}

static int decode_cond(struct reader *r, struct rule_instruction *in)
{
	uint32_t len;
	if (get_u32(r, &len) < 0 || len > r->left)
		return -1;
	if (len == 0)
		return 0;
	if (r->version == ENTRY_VERSION_NO_COND ||
	    rule_cond_decode(r->p, len, &in->cond, &in->ncond) < 0)
		return -1;
	r->p += len;
	r->left -= len;
	return 0;
}

static int decode_instruction(struct reader *r, struct rule_instruction *in)
{
	unsigned action, flags;
	uint32_t line, uid, gid;

	memset(in, 0, sizeof(*in));
	if (get_u8(r, &action) < 0 || get_u8(r, &flags) < 0 || get_u32(r, &line) < 0 ||
	    get_u32(r, &uid) < 0 || get_u32(r, &gid) < 0)
		return -1;
	if (!valid_action(action) || (flags & ~(unsigned)(FLAG_UID | FLAG_GID)) ||
	    line > INT_MAX)
		return -1;
	in->action = (enum rule_action)action;
	in->line = (int)line;
	in->has_uid = (flags & FLAG_UID) != 0;
	in->has_gid = (flags & FLAG_GID) != 0;
	/* never run anything as root, whatever the blob says */
	if ((in->has_uid && uid == 0) || (in->has_gid && gid == 0))
		return -1;
	if ((in->has_uid || in->has_gid) && !rule_action_writes_as_user(in->action))
		return -1;
	in->uid = (uid_t)uid;
	in->gid = (gid_t)gid;
	if (decode_arg(r, in) < 0)
		return -1;
	return decode_cond(r, in);
}

static int decode_header(struct reader *r, struct rules_entry *out, uint32_t *n)
{
	unsigned magic, version, spam;
	if (get_u8(r, &magic) < 0 || get_u8(r, &version) < 0 || magic != ENTRY_MAGIC ||
	    (version != ENTRY_VERSION && version != ENTRY_VERSION_NO_COND))
		return -1;
	r->version = version;
	if (get_u64(r, &out->maxsize) < 0 || get_u8(r, &spam) < 0 || spam > 2 ||
	    get_u32(r, n) < 0)
		return -1;
	out->spam = spam == 0 ? -1 : spam == 1 ? 0 : 1;
	if (*n > MAX_INSTR || *n > r->left / INSTR_MIN_SIZE)
		return -1;
	return 0;
}

int rules_entry_decode(const void *blob, size_t len, struct rules_entry *out)
{
	struct reader r = { blob, len, 0 };
	uint32_t n;

	memset(out, 0, sizeof(*out));
	if (blob == NULL || decode_header(&r, out, &n) < 0)
		goto bad;
	if (n > 0)
		out->instr = xcalloc(n, sizeof(*out->instr));
	for (uint32_t i = 0; i < n; i++) {
		int rc = decode_instruction(&r, &out->instr[i]);
		out->ninstr = (int)i + 1;       /* so that free sees it */
		if (rc < 0)
			goto bad;
	}
	if (r.left != 0)
		goto bad;
	return 0;
bad:
	rules_entry_free(out);
	return -1;
}
