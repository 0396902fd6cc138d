/*
 * trust.h - what the root spawner and the workers check before acting on
 * the qmgr's word.  The qmgr parses queue files that the network-facing
 * receiver wrote, so it is not trusted with an account or a command: the
 * spawner forks a worker only as the identity the databases give the
 * recipient the request names, and a worker runs only rules it read from
 * the databases itself, and only the instructions that run as its own
 * uid/gid.
 */
#ifndef MP_TRUST_H
#define MP_TRUST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "db/identity.h"

struct db;
struct db_resolution;
struct rules_entry;
struct rule_instruction;

/* A worker's own identity. */
struct trust_self {
	int root_mode;          /* 0: single-user mode, everything runs as the daemon's user */
	uid_t uid;
	gid_t gid;
	const char *account;
	const char *home_base;  /* single-user mode: for a postmaster the databases do not know */
};

/* The spawner, root mode: the identity to fork a worker as for a request
 * naming address and part (DB_PART_PRIMARY or a uid=/gid= instruction) and
 * claiming uid/gid/account.  0 with out set (from the databases); -1 with
 * err set when the databases give another identity or none, the uid is
 * below min_uid, or the gid is 0. */
int trust_spawn_identity(struct db *db, char delimiter, uint64_t min_uid, uint32_t uid,
    uint32_t gid, const char *account, const char *address, uint32_t part,
    struct db_identity *out, char *err, size_t errlen);

/* The worker: resolve address in db (res), decode its entry (entry) and
 * check that the part `run` names ("all..." in single-user mode,
 * "primary..." or "only:N,..." in root mode) runs as self, and that the
 * entry is the one (version, qfile_rules_version) the qmgr made run from.
 * 0 when it may run; -1 with err set (res and entry then empty). */
int trust_worker_part(struct db *db, char delimiter, const struct trust_self *self,
    const char *address, const char *run, uint64_t version, struct db_resolution *res,
    struct rules_entry *entry, char *err, size_t errlen);

/* Root mode: whether instruction in of an entry that runs as
 * entry_uid/entry_gid writes as self (a uid=/gid= one as the account it
 * names, any other as the entry's). */
int trust_instruction_runs_as(const struct rule_instruction *in, uid_t entry_uid,
    gid_t entry_gid, const struct trust_self *self);

#endif
