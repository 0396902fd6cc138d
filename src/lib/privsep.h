/*
 * privsep.h - dropping privileges for good.
 *
 * The order is setgroups, setgid, setuid, then a check that none of it can
 * be undone (setuid(0) must fail).  Any failure is fatal: a process that
 * cannot drop privileges must not go on.
 */
#ifndef MP_PRIVSEP_H
#define MP_PRIVSEP_H

#include <sys/types.h>

/* Become uid/gid with only gid as group (supplementary groups cleared, or
 * set to those of `name` when given).  Returns 0 or -1 with a reason. */
int privsep_become(uid_t uid, gid_t gid, const char *name, char *err, size_t errlen);
/* The same, keeping saved_gid as the saved set-group-ID (real and
 * effective gid are gid): the process can later make saved_gid its
 * effective gid, and no other.  Verified, with group root out of reach. */
int privsep_become_keep_gid(uid_t uid, gid_t gid, const char *name, gid_t saved_gid,
    char *err, size_t errlen);
/* Give up a saved gid for good (real, effective and saved all the real
 * gid), before executing anything.  Async-signal-safe.  0, or -1. */
int privsep_drop_saved_gid(void);
/* Like privsep_become, but fatal on failure. */
void privsep_become_or_die(uid_t uid, gid_t gid, const char *name);
/* Look up a user by name or number: 0 found, -1 not. home may be NULL. */
int privsep_lookup_user(const char *name_or_number, uid_t *uid, gid_t *gid,
    char **home, char **name);
int privsep_lookup_group(const char *name_or_number, gid_t *gid);

#endif
