/*
 * cond.h - the conditions of rules instructions (`if COND and COND ...`):
 * their syntax tree, parser, serialized form and printable form.
 *
 * The grammar has only `and` and `not`, so an instruction's condition is a
 * flat list of tests that must all hold, each one possibly negated.  Regexes
 * are kept as pattern text; they are compiled (and checked) with PCRE2 when
 * parsed, and compiled again, once per process, when evaluated (eval.h).
 */
#ifndef MP_RULES_COND_H
#define MP_RULES_COND_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define RULE_COND_MAX 64                /* tests in one condition */
#define RULE_PATTERN_MAX 4096           /* bytes of a regex between the slashes */
#define RULE_TEXT_MAX 1024              /* bytes of a `contains` text */
#define RULE_HEADER_NAME_MAX 128
#define RULE_SCORE_MAX 1000000.0        /* |N| in `score OP N` */

enum rule_cond_kind {
	COND_SPAM = 1,          /* the spam verdict */
	COND_SCORE,             /* the spam score, compared with .score */
	COND_SIZE,              /* the message size, compared with .size */
	COND_HEADER,            /* every header .name */
	COND_SUBJECT,           /* every Subject header */
	COND_BODY,              /* the decoded body text */
	COND_SENDER,            /* the envelope sender ("" for <>) */
	COND_RCPT,              /* the envelope recipient */
	COND_EXTENSION,         /* the +detail of the recipient ("" for none) */
};
#define COND_KIND_LAST COND_EXTENSION

enum rule_cond_op {
	COND_OP_NONE = 0,       /* spam */
	COND_OP_MATCH,          /* ~ /REGEX/ */
	COND_OP_CONTAINS,       /* contains "TEXT" (ASCII case-insensitive) */
	COND_OP_GT,             /* > */
	COND_OP_GE,             /* >= */
	COND_OP_LT,             /* < */
	COND_OP_LE,             /* <= */
};
#define COND_OP_LAST COND_OP_LE

struct rule_cond {
	enum rule_cond_kind kind;
	enum rule_cond_op op;
	int negate;             /* written with `not` */
	int caseful;            /* a regex written /.../I */
	char *name;             /* COND_HEADER: the header name, else NULL */
	char *text;             /* the regex (as written between the slashes)
	                         * or the contains text, else NULL */
	double score;           /* COND_SCORE */
	uint64_t size;          /* COND_SIZE */
};

/* Parse the tests of a condition: *pp points just after the word `if`.
 * On success *pp is left at the first word after the last test (the
 * action), *out holds *n tests (malloc'd) and 0 is returned; otherwise -1
 * with a message in err and nothing allocated.  Regexes are compiled to
 * check them; the message then carries PCRE2's reason and offset. */
int rule_cond_parse(const char **pp, struct rule_cond **out, int *n,
    char *err, size_t errlen);

/* Whether a test kind needs the message headers or body (eval.h flags). */
int rule_cond_kind_is_header(enum rule_cond_kind k);

struct rule_cond *rule_cond_dup(const struct rule_cond *c, int n);
void rule_cond_free(struct rule_cond *c, int n);

/* Serialized form: n(u8) then per test kind(u8) op(u8) flags(u8) and the
 * operands; see cond_codec.c.  decode takes exactly len bytes, checks every
 * length and value, and returns 0, or -1 (nothing allocated). */
void rule_cond_encode(const struct rule_cond *c, int n, struct buf *out);
int rule_cond_decode(const void *data, size_t len, struct rule_cond **out, int *n);

/* Append the printable form, e.g. `header List-Id ~ /x/ and not spam`. */
void rule_cond_format(const struct rule_cond *c, int n, struct buf *out);
const char *rule_cond_kind_name(enum rule_cond_kind k);
/* The kind named by word[0..len) ("spam", "header", ...): 0, or -1. */
int rule_cond_kind_lookup(const char *word, size_t len, enum rule_cond_kind *kind);
const char *rule_cond_op_name(enum rule_cond_op op);

#endif
