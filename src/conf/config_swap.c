/*
 * config_swap.c - swapping a reloaded configuration in: which settings
 * need a restart, the in-place swap, and a child's reading of the
 * configuration the master hands it at a reload (MSG_CONFIG).
 */
#include "conf/config_swap.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/msgtypes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int str_differs(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a != b;
	return strcmp(a, b) != 0;
}

static int listen_differs(const struct config *a, const struct config *b)
{
	if (a->nlisten != b->nlisten)
		return 1;
	for (int i = 0; i < a->nlisten; i++) {
		const struct listen_spec *x = &a->listen[i], *y = &b->listen[i];
		if (x->proto != y->proto || x->is_unix != y->is_unix || x->mode != y->mode ||
		    str_differs(x->host, y->host) || str_differs(x->port, y->port) ||
		    str_differs(x->path, y->path) || str_differs(x->group, y->group) ||
		    str_differs(x->owner, y->owner))
			return 1;
	}
	return 0;
}

static void changed(const char *name, int log_changes, int *n)
{
	(*n)++;
	if (log_changes)
		log_warn("reload: %s changed; takes effect at the next restart", name);
}

/* A string setting that needs a restart: fresh takes running's string. */
static void keep_str(char **fresh, char **running, const char *name, int log_changes, int *n)
{
	if (str_differs(*fresh, *running))
		changed(name, log_changes, n);
	free(*fresh);
	*fresh = *running;
	*running = NULL;
}

static void keep_u64(uint64_t *fresh, uint64_t running, const char *name, int log_changes,
    int *n)
{
	if (*fresh != running)
		changed(name, log_changes, n);
	*fresh = running;
}

static void keep_int(int *fresh, int running, const char *name, int log_changes, int *n)
{
	if (*fresh != running)
		changed(name, log_changes, n);
	*fresh = running;
}

int config_keep_restart_settings(struct config *fresh, struct config *running, int log_changes)
{
	int n = 0;

	/* the master opened these sockets, the receiver serves them */
	if (listen_differs(fresh, running))
		changed("listen", log_changes, &n);
	config_free_listen(fresh);
	memcpy(fresh->listen, running->listen, sizeof(fresh->listen));
	fresh->nlisten = running->nlisten;
	memset(running->listen, 0, sizeof(running->listen));
	running->nlisten = 0;
	/* identities and the directories the processes opened or created */
	keep_str(&fresh->user, &running->user, "user", log_changes, &n);
	keep_str(&fresh->queue_dir, &running->queue_dir, "queue_dir", log_changes, &n);
	keep_str(&fresh->db_dir, &running->db_dir, "db_dir", log_changes, &n);
	keep_str(&fresh->run_dir, &running->run_dir, "run_dir", log_changes, &n);
	keep_str(&fresh->state_dir, &running->state_dir, "state_dir", log_changes, &n);
	/* the policy process opened its greylist store with it */
	if (str_differs(fresh->redis_host, running->redis_host) ||
	    str_differs(fresh->redis_port, running->redis_port))
		changed("policy_state", log_changes, &n);
	keep_str(&fresh->redis_host, &running->redis_host, "policy_state", 0, &n);
	keep_str(&fresh->redis_port, &running->redis_port, "policy_state", 0, &n);
	/* the qmgr's users keep the homes they were made with */
	keep_str(&fresh->home_base, &running->home_base, "home_base", log_changes, &n);
	/* the spawner resolved it at start; workers keep it as their saved gid */
	keep_str(&fresh->mail_spool_group, &running->mail_spool_group, "mail_spool_group",
	    log_changes, &n);
	/* the processes that deliver took it when they started; unprivileged,
	 * they cannot take a lower one back */
	keep_int(&fresh->delivery_nice, running->delivery_nice, "delivery_nice", log_changes, &n);
	/* SpamAssassin is loaded once, by the spawner, with these */
	keep_int(&fresh->spam_engine, running->spam_engine, "spam_engine", log_changes, &n);
	keep_int(&fresh->spam_network_tests, running->spam_network_tests, "spam_network_tests",
	    log_changes, &n);
	keep_u64(&fresh->spam_timeout, running->spam_timeout, "spam_timeout", log_changes, &n);
	return n;
}

void config_swap(struct config *live, struct config *fresh)
{
	config_free(live);
	*live = *fresh;
	memset(fresh, 0, sizeof(*fresh));
}

static void report_to_log(const char *msg)
{
	log_warn("%s", msg);
}

/* One MSG_CONFIG: u64 generation; fd = the text.  Returns 1 when swapped. */
static int apply_message(struct ipc_msg *m, struct config *live)
{
	uint64_t generation;
	int fd = m->fd;
	int swapped = 0;

	m->fd = -1;
	if (m->type != MSG_CONFIG || ipc_get_u64(m, &generation) < 0 || ipc_end(m) < 0 ||
	    fd < 0) {
		log_warn("reload: malformed message from the master");
	} else if (generation <= live->generation) {
		log_debug("reload: configuration %llu already in use", (unsigned long long)generation);
	} else {
		struct config fresh;
		config_defaults(&fresh);
		if (config_load_fd(&fresh, fd, live->path, report_to_log) != 0) {
			/* the master checked this very text: not expected */
			log_warn("reload: the configuration from the master has errors; "
			    "keeping the running one");
			config_free(&fresh);
		} else {
			config_keep_restart_settings(&fresh, live, 0);
			fresh.generation = generation;
			config_swap(live, &fresh);
			swapped = 1;
		}
	}
	if (fd >= 0)
		close(fd);
	return swapped;
}

int config_swap_receive(int fd, struct config *live)
{
	static struct ipc_msg m;
	int swapped = 0;

	for (;;) {
		int r = ipc_recv(fd, &m);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return swapped;
		if (r < 0 && errno == EBADMSG) {
			log_warn("reload: malformed message from the master");
			continue;
		}
		if (r <= 0)
			return swapped ? swapped : -1;
		swapped |= apply_message(&m, live);
	}
}
