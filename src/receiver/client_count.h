/*
 * client_count.h - sessions open per client IP address, for
 * max_sessions_per_client: a hash table keyed by the address, O(1) per
 * accept and per close, with no allocation per session.
 */
#ifndef MP_CLIENT_COUNT_H
#define MP_CLIENT_COUNT_H

#include <stdint.h>
#include <sys/socket.h>

/* An IPv6 address; IPv4 ones as IPv4-mapped (::ffff:a.b.c.d), so a client
 * counts the same over IPv4 and a v4-mapped IPv6 socket. */
struct client_key {
	unsigned char addr[16];
};

struct client_count;

struct client_count *client_count_new(void);
void client_count_free(struct client_count *t);

/* The key of an IPv4 or IPv6 peer address: 0, or -1 for anything else
 * (unix sockets are not counted). */
int client_key_from(const struct sockaddr *sa, socklen_t salen, struct client_key *key);

/* Sessions open from key. */
uint32_t client_count_get(const struct client_count *t, const struct client_key *key);
/* One more, one fewer (never below zero; the entry goes at zero). */
void client_count_add(struct client_count *t, const struct client_key *key);
void client_count_remove(struct client_count *t, const struct client_key *key);
/* Distinct addresses in the table (for tests and logs). */
size_t client_count_addresses(const struct client_count *t);

#endif
