/*
 * identity.h - who each part of a recipient's delivery runs as: the
 * entry's account (the primary part), or the account a uid=/gid=
 * instruction names.  The qmgr (to group recipients), the spawner (to fork
 * a worker) and the worker (to check what it is asked to run) each work it
 * out from the databases with these same functions.
 */
#ifndef MP_IDENTITY_H
#define MP_IDENTITY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct db;
struct db_resolution;
struct rule_instruction;

struct db_identity {
	uid_t uid;
	gid_t gid;
	char *account;
	char *home;
};

/* The part of a recipient a spawn request names: its entry's account, or
 * the instruction number of a uid=/gid= instruction. */
#define DB_PART_PRIMARY UINT32_MAX

/* The identity a uid=/gid= instruction runs as, the entry's being
 * entry_uid/entry_gid: uid= alone takes that account's primary group,
 * gid= alone keeps the entry's uid; account and home from passwd.  0, or
 * -1 (err set) when the account is gone. */
int db_override_identity(const struct rule_instruction *in, uid_t entry_uid,
    gid_t entry_gid, struct db_identity *out, char *err, size_t errlen);

/* The identity part `part` of address runs as, resolved in db: 0, or -1
 * with err set (address unknown, no account, no such uid=/gid=
 * instruction, database unreadable). */
int db_part_identity(struct db *db, const char *address, char delimiter, uint32_t part,
    struct db_identity *out, char *err, size_t errlen);

void db_identity_free(struct db_identity *id);

#endif
