/*
 * trust.c - the spawner's and the workers' own checks against the
 * databases (see trust.h): a compromised qmgr can neither pick the account
 * a worker runs as nor the rules (the commands) it runs.
 */
#include "spawner/trust.h"
#include "db/address.h"
#include "db/db.h"
#include "db/rules_entry.h"
#include "queue/qfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int trust_spawn_identity(struct db *db, char delimiter, uint64_t min_uid, uint32_t uid,
    uint32_t gid, const char *account, const char *address, uint32_t part,
    struct db_identity *out, char *err, size_t errlen)
{
	char why[256];

	if (db == NULL) {
		snprintf(err, errlen, "databases not available");
		return -1;
	}
	if (db_part_identity(db, address, delimiter, part, out, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "<%s>: %s", address, why);
		return -1;
	}
	if (out->uid != uid || out->gid != gid || strcmp(out->account, account) != 0) {
		snprintf(err, errlen, "refusing %s (uid %lu, gid %lu) for <%s>: the databases "
		    "give %s (uid %lu, gid %lu)", account, (unsigned long)uid, (unsigned long)gid,
		    address, out->account, (unsigned long)out->uid, (unsigned long)out->gid);
	} else if ((uint64_t)out->uid < min_uid) {
		snprintf(err, errlen, "refusing %s for <%s>: uid %lu is below minimum_uid %llu",
		    out->account, address, (unsigned long)out->uid, (unsigned long long)min_uid);
	} else if (out->uid == 0 || out->gid == 0) {
		snprintf(err, errlen, "refusing %s for <%s>: uid or gid 0", out->account, address);
	} else {
		return 0;
	}
	db_identity_free(out);
	return -1;
}

/* "N,M,...": numbers below ninstr, at least one. */
static int list_valid(const char *l, int ninstr)
{
	if (*l == '\0')
		return 0;
	while (*l) {
		char *end;
		if (*l < '0' || *l > '9')
			return 0;
		unsigned long x = strtoul(l, &end, 10);
		if (x >= (unsigned long)ninstr || (*end != ',' && *end != '\0'))
			return 0;
		l = *end == ',' ? end + 1 : end;
		if (*end == ',' && *l == '\0')
			return 0;
	}
	return 1;
}

int trust_instruction_runs_as(const struct rule_instruction *in, uid_t entry_uid,
    gid_t entry_gid, const struct trust_self *self)
{
	if (!(in->has_uid || in->has_gid))
		return entry_uid == self->uid && entry_gid == self->gid;
	struct db_identity id;
	char err[256];
	if (db_override_identity(in, entry_uid, entry_gid, &id, err, sizeof(err)) < 0)
		return 0;
	int same = id.uid == self->uid && id.gid == self->gid;
	db_identity_free(&id);
	return same;
}

/* Root mode: does part `run` of entry e (running as res's account) run
 * as self?  Every instruction of an "only:" list must be a uid=/gid= one
 * naming self; the primary part must be the entry's own account (its
 * instructions are checked one by one again as they run). */
static int part_is_self(const struct db_resolution *res, const struct rules_entry *e,
    const char *run, const struct trust_self *self, char *err, size_t errlen)
{
	if (strncmp(run, "only:", 5) == 0) {
		if (!list_valid(run + 5, e->ninstr)) {
			snprintf(err, errlen, "malformed part \"%s\"", run);
			return 0;
		}
		const char *p = run + 5;
		for (;;) {
			char *end;
			unsigned long i = strtoul(p, &end, 10);
			const struct rule_instruction *in = &e->instr[i];
			if (!(in->has_uid || in->has_gid) || !rule_action_writes_as_user(in->action) ||
			    !trust_instruction_runs_as(in, res->uid, res->gid, self)) {
				snprintf(err, errlen, "instruction %lu (line %d) does not run as %s", i,
				    in->line, self->account);
				return 0;
			}
			if (*end != ',')
				return 1;
			p = end + 1;
		}
	}
	if (strcmp(run, "primary") != 0 && strncmp(run, "primary:except:", 15) != 0) {
		snprintf(err, errlen, "part \"%s\" is not for root mode", run);
		return 0;
	}
	if (run[7] == ':' && !list_valid(run + 15, e->ninstr)) {
		snprintf(err, errlen, "malformed part \"%s\"", run);
		return 0;
	}
	if (res->uid != self->uid || res->gid != self->gid ||
	    strcmp(res->account ? res->account : "", self->account) != 0) {
		snprintf(err, errlen, "the databases give %s (uid %lu, gid %lu), not this worker's "
		    "account", res->account ? res->account : "?", (unsigned long)res->uid,
		    (unsigned long)res->gid);
		return 0;
	}
	return 1;
}

int trust_worker_part(struct db *db, char delimiter, const struct trust_self *self,
    const char *address, const char *run, uint64_t version, struct db_resolution *res,
    struct rules_entry *entry, char *err, size_t errlen)
{
	char why[256];

	memset(entry, 0, sizeof(*entry));
	entry->spam = -1;
	memset(res, 0, sizeof(*res));
	if (db == NULL) {
		snprintf(err, errlen, "databases not available");
		return -1;
	}
	int found = db_resolve(db, address, delimiter, res, why, sizeof(why));
	if (found == 0 && !self->root_mode && address_is_postmaster(address)) {
		db_resolve_postmaster(res, self->home_base);    /* as the qmgr did */
		found = 1;
	}
	if (found <= 0) {
		snprintf(err, errlen, "%s", found == 0 ? "unknown address" : why);
		goto fail;
	}
	if (res->rules_blob != NULL &&
	    rules_entry_decode(res->rules_blob, res->rules_len, entry) < 0) {
		snprintf(err, errlen, "malformed rules entry");
		goto fail;
	}
	if (qfile_rules_version(res->rules_blob, res->rules_len) != version) {
		snprintf(err, errlen, "the rules entry changed since the job was made");
		goto fail;
	}
	if (!self->root_mode) {
		if (strcmp(run, "all") == 0 ||
		    (strncmp(run, "all:except:", 11) == 0 && list_valid(run + 11, entry->ninstr)))
			return 0;
		snprintf(err, errlen, "part \"%s\" is not for single-user mode", run);
		goto fail;
	}
	if (!res->account_resolved) {
		snprintf(err, errlen, "no account for this address in the uid database");
		goto fail;
	}
	if (part_is_self(res, entry, run, self, err, errlen))
		return 0;
fail:
	rules_entry_free(entry);
	db_resolution_free(res);
	entry->spam = -1;
	return -1;
}
