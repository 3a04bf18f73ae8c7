/* api_artifact_zstd: the zstd-compressed representation of an artifact
 * (GET/HEAD /v1/artifacts/{id} with ?encoding=zstd or Accept-Encoding):
 * both ways of asking give Content-Encoding: zstd bytes that decompress
 * (libzstd) to exactly the artifact (sha256), with their own ETag, Vary,
 * Content-Length, Range and If-None-Match; q=0, identity and unknown
 * encodings; plain requests unchanged; the job view and the report give both
 * sizes; the zstd blob is kept by blob GC while its row refers to it, and an
 * artifact from before the zstd copy existed (its columns NULL, as migration
 * 4 leaves old rows) is served identity. When the curl and zstd command-line
 * tools are installed, `curl URL?encoding=zstd | zstd -d` equals the plain
 * download (that part is skipped otherwise). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>
#include <zstd.h>

#include "harness.h"

static const int64_t mlp_dims[] = {784, 300, 100, 10};

static void get_with(const struct ht_daemon *d, const char *method, const char *path,
		     const char *const *headers, struct ht_resp *r)
{
	struct ht_req rq = {.method = method, .path = path, .headers = headers};
	ht_request(d, &rq, r);
}

static void get_h(const struct ht_daemon *d, const char *path, const char *h1, const char *h2,
		  struct ht_resp *r)
{
	const char *headers[3] = {h1, h1 ? h2 : NULL, NULL};
	get_with(d, "GET", path, headers, r);
}

static bool header_is(const struct ht_resp *r, const char *name, const char *want)
{
	char v[256];
	return ht_header(r, name, v, sizeof v) && strcmp(v, want) == 0;
}

/* The response is the zstd representation: status, headers, and a body
 * that decompresses to the artifact. */
static void expect_zstd(const struct ht_resp *r, const char *zetag, size_t zsize,
			const char *sha, size_t size, bool vary)
{
	char v[128];
	HT_EXPECT_STATUS(r, 200);
	HT_ASSERTF(header_is(r, "Content-Encoding", "zstd"), r, "Content-Encoding must be zstd");
	HT_ASSERTF(header_is(r, "ETag", zetag), r, "ETag must be %s", zetag);
	HT_ASSERTF(ht_header(r, "Content-Length", v, sizeof v) && strtoull(v, NULL, 10) == zsize,
		   r, "Content-Length must be the compressed size %zu", zsize);
	HT_ASSERTF(vary == header_is(r, "Vary", "Accept-Encoding"), r,
		   vary ? "Vary: Accept-Encoding expected" : "no Vary expected with ?encoding=");
	HT_ASSERT(r->len == zsize, r);
	unsigned long long content = ZSTD_getFrameContentSize(r->body, r->len);
	HT_ASSERTF(content == size, NULL, "zstd frame says %llu bytes, the artifact has %zu",
		   content, size);
	char *plain = malloc(size + 1);
	HT_ASSERT(plain, NULL);
	size_t n = ZSTD_decompress(plain, size + 1, r->body, r->len);
	HT_ASSERTF(!ZSTD_isError(n) && n == size, NULL, "zstd body does not decompress: %s",
		   ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong size");
	char got[65];
	ht_sha256(plain, n, got);
	HT_ASSERTF(strcmp(got, sha) == 0, NULL, "decompressed body hashes to %s, artifact is %s",
		   got, sha);
	free(plain);
}

static void expect_identity(const struct ht_resp *r, const struct ht_resp *full, const char *etag,
			    bool vary)
{
	char v[64];
	HT_EXPECT_STATUS(r, 200);
	HT_ASSERTF(!ht_header(r, "Content-Encoding", v, sizeof v), r,
		   "identity must carry no Content-Encoding");
	HT_ASSERTF(header_is(r, "ETag", etag), r, "ETag must be %s", etag);
	HT_ASSERTF(vary == header_is(r, "Vary", "Accept-Encoding"), r, "Vary %s expected",
		   vary ? "Accept-Encoding" : "absent");
	HT_ASSERTF(r->len == full->len && memcmp(r->body, full->body, r->len) == 0, NULL,
		   "identity body differs from the plain download");
}

/* Runs one SQL statement on the daemon's database (daemon stopped). */
static void db_exec(const struct ht_daemon *d, const char *sql)
{
	char path[HT_PATH + 16];
	snprintf(path, sizeof path, "%s/nncd.db", d->data_dir);
	sqlite3 *db = NULL;
	char *msg = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	HT_ASSERTF(rc == SQLITE_OK, NULL, "%s: %s", sql, msg ? msg : sqlite3_errmsg(db));
	sqlite3_close(db);
}

/* `curl -s URL | zstd -d` into a file whose sha256 must be `sha`. */
static void cli_check(const struct ht_daemon *d, const char *path, const char *sha)
{
	if (system("command -v curl >/dev/null 2>&1 && command -v zstd >/dev/null 2>&1") != 0) {
		ht_note("SKIP (part): curl or zstd command-line tool not installed "
			"(apt-get install curl zstd)");
		return;
	}
	char out[HT_PATH + 32], cmd[3 * HT_PATH], got[65];
	snprintf(out, sizeof out, "%s/cli.onnx", d->root);
	snprintf(cmd, sizeof cmd, "curl -sSf '%s%s?encoding=zstd' | zstd -d -q -c > '%s'",
		 d->base_url, path, out);
	HT_ASSERTF(system(cmd) == 0, NULL, "`%s` failed", cmd);
	HT_ASSERT(ht_sha256_file(out, got) == 0, NULL);
	HT_ASSERTF(strcmp(got, sha) == 0, NULL, "curl | zstd -d gave sha256 %s, artifact is %s", got,
		   sha);
	/* curl --compressed negotiates (Accept-Encoding) and decodes by itself. */
	snprintf(cmd, sizeof cmd,
		 "curl -V | grep -qw zstd && curl -sSf --compressed '%s%s' > '%s'", d->base_url,
		 path, out);
	if (system(cmd) == 0) {
		HT_ASSERT(ht_sha256_file(out, got) == 0, NULL);
		HT_ASSERTF(strcmp(got, sha) == 0, NULL, "curl --compressed gave sha256 %s", got);
		ht_note("curl | zstd -d and curl --compressed both give the artifact's bytes");
	} else {
		ht_note("curl | zstd -d gives the artifact's bytes (this curl has no zstd)");
	}
	unlink(out);
}

int main(int argc, char **argv)
{
	static const char *const args[] = {"--workers", "1", NULL};
	struct ht_env env;
	struct ht_daemon d;
	struct ht_resp r, full, z;
	uint8_t *bytes;
	size_t len, size, zsize;
	char model[64], job[64], art[64], sha[65], zsha[65], path[256], zpath[300], hdr[256],
		etag[80], zetag[80], v[128];

	ht_init(argc, argv, &env);
	ht_daemon_init(&d, env.exe, args);
	HT_START(&d);

	ht_synth_bytes(mlp_dims, 4, 23, &bytes, &len);
	ht_upload(&d, "zstd", bytes, len, &r);
	HT_EXPECT_STATUS(&r, 201);
	snprintf(model, sizeof model, "%s", ht_jstr(r.json, "id"));
	ht_resp_free(&r);
	free(bytes);
	ht_submit_default_job(&d, model, &r);
	HT_EXPECT_STATUS(&r, 202);
	snprintf(job, sizeof job, "%s", ht_jstr(r.json, "id"));
	ht_resp_free(&r);
	HT_ASSERTF(ht_wait_job(&d, job, NULL, 300, &r) == 0, &r, "job did not finish");
	HT_EXPECT_JSTR(r.json, "state", "succeeded", &r);
	{
		json_t *a = json_array_get(json_object_get(r.json, "artifacts"), 0);
		HT_ASSERT(ht_jstr(a, "sha256") && ht_jstr(a, "zstd_sha256"), &r);
		snprintf(art, sizeof art, "%s", ht_jstr(a, "id"));
		snprintf(sha, sizeof sha, "%s", ht_jstr(a, "sha256"));
		snprintf(zsha, sizeof zsha, "%s", ht_jstr(a, "zstd_sha256"));
		size = (size_t)ht_jint(a, "size", 0);
		zsize = (size_t)ht_jint(a, "zstd_size", 0);
		ht_note("job view: artifact %zu bytes, zstd copy %zu bytes (%.1f%%)", size, zsize,
			100.0 * (double)zsize / (double)size);
		/* prune 0.8 + int8: the zeros must compress. */
		HT_ASSERTF(zsize > 0 && zsize < size / 2, &r, "zstd_size %zu for %zu bytes", zsize,
			   size);
		HT_ASSERT(strcmp(sha, zsha) != 0, &r);
	}
	ht_resp_free(&r);
	snprintf(path, sizeof path, "/v1/artifacts/%s", art);
	snprintf(zpath, sizeof zpath, "%s?encoding=zstd", path);
	snprintf(etag, sizeof etag, "\"%s\"", sha);
	snprintf(zetag, sizeof zetag, "\"%s\"", zsha);

	ht_note("report: the artifact shows both sizes");
	snprintf(hdr, sizeof hdr, "/v1/jobs/%s/report", job);
	ht_get(&d, hdr, &r);
	HT_EXPECT_STATUS(&r, 200);
	{
		json_t *a = json_object_get(r.json, "artifact");
		HT_ASSERT((size_t)ht_jint(a, "size", -1) == size, &r);
		HT_ASSERT((size_t)ht_jint(a, "zstd_size", -1) == zsize, &r);
		HT_EXPECT_JSTR(a, "zstd_sha256", zsha, &r);
	}
	ht_resp_free(&r);

	ht_note("plain GET: identity, as before (no Content-Encoding)");
	ht_get(&d, path, &full);
	HT_EXPECT_STATUS(&full, 200);
	ht_sha256(full.body, full.len, v);
	HT_ASSERT(full.len == size && strcmp(v, sha) == 0, NULL);
	expect_identity(&full, &full, etag, true);

	ht_note("?encoding=zstd -> compressed bytes, own ETag, Content-Length, .zst filename");
	ht_get(&d, zpath, &z);
	expect_zstd(&z, zetag, zsize, sha, size, false);
	snprintf(hdr, sizeof hdr, "attachment; filename=\"%s.onnx.zst\"", art);
	HT_ASSERT(header_is(&z, "Content-Disposition", hdr), &z);
	ht_sha256(z.body, z.len, v);
	HT_ASSERTF(strcmp(v, zsha) == 0, NULL, "zstd bytes hash to %s, job says %s", v, zsha);

	ht_note("Accept-Encoding forms that choose zstd");
	static const char *const yes[] = {
		"Accept-Encoding: zstd",
		"Accept-Encoding: gzip, deflate, br, zstd",
		"Accept-Encoding: ZSTD;q=0.5, gzip;q=1.0",
		"Accept-Encoding: *",
		"Accept-Encoding: gzip , zstd ; q=1 , identity;q=0.5",
		"Accept-Encoding: zstd;q=0.800, identity;q=0.8",
		"Accept-Encoding: *;q=0.3, zstd;q=0.3",
	};
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		ht_note("  %s", yes[i]);
		get_h(&d, path, yes[i], NULL, &r);
		expect_zstd(&r, zetag, zsize, sha, size, true);
		snprintf(hdr, sizeof hdr, "attachment; filename=\"%s.onnx\"", art);
		HT_ASSERT(header_is(&r, "Content-Disposition", hdr), &r);
		ht_resp_free(&r);
	}
	ht_note("  two Accept-Encoding lines: gzip / zstd");
	get_h(&d, path, "Accept-Encoding: gzip", "Accept-Encoding: zstd", &r);
	expect_zstd(&r, zetag, zsize, sha, size, true);
	ht_resp_free(&r);

	ht_note("Accept-Encoding forms that keep identity");
	static const char *const no[] = {
		"Accept-Encoding: zstd;q=0",
		"Accept-Encoding: zstd;q=0.000, gzip",
		"Accept-Encoding: gzip, br",
		"Accept-Encoding: identity",
		"Accept-Encoding: *;q=0, identity",
		"Accept-Encoding: *, zstd;q=0",
		"Accept-Encoding: zstd;q=0.5, identity",
		"Accept-Encoding: *;q=0.3, zstd;q=0.2",
		"Accept-Encoding: zstd;q=2",   /* malformed qvalue: element ignored */
		"Accept-Encoding: zstdx, xzstd",
		"Accept-Encoding;", /* libcurl's way to send an empty value: identity only */
	};
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
		ht_note("  %s", no[i]);
		get_h(&d, path, no[i], NULL, &r);
		expect_identity(&r, &full, etag, true);
		ht_resp_free(&r);
	}

	ht_note("?encoding= wins over Accept-Encoding; identity explicit; unknown -> 400");
	snprintf(hdr, sizeof hdr, "%s?encoding=identity", path);
	get_h(&d, hdr, "Accept-Encoding: zstd", NULL, &r);
	expect_identity(&r, &full, etag, false);
	ht_resp_free(&r);
	get_h(&d, zpath, "Accept-Encoding: zstd;q=0", NULL, &r);
	expect_zstd(&r, zetag, zsize, sha, size, false);
	ht_resp_free(&r);
	snprintf(hdr, sizeof hdr, "%s?encoding=gzip", path);
	ht_get(&d, hdr, &r);
	HT_EXPECT_ERROR(&r, 400, "invalid_query", "encoding");
	HT_ASSERTF(strstr(r.body, "gzip") != NULL, &r, "the 400 must name the encoding");
	ht_resp_free(&r);
	snprintf(hdr, sizeof hdr, "%s?encoding=", path);
	ht_get(&d, hdr, &r);
	HT_EXPECT_ERROR(&r, 400, "invalid_query", "encoding");
	ht_resp_free(&r);

	ht_note("HEAD on the zstd representation: headers, no body");
	get_with(&d, "HEAD", zpath, NULL, &r);
	HT_EXPECT_STATUS(&r, 200);
	HT_ASSERT(r.len == 0, &r);
	HT_ASSERT(header_is(&r, "Content-Encoding", "zstd") && header_is(&r, "ETag", zetag), &r);
	HT_ASSERT(ht_header(&r, "Content-Length", v, sizeof v) && strtoull(v, NULL, 10) == zsize,
		  &r);
	ht_resp_free(&r);
	{
		const char *h[] = {"Accept-Encoding: zstd", NULL};
		get_with(&d, "HEAD", path, h, &r);
		HT_EXPECT_STATUS(&r, 200);
		HT_ASSERT(r.len == 0 && header_is(&r, "Content-Encoding", "zstd"), &r);
		HT_ASSERT(header_is(&r, "Vary", "Accept-Encoding"), &r);
		ht_resp_free(&r);
	}

	ht_note("If-None-Match per representation");
	snprintf(hdr, sizeof hdr, "If-None-Match: %s", zetag);
	get_h(&d, zpath, hdr, NULL, &r);
	HT_EXPECT_STATUS(&r, 304);
	HT_ASSERT(r.len == 0 && header_is(&r, "ETag", zetag), &r);
	ht_resp_free(&r);
	get_h(&d, path, "Accept-Encoding: zstd", hdr, &r);
	HT_EXPECT_STATUS(&r, 304);
	HT_ASSERT(header_is(&r, "Vary", "Accept-Encoding"), &r);
	ht_resp_free(&r);
	snprintf(hdr, sizeof hdr, "If-None-Match: \"0000\", W/%s", zetag);
	get_h(&d, zpath, hdr, NULL, &r);
	HT_EXPECT_STATUS(&r, 304);
	ht_resp_free(&r);
	/* The identity ETag does not match the zstd representation, nor the
	 * reverse: a cache holding one must not revalidate the other. */
	snprintf(hdr, sizeof hdr, "If-None-Match: %s", etag);
	get_h(&d, zpath, hdr, NULL, &r);
	expect_zstd(&r, zetag, zsize, sha, size, false);
	ht_resp_free(&r);
	snprintf(hdr, sizeof hdr, "If-None-Match: %s", zetag);
	get_h(&d, path, hdr, NULL, &r);
	expect_identity(&r, &full, etag, true);
	ht_resp_free(&r);
	snprintf(hdr, sizeof hdr, "If-None-Match: %s", etag);
	get_h(&d, path, hdr, NULL, &r);
	HT_EXPECT_STATUS(&r, 304);
	ht_resp_free(&r);

	ht_note("Range on the compressed representation");
	struct {
		const char *range;
		size_t first, last;
	} ranges[] = {{"bytes=0-0", 0, 0}, {"bytes=10-99", 10, 99}, {"bytes=-50", zsize - 50, zsize - 1}};
	for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
		char want[96];
		snprintf(hdr, sizeof hdr, "Range: %s", ranges[i].range);
		get_h(&d, zpath, hdr, NULL, &r);
		HT_EXPECT_STATUS(&r, 206);
		snprintf(want, sizeof want, "bytes %zu-%zu/%zu", ranges[i].first, ranges[i].last,
			 zsize);
		HT_ASSERTF(header_is(&r, "Content-Range", want), &r, "Content-Range must be %s", want);
		HT_ASSERT(header_is(&r, "Content-Encoding", "zstd"), &r);
		HT_ASSERT(r.len == ranges[i].last - ranges[i].first + 1 &&
				  memcmp(r.body, z.body + ranges[i].first, r.len) == 0,
			  &r);
		ht_resp_free(&r);
	}
	/* A range past the compressed size (but inside the artifact's): 416
	 * naming the compressed size. */
	snprintf(hdr, sizeof hdr, "Range: bytes=%zu-", zsize);
	get_h(&d, path, "Accept-Encoding: zstd", hdr, &r);
	HT_EXPECT_STATUS(&r, 416);
	snprintf(v, sizeof v, "bytes */%zu", zsize);
	HT_ASSERT(header_is(&r, "Content-Range", v), &r);
	ht_resp_free(&r);

	cli_check(&d, path, sha);

	ht_note("restart: start-up blob GC keeps the zstd blob its row refers to");
	HT_ASSERTF(ht_daemon_stop(&d, 60) == 0, NULL, "nncd did not exit 0 on SIGTERM");
	HT_START(&d);
	HT_ASSERT(ht_blob_exists(&d, zsha), NULL);
	ht_get(&d, zpath, &r);
	expect_zstd(&r, zetag, zsize, sha, size, false);
	ht_resp_free(&r);

	ht_note("an artifact without a zstd copy (row from before migration 4): identity");
	HT_ASSERTF(ht_daemon_stop(&d, 60) == 0, NULL, "nncd did not exit 0 on SIGTERM");
	db_exec(&d, "UPDATE artifacts SET zstd_sha256 = NULL, zstd_size = NULL");
	HT_START(&d);
	HT_ASSERTF(!ht_blob_exists(&d, zsha), NULL,
		   "the zstd blob no row refers to must be collected at start-up");
	snprintf(hdr, sizeof hdr, "/v1/jobs/%s", job);
	ht_get(&d, hdr, &r);
	HT_EXPECT_STATUS(&r, 200);
	{
		json_t *a = json_array_get(json_object_get(r.json, "artifacts"), 0);
		HT_ASSERT(json_is_null(json_object_get(a, "zstd_size")) &&
				  json_is_null(json_object_get(a, "zstd_sha256")),
			  &r);
	}
	ht_resp_free(&r);
	get_h(&d, path, "Accept-Encoding: zstd", NULL, &r);
	expect_identity(&r, &full, etag, true);
	ht_resp_free(&r);
	ht_get(&d, zpath, &r);
	HT_EXPECT_ERROR(&r, 406, "encoding_unavailable", "encoding");
	ht_resp_free(&r);
	ht_get(&d, path, &r);
	expect_identity(&r, &full, etag, true);
	ht_resp_free(&r);

	ht_resp_free(&z);
	ht_resp_free(&full);
	HT_ASSERTF(ht_daemon_stop(&d, 60) == 0, NULL, "nncd did not exit 0 on SIGTERM");
	ht_daemon_cleanup(&d);
	printf("PASS api_artifact_zstd\n");
	return 0;
}
