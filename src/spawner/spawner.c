/*
 * spawner.c - forks per-user workers for the qmgr.
 *
 * The only process besides the master that keeps root in root mode, so it
 * does as little as possible: read a request, check it, fork, drop the
 * child to the requested uid/gid (keeping mail_spool_group as its saved
 * gid only, for mbox lock files in /var/mail), pass the qmgr its end of the child's
 * socket, and kill a worker of its own whose spam check the qmgr found
 * stuck.  It never touches message data.  It does not take the qmgr's word
 * for an account: a request names a recipient address (and which part of
 * its rules), and the spawner resolves that address in the databases
 * itself (read-only) and forks only as the identity they give, never
 * below minimum_uid nor with gid 0 (trust.c).  With spam_engine spamassassin
 * it loads SpamAssassin once at start, so that the workers it forks
 * inherit the compiled rules.  A reload from the master swaps its
 * configuration in place: the workers it forks from then on get the new
 * settings (the qmgr retires the older ones once idle).
 */
#include "spawner/spawner.h"
#include "spawner/trust.h"
#include "spawner/worker.h"
#include "db/db.h"
#include "deliver/deliver.h"
#include "conf/config_swap.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/msgtypes.h"
#include "lib/privsep.h"
#include "lib/proctitle.h"
#include "lib/xalloc.h"
#include "spam/spam.h"

#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* At a stop: seconds past stop_grace_time before the workers still
 * running get SIGTERM (the qmgr has cut their jobs by then), and seconds
 * after that before SIGKILL (a pipe's group gets 2 s to go); all within
 * the master's margin of 10 s. */
#define SPAWNER_STOP_AFTER_GRACE 2
#define SPAWNER_STOP_TERM_WAIT 4

static struct ipc_msg in, out;
/* root mode: mail_spool_group, resolved at start; (gid_t)-1 when none */
static gid_t spool_gid = (gid_t)-1;
static struct db *spawner_db;

static int spawner_root_mode;

/* The databases, opened on first need (and again after a failure); in
 * root mode only if root alone may change them. */
static struct db *databases(const struct config *cfg)
{
	char err[512];

	if (spawner_db == NULL && (spawner_root_mode ?
	    db_open_root_only(cfg->db_dir, &spawner_db, err, sizeof(err)) :
	    db_open(cfg->db_dir, &spawner_db, err, sizeof(err))) < 0) {
		log_warn("spawner: cannot open the databases: %s", err);
		spawner_db = NULL;
	}
	return spawner_db;
}

/* The workers forked and not reaped yet (to stop them at the end of a
 * stop's grace time). */
static pid_t *worker_pids;
static size_t nworker_pids, worker_pids_cap;

static void workers_add(pid_t pid)
{
	if (nworker_pids == worker_pids_cap) {
		worker_pids_cap = worker_pids_cap ? worker_pids_cap * 2 : 16;
		worker_pids = xreallocarray(worker_pids, worker_pids_cap, sizeof(*worker_pids));
	}
	worker_pids[nworker_pids++] = pid;
}

static void workers_forget(pid_t pid)
{
	for (size_t i = 0; i < nworker_pids; i++) {
		if (worker_pids[i] == pid) {
			worker_pids[i] = worker_pids[--nworker_pids];
			return;
		}
	}
}

static void reply_fail(int qmgr_fd, uint32_t reqid, const char *reason)
{
	log_warn("cannot start worker: %s", reason);
	ipc_init(&out, MSG_SPAWN_FAIL);
	ipc_add_u32(&out, reqid);
	ipc_add_str(&out, reason);
	if (ipc_send(qmgr_fd, &out) < 0)
		log_warn("reply to qmgr: %s", strerror(errno));
}

/* A worker that leaves gives its saved spool group up first: nothing after
 * it needs the group (and LeakSanitizer's exit check, which ptrace()s the
 * process, is refused while real and saved gid differ). */
static void drop_spool_group_at_exit(void)
{
	if (privsep_drop_saved_gid() < 0)
		log_warn("worker exit: cannot drop the saved group: %s", strerror(errno));
}

/* In the child: become the user for good, then work. */
static _Noreturn void become_worker(const struct config *cfg, int root_mode,
    uid_t uid, gid_t gid, const char *account, const char *home, int sock)
{
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGXFSZ, SIG_IGN);
	log_set_ident("mailprocd/worker");
	proctitle_set("mailprocd: worker %s", account);

	if (root_mode) {
		/* supplementary groups from passwd, when the account has an entry
		 * whose primary group is the one asked for */
		struct passwd *pw = getpwuid(uid);
		const char *name = (pw && pw->pw_gid == gid) ? pw->pw_name : NULL;
		char err[256];
		/* the spool group only as the saved gid: see deliver/spool_group.c */
		gid_t saved = spool_gid != (gid_t)-1 ? spool_gid : gid;
		if (privsep_become_keep_gid(uid, gid, name, saved, err, sizeof(err)) < 0) {
			log_warn("worker for uid %lu: %s", (unsigned long)uid, err);
			_exit(1);
		}
		deliver_set_spool_group(spool_gid);
		if (spool_gid != (gid_t)-1 && atexit(drop_spool_group_at_exit) != 0)
			log_warn("worker for uid %lu: atexit: cannot register", (unsigned long)uid);
	}
	if (chdir("/") < 0)
		_exit(1);
	worker_main(cfg, sock, root_mode, account, home);
}

/* Fork a worker as id and hand the qmgr its socket. */
static void spawn_as(const struct config *cfg, int root_mode, int qmgr_fd, int sfd,
    int master_fd, uint32_t reqid, const struct db_identity *id)
{
	int sv[2];

	if (ipc_socketpair(sv) < 0) {
		reply_fail(qmgr_fd, reqid, strerror(errno));
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		reply_fail(qmgr_fd, reqid, strerror(e));
		return;
	}
	if (pid == 0) {
		close(qmgr_fd);
		close(sfd);
		close(master_fd);
		close(sv[0]);
		db_close(spawner_db);   /* the worker opens its own */
		spawner_db = NULL;
		become_worker(cfg, root_mode, id->uid, id->gid, id->account, id->home, sv[1]);
	}
	close(sv[1]);
	workers_add(pid);
	log_debug("worker pid %ld for %s (uid %lu)", (long)pid, id->account,
	    (unsigned long)id->uid);
	ipc_init(&out, MSG_SPAWN_OK);
	ipc_add_u32(&out, reqid);
	ipc_add_u32(&out, (uint32_t)pid);
	ipc_set_fd(&out, sv[0]);
	if (ipc_send(qmgr_fd, &out) < 0) {
		log_warn("handing worker %ld to qmgr: %s", (long)pid, strerror(errno));
		kill(pid, SIGTERM);
	}
	close(sv[0]);
}

/* Single-user mode: every worker runs as the daemon's user; its home is
 * the account's from the databases, or the daemon user's. */
static int single_user_identity(const struct config *cfg, uint32_t uid, uint32_t gid,
    const char *account, const char *address, struct db_identity *id, char *err,
    size_t errlen)
{
	char why[256];
	struct passwd *pw = getpwuid(getuid());

	if (uid != getuid() || gid != getgid()) {
		snprintf(err, errlen, "single-user mode: workers run as the daemon's user");
		return -1;
	}
	memset(id, 0, sizeof(*id));
	struct db *db = databases(cfg);
	if (db != NULL && db_part_identity(db, address, cfg->recipient_delimiter,
	    DB_PART_PRIMARY, id, why, sizeof(why)) == 0 && strcmp(id->account, account) == 0) {
		free(id->account);
	} else {
		db_identity_free(id);
		id->home = xstrdup(pw ? pw->pw_dir : "/");
	}
	id->uid = getuid();
	id->gid = getgid();
	id->account = xstrdup(account);
	return 0;
}

static void spawn(const struct config *cfg, int root_mode, int qmgr_fd, int sfd, int master_fd)
{
	uint32_t reqid, uid, gid, part;
	const char *account, *address;
	struct db_identity id;
	char err[768];

	if (ipc_get_u32(&in, &reqid) < 0 || ipc_get_u32(&in, &uid) < 0 ||
	    ipc_get_u32(&in, &gid) < 0 || ipc_get_str(&in, &account) < 0 ||
	    ipc_get_str(&in, &address) < 0 || ipc_get_u32(&in, &part) < 0 ||
	    ipc_end(&in) < 0) {
		log_warn("malformed spawn request from qmgr");
		return;
	}
	int ok = root_mode ?
	    trust_spawn_identity(databases(cfg), cfg->recipient_delimiter, cfg->minimum_uid,
	        uid, gid, account, address, part, &id, err, sizeof(err)) :
	    single_user_identity(cfg, uid, gid, account, address, &id, err, sizeof(err));
	if (ok < 0) {
		reply_fail(qmgr_fd, reqid, err);
		return;
	}
	spawn_as(cfg, root_mode, qmgr_fd, sfd, master_fd, reqid, &id);
	db_identity_free(&id);
}

/* pid's parent, from /proc; -1 when it is gone. */
static pid_t parent_of(pid_t pid)
{
	char path[64], line[512];
	long ppid = -1;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return -1;
	if (fgets(line, sizeof(line), f) != NULL) {
		/* "pid (comm) state ppid ...": comm may hold anything, even ")" */
		const char *p = strrchr(line, ')');
		char state;
		if (p == NULL || sscanf(p + 1, " %c %ld", &state, &ppid) != 2)
			ppid = -1;
	}
	fclose(f);
	return (pid_t)ppid;
}

/* MSG_KILL_WORKER: the qmgr found a worker's spam check stuck.  Only a
 * child of ours is killed (a child stays ours, zombie or not, until we
 * reap it, so the pid cannot be someone else's by then). */
static void kill_worker(void)
{
	uint32_t pid;

	if (ipc_get_u32(&in, &pid) < 0 || ipc_end(&in) < 0 || pid <= 1 || pid > INT32_MAX) {
		log_warn("malformed kill request from qmgr");
		return;
	}
	if (parent_of((pid_t)pid) != getpid()) {
		log_warn("qmgr asked to kill pid %lu, which is not a worker", (unsigned long)pid);
		return;
	}
	if (kill((pid_t)pid, SIGKILL) < 0)
		log_warn("cannot kill worker %lu: %s", (unsigned long)pid, strerror(errno));
	else
		log_info("killed worker %lu: its spam check overran", (unsigned long)pid);
}

static void reap(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		workers_forget(pid);
		if (WIFSIGNALED(status))
			log_warn("worker %ld killed by signal %d", (long)pid, WTERMSIG(status));
		else if (WEXITSTATUS(status) != 0)
			log_warn("worker %ld exited with status %d", (long)pid, WEXITSTATUS(status));
	}
}

/* mail_spool_group, looked up once: a group that does not exist (no
 * /var/mail group on this host) is none, not an error. */
static void resolve_spool_group(const struct config *cfg)
{
	gid_t g;

	if (cfg->mail_spool_group == NULL)
		return;
	if (privsep_lookup_group(cfg->mail_spool_group, &g) < 0) {
		log_info("mail_spool_group %s: no such group; mbox lock files are made "
		    "with the account's rights only", cfg->mail_spool_group);
		return;
	}
	if (g == 0) {
		log_warn("mail_spool_group %s is the root group: not used", cfg->mail_spool_group);
		return;
	}
	spool_gid = g;
	log_debug("mail spool group %s (gid %lu)", cfg->mail_spool_group, (unsigned long)g);
}

/* SpamAssassin is loaded and its rules compiled here, once, so that every
 * worker forked from us starts warm (copy-on-write). */
static void load_spam_engine(const struct config *cfg)
{
	struct spam_settings ss = {
		.network_tests = cfg->spam_network_tests,
		.timeout_s = (unsigned)cfg->spam_timeout,
	};
	char err[512];
	struct timespec t0, t1;

	/* the root spawner's Perl takes no modules or options from the
	 * environment it was started with */
	if (geteuid() == 0) {
		static const char *const vars[] = { "PERL5LIB", "PERLLIB", "PERL5OPT", "PERL5DB",
		    "PERL_HASH_SEED_DEBUG" };
		for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
			unsetenv(vars[i]);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (spam_engine_load(&ss, err, sizeof(err)) < 0) {
		log_warn("spam: cannot load SpamAssassin: %s; messages are delivered unchecked", err);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	log_info("spam: SpamAssassin loaded and compiled in %ld ms",
	    (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
}

/* Reap workers until none is left (they exit once the qmgr closes their
 * sockets, a SpamAssassin worker after syncing its Bayes journal), for at
 * most `seconds`.  Returns 0 when none is left. */
static int wait_for_workers(int sfd, int seconds)
{
	time_t deadline = time(NULL) + seconds;

	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid < 0 && errno == ECHILD)
			return 0;
		if (pid > 0) {
			workers_forget(pid);
			continue;
		}
		if (time(NULL) >= deadline)
			return -1;
		struct pollfd p = { .fd = sfd, .events = POLLIN };
		if (poll(&p, 1, 200) > 0) {
			struct signalfd_siginfo si;
			ssize_t n = read(sfd, &si, sizeof(si));
			(void)n;
		}
	}
}

/* The stop: workers finish their jobs and leave when the qmgr closes
 * their sockets, within stop_grace_time; the daemon has stopped only when
 * they are gone too.  Those still running then are cut short. */
static void stop_workers(int sfd, const struct config *cfg)
{
	int grace = (int)cfg->stop_grace_time + SPAWNER_STOP_AFTER_GRACE;

	if (wait_for_workers(sfd, grace) == 0)
		return;
	for (size_t i = 0; i < nworker_pids; i++) {
		log_warn("stop: worker %ld still running %d s after the stop; stopping it",
		    (long)worker_pids[i], grace);
		kill(worker_pids[i], SIGTERM);
	}
	if (wait_for_workers(sfd, SPAWNER_STOP_TERM_WAIT) == 0)
		return;
	for (size_t i = 0; i < nworker_pids; i++) {
		log_warn("stop: killing worker %ld", (long)worker_pids[i]);
		kill(worker_pids[i], SIGKILL);
	}
	if (wait_for_workers(sfd, 1) < 0)
		log_warn("workers still there after SIGKILL; leaving them");
}

int spawner_main(struct config *cfg, int qmgr_fd, int master_fd, int root_mode)
{
	spawner_root_mode = root_mode;
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGCHLD);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sfd < 0)
		fatal("signalfd: %s", strerror(errno));
	if (root_mode)
		resolve_spool_group(cfg);
	if (cfg->spam_engine)
		load_spam_engine(cfg);

	for (;;) {
		struct pollfd p[3] = { { .fd = qmgr_fd, .events = POLLIN }, { .fd = sfd, .events = POLLIN },
			{ .fd = master_fd, .events = POLLIN } };
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			fatal("poll: %s", strerror(errno));
		}
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
					stop_workers(sfd, cfg);
					return 0;
				}
				reap();
			}
		}
		if (p[2].revents & (POLLIN | POLLHUP)) {
			int swapped = config_swap_receive(master_fd, cfg);
			if (swapped > 0)
				log_info("configuration %llu in use; new workers get it",
				    (unsigned long long)cfg->generation);
			else if (swapped < 0)
				master_fd = -1;         /* the master is gone: poll ignores -1 */
		}
		if (p[0].revents & (POLLIN | POLLHUP)) {
			int r = ipc_recv(qmgr_fd, &in);
			if (r == 0)
				return 0;
			if (r < 0) {
				if (errno != EAGAIN)
					log_warn("reading from qmgr: %s", strerror(errno));
				continue;
			}
			if (in.fd >= 0) {
				close(in.fd);
				in.fd = -1;
			}
			if (in.type == MSG_SPAWN_REQ)
				spawn(cfg, root_mode, qmgr_fd, sfd, master_fd);
			else if (in.type == MSG_KILL_WORKER)
				kill_worker();
			else
				log_warn("unexpected message type %u from qmgr", in.type);
		}
	}
}
