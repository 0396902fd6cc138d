/*
 * cond_format.c - the printable form of a condition, as it would be
 * written in the rules source (`header List-Id ~ /x/ and not spam`), for
 * `mailprocctl test` and `db lookup` output and for log lines.  Numbers
 * are printed without the locale.
 */
#include "rules/cond.h"
#include "rules/eval.h"

#include <inttypes.h>
#include <string.h>

static void format_score(double score, struct buf *out)
{
	double a = score < 0 ? -score : score;
	uint64_t micro = (uint64_t)(a * 1e6 + 0.5);     /* |score| <= RULE_SCORE_MAX */
	uint64_t frac = micro % 1000000;

	buf_printf(out, "%s%" PRIu64, score < 0 && micro != 0 ? "-" : "", micro / 1000000);
	if (frac == 0)
		return;
	char digits[8];
	int n = 6;
	for (int i = 5; i >= 0; i--, frac /= 10)
		digits[i] = (char)('0' + frac % 10);
	while (digits[n - 1] == '0')
		n--;
	buf_printf(out, ".%.*s", n, digits);
}

static void format_size(uint64_t size, struct buf *out)
{
	static const char units[] = "GMK";
	for (int i = 0; i < 3; i++) {
		uint64_t unit = 1ULL << (10 * (3 - i));
		if (size != 0 && size % unit == 0) {
			buf_printf(out, "%" PRIu64 "%c", size / unit, units[i]);
			return;
		}
	}
	buf_printf(out, "%" PRIu64, size);
}

static void format_quoted(const char *s, struct buf *out)
{
	buf_putc(out, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			buf_putc(out, '\\');
		buf_putc(out, *s);
	}
	buf_putc(out, '"');
}

static void format_one(const struct rule_cond *c, struct buf *out)
{
	if (c->negate)
		buf_puts(out, "not ");
	buf_puts(out, rule_cond_kind_name(c->kind));
	switch (c->kind) {
	case COND_SPAM:
		return;
	case COND_SCORE:
		buf_printf(out, " %s ", rule_cond_op_name(c->op));
		format_score(c->score, out);
		return;
	case COND_SIZE:
		buf_printf(out, " %s ", rule_cond_op_name(c->op));
		format_size(c->size, out);
		return;
	default:
		break;
	}
	if (c->kind == COND_HEADER)
		buf_printf(out, " %s", c->name);
	if (c->op == COND_OP_MATCH) {
		buf_printf(out, " ~ /%s/%s", c->text, c->caseful ? "I" : "");
	} else {
		buf_puts(out, " contains ");
		format_quoted(c->text, out);
	}
}

void rule_cond_format(const struct rule_cond *c, int n, struct buf *out)
{
	for (int i = 0; i < n; i++) {
		if (i > 0)
			buf_puts(out, " and ");
		format_one(&c[i], out);
	}
}

void rule_condition_format(const struct rule_instruction *in, struct buf *out)
{
	rule_cond_format(in->cond, in->ncond, out);
}
