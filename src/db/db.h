/*
 * db.h - read side of the databases (rules, uid, gid, lists).
 *
 * The databases are one LMDB environment (a single file) in db_dir, reached
 * through the symlink db_dir/current.mdb.  `mailprocctl db compile` writes
 * a new file and swaps the symlink atomically; an environment is never
 * written after the swap, so readers open it MDB_RDONLY|MDB_NOLOCK and need
 * no write access.  Every lookup first checks whether the symlink changed
 * and reopens if so: running processes see new data at their next lookup.
 */
#ifndef MP_DB_H
#define MP_DB_H

#include <stddef.h>
#include <sys/types.h>

struct db;

#define DB_CURRENT_LINK "current.mdb"

/* Open the databases in db_dir.  0, or -1 with a reason in err. */
int db_open(const char *db_dir, struct db **out, char *err, size_t errlen);
/* As db_open, for the processes that act on the databases in root mode
 * (the spawner, the workers): the directory and the file current.mdb
 * reaches must be root's and writable by nobody else, checked at the open
 * and at each reopen; else -1 with err saying so. */
int db_open_root_only(const char *db_dir, struct db **out, char *err, size_t errlen);
void db_close(struct db *db);

struct db_resolution {
	char *address;          /* the address looked up, lower-cased */
	char *extension;        /* the +detail, or NULL */
	/* rules */
	char *rules_key;        /* matched key in rules, or NULL */
	void *rules_blob;       /* compiled entry (rules_entry_decode), or NULL */
	size_t rules_len;
	/* uid / gid */
	char *uid_key;          /* matched key in uid, or NULL */
	char *account;          /* account name (passwd name; as written with home_base) */
	int account_resolved;   /* uid/gid/home below are valid */
	uid_t uid;
	gid_t gid;              /* from gid db, else the account's primary group */
	char *home;
	/* lists: filled when the address is a list's or its manager's */
	char *list_key;         /* the list's address, or NULL */
	int list_role;          /* LIST_ROLE_POST (the list address) or LIST_ROLE_MANAGER */
	char *list_manager;     /* "mailman3" */
	char *list_dest;        /* "lmtp:127.0.0.1:8024" or "lmtp:unix:/path" */
	int list_members_only;  /* the members-only option */
};

enum { LIST_ROLE_NONE, LIST_ROLE_POST, LIST_ROLE_MANAGER };

/* Resolve an address with the lookup order of SPEC.md.  Lists first: the
 * list address itself, or Mailman 3's NAME-SUFFIX@DOMAIN of a list
 * (list_address.h); then exact, user@domain (without +detail), user@,
 * @domain in rules, uid and gid; case-insensitive.
 * Returns 1 when known (found in rules, uid or lists), 0 unknown,
 * -1 temporary failure (database unreadable; err says why). */
int db_resolve(struct db *db, const char *address, char delimiter,
    struct db_resolution *out, char *err, size_t errlen);
void db_resolution_free(struct db_resolution *r);
/* Whether the databases know domain (case-insensitive): some rules or uid
 * key is `x@domain` or `@domain` (`local@` keys make no domain known).
 * 1 yes, 0 no, -1 temporary failure (err).  Environments compiled before
 * the domains database are read too. */
int db_domain_known(struct db *db, const char *domain, char *err, size_t errlen);
/* Call fn once for each account of the uid database (however many
 * addresses name it), with its name, uid, gid (primary) and home.  The
 * checks of db_open_root_only apply when db was opened so.  fn returns
 * 0 to go on, else the walk stops.  0, or -1 with err. */
int db_foreach_account(struct db *db, int (*fn)(void *arg, const char *name, uid_t uid,
    gid_t gid, const char *home), void *arg, char *err, size_t errlen);

/* Single-user mode: a postmaster the databases do not know (RFC 5321
 * 4.5.1, accepted anyway) is delivered by default_delivery, as the
 * virtual account `postmaster` under home_base when that is set.  Fills
 * out (after db_resolve returned 0 for it) the same way in the qmgr and
 * the worker, so both run the same (empty) entry. */
void db_resolve_postmaster(struct db_resolution *out, const char *home_base);

#endif
