/*
 * spool_group.h - borrowing the mail spool's group around the few calls
 * that need it (internal to src/deliver; see spool_group.c).
 */
#ifndef MP_DELIVER_SPOOL_GROUP_H
#define MP_DELIVER_SPOOL_GROUP_H

/* 1 when the directory dirfd belongs to the spool group, which may write
 * it, and this process holds that group as its saved gid; else 0. */
int spool_group_dir(int dirfd);
/* Make the spool group the effective gid, and back to the real gid;
 * a failure to switch back is fatal (the process must not go on with
 * it). */
void spool_group_enter(void);
void spool_group_leave(void);

#endif
