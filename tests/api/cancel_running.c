/* cancel_running: POST /v1/jobs/{id}/cancel on a running job. The answer is
 * 200 with state "canceled" (or "running" until the worker notices); the job
 * then ends canceled with no artifact, nothing of it is left in the blob
 * store or tmp/, a second cancel is 409, and the worker goes on to run the
 * next job.
 *
 * The job runs on a synthetic 4 x 4096x4096 MLP (67M parameters, 268 MB), so
 * it is still running when the test sees state "running". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "synth.h"

int main(int argc, char **argv)
{
	static const char *const args[] = {"--workers", "1", NULL};
	static const int64_t small_dims[] = {128, 64, 10};
	struct synth_spec spec = {.dims = {4096, 4096, 4096, 4096, 4096}, .n_layers = 4, .seed = 23};
	struct ht_env env;
	struct ht_daemon d;
	struct ht_resp r;
	char model_path[HT_PATH + 16], tmp_dir[HT_PATH + 8], err[256], model[64], job[64],
		path[128];
	uint8_t *small;
	size_t small_len;
	long blobs, bad;
	double t0, deadline;

	ht_init(argc, argv, &env);
	ht_daemon_init(&d, env.exe, args);
	snprintf(model_path, sizeof(model_path), "%s/big.onnx", d.root);
	snprintf(tmp_dir, sizeof(tmp_dir), "%s/tmp", d.data_dir);
	HT_ASSERTF(synth_write_file(&spec, model_path, NULL, err, sizeof(err)) == 0, NULL, "%s",
		   err);
	HT_START(&d);

	ht_upload_file(&d, "big", model_path, &r);
	HT_EXPECT_STATUS(&r, 201);
	snprintf(model, sizeof(model), "%s", ht_jstr(r.json, "id"));
	ht_resp_free(&r);
	ht_submit_default_job(&d, model, &r);
	HT_EXPECT_STATUS(&r, 202);
	snprintf(job, sizeof(job), "%s", ht_jstr(r.json, "id"));
	ht_resp_free(&r);
	HT_ASSERTF(ht_wait_job(&d, job, "running", 300, &r) == 0, &r, "job never ran");
	HT_ASSERTF(strcmp(ht_jstr(r.json, "state"), "running") == 0, &r,
		   "the job finished before it was seen running: the model is too small");
	ht_resp_free(&r);

	ht_note("cancel while running -> 200 canceled (or running until the worker stops)");
	snprintf(path, sizeof(path), "/v1/jobs/%s/cancel", job);
	t0 = ht_now();
	ht_post_json(&d, path, "", &r);
	HT_EXPECT_STATUS(&r, 200);
	HT_EXPECT_JSTR(r.json, "id", job, &r);
	HT_ASSERTF(strcmp(ht_jstr(r.json, "state"), "canceled") == 0 ||
			   strcmp(ht_jstr(r.json, "state"), "running") == 0,
		   &r, "cancel of a running job answers canceled or running");
	ht_resp_free(&r);
	HT_ASSERTF(ht_wait_job(&d, job, NULL, 300, &r) == 0, &r, "job did not stop");
	ht_note("stopped %.2f s after the cancel", ht_now() - t0);
	HT_EXPECT_JSTR(r.json, "state", "canceled", &r);
	HT_ASSERT(json_array_size(json_object_get(r.json, "artifacts")) == 0, &r);
	HT_ASSERT(ht_jstr(r.json, "finished_at") != NULL, &r);
	ht_resp_free(&r);

	ht_note("nothing of the canceled job stays on disk");
	deadline = ht_now() + 30;
	while (ht_count_files(tmp_dir) != 0 && ht_now() < deadline)
		ht_sleep_ms(20);
	HT_ASSERTF(ht_count_files(tmp_dir) == 0, NULL, "%ld files left in tmp/",
		   ht_count_files(tmp_dir));
	bad = ht_verify_blobs(&d, &blobs);
	HT_ASSERTF(bad == 0 && blobs == 1, NULL, "expected only the model's blob, found %ld (%ld bad)",
		   blobs, bad);

	ht_note("second cancel -> 409; the model is free to delete");
	ht_post_json(&d, path, "", &r);
	HT_EXPECT_ERROR(&r, 409, "conflict", NULL);
	ht_resp_free(&r);

	ht_note("the worker runs the next job");
	ht_synth_bytes(small_dims, 3, 8, &small, &small_len);
	ht_upload(&d, "small", small, small_len, &r);
	HT_EXPECT_STATUS(&r, 201);
	free(small);
	{
		char small_model[64], small_job[64];

		snprintf(small_model, sizeof(small_model), "%s", ht_jstr(r.json, "id"));
		ht_resp_free(&r);
		ht_submit_default_job(&d, small_model, &r);
		HT_EXPECT_STATUS(&r, 202);
		snprintf(small_job, sizeof(small_job), "%s", ht_jstr(r.json, "id"));
		ht_resp_free(&r);
		HT_ASSERT(ht_wait_job(&d, small_job, NULL, 300, &r) == 0, &r);
		HT_EXPECT_JSTR(r.json, "state", "succeeded", &r);
		ht_resp_free(&r);
	}
	snprintf(path, sizeof(path), "/v1/models/%s", model);
	ht_delete(&d, path, &r);
	HT_EXPECT_STATUS(&r, 204);
	ht_resp_free(&r);

	HT_ASSERTF(ht_daemon_stop(&d, 120) == 0, NULL, "nncd did not exit 0 on SIGTERM");
	ht_daemon_cleanup(&d);
	printf("PASS cancel_running\n");
	return 0;
}
