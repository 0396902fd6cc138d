/*
 * privsep.c - setgroups/setgid/setuid with verification; passwd lookups.
 *
 * A root-mode worker may keep one more group, the mail spool's, as its
 * saved set-group-ID only (never real, effective or supplementary): it
 * switches its effective gid to it around the few calls that need it
 * (deliver/spool_group.c), and privsep_drop_saved_gid() gives it up for
 * good before anything is executed.
 */
#include "lib/privsep.h"
#include "lib/log.h"
#include "lib/parse_util.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int privsep_become(uid_t uid, gid_t gid, const char *name, char *err, size_t errlen)
{
	return privsep_become_keep_gid(uid, gid, name, gid, err, errlen);
}

int privsep_become_keep_gid(uid_t uid, gid_t gid, const char *name, gid_t saved_gid,
    char *err, size_t errlen)
{
	if (geteuid() != 0) {
		if (getuid() == uid && geteuid() == uid)
			return 0;
		snprintf(err, errlen, "not root: cannot become uid %lu", (unsigned long)uid);
		return -1;
	}
	if (name != NULL) {
		if (initgroups(name, gid) < 0) {
			snprintf(err, errlen, "initgroups(%s): %s", name, strerror(errno));
			return -1;
		}
	} else if (setgroups(1, &gid) < 0) {
		snprintf(err, errlen, "setgroups(%lu): %s", (unsigned long)gid, strerror(errno));
		return -1;
	}
	if (setresgid(gid, gid, saved_gid) < 0) {
		snprintf(err, errlen, "setresgid(%lu): %s", (unsigned long)gid, strerror(errno));
		return -1;
	}
	if (setresuid(uid, uid, uid) < 0) {
		snprintf(err, errlen, "setresuid(%lu): %s", (unsigned long)uid, strerror(errno));
		return -1;
	}
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0 ||
	    ru != uid || eu != uid || su != uid || rg != gid || eg != gid || sg != saved_gid) {
		snprintf(err, errlen, "credentials did not change to %lu:%lu (saved gid %lu)",
		    (unsigned long)uid, (unsigned long)gid, (unsigned long)saved_gid);
		return -1;
	}
	if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
		snprintf(err, errlen, "could regain root after dropping to uid %lu", (unsigned long)uid);
		return -1;
	}
	/* the saved gid lets us switch to saved_gid, and to nothing else */
	if (uid != 0 && gid != 0 && saved_gid != 0 && setresgid((gid_t)-1, 0, (gid_t)-1) == 0) {
		snprintf(err, errlen, "could regain group root after dropping to gid %lu",
		    (unsigned long)gid);
		return -1;
	}
	return 0;
}

int privsep_drop_saved_gid(void)
{
	gid_t rg, eg, sg;

	if (getresgid(&rg, &eg, &sg) < 0)
		return -1;
	if (eg == rg && sg == rg)
		return 0;
	if (setresgid(rg, rg, rg) < 0 || getresgid(&rg, &eg, &sg) < 0 || eg != rg || sg != rg)
		return -1;
	return 0;
}

void privsep_become_or_die(uid_t uid, gid_t gid, const char *name)
{
	char err[256];
	if (privsep_become(uid, gid, name, err, sizeof(err)) < 0)
		fatal("dropping privileges: %s", err);
}

int privsep_lookup_user(const char *s, uid_t *uid, gid_t *gid, char **home, char **name)
{
	struct passwd *pw;
	uint64_t n;

	errno = 0;
	if (parse_uint(s, UINT32_MAX - 1, &n) == 0)
		pw = getpwuid((uid_t)n);
	else
		pw = getpwnam(s);
	if (pw == NULL)
		return -1;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (home)
		*home = xstrdup(pw->pw_dir);
	if (name)
		*name = xstrdup(pw->pw_name);
	return 0;
}

int privsep_lookup_group(const char *s, gid_t *gid)
{
	struct group *gr;
	uint64_t n;

	if (parse_uint(s, UINT32_MAX - 1, &n) == 0) {
		*gid = (gid_t)n;
		return 0;
	}
	gr = getgrnam(s);
	if (gr == NULL)
		return -1;
	*gid = gr->gr_gid;
	return 0;
}
