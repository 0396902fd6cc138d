/*
 * compile_private.h - the state shared by the parts of the database
 * compiler (sources, accounts, rules, writing).  Private to src/db.
 */
#ifndef MP_COMPILE_PRIVATE_H
#define MP_COMPILE_PRIVATE_H

#include <lmdb.h>
#include <stddef.h>
#include <sys/types.h>

#include "db/compile.h"
#include "db/db_record.h"
#include "db/rules_entry.h"
#include "lib/log.h"

struct strmap;
struct members_source;

/* Records of one source, in source order, with an index by key.  A record
 * whose line had an error stays in the index (valid = 0) so that one
 * mistake is reported once, not again by every check that depends on it. */
struct rec {
	char *key;
	int line;
	int valid;
	struct db_account account;      /* uid */
	gid_t gid;                      /* gid */
	struct rules_entry entry;       /* rules */
	struct db_list list;            /* lists */
};

struct table {
	struct strmap *index;           /* key -> struct rec * */
	struct rec **items;
	size_t n, cap;
};

struct compile {
	const struct config *cfg;
	const char *srcdir;
	int parse_flags;                /* RULES_VIRTUAL with home_base */
	compile_report_fn report;
	void *ctx;
	int errors;
	int stopped;                    /* too many errors: stop reading */
	struct table rules, uid, gid, lists;
	struct rec *cur_rule;           /* rules entry being read, or NULL */
	char *rules_path;
	struct members_source *members;  /* the `members` source, NULL: none */
};

void compile_error(struct compile *c, const char *file, int line,
    const char *fmt, ...) MP_PRINTF(4, 5);
void compile_warning(struct compile *c, const char *fmt, ...) MP_PRINTF(2, 3);

/* Tables. */
void table_init(struct table *t);
void table_free(struct table *t);
/* A new record (valid = 1) for key, a normalised key.  When key is already
 * there, the duplicate is reported and the record returned is kept out of
 * the index (valid = 0) so that parsing can go on. */
struct rec *table_add(struct compile *c, struct table *t, const char *file,
    int line, const char *key);
/* A record outside the index (valid = 0): the entry under a bad key, read
 * on for the errors in its lines. */
struct rec *table_add_orphan(struct table *t, int line);
struct rec *table_get(const struct table *t, const char *key);

/* Reading a source: comments, blank lines and trailing space removed;
 * `indented` tells whether the line started with white space. */
typedef void (*source_line_fn)(struct compile *c, const char *file, int line,
    char *text, int indented);
/* 1 read, 0 the file does not exist, -1 it could not be read (reported). */
int compile_read_source(struct compile *c, const char *path, source_line_fn fn);
/* Split text into at most max words (destructive); -1 when there are more. */
int compile_split_words(char *text, char **words, int max);

/* The `members` source (compile_members.c). */
void compile_members_line(struct compile *c, const char *file, int line, char *text,
    int indented);
void compile_members_free(struct compile *c);
/* Into dbi (the `members` db).  0, or -1. */
int compile_members_put(MDB_txn *txn, MDB_dbi dbi, struct compile *c, const char *path);

/* Per-source line handlers. */
void compile_uid_line(struct compile *c, const char *file, int line, char *text,
    int indented);
void compile_gid_line(struct compile *c, const char *file, int line, char *text,
    int indented);
void compile_rules_line(struct compile *c, const char *file, int line, char *text,
    int indented);
void compile_lists_line(struct compile *c, const char *file, int line, char *text,
    int indented);

/* Cross-checks after every source is read. */
void compile_check_accounts(struct compile *c);
/* A list address must not also be an exact rules or uid key. */
void compile_check_lists(struct compile *c);

/* Write the new database and swap it in.  0, or -1 (reported). */
int compile_write(struct compile *c, struct compile_stats *stats);

#endif
