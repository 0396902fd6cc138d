/*
 * reload.h - the master's side of a reload (SIGHUP): read the file once,
 * check it, swap it in, and hand the very text it checked to each child.
 */
#ifndef MP_RELOAD_H
#define MP_RELOAD_H

#include "conf/config.h"

/* Read live->path into a sealed memfd and parse it.  On errors (each
 * logged as file:line: message) the running configuration stays and -1 is
 * returned.  Otherwise the settings that need a restart keep their running
 * values (each change logged), the result is swapped into *live with the
 * next generation, and the memfd is returned (the caller sends it to the
 * children with reload_send, then closes it). */
int reload_prepare(struct config *live);

/* Send MSG_CONFIG (live->generation, memfd) on a child's socket; never
 * blocks.  0, or -1 (logged) when it could not be sent. */
int reload_send(int sock, const char *child, const struct config *live, int memfd);

#endif
