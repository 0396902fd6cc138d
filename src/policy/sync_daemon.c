/*
 * sync_daemon.c - "mailprocd: policy sync", the master's child that runs
 * a sync round at start and then every policy_sync_interval (0: the
 * sync is off).  It stays root in
 * root mode, because each round reads files as their owners; it parses
 * nothing itself (sync_round.c).  A reload arrives on config_fd and may
 * change the interval.
 */
#include "policy/sync.h"
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

static void run_round(const struct config *cfg, const struct polsync_identity *id)
{
	struct polsync_stats st;
	char err[512];
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (polsync_round(cfg, id, &st, err, sizeof(err)) < 0) {
		log_warn("policy sync: %s", err);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ms = (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
	if (st.read > 0 || st.removed > 0)
		log_info("policy sync: %u accounts, %u files read, %u changed, %u broken, "
		    "%u removed (%ld ms)", st.accounts, st.read, st.changed, st.broken,
		    st.removed, ms);
	else
		log_debug("policy sync: %u accounts, nothing changed (%ld ms)", st.accounts, ms);
}

int polsync_main(struct config *cfg, int config_fd, const struct polsync_identity *id)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	time_t next = 0;        /* the first round at once */
	while (!stop) {
		time_t now = time(NULL);
		if (cfg->policy_sync_interval > 0 && now >= next) {
			run_round(cfg, id);
			next = time(NULL) + (time_t)cfg->policy_sync_interval;
			now = time(NULL);
		}
		int timeout = -1;
		if (cfg->policy_sync_interval > 0)
			timeout = next > now ? (int)(next - now) * 1000 : 0;
		struct pollfd pfd = { .fd = config_fd, .events = POLLIN };
		int n = poll(&pfd, 1, timeout);
		if (n < 0 && errno != EINTR)
			return 1;
		if (n > 0) {
			uint64_t old = cfg->policy_sync_interval;
			int r = config_swap_receive(config_fd, cfg);
			if (r < 0)
				return 0;       /* the master is gone */
			if (r > 0 && cfg->policy_sync_interval != old)
				next = time(NULL) + (time_t)cfg->policy_sync_interval;
		}
	}
	return 0;
}
