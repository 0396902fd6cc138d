/*
 * cond_parse.c - parsing the condition of a rules instruction:
 *
 *   COND [and COND]...      COND := [not] TEST
 *   TEST := spam | score OP NUMBER | size OP SIZE
 *         | header NAME STR | subject STR | body STR
 *         | sender STR | rcpt STR | extension STR
 *   OP   := > | >= | < | <=
 *   STR  := ~ /REGEX/[I] | contains "TEXT"
 *
 * The parser reads the line itself rather than a word list, because a
 * regex may contain spaces, quotes and `;`.  Everything is bounded:
 * RULE_COND_MAX tests, RULE_PATTERN_MAX bytes of regex, RULE_TEXT_MAX
 * bytes of text; no recursion.
 */
#include "rules/cond.h"
#include "rules/regex.h"
#include "lib/parse_util.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SNIP 40                 /* bytes of a bad word quoted in a message */

/* ---- scanning ---- */

static int is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static const char *skip_blanks(const char *p)
{
	while (is_blank(*p))
		p++;
	return p;
}

/* Length of the bare word at p (up to a blank or the end). */
static size_t word_len(const char *p)
{
	size_t n = 0;
	while (p[n] != '\0' && !is_blank(p[n]))
		n++;
	return n;
}

static int word_is(const char *p, size_t len, const char *w)
{
	return strlen(w) == len && memcmp(p, w, len) == 0;
}

static int snip_len(size_t len)
{
	return len > SNIP ? SNIP : (int)len;
}

static const char *snip_dots(size_t len)
{
	return len > SNIP ? "..." : "";
}

static int is_control(unsigned char c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

static int has_control(const char *s)
{
	for (; *s; s++) {
		if (is_control((unsigned char)*s))
			return 1;
	}
	return 0;
}

/* ---- operands ---- */

/* /REGEX/ or /REGEX/I at *pp (on the opening slash). */
static int parse_regex(const char **pp, const char *what, struct rule_cond *c,
    char *err, size_t errlen)
{
	const char *start = *pp + 1, *p = start;

	for (; *p != '/'; p++) {
		if (*p == '\\' && p[1] != '\0')
			p++;
		else if (*p == '\0' || *p == '\\')
			break;
	}
	if (*p != '/') {
		snprintf(err, errlen, "%s: missing closing / of the regex (a # after white "
		    "space starts a comment: write \\# in a regex)", what);
		return -1;
	}
	size_t len = (size_t)(p - start);
	if (len == 0) {
		snprintf(err, errlen, "%s: empty regex", what);
		return -1;
	}
	if (len > RULE_PATTERN_MAX) {
		snprintf(err, errlen, "%s: regex longer than %d bytes", what, RULE_PATTERN_MAX);
		return -1;
	}
	for (p++; *p != '\0' && !is_blank(*p); p++) {
		if (*p == 'I' && !c->caseful) {
			c->caseful = 1;
		} else if (*p == 'i') {
			snprintf(err, errlen, "%s: unknown regex flag 'i' (regexes are "
			    "case-insensitive already; /.../I makes one case-sensitive)", what);
			return -1;
		} else {
			size_t n = word_len(p);
			snprintf(err, errlen, "%s: unexpected \"%.*s%s\" after the regex "
			    "(the only flag is I, for case-sensitive)", what, snip_len(n), p,
			    snip_dots(n));
			return -1;
		}
	}
	char *pattern = xstrndup(start, len);
	char msg[300];
	if (has_control(pattern)) {
		snprintf(err, errlen, "%s: control character in regex", what);
	} else if (rule_regex_check(pattern, c->caseful, msg, sizeof(msg)) < 0) {
		snprintf(err, errlen, "%s: bad regex /%.*s%s/: %s", what, snip_len(len),
		    pattern, snip_dots(len), msg);
	} else {
		c->text = pattern;
		*pp = p;
		return 0;
	}
	free(pattern);
	return -1;
}

/* "TEXT" at *pp (on the opening quote), with \" and \\ escapes. */
static int parse_quoted(const char **pp, const char *what, char **out,
    char *err, size_t errlen)
{
	const char *p = *pp + 1;
	struct buf b = BUF_INIT;

	for (; *p != '"'; p++) {
		if (*p == '\0') {
			snprintf(err, errlen, "%s: missing closing quote", what);
			goto bad;
		}
		if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
			p++;
		if (b.len == RULE_TEXT_MAX) {
			snprintf(err, errlen, "%s: text longer than %d bytes", what, RULE_TEXT_MAX);
			goto bad;
		}
		buf_putc(&b, *p);
	}
	if (p[1] != '\0' && !is_blank(p[1])) {
		snprintf(err, errlen, "%s: a quoted text must end at a space", what);
		goto bad;
	}
	if (b.len == 0 || has_control(b.data)) {
		snprintf(err, errlen, "%s: %s", what, b.len == 0 ? "empty text" :
		    "control character in text");
		goto bad;
	}
	*out = buf_steal(&b);
	*pp = p + 1;
	return 0;
bad:
	buf_free(&b);
	return -1;
}

/* `~ /REGEX/` or `contains "TEXT"` after a text test. */
static int parse_string_op(const char **pp, const char *what, struct rule_cond *c,
    char *err, size_t errlen)
{
	const char *p = skip_blanks(*pp);
	size_t len = word_len(p);

	if (p[0] == '~' && (len == 1 || p[1] == '/')) {
		c->op = COND_OP_MATCH;
		p = skip_blanks(p + 1);
		if (*p == '/') {
			if (parse_regex(&p, what, c, err, errlen) < 0)
				return -1;
			*pp = p;
			return 0;
		}
		len = word_len(p);
		if (len == 0)
			snprintf(err, errlen, "%s ~: missing /REGEX/", what);
		else
			snprintf(err, errlen, "%s ~: expected a /REGEX/, not \"%.*s%s\"", what,
			    snip_len(len), p, snip_dots(len));
		return -1;
	}
	if (word_is(p, len, "contains")) {
		c->op = COND_OP_CONTAINS;
		p = skip_blanks(p + len);
		if (*p == '"') {
			if (parse_quoted(&p, what, &c->text, err, errlen) < 0)
				return -1;
			*pp = p;
			return 0;
		}
		len = word_len(p);
		if (len == 0)
			snprintf(err, errlen, "%s contains: missing \"TEXT\"", what);
		else
			snprintf(err, errlen, "%s contains: expected a \"quoted text\", not "
			    "\"%.*s%s\"", what, snip_len(len), p, snip_dots(len));
		return -1;
	}
	if (len == 0)
		snprintf(err, errlen, "%s: missing ~ /REGEX/ or contains \"TEXT\"", what);
	else
		snprintf(err, errlen, "%s: expected ~ /REGEX/ or contains \"TEXT\", not "
		    "\"%.*s%s\"", what, snip_len(len), p, snip_dots(len));
	return -1;
}

static int parse_cmp(const char **pp, const char *what, enum rule_cond_op *op,
    char *err, size_t errlen)
{
	const char *p = skip_blanks(*pp);
	size_t len = word_len(p);
	static const struct { const char *w; enum rule_cond_op op; } ops[] = {
		{ ">", COND_OP_GT }, { ">=", COND_OP_GE }, { "<", COND_OP_LT }, { "<=", COND_OP_LE },
	};
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (word_is(p, len, ops[i].w)) {
			*op = ops[i].op;
			*pp = p + len;
			return 0;
		}
	}
	if (len == 0)
		snprintf(err, errlen, "%s: missing >, >=, < or <=", what);
	else
		snprintf(err, errlen, "%s: expected >, >=, < or <= (with spaces around it), "
		    "not \"%.*s%s\"", what, snip_len(len), p, snip_dots(len));
	return -1;
}

/* A decimal number: [-]DIGITS[.DIGITS], at most 7 + 6 digits.  The value
 * is the double nearest to it (an exact integer divided by a power of 10). */
static int parse_decimal(const char *p, size_t len, double *out)
{
	size_t i = 0, ip = 0, fp = 0;
	int64_t mant = 0, scale = 1;
	int neg = 0;

	if (i < len && p[i] == '-') {
		neg = 1;
		i++;
	}
	for (; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
		if (++ip > 7)
			return -1;
		mant = mant * 10 + (p[i] - '0');
	}
	if (ip == 0)
		return -1;
	if (i < len && p[i] == '.') {
		for (i++; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
			if (++fp > 6)
				return -1;
			mant = mant * 10 + (p[i] - '0');
			scale *= 10;
		}
		if (fp == 0)
			return -1;
	}
	if (i != len)
		return -1;
	double v = (double)mant / (double)scale;
	*out = neg && mant != 0 ? -v : v;
	return 0;
}

static int parse_size_word(const char *p, size_t len, uint64_t *out)
{
	char word[32];
	if (len >= sizeof(word))
		return -1;
	memcpy(word, p, len);
	word[len] = '\0';
	return parse_size(word, out);
}

static int parse_number_operand(const char **pp, struct rule_cond *c,
    char *err, size_t errlen)
{
	const char *what = rule_cond_kind_name(c->kind);
	const char *p = skip_blanks(*pp);
	size_t len = word_len(p);

	if (len == 0) {
		snprintf(err, errlen, "%s %s: missing %s", what, rule_cond_op_name(c->op),
		    c->kind == COND_SCORE ? "number" : "size");
		return -1;
	}
	if (c->kind == COND_SCORE) {
		if (parse_decimal(p, len, &c->score) < 0 || c->score > RULE_SCORE_MAX ||
		    c->score < -RULE_SCORE_MAX) {
			snprintf(err, errlen, "score: bad number \"%.*s%s\" (like 5, -1.5 or "
			    "0.25; at most %.0f)", snip_len(len), p, snip_dots(len), RULE_SCORE_MAX);
			return -1;
		}
	} else if (parse_size_word(p, len, &c->size) < 0) {
		snprintf(err, errlen, "size: bad size \"%.*s%s\" (a number with K, M or G)",
		    snip_len(len), p, snip_dots(len));
		return -1;
	}
	*pp = p + len;
	return 0;
}

static int parse_header_name(const char **pp, struct rule_cond *c, char *err, size_t errlen)
{
	const char *p = skip_blanks(*pp);
	size_t len = word_len(p);

	if (len == 0 || word_is(p, len, "~") || word_is(p, len, "contains")) {
		snprintf(err, errlen, "header: missing the header name");
		return -1;
	}
	if (len > RULE_HEADER_NAME_MAX) {
		snprintf(err, errlen, "header: name longer than %d bytes", RULE_HEADER_NAME_MAX);
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (ch == ':' && i + 1 == len) {
			snprintf(err, errlen, "header %.*s: write the name without the colon",
			    (int)len - 1, p);
			return -1;
		}
		if (ch < 33 || ch > 126 || ch == ':') {
			snprintf(err, errlen, "header: bad header name \"%.*s%s\" (printable "
			    "ASCII without ':')", snip_len(len), p, snip_dots(len));
			return -1;
		}
	}
	c->name = xstrndup(p, len);
	*pp = p + len;
	return 0;
}

/* ---- tests ---- */

static void unknown_test(const char *p, size_t len, char *err, size_t errlen)
{
	for (int kind = COND_SPAM; kind <= COND_KIND_LAST; kind++) {
		const char *name = rule_cond_kind_name((enum rule_cond_kind)kind);
		size_t k = strlen(name);
		if (len > k && memcmp(p, name, k) == 0 && strchr("~<>=", p[k])) {
			snprintf(err, errlen, "unknown condition \"%.*s%s\" (put spaces around "
			    "the operator)", snip_len(len), p, snip_dots(len));
			return;
		}
	}
	snprintf(err, errlen, "unknown condition \"%.*s%s\" (spam, score, size, header, "
	    "subject, body, sender, rcpt or extension)", snip_len(len), p, snip_dots(len));
}

/* One [not] TEST at *pp; after names the word before it, for messages. */
static int parse_test(const char **pp, const char *after, struct rule_cond *c,
    char *err, size_t errlen)
{
	const char *p = skip_blanks(*pp);
	size_t len = word_len(p);

	memset(c, 0, sizeof(*c));
	if (word_is(p, len, "not")) {
		c->negate = 1;
		after = "not";
		p = skip_blanks(p + len);
		len = word_len(p);
		if (word_is(p, len, "not")) {
			snprintf(err, errlen, "\"not\" twice");
			return -1;
		}
	}
	if (len == 0) {
		snprintf(err, errlen, "missing condition after \"%s\"", after);
		return -1;
	}
	if (rule_cond_kind_lookup(p, len, &c->kind) < 0) {
		unknown_test(p, len, err, errlen);
		return -1;
	}
	p += len;

	int r = 0;
	char what[RULE_HEADER_NAME_MAX + 16];
	switch (c->kind) {
	case COND_SPAM:
		break;
	case COND_SCORE:
	case COND_SIZE:
		r = parse_cmp(&p, rule_cond_kind_name(c->kind), &c->op, err, errlen);
		if (r == 0)
			r = parse_number_operand(&p, c, err, errlen);
		break;
	case COND_HEADER:
		r = parse_header_name(&p, c, err, errlen);
		if (r == 0) {
			snprintf(what, sizeof(what), "header %s", c->name);
			r = parse_string_op(&p, what, c, err, errlen);
		}
		break;
	default:
		r = parse_string_op(&p, rule_cond_kind_name(c->kind), c, err, errlen);
		break;
	}
	if (r < 0) {
		free(c->name);
		free(c->text);
		memset(c, 0, sizeof(*c));
		return -1;
	}
	*pp = p;
	return 0;
}

/* After a test: `and` (1), the action (0), or a mistake (-1). */
static int after_test(const char **pp, char *err, size_t errlen)
{
	const char *p = skip_blanks(*pp);
	size_t len = word_len(p);
	enum rule_cond_kind k;

	*pp = p;
	if (word_is(p, len, "and")) {
		*pp = p + len;
		return 1;
	}
	if (len == 0) {
		snprintf(err, errlen, "missing action after the condition");
	} else if (word_is(p, len, "or")) {
		snprintf(err, errlen, "\"or\" is not supported: write one line for each "
		    "alternative");
	} else if (word_is(p, len, "not") || rule_cond_kind_lookup(p, len, &k) == 0) {
		snprintf(err, errlen, "expected \"and\" or an action before \"%.*s%s\"",
		    snip_len(len), p, snip_dots(len));
	} else if (p[0] == ';') {
		snprintf(err, errlen, "missing action after the condition");
	} else {
		return 0;
	}
	return -1;
}

int rule_cond_parse(const char **pp, struct rule_cond **out, int *n,
    char *err, size_t errlen)
{
	struct rule_cond tmp[RULE_COND_MAX];
	int count = 0, r;
	const char *p = *pp;
	const char *after = "if";

	*out = NULL;
	*n = 0;
	for (;;) {
		if (count == RULE_COND_MAX) {
			snprintf(err, errlen, "more than %d tests in one condition", RULE_COND_MAX);
			goto bad;
		}
		if (parse_test(&p, after, &tmp[count], err, errlen) < 0)
			goto bad;
		count++;
		after = "and";
		r = after_test(&p, err, errlen);
		if (r < 0)
			goto bad;
		if (r == 0)
			break;
	}
	*out = xcalloc((size_t)count, sizeof(**out));
	memcpy(*out, tmp, (size_t)count * sizeof(tmp[0]));
	*n = count;
	*pp = p;
	return 0;
bad:
	for (int i = 0; i < count; i++) {
		free(tmp[i].name);
		free(tmp[i].text);
	}
	return -1;
}
