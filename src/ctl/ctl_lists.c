/*
 * ctl_lists.c - mailprocctl lists sync: one fetch of the lists' members
 * from Mailman 3 (members_source mailman3) into state_dir/members.mdb
 * now, as the lists sync process does it; prints each list with its count
 * of addresses.  In root mode it runs as the daemon's user, so that the
 * file is the user's as when the daemon writes it.
 */
#include "ctl/ctl.h"
#include "conf/config.h"
#include "lists/lists_sync.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int ctl_lists_sync(const struct config *cfg, char **args, int nargs)
{
	struct members_data d;
	char err[600];

	if (cfg->members_source != MEMBERS_MAILMAN3) {
		ctl_error("lists sync: members_source is not mailman3 in %s", cfg->path);
		return CTL_ERROR;
	}
	if (ctl_become_daemon_user(cfg, "lists sync") < 0)
		return CTL_ERROR;
	if (lists_sync_run(cfg, &d, NULL, err, sizeof(err)) < 0) {
		ctl_error("lists sync: %s (the members fetched before stay)", err);
		return CTL_ERROR;
	}
	for (size_t i = 0; i < d.n; i++) {
		size_t counts[3] = { 0, 0, 0 };
		for (size_t j = 0; j < d.lists[i].n; j++) {
			const char *role = d.lists[i].roles[j];
			counts[strcmp(role, "member") == 0 ? 0 : strcmp(role, "owner") == 0 ? 1 : 2]++;
		}
		printf("%s: %zu members, %zu owners, %zu moderators\n", d.lists[i].address,
		    counts[0], counts[1], counts[2]);
	}
	printf("%zu list%s fetched from %s\n", d.n, d.n == 1 ? "" : "s", cfg->members_url);
	members_data_free(&d);
	return CTL_OK;
}
