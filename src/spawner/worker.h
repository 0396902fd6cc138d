/*
 * worker.h - the per-user delivery worker: runs as the user, receives jobs
 * (queue file as an open read-only descriptor), delivers each recipient's
 * copies by its rules, reports one result per recipient.
 */
#ifndef MP_WORKER_H
#define MP_WORKER_H

#include <sys/types.h>

#include "conf/config.h"

/* Never returns: exits when the qmgr closes the socket or on idle timeout.
 * account and home: the user this worker runs as, from the databases (for
 * the spam engine, and the home of its uid=/gid= parts).  root_mode: the
 * worker checks that each recipient's part runs as its own uid/gid. */
_Noreturn void worker_main(const struct config *cfg, int qmgr_fd, int root_mode,
    const char *account, const char *home);

#endif
