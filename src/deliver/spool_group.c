/*
 * spool_group.c - the mail spool's group (mail_spool_group, "mail"), for
 * mbox delivery into a spool like Debian's /var/mail (root:mail, mode
 * 2775) that the account itself cannot write.
 *
 * As procmail and Postfix's local do, the group is used for the lock file
 * (FILE.lock) and for creating a missing mbox there, and for nothing else:
 * a root-mode worker holds it only as its saved set-group-ID (the spawner
 * sets it), makes it the effective gid just around those calls, and
 * switches back at once.  The mbox itself is created owned by the account
 * with mode 0600, and read and written with the account's rights only.
 * A pipe command gives the saved gid up before exec (pipe_exec.c); any
 * other exec copies the effective gid, the account's, into the saved one.
 */
#include "deliver/deliver.h"
#include "deliver/spool_group.h"
#include "lib/log.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static gid_t spool_gid = (gid_t)-1;

void deliver_set_spool_group(gid_t gid)
{
	spool_gid = gid;
}

int spool_group_dir(int dirfd)
{
	struct stat st;
	gid_t rg, eg, sg;

	if (spool_gid == (gid_t)-1 || getresgid(&rg, &eg, &sg) < 0 || sg != spool_gid ||
	    rg == spool_gid)
		return 0;
	if (fstat(dirfd, &st) < 0 || !S_ISDIR(st.st_mode))
		return 0;
	return st.st_gid == spool_gid && (st.st_mode & S_IWGRP) != 0;
}

void spool_group_enter(void)
{
	if (setresgid((gid_t)-1, spool_gid, (gid_t)-1) < 0)
		log_warn("cannot switch to the mail spool group %lu: %s",
		    (unsigned long)spool_gid, strerror(errno));
}

void spool_group_leave(void)
{
	gid_t rg = getgid();

	if (setresgid((gid_t)-1, rg, (gid_t)-1) < 0 || getegid() != rg)
		fatal("cannot switch back from the mail spool group to gid %lu: %s",
		    (unsigned long)rg, strerror(errno));
}
