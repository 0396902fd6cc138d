/*
 * compile_rules.c - the `rules` source: key lines with entry options
 * (maxsize=SIZE, spam=on|off) at column 0, then indented instruction lines
 * (conditions and actions: db/rules_parse.c, rules/cond_parse.c), each
 * entry bounded in instructions and in encoded size; and the check that
 * every entry writing as a user has an account.
 */
#include "conf/config.h"
#include "db/address.h"
#include "db/compile_private.h"
#include "lib/buf.h"
#include "lib/parse_util.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define MAX_KEY_WORDS 16
#define MAX_INSTRUCTIONS 1000

struct entry_options {
	int have_maxsize, have_spam;
};

static void entry_option(struct compile *c, const char *file, int line,
    const char *opt, struct rec *r, struct entry_options *seen)
{
	if (strncmp(opt, "maxsize=", 8) == 0) {
		if (seen->have_maxsize++)
			compile_error(c, file, line, "maxsize= given twice");
		else if (parse_size(opt + 8, &r->entry.maxsize) < 0)
			compile_error(c, file, line, "bad size \"%s\" in maxsize= "
			    "(a number with K, M or G)", opt + 8);
		else
			return;
	} else if (strncmp(opt, "spam=", 5) == 0) {
		if (seen->have_spam++)
			compile_error(c, file, line, "spam= given twice");
		else if (strcmp(opt + 5, "on") == 0)
			r->entry.spam = 1;
		else if (strcmp(opt + 5, "off") == 0)
			r->entry.spam = 0;
		else
			compile_error(c, file, line, "spam= expects on or off, not \"%s\"", opt + 5);
		if (r->entry.spam >= 0)
			return;
	} else {
		compile_error(c, file, line, "unknown option \"%s\" (maxsize= or spam=)", opt);
	}
	r->valid = 0;
}

static void key_line(struct compile *c, const char *file, int line, char *text)
{
	char *w[MAX_KEY_WORDS];
	char err[256];
	struct entry_options seen = { 0 };
	int n = compile_split_words(text, w, MAX_KEY_WORDS);

	c->cur_rule = NULL;
	if (n < 0) {
		compile_error(c, file, line, "too many words");
		return;
	}
	char *key = address_key_normalise(w[0], err, sizeof(err));
	if (key == NULL) {
		compile_error(c, file, line, "%s", err);
		/* keep reading its instructions, for their errors only */
		c->cur_rule = table_add_orphan(&c->rules, line);
		return;
	}
	c->cur_rule = table_add(c, &c->rules, file, line, key);
	free(key);
	for (int i = 1; i < n; i++)
		entry_option(c, file, line, w[i], c->cur_rule, &seen);
}

static void instruction_line(struct compile *c, const char *file, int line, char *text)
{
	char err[512];
	struct rec *r = c->cur_rule;

	if (r == NULL) {
		compile_error(c, file, line, "instruction before any key line "
		    "(a key starts at the beginning of a line)");
		return;
	}
	if (r->entry.ninstr >= MAX_INSTRUCTIONS) {
		compile_error(c, file, line, "more than %d instructions in one entry",
		    MAX_INSTRUCTIONS);
		r->valid = 0;
		return;
	}
	if (rules_parse_line(text, c->parse_flags, line, &r->entry, err, sizeof(err)) < 0) {
		compile_error(c, file, line, "%s", err);
		r->valid = 0;
		return;
	}
	struct buf b = BUF_INIT;
	rules_entry_encode(&r->entry, &b);
	if (b.len > RULES_ENTRY_MAX && r->valid) {
		compile_error(c, file, line, "entry too large: more than %d bytes compiled "
		    "(fewer or shorter instructions and conditions)", RULES_ENTRY_MAX);
		r->valid = 0;
	}
	buf_free(&b);
}

void compile_rules_line(struct compile *c, const char *file, int line, char *text,
    int indented)
{
	if (indented)
		instruction_line(c, file, line, text);
	else
		key_line(c, file, line, text);
}

static int entry_needs_account(const struct rules_entry *e)
{
	for (int i = 0; i < e->ninstr; i++) {
		if (rule_action_writes_as_user(e->instr[i].action) && !e->instr[i].has_uid)
			return 1;
	}
	return 0;
}

static int has_account(struct compile *c, const char *key)
{
	char *keys[ADDRESS_KEYS_MAX];
	size_t n = address_key_lookup_keys(key, c->cfg->recipient_delimiter, keys);
	int found = 0;
	for (size_t i = 0; i < n; i++) {
		if (!found && table_get(&c->uid, keys[i]) != NULL)
			found = 1;
		free(keys[i]);
	}
	return found;
}

void compile_check_accounts(struct compile *c)
{
	for (size_t i = 0; i < c->rules.n; i++) {
		struct rec *r = c->rules.items[i];
		if (!r->valid || !entry_needs_account(&r->entry))
			continue;
		if (!has_account(c, r->key))
			compile_error(c, c->rules_path, r->line,
			    "no account for %s (add it to uid)", r->key);
	}
}
