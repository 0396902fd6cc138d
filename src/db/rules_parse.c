/*
 * rules_parse.c - parsing a rules instruction line: an optional condition
 * `if ...` at its start (parsed by rules/cond_parse.c, since a regex may
 * hold spaces, quotes and `;`), then instructions separated by `;`:
 * `maildir PATH`, `mbox PATH`, `pipe "COMMAND"` (each with the action
 * options uid= and gid=), `forward ADDR[, ADDR...]`, `discard`,
 * `reject "TEXT"` and `stop`.  The condition applies to every instruction
 * of the line.
 */
#include "db/rules_entry.h"
#include "rules/action_args.h"
#include "rules/cond.h"
#include "lib/buf.h"
#include "lib/privsep.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS 128
#define MAX_ARG RULES_ARG_MAX

struct token {
	char *text;
	int quoted;
	int separator;          /* an unquoted ';' */
};

struct tokens {
	struct token t[MAX_TOKENS];
	int n;
};

static void tokens_free(struct tokens *tk)
{
	for (int i = 0; i < tk->n; i++)
		free(tk->t[i].text);
	tk->n = 0;
}

static int push_token(struct tokens *tk, char *text, int quoted, int separator,
    char *err, size_t errlen)
{
	if (tk->n == MAX_TOKENS) {
		free(text);
		snprintf(err, errlen, "too many words (at most %d)", MAX_TOKENS);
		return -1;
	}
	tk->t[tk->n++] = (struct token){ text, quoted, separator };
	return 0;
}

/* A "quoted" word starting at *pp (on the opening quote). */
static char *lex_quoted(const char **pp, char *err, size_t errlen)
{
	const char *p = *pp + 1;
	size_t len = strlen(p);
	char *out = xmalloc(len + 1);
	size_t o = 0;

	for (; *p != '"'; p++) {
		if (*p == '\0') {
			free(out);
			snprintf(err, errlen, "missing closing quote");
			return NULL;
		}
		if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
			p++;
		out[o++] = *p;
	}
	out[o] = '\0';
	if (p[1] != '\0' && p[1] != ' ' && p[1] != '\t' && p[1] != ';') {
		free(out);
		snprintf(err, errlen, "a quoted word must end at a space");
		return NULL;
	}
	*pp = p + 1;
	return out;
}

static int lex(const char *s, struct tokens *tk, char *err, size_t errlen)
{
	tk->n = 0;
	for (const char *p = s;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		/* a comment the source reader left (after an odd '"' in a regex) */
		if (*p == '\0' || *p == '#')
			return 0;
		int r;
		if (*p == ';') {
			r = push_token(tk, xstrdup(";"), 0, 1, err, errlen);
			p++;
		} else if (*p == '"') {
			char *w = lex_quoted(&p, err, errlen);
			r = w ? push_token(tk, w, 1, 0, err, errlen) : -1;
		} else {
			const char *start = p;
			while (*p && *p != ' ' && *p != '\t' && *p != ';')
				p++;
			r = push_token(tk, xstrndup(start, (size_t)(p - start)), 0, 0, err, errlen);
		}
		if (r < 0) {
			tokens_free(tk);
			return -1;
		}
	}
}

static int check_path(const char *action, const char *path, char *err, size_t errlen)
{
	if (path[0] != '/' && strncmp(path, "~/", 2) != 0) {
		snprintf(err, errlen, "%s: path must be absolute or start with ~/: \"%s\"",
		    action, path);
		return -1;
	}
	if (strlen(path) > MAX_ARG) {
		snprintf(err, errlen, "%s: path longer than %d bytes", action, MAX_ARG);
		return -1;
	}
	for (const char *p = path; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			snprintf(err, errlen, "%s: control character in path", action);
			return -1;
		}
	}
	return 0;
}

static int resolve_uid(const char *name, int flags, struct rule_instruction *out,
    char *err, size_t errlen)
{
	gid_t primary;
	if (flags & RULES_VIRTUAL) {
		snprintf(err, errlen, "uid=%s: uid= is not available with home_base "
		    "(virtual accounts)", name);
		return -1;
	}
	if (privsep_lookup_user(name, &out->uid, &primary, NULL, NULL) < 0) {
		snprintf(err, errlen, "uid=%s: unknown account \"%s\"", name, name);
		return -1;
	}
	if (out->uid == 0) {
		snprintf(err, errlen, "uid=%s: refusing uid 0", name);
		return -1;
	}
	out->has_uid = 1;
	return 0;
}

static int resolve_gid(const char *name, struct rule_instruction *out,
    char *err, size_t errlen)
{
	if (privsep_lookup_group(name, &out->gid) < 0) {
		snprintf(err, errlen, "gid=%s: unknown group \"%s\"", name, name);
		return -1;
	}
	if (out->gid == 0) {
		snprintf(err, errlen, "gid=%s: refusing gid 0", name);
		return -1;
	}
	out->has_gid = 1;
	return 0;
}

/* Action options after the argument: uid=NAME gid=NAME. */
static int parse_options(const struct token *t, int n, int flags,
    struct rule_instruction *out, char *err, size_t errlen)
{
	for (int i = 0; i < n; i++) {
		const char *w = t[i].text;
		if (!t[i].quoted && strncmp(w, "uid=", 4) == 0 && w[4] != '\0') {
			if (out->has_uid) {
				snprintf(err, errlen, "uid= given twice");
				return -1;
			}
			if (resolve_uid(w + 4, flags, out, err, errlen) < 0)
				return -1;
		} else if (!t[i].quoted && strncmp(w, "gid=", 4) == 0 && w[4] != '\0') {
			if (out->has_gid) {
				snprintf(err, errlen, "gid= given twice");
				return -1;
			}
			if (resolve_gid(w + 4, out, err, errlen) < 0)
				return -1;
		} else if (!t[i].quoted && (strcmp(w, "uid=") == 0 || strcmp(w, "gid=") == 0)) {
			snprintf(err, errlen, "%s needs a value: %sNAME or %sNUMBER", w, w, w);
			return -1;
		} else {
			snprintf(err, errlen, "unknown option \"%s\" (uid= or gid=)", w);
			return -1;
		}
	}
	return 0;
}

static int parse_path_action(enum rule_action action, const struct token *t, int n,
    int flags, struct rule_instruction *out, char *err, size_t errlen)
{
	const char *name = rule_action_name(action);
	if (n < 2) {
		snprintf(err, errlen, "%s needs a path", name);
		return -1;
	}
	if (check_path(name, t[1].text, err, errlen) < 0)
		return -1;
	if (parse_options(t + 2, n - 2, flags, out, err, errlen) < 0)
		return -1;
	out->action = action;
	out->arg = xstrdup(t[1].text);
	return 0;
}

/* The words after the last argument of action name: none allowed. */
static int no_arguments(const char *name, const struct token *t, int n,
    char *err, size_t errlen)
{
	if (n == 0)
		return 0;
	if (!t[0].quoted && (strncmp(t[0].text, "uid=", 4) == 0 ||
	    strncmp(t[0].text, "gid=", 4) == 0))
		snprintf(err, errlen, "%s: uid= and gid= apply only to maildir, mbox and "
		    "pipe", name);
	else
		snprintf(err, errlen, "%s takes no arguments", name);
	return -1;
}

/* pipe "COMMAND" [options] and reject "TEXT": a quoted argument. */
static int parse_quoted_action(enum rule_action action, const struct token *t, int n,
    int flags, struct rule_instruction *out, char *err, size_t errlen)
{
	const char *name = rule_action_name(action);
	if (n < 2 || !t[1].quoted) {
		snprintf(err, errlen, "%s needs a \"%s\" in double quotes", name,
		    action == ACT_PIPE ? "command" : "text");
		return -1;
	}
	if (action == ACT_PIPE) {
		if (rule_command_check(t[1].text, err, errlen) < 0 ||
		    parse_options(t + 2, n - 2, flags, out, err, errlen) < 0)
			return -1;
	} else if (rule_reject_text_check(t[1].text, err, errlen) < 0 ||
	    no_arguments(name, t + 2, n - 2, err, errlen) < 0) {
		return -1;
	}
	out->action = action;
	out->arg = xstrdup(t[1].text);
	return 0;
}

/* forward ADDR[, ADDR...]: the words after forward, joined again. */
static int parse_forward(const struct token *t, int n, struct rule_instruction *out,
    char *err, size_t errlen)
{
	struct buf text = BUF_INIT;
	if (n < 2) {
		snprintf(err, errlen, "forward needs an address");
		return -1;
	}
	for (int i = 1; i < n; i++) {
		if (t[i].quoted) {
			snprintf(err, errlen, "forward: write addresses without quotes");
			goto bad;
		}
		if (strncmp(t[i].text, "uid=", 4) == 0 || strncmp(t[i].text, "gid=", 4) == 0) {
			snprintf(err, errlen, "forward: uid= and gid= apply only to maildir, "
			    "mbox and pipe");
			goto bad;
		}
		if (i > 1)
			buf_putc(&text, ' ');
		buf_puts(&text, t[i].text);
	}
	out->arg = rule_forward_parse(text.data, err, errlen);
	if (out->arg == NULL)
		goto bad;
	out->action = ACT_FORWARD;
	buf_free(&text);
	return 0;
bad:
	buf_free(&text);
	return -1;
}

/* One instruction from tokens t[0..n). */
static int parse_tokens(const struct token *t, int n, int flags,
    struct rule_instruction *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (n == 0) {
		snprintf(err, errlen, "empty instruction");
		return -1;
	}
	const char *w = t[0].text;
	if (t[0].quoted) {
		snprintf(err, errlen, "expected an instruction, not a quoted word");
		return -1;
	}
	if (strcmp(w, "maildir") == 0)
		return parse_path_action(ACT_MAILDIR, t, n, flags, out, err, errlen);
	if (strcmp(w, "mbox") == 0)
		return parse_path_action(ACT_MBOX, t, n, flags, out, err, errlen);
	if (strcmp(w, "pipe") == 0)
		return parse_quoted_action(ACT_PIPE, t, n, flags, out, err, errlen);
	if (strcmp(w, "reject") == 0)
		return parse_quoted_action(ACT_REJECT, t, n, flags, out, err, errlen);
	if (strcmp(w, "forward") == 0)
		return parse_forward(t, n, out, err, errlen);
	if (strcmp(w, "stop") == 0 || strcmp(w, "discard") == 0) {
		if (no_arguments(w, t + 1, n - 1, err, errlen) < 0)
			return -1;
		out->action = w[0] == 's' ? ACT_STOP : ACT_DISCARD;
		return 0;
	}
	if (strcmp(w, "if") == 0)
		snprintf(err, errlen, "a condition must start the line (it applies to "
		    "every instruction on the line)");
	else
		snprintf(err, errlen, "unknown instruction \"%.60s\"", w);
	return -1;
}

static const char *skip_blanks(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* Whether p starts with the word `if`. */
static int starts_with_if(const char *p)
{
	return p[0] == 'i' && p[1] == 'f' && (p[2] == '\0' || p[2] == ' ' || p[2] == '\t');
}

int rules_parse_instruction_flags(const char *line, int flags,
    struct rule_instruction *out, char *err, size_t errlen)
{
	struct tokens tk;
	memset(out, 0, sizeof(*out));
	if (starts_with_if(skip_blanks(line))) {
		snprintf(err, errlen, "a condition is not allowed here");
		return -1;
	}
	if (strlen(line) > RULES_LINE_MAX) {
		snprintf(err, errlen, "line longer than %d bytes", RULES_LINE_MAX);
		return -1;
	}
	if (lex(line, &tk, err, errlen) < 0)
		return -1;
	int r = -1;
	for (int i = 0; i < tk.n; i++) {
		if (tk.t[i].separator) {
			snprintf(err, errlen, "one instruction expected here, without ';'");
			goto out;
		}
	}
	r = parse_tokens(tk.t, tk.n, flags, out, err, errlen);
out:
	tokens_free(&tk);
	return r;
}

int rules_parse_instruction(const char *line, struct rule_instruction *out,
    char *err, size_t errlen)
{
	return rules_parse_instruction_flags(line, 0, out, err, errlen);
}

/* The instructions of a line (after its condition) into parsed[]; each
 * gets a copy of the condition.  Returns how many, or -1. */
static int parse_instructions(const char *p, int flags, int lineno,
    const struct rule_cond *cond, int ncond, struct rule_instruction *parsed,
    char *err, size_t errlen)
{
	struct tokens tk;
	int nparsed = 0, r = 0;

	if (lex(p, &tk, err, errlen) < 0)
		return -1;
	for (int start = 0; start <= tk.n && r == 0;) {
		int end = start;
		while (end < tk.n && !tk.t[end].separator)
			end++;
		r = parse_tokens(tk.t + start, end - start, flags, &parsed[nparsed], err, errlen);
		if (r == 0) {
			parsed[nparsed].line = lineno;
			parsed[nparsed].cond = rule_cond_dup(cond, ncond);
			parsed[nparsed++].ncond = ncond;
		}
		start = end + 1;
	}
	tokens_free(&tk);
	if (r < 0) {
		for (int i = 0; i < nparsed; i++)
			rule_instruction_free(&parsed[i]);
		return -1;
	}
	return nparsed;
}

int rules_parse_line(const char *line, int flags, int lineno,
    struct rules_entry *e, char *err, size_t errlen)
{
	struct rule_instruction parsed[MAX_TOKENS];
	struct rule_cond *cond = NULL;
	int ncond = 0;
	const char *p = skip_blanks(line);

	if (strlen(line) > RULES_LINE_MAX) {
		snprintf(err, errlen, "line longer than %d bytes", RULES_LINE_MAX);
		return -1;
	}
	if (starts_with_if(p)) {
		p += 2;
		if (rule_cond_parse(&p, &cond, &ncond, err, errlen) < 0)
			return -1;
	}
	int nparsed = parse_instructions(p, flags, lineno, cond, ncond, parsed, err, errlen);
	rule_cond_free(cond, ncond);
	if (nparsed < 0)
		return -1;
	e->instr = xreallocarray(e->instr, (size_t)e->ninstr + (size_t)nparsed,
	    sizeof(*e->instr));
	memcpy(e->instr + e->ninstr, parsed, (size_t)nparsed * sizeof(parsed[0]));
	e->ninstr += nparsed;
	return 0;
}
