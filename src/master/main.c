/*
 * main.c - mailprocd: command line, configuration check (-n), start-up.
 *
 *   mailprocd [-d] [-n] [-v] [-f FILE] [-V] [-h]
 *
 * Started as root, the daemon runs in root mode: the receiver and qmgr
 * drop to `user`, workers run as each recipient's account.  Started by
 * anybody else it runs in single-user mode: every process is that user.
 * -n judges the file in the mode it is written for, whoever runs it: with
 * `user` in root mode, without in single-user mode.
 */
#include "master/master.h"
#include "conf/config.h"
#include "db/db.h"
#include "db/rules_entry.h"
#include "lib/log.h"
#include "lib/privsep.h"
#include "lib/proctitle.h"

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

/* A problem with a setting: at the line it was set on, if it was. */
static void report_setting(const struct config *c, const char *key, const char *msg)
{
	int line = config_line(c, key);
	if (line > 0)
		fprintf(stderr, "%s:%d: %s\n", c->path, line, msg);
	else
		fprintf(stderr, "%s: %s\n", c->path, msg);
	problems++;
}

static void report_file(const char *file, const char *msg)
{
	fprintf(stderr, "%s: %s\n", file, msg);
	problems++;
}

static _Noreturn void usage(int status)
{
	fprintf(status ? stderr : stdout,
	    "usage: mailprocd [-d] [-n] [-v] [-f FILE] [-V] [-h]\n"
	    "  -d       stay in the foreground, log to stderr\n"
	    "  -n       check the configuration and databases, then exit\n"
	    "  -v       verbose (debug) logging\n"
	    "  -f FILE  configuration file (default " CONFIG_DEFAULT_PATH ")\n"
	    "  -V, --version  print the version\n"
	    "  -h, --help     print this help\n");
	exit(status);
}

/* Single-user mode cannot give a socket away: owner= must be us. */
static void check_socket_owners(const struct config *c)
{
	for (int i = 0; i < c->nlisten; i++) {
		const struct listen_spec *l = &c->listen[i];
		char msg[600];
		if (l->owner == NULL || l->owner_uid == geteuid())
			continue;
		snprintf(msg, sizeof(msg), "%s:%d: listen unix:%s: owner=%s needs the daemon "
		    "started as root (single-user mode runs as uid %lu)", c->path, l->line,
		    l->path, l->owner, (unsigned long)geteuid());
		report(msg);
	}
}

/* Checks beyond the syntax of single lines: identities, the default
 * delivery instruction, the databases.  d->root_mode: judge the file as the
 * root-mode daemon will run it; check_only: -n (also run by root on a
 * single-user file, whose account it cannot know). */
static void check_setup(struct daemon_ctx *d, int check_only)
{
	struct config *c = &d->cfg;
	char err[512];

	if (d->root_mode) {
		char *name = NULL;
		if (c->user == NULL)
			report_file(c->path, "started as root, mailprocd runs in root mode and needs "
			    "`user` (an unprivileged account for the receiver and qmgr); to run this "
			    "file in single-user mode, start it as the account that should run it");
		else if (privsep_lookup_user(c->user, &d->user_uid, &d->user_gid, NULL, &name) < 0)
			report_setting(c, "user", "user: unknown account");
		else if (d->user_uid == 0)
			report_setting(c, "user", "user must not be root");
		free(name);
	} else {
		d->user_uid = getuid();
		d->user_gid = getgid();
		/* root checking a single-user file does not know its account */
		if (!(check_only && geteuid() == 0))
			check_socket_owners(c);
	}

	if (rules_check_default_delivery(c->default_delivery, err, sizeof(err)) < 0)
		report_setting(c, "default_delivery", err);

	if (check_only) {
		struct db *db;
		if (db_open(c->db_dir, &db, err, sizeof(err)) < 0) {
			report_file(c->db_dir, err);
		} else {
			db_close(db);
		}
	}
}

int main(int argc, char **argv)
{
	static const struct option long_opts[] = {
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct daemon_ctx d = { 0 };
	const char *path = CONFIG_DEFAULT_PATH;
	int foreground = 0, check_only = 0, verbose = 0, opt;

	proctitle_init(argc, argv);
	while ((opt = getopt_long(argc, argv, "dnvf:Vh", long_opts, NULL)) != -1) {
		switch (opt) {
		case 'd': foreground = 1; break;
		case 'n': check_only = 1; break;
		case 'v': verbose = 1; break;
		case 'f': path = optarg; break;
		case 'V':
			printf("mailprocd %s\n", MP_VERSION);
			return 0;
		case 'h': usage(0);
		default: usage(2);
		}
	}
	if (optind != argc)
		usage(2);

	log_init("mailprocd", foreground || check_only, verbose);
	config_defaults(&d.cfg);
	config_load(&d.cfg, path, report);
	d.root_mode = geteuid() == 0;
	/* -n: the mode the file is written for, not the checker's */
	if (check_only)
		d.root_mode = d.cfg.user != NULL;
	if (problems == 0)
		check_setup(&d, check_only);
	if (check_only || problems) {
		if (check_only && problems == 0)
			printf("%s: ok (%s)\n", path, d.root_mode ? "root mode: start it as root" :
			    "single-user mode: start it as the account that runs it, not as root");
		config_free(&d.cfg);
		return problems ? 1 : 0;
	}
	if (!foreground && daemon(0, 0) < 0) {
		fprintf(stderr, "mailprocd: daemon: %s\n", strerror(errno));
		return 1;
	}
	proctitle_set("mailprocd: master");
	int status = master_run(&d);
	config_free(&d.cfg);
	return status;
}
