/* api_errors_and_limits: 405 + Allow on every route, 404 for unknown paths,
 * 413 for bodies over --max-upload (declared by Content-Length or streamed
 * chunked) with nothing left in DATA_DIR/tmp or DATA_DIR/blobs, the 1 MiB
 * cap on job bodies, and the health probes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define MAX_UPLOAD 1000000

struct route_case {
	const char *path;
	const char *allowed[3]; /* methods the route serves */
	const char *wrong[3];   /* methods that must get 405 */
};

static bool allow_has(const char *allow, const char *method)
{
	size_t n = strlen(method);

	for (const char *p = allow; (p = strstr(p, method)) != NULL; p += n) {
		bool start = p == allow || p[-1] == ',' || p[-1] == ' ';
		bool end = p[n] == 0 || p[n] == ',' || p[n] == ' ';

		if (start && end)
			return true;
	}
	return false;
}

static void check_405(const struct ht_daemon *d, const struct route_case *rc)
{
	for (size_t i = 0; i < 3 && rc->wrong[i]; i++) {
		struct ht_req rq = {.method = rc->wrong[i], .path = rc->path};
		struct ht_resp r;
		char allow[128];

		ht_request(d, &rq, &r);
		HT_ASSERTF(r.status == 405, &r, "%s %s must be 405", rc->wrong[i], rc->path);
		HT_ASSERTF(ht_header(&r, "Allow", allow, sizeof(allow)), &r, "405 without Allow");
		for (size_t k = 0; k < 3 && rc->allowed[k]; k++)
			HT_ASSERTF(allow_has(allow, rc->allowed[k]), &r, "Allow: %s lacks %s", allow,
				   rc->allowed[k]);
		HT_ASSERTF(!allow_has(allow, rc->wrong[i]), &r, "Allow: %s lists %s", allow,
			   rc->wrong[i]);
		HT_EXPECT_ERROR(&r, 405, "method_not_allowed", NULL);
		ht_resp_free(&r);
	}
}

/* Streams `total` bytes of 0x42 from memory without a Content-Length. */
struct pattern {
	size_t total, sent;
};

static size_t read_pattern(char *buf, size_t size, size_t n, void *ud)
{
	struct pattern *p = ud;
	size_t want = size * n;

	if (want > p->total - p->sent)
		want = p->total - p->sent;
	memset(buf, 0x42, want);
	p->sent += want;
	return want;
}

static void check_nothing_left(const struct ht_daemon *d, long blobs_before, const char *what)
{
	char tmp[HT_PATH + 8];
	long blobs = 0, bad;
	double deadline = ht_now() + 10;

	snprintf(tmp, sizeof(tmp), "%s/tmp", d->data_dir);
	/* The temp file may be discarded when the request completes, just after
	 * the 413 went out: give the completion a moment. */
	while (ht_count_files(tmp) != 0 && ht_now() < deadline)
		ht_sleep_ms(20);
	HT_ASSERTF(ht_count_files(tmp) == 0, NULL, "%s: %ld files left in %s", what,
		   ht_count_files(tmp), tmp);
	bad = ht_verify_blobs(d, &blobs);
	HT_ASSERTF(bad == 0 && blobs == blobs_before, NULL,
		   "%s: blobs went from %ld to %ld (%ld bad)", what, blobs_before, blobs, bad);
}

static void expect_413(const struct ht_daemon *d, struct ht_req *rq, const char *what)
{
	struct ht_resp r;

	ht_note("%s -> 413 too_large", what);
	ht_request(d, rq, &r);
	HT_EXPECT_ERROR(&r, 413, "too_large", NULL);
	ht_resp_free(&r);
}

int main(int argc, char **argv)
{
	static const char *const args[] = {"--workers", "0", "--max-upload", "1000000", NULL};
	static const int64_t small_dims[] = {64, 32, 10};
	static const struct route_case routes[] = {
		{"/v1/models", {"GET", "POST"}, {"PUT", "DELETE", "PATCH"}},
		{"/v1/models/mdl_aaaaaaaaaaaaaaaaaaaaaaaaaa", {"GET", "DELETE"}, {"POST", "PUT"}},
		{"/v1/jobs", {"GET", "POST"}, {"DELETE", "PUT"}},
		{"/v1/jobs/job_aaaaaaaaaaaaaaaaaaaaaaaaaa", {"GET"}, {"POST", "DELETE", "PUT"}},
		{"/v1/jobs/job_aaaaaaaaaaaaaaaaaaaaaaaaaa/cancel", {"POST"}, {"GET", "DELETE"}},
		{"/v1/artifacts/art_aaaaaaaaaaaaaaaaaaaaaaaaaa", {"GET", "HEAD"}, {"POST", "DELETE", "PUT"}},
		{"/healthz", {"GET"}, {"POST", "DELETE"}},
		{"/readyz", {"GET"}, {"POST", "PUT"}},
	};
	static const char *const unknown[] = {"/", "/v1", "/v1/nope", "/v2/models",
					      "/v1/models/mdl_aaaaaaaaaaaaaaaaaaaaaaaaaa/extra",
					      "/v1/jobs/job_aaaaaaaaaaaaaaaaaaaaaaaaaa/pause"};
	struct ht_env env;
	struct ht_daemon d;
	struct ht_resp r;
	uint8_t *big, *small;
	size_t small_len;
	long blobs_before;

	ht_init(argc, argv, &env);
	ht_daemon_init(&d, env.exe, args);
	HT_START(&d);

	ht_note("health probes");
	ht_get(&d, "/healthz", &r);
	HT_EXPECT_STATUS(&r, 200);
	HT_EXPECT_JSTR(r.json, "status", "ok", &r);
	ht_resp_free(&r);
	ht_get(&d, "/readyz", &r);
	HT_EXPECT_STATUS(&r, 200);
	HT_EXPECT_JSTR(r.json, "status", "ready", &r);
	ht_resp_free(&r);

	ht_note("wrong method -> 405 with Allow, on every route");
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		check_405(&d, &routes[i]);

	ht_note("unknown paths -> 404 not_found");
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		ht_get(&d, unknown[i], &r);
		HT_EXPECT_ERROR(&r, 404, "not_found", NULL);
		ht_resp_free(&r);
	}

	/* One good model first, so "no new blob" is measured against a non-empty store. */
	ht_synth_bytes(small_dims, 3, 5, &small, &small_len);
	ht_upload(&d, "small", small, small_len, &r);
	HT_EXPECT_STATUS(&r, 201);
	ht_resp_free(&r);
	HT_ASSERT(ht_verify_blobs(&d, &blobs_before) == 0 && blobs_before == 1, NULL);

	big = malloc(2 * MAX_UPLOAD);
	HT_ASSERT(big != NULL, NULL);
	memset(big, 0x42, 2 * MAX_UPLOAD);
	{
		struct ht_req rq = {.method = "POST",
				    .path = "/v1/models?name=big",
				    .content_type = "application/octet-stream",
				    .body = big,
				    .len = 2 * MAX_UPLOAD,
				    .has_body = true};

		expect_413(&d, &rq, "2 MB with Content-Length (Expect: 100-continue)");
		check_nothing_left(&d, blobs_before, "Content-Length upload");
		rq.no_expect = true;
		expect_413(&d, &rq, "2 MB with Content-Length, body sent at once");
		check_nothing_left(&d, blobs_before, "Content-Length upload without Expect");
	}
	ht_note("a body of exactly --max-upload is read (400 invalid_model, not 413)");
	ht_upload(&d, "at-limit", big, MAX_UPLOAD, &r);
	HT_EXPECT_ERROR(&r, 400, "invalid_model", NULL);
	ht_resp_free(&r);
	check_nothing_left(&d, blobs_before, "upload at the limit");

	ht_note("job bodies over 1 MiB -> 413");
	{
		size_t n = (size_t)2 << 20;
		char *json = malloc(n + 64);
		size_t off;

		HT_ASSERT(json != NULL, NULL);
		off = (size_t)snprintf(json, 64, "{\"model\":\"mdl_x\",\"pad\":\"");
		memset(json + off, 'a', n);
		snprintf(json + off + n, 64, "\"}");
		ht_post_json(&d, "/v1/jobs", json, &r);
		HT_EXPECT_ERROR(&r, 413, "too_large", NULL);
		ht_resp_free(&r);
		free(json);
	}

	{
		struct pattern pat = {.total = 2 * MAX_UPLOAD};
		struct ht_req rq = {.method = "POST",
				    .path = "/v1/models?name=big-chunked",
				    .content_type = "application/octet-stream",
				    .read_fn = read_pattern,
				    .read_ud = &pat,
				    .read_size = -1};

		expect_413(&d, &rq, "2 MB chunked");
		check_nothing_left(&d, blobs_before, "chunked upload");
		pat.sent = 0;
		rq.no_expect = true;
		expect_413(&d, &rq, "2 MB chunked, body sent at once");
		check_nothing_left(&d, blobs_before, "chunked upload without Expect");

		pat.sent = 0;
		rq.path = "/v1/jobs";
		rq.content_type = "application/json";
		expect_413(&d, &rq, "2 MB chunked job body");
	}

	ht_note("the daemon still serves after all that");
	ht_upload(&d, "small-again", small, small_len, &r);
	HT_EXPECT_STATUS(&r, 201);
	ht_resp_free(&r);
	ht_get(&d, "/healthz", &r);
	HT_EXPECT_STATUS(&r, 200);
	ht_resp_free(&r);

	free(big);
	free(small);
	HT_ASSERTF(ht_daemon_stop(&d, 60) == 0, NULL, "nncd did not exit 0 on SIGTERM");
	ht_daemon_cleanup(&d);
	printf("PASS api_errors_and_limits\n");
	return 0;
}
