/*
 * client_count.c - the per-address session counts behind
 * max_sessions_per_client.
 *
 * Open addressing with linear probing in a power-of-two table kept at most
 * half full; a removed entry closes the gap by shifting later entries of
 * its run back (no tombstones), so lookups stay short however clients come
 * and go.  The hash is keyed with a random seed drawn at start, so a client
 * that picks its addresses (an IPv6 prefix holds plenty) cannot aim them
 * all at one slot.
 */
#include "receiver/client_count.h"
#include "lib/xalloc.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define INITIAL_SLOTS 64

struct slot {
	struct client_key key;
	uint32_t n;             /* 0: empty */
};

struct client_count {
	struct slot *slots;
	size_t mask;            /* slots - 1 */
	size_t used;
	uint64_t seed[2];
};

static uint64_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static size_t hash(const struct client_count *t, const struct client_key *k)
{
	uint64_t a, b;
	memcpy(&a, k->addr, 8);
	memcpy(&b, k->addr + 8, 8);
	return (size_t)mix(mix(a ^ t->seed[0]) ^ b ^ t->seed[1]);
}

struct client_count *client_count_new(void)
{
	struct client_count *t = xcalloc(1, sizeof(*t));
	t->slots = xcalloc(INITIAL_SLOTS, sizeof(*t->slots));
	t->mask = INITIAL_SLOTS - 1;
	if (getrandom(t->seed, sizeof(t->seed), GRND_NONBLOCK) != (ssize_t)sizeof(t->seed)) {
		t->seed[0] = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
		t->seed[1] = (uint64_t)(uintptr_t)t;
	}
	return t;
}

void client_count_free(struct client_count *t)
{
	if (t == NULL)
		return;
	free(t->slots);
	free(t);
}

int client_key_from(const struct sockaddr *sa, socklen_t salen, struct client_key *key)
{
	memset(key, 0, sizeof(*key));
	if (sa->sa_family == AF_INET && salen >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		key->addr[10] = 0xff;
		key->addr[11] = 0xff;
		memcpy(key->addr + 12, &in->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6 && salen >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		memcpy(key->addr, &in6->sin6_addr, 16);
		return 0;
	}
	return -1;
}

/* The slot holding key, or the empty slot where it would go. */
static struct slot *find(const struct client_count *t, const struct client_key *key)
{
	size_t i = hash(t, key) & t->mask;
	while (t->slots[i].n != 0 && memcmp(&t->slots[i].key, key, sizeof(*key)) != 0)
		i = (i + 1) & t->mask;
	return &t->slots[i];
}

static void grow(struct client_count *t)
{
	struct slot *old = t->slots;
	size_t oldn = t->mask + 1;

	t->slots = xcalloc(oldn * 2, sizeof(*t->slots));
	t->mask = oldn * 2 - 1;
	for (size_t i = 0; i < oldn; i++)
		if (old[i].n != 0)
			*find(t, &old[i].key) = old[i];
	free(old);
}

uint32_t client_count_get(const struct client_count *t, const struct client_key *key)
{
	return find(t, key)->n;
}

void client_count_add(struct client_count *t, const struct client_key *key)
{
	struct slot *s = find(t, key);
	if (s->n == 0) {
		if ((t->used + 1) * 2 > t->mask + 1) {
			grow(t);
			s = find(t, key);
		}
		s->key = *key;
		t->used++;
	}
	s->n++;
}

/* Empty slot i, then move back every later entry of the run that could
 * live at or before i, so that no lookup stops early at the gap. */
static void delete_slot(struct client_count *t, size_t i)
{
	size_t j = i;
	t->slots[i].n = 0;
	for (;;) {
		j = (j + 1) & t->mask;
		if (t->slots[j].n == 0)
			return;
		size_t home = hash(t, &t->slots[j].key) & t->mask;
		/* j stays if its home lies cyclically in (i, j] */
		if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
			continue;
		t->slots[i] = t->slots[j];
		t->slots[j].n = 0;
		i = j;
	}
}

void client_count_remove(struct client_count *t, const struct client_key *key)
{
	struct slot *s = find(t, key);
	if (s->n == 0)
		return;
	if (--s->n == 0) {
		delete_slot(t, (size_t)(s - t->slots));
		t->used--;
	}
}

size_t client_count_addresses(const struct client_count *t)
{
	return t->used;
}
