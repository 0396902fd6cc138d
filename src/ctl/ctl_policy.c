/*
 * ctl_policy.c - mailprocctl policy sync (one sync round of the users'
 * policy files now, with the daemon's changes of identity when run as
 * root) and mailprocctl policy show ACCOUNT (what policy.mdb holds for an
 * account).
 */
#include "ctl/ctl.h"
#include "conf/config.h"
#include "lib/buf.h"
#include "lib/privsep.h"
#include "policy/policy_store.h"
#include "policy/sync.h"
#include "policy/user_policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int ctl_policy_sync(const struct config *cfg, char **args, int nargs)
{
	struct polsync_identity id = { .root_mode = geteuid() == 0 };
	struct polsync_stats st;
	char err[512];

	if (cfg->state_dir == NULL) {
		ctl_error("policy sync: no state_dir (set db_dir or state_dir)");
		return CTL_ERROR;
	}
	if (id.root_mode && privsep_lookup_user(cfg->user, &id.user_uid, &id.user_gid,
	    NULL, NULL) < 0) {
		ctl_error("policy sync: unknown user \"%s\"", cfg->user);
		return CTL_ERROR;
	}
	if (policy_state_dir_prepare(cfg->state_dir, id.root_mode ? id.user_uid : (uid_t)-1,
	    id.root_mode ? id.user_gid : (gid_t)-1, err, sizeof(err)) < 0 ||
	    polsync_round(cfg, &id, &st, err, sizeof(err)) < 0) {
		ctl_error("policy sync: %s", err);
		return CTL_ERROR;
	}
	printf("%u accounts, %u files read, %u changed, %u broken, %u removed, %u skipped\n",
	    st.accounts, st.read, st.changed, st.broken, st.removed, st.skipped);
	return CTL_OK;
}

int ctl_policy_show(const struct config *cfg, char **args, int nargs)
{
	struct policy_store *s;
	struct policy_store_entry e;
	struct user_policy *p = NULL;
	char err[512];

	if (cfg->state_dir == NULL) {
		ctl_error("policy show: no state_dir (set db_dir or state_dir)");
		return CTL_ERROR;
	}
	if (policy_store_open(cfg->state_dir, 0, &s, err, sizeof(err)) < 0) {
		ctl_error("policy show: %s", err);
		return CTL_ERROR;
	}
	int r = policy_store_get_entry(s, args[0], &e, err, sizeof(err));
	if (r <= 0) {
		if (r < 0)
			ctl_error("policy show: %s", err);
		else
			ctl_error("policy show: no policy for %s", args[0]);
		policy_store_close(s);
		return CTL_ERROR;
	}
	printf("account %s\nuid %lu\nfile mtime %lld.%09u inode %llu size %llu\n", args[0],
	    (unsigned long)e.st.uid, (long long)e.st.mtime_sec, e.st.mtime_nsec,
	    (unsigned long long)e.st.ino, (unsigned long long)e.st.size);
	printf("status %s\n", e.broken ? (e.blob ? "broken (the previous policy stays)" :
	    "broken (no policy)") : "ok");
	int status = CTL_OK;
	if (e.blob != NULL) {
		if (user_policy_decode(e.blob, e.blob_len, &p) < 0) {
			ctl_error("policy show: corrupt policy for %s", args[0]);
			status = CTL_ERROR;
		} else {
			struct buf out = BUF_INIT;
			user_policy_describe(p, &out);
			fputs(out.data, stdout);
			buf_free(&out);
		}
	}
	user_policy_free(p);
	free((void *)e.blob);
	policy_store_close(s);
	return status;
}
