/*
 * fd_limit.h - the open files limit (RLIMIT_NOFILE) the receiver needs for
 * max_sessions: one descriptor per session, one more per session that is
 * writing a queue file, the listeners and a reserve (spare queue files
 * among it).
 */
#ifndef MP_FD_LIMIT_H
#define MP_FD_LIMIT_H

#include <sys/types.h>

#include "conf/config.h"
#include "queue/qspares.h"

/* Descriptors per unit of max_sessions (the socket and a queue file)
 * and for everything else the receiver keeps open (event loop, qmgr
 * socket, databases, log, commit threads, and the spare queue files
 * ready for messages to come). */
#define FD_LIMIT_PER_SESSION 2
#define FD_LIMIT_RESERVE (64 + QSPARES_MAX)

/* How many descriptors cfg needs. */
unsigned long long fd_limit_needed(const struct config *cfg);

/* Raise the soft RLIMIT_NOFILE of process pid (0: the caller) to what cfg
 * needs, never lowering it.  Up to the hard limit; a caller running as
 * root raises the hard limit too (up to fs.nr_open).  Logs what it did, and
 * a warning with both numbers when it falls short.  Callable again at a
 * reload (on the running receiver's pid).  Returns the soft limit now in
 * force, or 0 when it could not be read. */
unsigned long long raise_fd_limit(const struct config *cfg, pid_t pid);

#endif
