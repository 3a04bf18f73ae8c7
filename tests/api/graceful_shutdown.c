/* graceful_shutdown: SIGTERM while a job runs. With the default grace
 * period the daemon lets the job finish, then exits 0; after a restart the
 * job is succeeded with a good artifact and is not run again. With --grace 0
 * the daemon still exits 0, and the interrupted job is not lost: after a
 * restart it ends succeeded (re-queued) with exactly one artifact.
 *
 * The job runs on a synthetic 4 x 4096x4096 MLP (67M parameters, 268 MB), so
 * it is still running when the test sees state "running". */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "synth.h"

/* Uploads the model, submits a job and returns once it is seen running. */
static void start_job(const struct ht_daemon *d, const char *model_path, char job[64])
{
	struct ht_resp r;
	char model[64];

	ht_upload_file(d, "big", model_path, &r);
	HT_EXPECT_STATUS(&r, 201);
	snprintf(model, sizeof(model), "%s", ht_jstr(r.json, "id"));
	ht_resp_free(&r);
	ht_submit_default_job(d, model, &r);
	HT_EXPECT_STATUS(&r, 202);
	snprintf(job, 64, "%s", ht_jstr(r.json, "id"));
	ht_resp_free(&r);
	HT_ASSERTF(ht_wait_job(d, job, "running", 300, &r) == 0, &r, "job never ran");
	HT_ASSERTF(strcmp(ht_jstr(r.json, "state"), "running") == 0, &r,
		   "the job finished before it was seen running: the model is too small");
	ht_resp_free(&r);
}

/* The job succeeded with one artifact whose download hashes to its sha256. */
static void check_succeeded(const struct ht_daemon *d, const char *job)
{
	struct ht_resp r;
	char path[128], sha[65], got[65];
	json_t *arts;

	HT_ASSERTF(ht_wait_job(d, job, NULL, 600, &r) == 0, &r, "job did not finish");
	HT_EXPECT_JSTR(r.json, "state", "succeeded", &r);
	arts = json_object_get(r.json, "artifacts");
	HT_ASSERTF(json_array_size(arts) == 1, &r, "exactly one artifact");
	snprintf(sha, sizeof(sha), "%s", ht_jstr(json_array_get(arts, 0), "sha256"));
	snprintf(path, sizeof(path), "/v1/artifacts/%s", ht_jstr(json_array_get(arts, 0), "id"));
	ht_resp_free(&r);
	ht_get(d, path, &r);
	HT_EXPECT_STATUS(&r, 200);
	ht_sha256(r.body, r.len, got);
	HT_ASSERTF(strcmp(got, sha) == 0, NULL, "artifact hashes to %s, job says %s", got, sha);
	ht_resp_free(&r);
}

int main(int argc, char **argv)
{
	static const char *const args[] = {"--workers", "1", "--grace", "300", NULL};
	struct synth_spec spec = {.dims = {4096, 4096, 4096, 4096, 4096}, .n_layers = 4, .seed = 17};
	struct ht_env env;
	struct ht_daemon d;
	struct ht_resp r;
	char model_path[HT_PATH + 16], err[256], job[64], path[128], finished_at[64];
	long blobs, bad;
	int code;
	double t0;

	ht_init(argc, argv, &env);
	ht_daemon_init(&d, env.exe, args);
	snprintf(model_path, sizeof(model_path), "%s/big.onnx", d.root);
	HT_ASSERTF(synth_write_file(&spec, model_path, NULL, err, sizeof(err)) == 0, NULL, "%s",
		   err);
	HT_START(&d);

	ht_note("SIGTERM with a running job and --grace 300: the job finishes, exit 0");
	start_job(&d, model_path, job);
	t0 = ht_now();
	code = ht_daemon_stop(&d, 600);
	ht_note("exited %d, %.2f s after SIGTERM", code, ht_now() - t0);
	HT_ASSERTF(code == 0, NULL, "nncd exited %d after SIGTERM", code);
	HT_START(&d);
	snprintf(path, sizeof(path), "/v1/jobs/%s", job);
	ht_get(&d, path, &r);
	HT_EXPECT_STATUS(&r, 200);
	HT_ASSERTF(strcmp(ht_jstr(r.json, "state"), "succeeded") == 0, &r,
		   "the drained job must have finished before the daemon exited");
	snprintf(finished_at, sizeof(finished_at), "%s", ht_jstr(r.json, "finished_at"));
	ht_resp_free(&r);
	check_succeeded(&d, job);
	ht_get(&d, path, &r);
	HT_EXPECT_JSTR(r.json, "finished_at", finished_at, &r);
	ht_resp_free(&r);

	ht_note("SIGTERM with a running job and --grace 0: exit 0, the job is not lost");
	HT_ASSERTF(ht_daemon_stop(&d, 60) == 0, NULL, "nncd did not exit 0 on SIGTERM");
	d.args[3] = "0";
	HT_START(&d);
	start_job(&d, model_path, job);
	t0 = ht_now();
	code = ht_daemon_stop(&d, 600);
	ht_note("exited %d, %.2f s after SIGTERM", code, ht_now() - t0);
	HT_ASSERTF(code == 0, NULL, "nncd exited %d after SIGTERM", code);
	bad = ht_verify_blobs(&d, &blobs);
	HT_ASSERTF(bad == 0, NULL, "%ld partial blobs after the interrupted job", bad);
	HT_START(&d);
	check_succeeded(&d, job);

	HT_ASSERTF(ht_daemon_stop(&d, 120) == 0, NULL, "nncd did not exit 0 on SIGTERM");
	ht_daemon_cleanup(&d);
	printf("PASS graceful_shutdown\n");
	return 0;
}
