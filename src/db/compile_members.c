/*
 * compile_members.c - the `members` source (for `members_source file`):
 * its lines go to the parser in src/lists/members_source.c; the result is
 * written into the `members` db of the new environment.
 */
#include "conf/config.h"
#include "db/compile_private.h"
#include "lists/members_source.h"
#include "lists/members_store.h"
#include "lib/xalloc.h"

#include <stdlib.h>

void compile_members_line(struct compile *c, const char *file, int line, char *text,
    int indented)
{
	char err[400];
	if (c->members == NULL) {
		c->members = xcalloc(1, sizeof(*c->members));
		members_source_init(c->members, c->cfg->recipient_delimiter);
	}
	if (members_source_line(c->members, text, indented, err, sizeof(err)) < 0)
		compile_error(c, file, line, "%s", err);
}

void compile_members_free(struct compile *c)
{
	if (c->members == NULL)
		return;
	members_source_free(c->members);
	free(c->members);
	c->members = NULL;
}

int compile_members_put(MDB_txn *txn, MDB_dbi dbi, struct compile *c, const char *path)
{
	char err[400];
	if (c->members == NULL)
		return 0;
	if (members_store_put(txn, dbi, &c->members->data, err, sizeof(err)) < 0) {
		compile_error(c, path, 0, "%s", err);
		return -1;
	}
	return 0;
}
