/* upload_memory: a ~200 MB model upload must stream to disk. The daemon's
 * resident set (VmRSS before, peak VmHWM during, VmRSS after; the peak is
 * reset through /proc/PID/clear_refs just before the upload) must not grow
 * by more than 32 MiB, and the upload's summary must be exact (parameters,
 * size, sha256, ops) although nncd never decodes the weights to give it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "synth.h"

#define LIMIT_KB (32 * 1024)

static bool reset_peak(pid_t pid)
{
	char path[64];
	FILE *f;
	bool ok;

	snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)pid);
	f = fopen(path, "w");
	if (!f)
		return false;
	ok = fputs("5", f) >= 0;
	return fclose(f) == 0 && ok;
}

int main(int argc, char **argv)
{
	static const char *const args[] = {"--workers", "0", NULL};
	static const int64_t small_dims[] = {784, 300, 100, 10};
	struct synth_spec spec = {.dims = {4096, 4096, 4096, 4096}, .n_layers = 3, .seed = 21};
	struct ht_env env;
	struct ht_daemon d;
	struct ht_resp r;
	char path[HT_PATH + 16], err[256], sha[65];
	uint8_t *small;
	size_t len, small_len;
	long rss0, hwm0, anon0, rss1, hwm1, anon1, file1, growth;
	bool peak_reset;
	double t0, secs;

	ht_init(argc, argv, &env);
	ht_daemon_init(&d, env.exe, args);
	snprintf(path, sizeof(path), "%s/200mb.onnx", d.root);
	HT_ASSERTF(synth_write_file(&spec, path, &len, err, sizeof(err)) == 0, NULL, "%s", err);
	HT_ASSERT(ht_sha256_file(path, sha) == 0, NULL);
	ht_note("synthetic model: %lld parameters, %zu bytes", (long long)synth_param_count(&spec),
		len);
	HT_START(&d);

	/* Warm the upload path (MHD buffers, SQLite pages, code) with a small model. */
	ht_synth_bytes(small_dims, 4, 1, &small, &small_len);
	for (int i = 0; i < 3; i++) {
		ht_upload(&d, "warm-up", small, small_len, &r);
		HT_EXPECT_STATUS(&r, 201);
		ht_resp_free(&r);
	}
	free(small);

	rss0 = ht_proc_status_kb(d.pid, "VmRSS");
	hwm0 = ht_proc_status_kb(d.pid, "VmHWM");
	anon0 = ht_proc_status_kb(d.pid, "RssAnon");
	HT_ASSERTF(rss0 > 0 && hwm0 > 0, NULL, "cannot read /proc/%d/status", (int)d.pid);
	peak_reset = reset_peak(d.pid);
	if (peak_reset)
		hwm0 = ht_proc_status_kb(d.pid, "VmHWM");

	t0 = ht_now();
	ht_upload_file(&d, "big", path, &r);
	secs = ht_now() - t0;
	HT_EXPECT_STATUS(&r, 201);
	rss1 = ht_proc_status_kb(d.pid, "VmRSS");
	hwm1 = ht_proc_status_kb(d.pid, "VmHWM");
	anon1 = ht_proc_status_kb(d.pid, "RssAnon");
	file1 = ht_proc_status_kb(d.pid, "RssFile");
	ht_note("upload of %zu bytes in %.2f s (%.0f MB/s)", len, secs, (double)len / secs / 1e6);
	ht_note("VmRSS %ld -> %ld kB, VmHWM %ld -> %ld kB (peak %s), RssAnon %ld -> %ld kB, "
		"RssFile %ld kB",
		rss0, rss1, hwm0, hwm1, peak_reset ? "reset before upload" : "since start", anon0,
		anon1, file1);

	ht_note("summary of the 200 MB upload is exact");
	HT_EXPECT_JSTR(r.json, "sha256", sha, &r);
	HT_ASSERT(ht_jint(r.json, "size", -1) == (long long)len, &r);
	HT_ASSERTF(ht_jint(r.json, "parameters", -1) == synth_param_count(&spec), &r,
		   "parameters must be %lld", (long long)synth_param_count(&spec));
	HT_ASSERT(ht_jint(r.json, "initializers", -1) == 6, &r);
	HT_ASSERT(ht_jint(json_object_get(r.json, "ops"), "Gemm", -1) == 3, &r);
	HT_ASSERT(json_array_size(json_object_get(r.json, "prunable")) == 3, &r);
	HT_ASSERT(ht_blob_exists(&d, sha), &r);
	ht_resp_free(&r);

	growth = rss1 - rss0;
	HT_ASSERTF(growth <= LIMIT_KB, NULL, "VmRSS grew by %ld kB (limit %d kB)", growth,
		   LIMIT_KB);
	growth = hwm1 - rss0;
	if (peak_reset || hwm1 > hwm0)
		HT_ASSERTF(growth <= LIMIT_KB, NULL,
			   "peak RSS during the upload was %ld kB above the start (limit %d kB)",
			   growth, LIMIT_KB);

	HT_ASSERTF(ht_daemon_stop(&d, 60) == 0, NULL, "nncd did not exit 0 on SIGTERM");
	ht_daemon_cleanup(&d);
	printf("PASS upload_memory\n");
	return 0;
}
