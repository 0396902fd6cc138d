/*
 * greylist.h - greylisting state for the policy service: the triplet
 * (client network, sender, recipient) and the per-network auto-allow
 * count, kept in LMDB (state_dir/greylist.mdb) or in a shared Redis.
 */
#ifndef MP_POLICY_GREYLIST_H
#define MP_POLICY_GREYLIST_H

#include <stddef.h>
#include <time.h>

struct config;
struct event_base;

enum greylist_verdict { GREYLIST_PASS, GREYLIST_DEFER, GREYLIST_UNAVAILABLE };

struct greylist_answer {
	enum greylist_verdict verdict;
	long retry_in;          /* DEFER: seconds until a retry passes */
	int auto_allowed;       /* PASS because the client network is allow-listed */
};

typedef void (*greylist_done_fn)(void *arg, const struct greylist_answer *a);

struct greylist;
struct greylist_req;

/* lmdb in cfg->state_dir, or Redis when cfg->redis_host is set (hiredis
 * async on base).  NULL with err on a fatal error (LMDB unopenable);
 * an unreachable Redis is NOT fatal (answers UNAVAILABLE, reconnects). */
struct greylist *greylist_open(const struct config *cfg, struct event_base *base,
    char *err, size_t errlen);

/* Check the triplet (client network /24 or /64, sender, recipient) and
 * record the attempt.  Calls done exactly once: either before returning
 * (then returns NULL) or later from the loop (returns a handle).
 * Never blocks; a Redis answer that takes over 500 ms counts as
 * UNAVAILABLE. */
struct greylist_req *greylist_check(struct greylist *g, const char *client_address,
    const char *sender, const char *recipient, time_t now,
    greylist_done_fn done, void *arg);

/* The asker went away: done is never called for this handle. */
void greylist_cancel(struct greylist_req *r);

/* Dry run for `mailprocctl policy check`: what check would answer, writing
 * nothing; blocking is allowed here (mailprocctl).  0, or -1 with err. */
int greylist_peek(const struct config *cfg, const char *client_address,
    const char *sender, const char *recipient, time_t now,
    struct greylist_answer *out, char *err, size_t errlen);

/* Reload: new delays and counts apply at once; a changed policy_state
 * (lmdb <-> redis, another Redis) opens the new store. */
void greylist_reconfigure(struct greylist *g, const struct config *cfg);

void greylist_close(struct greylist *g);

#endif
