/*
 * policy_store.h - state_dir/policy.mdb: the compiled users' policies.
 *
 * One LMDB file (named database "policy"), key the account name, value
 * the account's uid, the stat of the file it was read from (mtime, inode,
 * size: the sync rereads a file only when these change), whether that
 * file was broken, and the last good compiled policy (user_policy_encode;
 * empty when there is none).  Only the sync's unprivileged writer writes
 * it; the policy service and mailprocctl read it.
 */
#ifndef MP_POLICY_STORE_H
#define MP_POLICY_STORE_H

#include "policy/user_policy.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define POLICY_STORE_FILE "policy.mdb"
#define POLICY_STORE_DB "policy"

struct policy_store;

/* What the sync compares with the file's lstat. */
struct policy_file_stat {
	uint32_t uid;           /* the account's uid when the file was read */
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	uint64_t ino;
	uint64_t size;
};

struct policy_store_entry {
	struct policy_file_stat st;
	int broken;             /* the file at st did not parse: blob is the one before */
	const void *blob;       /* compiled policy, or NULL (none) */
	size_t blob_len;
};

/* writable = 0: the service and mailprocctl (a missing file = no policies) */
int policy_store_open(const char *state_dir, int writable,
    struct policy_store **out, char *err, size_t errlen);
/* 1 found (*out decoded), 0 no policy for the account, -1 error (err). */
int policy_store_get(struct policy_store *s, const char *account,
    struct user_policy **out, char *err, size_t errlen);
void policy_store_close(struct policy_store *s);

/* The stored entry of account (mailprocctl policy show, the writer).
 * 1 found (*out valid, its blob copied: free with free(out->blob)),
 * 0 none, -1 error. */
int policy_store_get_entry(struct policy_store *s, const char *account,
    struct policy_store_entry *out, char *err, size_t errlen);
/* Call fn for every stored entry (blob not given).  0, or -1 with err. */
int policy_store_list(struct policy_store *s, int (*fn)(void *arg, const char *account,
    const struct policy_file_stat *st, int broken), void *arg, char *err, size_t errlen);

/* Write side (writable stores): one transaction per sync round. */
int policy_store_begin(struct policy_store *s, char *err, size_t errlen);
int policy_store_put(struct policy_store *s, const char *account,
    const struct policy_store_entry *e, char *err, size_t errlen);
/* 0 deleted or absent, -1 error. */
int policy_store_delete(struct policy_store *s, const char *account, char *err,
    size_t errlen);
int policy_store_commit(struct policy_store *s, char *err, size_t errlen);
void policy_store_abort(struct policy_store *s);

/* The record's encoding (exposed for the unit tests). */
void policy_store_encode(const struct policy_store_entry *e, struct buf *out);
/* Strict: 0 (out->blob points into data), or -1. */
int policy_store_decode(const void *data, size_t len, struct policy_store_entry *out);

#endif
