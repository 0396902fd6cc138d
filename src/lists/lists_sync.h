/*
 * lists_sync.h - one fetch of the members of every list from Mailman 3's
 * REST API (members_source mailman3) into state_dir/members.mdb.  All or
 * nothing: when any request or answer fails, the old file stays.
 */
#ifndef MP_LISTS_SYNC_H
#define MP_LISTS_SYNC_H

#include <signal.h>
#include <stddef.h>

#include "lists/members_data.h"

struct config;

/* Entries asked for per page of a collection; the environment variable
 * MAILPROCD_LISTS_PAGE_SIZE (1 to 500) asks for fewer, so that the tests
 * page through a small real Mailman. */
#define LISTS_SYNC_PAGE 500

/* Fetch into out (initialised by the caller).  0, or -1 with err.  The
 * fetch is abandoned (-1) soon after *stop (may be NULL) becomes non-zero. */
int lists_sync_fetch(const struct config *cfg, struct members_data *out,
    const volatile sig_atomic_t *stop, char *err, size_t errlen);
/* Fetch and store; out (may be NULL) gets what was stored.  0, or -1. */
int lists_sync_run(const struct config *cfg, struct members_data *out,
    const volatile sig_atomic_t *stop, char *err, size_t errlen);
/* The lists sync child of the master: a fetch at start and every
 * members_sync_interval; reloads on config_fd.  Runs as `user`. */
int lists_sync_main(struct config *cfg, int config_fd);

#endif
