/* bench_download: artifact download throughput of the real daemon, as a ratio
 * to a plain sendfile(2) server measured in the same run.
 *
 * Issue 2, acceptance point 7. The bench writes a ~512 MiB synthetic ONNX
 * model (one MatMul with an [8192, 16384] float32 initializer), starts the
 * real daemon (`nncd serve --listen 127.0.0.1:0 --data-dir TMP --workers 1`,
 * stderr to a log file, port read from its "listening" log line), uploads the
 * model, runs a job with "steps": [] (its artifact is the re-serialized model,
 * the same size), then times GET /v1/artifacts/{id}.
 *
 * Reference: a minimal HTTP server thread in this program that answers any
 * GET with a header and sendfile(2) of the same blob file
 * (DATA_DIR/blobs/sha256/xx/<sha256>), so both servers send the same bytes
 * from the same page cache. Both are fetched by the same clients:
 *   - libcurl (the client the issue names): one easy handle per fetch, a write
 *     callback that discards, CURLOPT_BUFFERSIZE 1 MiB. libcurl itself tops
 *     out near 1.7 GB/s on loopback here, so this ratio is capped by curl;
 *   - a raw socket client (recv into a 1 MiB buffer), which shows the
 *     servers' own difference without curl's ceiling.
 * Each measurement is the median of >= 5 repetitions, reference and daemon
 * fetched back to back in alternating order. The first fetch from each server
 * is checked against the artifact's sha256. Target: ratio >= 0.8.
 * Exit status: 0 when every check passed (whatever the ratios), 1 otherwise. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "synthmodel.h"

#ifndef NNCD_DEFAULT_BIN
#define NNCD_DEFAULT_BIN "nncd"
#endif

#define MAX_REPS 64
#define TARGET 0.8
#define RECV_BUF ((size_t)1 << 20)

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
	double s[MAX_REPS];
	memcpy(s, v, (size_t)n * sizeof *s);
	qsort(s, (size_t)n, sizeof *s, cmp_double);
	return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Set by main so die() can clean up: the daemon and the temp dir. */
static pid_t g_daemon_pid;
static char g_root[512];
static char g_log[600];

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void cleanup(void)
{
	if (g_daemon_pid > 0) {
		kill(g_daemon_pid, SIGTERM);
		int status;
		for (int i = 0; i < 300; i++) { /* up to 30 s */
			if (waitpid(g_daemon_pid, &status, WNOHANG) == g_daemon_pid) {
				g_daemon_pid = 0;
				break;
			}
			usleep(100 * 1000);
		}
		if (g_daemon_pid > 0) {
			kill(g_daemon_pid, SIGKILL);
			waitpid(g_daemon_pid, &status, 0);
			g_daemon_pid = 0;
		}
	}
	if (g_root[0] && !getenv("NNCD_BENCH_KEEP"))
		nftw(g_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "bench_download: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	if (g_log[0]) {
		FILE *f = fopen(g_log, "r");
		if (f) {
			char line[1024];
			fprintf(stderr, "--- daemon log (%s) ---\n", g_log);
			while (fgets(line, sizeof line, f))
				fputs(line, stderr);
			fclose(f);
		}
	}
	cleanup();
	exit(1);
}

/* ---- the daemon ---- */

/* Waits for the {"msg":"listening","listen":"HOST:PORT"} line in the log. */
static void start_daemon(const char *exe, const char *data_dir, char *listen, size_t cap)
{
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(g_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fd < 0 || nul < 0)
			_exit(127);
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(fd, 2);
		execl(exe, "nncd", "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir,
		      "--workers", "1", (char *)NULL);
		_exit(127);
	}
	g_daemon_pid = pid;
	for (int i = 0; i < 600; i++) { /* up to 60 s */
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			g_daemon_pid = 0;
			die("nncd exited before listening (status %d); is %s built?", status, exe);
		}
		FILE *f = fopen(g_log, "r");
		char line[2048];
		while (f && fgets(line, sizeof line, f)) {
			if (!strstr(line, "\"msg\":\"listening\""))
				continue;
			const char *p = strstr(line, "\"listen\":\"");
			if (!p)
				continue;
			p += strlen("\"listen\":\"");
			const char *q = strchr(p, '"');
			if (!q || (size_t)(q - p) >= cap)
				continue;
			memcpy(listen, p, (size_t)(q - p));
			listen[q - p] = '\0';
			fclose(f);
			return;
		}
		if (f)
			fclose(f);
		usleep(100 * 1000);
	}
	die("nncd did not log a listening line within 60 s");
}

/* ---- small HTTP requests through libcurl ---- */

struct membuf {
	char *data;
	size_t len, cap;
};

static size_t mem_write(char *p, size_t size, size_t n, void *ud)
{
	struct membuf *m = ud;
	size_t add = size * n;
	if (m->len + add + 1 > m->cap) {
		size_t cap = (m->len + add + 1) * 2;
		char *d = realloc(m->data, cap);
		if (!d)
			return 0;
		m->data = d;
		m->cap = cap;
	}
	memcpy(m->data + m->len, p, add);
	m->len += add;
	m->data[m->len] = '\0';
	return add;
}

/* Sends one request; the body is either in memory or read from a file. */
static json_t *request(const char *method, const char *url, const char *body, FILE *upload,
		       curl_off_t upload_size, long *status)
{
	CURL *c = curl_easy_init();
	if (!c)
		die("curl_easy_init failed");
	struct membuf resp = {0};
	struct curl_slist *hdr = NULL;
	hdr = curl_slist_append(hdr, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (upload) {
		hdr = curl_slist_append(hdr, "Content-Type: application/octet-stream");
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_READDATA, upload);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, upload_size);
	} else if (body) {
		hdr = curl_slist_append(hdr, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	CURLcode rc = curl_easy_perform(c);
	if (rc != CURLE_OK)
		die("%s %s: %s", method, url, curl_easy_strerror(rc));
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(c);
	json_error_t jerr;
	json_t *j = resp.data ? json_loads(resp.data, 0, &jerr) : NULL;
	if (!j)
		die("%s %s: HTTP %ld, body is not JSON: %.300s", method, url, *status,
		    resp.data ? resp.data : "");
	free(resp.data);
	return j;
}

/* ---- the reference server: header + sendfile ---- */

struct ref_server {
	int lfd;
	int port;
	const char *path;
	atomic_bool stop;
	pthread_t thread;
	long served;
};

static void ref_serve_one(struct ref_server *s, int fd)
{
	char req[16384];
	size_t got = 0;
	while (got < sizeof req - 1) {
		ssize_t n = recv(fd, req + got, sizeof req - 1 - got, 0);
		if (n <= 0)
			return;
		got += (size_t)n;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	if (strncmp(req, "GET ", 4) != 0)
		return;
	int bfd = open(s->path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (bfd < 0 || fstat(bfd, &sb) != 0) {
		const char *e = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
		if (send(fd, e, strlen(e), MSG_NOSIGNAL) < 0)
			perror("bench_download: ref server send");
		if (bfd >= 0)
			close(bfd);
		return;
	}
	char head[256];
	int hl = snprintf(head, sizeof head,
			  "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
			  "Content-Length: %lld\r\nConnection: close\r\n\r\n",
			  (long long)sb.st_size);
	if (send(fd, head, (size_t)hl, MSG_NOSIGNAL | MSG_MORE) == hl) {
		off_t off = 0;
		while (off < sb.st_size) {
			ssize_t n = sendfile(fd, bfd, &off, (size_t)(sb.st_size - off));
			if (n <= 0)
				break;
		}
		s->served++;
	}
	close(bfd);
}

static void *ref_thread(void *ud)
{
	struct ref_server *s = ud;
	while (!atomic_load(&s->stop)) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			break; /* shutdown() of the listening socket */
		}
		ref_serve_one(s, fd);
		shutdown(fd, SHUT_WR);
		close(fd);
	}
	return NULL;
}

static void ref_start(struct ref_server *s, const char *path)
{
	s->path = path;
	atomic_init(&s->stop, false);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    listen(s->lfd, 16) != 0 || getsockname(s->lfd, (struct sockaddr *)&a, &al) != 0)
		die("reference server socket: %s", strerror(errno));
	s->port = ntohs(a.sin_port);
	if (pthread_create(&s->thread, NULL, ref_thread, s) != 0)
		die("pthread_create failed");
}

static void ref_stop(struct ref_server *s)
{
	atomic_store(&s->stop, true);
	shutdown(s->lfd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	close(s->lfd);
}

/* ---- the two download clients ---- */

struct sink {
	uint64_t bytes;
	EVP_MD_CTX *sha; /* non-NULL: hash what arrives */
};

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
	struct sink *s = ud;
	s->bytes += size * n;
	if (s->sha)
		EVP_DigestUpdate(s->sha, p, size * n);
	return size * n;
}

static void hex(const unsigned char *d, unsigned n, char *out)
{
	for (unsigned i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static void sha_begin(struct sink *s, bool verify)
{
	s->bytes = 0;
	s->sha = NULL;
	if (verify) {
		s->sha = EVP_MD_CTX_new();
		if (!s->sha || !EVP_DigestInit_ex(s->sha, EVP_sha256(), NULL))
			die("EVP_DigestInit failed");
	}
}

static void sha_end(struct sink *s, const char *who, const char *want_sha)
{
	if (!s->sha)
		return;
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned dl = 0;
	char got[2 * EVP_MAX_MD_SIZE + 1];
	EVP_DigestFinal_ex(s->sha, d, &dl);
	EVP_MD_CTX_free(s->sha);
	s->sha = NULL;
	hex(d, dl, got);
	if (strcmp(got, want_sha) != 0)
		die("%s served bytes with sha256 %s, artifact says %s", who, got, want_sha);
}

/* Seconds for one GET of url with libcurl; checks status and size. */
static double fetch_curl(const char *url, uint64_t size, const char *want_sha, const char *who)
{
	CURL *c = curl_easy_init();
	if (!c)
		die("curl_easy_init failed");
	struct sink s;
	sha_begin(&s, want_sha != NULL);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_BUFFERSIZE, (long)RECV_BUF);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
	double t0 = now();
	CURLcode rc = curl_easy_perform(c);
	double t = now() - t0;
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	if (rc != CURLE_OK || status != 200 || s.bytes != size)
		die("%s: GET %s: %s, HTTP %ld, %llu of %llu bytes", who, url,
		    curl_easy_strerror(rc), status, (unsigned long long)s.bytes,
		    (unsigned long long)size);
	if (want_sha)
		sha_end(&s, who, want_sha);
	return t;
}

/* Seconds for one GET over a plain socket, reading into a 1 MiB buffer. */
static double fetch_raw(int port, const char *path, uint64_t size, char *buf, const char *who)
{
	double t0 = now();
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
		die("%s: connect: %s", who, strerror(errno));
	char req[512];
	int rl = snprintf(req, sizeof req,
			  "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", path,
			  port);
	if (send(fd, req, (size_t)rl, MSG_NOSIGNAL) != rl)
		die("%s: send: %s", who, strerror(errno));
	size_t got = 0;
	char *end = NULL;
	while (!end) {
		if (got >= RECV_BUF - 1)
			die("%s: response header too long", who);
		ssize_t n = recv(fd, buf + got, RECV_BUF - 1 - got, 0);
		if (n <= 0)
			die("%s: connection closed in the header", who);
		got += (size_t)n;
		buf[got] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	int status = 0;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || status != 200)
		die("%s: status %d: %.200s", who, status, buf);
	uint64_t body = got - (size_t)(end + 4 - buf);
	while (body < size) {
		ssize_t n = recv(fd, buf, RECV_BUF, 0);
		if (n <= 0)
			break;
		body += (uint64_t)n;
	}
	double t = now() - t0;
	close(fd);
	if (body != size)
		die("%s: raw GET %s got %llu of %llu bytes", who, path, (unsigned long long)body,
		    (unsigned long long)size);
	return t;
}

/* ---- main ---- */

struct series {
	double ref[MAX_REPS], subj[MAX_REPS];
	int n;
};

/* Medians, their ratio and the spread of the per-repetition ratios. */
static void print_row(const char *name, const struct series *s)
{
	double ref = median(s->ref, s->n), subj = median(s->subj, s->n), ratio = subj / ref;
	double lo = 1e9, hi = 0;
	for (int i = 0; i < s->n; i++) {
		double r = s->subj[i] / s->ref[i];
		lo = r < lo ? r : lo;
		hi = r > hi ? r : hi;
	}
	printf("%-34s %9.2f %9.2f %8.3f %6.2f-%-6.2f %11s %s\n", name, ref, subj, ratio, lo, hi,
	       "target>=0.8", ratio >= TARGET ? "PASS" : "BELOW");
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_download [--nncd PATH] [--reps N (>= 5, default 7)] "
			"[--mib SIZE (default 512)]\n");
}

int main(int argc, char **argv)
{
	const char *exe = NNCD_DEFAULT_BIN;
	int reps = 7;
	long mib = 512;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--nncd") && i + 1 < argc)
			exe = argv[++i];
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--mib") && i + 1 < argc)
			mib = atol(argv[++i]);
		else {
			usage();
			return 2;
		}
	}
	if (reps < 1 || reps > MAX_REPS || mib < 1 || mib > 900) {
		usage();
		return 2;
	}
	if (reps < 5)
		fprintf(stderr, "bench_download: warning: %d repetitions (< 5): smoke run only\n",
			reps);
	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		die("curl_global_init failed");

	const char *tmp = getenv("TMPDIR");
	snprintf(g_root, sizeof g_root, "%s/nncd-bench-dl-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(g_root))
		die("mkdtemp %s: %s", g_root, strerror(errno));
	char data_dir[600], model_path[600], listen[128], base[160], url[400];
	snprintf(data_dir, sizeof data_dir, "%s/data", g_root);
	snprintf(model_path, sizeof model_path, "%s/model.onnx", g_root);

	/* The model: one MatMul [8192, N] so that the weight is `mib` MiB. */
	const int64_t k_dim = 8192;
	int64_t n_dim = mib * (1 << 20) / 4 / k_dim;
	size_t n_w = (size_t)(k_dim * n_dim);
	float *w = malloc(n_w * sizeof *w);
	if (!w)
		die("no memory for %zu weights", n_w);
	synthmodel_fill(w, n_w, 42, 0.05f);
	struct synthmodel sm = {.n_layers = 1, .dims = {k_dim, n_dim}, .gemm = {false},
				.weights = {w}};
	struct nn_err e;
	size_t model_len = 0;
	if (synthmodel_write_file(&sm, model_path, &model_len, &e) != NN_OK)
		die("%s", e.message);
	free(w);

	snprintf(g_log, sizeof g_log, "%s/nncd.log", g_root);
	start_daemon(exe, data_dir, listen, sizeof listen);
	snprintf(base, sizeof base, "http://%s", listen);
	const char *colon = strrchr(listen, ':');
	int daemon_port = colon ? atoi(colon + 1) : 0;

	/* Upload, then a job without steps. */
	long status = 0;
	FILE *mf = fopen(model_path, "rb");
	if (!mf)
		die("open %s: %s", model_path, strerror(errno));
	snprintf(url, sizeof url, "%s/v1/models?name=bench-download", base);
	double tu = now();
	json_t *model = request("POST", url, NULL, mf, (curl_off_t)model_len, &status);
	tu = now() - tu;
	fclose(mf);
	const char *model_id = json_string_value(json_object_get(model, "id"));
	if (status != 201 || !model_id)
		die("upload: HTTP %ld: %s", status, json_dumps(model, 0));

	char body[256];
	snprintf(body, sizeof body, "{\"model\":\"%s\",\"steps\":[]}", model_id);
	snprintf(url, sizeof url, "%s/v1/jobs", base);
	json_t *job = request("POST", url, body, NULL, 0, &status);
	const char *job_id = json_string_value(json_object_get(job, "id"));
	if (status != 202 || !job_id)
		die("job: HTTP %ld: %s", status, json_dumps(job, 0));
	snprintf(url, sizeof url, "%s/v1/jobs/%s", base, job_id);
	json_t *view = NULL;
	double tj = now();
	for (;;) {
		json_decref(view);
		view = request("GET", url, NULL, NULL, 0, &status);
		const char *state = json_string_value(json_object_get(view, "state"));
		if (status != 200 || !state)
			die("GET job: HTTP %ld", status);
		if (!strcmp(state, "succeeded"))
			break;
		if (!strcmp(state, "failed") || !strcmp(state, "canceled"))
			die("job %s: %s", state, json_dumps(view, 0));
		if (now() - tj > 600)
			die("job still %s after 600 s", state);
		usleep(100 * 1000);
	}
	tj = now() - tj;
	json_t *art = json_array_get(json_object_get(view, "artifacts"), 0);
	const char *art_id = json_string_value(json_object_get(art, "id"));
	const char *sha = json_string_value(json_object_get(art, "sha256"));
	json_int_t art_size = json_integer_value(json_object_get(art, "size"));
	if (!art_id || !sha || strlen(sha) != 64 || art_size <= 0)
		die("job has no usable artifact: %s", json_dumps(view, 0));

	char blob_path[800];
	snprintf(blob_path, sizeof blob_path, "%s/blobs/sha256/%.2s/%s", data_dir, sha, sha);
	struct stat sb;
	if (stat(blob_path, &sb) != 0 || sb.st_size != (off_t)art_size)
		die("blob %s: %s (size %lld, artifact %lld)", blob_path,
		    errno ? strerror(errno) : "size differs", (long long)sb.st_size,
		    (long long)art_size);

	struct ref_server ref;
	ref_start(&ref, blob_path);
	char daemon_path[200], daemon_url[400], ref_url[200];
	snprintf(daemon_path, sizeof daemon_path, "/v1/artifacts/%s", art_id);
	snprintf(daemon_url, sizeof daemon_url, "%s%s", base, daemon_path);
	snprintf(ref_url, sizeof ref_url, "http://127.0.0.1:%d/blob", ref.port);
	uint64_t size = (uint64_t)art_size;
	double gb = (double)size / 1e9;

	printf("bench_download: model %zu bytes uploaded in %.2f s; job without steps took "
	       "%.2f s; artifact %s, %llu bytes\n",
	       model_len, tu, tj, art_id, (unsigned long long)size);
	fflush(stdout);

	/* Warm-up + integrity: one fetch each, hashed. */
	fetch_curl(ref_url, size, sha, "reference server");
	fetch_curl(daemon_url, size, sha, "nncd");
	char *buf = malloc(RECV_BUF);
	if (!buf)
		die("no memory");
	fetch_raw(ref.port, "/blob", size, buf, "reference server");
	fetch_raw(daemon_port, daemon_path, size, buf, "nncd");

	struct series curl_s = {0}, raw_s = {0};
	for (int r = 0; r < reps; r++) {
		for (int pass = 0; pass < 2; pass++) {
			if ((pass == 0) == (r % 2 == 0))
				curl_s.ref[r] = gb / fetch_curl(ref_url, size, NULL, "reference");
			else
				curl_s.subj[r] = gb / fetch_curl(daemon_url, size, NULL, "nncd");
		}
		for (int pass = 0; pass < 2; pass++) {
			if ((pass == 0) == (r % 2 == 0))
				raw_s.ref[r] = gb / fetch_raw(ref.port, "/blob", size, buf, "reference");
			else
				raw_s.subj[r] =
					gb / fetch_raw(daemon_port, daemon_path, size, buf, "nncd");
		}
	}
	curl_s.n = raw_s.n = reps;
	free(buf);
	ref_stop(&ref);

	double c_ratio = median(curl_s.subj, reps) / median(curl_s.ref, reps);
	double r_ratio = median(raw_s.subj, reps) / median(raw_s.ref, reps);
	printf("%-34s %9s %9s %8s %13s %11s %s\n", "client (GB/s)", "sendfile", "nncd", "ratio",
	       "pairs min-max", "target", "result");
	print_row("libcurl, 1 MiB buffer", &curl_s);
	print_row("raw socket, recv 1 MiB", &raw_s);
	/* The libcurl pair is the measurement; the raw pair is a
	 * diagnostic of the servers alone, without curl's own ceiling. */
	printf("summary: artifact download at %.3f x a plain sendfile server with libcurl, "
	       "target >= %.1f: %s (raw client: %.3f x, %s)\n",
	       c_ratio, TARGET, c_ratio >= TARGET ? "PASS" : "BELOW", r_ratio,
	       r_ratio >= TARGET ? "PASS" : "BELOW");

	json_decref(view);
	json_decref(job);
	json_decref(model);
	cleanup();
	curl_global_cleanup();
	return 0;
}
