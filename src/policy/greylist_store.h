/*
 * greylist_store.h - the two stores behind greylist.h: LMDB in state_dir
 * (answers at once) and Redis (answers from the event loop).  greylist.c
 * picks one; the keys and the decision come from greylist_key.h.
 */
#ifndef MP_POLICY_GREYLIST_STORE_H
#define MP_POLICY_GREYLIST_STORE_H

#include "policy/greylist_key.h"

#include <stddef.h>

struct event_base;

/* ---- LMDB: state_dir/greylist.mdb ---- */

#define GREYLIST_LMDB_FILE "greylist.mdb"
#define GREYLIST_LMDB_MAPSIZE ((size_t)1 << 30)     /* 1 GiB: some million triplets */
#define GREYLIST_LMDB_TICK 1                        /* s between purge steps */
#define GREYLIST_LMDB_SYNC_INTERVAL 10              /* s between syncs to disk */
#define GREYLIST_LMDB_PURGE_STEP 2000               /* records looked at per step (~1 ms) */

struct gl_lmdb;

/* params stays the caller's (a reload changes it in place).  base NULL:
 * no timer (tests call gl_lmdb_tick). */
struct gl_lmdb *gl_lmdb_open(const char *state_dir, size_t mapsize,
    const struct greylist_params *params, struct event_base *base, char *err, size_t errlen);
void gl_lmdb_check(struct gl_lmdb *l, const struct buf *triplet_key,
    const struct buf *client_key, time_t now, struct greylist_answer *out);
/* Look at up to max records from where the last step stopped, purge the
 * expired ones, and sync to disk; returns the number of records removed.
 * (On the loop, the timer purges and a thread syncs.) */
size_t gl_lmdb_tick(struct gl_lmdb *l, time_t now, size_t max);
void gl_lmdb_close(struct gl_lmdb *l);
/* Read-only, for the dry run; a missing file is an empty store. */
int gl_lmdb_peek(const char *state_dir, const struct greylist_params *params,
    const struct buf *triplet_key, const struct buf *client_key, time_t now,
    struct greylist_answer *out, char *err, size_t errlen);

/* ---- Redis (hiredis async on the loop) ---- */

#define GREYLIST_REDIS_TIMEOUT_MS 500       /* an answer later than this is UNAVAILABLE */

struct gl_redis;
struct greylist_req;

/* Never fails: an unreachable server answers UNAVAILABLE and reconnects. */
struct gl_redis *gl_redis_open(const char *host, const char *port,
    const struct greylist_params *params, struct event_base *base);
struct greylist_req *gl_redis_check(struct gl_redis *r, const struct buf *triplet_key,
    const struct buf *client_key, time_t now, greylist_done_fn done, void *arg);
void gl_redis_cancel(struct greylist_req *req);
void gl_redis_close(struct gl_redis *r);
/* Blocking, with a short timeout, for the dry run. */
int gl_redis_peek(const char *host, const char *port, const struct greylist_params *params,
    const struct buf *triplet_key, const struct buf *client_key, time_t now,
    struct greylist_answer *out, char *err, size_t errlen);

#endif
