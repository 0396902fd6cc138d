/*
 * greylist_key.h - the pure parts of greylisting, shared by the LMDB and
 * the Redis store and by the dry run: the client network of an address,
 * the keys, the stored records and their text form, and the decision
 * (what a check answers and what it changes).
 */
#ifndef MP_POLICY_GREYLIST_KEY_H
#define MP_POLICY_GREYLIST_KEY_H

#include "policy/greylist.h"

#include <time.h>

struct buf;

/* Every key starts with this, so that two mailprocd hosts share them in
 * one Redis and nothing else there clashes. */
#define GREYLIST_TRIPLET_PREFIX "mailprocd:gl:t:"
#define GREYLIST_CLIENT_PREFIX "mailprocd:gl:c:"
/* Longer keys end in a hash of the whole key (LMDB keys stop at 511). */
#define GREYLIST_KEY_MAX 480

struct greylist_params {
	long delay;             /* greylist_delay */
	long max_age;           /* greylist_max_age */
	long auto_allow;        /* greylist_auto_allow, 0 = never */
};

/* One (network, sender, recipient). */
struct greylist_triplet {
	int present;
	time_t first;           /* first attempt */
	time_t last;            /* last pass (passed only) */
	int passed;
};

/* One client network: how many distinct triplets of it passed. */
struct greylist_client {
	int present;
	long count;
	time_t last;            /* last pass */
};

/* What greylist_decide changed: store these back. */
#define GREYLIST_WRITE_TRIPLET 1
#define GREYLIST_WRITE_CLIENT 2

/* "192.0.2.0/24", "2001:db8:1:2::/64" (IPv4-mapped IPv6 counts as IPv4);
 * an address that does not parse is its own text. */
void greylist_client_net(const char *client_address, struct buf *out);

/* The triplet's and the client network's keys (sender and recipient
 * lower-cased; "" is the null sender). */
void greylist_keys(const char *client_address, const char *sender, const char *recipient,
    struct buf *triplet_key, struct buf *client_key);

void greylist_triplet_encode(const struct greylist_triplet *t, struct buf *out);
/* 0, or -1 for anything malformed (then *t is absent). */
int greylist_triplet_decode(const void *data, size_t len, struct greylist_triplet *t);
void greylist_client_encode(const struct greylist_client *c, struct buf *out);
int greylist_client_decode(const void *data, size_t len, struct greylist_client *c);

/* 1 when the record is past greylist_max_age and counts as absent. */
int greylist_triplet_expired(const struct greylist_params *p, time_t now,
    const struct greylist_triplet *t);
int greylist_client_expired(const struct greylist_params *p, time_t now,
    const struct greylist_client *c);
/* Seconds until the record expires (at least 1): Redis EXPIRE. */
long greylist_triplet_ttl(const struct greylist_params *p, time_t now,
    const struct greylist_triplet *t);
long greylist_client_ttl(const struct greylist_params *p, time_t now,
    const struct greylist_client *c);

/* The answer for an attempt at now given the stored records (absent ones
 * with present = 0); updates them and returns GREYLIST_WRITE_* for those
 * to store back. */
int greylist_decide(const struct greylist_params *p, time_t now, struct greylist_client *c,
    struct greylist_triplet *t, struct greylist_answer *out);

#endif
