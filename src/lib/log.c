/*
 * log.c - syslog/stderr logging with a per-process ident.
 */
#include "lib/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static int log_to_stderr = 1;
static int log_verbose;
static char log_ident[64] = "mailprocd";

void log_init(const char *ident, int to_stderr, int verbose)
{
	log_to_stderr = to_stderr;
	log_verbose = verbose;
	log_set_ident(ident);
}

void log_set_ident(const char *ident)
{
	snprintf(log_ident, sizeof(log_ident), "%s", ident);
	if (!log_to_stderr) {
		closelog();
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
	}
}

void log_vmsg(int prio, const char *fmt, va_list ap)
{
	int saved = errno;

	if (prio == LOG_DEBUG && !log_verbose)
		return;
	if (log_to_stderr) {
		char line[4096];
		const char *tag = prio == LOG_DEBUG ? "debug: " :
		    prio <= LOG_WARNING ? (prio <= LOG_CRIT ? "fatal: " : "warning: ") : "";
		vsnprintf(line, sizeof(line), fmt, ap);
		/* one write so that lines of concurrent processes do not mix */
		char out[4300];
		int n = snprintf(out, sizeof(out), "%s[%ld]: %s%s\n", log_ident,
		    (long)getpid(), tag, line);
		if (n > 0) {
			size_t len = (size_t)n < sizeof(out) ? (size_t)n : sizeof(out) - 1;
			ssize_t w = write(STDERR_FILENO, out, len);
			(void)w;
		}
	} else {
		vsyslog(prio, fmt, ap);
	}
	errno = saved;
}

void log_debug(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LOG_DEBUG, fmt, ap);
	va_end(ap);
}

void log_info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LOG_INFO, fmt, ap);
	va_end(ap);
}

void log_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LOG_WARNING, fmt, ap);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LOG_CRIT, fmt, ap);
	va_end(ap);
	exit(1);
}

void panic(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LOG_CRIT, fmt, ap);
	va_end(ap);
	abort();
}
