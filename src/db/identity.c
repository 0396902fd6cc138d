/*
 * identity.c - the account each part of a recipient's delivery runs as,
 * from the databases (see identity.h).
 */
#include "db/identity.h"
#include "db/db.h"
#include "db/rules_entry.h"
#include "lib/xalloc.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int db_override_identity(const struct rule_instruction *in, uid_t entry_uid,
    gid_t entry_gid, struct db_identity *out, char *err, size_t errlen)
{
	uid_t uid = in->has_uid ? in->uid : entry_uid;
	struct passwd *pw = getpwuid(uid);

	memset(out, 0, sizeof(*out));
	if (pw == NULL) {
		snprintf(err, errlen, "no account for uid %lu (line %d)", (unsigned long)uid,
		    in->line);
		return -1;
	}
	out->uid = uid;
	out->gid = in->has_gid ? in->gid : (in->has_uid ? pw->pw_gid : entry_gid);
	out->account = xstrdup(pw->pw_name);
	out->home = xstrdup(pw->pw_dir);
	return 0;
}

static int part_of_entry(const struct db_resolution *res, uint32_t part,
    struct db_identity *out, char *err, size_t errlen)
{
	struct rules_entry e = { 0 };
	int r = -1;

	if (res->rules_blob == NULL || rules_entry_decode(res->rules_blob, res->rules_len, &e) < 0) {
		snprintf(err, errlen, "no rules entry with instruction %lu", (unsigned long)part);
		return -1;
	}
	if (part >= (uint32_t)e.ninstr) {
		snprintf(err, errlen, "no instruction %lu in the rules entry", (unsigned long)part);
	} else if (!(e.instr[part].has_uid || e.instr[part].has_gid) ||
	    !rule_action_writes_as_user(e.instr[part].action)) {
		snprintf(err, errlen, "instruction %lu has no uid= or gid=", (unsigned long)part);
	} else {
		r = db_override_identity(&e.instr[part], res->uid, res->gid, out, err, errlen);
	}
	rules_entry_free(&e);
	return r;
}

int db_part_identity(struct db *db, const char *address, char delimiter, uint32_t part,
    struct db_identity *out, char *err, size_t errlen)
{
	struct db_resolution res;
	int r = -1;

	memset(out, 0, sizeof(*out));
	int found = db_resolve(db, address, delimiter, &res, err, errlen);
	if (found == 0)
		snprintf(err, errlen, "unknown address");
	else if (found > 0 && !res.account_resolved)
		snprintf(err, errlen, "no account for this address in the uid database");
	else if (found > 0 && part != DB_PART_PRIMARY)
		r = part_of_entry(&res, part, out, err, errlen);
	else if (found > 0) {
		out->uid = res.uid;
		out->gid = res.gid;
		out->account = xstrdup(res.account ? res.account : "");
		out->home = xstrdup(res.home ? res.home : "/");
		r = 0;
	}
	db_resolution_free(&res);
	return r;
}

void db_identity_free(struct db_identity *id)
{
	free(id->account);
	free(id->home);
	memset(id, 0, sizeof(*id));
}
