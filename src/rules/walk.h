/*
 * walk.h - running a rules entry top to bottom: what the delivery worker
 * does for real and `mailprocctl test` shows, in one place so that the two
 * can never disagree.
 */
#ifndef MP_RULES_WALK_H
#define MP_RULES_WALK_H

#include "db/rules_entry.h"
#include "rules/eval.h"

/* Called for every instruction reached, in order: holds says whether its
 * condition held; warn is "" or a warning from the evaluation (a regex
 * limit hit).  A `stop` that holds is visited and ends the walk. */
typedef void (*rules_visit_fn)(const struct rule_instruction *in, int index, int holds,
    const char *warn, void *arg);

/* Returns how many instructions other than `stop` held: 0 means the entry
 * delivers nothing and default_delivery applies. */
int rules_walk(const struct rules_entry *e, const struct rule_context *ctx,
    rules_visit_fn visit, void *arg);

#endif
