/* harness: drives a real nncd for the API tests (see harness.h). */
#include "harness.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "synth.h"

/* Daemons that a fatal assertion must tear down. A test program is one
 * process with a handful of daemons, and an assertion can fire anywhere in
 * it: this registry is the one piece of process state the harness keeps. */
#define HT_MAX_DAEMONS 8
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ht_daemon *registry[HT_MAX_DAEMONS];

static void registry_add(struct ht_daemon *d)
{
	pthread_mutex_lock(&registry_lock);
	for (int i = 0; i < HT_MAX_DAEMONS; i++) {
		if (!registry[i]) {
			registry[i] = d;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
}

static void registry_remove(struct ht_daemon *d)
{
	pthread_mutex_lock(&registry_lock);
	for (int i = 0; i < HT_MAX_DAEMONS; i++)
		if (registry[i] == d)
			registry[i] = NULL;
	pthread_mutex_unlock(&registry_lock);
}

void ht_note(const char *fmt, ...)
{
	va_list ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

double ht_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void ht_sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

void ht_init(int argc, char **argv, struct ht_env *env)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s NNCD_EXE SOURCE_ROOT\n", argc > 0 ? argv[0] : "test");
		exit(1);
	}
	env->exe = argv[1];
	env->srcdir = argv[2];
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "curl_global_init failed\n");
		exit(1);
	}
	if (access(env->exe, X_OK) != 0) {
		fprintf(stderr, "%s: %s\n", env->exe, strerror(errno));
		exit(1);
	}
}

/* ---- files ---- */

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (type == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

static void rm_rf(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int ht_read_file(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t cap = 0, n = 0;

	if (!f)
		return -1;
	for (;;) {
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 65536;
			uint8_t *nb = realloc(buf, ncap + 1);

			if (!nb) {
				free(buf);
				fclose(f);
				return -1;
			}
			buf = nb;
			cap = ncap;
		}
		size_t got = fread(buf + n, 1, cap - n, f);

		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	buf[n] = 0;
	*out = buf;
	*len = n;
	return 0;
}

void ht_sha256(const void *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
	for (unsigned int i = 0; i < mdlen && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[64] = 0;
}

int ht_sha256_file(const char *path, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	static const size_t chunk = 1 << 20;
	EVP_MD_CTX *ctx;
	unsigned char *buf;
	int fd, rc = -1;
	ssize_t got;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	buf = malloc(chunk);
	ctx = EVP_MD_CTX_new();
	if (!buf || !ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	while ((got = read(fd, buf, chunk)) != 0) {
		if (got < 0) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		EVP_DigestUpdate(ctx, buf, (size_t)got);
	}
	if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
		goto out;
	for (unsigned int i = 0; i < mdlen && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[64] = 0;
	rc = 0;
out:
	EVP_MD_CTX_free(ctx);
	free(buf);
	close(fd);
	return rc;
}

/* nftw has no user pointer; the walkers below run on one thread at a time
 * per call, so they pass their state through a thread-local. */
static _Thread_local long walk_count;
static _Thread_local long walk_bad;
static _Thread_local long long walk_bytes;

static int count_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)path;
	(void)sb;
	(void)ftw;
	if (type == FTW_F)
		walk_count++;
	return 0;
}

long ht_count_files(const char *dir)
{
	struct stat st;

	if (stat(dir, &st) != 0)
		return 0;
	walk_count = 0;
	nftw(dir, count_entry, 16, FTW_PHYS);
	return walk_count;
}

static int bytes_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (type == FTW_F)
		walk_bytes += sb->st_size;
	return 0;
}

long long ht_dir_bytes(const char *dir)
{
	struct stat st;

	if (stat(dir, &st) != 0)
		return 0;
	walk_bytes = 0;
	nftw(dir, bytes_entry, 16, FTW_PHYS);
	return walk_bytes;
}

static bool is_hex64(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!isxdigit((unsigned char)s[n]) || isupper((unsigned char)s[n]))
			return false;
	return n == 64;
}

static int blob_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	const char *name = path + ftw->base;
	char sha[65], parent[3] = {0};

	(void)sb;
	if (type != FTW_F)
		return 0;
	walk_count++;
	/* blobs/sha256/xx/<hex>: the parent directory is the first two hex chars. */
	if (ftw->base >= 3)
		memcpy(parent, path + ftw->base - 3, 2);
	if (!is_hex64(name) || strncmp(parent, name, 2) != 0 || !strstr(path, "/sha256/")) {
		printf("# blob store: unexpected file %s\n", path);
		walk_bad++;
		return 0;
	}
	if (ht_sha256_file(path, sha) != 0) {
		printf("# blob store: cannot read %s\n", path);
		walk_bad++;
		return 0;
	}
	if (strcmp(sha, name) != 0) {
		printf("# blob store: %s hashes to %s (partial or corrupt blob)\n", path, sha);
		walk_bad++;
	}
	return 0;
}

long ht_verify_blobs(const struct ht_daemon *d, long *n_files)
{
	char dir[HT_PATH + 16];
	struct stat st;

	snprintf(dir, sizeof(dir), "%s/blobs", d->data_dir);
	walk_count = 0;
	walk_bad = 0;
	if (stat(dir, &st) == 0)
		nftw(dir, blob_entry, 16, FTW_PHYS);
	if (n_files)
		*n_files = walk_count;
	return walk_bad;
}

bool ht_blob_exists(const struct ht_daemon *d, const char *sha)
{
	char path[HT_PATH + 128];
	struct stat st;

	snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", d->data_dir, sha, sha);
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

long ht_proc_status_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	size_t flen = strlen(field);
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
			kb = strtol(line + flen + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kb;
}

bool ht_fixture(const struct ht_env *env, const char *name, char *buf, size_t cap)
{
	struct stat st;

	snprintf(buf, cap, "%s/tests/fixtures/%s", env->srcdir, name);
	return stat(buf, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

void ht_synth_bytes(const int64_t *dims, size_t n_dims, uint32_t seed, uint8_t **out,
		    size_t *len)
{
	struct synth_spec spec = {.seed = seed};
	char err[256];

	if (n_dims < 2 || n_dims > SYNTH_MAX_LAYERS + 1)
		ht_fail_at(__FILE__, __LINE__, NULL, "ht_synth_bytes: %zu widths", n_dims);
	for (size_t i = 0; i < n_dims; i++)
		spec.dims[i] = dims[i];
	spec.n_layers = n_dims - 1;
	if (synth_build(&spec, out, len, err, sizeof(err)) != 0)
		ht_fail_at(__FILE__, __LINE__, NULL, "%s", err);
}

void ht_model_bytes(const struct ht_env *env, const char *fixture, uint32_t seed, uint8_t **out,
		    size_t *len)
{
	static const int64_t lenet[] = {784, 300, 100, 10};
	char path[HT_PATH];

	if (fixture && ht_fixture(env, fixture, path, sizeof(path))) {
		if (ht_read_file(path, out, len) != 0)
			ht_fail_at(__FILE__, __LINE__, NULL, "reading %s: %s", path,
				   strerror(errno));
		return;
	}
	ht_synth_bytes(lenet, 4, seed, out, len);
}

/* ---- daemon ---- */

void ht_daemon_init(struct ht_daemon *d, const char *exe, const char *const *args)
{
	const char *tmp = getenv("TMPDIR");

	memset(d, 0, sizeof(*d));
	snprintf(d->exe, sizeof(d->exe), "%s", exe);
	snprintf(d->root, sizeof(d->root), "%s/nncd-apitest-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(d->root))
		ht_fail_at(__FILE__, __LINE__, NULL, "mkdtemp %s: %s", d->root, strerror(errno));
	snprintf(d->data_dir, sizeof(d->data_dir), "%s/data", d->root);
	if (mkdir(d->data_dir, 0700) != 0)
		ht_fail_at(__FILE__, __LINE__, NULL, "mkdir %s: %s", d->data_dir,
			   strerror(errno));
	for (size_t i = 0; args && args[i] && i < HT_MAX_ARGS; i++)
		d->args[d->n_args++] = args[i];
	registry_add(d);
}

static int reap(struct ht_daemon *d, int sig);

/* The "listen" value of the {"msg":"listening"} line, if logged yet. */
static bool find_listen(const char *log_path, char *out, size_t cap)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	bool found = false;

	if (ht_read_file(log_path, &buf, &len) != 0)
		return false;
	for (char *line = (char *)buf; line && *line && !found;) {
		char *nl = strchr(line, '\n');

		if (!nl)
			break; /* a partial last line: wait for the rest */
		*nl = 0;
		if (strstr(line, "\"listening\"")) {
			json_t *j = json_loads(line, 0, NULL);
			const char *msg = ht_jstr(j, "msg");
			const char *listen = ht_jstr(j, "listen");

			if (msg && strcmp(msg, "listening") == 0 && listen) {
				snprintf(out, cap, "%s", listen);
				found = true;
			}
			json_decref(j);
		}
		line = nl + 1;
	}
	free(buf);
	return found;
}

int ht_daemon_start(struct ht_daemon *d)
{
	const char *argv[HT_MAX_ARGS + 8];
	size_t n = 0;
	double deadline;
	pid_t pid;

	if (d->pid > 0) {
		printf("# daemon already running (pid %d)\n", (int)d->pid);
		return -1;
	}
	d->runs++;
	snprintf(d->log_path, sizeof(d->log_path), "%s/daemon-%d.log", d->root, d->runs);
	argv[n++] = d->exe;
	argv[n++] = "serve";
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1:0";
	argv[n++] = "--data-dir";
	argv[n++] = d->data_dir;
	for (size_t i = 0; i < d->n_args; i++)
		argv[n++] = d->args[i];
	argv[n] = NULL;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		printf("# fork: %s\n", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int fd = open(d->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

		if (fd < 0 || devnull < 0)
			_exit(127);
		dup2(devnull, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(d->exe, (char *const *)argv);
		dprintf(2, "exec %s: %s\n", d->exe, strerror(errno));
		_exit(127);
	}
	d->pid = pid;
	deadline = ht_now() + 60;
	for (;;) {
		int status;

		if (find_listen(d->log_path, d->listen, sizeof(d->listen)))
			break;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			d->pid = 0;
			printf("# daemon exited before listening (status 0x%x); its log:\n", status);
			ht_daemon_dump_log(d, 60);
			return -1;
		}
		if (ht_now() > deadline) {
			printf("# daemon did not log \"listening\" within 60 s; its log:\n");
			ht_daemon_dump_log(d, 60);
			reap(d, SIGKILL);
			return -1;
		}
		ht_sleep_ms(5);
	}
	snprintf(d->base_url, sizeof(d->base_url), "http://%s", d->listen);
	return 0;
}

/* Sanitizer builds report to the daemon's stderr and, for UBSan, carry on:
 * a report in the log of a finished run fails the test. */
static void check_sanitizer_log(const struct ht_daemon *d)
{
	static const char *const marks[] = {"runtime error:", "ERROR: AddressSanitizer",
					    "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer"};
	uint8_t *buf = NULL;
	size_t len = 0;

	if (!d->log_path[0] || ht_read_file(d->log_path, &buf, &len) != 0)
		return;
	for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
		const char *hit = strstr((const char *)buf, marks[i]);

		if (hit) {
			printf("# sanitizer report in %s:\n%.4000s\n", d->log_path, hit);
			free(buf);
			ht_fail_at(__FILE__, __LINE__, NULL, "the daemon reported: %s", marks[i]);
		}
	}
	free(buf);
}

/* The contract: logs are one JSON object per line, each with ts, level and
 * msg. Checked after a clean stop (a killed run may end mid-line). */
static void check_json_log(const struct ht_daemon *d)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int lineno = 0;

	if (!d->log_path[0] || ht_read_file(d->log_path, &buf, &len) != 0)
		return;
	for (char *line = (char *)buf; line && *line;) {
		char *nl = strchr(line, '\n');
		json_t *j;

		if (nl)
			*nl = 0;
		lineno++;
		j = json_loads(line, 0, NULL);
		if (!json_is_object(j) || !ht_jstr(j, "ts") || !ht_jstr(j, "level") ||
		    !ht_jstr(j, "msg")) {
			char copy[600];

			snprintf(copy, sizeof(copy), "%s", line);
			json_decref(j);
			free(buf);
			ht_fail_at(__FILE__, __LINE__, NULL,
				   "%s:%d is not a JSON log line with ts, level and msg: %s",
				   d->log_path, lineno, copy);
		}
		json_decref(j);
		line = nl ? nl + 1 : NULL;
	}
	free(buf);
}

static int reap(struct ht_daemon *d, int sig)
{
	int status = 0;

	if (d->pid <= 0)
		return 0;
	kill(d->pid, sig);
	while (waitpid(d->pid, &status, 0) < 0 && errno == EINTR)
		;
	d->pid = 0;
	return status;
}

int ht_daemon_kill(struct ht_daemon *d, int sig)
{
	int status = reap(d, sig);

	check_sanitizer_log(d);
	return status;
}

int ht_daemon_stop(struct ht_daemon *d, int timeout_s)
{
	double deadline = ht_now() + timeout_s;
	int status = 0;

	if (d->pid <= 0)
		return 0;
	kill(d->pid, SIGTERM);
	for (;;) {
		pid_t got = waitpid(d->pid, &status, WNOHANG);

		if (got == d->pid)
			break;
		if (got < 0 && errno != EINTR) {
			d->pid = 0;
			return -1;
		}
		if (ht_now() > deadline) {
			printf("# daemon ignored SIGTERM for %d s: SIGKILL\n", timeout_s);
			reap(d, SIGKILL);
			check_sanitizer_log(d);
			return 128 + SIGKILL;
		}
		ht_sleep_ms(10);
	}
	d->pid = 0;
	check_sanitizer_log(d);
	check_json_log(d);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

void ht_daemon_dump_log(const struct ht_daemon *d, int lines)
{
	uint8_t *buf = NULL;
	size_t len = 0, start;
	int seen = 0;

	if (!d->log_path[0] || ht_read_file(d->log_path, &buf, &len) != 0)
		return;
	start = len;
	while (start > 0) {
		if (buf[start - 1] == '\n' && start != len && ++seen >= lines)
			break;
		start--;
	}
	printf("# ---- %s (last %d lines) ----\n%s", d->log_path, lines, (char *)buf + start);
	if (len && buf[len - 1] != '\n')
		putchar('\n');
	printf("# ---- end of log ----\n");
	free(buf);
}

void ht_daemon_cleanup(struct ht_daemon *d)
{
	const char *keep = getenv("NNCD_TEST_KEEP");

	reap(d, SIGKILL);
	registry_remove(d);
	if (keep && *keep)
		printf("# kept %s\n", d->root);
	else if (d->root[0])
		rm_rf(d->root);
	d->root[0] = 0;
}

/* ---- HTTP ---- */

struct growbuf {
	char *data;
	size_t len, cap;
	bool oom;
};

static void growbuf_add(struct growbuf *g, const char *p, size_t n)
{
	if (g->oom)
		return;
	if (g->len + n + 1 > g->cap) {
		size_t ncap = g->cap ? g->cap : 4096;
		char *nd;

		while (ncap < g->len + n + 1)
			ncap *= 2;
		nd = realloc(g->data, ncap);
		if (!nd) {
			g->oom = true;
			return;
		}
		g->data = nd;
		g->cap = ncap;
	}
	memcpy(g->data + g->len, p, n);
	g->len += n;
	g->data[g->len] = 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	growbuf_add(ud, p, size * n);
	return ((struct growbuf *)ud)->oom ? 0 : size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct growbuf *g = ud;

	/* A new status line (after "100 Continue") starts the final block. */
	if (size * n >= 5 && strncmp(p, "HTTP/", 5) == 0)
		g->len = 0;
	growbuf_add(g, p, size * n);
	return g->oom ? 0 : size * n;
}

struct membody {
	const uint8_t *data;
	size_t len, off;
};

static size_t read_mem(char *buf, size_t size, size_t n, void *ud)
{
	struct membody *m = ud;
	size_t want = size * n, left = m->len - m->off;

	if (want > left)
		want = left;
	memcpy(buf, m->data + m->off, want);
	m->off += want;
	return want;
}

static size_t read_file_cb(char *buf, size_t size, size_t n, void *ud)
{
	size_t got = fread(buf, 1, size * n, ud);

	if (got == 0 && ferror((FILE *)ud))
		return CURL_READFUNC_ABORT;
	return got;
}

int ht_request(const struct ht_daemon *d, const struct ht_req *rq, struct ht_resp *out)
{
	struct growbuf body = {0}, hdrs = {0};
	struct curl_slist *list = NULL;
	struct membody mem = {.data = rq->body, .len = rq->len};
	char url[HT_PATH], line[512], errbuf[CURL_ERROR_SIZE] = "";
	const char *method = rq->method ? rq->method : "GET";
	FILE *f = NULL;
	CURL *c;
	CURLcode cc;
	int64_t size = -1;
	bool sending = rq->has_body || rq->file || rq->read_fn;

	memset(out, 0, sizeof(*out));
	c = curl_easy_init();
	if (!c) {
		snprintf(out->curl_err, sizeof(out->curl_err), "curl_easy_init failed");
		out->curl_code = CURLE_FAILED_INIT;
		return -1;
	}
	snprintf(url, sizeof(url), "%s%s", d->base_url, rq->path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, rq->timeout_s > 0 ? rq->timeout_s : 600L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &hdrs);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);

	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (sending) {
		curl_read_callback fn = (curl_read_callback)read_mem;
		void *ud = &mem;

		size = (int64_t)rq->len;
		if (rq->file) {
			struct stat st;

			f = fopen(rq->file, "rb");
			if (!f || fstat(fileno(f), &st) != 0) {
				snprintf(out->curl_err, sizeof(out->curl_err), "%s: %s", rq->file,
					 strerror(errno));
				out->curl_code = CURLE_READ_ERROR;
				if (f)
					fclose(f);
				curl_easy_cleanup(c);
				return -1;
			}
			fn = (curl_read_callback)read_file_cb;
			ud = f;
			size = st.st_size;
		} else if (rq->read_fn) {
			fn = rq->read_fn;
			ud = rq->read_ud;
			size = rq->read_size;
		}
		if (rq->chunked)
			size = -1;
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, fn);
		curl_easy_setopt(c, CURLOPT_READDATA, ud);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)size);
		if (size < 0)
			list = curl_slist_append(list, "Transfer-Encoding: chunked");
		if (strcmp(method, "POST") != 0)
			curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	} else if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	}
	/* libcurl adds application/x-www-form-urlencoded to a POST by itself;
	 * an empty "Content-Type:" line removes it. */
	if (rq->content_type) {
		snprintf(line, sizeof(line), "Content-Type: %s", rq->content_type);
		list = curl_slist_append(list, line);
	} else {
		list = curl_slist_append(list, "Content-Type:");
	}
	if (rq->no_expect)
		list = curl_slist_append(list, "Expect:");
	for (size_t i = 0; rq->headers && rq->headers[i]; i++)
		list = curl_slist_append(list, rq->headers[i]);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);

	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
	out->curl_code = (int)cc;
	if (cc != CURLE_OK)
		snprintf(out->curl_err, sizeof(out->curl_err), "%s: %s",
			 curl_easy_strerror(cc), errbuf);
	curl_slist_free_all(list);
	curl_easy_cleanup(c);
	if (f)
		fclose(f);

	out->body = body.data ? body.data : strdup("");
	out->len = body.len;
	out->headers = hdrs.data ? hdrs.data : strdup("");
	if (body.oom || hdrs.oom) {
		snprintf(out->curl_err, sizeof(out->curl_err), "out of memory buffering the response");
		return -1;
	}
	if (out->len > 0) {
		char ct[128];

		if (ht_header(out, "Content-Type", ct, sizeof(ct)) && strstr(ct, "json"))
			out->json = json_loadb(out->body, out->len, 0, NULL);
	}
	return cc == CURLE_OK ? 0 : -1;
}

void ht_resp_free(struct ht_resp *r)
{
	if (!r)
		return;
	free(r->body);
	free(r->headers);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

bool ht_header(const struct ht_resp *r, const char *name, char *buf, size_t cap)
{
	size_t nlen = strlen(name);

	for (const char *p = r->headers; p && *p;) {
		const char *eol = strchr(p, '\n');
		size_t linelen = eol ? (size_t)(eol - p) : strlen(p);

		if (linelen > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
			const char *v = p + nlen + 1;
			const char *end = p + linelen;

			while (v < end && (*v == ' ' || *v == '\t'))
				v++;
			while (end > v && (end[-1] == '\r' || end[-1] == ' '))
				end--;
			snprintf(buf, cap, "%.*s", (int)(end - v), v);
			return true;
		}
		p = eol ? eol + 1 : NULL;
	}
	return false;
}

int ht_get(const struct ht_daemon *d, const char *path, struct ht_resp *out)
{
	struct ht_req rq = {.method = "GET", .path = path};

	return ht_request(d, &rq, out);
}

int ht_head(const struct ht_daemon *d, const char *path, struct ht_resp *out)
{
	struct ht_req rq = {.method = "HEAD", .path = path};

	return ht_request(d, &rq, out);
}

int ht_delete(const struct ht_daemon *d, const char *path, struct ht_resp *out)
{
	struct ht_req rq = {.method = "DELETE", .path = path};

	return ht_request(d, &rq, out);
}

int ht_post_json(const struct ht_daemon *d, const char *path, const char *json,
		 struct ht_resp *out)
{
	struct ht_req rq = {.method = "POST",
			    .path = path,
			    .content_type = "application/json",
			    .body = json,
			    .len = strlen(json),
			    .has_body = true};

	return ht_request(d, &rq, out);
}

int ht_upload(const struct ht_daemon *d, const char *name, const void *bytes, size_t len,
	      struct ht_resp *out)
{
	char path[512];
	struct ht_req rq = {.method = "POST",
			    .path = path,
			    .content_type = "application/octet-stream",
			    .body = bytes,
			    .len = len,
			    .has_body = true};

	snprintf(path, sizeof(path), "/v1/models?name=%s", name);
	return ht_request(d, &rq, out);
}

int ht_upload_file(const struct ht_daemon *d, const char *name, const char *file,
		   struct ht_resp *out)
{
	char path[512];
	struct ht_req rq = {.method = "POST",
			    .path = path,
			    .content_type = "application/octet-stream",
			    .file = file};

	snprintf(path, sizeof(path), "/v1/models?name=%s", name);
	return ht_request(d, &rq, out);
}

int ht_submit_default_job(const struct ht_daemon *d, const char *model_id, struct ht_resp *out)
{
	char spec[512];

	snprintf(spec, sizeof(spec),
		 "{\"model\":\"%s\",\"steps\":["
		 "{\"op\":\"prune\",\"method\":\"magnitude\",\"sparsity\":0.8,\"scope\":\"global\"},"
		 "{\"op\":\"quantize\",\"scheme\":\"int8\",\"granularity\":\"per_channel\"}]}",
		 model_id);
	return ht_post_json(d, "/v1/jobs", spec, out);
}

static bool terminal_state(const char *s)
{
	return s && (strcmp(s, "succeeded") == 0 || strcmp(s, "failed") == 0 ||
		     strcmp(s, "canceled") == 0);
}

int ht_wait_job(const struct ht_daemon *d, const char *job_id, const char *state,
		double timeout_s, struct ht_resp *out)
{
	char path[256];
	double deadline = ht_now() + timeout_s;

	snprintf(path, sizeof(path), "/v1/jobs/%s", job_id);
	memset(out, 0, sizeof(*out));
	for (;;) {
		const char *s;

		ht_resp_free(out);
		if (ht_get(d, path, out) != 0 || out->status != 200)
			return -1;
		s = ht_jstr(out->json, "state");
		if (terminal_state(s) || (state && s && strcmp(s, state) == 0))
			return 0;
		if (ht_now() > deadline)
			return -1;
		ht_sleep_ms(10);
	}
}

/* ---- JSON ---- */

const char *ht_jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

long long ht_jint(const json_t *o, const char *key, long long fallback)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) ? (long long)json_integer_value(v) : fallback;
}

double ht_jnum(const json_t *o, const char *key, double fallback)
{
	json_t *v = json_object_get(o, key);

	return json_is_number(v) ? json_number_value(v) : fallback;
}

void ht_query_escape(const char *s, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (; *s && n + 4 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
			out[n++] = (char)c;
		} else {
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	out[n] = 0;
}

bool ht_valid_id(const char *s, const char *prefix)
{
	size_t plen = strlen(prefix), n = 0;

	if (!s || strncmp(s, prefix, plen) != 0)
		return false;
	for (s += plen; s[n]; n++)
		/* "base32" without saying which: RFC 4648 (a-z2-7) and Crockford's
		 * (0-9 and letters) both pass; the point is 26 lowercase chars. */
		if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9')))
			return false;
	return n == 26;
}

/* ---- failures ---- */

static void print_resp(const struct ht_resp *r)
{
	if (!r)
		return;
	printf("# response: HTTP %ld", r->status);
	if (r->curl_err[0])
		printf(" (transport: %s)", r->curl_err);
	printf("\n");
	if (r->headers && *r->headers)
		printf("# headers:\n%s", r->headers);
	if (r->body && r->len)
		printf("# body (%zu bytes): %.*s%s\n", r->len, r->len > 2000 ? 2000 : (int)r->len,
		       r->body, r->len > 2000 ? " [...]" : "");
}

void ht_fail_at(const char *file, int line, const struct ht_resp *r, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	printf("FAIL %s:%d: ", file, line);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	print_resp(r);
	pthread_mutex_lock(&registry_lock);
	for (int i = 0; i < HT_MAX_DAEMONS; i++) {
		struct ht_daemon *d = registry[i];

		if (!d)
			continue;
		ht_daemon_dump_log(d, 40);
		registry[i] = NULL;
		pthread_mutex_unlock(&registry_lock);
		ht_daemon_cleanup(d);
		pthread_mutex_lock(&registry_lock);
	}
	pthread_mutex_unlock(&registry_lock);
	fflush(stdout);
	exit(1);
}

void ht_expect_error_at(const char *file, int line, const struct ht_resp *r, long code,
			const char *ecode, const char *field)
{
	json_t *err = json_object_get(r->json, "error");
	const char *c = ht_jstr(err, "code");
	const char *msg = ht_jstr(err, "message");
	const char *f = ht_jstr(err, "field");

	if (r->status != code)
		ht_fail_at(file, line, r, "expected HTTP %ld (%s), got %ld", code, ecode,
			   r->status);
	if (!json_is_object(err))
		ht_fail_at(file, line, r, "expected a JSON {\"error\":{...}} body");
	if (!c || strcmp(c, ecode) != 0)
		ht_fail_at(file, line, r, "expected error code \"%s\", got \"%s\"", ecode,
			   c ? c : "(missing)");
	if (!msg || !*msg)
		ht_fail_at(file, line, r, "error.message is missing or empty");
	if (field && (!f || strcmp(f, field) != 0))
		ht_fail_at(file, line, r, "expected error field \"%s\", got \"%s\"", field,
			   f ? f : "(missing)");
}
