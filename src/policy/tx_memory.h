/*
 * tx_memory.h - the recipients of each mail transaction, remembered by the
 * `instance` attribute from the RCPT requests, for the size check at
 * END-OF-MESSAGE.
 *
 * Kept per process, not per connection: Postfix may use another
 * connection for the same transaction.  Bounded: at most max_instances
 * transactions (the least recently used goes first), each at most
 * TX_MEMORY_MAX_RCPTS recipients, forgotten after ttl seconds untouched,
 * and at most max_bytes of recipients in all (tx_memory_set_max_bytes;
 * again the least recently used transactions go first): transactions
 * that never reach END-OF-MESSAGE would otherwise hold up to
 * max_instances x TX_MEMORY_MAX_RCPTS addresses for ttl.
 *
 * A recipient that a later restriction of Postfix refused must not count:
 * recipient_count says how many recipients Postfix accepted before a
 * request, so a remembered recipient whose own count is not below a later
 * request's count was refused and is dropped.
 */
#ifndef MP_TX_MEMORY_H
#define MP_TX_MEMORY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define TX_MEMORY_MAX_RCPTS 1000
/* A request without recipient_count: nothing is pruned by it, and a
 * recipient remembered without one is never pruned. */
#define TX_COUNT_UNKNOWN UINT64_MAX

struct tx_memory;

struct tx_rcpt {
	char *address;
	uint64_t limit;         /* bytes; 0 = none */
	char *limit_why;        /* where the limit comes from, for reasons */
	uint64_t count;         /* recipient_count of its RCPT request */
};

struct tx_memory *tx_memory_new(size_t max_instances, time_t ttl);
void tx_memory_free(struct tx_memory *m);
/* The bound on the bytes remembered (addresses, reasons, records);
 * 0 = none (the default). */
void tx_memory_set_max_bytes(struct tx_memory *m, size_t max_bytes);
size_t tx_memory_bytes(const struct tx_memory *m);
/* A recipient answered DUNNO at RCPT. */
void tx_memory_add(struct tx_memory *m, const char *instance, uint64_t count,
    const char *address, uint64_t limit, const char *limit_why, time_t now);
/* END-OF-MESSAGE: the first recipient accepted (count below rcpt_count)
 * whose limit size exceeds, or NULL; *found says whether the instance was
 * known.  The returned pointer is valid until tx_memory_forget. */
const struct tx_rcpt *tx_memory_over(struct tx_memory *m, const char *instance,
    uint64_t rcpt_count, uint64_t size, time_t now, int *found);
void tx_memory_forget(struct tx_memory *m, const char *instance);
size_t tx_memory_count(const struct tx_memory *m);

#endif
