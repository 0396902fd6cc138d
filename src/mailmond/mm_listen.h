/*
 * mm_listen.h - the TCP sockets of `listen metrics`, opened before
 * mailmond gives up root (a port below 1024 needs it).
 */
#ifndef MM_LISTEN_H
#define MM_LISTEN_H

#include "mailmond/mm_config.h"

/* Open every listener of c into fds[] (non-blocking, close-on-exec).
 * 0, or -1 (logged; those already opened are closed). */
int mm_listen_open(const struct mm_config *c, int *fds);

#endif
