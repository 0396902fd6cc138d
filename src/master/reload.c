/*
 * reload.c - SIGHUP in the master: the configuration file is read once
 * into a sealed memfd, parsed and checked like at start-up, and swapped
 * in; the children are sent that memfd, so they parse exactly what the
 * master checked, without being able to read the file (in root mode they
 * run unprivileged), and swap it in themselves.  Nothing is restarted.
 */
#include "master/reload.h"
#include "conf/config_swap.h"
#include "db/rules_entry.h"
#include "lib/fsutil.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/msgtypes.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int errors;

static void report_to_log(const char *msg)
{
	log_warn("%s", msg);
	errors++;
}

/* The file's text in a memfd nobody can change any more; -1 (logged). */
static int snapshot(const char *path)
{
	size_t len = 0;
	char *text = read_file(path, CONFIG_MAX_SIZE, &len);
	if (text == NULL) {
		log_warn("%s: cannot read: %s", path, strerror(errno));
		return -1;
	}
	int fd = memfd_create("mailprocd.conf", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || write_all(fd, text, len) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
		log_warn("reload: memfd: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	free(text);
	return fd;
}

/* What mailprocd -n checks beyond the lines themselves and that a reload
 * can change (the account of `user` needs a restart anyway). */
static void check_setup(const struct config *c)
{
	char err[600];

	if (rules_check_default_delivery(c->default_delivery, err, sizeof(err)) < 0) {
		int line = config_line(c, "default_delivery");
		if (line > 0)
			log_warn("%s:%d: %s", c->path, line, err);
		else
			log_warn("%s: %s", c->path, err);
		errors++;
	}
}

int reload_prepare(struct config *live)
{
	struct config fresh;
	int fd = snapshot(live->path);

	if (fd < 0) {
		log_warn("reload: keeping the running configuration");
		return -1;
	}
	errors = 0;
	config_defaults(&fresh);
	config_load_fd(&fresh, fd, live->path, report_to_log);
	if (errors == 0)
		check_setup(&fresh);
	if (errors > 0) {
		log_warn("reload: %s has errors; keeping the running configuration", live->path);
		config_free(&fresh);
		close(fd);
		return -1;
	}
	config_keep_restart_settings(&fresh, live, 1);
	fresh.generation = live->generation + 1;
	config_swap(live, &fresh);
	return fd;
}

int reload_send(int sock, const char *child, const struct config *live, int memfd)
{
	static struct ipc_msg m;

	ipc_init(&m, MSG_CONFIG);
	ipc_add_u64(&m, live->generation);
	ipc_set_fd(&m, memfd);
	if (ipc_send(sock, &m) < 0) {
		log_warn("reload: cannot send the configuration to the %s: %s", child, strerror(errno));
		return -1;
	}
	return 0;
}
