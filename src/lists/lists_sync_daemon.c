/*
 * lists_sync_daemon.c - "mailprocd: lists sync", the master's child that
 * fetches the members of the lists from Mailman 3 at start and then every
 * members_sync_interval (lists_sync.h).  It runs as `user` and may block
 * in libcurl: it is a process of its own.  SIGTERM abandons a fetch under
 * way (the old members.mdb stays) and ends it; it is blocked but while
 * fetching and waiting, so that it cannot slip in between.  A reload
 * arrives on config_fd; when members_source is no longer mailman3 it ends
 * (the master starts it only while it is).
 */
#include "lists/lists_sync.h"
#include "conf/config.h"
#include "conf/config_swap.h"
#include "lib/log.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	stop = 1;
}

static void run_fetch(const struct config *cfg)
{
	struct members_data d;
	char err[600];
	size_t addrs = 0;

	if (lists_sync_run(cfg, &d, &stop, err, sizeof(err)) < 0) {
		if (stop)
			log_info("lists sync: stopped during a fetch; the members fetched before stay");
		else
			log_warn("lists sync: %s (the members fetched before stay)", err);
		return;
	}
	for (size_t i = 0; i < d.n; i++)
		addrs += d.lists[i].n;
	log_info("lists sync: %zu lists, %zu addresses from %s", d.n, addrs, cfg->members_url);
	members_data_free(&d);
}

int lists_sync_main(struct config *cfg, int config_fd)
{
	struct sigaction sa;
	sigset_t term, open_mask;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigaddset(&term, SIGINT);
	sigprocmask(SIG_BLOCK, &term, &open_mask);

	time_t next = 0;        /* the first fetch at once */
	while (!stop && cfg->members_source == MEMBERS_MAILMAN3) {
		time_t now = time(NULL);
		if (now >= next) {
			sigprocmask(SIG_SETMASK, &open_mask, NULL);
			run_fetch(cfg);
			sigprocmask(SIG_BLOCK, &term, NULL);
			if (stop)
				break;
			next = time(NULL) + (time_t)(cfg->members_sync_interval > 0 ?
			    cfg->members_sync_interval : 300);
			now = time(NULL);
		}
		struct timespec ts = { next > now ? next - now : 0, 0 };
		struct pollfd pfd = { .fd = config_fd, .events = POLLIN };
		int n = ppoll(&pfd, 1, &ts, &open_mask);
		if (n < 0 && errno != EINTR)
			return 1;
		if (n > 0) {
			uint64_t old = cfg->members_sync_interval;
			int r = config_swap_receive(config_fd, cfg);
			if (r < 0)
				return 0;       /* the master is gone */
			if (r > 0 && cfg->members_sync_interval != old)
				next = time(NULL) + (time_t)cfg->members_sync_interval;
		}
	}
	return 0;
}
