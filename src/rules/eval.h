/*
 * eval.h - evaluating the conditions of rules instructions against one
 * message and its envelope, for the delivery worker and `mailprocctl test`.
 *
 * Regexes are compiled once per process (rules/regex.h) and matched with
 * match, depth and heap limits: a regex that hits a limit counts as not
 * matching, and the evaluation says so in its warning text.
 */
#ifndef MP_RULES_EVAL_H
#define MP_RULES_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "db/rules_entry.h"
#include "lib/buf.h"

struct mime_message;            /* mime/mime.h */

struct rule_context {
	const char *sender;     /* envelope sender, "" for <> */
	const char *rcpt;       /* envelope recipient */
	const char *extension;  /* the +detail, "" when none */
	uint64_t size;          /* message size */
	int spam;               /* spam verdict; 0 until the spam engine lands */
	double score;           /* 0 until then */
	const struct mime_message *msg; /* headers and decoded body; may be NULL
	                                 * when rules_entry_needs() says neither
	                                 * is needed */
};

/* What an entry's conditions need, so that the worker parses the message
 * only when needed. */
#define RULES_NEED_HEADERS 0x1
#define RULES_NEED_BODY    0x2
int rules_entry_needs(const struct rules_entry *e);

/* 1 the instruction's condition holds (always, without one), 0 it does
 * not.  Tests run left to right and stop at the first that fails.  A regex
 * that cannot be decided (match/depth/heap limit, or a pattern that does not
 * compile) counts as not matching (so `not` of it holds) and is described
 * in err, with the source line, for the worker to log; err is "" when
 * there is nothing to report.  A NULL string in ctx counts as "", a NULL
 * msg as a message without headers or body (with a warning when a test
 * needed it). */
int rule_condition_holds(const struct rule_instruction *in,
    const struct rule_context *ctx, char *err, size_t errlen);

/* Append the printable form of the instruction's condition, e.g.
 * `header List-Id ~ /x/ and not spam`; nothing when it has none. */
void rule_condition_format(const struct rule_instruction *in, struct buf *out);

#endif
