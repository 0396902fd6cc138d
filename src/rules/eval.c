/*
 * eval.c - whether an instruction's condition holds for a message: each
 * test against the envelope, the spam verdict, the headers or the decoded
 * body, negated when written with `not`, all of them joined by `and`.
 */
#include "rules/eval.h"
#include "rules/cond.h"
#include "mime/mime.h"
#include "rules/regex.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SNIP 60                 /* bytes of a pattern quoted in a warning */

int rules_entry_needs(const struct rules_entry *e)
{
	int need = 0;
	for (int i = 0; i < e->ninstr; i++) {
		for (int j = 0; j < e->instr[i].ncond; j++) {
			const struct rule_cond *c = &e->instr[i].cond[j];
			if (rule_cond_kind_is_header(c->kind))
				need |= RULES_NEED_HEADERS;
			else if (c->kind == COND_BODY)
				need |= RULES_NEED_BODY;
		}
	}
	return need;
}

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static int ascii_caseeq(const char *a, const char *b)
{
	for (; *a && *b; a++, b++) {
		if (ascii_lower(*a) != ascii_lower(*b))
			return 0;
	}
	return *a == *b;
}

/* ASCII case-insensitive substring search, linear in the haystack (a
 * lowered copy and memmem). */
static int contains(const char *hay, size_t len, const char *needle)
{
	size_t nlen = strlen(needle);
	if (nlen > len)
		return 0;
	char *h = xmalloc(len + 1), *n = xmalloc(nlen + 1);
	for (size_t i = 0; i < len; i++)
		h[i] = ascii_lower(hay[i]);
	for (size_t i = 0; i < nlen; i++)
		n[i] = ascii_lower(needle[i]);
	int found = memmem(h, len, n, nlen) != NULL;
	free(h);
	free(n);
	return found;
}

struct eval {
	const struct rule_instruction *in;
	char *err;
	size_t errlen;
};

/* The first warning wins; later ones would only repeat the line. */
static void warn(struct eval *ev, const struct rule_cond *c, const char *what,
    const char *msg)
{
	if (ev->errlen == 0 || ev->err[0] != '\0')
		return;
	size_t len = c->text ? strlen(c->text) : 0;
	snprintf(ev->err, ev->errlen, "line %d: %s ~ /%.*s%s/: %s; counted as not matching",
	    ev->in->line, what, len > SNIP ? SNIP : (int)len, c->text ? c->text : "",
	    len > SNIP ? "..." : "", msg);
}

static int text_test(struct eval *ev, const struct rule_cond *c, const char *what,
    const char *s, size_t len)
{
	char msg[300];

	if (s == NULL) {
		s = "";
		len = 0;
	}
	if (c->op == COND_OP_CONTAINS)
		return contains(s, len, c->text);
	int r = rule_regex_match(c->text, c->caseful, s, len, msg, sizeof(msg));
	if (r < 0) {
		warn(ev, c, what, msg);
		return 0;
	}
	return r;
}

static int header_test(struct eval *ev, const struct rule_cond *c,
    const struct mime_message *m)
{
	const char *name = c->kind == COND_SUBJECT ? "Subject" : c->name;
	char what[RULE_HEADER_NAME_MAX + 16];

	snprintf(what, sizeof(what), "header %s", name);
	for (size_t i = 0; m != NULL && i < m->nheaders; i++) {
		const struct mime_header *h = &m->headers[i];
		if (h->name == NULL || !ascii_caseeq(h->name, name))
			continue;
		if (text_test(ev, c, what, h->value, h->value ? strlen(h->value) : 0))
			return 1;
	}
	return 0;
}

static int compare_u64(uint64_t a, enum rule_cond_op op, uint64_t b)
{
	switch (op) {
	case COND_OP_GT: return a > b;
	case COND_OP_GE: return a >= b;
	case COND_OP_LT: return a < b;
	case COND_OP_LE: return a <= b;
	default: return 0;
	}
}

static int compare_double(double a, enum rule_cond_op op, double b)
{
	switch (op) {
	case COND_OP_GT: return a > b;
	case COND_OP_GE: return a >= b;
	case COND_OP_LT: return a < b;
	case COND_OP_LE: return a <= b;
	default: return 0;
	}
}

static int test_matches(struct eval *ev, const struct rule_cond *c,
    const struct rule_context *ctx)
{
	const struct mime_message *m = ctx->msg;

	switch (c->kind) {
	case COND_SPAM:
		return ctx->spam != 0;
	case COND_SCORE:
		return compare_double(ctx->score, c->op, c->score);
	case COND_SIZE:
		return compare_u64(ctx->size, c->op, c->size);
	case COND_HEADER:
	case COND_SUBJECT:
		if (m == NULL && ev->errlen > 0 && ev->err[0] == '\0')
			snprintf(ev->err, ev->errlen, "line %d: headers needed but not given",
			    ev->in->line);
		return header_test(ev, c, m);
	case COND_BODY:
		if (m == NULL && ev->errlen > 0 && ev->err[0] == '\0')
			snprintf(ev->err, ev->errlen, "line %d: body needed but not given",
			    ev->in->line);
		return text_test(ev, c, "body", m ? m->body_text : NULL,
		    m ? m->body_text_len : 0);
	case COND_SENDER:
		return text_test(ev, c, "sender", ctx->sender,
		    ctx->sender ? strlen(ctx->sender) : 0);
	case COND_RCPT:
		return text_test(ev, c, "rcpt", ctx->rcpt, ctx->rcpt ? strlen(ctx->rcpt) : 0);
	case COND_EXTENSION:
		return text_test(ev, c, "extension", ctx->extension,
		    ctx->extension ? strlen(ctx->extension) : 0);
	}
	return 0;
}

int rule_condition_holds(const struct rule_instruction *in,
    const struct rule_context *ctx, char *err, size_t errlen)
{
	struct eval ev = { in, err, errlen };

	if (errlen > 0)
		err[0] = '\0';
	for (int i = 0; i < in->ncond; i++) {
		const struct rule_cond *c = &in->cond[i];
		if (test_matches(&ev, c, ctx) == c->negate)
			return 0;
	}
	return 1;
}
