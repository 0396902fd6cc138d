/*
 * maildir_batch.c - the commit of a worker's batch of maildir deliveries.
 *
 * deliver_maildir writes each message into tmp/ and hands the open file
 * here.  The commit then fsyncs all the files at once on a few short-lived
 * threads (so that one file's fsync does not wait for the last one's: the
 * file system merges them into few journal commits), links each into new/,
 * and makes ONE fsync per distinct new/ directory.  A delivery whose file
 * or directory fsync fails is taken back (tmp/ file or new/ link removed)
 * and reported through the caller's callback.  The threads exist only
 * inside the commit: the worker forks for pipes and embeds Perl, and has
 * no other thread at any other time.
 */
#include "deliver/deliver.h"
#include "deliver/maildir_private.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Threads that fsync besides the caller (0: the caller fsyncs the files
 * one after another; a build may say -DFSYNC_THREADS=N to compare). */
#ifndef FSYNC_THREADS
#define FSYNC_THREADS 3
#endif

struct pending {
	char *path;             /* the maildir, for messages */
	char *name;
	int fd, tmpfd, newfd;
	int fsync_errno;
	int failed;
	size_t slot;
	int instr;
};

static struct pending *pend;
static size_t npend, cappend;
static int batch_open;
static size_t cur_slot;
static int cur_instr = -1;

void maildir_batch_open(void)
{
	batch_open = 1;
}

int maildir_batch_is_open(void)
{
	return batch_open;
}

void maildir_batch_tag(size_t slot, int instr)
{
	cur_slot = slot;
	cur_instr = instr;
}

size_t maildir_batch_pending(void)
{
	return npend;
}

void maildir_batch_add(struct maildir *md, int fd, const char *name)
{
	if (npend == cappend) {
		cappend = cappend ? cappend * 2 : 16;
		pend = xreallocarray(pend, cappend, sizeof(*pend));
	}
	struct pending *p = &pend[npend++];
	*p = (struct pending){ .path = xstrdup(md->path), .name = xstrdup(name), .fd = fd,
	    .tmpfd = md->tmpfd, .newfd = md->newfd, .slot = cur_slot, .instr = cur_instr };
	md->tmpfd = md->newfd = -1;
}

static atomic_size_t next_fsync;

static void *fsync_some(void *arg)
{
	size_t i;
	while ((i = atomic_fetch_add(&next_fsync, 1)) < npend)
		pend[i].fsync_errno = fsync(pend[i].fd) < 0 ? errno : 0;
	return arg;
}

/* fsync every file, on up to FSYNC_THREADS threads and this one. */
static void fsync_files(void)
{
	pthread_t th[FSYNC_THREADS + 1];
	int nth = 0;

	atomic_store(&next_fsync, 0);
	for (; nth < FSYNC_THREADS && (size_t)nth + 1 < npend; nth++)
		if (pthread_create(&th[nth], NULL, fsync_some, NULL) != 0)
			break;
	fsync_some(NULL);
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
}

static void fail(struct pending *p, struct delivery_result *r, int err, const char *what)
{
	deliver_errno_result(r, err, what, p->path);
	p->failed = 1;
}

/* The file is durable in tmp/: close it and link it into new/. */
static void link_one(struct pending *p, struct delivery_result *r)
{
	struct maildir md = { .dirfd = -1, .tmpfd = p->tmpfd, .newfd = p->newfd };
	int err = p->fsync_errno;

	snprintf(md.path, sizeof(md.path), "%s", p->path);
	if (err == 0 && close(p->fd) < 0 && errno != EINTR)
		err = errno;
	else if (err != 0)
		close(p->fd);
	p->fd = -1;
	if (err != 0) {
		fail(p, r, err, err == p->fsync_errno ? "fsync" : "close");
	} else if (maildir_move_to_new(&md, p->name, r) < 0) {
		p->failed = 1;
	} else {
		return;
	}
	if (unlinkat(p->tmpfd, p->name, 0) < 0 && errno != ENOENT)
		log_warn("maildir %s: cannot remove tmp/%s: %s", p->path, p->name, strerror(errno));
}

/* Each delivery's new/ as (dev, ino), one fstat each; a directory that
 * cannot be fstat()ed is its own (it gets an fsync of its own). */
static void new_dir_ids(struct stat *ids)
{
	for (size_t i = 0; i < npend; i++)
		if (pend[i].failed || fstat(pend[i].newfd, &ids[i]) < 0)
			memset(&ids[i], 0, sizeof(ids[i]));
}

static int same_dir(const struct stat *a, const struct stat *b)
{
	return a->st_ino != 0 && a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Close the directories of every pending delivery and empty the batch
 * (the files were closed by the commit or the discard). */
static void batch_release(void)
{
	for (size_t i = 0; i < npend; i++) {
		close(pend[i].tmpfd);
		close(pend[i].newfd);
		free(pend[i].path);
		free(pend[i].name);
	}
	npend = 0;
	cur_instr = -1;
}

void maildir_batch_commit(void (*failed)(size_t slot, int instr,
    const struct delivery_result *r, void *arg), void *arg)
{
	struct delivery_result r;

	batch_open = 0;
	if (npend > 0)
		fsync_files();
	for (size_t i = 0; i < npend; i++) {
		memset(&r, 0, sizeof(r));
		link_one(&pend[i], &r);
		if (pend[i].failed)
			failed(pend[i].slot, pend[i].instr, &r, arg);
	}
	/* one fsync per distinct new/: the first delivery into it does it
	 * for all the others */
	int *synced = xcalloc(npend ? npend : 1, sizeof(*synced));
	struct stat *ids = xcalloc(npend ? npend : 1, sizeof(*ids));
	new_dir_ids(ids);
	for (size_t i = 0; i < npend; i++) {
		if (pend[i].failed || synced[i])
			continue;
		int err = fsync(pend[i].newfd) < 0 ? errno : 0;
		for (size_t j = i; j < npend; j++) {
			if (pend[j].failed || synced[j] || (j != i && !same_dir(&ids[i], &ids[j])))
				continue;
			synced[j] = 1;
			if (err == 0)
				continue;
			/* not known to be durable: take it back so a retry does
			 * not leave a second copy */
			memset(&r, 0, sizeof(r));
			fail(&pend[j], &r, err, "fsync new/ of");
			if (unlinkat(pend[j].newfd, pend[j].name, 0) < 0)
				log_warn("maildir %s: cannot remove new/%s: %s", pend[j].path,
				    pend[j].name, strerror(errno));
			failed(pend[j].slot, pend[j].instr, &r, arg);
		}
	}
	free(synced);
	free(ids);
	batch_release();
}

void maildir_batch_discard(void)
{
	for (size_t i = 0; i < npend; i++) {
		close(pend[i].fd);
		if (unlinkat(pend[i].tmpfd, pend[i].name, 0) < 0 && errno != ENOENT)
			log_warn("maildir %s: cannot remove tmp/%s: %s", pend[i].path,
			    pend[i].name, strerror(errno));
	}
	batch_release();
}
