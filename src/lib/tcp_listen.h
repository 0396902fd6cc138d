/*
 * tcp_listen.h - a listening TCP socket for HOST:PORT (the first address
 * getaddrinfo gives that binds), non-blocking and close-on-exec, IPv6
 * sockets v6-only.  Used by mailprocd's master and by mailmond.
 */
#ifndef MP_TCP_LISTEN_H
#define MP_TCP_LISTEN_H

/* The socket, or -1 (each failure logged with what, e.g. "listen"). */
int tcp_listen(const char *what, const char *host, const char *port, int backlog);

#endif
