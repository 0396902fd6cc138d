/*
 * strmap.c - chained hash map keyed by strings (FNV-1a).
 */
#include "lib/strmap.h"
#include "lib/xalloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct entry {
	struct entry *next;
	void *value;
	char key[];
};

struct strmap {
	struct entry **slots;
	size_t nslots;
	size_t count;
};

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

struct strmap *strmap_new(void)
{
	struct strmap *m = xcalloc(1, sizeof(*m));
	m->nslots = 64;
	m->slots = xcalloc(m->nslots, sizeof(*m->slots));
	return m;
}

void strmap_free(struct strmap *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nslots; i++) {
		struct entry *e = m->slots[i];
		while (e) {
			struct entry *next = e->next;
			free(e);
			e = next;
		}
	}
	free(m->slots);
	free(m);
}

static struct entry **find(const struct strmap *m, const char *key)
{
	struct entry **pe = &m->slots[hash(key) & (m->nslots - 1)];
	while (*pe && strcmp((*pe)->key, key) != 0)
		pe = &(*pe)->next;
	return pe;
}

void *strmap_get(const struct strmap *m, const char *key)
{
	struct entry *e = *find(m, key);
	return e ? e->value : NULL;
}

static void grow(struct strmap *m)
{
	size_t n = m->nslots * 2;
	struct entry **slots = xcalloc(n, sizeof(*slots));
	for (size_t i = 0; i < m->nslots; i++) {
		struct entry *e = m->slots[i];
		while (e) {
			struct entry *next = e->next;
			size_t j = hash(e->key) & (n - 1);
			e->next = slots[j];
			slots[j] = e;
			e = next;
		}
	}
	free(m->slots);
	m->slots = slots;
	m->nslots = n;
}

void *strmap_put(struct strmap *m, const char *key, void *value)
{
	struct entry **pe = find(m, key);
	if (*pe) {
		void *old = (*pe)->value;
		(*pe)->value = value;
		return old;
	}
	size_t len = strlen(key);
	struct entry *e = xmalloc(sizeof(*e) + len + 1);
	memcpy(e->key, key, len + 1);
	e->value = value;
	e->next = NULL;
	*pe = e;
	if (++m->count > m->nslots)
		grow(m);
	return NULL;
}

void *strmap_del(struct strmap *m, const char *key)
{
	struct entry **pe = find(m, key);
	struct entry *e = *pe;
	if (e == NULL)
		return NULL;
	void *v = e->value;
	*pe = e->next;
	free(e);
	m->count--;
	return v;
}

size_t strmap_count(const struct strmap *m)
{
	return m->count;
}

void strmap_each(const struct strmap *m, int (*fn)(const char *, void *, void *), void *ctx)
{
	for (size_t i = 0; i < m->nslots; i++)
		for (struct entry *e = m->slots[i]; e; e = e->next)
			if (fn(e->key, e->value, ctx))
				return;
}
