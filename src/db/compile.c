/*
 * compile.c - `mailprocctl db compile`: read and validate every source,
 * check the entries against each other, and only when all is well write
 * and swap in the new database (compile_write.c).
 */
#include "conf/config.h"
#include "db/compile_private.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void compile_init(struct compile *c, const struct config *cfg, const char *srcdir,
    compile_report_fn report, void *ctx)
{
	memset(c, 0, sizeof(*c));
	c->cfg = cfg;
	c->srcdir = srcdir;
	c->parse_flags = cfg->home_base != NULL ? RULES_VIRTUAL : 0;
	c->report = report;
	c->ctx = ctx;
	table_init(&c->rules);
	table_init(&c->uid);
	table_init(&c->gid);
	table_init(&c->lists);
	c->rules_path = xasprintf("%s/rules", srcdir);
}

static void compile_done(struct compile *c)
{
	table_free(&c->rules);
	table_free(&c->uid);
	table_free(&c->gid);
	table_free(&c->lists);
	free(c->rules_path);
	compile_members_free(c);
}

static int read_one(struct compile *c, const char *name, source_line_fn fn)
{
	char *path = xasprintf("%s/%s", c->srcdir, name);
	c->cur_rule = NULL;
	int r = compile_read_source(c, path, fn);
	free(path);
	return r;
}

static void read_sources(struct compile *c)
{
	struct stat st;
	if (stat(c->srcdir, &st) < 0) {
		compile_error(c, c->srcdir, 0, "%s", strerror(errno));
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		compile_error(c, c->srcdir, 0, "not a directory");
		return;
	}
	int have_rules = read_one(c, "rules", compile_rules_line);
	int have_uid = read_one(c, "uid", compile_uid_line);
	read_one(c, "gid", compile_gid_line);
	read_one(c, "lists", compile_lists_line);
	read_one(c, "members", compile_members_line);
	if (have_rules == 0 && have_uid == 0)
		compile_error(c, c->srcdir, 0, "neither a rules nor a uid source");
}

static void default_report(void *ctx, const char *msg)
{
	log_warn("%s", msg);
}

int db_compile(const struct config *cfg, const char *srcdir,
    compile_report_fn report, void *ctx, struct compile_stats *stats)
{
	struct compile c;

	if (stats != NULL)
		memset(stats, 0, sizeof(*stats));
	compile_init(&c, cfg, srcdir, report ? report : default_report, ctx);
	read_sources(&c);
	compile_check_accounts(&c);
	compile_check_lists(&c);
	if (c.errors == 0)
		compile_write(&c, stats);
	int errors = c.errors;
	compile_done(&c);
	return errors;
}
