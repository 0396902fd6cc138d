/*
 * log.h - the logging ladder shared by every mailprocd process.
 *
 * log_debug/log_info/log_warn for events; fatal() for a broken environment
 * (log, exit 1); panic() for our own bugs (log, abort).  Messages go to
 * syslog (facility mail) in daemon mode and to stderr with -d.  Delivery
 * results use key=value fields so that they can be grepped.
 */
#ifndef MP_LOG_H
#define MP_LOG_H

#include <stdarg.h>

#define MP_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* to_stderr: log to stderr instead of syslog; verbose: also log_debug. */
void log_init(const char *ident, int to_stderr, int verbose);
/* Change the ident after fork (e.g. "mailprocd/receiver"). */
void log_set_ident(const char *ident);

void log_debug(const char *fmt, ...) MP_PRINTF(1, 2);
void log_info(const char *fmt, ...) MP_PRINTF(1, 2);
void log_warn(const char *fmt, ...) MP_PRINTF(1, 2);
void log_vmsg(int prio, const char *fmt, va_list ap) MP_PRINTF(2, 0);

_Noreturn void fatal(const char *fmt, ...) MP_PRINTF(1, 2);
_Noreturn void panic(const char *fmt, ...) MP_PRINTF(1, 2);

#endif
