/*
 * fd_limit.c - raising RLIMIT_NOFILE to what max_sessions needs.
 *
 * The default soft limit (1024) would stop the receiver at about a
 * thousand sessions ("accept: Too many open files") whatever max_sessions
 * says.  Only the receiver gets the higher limit: the other processes and
 * the programs workers run keep the limit they were started with.  As root
 * the hard limit is raised too, but only to what the configuration needs:
 * the administrator asked for that many sessions, and the receiver that
 * inherits it runs unprivileged with no way to go higher.
 */
#include "master/fd_limit.h"
#include "lib/fsutil.h"
#include "lib/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

unsigned long long fd_limit_needed(const struct config *cfg)
{
	return (unsigned long long)cfg->max_sessions * FD_LIMIT_PER_SESSION +
	    (unsigned long long)cfg->nlisten + FD_LIMIT_RESERVE;
}

/* The kernel's ceiling for any hard limit (fs.nr_open). */
static rlim_t nr_open(void)
{
	char *text = read_file("/proc/sys/fs/nr_open", 64, NULL);
	rlim_t v = text ? (rlim_t)strtoull(text, NULL, 10) : 0;
	free(text);
	return v > 0 ? v : 1024 * 1024;
}

unsigned long long raise_fd_limit(const struct config *cfg, pid_t pid)
{
	rlim_t need = (rlim_t)fd_limit_needed(cfg);
	struct rlimit old, want;

	if (prlimit(pid, RLIMIT_NOFILE, NULL, &old) < 0) {
		log_warn("cannot read the open files limit: %s", strerror(errno));
		return 0;
	}
	if (old.rlim_cur == RLIM_INFINITY || old.rlim_cur >= need)
		return (unsigned long long)old.rlim_cur;
	want = old;
	if (geteuid() == 0 && old.rlim_max != RLIM_INFINITY && old.rlim_max < need) {
		rlim_t ceiling = nr_open();
		want.rlim_max = need < ceiling ? need : ceiling;
	}
	want.rlim_cur = need < want.rlim_max || want.rlim_max == RLIM_INFINITY ?
	    need : want.rlim_max;
	if (prlimit(pid, RLIMIT_NOFILE, &want, NULL) < 0) {
		/* no CAP_SYS_RESOURCE after all (a container): the old hard limit */
		want.rlim_max = old.rlim_max;
		want.rlim_cur = need < old.rlim_max ? need : old.rlim_max;
		if (prlimit(pid, RLIMIT_NOFILE, &want, NULL) < 0) {
			log_warn("cannot raise the open files limit: %s", strerror(errno));
			want = old;
		}
	}
	if (want.rlim_cur < need)
		log_warn("open files limit: max_sessions %llu needs %llu descriptors, got %llu "
		    "(hard limit %llu); raise the hard limit (LimitNOFILE= in a systemd unit, "
		    "ulimit -Hn) or lower max_sessions",
		    (unsigned long long)cfg->max_sessions, (unsigned long long)need,
		    (unsigned long long)want.rlim_cur, (unsigned long long)want.rlim_max);
	else
		log_info("open files limit raised from %llu to %llu for max_sessions %llu",
		    (unsigned long long)old.rlim_cur, (unsigned long long)want.rlim_cur,
		    (unsigned long long)cfg->max_sessions);
	return (unsigned long long)want.rlim_cur;
}
