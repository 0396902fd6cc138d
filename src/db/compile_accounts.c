/*
 * compile_accounts.c - the `uid`, `gid` and `lists` sources.
 *
 * uid:  KEY NAME-OR-NUMBER  the account deliveries for KEY run as; looked
 *       up in passwd now, or, with home_base (virtual accounts), taken as a
 *       name whose home is home_base/NAME and which runs as the invoking user.
 * gid:  KEY GROUP-NAME-OR-NUMBER
 * lists: LIST@DOMAIN MANAGER DESTINATION [OPTION...], MANAGER mailman3,
 *       DESTINATION lmtp:HOST:PORT or lmtp:unix:/path, OPTION members-only.
 */
#include "conf/config.h"
#include "db/address.h"
#include "db/compile_private.h"
#include "lib/lmtp_dest.h"
#include "lib/privsep.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Split "KEY VALUE" and add a record for KEY; NULL after reporting. */
static struct rec *key_value_line(struct compile *c, struct table *t, const char *file,
    int line, char *text, const char *what, char **value)
{
	char *w[3];
	char err[256];
	if (compile_split_words(text, w, 2) != 2) {
		compile_error(c, file, line, "expected KEY %s", what);
		return NULL;
	}
	char *key = address_key_normalise(w[0], err, sizeof(err));
	if (key == NULL) {
		compile_error(c, file, line, "%s", err);
		return NULL;
	}
	struct rec *r = table_add(c, t, file, line, key);
	free(key);
	*value = w[1];
	return r;
}

static int virtual_name_ok(const char *name)
{
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return 0;
	for (const char *p = name; *p; p++) {
		char ch = *p;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return 0;
	}
	return name[0] != '\0';
}

static int virtual_account(struct compile *c, const char *file, int line,
    const char *name, struct db_account *a)
{
	if (!virtual_name_ok(name)) {
		compile_error(c, file, line, "bad account name \"%s\" (letters, digits, "
		    "'.', '_' and '-' only with home_base)", name);
		return -1;
	}
	a->name = xstrdup(name);
	a->uid = getuid();
	a->gid = getgid();
	a->home = xasprintf("%s/%s", c->cfg->home_base, name);
	a->is_virtual = 1;
	return 0;
}

static int passwd_account(struct compile *c, const char *file, int line,
    const char *name, struct db_account *a)
{
	if (privsep_lookup_user(name, &a->uid, &a->gid, &a->home, &a->name) < 0) {
		compile_error(c, file, line, "unknown account \"%s\"", name);
		return -1;
	}
	if (a->uid == 0) {
		compile_error(c, file, line, "account \"%s\": refusing uid 0", name);
		db_account_free(a);
		return -1;
	}
	return 0;
}

void compile_uid_line(struct compile *c, const char *file, int line, char *text,
    int indented)
{
	char *value;
	struct rec *r = key_value_line(c, &c->uid, file, line, text, "ACCOUNT", &value);
	if (r == NULL)
		return;
	struct db_account a = { 0 };
	int rc = c->cfg->home_base != NULL ? virtual_account(c, file, line, value, &a)
	    : passwd_account(c, file, line, value, &a);
	if (rc < 0) {
		r->valid = 0;
		return;
	}
	if (r->valid)
		r->account = a;
	else
		db_account_free(&a);
}

void compile_gid_line(struct compile *c, const char *file, int line, char *text,
    int indented)
{
	char *value;
	struct rec *r = key_value_line(c, &c->gid, file, line, text, "GROUP", &value);
	if (r == NULL)
		return;
	if (privsep_lookup_group(value, &r->gid) < 0) {
		compile_error(c, file, line, "unknown group \"%s\"", value);
		r->valid = 0;
	} else if (r->gid == 0) {
		compile_error(c, file, line, "group \"%s\": refusing gid 0", value);
		r->valid = 0;
	}
}

#define LIST_WORDS_MAX 8

/* A list address is a whole address: no catch-all keys. */
static char *list_address(struct compile *c, const char *file, int line, const char *word)
{
	char err[256];
	char *key = address_key_normalise(word, err, sizeof(err));
	if (key == NULL) {
		compile_error(c, file, line, "%s", err);
		return NULL;
	}
	if (key[0] == '@' || key[strlen(key) - 1] == '@') {
		compile_error(c, file, line, "bad list address \"%s\": expected LIST@DOMAIN", word);
		free(key);
		return NULL;
	}
	return key;
}

/* The options after the destination; 0, or -1 after reporting. */
static int list_options(struct compile *c, const char *file, int line, char **w, int n,
    struct db_list *l)
{
	for (int i = 0; i < n; i++) {
		if (strcmp(w[i], "members-only") == 0) {
			l->members_only = 1;
		} else {
			compile_error(c, file, line, "unknown option \"%s\" (members-only)", w[i]);
			return -1;
		}
	}
	return 0;
}

void compile_lists_line(struct compile *c, const char *file, int line, char *text,
    int indented)
{
	char *w[LIST_WORDS_MAX + 1];
	char err[256];
	struct lmtp_dest dest;

	int n = compile_split_words(text, w, LIST_WORDS_MAX);
	if (n < 0) {
		compile_error(c, file, line, "too many words");
		return;
	}
	if (n < 3) {
		compile_error(c, file, line, "expected LIST@DOMAIN MANAGER DESTINATION [members-only]");
		return;
	}
	char *key = list_address(c, file, line, w[0]);
	if (key == NULL)
		return;
	struct rec *r = table_add(c, &c->lists, file, line, key);
	free(key);
	if (strcmp(w[1], LIST_MANAGER_MAILMAN3) != 0) {
		compile_error(c, file, line, "unknown manager \"%s\" (mailman3)", w[1]);
		r->valid = 0;
		return;
	}
	if (lmtp_dest_parse(w[2], &dest, err, sizeof(err)) < 0) {
		compile_error(c, file, line, "%s", err);
		r->valid = 0;
		return;
	}
	struct db_list l = { 0 };
	if (list_options(c, file, line, w + 3, n - 3, &l) < 0) {
		r->valid = 0;
		return;
	}
	if (!r->valid)
		return;
	l.manager = xstrdup(w[1]);
	l.dest = xstrdup(w[2]);
	r->list = l;
}

void compile_check_lists(struct compile *c)
{
	char *path = xasprintf("%s/lists", c->srcdir);
	for (size_t i = 0; i < c->lists.n; i++) {
		struct rec *r = c->lists.items[i];
		if (!r->valid)
			continue;
		const char *also = table_get(&c->rules, r->key) ? "rules"
		    : table_get(&c->uid, r->key) ? "uid" : NULL;
		if (also != NULL)
			compile_error(c, path, r->line, "list %s is also a key of %s "
			    "(a list address belongs to the list manager)", r->key, also);
	}
	free(path);
}
