/*
 * proctitle.c - setproctitle for Linux: write the title over the argv
 * strings (and the environment strings that follow them, once copied
 * elsewhere), so that /proc/PID/cmdline and ps show each process's role.
 */
#include "lib/proctitle.h"
#include "lib/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

extern char **environ;

static char *title_area;        /* argv[0]; NULL until proctitle_init */
/* The moved environment, kept here too so that it stays reachable when a
 * process later points environ elsewhere.  Its strings belong to environ
 * from then on: a string that setenv or Perl's %ENV (in a SpamAssassin
 * worker) replaces in place is not freed (tests/lsan.supp says so). */
static char **moved_env;
static size_t title_size;       /* bytes we may overwrite, with the NUL */

void proctitle_init(int argc, char **argv)
{
	if (argc < 1 || argv[0] == NULL)
		return;
	char *end = argv[0] + strlen(argv[0]) + 1;
	/* only the contiguous run of strings after argv[0] */
	for (int i = 1; i < argc; i++)
		if (argv[i] == end)
			end = argv[i] + strlen(argv[i]) + 1;
	int nenv = 0;
	while (environ[nenv] != NULL)
		nenv++;
	int contiguous = 1;
	for (int i = 0; i < nenv && contiguous; i++) {
		if (environ[i] == end)
			end = environ[i] + strlen(environ[i]) + 1;
		else
			contiguous = 0;
	}
	/* the environment moves to the heap: getenv keeps working */
	char **env = xmalloc(sizeof(*env) * (size_t)(nenv + 1));
	for (int i = 0; i < nenv; i++)
		env[i] = xstrdup(environ[i]);
	env[nenv] = NULL;
	environ = moved_env = env;
	/* argv[1..] keep their own copies for getopt, which runs later */
	for (int i = 1; i < argc; i++)
		argv[i] = xstrdup(argv[i]);
	title_area = argv[0];
	title_size = (size_t)(end - argv[0]);
}

void proctitle_set(const char *fmt, ...)
{
	char title[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(title, sizeof(title), fmt, ap);
	va_end(ap);
	prctl(PR_SET_NAME, title, 0, 0, 0);
	if (title_area == NULL)
		return;
	size_t n = strlen(title);
	if (n >= title_size)
		n = title_size - 1;
	memcpy(title_area, title, n);
	/* the rest zeroed: ps shows one word list, with no old arguments */
	memset(title_area + n, 0, title_size - n);
}
