/*
 * user_policy_parse.c - the parser of ~/.mailprocd/policy, the file a user
 * writes (format in mailprocd.policy(5) and user_policy.h).
 *
 * Line by line; a word is a bare word, a "quoted text" or a /regex/ (a
 * backslash escapes the next byte, so \/ is a slash); a # at the start of
 * a word starts a comment.  Every error names its line; the parser goes
 * on to report the others (up to MAX_ERRORS).  Nothing here runs with
 * more privilege than the file's owner: the sync parses in a process that
 * has become that user.
 */
#include "policy/user_policy_private.h"
#include "rules/regex.h"
#include "lib/parse_util.h"
#include "lib/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_WORDS 5
#define MAX_ERRORS 50
#define SNIP 40

enum word_type { W_BARE, W_QUOTED, W_REGEX };

struct word {
	enum word_type type;
	const char *s;          /* the contents, without quotes or slashes */
	size_t len;
};

struct parser {
	struct user_policy *p;
	void (*report)(void *arg, int line, const char *msg);
	void *arg;
	int errors;
	int greylist_line, maxsize_line;
	int helo_rules;
	size_t cap;
};

static void error(struct parser *ps, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void error(struct parser *ps, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	ps->errors++;
	if (ps->errors > MAX_ERRORS)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ps->report != NULL)
		ps->report(ps->arg, line, msg);
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static int snip(size_t len)
{
	return len > SNIP ? SNIP : (int)len;
}

/* Split a line into words: the count, or -1 with the error in *why. */
static int split(const char *p, const char *end, struct word *w, const char **why)
{
	int n = 0;

	for (;;) {
		while (p < end && is_blank(*p))
			p++;
		if (p == end || *p == '#')
			return n;
		if (n == MAX_WORDS) {
			*why = "too many words on the line";
			return -1;
		}
		const char *start = p;
		if (*p == '"') {
			start = ++p;
			while (p < end && *p != '"')
				p++;
			if (p == end) {
				*why = "missing closing \" of the text";
				return -1;
			}
			w[n] = (struct word){ W_QUOTED, start, (size_t)(p - start) };
			p++;
		} else if (*p == '/') {
			start = ++p;
			while (p < end && *p != '/') {
				if (*p == '\\' && p + 1 < end)
					p++;
				p++;
			}
			if (p >= end) {
				*why = "missing closing / of the regex";
				return -1;
			}
			w[n] = (struct word){ W_REGEX, start, (size_t)(p - start) };
			p++;
		} else {
			while (p < end && !is_blank(*p))
				p++;
			w[n] = (struct word){ W_BARE, start, (size_t)(p - start) };
		}
		if (p < end && !is_blank(*p)) {
			*why = "a word must end with white space after a quote or a regex";
			return -1;
		}
		n++;
	}
}

static int word_is(const struct word *w, const char *s)
{
	return w->type == W_BARE && strlen(s) == w->len && strncasecmp(w->s, s, w->len) == 0;
}

static struct up_rule *new_rule(struct parser *ps)
{
	struct user_policy *p = ps->p;
	if (p->nrules == ps->cap) {
		ps->cap = ps->cap ? ps->cap * 2 : 8;
		p->rules = xreallocarray(p->rules, ps->cap, sizeof(*p->rules));
	}
	struct up_rule *r = &p->rules[p->nrules++];
	memset(r, 0, sizeof(*r));
	return r;
}

/* block|allow KIND VALUE ["TEXT"] */
static void parse_rule(struct parser *ps, int line, const struct word *w, int n)
{
	enum user_policy_action action = word_is(&w[0], "block") ? UPA_BLOCK : UPA_ALLOW;
	const char *verb = action == UPA_BLOCK ? "block" : "allow";
	struct up_rule tmp;
	enum up_kind kind;
	const char *why = NULL;
	char msg[300];

	memset(&tmp, 0, sizeof(tmp));
	if (n < 2) {
		error(ps, line, "%s: expected sender, client or helo", verb);
		return;
	}
	if (word_is(&w[1], "sender"))
		kind = UPK_SENDER;
	else if (word_is(&w[1], "client"))
		kind = UPK_CLIENT;
	else if (word_is(&w[1], "helo"))
		kind = UPK_HELO;
	else {
		error(ps, line, "%s: unknown test \"%.*s\" (expected sender, client or helo)",
		    verb, snip(w[1].len), w[1].s);
		return;
	}
	if (n < 3) {
		error(ps, line, "%s %s: missing %s", verb, kind == UPK_SENDER ? "sender" :
		    kind == UPK_CLIENT ? "client" : "helo", kind == UPK_SENDER ? "glob" :
		    kind == UPK_CLIENT ? "address or network" : "/regex/");
		return;
	}
	const struct word *v = &w[2];
	char *value = xstrndup(v->s, v->len);
	switch (kind) {
	case UPK_SENDER:
		if (v->type != W_BARE || up_check_glob(v->s, v->len, &why) < 0) {
			error(ps, line, "sender: %s", why ? why : "expected a glob like *@example.test");
			goto fail;
		}
		break;
	case UPK_CLIENT:
		if (v->type != W_BARE || up_parse_cidr(value, &tmp, &why) < 0) {
			error(ps, line, "client \"%.*s\": %s", snip(v->len), v->s,
			    why ? why : "expected an address or a network like 192.0.2.0/24");
			goto fail;
		}
		break;
	case UPK_HELO:
		if (v->type != W_REGEX) {
			error(ps, line, "helo: expected a /regex/");
			goto fail;
		}
		if (up_check_regex_body(v->s, v->len, &why) < 0) {
			error(ps, line, "helo: %s", why);
			goto fail;
		}
		if (rule_regex_check(value, 0, msg, sizeof(msg)) < 0) {
			error(ps, line, "helo: bad regex /%.*s/: %s", snip(v->len), v->s, msg);
			goto fail;
		}
		break;
	}
	const char *text = NULL;
	size_t text_len = 0;
	if (n >= 4) {
		if (w[3].type != W_QUOTED) {
			error(ps, line, "unexpected \"%.*s\" after the %s", snip(w[3].len), w[3].s,
			    kind == UPK_HELO ? "regex" : kind == UPK_CLIENT ? "network" : "glob");
			goto fail;
		}
		if (action != UPA_BLOCK) {
			error(ps, line, "a \"text\" goes with block only");
			goto fail;
		}
		if (up_check_text(w[3].s, w[3].len, &why) < 0) {
			error(ps, line, "text: %s", why);
			goto fail;
		}
		text = w[3].s;
		text_len = w[3].len;
	}
	if (n >= 5) {
		error(ps, line, "unexpected \"%.*s\" at the end of the line", snip(w[4].len), w[4].s);
		goto fail;
	}
	if (ps->p->nrules >= USER_POLICY_MAX_RULES) {
		error(ps, line, "more than %d rules", USER_POLICY_MAX_RULES);
		goto fail;
	}
	if (kind == UPK_HELO && ps->helo_rules >= USER_POLICY_MAX_HELO_RULES) {
		error(ps, line, "more than %d helo rules", USER_POLICY_MAX_HELO_RULES);
		goto fail;
	}
	if (kind == UPK_HELO)
		ps->helo_rules++;
	struct up_rule *r = new_rule(ps);
	*r = tmp;
	r->action = action;
	r->kind = kind;
	r->line = line;
	r->pattern = value;
	r->text = text_len > 0 ? xstrndup(text, text_len) : NULL;
	r->rule = up_rule_text(kind, value);
	return;
fail:
	free(value);
}

static void parse_greylist(struct parser *ps, int line, const struct word *w, int n)
{
	if (n != 2 || !(word_is(&w[1], "on") || word_is(&w[1], "off"))) {
		error(ps, line, "greylist: expected on or off");
		return;
	}
	if (ps->greylist_line != 0) {
		error(ps, line, "greylist given twice (first on line %d)", ps->greylist_line);
		return;
	}
	ps->greylist_line = line;
	ps->p->greylist = word_is(&w[1], "on");
}

static void parse_maxsize(struct parser *ps, int line, const struct word *w, int n)
{
	char value[32];
	uint64_t size;

	if (n != 2 || w[1].type != W_BARE || w[1].len >= sizeof(value)) {
		error(ps, line, "maxsize: expected a size like 5M");
		return;
	}
	memcpy(value, w[1].s, w[1].len);
	value[w[1].len] = '\0';
	if (parse_size(value, &size) < 0 || size == 0) {
		error(ps, line, "maxsize: bad size \"%s\" (a number over 0, with K, M or G)",
		    value);
		return;
	}
	if (ps->maxsize_line != 0) {
		error(ps, line, "maxsize given twice (first on line %d)", ps->maxsize_line);
		return;
	}
	ps->maxsize_line = line;
	ps->p->maxsize = size;
}

static void parse_line(struct parser *ps, int line, const char *p, const char *end)
{
	struct word w[MAX_WORDS];
	const char *why = NULL;

	if (memchr(p, '\0', (size_t)(end - p)) != NULL) {
		error(ps, line, "NUL byte in the line");
		return;
	}
	int n = split(p, end, w, &why);
	if (n < 0) {
		error(ps, line, "%s", why);
		return;
	}
	if (n == 0)
		return;
	if (word_is(&w[0], "block") || word_is(&w[0], "allow"))
		parse_rule(ps, line, w, n);
	else if (word_is(&w[0], "greylist"))
		parse_greylist(ps, line, w, n);
	else if (word_is(&w[0], "maxsize"))
		parse_maxsize(ps, line, w, n);
	else
		error(ps, line, "unknown keyword \"%.*s\" (expected block, allow, greylist "
		    "or maxsize)", snip(w[0].len), w[0].s);
}

int user_policy_parse(const char *text, size_t len, struct user_policy **out,
    void (*report)(void *arg, int line, const char *msg), void *arg)
{
	struct parser ps = { .report = report, .arg = arg };

	*out = NULL;
	if (len > USER_POLICY_MAX_FILE) {
		error(&ps, 0, "file larger than %d bytes", USER_POLICY_MAX_FILE);
		return ps.errors;
	}
	ps.p = xcalloc(1, sizeof(*ps.p));
	const char *p = text, *end = text + len;
	for (int line = 1; p < end && ps.errors <= MAX_ERRORS; line++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;
		const char *stop = eol;
		if (stop > p && stop[-1] == '\r')
			stop--;
		parse_line(&ps, line, p, stop);
		p = nl ? nl + 1 : end;
	}
	if (ps.errors > MAX_ERRORS && report != NULL)
		report(arg, 0, "too many errors, the rest of the file was not read");
	if (ps.errors > 0) {
		user_policy_free(ps.p);
		return ps.errors;
	}
	*out = ps.p;
	return 0;
}
