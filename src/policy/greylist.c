/*
 * greylist.c - greylist.h over the two stores: builds the keys, keeps the
 * settings (a reload changes them in place) and sends each check to LMDB
 * or to Redis.
 */
#include "policy/greylist.h"
#include "policy/greylist_store.h"
#include "conf/config.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

struct greylist {
	struct greylist_params *params;     /* the stores keep a pointer to it */
	struct event_base *base;
	char *state_dir;
	char *redis_host;               /* NULL: LMDB */
	char *redis_port;
	struct gl_lmdb *lmdb;
	struct gl_redis *redis;
};

static void params_from(const struct config *cfg, struct greylist_params *p)
{
	p->delay = (long)cfg->greylist_delay;
	p->max_age = (long)cfg->greylist_max_age;
	p->auto_allow = (long)cfg->greylist_auto_allow;
}

static int same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Open the store cfg names into g (whose params are set). */
static int open_store(struct greylist *g, const struct config *cfg, char *err, size_t errlen)
{
	if (cfg->redis_host != NULL) {
		g->redis = gl_redis_open(cfg->redis_host, cfg->redis_port, g->params, g->base);
	} else {
		g->lmdb = gl_lmdb_open(cfg->state_dir, GREYLIST_LMDB_MAPSIZE, g->params, g->base,
		    err, errlen);
		if (g->lmdb == NULL)
			return -1;
	}
	free(g->state_dir);
	free(g->redis_host);
	free(g->redis_port);
	g->state_dir = cfg->state_dir != NULL ? xstrdup(cfg->state_dir) : NULL;
	g->redis_host = cfg->redis_host != NULL ? xstrdup(cfg->redis_host) : NULL;
	g->redis_port = cfg->redis_port != NULL ? xstrdup(cfg->redis_port) : NULL;
	return 0;
}

static void close_store(struct greylist *g)
{
	gl_lmdb_close(g->lmdb);
	if (g->redis != NULL)
		gl_redis_close(g->redis);
	g->lmdb = NULL;
	g->redis = NULL;
}

struct greylist *greylist_open(const struct config *cfg, struct event_base *base,
    char *err, size_t errlen)
{
	struct greylist *g = xcalloc(1, sizeof(*g));
	g->base = base;
	g->params = xcalloc(1, sizeof(*g->params));
	params_from(cfg, g->params);
	if (open_store(g, cfg, err, errlen) < 0) {
		greylist_close(g);
		return NULL;
	}
	if (g->redis_host != NULL)
		log_info("greylist: state in redis %s:%s", g->redis_host, g->redis_port);
	else
		log_info("greylist: state in %s/greylist.mdb", g->state_dir);
	return g;
}

struct greylist_req *greylist_check(struct greylist *g, const char *client_address,
    const char *sender, const char *recipient, time_t now,
    greylist_done_fn done, void *arg)
{
	struct buf tkey = BUF_INIT, ckey = BUF_INIT;
	struct greylist_answer a;
	struct greylist_req *req = NULL;

	greylist_keys(client_address, sender, recipient, &tkey, &ckey);
	if (g->redis != NULL) {
		req = gl_redis_check(g->redis, &tkey, &ckey, now, done, arg);
	} else {
		gl_lmdb_check(g->lmdb, &tkey, &ckey, now, &a);
		done(arg, &a);
	}
	buf_free(&tkey);
	buf_free(&ckey);
	return req;
}

void greylist_cancel(struct greylist_req *r)
{
	if (r != NULL)
		gl_redis_cancel(r);
}

int greylist_peek(const struct config *cfg, const char *client_address,
    const char *sender, const char *recipient, time_t now,
    struct greylist_answer *out, char *err, size_t errlen)
{
	struct greylist_params p;
	struct buf tkey = BUF_INIT, ckey = BUF_INIT;
	int rc;

	params_from(cfg, &p);
	greylist_keys(client_address, sender, recipient, &tkey, &ckey);
	if (cfg->redis_host != NULL)
		rc = gl_redis_peek(cfg->redis_host, cfg->redis_port, &p, &tkey, &ckey, now, out,
		    err, errlen);
	else
		rc = gl_lmdb_peek(cfg->state_dir, &p, &tkey, &ckey, now, out, err, errlen);
	buf_free(&tkey);
	buf_free(&ckey);
	return rc;
}

void greylist_reconfigure(struct greylist *g, const struct config *cfg)
{
	char err[512];
	struct gl_lmdb *old_lmdb = g->lmdb;
	struct gl_redis *old_redis = g->redis;

	params_from(cfg, g->params);
	if (same(cfg->redis_host, g->redis_host) && same(cfg->redis_port, g->redis_port) &&
	    (cfg->redis_host != NULL || same(cfg->state_dir, g->state_dir)))
		return;
	/* Another store: open it first, keep the old one if that fails. */
	g->lmdb = NULL;
	g->redis = NULL;
	if (open_store(g, cfg, err, sizeof(err)) < 0) {
		log_warn("greylist: keeping the old store: %s", err);
		g->lmdb = old_lmdb;
		g->redis = old_redis;
		return;
	}
	gl_lmdb_close(old_lmdb);
	if (old_redis != NULL)
		gl_redis_close(old_redis);
	log_info("greylist: state now in %s", g->redis_host != NULL ? "redis" : "lmdb");
}

void greylist_close(struct greylist *g)
{
	if (g == NULL)
		return;
	close_store(g);
	free(g->state_dir);
	free(g->redis_host);
	free(g->redis_port);
	free(g->params);
	free(g);
}
