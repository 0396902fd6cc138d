/*
 * fd_syncer.h - fdatasync a file every few seconds from a thread of its
 * own, so that the event loop never waits for the disk (greylist.mdb is
 * written MDB_NOSYNC and synced this way).
 */
#ifndef MP_POLICY_FD_SYNCER_H
#define MP_POLICY_FD_SYNCER_H

struct fd_syncer;

/* what names the file in log lines.  NULL if no thread could be started
 * (logged; the caller syncs at close anyway). */
struct fd_syncer *fd_syncer_start(int fd, unsigned interval_s, const char *what);
/* Stop the thread and wait for it; NULL is fine. */
void fd_syncer_stop(struct fd_syncer *s);

#endif
