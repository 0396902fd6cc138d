/*
 * sync_round.c - one round of the policy sync, the root side (see sync.h).
 *
 * It forks the writer first (which becomes config `user` before it opens
 * policy.mdb), asks it what the store knows (account, uid, file stat),
 * then walks the accounts of the uid database: one lstat per account; a
 * reader only for a file that is new or changed (mtime, inode, size, or
 * the account's uid); a "gone" for an entry whose file or account is no
 * more (for a removed file, a reader as the account removes its
 * policy.errors).  Readers run one at a time: the writer drains each one's pipe
 * while the root side waits for it.
 */
#include "policy/sync.h"
#include "policy/policy_store.h"
#include "db/db.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/msgtypes.h"
#include "lib/privsep.h"
#include "lib/strmap.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct known {
	struct policy_file_stat st;
	int seen;               /* the account still exists */
};

struct round {
	const struct config *cfg;
	const struct polsync_identity *id;
	struct polsync_stats *stats;
	int sock;               /* to the writer */
	struct strmap *known;   /* account -> struct known */
	struct ipc_msg msg;
	char *err;
	size_t errlen;
	int failed;
};

static pid_t start_writer(const struct config *cfg, const struct polsync_identity *id,
    int *sock, char *err, size_t errlen)
{
	int sv[2];
	if (ipc_socketpair(sv) < 0) {
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0) {
		close(sv[0]);
		if (dup2(sv[1], 3) < 0)
			_exit(1);
		close_range(4, ~0u, 0);
		signal(SIGPIPE, SIG_IGN);
		if (id->root_mode)
			privsep_become_or_die(id->user_uid, id->user_gid, cfg->user);
		_exit(polsync_writer_run(3, cfg->state_dir));
	}
	close(sv[1]);
	*sock = sv[0];
	return pid;
}

static int fail(struct round *r, const char *what)
{
	if (!r->failed)
		snprintf(r->err, r->errlen, "%s", what);
	r->failed = 1;
	return -1;
}

/* What policy.mdb knows, from the writer. */
static int load_known(struct round *r)
{
	ipc_init(&r->msg, MSG_POLSYNC_LIST);
	if (ipc_send(r->sock, &r->msg) < 0)
		return fail(r, "the writer went away");
	for (;;) {
		const char *account;
		struct known k = { 0 };
		if (ipc_recv(r->sock, &r->msg) != 1 || r->msg.type != MSG_POLSYNC_KNOWN)
			return fail(r, "the writer did not list policy.mdb");
		if (r->msg.fd >= 0)
			close(r->msg.fd);
		ipc_get_str(&r->msg, &account);
		ipc_get_u32(&r->msg, &k.st.uid);
		ipc_get_i64(&r->msg, &k.st.mtime_sec);
		ipc_get_u32(&r->msg, &k.st.mtime_nsec);
		ipc_get_u64(&r->msg, &k.st.ino);
		ipc_get_u64(&r->msg, &k.st.size);
		if (ipc_end(&r->msg) < 0)
			return fail(r, "malformed list from the writer");
		if (account[0] == '\0')
			return 0;
		struct known *copy = xmemdup(&k, sizeof(k));
		free(strmap_put(r->known, account, copy));
	}
}

static int same_file(const struct policy_file_stat *a, const struct policy_file_stat *b)
{
	return a->uid == b->uid && a->mtime_sec == b->mtime_sec &&
	    a->mtime_nsec == b->mtime_nsec && a->ino == b->ino && a->size == b->size;
}

static void send_gone(struct round *r, const char *account)
{
	ipc_init(&r->msg, MSG_POLSYNC_GONE);
	ipc_add_str(&r->msg, account);
	if (ipc_send(r->sock, &r->msg) < 0)
		fail(r, "the writer went away");
}

/* Wait for a reader, at most a little longer than its own alarm: it runs
 * as the account, whose owner can SIGSTOP it (a stopped process ignores
 * its alarm until continued), and then the whole sync, every account's,
 * would wait for it.  Killed, it counts as a broken result. */
static void wait_reader(const char *name, pid_t pid)
{
	int status, n = 1;
	int pfd = pidfd_open(pid, 0);

	if (pfd >= 0) {
		struct pollfd p = { .fd = pfd, .events = POLLIN };
		while ((n = poll(&p, 1, (POLSYNC_READER_TIMEOUT + 2) * 1000)) < 0 && errno == EINTR)
			;
		close(pfd);
	}
	if (n == 0) {
		log_warn("policy sync: the reader of %s's policy did not finish in %d s: killed",
		    name, POLSYNC_READER_TIMEOUT + 2);
		kill(pid, SIGKILL);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
}

/* Fork the reader as the account; the writer gets the pipe's read end.
 * For a file that is gone (st NULL) the reader only removes its
 * policy.errors and the writer the entry. */
static void read_file(struct round *r, const char *name, uid_t uid, gid_t gid,
    const char *home, const struct policy_file_stat *st)
{
	static const struct policy_file_stat none;
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		fail(r, "pipe failed");
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		fail(r, "fork of a reader failed");
		return;
	}
	if (pid == 0) {
		close(pfd[0]);
		polsync_reader_run(pfd[1], name, uid, gid, home, r->id->root_mode,
		    r->cfg->minimum_uid);
	}
	close(pfd[1]);
	if (st != NULL)
		r->stats->read++;
	else
		st = &none;
	ipc_init(&r->msg, MSG_POLSYNC_FILE);
	ipc_add_str(&r->msg, name);
	ipc_add_u32(&r->msg, st->uid);
	ipc_add_i64(&r->msg, st->mtime_sec);
	ipc_add_u32(&r->msg, st->mtime_nsec);
	ipc_add_u64(&r->msg, st->ino);
	ipc_add_u64(&r->msg, st->size);
	ipc_set_fd(&r->msg, pfd[0]);
	if (ipc_send(r->sock, &r->msg) < 0)
		fail(r, "the writer went away");
	close(pfd[0]);
	wait_reader(name, pid);
}

static int one_account(void *arg, const char *name, uid_t uid, gid_t gid, const char *home)
{
	struct round *r = arg;
	struct policy_file_stat st = { .uid = (uint32_t)uid };
	struct stat sb;
	char path[4200];

	r->stats->accounts++;
	if (r->id->root_mode && (uid == 0 || uid < r->cfg->minimum_uid || gid == 0)) {
		r->stats->skipped++;
		return 0;
	}
	struct known *k = strmap_get(r->known, name);
	if (k != NULL)
		k->seen = 1;
	snprintf(path, sizeof(path), "%s/%s", home, POLICY_FILE);
	if (lstat(path, &sb) < 0) {
		if (errno != ENOENT && errno != ENOTDIR) {
			log_warn("policy sync: %s: %s", path, strerror(errno));
			return 0;       /* keep what is stored */
		}
		if (k != NULL)
			read_file(r, name, uid, gid, home, NULL);
		return r->failed ? -1 : 0;
	}
	st.mtime_sec = sb.st_mtim.tv_sec;
	st.mtime_nsec = (uint32_t)sb.st_mtim.tv_nsec;
	st.ino = sb.st_ino;
	st.size = (uint64_t)sb.st_size;
	if (k != NULL && same_file(&k->st, &st))
		return 0;
	read_file(r, name, uid, gid, home, &st);
	return r->failed ? -1 : 0;
}

static int gone_accounts(const char *key, void *value, void *ctx)
{
	struct round *r = ctx;
	struct known *k = value;
	if (!k->seen)
		send_gone(r, key);
	return r->failed;
}

static int free_known(const char *key, void *value, void *ctx)
{
	free(value);
	return 0;
}

static int commit(struct round *r)
{
	uint32_t changed, broken, removed;
	const char *error;

	ipc_init(&r->msg, MSG_POLSYNC_COMMIT);
	if (ipc_send(r->sock, &r->msg) < 0 || ipc_recv(r->sock, &r->msg) != 1 ||
	    r->msg.type != MSG_POLSYNC_DONE)
		return fail(r, "the writer went away before the commit");
	if (r->msg.fd >= 0)
		close(r->msg.fd);
	ipc_get_u32(&r->msg, &changed);
	ipc_get_u32(&r->msg, &broken);
	ipc_get_u32(&r->msg, &removed);
	ipc_get_str(&r->msg, &error);
	if (ipc_end(&r->msg) < 0)
		return fail(r, "malformed answer from the writer");
	if (error[0] != '\0') {
		snprintf(r->err, r->errlen, "%s", error);
		r->failed = 1;
		return -1;
	}
	r->stats->changed = changed;
	r->stats->broken = broken;
	r->stats->removed = removed;
	return 0;
}

int polsync_round(const struct config *cfg, const struct polsync_identity *id,
    struct polsync_stats *stats, char *err, size_t errlen)
{
	struct round r = { .cfg = cfg, .id = id, .stats = stats, .err = err, .errlen = errlen };
	struct db *db = NULL;
	int status;

	memset(stats, 0, sizeof(*stats));
	if ((id->root_mode ? db_open_root_only(cfg->db_dir, &db, err, errlen) :
	    db_open(cfg->db_dir, &db, err, errlen)) < 0)
		return -1;
	pid_t writer = start_writer(cfg, id, &r.sock, err, errlen);
	if (writer < 0) {
		db_close(db);
		return -1;
	}
	r.known = strmap_new();
	if (load_known(&r) == 0 &&
	    db_foreach_account(db, one_account, &r, err, errlen) < 0 && !r.failed)
		r.failed = 1;
	if (!r.failed)
		strmap_each(r.known, gone_accounts, &r);
	if (!r.failed)
		commit(&r);
	close(r.sock);          /* without a commit, the writer writes nothing */
	while (waitpid(writer, &status, 0) < 0 && errno == EINTR)
		;
	strmap_each(r.known, free_known, NULL);
	strmap_free(r.known);
	db_close(db);
	return r.failed ? -1 : 0;
}
