/* harness: what every API test program needs to drive a real nncd.
 *
 * - A daemon (struct ht_daemon): a temporary root made with mkdtemp holding
 *   the data dir and one stderr log per run; `nncd serve --listen
 *   127.0.0.1:0 --data-dir ROOT/data [extra flags]` is started with its
 *   stderr redirected to that log (so the daemon never blocks on a pipe),
 *   and the bound port is read from the {"msg":"listening","listen":...} log
 *   line. It can be killed (any signal) and started again on the same data
 *   dir; cleanup removes the root (kept when NNCD_TEST_KEEP is set).
 * - HTTP helpers over libcurl (one easy handle per request, so any thread
 *   may call them after ht_init): status, raw headers of the final
 *   response, body, and the body parsed with jansson when it is JSON.
 * - Fatal assertions (HT_ASSERT...): print file:line, the message, the
 *   response (status, headers, body) and the tail of each live daemon's log,
 *   then kill every daemon started through ht_daemon_init, remove their temp
 *   dirs and exit(1). They are for the main thread; worker threads of a test
 *   record failures and let the main thread assert.
 * Exit codes of test programs: 0 pass, 1 fail, 77 skip (only for a missing
 * optional tool, never for the daemon). */
#ifndef NNCD_TEST_HARNESS_H
#define NNCD_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#define HT_PATH 4096
#define HT_MAX_ARGS 24

struct ht_env {
	const char *exe;    /* argv[1]: the nncd binary */
	const char *srcdir; /* argv[2]: meson source root */
};

struct ht_daemon {
	char exe[HT_PATH];
	char root[HT_PATH];     /* mkdtemp'd; holds data/ and the logs */
	char data_dir[HT_PATH]; /* root/data */
	char log_path[HT_PATH]; /* stderr of the current (or last) run */
	char listen[80];        /* "127.0.0.1:PORT" as logged */
	char base_url[96];      /* "http://127.0.0.1:PORT" */
	pid_t pid;              /* 0 when not running */
	int runs;
	const char *args[HT_MAX_ARGS]; /* extra flags, borrowed for the daemon's life */
	size_t n_args;
};

struct ht_resp {
	long status;     /* 0 when no response arrived */
	char *body;      /* NUL-terminated (len excludes the NUL) */
	size_t len;
	char *headers;   /* raw header block of the final response */
	json_t *json;    /* parsed body, or NULL */
	int curl_code;   /* CURLcode */
	char curl_err[256];
};

/* How to send one request. Unset fields mean: no body, no Content-Type. */
struct ht_req {
	const char *method;       /* "GET", "POST", "HEAD", "DELETE", "PUT", ... */
	const char *path;         /* "/v1/models?limit=1" */
	const char *content_type; /* NULL: no Content-Type header at all */
	const void *body;         /* in-memory body (may be NULL with len 0) */
	size_t len;
	bool has_body;            /* send a body (possibly empty) */
	const char *file;         /* stream the body from this file instead */
	/* Custom body source (libcurl read callback); read_size < 0 = chunked. */
	size_t (*read_fn)(char *buf, size_t size, size_t n, void *ud);
	void *read_ud;
	int64_t read_size;
	bool chunked;             /* send body/file with Transfer-Encoding: chunked */
	bool no_expect;           /* no "Expect: 100-continue" */
	const char *const *headers; /* extra "Name: value" lines, NULL-terminated */
	long timeout_s;           /* 0 = 600 */
};

/* Parses argv (exe, source root), initialises libcurl, ignores SIGPIPE. */
void ht_init(int argc, char **argv, struct ht_env *env);

/* Creates the temp root; args (NULL-terminated, may be NULL) are extra flags. */
void ht_daemon_init(struct ht_daemon *d, const char *exe, const char *const *args);
/* Starts the daemon and waits for its "listening" line. 0, or -1 after
 * printing why (the log is printed too). */
int ht_daemon_start(struct ht_daemon *d);
/* Sends sig and reaps the process; returns its wait status. */
int ht_daemon_kill(struct ht_daemon *d, int sig);
/* SIGTERM, then waits up to timeout_s (SIGKILL after). Returns the exit code,
 * or 128 + signal if it died of a signal. Fails the test if the run's log
 * holds a sanitizer report or a line that is not a JSON object with ts,
 * level and msg (ht_daemon_kill checks sanitizer reports only). */
int ht_daemon_stop(struct ht_daemon *d, int timeout_s);
/* Kills the daemon if running, removes the root, forgets the daemon. */
void ht_daemon_cleanup(struct ht_daemon *d);
/* Prints the last `lines` lines of the current log to stdout. */
void ht_daemon_dump_log(const struct ht_daemon *d, int lines);

/* One request. 0 when a response arrived, -1 on a transport error (out is
 * filled either way and must be released with ht_resp_free). */
int ht_request(const struct ht_daemon *d, const struct ht_req *rq, struct ht_resp *out);
void ht_resp_free(struct ht_resp *r);
/* Value of a header of the final response (case-insensitive name). */
bool ht_header(const struct ht_resp *r, const char *name, char *buf, size_t cap);

int ht_get(const struct ht_daemon *d, const char *path, struct ht_resp *out);
int ht_head(const struct ht_daemon *d, const char *path, struct ht_resp *out);
int ht_delete(const struct ht_daemon *d, const char *path, struct ht_resp *out);
/* POST with Content-Type application/json. */
int ht_post_json(const struct ht_daemon *d, const char *path, const char *json,
		 struct ht_resp *out);
/* POST /v1/models?name=NAME with application/octet-stream. */
int ht_upload(const struct ht_daemon *d, const char *name, const void *bytes, size_t len,
	      struct ht_resp *out);
int ht_upload_file(const struct ht_daemon *d, const char *name, const char *file,
		   struct ht_resp *out);
/* POST /v1/jobs: prune magnitude 0.8 global, then quantize int8 per_channel. */
int ht_submit_default_job(const struct ht_daemon *d, const char *model_id, struct ht_resp *out);
/* Polls GET /v1/jobs/ID until its state is `state` or terminal (succeeded,
 * failed, canceled); NULL waits for a terminal state. *out holds the last
 * answer. 0 when reached, -1 on timeout or transport error. */
int ht_wait_job(const struct ht_daemon *d, const char *job_id, const char *state,
		double timeout_s, struct ht_resp *out);

/* JSON accessors: NULL / fallback when missing or of another type. */
const char *ht_jstr(const json_t *o, const char *key);
long long ht_jint(const json_t *o, const char *key, long long fallback);
double ht_jnum(const json_t *o, const char *key, double fallback);

/* sha256 as 64 lowercase hex chars + NUL. ht_sha256_file: 0 or -1. */
void ht_sha256(const void *data, size_t len, char out[65]);
int ht_sha256_file(const char *path, char out[65]);
/* Reads a whole file into a new buffer. 0 or -1. */
int ht_read_file(const char *path, uint8_t **out, size_t *len);
/* Regular files under dir, recursively (0 if dir is missing). */
long ht_count_files(const char *dir);
/* Bytes in regular files under dir, recursively (0 if dir is missing). */
long long ht_dir_bytes(const char *dir);
/* Walks DATA_DIR/blobs: every file must sit at sha256/xx/<hex> and hash to
 * its name. Prints each offender; returns how many; *n_files gets the total. */
long ht_verify_blobs(const struct ht_daemon *d, long *n_files);
/* Whether DATA_DIR/blobs/sha256/xx/<sha> exists. */
bool ht_blob_exists(const struct ht_daemon *d, const char *sha);
/* A field of /proc/PID/status in kB ("VmRSS", "VmHWM", "RssAnon"), -1 if absent. */
long ht_proc_status_kb(pid_t pid, const char *field);
/* Path of tests/fixtures/NAME under the source root if it exists. */
bool ht_fixture(const struct ht_env *env, const char *name, char *buf, size_t cap);

double ht_now(void); /* monotonic seconds */
void ht_sleep_ms(long ms);
void ht_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

_Noreturn void ht_fail_at(const char *file, int line, const struct ht_resp *r, const char *fmt,
			  ...) __attribute__((format(printf, 4, 5)));

#define HT_ASSERT(cond, r)                                                                 \
	do {                                                                               \
		if (!(cond))                                                               \
			ht_fail_at(__FILE__, __LINE__, (r), "assertion failed: %s", #cond); \
	} while (0)
#define HT_ASSERTF(cond, r, ...)                                     \
	do {                                                         \
		if (!(cond))                                         \
			ht_fail_at(__FILE__, __LINE__, (r), __VA_ARGS__); \
	} while (0)
/* The request reached the daemon and got `code`. */
#define HT_EXPECT_STATUS(r, code)                                                        \
	do {                                                                             \
		if ((r)->status != (code))                                               \
			ht_fail_at(__FILE__, __LINE__, (r), "expected HTTP %d, got %ld", \
				   (int)(code), (r)->status);                            \
	} while (0)
/* HTTP `code` with {"error":{"code":ecode,"message":non-empty[,"field":field]}};
 * field NULL = not checked. */
#define HT_EXPECT_ERROR(r, code, ecode, field) \
	ht_expect_error_at(__FILE__, __LINE__, (r), (code), (ecode), (field))
/* o[key] is the string expected. */
#define HT_EXPECT_JSTR(o, key, expected, r)                                                    \
	do {                                                                                   \
		const char *ht_v_ = ht_jstr((o), (key));                                       \
		if (!ht_v_ || strcmp(ht_v_, (expected)) != 0)                                  \
			ht_fail_at(__FILE__, __LINE__, (r), "%s: expected \"%s\", got %s%s%s", \
				   (key), (expected), ht_v_ ? "\"" : "", ht_v_ ? ht_v_ : "(missing)", \
				   ht_v_ ? "\"" : "");                                         \
	} while (0)
#define HT_START(d)                                                                          \
	do {                                                                                 \
		if (ht_daemon_start(d) != 0)                                                 \
			ht_fail_at(__FILE__, __LINE__, NULL, "the daemon did not start");    \
	} while (0)

void ht_expect_error_at(const char *file, int line, const struct ht_resp *r, long code,
			const char *ecode, const char *field);

/* A small real model: tests/fixtures/FIXTURE when it exists, else a
 * synthetic 784-300-100-10 MLP drawn from seed. Caller frees *out. */
void ht_model_bytes(const struct ht_env *env, const char *fixture, uint32_t seed, uint8_t **out,
		    size_t *len);
/* A synthetic MLP with the given widths (dims[0] = input), fatal on failure. */
void ht_synth_bytes(const int64_t *dims, size_t n_dims, uint32_t seed, uint8_t **out,
		    size_t *len);

/* Percent-encodes s for a query string value (RFC 3986 unreserved kept). */
void ht_query_escape(const char *s, char *out, size_t cap);

/* Whether s is prefix + 26 lowercase base32 chars (RFC 4648 or Crockford). */
bool ht_valid_id(const char *s, const char *prefix);

#endif
