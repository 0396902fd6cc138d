/*
 * walk.c - running a rules entry top to bottom.  See walk.h.
 */
#include "rules/walk.h"

int rules_walk(const struct rules_entry *e, const struct rule_context *ctx,
    rules_visit_fn visit, void *arg)
{
	char warn[512];
	int held = 0;

	for (int i = 0; i < e->ninstr; i++) {
		const struct rule_instruction *in = &e->instr[i];
		warn[0] = '\0';
		int holds = rule_condition_holds(in, ctx, warn, sizeof(warn));
		visit(in, i, holds, warn, arg);
		if (holds && in->action == ACT_STOP)
			break;
		held += holds && in->action != ACT_STOP;
	}
	return held;
}
