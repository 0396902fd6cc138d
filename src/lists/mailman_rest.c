/*
 * mailman_rest.c - blocking GETs to Mailman 3's REST API (mailman_rest.h).
 */
#include "lists/mailman_rest.h"
#include "lib/xalloc.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mailman_rest {
	CURL *curl;
	char *root;
	char *credentials;
	const volatile sig_atomic_t *stop;
};

struct sink {
	struct buf *body;
	int too_big;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct sink *s = arg;
	size_t len = size * n;
	if (s->body->len + len > MAILMAN_MAX_BODY) {
		s->too_big = 1;
		return 0;
	}
	buf_append(s->body, p, len);
	return len;
}

/* curl calls this about once a second at least, also while waiting. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
    curl_off_t ulnow)
{
	const volatile sig_atomic_t *stop = arg;
	return stop != NULL && *stop;
}

struct mailman_rest *mailman_rest_new(const char *root, const char *credentials,
    const volatile sig_atomic_t *stop)
{
	static int initialised;
	if (!initialised) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		initialised = 1;
	}
	struct mailman_rest *c = xcalloc(1, sizeof(*c));
	c->root = xstrdup(root);
	size_t n = strlen(c->root);
	while (n > 0 && c->root[n - 1] == '/')
		c->root[--n] = '\0';
	c->credentials = xstrdup(credentials ? credentials : "");
	c->stop = stop;
	return c;
}

void mailman_rest_free(struct mailman_rest *c)
{
	if (c == NULL)
		return;
	if (c->curl != NULL)
		curl_easy_cleanup(c->curl);
	free(c->root);
	free(c->credentials);
	free(c);
}

char *mailman_rest_escape(const char *s)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, "");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-')
			buf_putc(&b, (char)*p);
		else
			buf_printf(&b, "%%%02X", *p);
	}
	return buf_steal(&b);
}

int mailman_rest_get(struct mailman_rest *c, const char *path, struct buf *body,
    char *err, size_t errlen)
{
	char curl_err[CURL_ERROR_SIZE] = "";
	struct sink sink = { body, 0 };
	char *url = xasprintf("%s%s", c->root, path);
	int r = -1;

	buf_reset(body);
	if (c->curl == NULL)
		c->curl = curl_easy_init();        /* kept: the connection is reused */
	if (c->curl == NULL) {
		snprintf(err, errlen, "curl_easy_init failed");
		free(url);
		return -1;
	}
	CURL *h = c->curl;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
	curl_easy_setopt(h, CURLOPT_USERPWD, c->credentials);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)MAILMAN_CONNECT_TIMEOUT);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)MAILMAN_REQUEST_TIMEOUT);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)c->stop);
	CURLcode rc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (sink.too_big)
		snprintf(err, errlen, "GET %s: answer larger than %u bytes", url, MAILMAN_MAX_BODY);
	else if (rc != CURLE_OK)
		snprintf(err, errlen, "GET %s: %s", url, curl_err[0] ? curl_err : curl_easy_strerror(rc));
	else if (status != 200)
		snprintf(err, errlen, "GET %s: HTTP status %ld%s", url, status,
		    status == 401 ? " (wrong members_source credentials?)" : "");
	else
		r = 0;
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	free(url);
	return r;
}
