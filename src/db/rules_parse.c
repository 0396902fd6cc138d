/*
 * rules_parse.c - parsing rules instructions: `maildir PATH`, `mbox PATH`,
 * `stop`, with action options uid= and gid=, several per line with `;`.
 *
 * Conditions (`if ...`) and the other actions come in a later issue; they
 * are recognised here only to say so clearly.
 */
#include "db/rules_entry.h"
#include "lib/privsep.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS 64
#define MAX_ARG 4096

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
		if (*p == '\0')
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

static int is_later_action(const char *w)
{
	static const char *const later[] = { "pipe", "forward", "discard", "reject" };
	for (size_t i = 0; i < sizeof(later) / sizeof(later[0]); i++) {
		if (strcmp(w, later[i]) == 0)
			return 1;
	}
	return 0;
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
	if (strcmp(w, "stop") == 0) {
		if (n > 1) {
			snprintf(err, errlen, "stop takes no arguments");
			return -1;
		}
		out->action = ACT_STOP;
		return 0;
	}
	if (strcmp(w, "if") == 0)
		snprintf(err, errlen, "conditions are not supported yet");
	else if (is_later_action(w))
		snprintf(err, errlen, "\"%s\" is not supported yet", w);
	else
		snprintf(err, errlen, "unknown instruction \"%s\"", w);
	return -1;
}

int rules_parse_instruction_flags(const char *line, int flags,
    struct rule_instruction *out, char *err, size_t errlen)
{
	struct tokens tk;
	memset(out, 0, sizeof(*out));
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

int rules_parse_line(const char *line, int flags, int lineno,
    struct rules_entry *e, char *err, size_t errlen)
{
	struct tokens tk;
	struct rule_instruction parsed[MAX_TOKENS];
	int nparsed = 0;
	int r = 0;

	if (lex(line, &tk, err, errlen) < 0)
		return -1;
	for (int start = 0; start <= tk.n && r == 0;) {
		int end = start;
		while (end < tk.n && !tk.t[end].separator)
			end++;
		r = parse_tokens(tk.t + start, end - start, flags, &parsed[nparsed], err, errlen);
		if (r == 0)
			parsed[nparsed++].line = lineno;
		start = end + 1;
	}
	tokens_free(&tk);
	if (r < 0) {
		for (int i = 0; i < nparsed; i++)
			rule_instruction_free(&parsed[i]);
		return -1;
	}
	e->instr = xreallocarray(e->instr, (size_t)e->ninstr + (size_t)nparsed,
	    sizeof(*e->instr));
	memcpy(e->instr + e->ninstr, parsed, (size_t)nparsed * sizeof(parsed[0]));
	e->ninstr += nparsed;
	return 0;
}
