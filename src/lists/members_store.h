/*
 * members_store.h - the members database on disk (an LMDB file, key
 * layout in members_key.h).
 *
 * Writing: state_dir/members.mdb is written whole as a new file and
 * renamed over the old one, so that the swap is atomic and a reader sees
 * either the old or the new data.  Reading: the file is opened read-only
 * without locks (it is never written after the rename); each lookup first
 * checks whether the path now names another inode and reopens it then,
 * the way db.c follows current.mdb.
 */
#ifndef MP_MEMBERS_STORE_H
#define MP_MEMBERS_STORE_H

#include <lmdb.h>
#include <stddef.h>

#include "lists/members_data.h"

/* Put the data into the dbi of txn (an existing key stays).  0, or -1. */
int members_store_put(MDB_txn *txn, MDB_dbi dbi, const struct members_data *d,
    char *err, size_t errlen);
/* Write state_dir/members.mdb anew from d and swap it in.  0, or -1 with
 * err (the old file stays). */
int members_store_write(const char *state_dir, const struct members_data *d,
    char *err, size_t errlen);

struct members_reader;
/* A reader of the `members` db in the LMDB file path (followed through a
 * symlink).  Opening never fails: a missing file is found at a lookup. */
struct members_reader *members_reader_new(const char *path);
void members_reader_free(struct members_reader *r);
/* The value of key in *out (copied, NUL-terminated, the caller frees it).
 * 1 found, 0 not found, -1 the file cannot be read (err). */
int members_reader_get(struct members_reader *r, const char *key, size_t keylen,
    char **out, size_t *outlen, char *err, size_t errlen);

#endif
