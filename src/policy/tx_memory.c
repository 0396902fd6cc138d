/*
 * tx_memory.c - the recipients of each transaction by instance
 * (tx_memory.h): a hash map for the lookups and a list, least recently
 * used first, for expiry and the bound.
 */
#include "policy/tx_memory.h"
#include "lib/strmap.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

struct tx_entry {
	char *instance;
	time_t touched;
	struct tx_rcpt *rcpts;
	size_t n, cap;
	size_t bytes;           /* counted in tx_memory's bytes */
	TAILQ_ENTRY(tx_entry) lru;
};

struct tx_memory {
	struct strmap *index;
	TAILQ_HEAD(, tx_entry) lru;     /* oldest first */
	size_t count, max;
	size_t bytes, max_bytes;        /* max_bytes 0: no bound */
	time_t ttl;
};

struct tx_memory *tx_memory_new(size_t max_instances, time_t ttl)
{
	struct tx_memory *m = xcalloc(1, sizeof(*m));
	m->index = strmap_new();
	TAILQ_INIT(&m->lru);
	m->max = max_instances > 0 ? max_instances : 1;
	m->ttl = ttl;
	return m;
}

static size_t rcpt_bytes(const struct tx_rcpt *r)
{
	return sizeof(*r) + strlen(r->address) + 1 + strlen(r->limit_why) + 1;
}

static void rcpt_free(struct tx_entry *e, struct tx_rcpt *r)
{
	e->bytes -= rcpt_bytes(r);
	free(r->address);
	free(r->limit_why);
}

static void entry_drop(struct tx_memory *m, struct tx_entry *e)
{
	strmap_del(m->index, e->instance);
	TAILQ_REMOVE(&m->lru, e, lru);
	m->count--;
	m->bytes -= e->bytes;
	for (size_t i = 0; i < e->n; i++)
		rcpt_free(e, &e->rcpts[i]);
	free(e->rcpts);
	free(e->instance);
	free(e);
}

void tx_memory_free(struct tx_memory *m)
{
	struct tx_entry *e;
	if (m == NULL)
		return;
	while ((e = TAILQ_FIRST(&m->lru)) != NULL)
		entry_drop(m, e);
	strmap_free(m->index);
	free(m);
}

size_t tx_memory_count(const struct tx_memory *m)
{
	return m->count;
}

void tx_memory_set_max_bytes(struct tx_memory *m, size_t max_bytes)
{
	m->max_bytes = max_bytes;
}

size_t tx_memory_bytes(const struct tx_memory *m)
{
	return m->bytes;
}

static void expire(struct tx_memory *m, time_t now)
{
	struct tx_entry *e;
	while ((e = TAILQ_FIRST(&m->lru)) != NULL && now - e->touched > m->ttl)
		entry_drop(m, e);
}

/* Drop the recipients Postfix did not accept: their count is not below
 * the number it has accepted since. */
static void prune(struct tx_memory *m, struct tx_entry *e, uint64_t accepted)
{
	size_t k = 0, before = e->bytes;
	if (accepted == TX_COUNT_UNKNOWN)
		return;
	for (size_t i = 0; i < e->n; i++) {
		if (e->rcpts[i].count < accepted || e->rcpts[i].count == TX_COUNT_UNKNOWN)
			e->rcpts[k++] = e->rcpts[i];
		else
			rcpt_free(e, &e->rcpts[i]);
	}
	e->n = k;
	m->bytes -= before - e->bytes;
}

void tx_memory_add(struct tx_memory *m, const char *instance, uint64_t count,
    const char *address, uint64_t limit, const char *limit_why, time_t now)
{
	if (*instance == '\0')
		return;
	expire(m, now);
	struct tx_entry *e = strmap_get(m->index, instance);
	if (e == NULL) {
		if (m->count >= m->max)
			entry_drop(m, TAILQ_FIRST(&m->lru));
		e = xcalloc(1, sizeof(*e));
		e->instance = xstrdup(instance);
		strmap_put(m->index, instance, e);
		m->count++;
	} else {
		TAILQ_REMOVE(&m->lru, e, lru);
	}
	e->touched = now;
	TAILQ_INSERT_TAIL(&m->lru, e, lru);
	prune(m, e, count);
	if (e->n >= TX_MEMORY_MAX_RCPTS)
		return;
	if (e->n == e->cap) {
		e->cap = e->cap ? e->cap * 2 : 4;
		e->rcpts = xreallocarray(e->rcpts, e->cap, sizeof(*e->rcpts));
	}
	struct tx_rcpt *r = &e->rcpts[e->n++];
	r->address = xstrdup(address);
	r->limit = limit;
	r->limit_why = xstrdup(limit_why ? limit_why : "");
	r->count = count;
	e->bytes += rcpt_bytes(r);
	m->bytes += rcpt_bytes(r);
	/* over the budget: the least recently used transactions go, never
	 * the one just added to (it is last in the list) */
	struct tx_entry *old;
	while (m->max_bytes > 0 && m->bytes > m->max_bytes &&
	    (old = TAILQ_FIRST(&m->lru)) != e)
		entry_drop(m, old);
}

const struct tx_rcpt *tx_memory_over(struct tx_memory *m, const char *instance,
    uint64_t rcpt_count, uint64_t size, time_t now, int *found)
{
	expire(m, now);
	struct tx_entry *e = *instance ? strmap_get(m->index, instance) : NULL;
	*found = e != NULL;
	if (e == NULL)
		return NULL;
	prune(m, e, rcpt_count);
	for (size_t i = 0; i < e->n; i++)
		if (e->rcpts[i].limit != 0 && size > e->rcpts[i].limit)
			return &e->rcpts[i];
	return NULL;
}

void tx_memory_forget(struct tx_memory *m, const char *instance)
{
	struct tx_entry *e = *instance ? strmap_get(m->index, instance) : NULL;
	if (e != NULL)
		entry_drop(m, e);
}
