/*
 * db_record.h - values stored in the uid, gid and lists databases, and the names
 * of the named databases.  Shared by the compiler (encode) and the read
 * side (decode); private to src/db.
 */
#ifndef MP_DB_RECORD_H
#define MP_DB_RECORD_H

#include <stddef.h>
#include <sys/types.h>

#include "lib/buf.h"

#define DB_NAME_RULES "rules"
#define DB_NAME_UID "uid"
#define DB_NAME_GID "gid"
#define DB_NAME_LISTS "lists"
#define DB_NAME_MEMBERS "members"
/* the domains of the keys `x@domain` and `@domain` (not `local@`): the
 * domains the databases know, for the policy service; the value is empty */
#define DB_NAME_DOMAINS "domains"
#define DB_MAX_DBS 8

/* An account as resolved at compile time. */
struct db_account {
	char *name;             /* account name (from passwd, or as written) */
	uid_t uid;
	gid_t gid;              /* primary group */
	char *home;
	int is_virtual;         /* home_base account: not in passwd */
};

void db_account_encode(const struct db_account *a, struct buf *out);
/* 0, or -1 when the record is malformed (out is left empty). */
int db_account_decode(const void *p, size_t len, struct db_account *out);
void db_account_free(struct db_account *a);

/* A mailing list (lists database), keyed by the list's address. */
#define LIST_MANAGER_MAILMAN3 "mailman3"
struct db_list {
	char *manager;          /* "mailman3" */
	char *dest;             /* "lmtp:HOST:PORT" or "lmtp:unix:/path" */
	int members_only;
};

void db_list_encode(const struct db_list *l, struct buf *out);
/* 0, or -1 when the record is malformed (out is left empty). */
int db_list_decode(const void *p, size_t len, struct db_list *out);
void db_list_free(struct db_list *l);

#define DB_GID_LEN 4
void db_gid_encode(gid_t gid, unsigned char out[DB_GID_LEN]);
int db_gid_decode(const void *p, size_t len, gid_t *out);

#endif
