/*
 * main.c - mailprocd: command line, configuration check (-n), start-up.
 *
 *   mailprocd [-d] [-n] [-v] [-f FILE]
 *
 * Started as root, the daemon runs in root mode: the receiver and qmgr
 * drop to `user`, workers run as each recipient's account.  Started by
 * anybody else it runs in single-user mode: every process is that user.
 */
#include "master/master.h"
#include "conf/config.h"
#include "db/db.h"
#include "db/rules_entry.h"
#include "lib/log.h"
#include "lib/privsep.h"

#include <errno.h>
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

static void report_file(const char *file, const char *msg)
{
	fprintf(stderr, "%s: %s\n", file, msg);
	problems++;
}

static void usage(void)
{
	fprintf(stderr, "usage: mailprocd [-d] [-n] [-v] [-f FILE]\n"
	    "  -d       stay in the foreground, log to stderr\n"
	    "  -n       check the configuration and databases, then exit\n"
	    "  -v       verbose (debug) logging\n"
	    "  -f FILE  configuration file (default " CONFIG_DEFAULT_PATH ")\n");
	exit(2);
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
 * delivery instruction, the databases. */
static void check_setup(struct daemon_ctx *d, int check_db)
{
	struct config *c = &d->cfg;
	char err[512];

	if (d->root_mode) {
		char *name = NULL;
		if (c->user == NULL)
			report_file(c->path, "root mode needs `user` (an unprivileged account for the receiver and qmgr)");
		else if (privsep_lookup_user(c->user, &d->user_uid, &d->user_gid, NULL, &name) < 0)
			report_file(c->path, "user: unknown account");
		else if (d->user_uid == 0)
			report_file(c->path, "user must not be root");
		free(name);
	} else {
		d->user_uid = getuid();
		d->user_gid = getgid();
		check_socket_owners(c);
	}

	if (rules_check_default_delivery(c->default_delivery, err, sizeof(err)) < 0)
		report_file(c->path, err);

	if (check_db) {
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
	struct daemon_ctx d = { 0 };
	const char *path = CONFIG_DEFAULT_PATH;
	int foreground = 0, check_only = 0, verbose = 0, opt;

	while ((opt = getopt(argc, argv, "dnvf:")) != -1) {
		switch (opt) {
		case 'd': foreground = 1; break;
		case 'n': check_only = 1; break;
		case 'v': verbose = 1; break;
		case 'f': path = optarg; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();

	log_init("mailprocd", foreground || check_only, verbose);
	config_defaults(&d.cfg);
	config_load(&d.cfg, path, report);
	d.root_mode = geteuid() == 0;
	if (problems == 0)
		check_setup(&d, check_only);
	if (check_only || problems) {
		if (check_only && problems == 0)
			printf("%s: ok\n", path);
		config_free(&d.cfg);
		return problems ? 1 : 0;
	}
	if (!foreground && daemon(0, 0) < 0) {
		fprintf(stderr, "mailprocd: daemon: %s\n", strerror(errno));
		return 1;
	}
	int status = master_run(&d);
	config_free(&d.cfg);
	return status;
}
