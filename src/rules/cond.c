/*
 * cond.c - the condition syntax tree: names of test kinds and operators,
 * copying and freeing.
 */
#include "rules/cond.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name;
	enum rule_cond_kind kind;
} kinds[] = {
	{ "spam", COND_SPAM }, { "score", COND_SCORE }, { "size", COND_SIZE },
	{ "header", COND_HEADER }, { "subject", COND_SUBJECT }, { "body", COND_BODY },
	{ "sender", COND_SENDER }, { "rcpt", COND_RCPT }, { "extension", COND_EXTENSION },
};

#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

int rule_cond_kind_lookup(const char *word, size_t len, enum rule_cond_kind *kind)
{
	for (size_t i = 0; i < NKINDS; i++) {
		if (strlen(kinds[i].name) == len && memcmp(word, kinds[i].name, len) == 0) {
			*kind = kinds[i].kind;
			return 0;
		}
	}
	return -1;
}

const char *rule_cond_kind_name(enum rule_cond_kind k)
{
	for (size_t i = 0; i < NKINDS; i++) {
		if (kinds[i].kind == k)
			return kinds[i].name;
	}
	return "unknown";
}

const char *rule_cond_op_name(enum rule_cond_op op)
{
	switch (op) {
	case COND_OP_NONE: return "";
	case COND_OP_MATCH: return "~";
	case COND_OP_CONTAINS: return "contains";
	case COND_OP_GT: return ">";
	case COND_OP_GE: return ">=";
	case COND_OP_LT: return "<";
	case COND_OP_LE: return "<=";
	}
	return "?";
}

int rule_cond_kind_is_header(enum rule_cond_kind k)
{
	return k == COND_HEADER || k == COND_SUBJECT;
}

void rule_cond_free(struct rule_cond *c, int n)
{
	if (c == NULL)
		return;
	for (int i = 0; i < n; i++) {
		free(c[i].name);
		free(c[i].text);
	}
	free(c);
}

struct rule_cond *rule_cond_dup(const struct rule_cond *c, int n)
{
	if (c == NULL || n <= 0)
		return NULL;
	struct rule_cond *d = xcalloc((size_t)n, sizeof(*d));
	for (int i = 0; i < n; i++) {
		d[i] = c[i];
		d[i].name = c[i].name ? xstrdup(c[i].name) : NULL;
		d[i].text = c[i].text ? xstrdup(c[i].text) : NULL;
	}
	return d;
}
