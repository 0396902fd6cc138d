/*
 * config_swap.h - a reload: a freshly parsed configuration takes the place
 * of the running one, in place, in every process.
 *
 * Some settings only take effect at the next restart of the daemon (the
 * listening sockets, identities, directories, the SpamAssassin the spawner
 * loaded); a fresh configuration keeps their running values.  The swap is
 * in place, so pointers to the struct config (and to its listen array)
 * stay valid; the strings of settings that changed are freed, so no live
 * object may keep a pointer to one of them (each process re-reads them
 * after a swap, see receiver.c, relay.c).
 */
#ifndef MP_CONFIG_SWAP_H
#define MP_CONFIG_SWAP_H

#include "conf/config.h"

/* Give fresh the running values of the settings that need a restart.  With
 * log_changes, each one that differs is logged: "reload: NAME changed;
 * takes effect at the next restart".  Returns how many differed. */
int config_keep_restart_settings(struct config *fresh, struct config *running,
    int log_changes);

/* Put fresh (after config_keep_restart_settings) in the place of *live and
 * free what *live held; fresh is left empty. */
void config_swap(struct config *live, struct config *fresh);

/* A child's side: drain the master's socket fd (non-blocking) of
 * MSG_CONFIG messages, parse the text the master validated, keep the
 * restart-only settings and swap it in if it is newer than *live.
 * Returns 1 when a new configuration was swapped in, 0 when none, -1 when
 * the master's end is closed. */
int config_swap_receive(int fd, struct config *live);

#endif
