/*
 * diskindex.c - the index of queue files waiting on disk (diskindex.h).
 *
 * Entries live in one array (freed slots are reused), found by queue id
 * through an open-addressing hash of entry numbers (linear probing,
 * backward-shift deletion), and ordered in each lane by a binary heap of
 * entry numbers keyed by (due, queue id).  A queue id is packed 6 bits a
 * character, in order, so that comparing packed ids compares the ids.
 */
#include "qmgr/diskindex.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define PACKED 24               /* 32 characters of 6 bits */
#define FREE_DIR 0xff
#define NONE UINT32_MAX

struct di_entry {
	uint8_t q[PACKED];
	uint32_t due;
	uint32_t hpos;          /* its place in its lane's heap; free: next free */
	uint16_t lane;
	uint8_t dir;            /* FREE_DIR: a free slot */
	uint8_t mark;           /* the scan that last saw it */
};

struct di_lane {
	uint32_t *h;
	uint32_t n, cap;
};

struct diskindex {
	struct di_entry *e;
	uint32_t ne, cape, free_head;
	uint32_t *slot;         /* entry + 1; 0: empty */
	uint32_t capslot;       /* a power of two */
	size_t used;
	struct di_lane *lanes;
	uint32_t nlanes;
	uint32_t cursor;        /* the next deferred lane in turn, from 1 */
	size_t ndeferred;
	uint8_t gen;
	uint8_t min_q[PACKED];  /* smallest deferred id put since the last sweep */
	int have_min;
};

static int code_of(char c)
{
	if (c >= '0' && c <= '9')
		return 1 + (c - '0');
	if (c >= 'A' && c <= 'Z')
		return 11 + (c - 'A');
	return -1;
}

static const char chars[] = "?0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

static int pack(const char *qid, uint8_t q[PACKED])
{
	size_t len = strlen(qid);
	if (len == 0 || len >= DI_QID_MAX)
		return -1;
	for (size_t g = 0; g < DI_QID_MAX / 4; g++) {
		uint32_t v = 0;
		for (size_t k = 0; k < 4; k++) {
			size_t i = 4 * g + k;
			int c = i < len ? code_of(qid[i]) : 0;
			if (c < 0)
				return -1;
			v = v << 6 | (uint32_t)c;
		}
		q[3 * g] = (uint8_t)(v >> 16);
		q[3 * g + 1] = (uint8_t)(v >> 8);
		q[3 * g + 2] = (uint8_t)v;
	}
	return 0;
}

static void unpack(const uint8_t q[PACKED], char out[DI_QID_MAX])
{
	size_t n = 0;
	for (size_t g = 0; g < DI_QID_MAX / 4; g++) {
		uint32_t v = (uint32_t)q[3 * g] << 16 | (uint32_t)q[3 * g + 1] << 8 | q[3 * g + 2];
		for (int k = 3; k >= 0; k--) {
			unsigned c = (v >> (6 * k)) & 63;
			if (c == 0 || c >= sizeof(chars) - 1) {
				out[n] = '\0';
				return;
			}
			out[n++] = chars[c];
		}
	}
	out[DI_QID_MAX - 1] = '\0';
}

static uint32_t hash_of(const uint8_t q[PACKED])
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < PACKED; i++)
		h = (h ^ q[i]) * 1099511628211ULL;
	return (uint32_t)(h ^ (h >> 32));
}

/* ---- the hash of entry numbers ---- */

static uint32_t find_slot(const struct diskindex *ix, const uint8_t q[PACKED])
{
	uint32_t mask = ix->capslot - 1;
	for (uint32_t s = hash_of(q) & mask;; s = (s + 1) & mask) {
		uint32_t v = ix->slot[s];
		if (v == 0 || memcmp(ix->e[v - 1].q, q, PACKED) == 0)
			return s;
	}
}

static void slots_grow(struct diskindex *ix)
{
	uint32_t old = ix->capslot, *olds = ix->slot;
	ix->capslot = old ? 2 * old : 1024;
	ix->slot = xcalloc(ix->capslot, sizeof(*ix->slot));
	for (uint32_t s = 0; s < old; s++)
		if (olds[s] != 0)
			ix->slot[find_slot(ix, ix->e[olds[s] - 1].q)] = olds[s];
	free(olds);
}

static void slot_delete(struct diskindex *ix, uint32_t s)
{
	uint32_t mask = ix->capslot - 1;
	ix->slot[s] = 0;
	for (uint32_t j = (s + 1) & mask; ix->slot[j] != 0; j = (j + 1) & mask) {
		uint32_t home = hash_of(ix->e[ix->slot[j] - 1].q) & mask;
		/* the entry at j may move to s when s lies on its probe path */
		if (((j - home) & mask) >= ((j - s) & mask)) {
			ix->slot[s] = ix->slot[j];
			ix->slot[j] = 0;
			s = j;
		}
	}
}

/* ---- the lanes' heaps ---- */

static int before(const struct diskindex *ix, uint32_t a, uint32_t b)
{
	const struct di_entry *x = &ix->e[a], *y = &ix->e[b];
	if (x->due != y->due)
		return x->due < y->due;
	return memcmp(x->q, y->q, PACKED) < 0;
}

static void heap_set(struct diskindex *ix, struct di_lane *l, uint32_t i, uint32_t ent)
{
	l->h[i] = ent;
	ix->e[ent].hpos = i;
}

static void heap_up(struct diskindex *ix, struct di_lane *l, uint32_t i)
{
	uint32_t ent = l->h[i];
	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (!before(ix, ent, l->h[p]))
			break;
		heap_set(ix, l, i, l->h[p]);
		i = p;
	}
	heap_set(ix, l, i, ent);
}

static void heap_down(struct diskindex *ix, struct di_lane *l, uint32_t i)
{
	uint32_t ent = l->h[i];
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= l->n)
			break;
		if (c + 1 < l->n && before(ix, l->h[c + 1], l->h[c]))
			c++;
		if (!before(ix, l->h[c], ent))
			break;
		heap_set(ix, l, i, l->h[c]);
		i = c;
	}
	heap_set(ix, l, i, ent);
}

static struct di_lane *lane_get(struct diskindex *ix, uint32_t lane)
{
	if (lane >= ix->nlanes) {
		ix->lanes = xreallocarray(ix->lanes, lane + 1, sizeof(*ix->lanes));
		memset(ix->lanes + ix->nlanes, 0, (lane + 1 - ix->nlanes) * sizeof(*ix->lanes));
		ix->nlanes = lane + 1;
	}
	return &ix->lanes[lane];
}

static void heap_insert(struct diskindex *ix, uint32_t ent)
{
	struct di_lane *l = lane_get(ix, ix->e[ent].lane);
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->h = xreallocarray(l->h, l->cap, sizeof(*l->h));
	}
	l->h[l->n] = ent;
	ix->e[ent].hpos = l->n++;
	heap_up(ix, l, l->n - 1);
	if (ix->e[ent].lane != DI_LANE_FRESH)
		ix->ndeferred++;
}

static void heap_remove(struct diskindex *ix, uint32_t ent)
{
	struct di_lane *l = &ix->lanes[ix->e[ent].lane];
	uint32_t i = ix->e[ent].hpos;
	if (ix->e[ent].lane != DI_LANE_FRESH)
		ix->ndeferred--;
	if (--l->n != i) {
		uint32_t moved = l->h[l->n];
		heap_set(ix, l, i, moved);
		heap_up(ix, l, i);
		heap_down(ix, l, ix->e[moved].hpos);
	}
	if (l->n == 0) {        /* release the memory of a lane emptied */
		free(l->h);
		l->h = NULL;
		l->cap = 0;
	}
}

/* ---- entries ---- */

struct diskindex *di_new(void)
{
	struct diskindex *ix = xcalloc(1, sizeof(*ix));
	ix->free_head = NONE;
	ix->cursor = 1;
	ix->gen = 1;
	slots_grow(ix);
	lane_get(ix, DI_LANE_UNKNOWN);
	return ix;
}

void di_free(struct diskindex *ix)
{
	if (ix == NULL)
		return;
	for (uint32_t i = 0; i < ix->nlanes; i++)
		free(ix->lanes[i].h);
	free(ix->lanes);
	free(ix->slot);
	free(ix->e);
	free(ix);
}

static void forget(struct diskindex *ix, uint32_t s)
{
	uint32_t ent = ix->slot[s] - 1;
	heap_remove(ix, ent);
	slot_delete(ix, s);
	ix->e[ent].dir = FREE_DIR;
	ix->e[ent].hpos = ix->free_head;
	ix->free_head = ent;
	ix->used--;
	if (ix->used == 0) {
		/* give the memory back once the backlog is gone */
		free(ix->e);
		ix->e = NULL;
		ix->ne = ix->cape = 0;
		ix->free_head = NONE;
		free(ix->slot);
		ix->slot = NULL;
		ix->capslot = 0;
		slots_grow(ix);
		for (uint32_t i = 0; i < ix->nlanes; i++) {
			free(ix->lanes[i].h);
			ix->lanes[i].h = NULL;
			ix->lanes[i].cap = 0;
		}
	}
}

int di_put(struct diskindex *ix, const struct di_item *it)
{
	uint8_t q[PACKED];
	if (pack(it->qid, q) < 0 || it->lane > DI_LANES_MAX || it->dir < 0 || it->dir >= FREE_DIR)
		return -1;
	if ((ix->used + 1) * 4 > (size_t)ix->capslot * 3)
		slots_grow(ix);
	uint32_t s = find_slot(ix, q), ent;
	if (ix->slot[s] != 0) {
		ent = ix->slot[s] - 1;
		heap_remove(ix, ent);
	} else {
		if (ix->free_head != NONE) {
			ent = ix->free_head;
			ix->free_head = ix->e[ent].hpos;
		} else {
			if (ix->ne == ix->cape) {
				ix->cape = ix->cape ? ix->cape + ix->cape / 2 : 1024;
				ix->e = xreallocarray(ix->e, ix->cape, sizeof(*ix->e));
			}
			ent = ix->ne++;
		}
		memcpy(ix->e[ent].q, q, PACKED);
		ix->slot[s] = ent + 1;
		ix->used++;
	}
	struct di_entry *e = &ix->e[ent];
	e->due = it->lane == DI_LANE_FRESH ? 0 : it->due;
	e->lane = (uint16_t)it->lane;
	e->dir = (uint8_t)it->dir;
	e->mark = ix->gen;
	heap_insert(ix, ent);
	if (it->lane != DI_LANE_FRESH && (!ix->have_min || memcmp(q, ix->min_q, PACKED) < 0)) {
		memcpy(ix->min_q, q, PACKED);
		ix->have_min = 1;
	}
	return 0;
}

static uint32_t lookup(const struct diskindex *ix, const char *qid)
{
	uint8_t q[PACKED];
	if (pack(qid, q) < 0)
		return NONE;
	uint32_t s = find_slot(ix, q);
	return ix->slot[s] != 0 ? s : NONE;
}

int di_del(struct diskindex *ix, const char *qid)
{
	uint32_t s = lookup(ix, qid);
	if (s == NONE)
		return 0;
	forget(ix, s);
	return 1;
}

int di_seen(struct diskindex *ix, const char *qid)
{
	uint32_t s = lookup(ix, qid);
	if (s == NONE)
		return 0;
	ix->e[ix->slot[s] - 1].mark = ix->gen;
	return 1;
}

static void item_of(const struct diskindex *ix, uint32_t ent, struct di_item *out)
{
	const struct di_entry *e = &ix->e[ent];
	unpack(e->q, out->qid);
	out->dir = e->dir;
	out->due = e->due;
	out->lane = e->lane;
}

static void take(struct diskindex *ix, uint32_t ent, struct di_item *out)
{
	item_of(ix, ent, out);
	forget(ix, find_slot(ix, ix->e[ent].q));
}

int di_take_fresh(struct diskindex *ix, struct di_item *out)
{
	if (ix->nlanes == 0 || ix->lanes[DI_LANE_FRESH].n == 0)
		return 0;
	take(ix, ix->lanes[DI_LANE_FRESH].h[0], out);
	return 1;
}

int di_take_due(struct diskindex *ix, uint32_t now, struct di_item *out)
{
	uint32_t nd = ix->nlanes - 1;       /* lanes 1 .. nlanes-1 */
	for (uint32_t k = 0; k < nd; k++) {
		uint32_t lane = 1 + (ix->cursor - 1 + k) % nd;
		struct di_lane *l = &ix->lanes[lane];
		if (l->n == 0 || ix->e[l->h[0]].due > now)
			continue;
		take(ix, l->h[0], out);
		ix->cursor = 1 + lane % nd;
		return 1;
	}
	return 0;
}

void di_put_back(struct diskindex *ix, const struct di_item *it)
{
	di_put(ix, it);
	if (it->lane != DI_LANE_FRESH)
		ix->cursor = it->lane;
}

int di_next_due(const struct diskindex *ix, uint32_t *due)
{
	int have = 0;
	for (uint32_t lane = 1; lane < ix->nlanes; lane++) {
		const struct di_lane *l = &ix->lanes[lane];
		if (l->n > 0 && (!have || ix->e[l->h[0]].due < *due)) {
			*due = ix->e[l->h[0]].due;
			have = 1;
		}
	}
	return have;
}

int di_any_due(const struct diskindex *ix, uint32_t now)
{
	for (uint32_t lane = 1; lane < ix->nlanes; lane++) {
		const struct di_lane *l = &ix->lanes[lane];
		if (l->n > 0 && ix->e[l->h[0]].due <= now)
			return 1;
	}
	return 0;
}

size_t di_count_fresh(const struct diskindex *ix)
{
	return ix->used - ix->ndeferred;
}

size_t di_count_deferred(const struct diskindex *ix)
{
	return ix->ndeferred;
}

size_t di_lanes(const struct diskindex *ix)
{
	size_t n = 0;
	for (uint32_t lane = 1; lane < ix->nlanes; lane++)
		n += ix->lanes[lane].n > 0;
	return n;
}

void di_oldest(const struct diskindex *ix, char out[DI_QID_MAX])
{
	const uint8_t *best = NULL;
	if (ix->nlanes > 0 && ix->lanes[DI_LANE_FRESH].n > 0)
		best = ix->e[ix->lanes[DI_LANE_FRESH].h[0]].q;
	if (ix->ndeferred > 0 && ix->have_min && (best == NULL || memcmp(ix->min_q, best, PACKED) < 0))
		best = ix->min_q;
	if (best == NULL)
		out[0] = '\0';
	else
		unpack(best, out);
}

void di_scan_begin(struct diskindex *ix)
{
	ix->gen = (uint8_t)(ix->gen + 1);
}

size_t di_sweep(struct diskindex *ix, int dir)
{
	size_t gone = 0;
	int have = 0;
	uint8_t min_q[PACKED];

	for (uint32_t ent = 0; ent < ix->ne; ent++) {
		struct di_entry *e = &ix->e[ent];
		if (e->dir == FREE_DIR)
			continue;
		if (e->dir == dir && e->mark != ix->gen) {
			forget(ix, find_slot(ix, e->q));
			gone++;
			if (ix->used == 0)
				break;
			continue;
		}
		if (e->lane != DI_LANE_FRESH && (!have || memcmp(e->q, min_q, PACKED) < 0)) {
			memcpy(min_q, e->q, PACKED);
			have = 1;
		}
	}
	ix->have_min = have;
	if (have)
		memcpy(ix->min_q, min_q, PACKED);
	return gone;
}

void di_all_due(struct diskindex *ix, uint32_t due,
    void (*fn)(const char *qid, uint32_t lane, void *ctx), void *ctx)
{
	char qid[DI_QID_MAX];
	for (uint32_t ent = 0; ent < ix->ne; ent++) {
		struct di_entry *e = &ix->e[ent];
		if (e->dir == FREE_DIR || e->lane == DI_LANE_FRESH)
			continue;
		if (fn != NULL) {
			unpack(e->q, qid);
			fn(qid, e->lane, ctx);
		}
		e->due = due;
	}
	for (uint32_t lane = 1; lane < ix->nlanes; lane++) {
		struct di_lane *l = &ix->lanes[lane];
		for (uint32_t i = l->n / 2; i-- > 0;)
			heap_down(ix, l, i);
	}
}
