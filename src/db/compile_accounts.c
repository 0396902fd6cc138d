/*
 * compile_accounts.c - the `uid`, `gid` and `lists` sources.
 *
 * uid:  KEY NAME-OR-NUMBER  the account deliveries for KEY run as; looked
 *       up in passwd now, or, with home_base (virtual accounts), taken as a
 *       name whose home is home_base/NAME and which runs as the invoking user.
 * gid:  KEY GROUP-NAME-OR-NUMBER
 * lists: not supported yet; an empty or absent source is fine.
 */
#include "conf/config.h"
#include "db/address.h"
#include "db/compile_private.h"
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

void compile_lists_line(struct compile *c, const char *file, int line, char *text,
    int indented)
{
	compile_error(c, file, line, "lists are not supported yet");
}
