/*
 * strmap.h - a small hash map from C strings to pointers (chained, grows
 * by doubling).  Keys are copied; values belong to the caller.
 */
#ifndef MP_STRMAP_H
#define MP_STRMAP_H

#include <stddef.h>

struct strmap;

struct strmap *strmap_new(void);
void strmap_free(struct strmap *m);
void *strmap_get(const struct strmap *m, const char *key);
/* Insert or replace; returns the previous value or NULL. */
void *strmap_put(struct strmap *m, const char *key, void *value);
/* Remove; returns the value or NULL. */
void *strmap_del(struct strmap *m, const char *key);
size_t strmap_count(const struct strmap *m);
/* Call fn for every entry; fn may not change the map.  Stops when fn
 * returns non-zero. */
void strmap_each(const struct strmap *m, int (*fn)(const char *key, void *value, void *ctx), void *ctx);

#endif
