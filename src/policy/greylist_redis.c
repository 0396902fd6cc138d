/*
 * greylist_redis.c - greylisting state in Redis.  Placeholder until the
 * hiredis store lands: every check answers UNAVAILABLE (the service then
 * says DUNNO).
 */
#include "policy/greylist_store.h"
#include "lib/log.h"

#include <stdio.h>
#include <string.h>

struct gl_redis {
	int unused;
};

static struct gl_redis placeholder;

struct gl_redis *gl_redis_open(const char *host, const char *port,
    const struct greylist_params *params, struct event_base *base)
{
	log_warn("greylist: redis:%s:%s is not supported yet", host, port);
	return &placeholder;
}

struct greylist_req *gl_redis_check(struct gl_redis *r, const struct buf *triplet_key,
    const struct buf *client_key, time_t now, greylist_done_fn done, void *arg)
{
	struct greylist_answer a = { .verdict = GREYLIST_UNAVAILABLE };
	done(arg, &a);
	return NULL;
}

void gl_redis_cancel(struct greylist_req *req)
{
}

void gl_redis_close(struct gl_redis *r)
{
}

int gl_redis_peek(const char *host, const char *port, const struct greylist_params *params,
    const struct buf *triplet_key, const struct buf *client_key, time_t now,
    struct greylist_answer *out, char *err, size_t errlen)
{
	snprintf(err, errlen, "redis is not supported yet");
	return -1;
}
