/*
 * mailman_rest.h - GET requests to Mailman 3's REST API with libcurl:
 * HTTP basic auth, time limits, HTTP errors as errors.  Blocking: only
 * the lists sync process and mailprocctl use it.
 */
#ifndef MP_MAILMAN_REST_H
#define MP_MAILMAN_REST_H

#include <signal.h>
#include <stddef.h>

#include "lib/buf.h"

struct mailman_rest;

/* root: the REST root (http://HOST:PORT/3.1); credentials USER:PASSWORD.
 * A request under way is abandoned soon after *stop (may be NULL) becomes
 * non-zero (a signal handler sets it). */
struct mailman_rest *mailman_rest_new(const char *root, const char *credentials,
    const volatile sig_atomic_t *stop);
void mailman_rest_free(struct mailman_rest *c);
/* GET root + path (path starts with '/') into body.  0 on HTTP 200, else
 * -1 with err (connection trouble, time out, HTTP status). */
int mailman_rest_get(struct mailman_rest *c, const char *path, struct buf *body,
    char *err, size_t errlen);
/* path with each byte outside [A-Za-z0-9._-] percent-encoded, for ids. */
char *mailman_rest_escape(const char *s);

#define MAILMAN_CONNECT_TIMEOUT 10      /* s */
#define MAILMAN_REQUEST_TIMEOUT 60      /* s, for one page */
#define MAILMAN_MAX_BODY (64u << 20)

#endif
