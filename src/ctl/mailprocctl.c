/*
 * mailprocctl.c - the administration command: option parsing, the command
 * table, loading the configuration, dispatch.
 *
 *   mailprocctl [-f FILE] db compile [SRCDIR]
 *   mailprocctl [-f FILE] db lookup ADDRESS
 *   mailprocctl [-f FILE] queue [show ID | delete ID | flush]
 *   mailprocctl [-f FILE] status | test ADDRESS | learn --spam|--ham ADDRESS
 *   mailprocctl [-f FILE] policy sync | policy show ACCOUNT | policy check < request
 *   mailprocctl [-f FILE] lists sync
 *   mailprocctl -V | --version | -h | --help
 *
 * Exit status: 0 success, 1 errors (printed on stderr), 2 usage.
 */
#include "conf/config.h"
#include "ctl/ctl.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*command_fn)(const struct config *cfg, char **args, int nargs);

static const struct command {
	const char *word1;
	const char *word2;      /* NULL: a one-word command */
	int min_args, max_args;
	command_fn run;         /* NULL: not implemented yet */
} commands[] = {
	{ "db", "compile", 0, 1, ctl_db_compile },
	{ "db", "lookup", 1, 1, ctl_db_lookup },
	{ "queue", "show", 1, 1, ctl_queue_show },
	{ "queue", "delete", 1, 1, ctl_queue_delete },
	{ "queue", "flush", 0, 0, ctl_queue_flush },
	{ "queue", NULL, 0, 0, ctl_queue_list },
	{ "status", NULL, 0, 0, ctl_status },
	{ "test", NULL, 1, 3, ctl_test },
	{ "learn", NULL, 2, 2, ctl_learn },
	{ "policy", "sync", 0, 0, ctl_policy_sync },
	{ "policy", "show", 1, 1, ctl_policy_show },
	{ "policy", "check", 0, 0, ctl_policy_check },
	{ "lists", "sync", 0, 0, ctl_lists_sync },
};

static void usage(FILE *out)
{
	fputs("usage: mailprocctl [-f FILE] db compile [SRCDIR]\n"
	    "       mailprocctl [-f FILE] db lookup ADDRESS\n"
	    "       mailprocctl [-f FILE] queue [show ID | delete ID | flush]\n"
	    "       mailprocctl [-f FILE] status\n"
	    "       mailprocctl [-f FILE] test [-s SENDER] ADDRESS < message\n"
	    "       mailprocctl [-f FILE] learn --spam|--ham ADDRESS < message\n"
	    "       mailprocctl [-f FILE] policy sync\n"
	    "       mailprocctl [-f FILE] policy show ACCOUNT\n"
	    "       mailprocctl [-f FILE] policy check < request\n"
	    "       mailprocctl [-f FILE] lists sync\n"
	    "       mailprocctl -V | -h\n"
	    "\n"
	    "  -f FILE   configuration file (default " CONFIG_DEFAULT_PATH ")\n"
	    "  -V, --version  print the version\n"
	    "  -h, --help     print this help\n", out);
}

static int usage_error(const char *fmt, ...) MP_PRINTF(1, 2);
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("mailprocctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage(stderr);
	return CTL_USAGE;
}

/* Whether word is a command (has_sub = 0) or has subcommands (has_sub = 1). */
static int known_word(const char *word, int has_sub)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].word1, word) == 0 &&
		    (!has_sub || commands[i].word2 != NULL))
			return 1;
	}
	return 0;
}

/* Explain why argv names no command. */
static int unknown_command(int argc, char **argv)
{
	if (!known_word(argv[0], 0))
		return usage_error("unknown command \"%s\"", argv[0]);
	if (argc == 1)
		return usage_error("%s: missing subcommand", argv[0]);
	return usage_error("unknown %s command \"%s\"", argv[0], argv[1]);
}

/* The command for argv (after the options); *nwords says how many words
 * it used. */
static const struct command *find_command(int argc, char **argv, int *nwords)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command *c = &commands[i];
		if (strcmp(argv[0], c->word1) != 0)
			continue;
		if (c->word2 == NULL) {
			/* "queue bogus" is an unknown subcommand, not arguments */
			if (argc > 1 && known_word(c->word1, 1) && argv[1][0] != '-')
				return NULL;
			*nwords = 1;
			return c;
		}
		if (argc > 1 && strcmp(argv[1], c->word2) == 0) {
			*nwords = 2;
			return c;
		}
	}
	return NULL;
}

static void report_config_error(const char *msg)
{
	fprintf(stderr, "%s\n", msg);
}

static int run(const struct command *c, const char *config_path, char **args, int nargs)
{
	struct config cfg;
	config_defaults(&cfg);
	if (config_load(&cfg, config_path, report_config_error) > 0) {
		config_free(&cfg);
		return CTL_ERROR;
	}
	int r = c->run(&cfg, args, nargs);
	config_free(&cfg);
	return r;
}

int main(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = CONFIG_DEFAULT_PATH;
	int ch, nwords;

	log_init("mailprocctl", 1, 0);
	while ((ch = getopt_long(argc, argv, "+f:Vh", long_opts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			config_path = optarg;
			break;
		case 'V':
			printf("mailprocctl %s\n", MP_VERSION);
			return CTL_OK;
		case 'h':
			usage(stdout);
			return CTL_OK;
		default:
			usage(stderr);
			return CTL_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0)
		return usage_error("no command given");
	const struct command *c = find_command(argc, argv, &nwords);
	if (c == NULL)
		return unknown_command(argc, argv);
	if (c->run == NULL) {
		fprintf(stderr, "mailprocctl: %s: not implemented yet\n", c->word1);
		return CTL_USAGE;
	}
	int nargs = argc - nwords;
	if (nargs < c->min_args || nargs > c->max_args)
		return usage_error("wrong number of arguments for %s", c->word1);
	return run(c, config_path, argv + nwords, nargs);
}
