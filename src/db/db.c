/*
 * db.c - the read side of the databases.
 *
 * db_dir/current.mdb is a symlink to an immutable LMDB file, opened
 * MDB_RDONLY|MDB_NOLOCK.  Before each lookup we stat() the link and compare
 * the file it reaches with the one we have open (device and inode: the open
 * descriptor keeps our inode alive, so it cannot be reused); when the
 * compiler swapped in a new file we open that one and drop the old one.
 */
#include "db/db.h"
#include "db/address.h"
#include "db/db_record.h"
#include "db/list_address.h"
#include "db/rules_entry.h"
#include "lib/strmap.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { DBI_RULES, DBI_UID, DBI_GID, DBI_LISTS, DBI_COUNT };

static const char *const dbi_names[DBI_COUNT] = {
	DB_NAME_RULES, DB_NAME_UID, DB_NAME_GID, DB_NAME_LISTS,
};

struct db_env {
	MDB_env *env;
	MDB_dbi dbi[DBI_COUNT];
	int has_domains;        /* the domains database is there (newer compiles) */
	MDB_dbi domains;
	struct strmap *domain_set;      /* else: the domains of the keys, read at open */
	dev_t dev;
	ino_t ino;
};

struct db {
	char *dir;
	char *link;             /* dir/current.mdb */
	int root_only;          /* only root may be able to change them (db_open_root_only) */
	struct db_env cur;
};

static void env_close(struct db_env *e)
{
	if (e->env != NULL)
		mdb_env_close(e->env);
	if (e->domain_set != NULL)
		strmap_free(e->domain_set);
	memset(e, 0, sizeof(*e));
}

/* The file must hold every page the meta page claims, or reading the map
 * would fault. */
static int check_size(MDB_env *env, off_t size, char *err, size_t errlen)
{
	MDB_envinfo info;
	MDB_stat st;
	if (mdb_env_info(env, &info) != 0 || mdb_env_stat(env, &st) != 0) {
		snprintf(err, errlen, "cannot read database header");
		return -1;
	}
	if (((uint64_t)info.me_last_pgno + 1) * st.ms_psize > (uint64_t)size) {
		snprintf(err, errlen, "database file is truncated");
		return -1;
	}
	return 0;
}

/* An environment compiled before the domains database existed: the domains
 * of its rules and uid keys, read once at the open. */
static int collect_domains(MDB_txn *txn, struct db_env *e, char *err, size_t errlen)
{
	static const int from[] = { DBI_RULES, DBI_UID };

	e->domain_set = strmap_new();
	for (size_t i = 0; i < sizeof(from) / sizeof(from[0]); i++) {
		MDB_cursor *cur;
		MDB_val k, v;
		int rc = mdb_cursor_open(txn, e->dbi[from[i]], &cur);
		if (rc != 0) {
			snprintf(err, errlen, "mdb_cursor_open: %s", mdb_strerror(rc));
			return -1;
		}
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			const char *key = k.mv_data;
			const char *at = memrchr(key, '@', k.mv_size);
			if (at == NULL || at + 1 == key + k.mv_size)
				continue;
			char *domain = xstrndup(at + 1, (size_t)(key + k.mv_size - at - 1));
			strmap_put(e->domain_set, domain, e);
			free(domain);
		}
		mdb_cursor_close(cur);
		if (rc != MDB_NOTFOUND) {
			snprintf(err, errlen, "reading keys: %s", mdb_strerror(rc));
			return -1;
		}
	}
	return 0;
}

static int open_dbis(struct db_env *e, char *err, size_t errlen)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0) {
		snprintf(err, errlen, "mdb_txn_begin: %s", mdb_strerror(rc));
		return -1;
	}
	for (int i = 0; i < DBI_COUNT; i++) {
		rc = mdb_dbi_open(txn, dbi_names[i], 0, &e->dbi[i]);
		if (rc != 0) {
			snprintf(err, errlen, "database \"%s\": %s", dbi_names[i], mdb_strerror(rc));
			mdb_txn_abort(txn);
			return -1;
		}
	}
	rc = mdb_dbi_open(txn, DB_NAME_DOMAINS, 0, &e->domains);
	if (rc == 0)
		e->has_domains = 1;
	else if (rc != MDB_NOTFOUND || collect_domains(txn, e, err, errlen) < 0) {
		if (rc != MDB_NOTFOUND)
			snprintf(err, errlen, "database \"%s\": %s", DB_NAME_DOMAINS, mdb_strerror(rc));
		mdb_txn_abort(txn);
		return -1;
	}
	rc = mdb_txn_commit(txn);
	if (rc != 0) {
		snprintf(err, errlen, "mdb_txn_commit: %s", mdb_strerror(rc));
		return -1;
	}
	return 0;
}

/* Root mode: the databases say which account runs which command, so the
 * root processes and the workers take them only from a file and directory
 * that root owns and nobody else may write (as Postfix's local(8) checks
 * the owner of its alias maps). */
static int root_only_ok(const struct stat *st, const char *path, char *err, size_t errlen)
{
	if (st->st_uid == 0 && (st->st_mode & (S_IWGRP | S_IWOTH)) == 0)
		return 0;
	snprintf(err, errlen, "refusing %s: owned by uid %lu with mode %04o; in root mode only "
	    "root may be able to change the databases (mailprocctl db compile as root makes "
	    "them so)", path, (unsigned long)st->st_uid, (unsigned)(st->st_mode & 07777));
	return -1;
}

static int dir_root_only(const struct db *db, char *err, size_t errlen)
{
	struct stat st;
	if (stat(db->dir, &st) < 0) {
		snprintf(err, errlen, "%s: %s", db->dir, strerror(errno));
		return -1;
	}
	return root_only_ok(&st, db->dir, err, errlen);
}

/* Open what the link points to now into e. */
static int env_open(const char *link, int root_only, struct db_env *e, char *err,
    size_t errlen)
{
	struct stat st;
	int fd, rc;

	memset(e, 0, sizeof(*e));
	if ((rc = mdb_env_create(&e->env)) != 0) {
		snprintf(err, errlen, "mdb_env_create: %s", mdb_strerror(rc));
		return -1;
	}
	if (stat(link, &st) == 0 && st.st_size > 0)
		mdb_env_set_mapsize(e->env, (size_t)st.st_size);
	mdb_env_set_maxdbs(e->env, DB_MAX_DBS);
	rc = mdb_env_open(e->env, link, MDB_RDONLY | MDB_NOLOCK | MDB_NOSUBDIR, 0);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s%s", link, mdb_strerror(rc),
		    rc == ENOENT ? " (run mailprocctl db compile)" : "");
		goto fail;
	}
	if (mdb_env_get_fd(e->env, &fd) != 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: fstat: %s", link, strerror(errno));
		goto fail;
	}
	if (root_only && root_only_ok(&st, link, err, errlen) < 0)
		goto fail;
	e->dev = st.st_dev;
	e->ino = st.st_ino;
	if (check_size(e->env, st.st_size, err, errlen) < 0 ||
	    open_dbis(e, err, errlen) < 0)
		goto fail;
	return 0;
fail:
	env_close(e);
	return -1;
}

static int open_db(const char *db_dir, int root_only, struct db **out, char *err,
    size_t errlen)
{
	struct db *db = xcalloc(1, sizeof(*db));
	db->dir = xstrdup(db_dir);
	db->link = xasprintf("%s/%s", db_dir, DB_CURRENT_LINK);
	db->root_only = root_only;
	if ((root_only && dir_root_only(db, err, errlen) < 0) ||
	    env_open(db->link, root_only, &db->cur, err, errlen) < 0) {
		db_close(db);
		return -1;
	}
	*out = db;
	return 0;
}

int db_open(const char *db_dir, struct db **out, char *err, size_t errlen)
{
	return open_db(db_dir, 0, out, err, errlen);
}

int db_open_root_only(const char *db_dir, struct db **out, char *err, size_t errlen)
{
	return open_db(db_dir, 1, out, err, errlen);
}

void db_close(struct db *db)
{
	if (db == NULL)
		return;
	env_close(&db->cur);
	free(db->dir);
	free(db->link);
	free(db);
}

/* Reopen when the link reaches another file than the open one. */
static int refresh(struct db *db, char *err, size_t errlen)
{
	struct stat st;
	if (stat(db->link, &st) < 0) {
		snprintf(err, errlen, "%s: %s", db->link, strerror(errno));
		return -1;
	}
	/* st is the file the link reaches: a chown or chmod since the open
	 * counts as much as a new file */
	if (db->root_only && (dir_root_only(db, err, errlen) < 0 ||
	    root_only_ok(&st, db->link, err, errlen) < 0))
		return -1;
	if (db->cur.env != NULL && st.st_dev == db->cur.dev && st.st_ino == db->cur.ino)
		return 0;
	struct db_env fresh;
	if (env_open(db->link, db->root_only, &fresh, err, errlen) < 0)
		return -1;
	env_close(&db->cur);
	db->cur = fresh;
	return 0;
}

/* The first of keys present in dbi.  1 found (which, val set), 0 not, -1 error. */
static int lookup_first(MDB_txn *txn, MDB_dbi dbi, char *const *keys, size_t nkeys,
    size_t *which, MDB_val *val, char *err, size_t errlen)
{
	for (size_t i = 0; i < nkeys; i++) {
		MDB_val k = { strlen(keys[i]), keys[i] };
		int rc = mdb_get(txn, dbi, &k, val);
		if (rc == 0) {
			*which = i;
			return 1;
		}
		if (rc != MDB_NOTFOUND) {
			snprintf(err, errlen, "lookup of %s: %s", keys[i], mdb_strerror(rc));
			return -1;
		}
	}
	return 0;
}

static int resolve_rules(MDB_txn *txn, MDB_dbi dbi, char *const *keys, size_t n,
    struct db_resolution *out, char *err, size_t errlen)
{
	size_t which;
	MDB_val v;
	struct rules_entry e;
	int r = lookup_first(txn, dbi, keys, n, &which, &v, err, errlen);
	if (r <= 0)
		return r;
	if (rules_entry_decode(v.mv_data, v.mv_size, &e) < 0) {
		snprintf(err, errlen, "corrupt rules entry for %s", keys[which]);
		return -1;
	}
	rules_entry_free(&e);
	out->rules_key = xstrdup(keys[which]);
	out->rules_len = v.mv_size;
	out->rules_blob = xmalloc(v.mv_size);
	memcpy(out->rules_blob, v.mv_data, v.mv_size);
	return 1;
}

static int resolve_account(MDB_txn *txn, MDB_dbi dbi, char *const *keys, size_t n,
    struct db_resolution *out, char *err, size_t errlen)
{
	size_t which;
	MDB_val v;
	struct db_account a;
	int r = lookup_first(txn, dbi, keys, n, &which, &v, err, errlen);
	if (r <= 0)
		return r;
	if (db_account_decode(v.mv_data, v.mv_size, &a) < 0) {
		snprintf(err, errlen, "corrupt uid entry for %s", keys[which]);
		return -1;
	}
	out->uid_key = xstrdup(keys[which]);
	out->account = a.name;
	out->home = a.home;
	out->uid = a.uid;
	out->gid = a.gid;
	out->account_resolved = 1;
	return 1;
}

static int resolve_gid(MDB_txn *txn, MDB_dbi dbi, char *const *keys, size_t n,
    struct db_resolution *out, char *err, size_t errlen)
{
	size_t which;
	MDB_val v;
	int r = lookup_first(txn, dbi, keys, n, &which, &v, err, errlen);
	if (r <= 0)
		return r;
	if (db_gid_decode(v.mv_data, v.mv_size, &out->gid) < 0) {
		snprintf(err, errlen, "corrupt gid entry for %s", keys[which]);
		return -1;
	}
	return 1;
}

/* The list the address belongs to, looked up before anything else. */
static int resolve_list(MDB_txn *txn, MDB_dbi dbi, const char *address,
    struct db_resolution *out, char *err, size_t errlen)
{
	char *keys[LIST_CANDIDATES_MAX];
	int roles[LIST_CANDIDATES_MAX];
	size_t which, n = list_candidates(address, keys, roles);
	MDB_val v;
	struct db_list l;
	int r = lookup_first(txn, dbi, keys, n, &which, &v, err, errlen);
	if (r > 0 && db_list_decode(v.mv_data, v.mv_size, &l) < 0) {
		snprintf(err, errlen, "corrupt lists entry for %s", keys[which]);
		r = -1;
	} else if (r > 0) {
		out->list_key = xstrdup(keys[which]);
		out->list_role = roles[which];
		out->list_manager = l.manager;
		out->list_dest = l.dest;
		out->list_members_only = l.members_only;
	}
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	return r;
}

static int resolve_all(struct db *db, const char *address, char *const *keys, size_t n,
    struct db_resolution *out, char *err, size_t errlen)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(db->cur.env, NULL, MDB_RDONLY, &txn);
	if (rc != 0) {
		snprintf(err, errlen, "mdb_txn_begin: %s", mdb_strerror(rc));
		return -1;
	}
	const MDB_dbi *dbi = db->cur.dbi;
	int r = resolve_list(txn, dbi[DBI_LISTS], address, out, err, errlen);
	if (r == 0 && (resolve_rules(txn, dbi[DBI_RULES], keys, n, out, err, errlen) < 0 ||
	    resolve_account(txn, dbi[DBI_UID], keys, n, out, err, errlen) < 0 ||
	    resolve_gid(txn, dbi[DBI_GID], keys, n, out, err, errlen) < 0))
		r = -1;
	r = r < 0 ? -1 : 0;
	mdb_txn_abort(txn);
	return r;
}

void db_resolve_postmaster(struct db_resolution *out, const char *home_base)
{
	if (home_base == NULL)
		return;
	free(out->account);
	free(out->home);
	out->account = xstrdup("postmaster");
	out->home = xasprintf("%s/postmaster", home_base);
}

int db_resolve(struct db *db, const char *address, char delimiter,
    struct db_resolution *out, char *err, size_t errlen)
{
	struct address a;
	char *keys[ADDRESS_KEYS_MAX];

	memset(out, 0, sizeof(*out));
	if (address_parse(address, delimiter, &a) < 0) {
		out->address = address_lower(address);
		return 0;
	}
	out->address = xstrdup(a.full);
	out->extension = a.extension ? xstrdup(a.extension) : NULL;
	size_t n = address_lookup_keys(&a, keys);
	address_free(&a);

	int r = refresh(db, err, errlen);
	if (r == 0)
		r = resolve_all(db, out->address, keys, n, out, err, errlen);
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	if (r < 0) {
		char *addr = out->address;
		out->address = NULL;
		db_resolution_free(out);
		out->address = addr;
		return -1;
	}
	return out->rules_key || out->uid_key || out->list_key ? 1 : 0;
}

int db_domain_known(struct db *db, const char *domain, char *err, size_t errlen)
{
	if (*domain == '\0' || strlen(domain) > ADDRESS_MAX)
		return 0;
	if (refresh(db, err, errlen) < 0)
		return -1;
	char *lower = address_lower(domain);
	int r = 0;
	if (!db->cur.has_domains) {
		r = strmap_get(db->cur.domain_set, lower) != NULL;
	} else {
		MDB_txn *txn;
		MDB_val k = { strlen(lower), lower }, v;
		int rc = mdb_txn_begin(db->cur.env, NULL, MDB_RDONLY, &txn);
		if (rc == 0) {
			rc = mdb_get(txn, db->cur.domains, &k, &v);
			mdb_txn_abort(txn);
		}
		if (rc == 0) {
			r = 1;
		} else if (rc != MDB_NOTFOUND) {
			snprintf(err, errlen, "lookup of domain %s: %s", lower, mdb_strerror(rc));
			r = -1;
		}
	}
	free(lower);
	return r;
}

void db_resolution_free(struct db_resolution *r)
{
	free(r->address);
	free(r->extension);
	free(r->rules_key);
	free(r->rules_blob);
	free(r->uid_key);
	free(r->account);
	free(r->home);
	free(r->list_key);
	free(r->list_manager);
	free(r->list_dest);
	memset(r, 0, sizeof(*r));
}

/* The policy sync's list of accounts: a cursor over uid, each account
 * once (names seen in a map). */
int db_foreach_account(struct db *db, int (*fn)(void *arg, const char *name, uid_t uid,
    gid_t gid, const char *home), void *arg, char *err, size_t errlen)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, r = 0;

	if (refresh(db, err, errlen) < 0)
		return -1;
	if ((rc = mdb_txn_begin(db->cur.env, NULL, MDB_RDONLY, &txn)) != 0) {
		snprintf(err, errlen, "mdb_txn_begin: %s", mdb_strerror(rc));
		return -1;
	}
	if ((rc = mdb_cursor_open(txn, db->cur.dbi[DBI_UID], &cur)) != 0) {
		snprintf(err, errlen, "mdb_cursor_open: %s", mdb_strerror(rc));
		mdb_txn_abort(txn);
		return -1;
	}
	struct strmap *seen = strmap_new();
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct db_account a;
		if (db_account_decode(v.mv_data, v.mv_size, &a) < 0) {
			snprintf(err, errlen, "corrupt uid entry for %.*s", (int)(k.mv_size > 200 ?
			    200 : k.mv_size), (const char *)k.mv_data);
			r = -1;
			break;
		}
		int stop = 0;
		if (strmap_get(seen, a.name) == NULL) {
			strmap_put(seen, a.name, seen);
			stop = fn(arg, a.name, a.uid, a.gid, a.home);
		}
		db_account_free(&a);
		if (stop)
			break;
	}
	if (r == 0 && rc != 0 && rc != MDB_NOTFOUND) {
		snprintf(err, errlen, "uid database: %s", mdb_strerror(rc));
		r = -1;
	}
	strmap_free(seen);
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return r;
}
