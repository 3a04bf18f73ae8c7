/* config_env: NNCD_* environment variables configure `nncd serve`, and a
 * flag wins over its variable. Checked through behaviour, not log fields:
 * NNCD_MAX_UPLOAD=1000 makes a 2000-byte upload a 413; adding
 * --max-upload 1000000 makes the same upload reach the model parser
 * (400 invalid_model). An invalid NNCD_WORKERS stops the daemon before it
 * listens, with a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"

static void upload_2000(const struct ht_daemon *d, long want_status, const char *want_code)
{
	uint8_t body[2000];
	struct ht_resp r;

	memset(body, 0x42, sizeof(body));
	ht_upload(d, "env", body, sizeof(body), &r);
	HT_EXPECT_ERROR(&r, want_status, want_code, NULL);
	ht_resp_free(&r);
}

int main(int argc, char **argv)
{
	static const char *const flag_args[] = {"--max-upload", "1000000", NULL};
	struct ht_env env;
	struct ht_daemon d;

	ht_init(argc, argv, &env);

	ht_note("NNCD_MAX_UPLOAD=1000 alone: a 2000-byte upload is 413");
	setenv("NNCD_MAX_UPLOAD", "1000", 1);
	ht_daemon_init(&d, env.exe, NULL);
	HT_START(&d);
	upload_2000(&d, 413, "too_large");
	HT_ASSERTF(ht_daemon_stop(&d, 60) == 0, NULL, "nncd did not exit 0 on SIGTERM");
	ht_daemon_cleanup(&d);

	ht_note("NNCD_MAX_UPLOAD=1000 and --max-upload 1000000: the flag wins");
	ht_daemon_init(&d, env.exe, flag_args);
	HT_START(&d);
	upload_2000(&d, 400, "invalid_model");
	HT_ASSERTF(ht_daemon_stop(&d, 60) == 0, NULL, "nncd did not exit 0 on SIGTERM");
	ht_daemon_cleanup(&d);
	unsetenv("NNCD_MAX_UPLOAD");

	ht_note("NNCD_WORKERS=lots: the daemon refuses to start, with a message");
	setenv("NNCD_WORKERS", "lots", 1);
	ht_daemon_init(&d, env.exe, NULL);
	HT_ASSERTF(ht_daemon_start(&d) != 0, NULL, "nncd started with NNCD_WORKERS=lots");
	{
		uint8_t *log = NULL;
		size_t len = 0;

		HT_ASSERT(ht_read_file(d.log_path, &log, &len) == 0, NULL);
		HT_ASSERTF(strstr((char *)log, "workers") != NULL, NULL,
			   "the start-up error must name the setting: %s", (char *)log);
		free(log);
	}
	ht_daemon_cleanup(&d);
	unsetenv("NNCD_WORKERS");

	printf("PASS config_env\n");
	return 0;
}
