/*
 * service_policies.c - the users' own policies as the policy service reads
 * them: state_dir/policy.mdb (written by the policy sync), opened
 * read-only, opened again after a failure or when state_dir changed at a
 * reload.
 */
#include "policy/service_private.h"
#include "policy/policy_store.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STORE_RETRY_INTERVAL 5

static int get_policy(void *arg, const char *account, struct user_policy **out,
    char *err, size_t errlen)
{
	struct policy_service *svc = arg;
	int r = policy_store_get(svc->store, account, out, err, errlen);
	if (r < 0) {
		/* opened again at the next request that needs it */
		policy_store_close(svc->store);
		svc->store = NULL;
		svc->store_retry_at = time(NULL) + STORE_RETRY_INTERVAL;
	}
	return r;
}

static int store_open(struct policy_service *svc)
{
	char err[512] = "";
	time_t now = time(NULL);

	if (svc->store != NULL)
		return 0;
	if (now < svc->store_retry_at)
		return -1;
	if (policy_store_open(svc->cfg->state_dir, 0, &svc->store, err, sizeof(err)) == 0)
		return 0;
	svc->store = NULL;
	svc->store_retry_at = now + STORE_RETRY_INTERVAL;
	char *why = xasprintf("cannot read the users' policies in %s: %s",
	    svc->cfg->state_dir, err);
	service_trouble(svc, why);
	free(why);
	return -1;
}

static int policies_unreadable(void *arg, const char *account, struct user_policy **out,
    char *err, size_t errlen)
{
	snprintf(err, errlen, "the policy database cannot be opened");
	*out = NULL;
	return -1;
}

void service_policies(struct policy_service *svc, struct decide_ctx *ctx)
{
	ctx->get_policy = store_open(svc) == 0 ? get_policy : policies_unreadable;
	ctx->policy_arg = svc;
}

void service_policies_reload(struct policy_service *svc)
{
	/* state_dir may have changed */
	service_policies_close(svc);
}

void service_policies_close(struct policy_service *svc)
{
	if (svc->store != NULL)
		policy_store_close(svc->store);
	svc->store = NULL;
	svc->store_retry_at = 0;
}
