/*
 * alert.h - running `alert_command` when a probe changes state.
 */
#ifndef MM_ALERT_H
#define MM_ALERT_H

#include <sys/types.h>

/* Run cmd through /bin/sh -c with PROBE, STATE and DELAY (seconds, with
 * up to three decimals) in its environment, stdin from /dev/null, and no
 * descriptor of ours but stdout and stderr, in a process group of its own
 * (its pid: kill(-pid) reaches all it started).  Returns the child's pid
 * (the caller reaps it), or -1 (logged). */
pid_t alert_run(const char *cmd, const char *probe, const char *state, double delay);

#endif
