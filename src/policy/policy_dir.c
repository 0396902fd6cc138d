/*
 * policy_dir.c - state_dir, where the policy service keeps policy.mdb and
 * greylist.mdb: created at start by the master (and by mailprocctl policy
 * sync), owned by config `user`, mode 0700.
 */
#include "policy/sync.h"
#include "lib/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int policy_state_dir_prepare(const char *state_dir, uid_t owner, gid_t group,
    char *err, size_t errlen)
{
	struct stat st;
	if (mkdir_p(state_dir, 0700) < 0 || lstat(state_dir, &st) < 0) {
		snprintf(err, errlen, "cannot create state_dir %s: %s", state_dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "state_dir %s is not a directory", state_dir);
		return -1;
	}
	if ((owner != (uid_t)-1 || group != (gid_t)-1) &&
	    (st.st_uid != owner || st.st_gid != group) && lchown(state_dir, owner, group) < 0) {
		snprintf(err, errlen, "state_dir %s: chown: %s", state_dir, strerror(errno));
		return -1;
	}
	if ((st.st_mode & 07777) != 0700 && chmod(state_dir, 0700) < 0) {
		snprintf(err, errlen, "state_dir %s: chmod: %s", state_dir, strerror(errno));
		return -1;
	}
	return 0;
}
