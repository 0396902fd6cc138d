/*
 * monitor.h - the running mailmond: its probes, the timers that send them
 * and check them, the maildir watcher, the metrics endpoint, and the
 * reaping of its children (senders, and alert commands: one at a time per
 * probe, killed after alert_timeout and at stop).
 */
#ifndef MM_MONITOR_H
#define MM_MONITOR_H

#include "mailmond/mm_config.h"

/* Run until SIGTERM or SIGINT with the listening sockets fds[0..
 * c->nlisten-1] (already open).  Returns the exit status. */
int monitor_run(const struct mm_config *c, int *listen_fds);

#endif
