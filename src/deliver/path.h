/*
 * path.h - walking a destination path safely, shared by maildir.c and
 * mbox.c (internal to src/deliver).
 */
#ifndef MP_DELIVER_PATH_H
#define MP_DELIVER_PATH_H

#include "deliver/deliver.h"

/* Open the directory dir (absolute) one component at a time from "/",
 * refusing ".." and any symlink owned by neither the euid nor root
 * (permanent 5.2.0 "unsafe path"); symlinks that pass are resolved the same
 * way, component by component.  With create, missing components are made
 * with mode 0700 (as the euid: its rights decide where), never through a
 * symlink, and never the home (NULL: the euid's passwd home) itself nor a
 * directory above it.  Returns an O_PATH directory descriptor (for the *at()
 * calls; directories on the way need only search permission), or -1 with r
 * filled. */
int deliver_open_dir(const char *dir, const char *home, int create,
    struct delivery_result *r);

/* One step of the same walk: open (or with create, make) the directory
 * name inside dirfd; shown is the path used in messages.  Returns a
 * descriptor open for reading (it can be fsynced), or -1 with r filled. */
int deliver_open_subdir(int dirfd, const char *name, const char *shown, int create,
    struct delivery_result *r);

#endif
