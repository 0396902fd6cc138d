/*
 * maildir_private.h - what maildir.c and maildir_batch.c share.
 */
#ifndef MP_MAILDIR_PRIVATE_H
#define MP_MAILDIR_PRIVATE_H

#include "deliver/deliver.h"

#include <limits.h>

struct maildir {
	char path[PATH_MAX];    /* without trailing slashes */
	int dirfd, tmpfd, newfd;
};

/* Move tmp/NAME to new/NAME: link (and remove tmp/NAME), or rename where
 * links are refused.  0, or -1 with r filled. */
int maildir_move_to_new(struct maildir *md, const char *name, struct delivery_result *r);

/* Whether deliveries go into an open batch. */
int maildir_batch_is_open(void);
/* tmp/NAME of md is written (fd, still open, not yet fsynced): the batch
 * takes fd and md's tmp/ and new/ descriptors (md's become -1). */
void maildir_batch_add(struct maildir *md, int fd, const char *name);

#endif
