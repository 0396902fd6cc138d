/*
 * main.c - mailmond, the mail delivery delay monitor: command line,
 * configuration check (-n), detaching, giving up root.
 *
 *   mailmond [-d] [-n] [-v] [-f FILE] [-V] [-h]
 *
 * mailmond never runs as root: started as root it needs `user` in its
 * configuration and becomes that account once the metrics listener is
 * open.
 */
#include "mailmond/mm_config.h"
#include "mailmond/mm_listen.h"
#include "mailmond/monitor.h"
#include "lib/log.h"
#include "lib/privsep.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int problems;

static void report(const char *msg)
{
	fprintf(stderr, "%s\n", msg);
	problems++;
}

static _Noreturn void usage(int status)
{
	fprintf(status ? stderr : stdout,
	    "usage: mailmond [-d] [-n] [-v] [-f FILE] [-V] [-h]\n"
	    "  -d       stay in the foreground, log to stderr\n"
	    "  -n       check the configuration, then exit\n"
	    "  -v       verbose (debug) logging\n"
	    "  -f FILE  configuration file (default " MM_CONFIG_DEFAULT_PATH ")\n"
	    "  -V, --version  print the version\n"
	    "  -h, --help     print this help\n");
	exit(status);
}

/* The account to run as: *uid is ours when not root. */
static void check_user(const struct mm_config *c, uid_t *uid, gid_t *gid, char **name)
{
	char msg[1200];

	*name = NULL;
	if (c->user != NULL) {
		if (privsep_lookup_user(c->user, uid, gid, NULL, name) < 0) {
			snprintf(msg, sizeof(msg), "%s:%d: user: unknown account \"%s\"", c->path,
			    c->user_line, c->user);
			report(msg);
			return;
		}
		if (*uid == 0) {
			snprintf(msg, sizeof(msg), "%s:%d: user must not be root", c->path,
			    c->user_line);
			report(msg);
			return;
		}
	} else if (geteuid() == 0) {
		snprintf(msg, sizeof(msg), "%s: mailmond does not run as root: started as root it "
		    "needs `user` (the account to run as)", c->path);
		report(msg);
	}
}

int main(int argc, char **argv)
{
	struct mm_config c;
	const char *path = MM_CONFIG_DEFAULT_PATH;
	int foreground = 0, check_only = 0, verbose = 0, opt;
	int listen_fds[MM_MAX_LISTEN];
	uid_t uid = 0;
	gid_t gid = 0;
	char *user_name = NULL;

	static const struct option long_opts[] = {
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};

	while ((opt = getopt_long(argc, argv, "dnvf:Vh", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'd': foreground = 1; break;
		case 'n': check_only = 1; break;
		case 'v': verbose = 1; break;
		case 'f': path = optarg; break;
		case 'V':
			printf("mailmond %s\n", MP_VERSION);
			return 0;
		case 'h': usage(0);
		default: usage(2);
		}
	}
	if (optind != argc)
		usage(2);

	log_init("mailmond", 1, verbose);
	mm_config_defaults(&c);
	mm_config_load(&c, path, report);
	if (problems == 0)
		check_user(&c, &uid, &gid, &user_name);
	if (check_only || problems) {
		if (check_only && problems == 0)
			printf("%s: ok\n", path);
		free(user_name);
		mm_config_free(&c);
		return problems ? 1 : 0;
	}
	/* opened while still root, for a port below 1024; errors to the terminal */
	if (mm_listen_open(&c, listen_fds) < 0) {
		free(user_name);
		mm_config_free(&c);
		return 1;
	}
	if (!foreground) {
		if (daemon(0, 0) < 0) {
			fprintf(stderr, "mailmond: daemon: %s\n", strerror(errno));
			return 1;
		}
		log_init("mailmond", 0, verbose);
	}
	if (geteuid() == 0)
		privsep_become_or_die(uid, gid, user_name);
	free(user_name);
	int status = monitor_run(&c, listen_fds);
	for (int i = 0; i < c.nlisten; i++)
		close(listen_fds[i]);
	mm_config_free(&c);
	return status;
}
