/*
 * sync.h - the policy sync: users' ~/.mailprocd/policy files into
 * state_dir/policy.mdb.
 *
 * A round lists the accounts of the uid database and lstat()s each one's
 * file; only a file that is new or whose mtime, inode or size changed is
 * read, by a process that has become its owner for good (sync_reader.c).
 * What it compiled goes through a pipe to an unprivileged writer
 * (sync_writer.c, running as config `user`) that checks it again and
 * stores it: the root side never reads what a user wrote.  In single-user
 * mode the same happens without the changes of identity.
 */
#ifndef MP_POLICY_SYNC_H
#define MP_POLICY_SYNC_H

#include "conf/config.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define POLICY_FILE ".mailprocd/policy"
#define POLICY_ERRORS_FILE ".mailprocd/policy.errors"
#define POLSYNC_READER_TIMEOUT 10       /* seconds a reader may take */

struct polsync_identity {
	int root_mode;
	uid_t user_uid;         /* config `user`: the writer's identity (root mode) */
	gid_t user_gid;
};

struct polsync_stats {
	unsigned accounts;      /* accounts looked at */
	unsigned skipped;       /* root mode: uid 0, below minimum_uid, or gid 0 */
	unsigned read;          /* files read (new or changed) */
	unsigned changed;       /* policies stored */
	unsigned broken;        /* files that did not parse: previous policy kept */
	unsigned removed;       /* entries removed (file or account gone) */
};

/* One full round.  0, or -1 with err (nothing written then). */
int polsync_round(const struct config *cfg, const struct polsync_identity *id,
    struct polsync_stats *stats, char *err, size_t errlen);

/* The master's child "mailprocd: policy sync": a round at start, then
 * every policy_sync_interval; reloads come on config_fd. */
int polsync_main(struct config *cfg, int config_fd, const struct polsync_identity *id);

/* state_dir: created if missing, owned by owner/group (-1: unchanged),
 * mode 0700.  0, or -1 with err. */
int policy_state_dir_prepare(const char *state_dir, uid_t owner, gid_t group,
    char *err, size_t errlen);

/* Internal to the sync. */
/* The reader, in a child of the root side: become uid/gid (root mode),
 * read home's policy file, write policy.errors, and send the result to
 * out_fd.  Never returns. */
void polsync_reader_run(int out_fd, const char *account, uid_t uid, gid_t gid,
    const char *home, int root_mode, uint64_t minimum_uid) __attribute__((noreturn));
/* The writer, in a child of the root side, already unprivileged: serve
 * the root side on sock for one round.  Returns the exit status. */
int polsync_writer_run(int sock, const char *state_dir);
/* What a reader sends: a status byte, then (good) the compiled policy. */
#define POLSYNC_GOOD 'G'
#define POLSYNC_BROKEN 'B'
#define POLSYNC_NOFILE 'N'
#define POLSYNC_MAX_RESULT (4u * 1024 * 1024)

#endif
