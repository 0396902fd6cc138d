/*
 * compile.h - `mailprocctl db compile`: text sources to a fresh LMDB file,
 * swapped in atomically.
 *
 * The sources `rules`, `uid`, `gid` and `lists` in srcdir (each optional,
 * but rules or uid must exist) are validated completely first; every
 * problem is reported as "FILE:LINE: message" (up to COMPILE_MAX_ERRORS)
 * and nothing changes when there is any.  Otherwise a new file
 * db_dir/db-<time>-<pid>-<n>.mdb is written and synced, db_dir/current.mdb
 * is atomically pointed at it, db_dir is synced and older files are removed
 * (readers that still have one open keep working).  One compile at a time:
 * db_dir/compile.lock is held with flock.
 */
#ifndef MP_COMPILE_H
#define MP_COMPILE_H

#include <stddef.h>

struct config;

#define COMPILE_MAX_ERRORS 100

struct compile_stats {
	size_t rules, uid, gid, lists;  /* entries written */
	char *db_file;                  /* the new file (malloc'd), on success */
};

typedef void (*compile_report_fn)(void *ctx, const char *msg);

/* Uses cfg->db_dir, cfg->home_base and cfg->recipient_delimiter.  Returns
 * the number of errors (0: the new database is live).  stats may be NULL;
 * free stats->db_file. */
int db_compile(const struct config *cfg, const char *srcdir,
    compile_report_fn report, void *ctx, struct compile_stats *stats);

#endif
