/*
 * proctitle.h - name a process's role in ps (`mailprocd: receiver`).
 *
 * proctitle_init() once in main(), before anything keeps pointers into
 * argv or the environment; proctitle_set() in each process after fork.
 */
#ifndef MP_PROCTITLE_H
#define MP_PROCTITLE_H

#include "lib/log.h"

/* Moves the environment out of the argv+environ area so that the title
 * may use all of it. */
void proctitle_init(int argc, char **argv);
/* Sets /proc/PID/cmdline (what ps shows) and the thread name (comm,
 * what top and ps -o comm show, cut to 15 bytes). */
void proctitle_set(const char *fmt, ...) MP_PRINTF(1, 2);

#endif
