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
 * account and home: the user this worker runs as (for the spam engine). */
_Noreturn void worker_main(const struct config *cfg, int qmgr_fd, const char *account,
    const char *home);

#endif
