/* bench_structured: structured pruning (issue 4, acceptance points 1 and 6).
 *
 * 1. Cost of the structured step (ratio 0.5, L1, layer scope) on a large
 *    synthetic MLP (bench/synthmodel.h: Gemm chain, default 4096-wide, 5
 *    layers = 67M parameters): seconds, weight bytes read per second, and
 *    that rate as a ratio to a memcpy of the same bytes timed in the same run
 *    (the machine is shared: ratios, not absolute times).
 * 2. ONNX Runtime latency at batch 64 of the fixtures lenet300 and cnn before
 *    and after structured 0.5 (bench/ort_bench.js, session.run alone with
 *    pre-built tensors, median of ROUNDS alternating rounds), and the ratio.
 *
 * usage: bench_structured [--width W] [--layers L] [--rounds R] [--threads T]
 *                         [--node PATH] [--modules DIR] [--fixtures DIR] [--ort-script FILE]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "onnx_io.h"
#include "prune.h"
#include "structured.h"
#include "synthmodel.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_d);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct opts {
	int64_t width;
	int layers, rounds, threads;
	const char *node, *modules, *fixtures, *ort_script;
};

static int big_mlp(const struct opts *o)
{
	struct synthmodel s = {.n_layers = (size_t)o->layers};
	size_t per = (size_t)(o->width * o->width), total = per * (size_t)o->layers;
	float *w = malloc(total * sizeof *w);
	if (!w) {
		fprintf(stderr, "bench_structured: no memory for %zu weights\n", total);
		return 1;
	}
	for (int i = 0; i <= o->layers; i++)
		s.dims[i] = o->width;
	for (int i = 0; i < o->layers; i++) {
		s.gemm[i] = true;
		s.weights[i] = w + (size_t)i * per;
		synthmodel_fill(w + (size_t)i * per, per, 1000u + (uint64_t)i, 0.02f);
	}
	uint8_t *bytes = NULL;
	size_t len = 0;
	struct nn_err e = {0};
	struct onnx_model *m = NULL;
	if (synthmodel_pack(&s, &bytes, &len, &e) != NN_OK || onnx_load(bytes, len, &m, &e) != NN_OK) {
		fprintf(stderr, "bench_structured: %s\n", e.message);
		return 1;
	}
	free(bytes);
	/* memcpy of the weight bytes, the reference rate of this run */
	float *dst = malloc(total * sizeof *dst);
	if (!dst)
		return 1;
	memcpy(dst, w, total * sizeof *w); /* fault in */
	double t0 = now();
	memcpy(dst, w, total * sizeof *w);
	double t_copy = now() - t0;
	volatile float sink = dst[total / 2] + dst[total - 1]; /* the copy is used */
	(void)sink;
	free(dst);
	free(w);

	struct prune_params p = {.method = PRUNE_STRUCTURED, .ratio = 0.5, .scope = PRUNE_SCOPE_LAYER,
				 .criterion = PRUNE_L1};
	json_t *mt = NULL;
	t0 = now();
	if (structured_run(m, &p, NULL, &mt, &e) != NN_OK) {
		fprintf(stderr, "bench_structured: %s\n", e.message);
		return 1;
	}
	double t = now() - t0;
	double gb = (double)total * 4 / 1e9;
	printf("structured 0.5 on a %d-layer %lld-wide Gemm MLP (%.1fM parameters, %.2f GB):\n",
	       o->layers, (long long)o->width, (double)total / 1e6, gb);
	printf("  step %.3f s (%.2f GB/s of weights); memcpy of the same bytes %.3f s (%.2f GB/s)\n", t,
	       gb / t, t_copy, gb / t_copy);
	printf("  ratio step rate / memcpy rate: %.2f\n", t_copy / t);
	printf("  parameters %lld -> %lld, step's own figure %.3f s\n",
	       (long long)json_integer_value(json_object_get(mt, "parameters_before")),
	       (long long)json_integer_value(json_object_get(mt, "parameters_after")),
	       json_real_value(json_object_get(mt, "seconds")));
	json_decref(mt);
	onnx_free(m);
	return 0;
}

/* One ort_bench.js round: session.run images/s at batch 64 (pre-built tensors). */
static double ort_ips(const struct opts *o, const char *model)
{
	char th[16];
	snprintf(th, sizeof th, "%d", o->threads);
	const char *argv[] = {o->node, o->ort_script, o->modules, model, th, "--batch", "64",
			      "--passes", "3", "--lat-runs", "10", NULL};
	int fds[2];
	if (pipe(fds) != 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	char buf[4096];
	size_t len = 0;
	ssize_t r;
	while ((r = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0 || (r < 0 && errno == EINTR))
		if (r > 0)
			len += (size_t)r;
	buf[len] = '\0';
	close(fds[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return -1;
	json_t *j = json_loads(buf, JSON_DISABLE_EOF_CHECK, NULL);
	double ips = j ? json_number_value(json_object_get(j, "tput_pre_ips")) : -1;
	json_decref(j);
	return ips > 0 ? ips : -1;
}

static int ort_before_after(const struct opts *o, const char *name)
{
	char src[1024], dst[1024];
	snprintf(src, sizeof src, "%s/%s.onnx", o->fixtures, name);
	snprintf(dst, sizeof dst, "/tmp/nncd-bench-structured-%d-%s.onnx", (int)getpid(), name);
	struct onnx_model *m = NULL;
	struct nn_err e = {0};
	struct prune_params p = {.method = PRUNE_STRUCTURED, .ratio = 0.5, .scope = PRUNE_SCOPE_LAYER,
				 .criterion = PRUNE_L1};
	json_t *mt = NULL;
	if (onnx_load_file(src, &m, &e) != NN_OK || structured_run(m, &p, NULL, &mt, &e) != NN_OK ||
	    onnx_save_file(m, dst, &e) != NN_OK) {
		fprintf(stderr, "bench_structured: %s: %s\n", name, e.message);
		return 1;
	}
	long long pb = json_integer_value(json_object_get(mt, "parameters_before"));
	long long pa = json_integer_value(json_object_get(mt, "parameters_after"));
	json_decref(mt);
	onnx_free(m);
	double before[64], after[64];
	int n = o->rounds > 64 ? 64 : o->rounds;
	for (int i = 0; i < n; i++) {
		before[i] = ort_ips(o, src);
		after[i] = ort_ips(o, dst);
		if (before[i] < 0 || after[i] < 0) {
			fprintf(stderr, "bench_structured: ort_bench.js failed (node %s, modules %s)\n",
				o->node, o->modules);
			unlink(dst);
			return 1;
		}
	}
	unlink(dst);
	double b = median(before, n), a = median(after, n);
	printf("%-9s parameters %lld -> %lld (%.2fx fewer); ORT batch 64: %.3f ms -> %.3f ms per batch "
	       "(%.0f -> %.0f images/s), latency ratio before/after %.2f\n",
	       name, pb, pa, (double)pb / (double)pa, 64e3 / b, 64e3 / a, b, a, a / b);
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = {
		.width = 4096,
		.layers = 5,
		.rounds = 5,
		.threads = 1,
		.node = "node",
		.modules = NNCD_SOURCE_ROOT "/tests/oracle/node_modules",
		.fixtures = NNCD_SOURCE_ROOT "/tests/fixtures",
		.ort_script = NNCD_SOURCE_ROOT "/bench/ort_bench.js",
	};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v) {
			fprintf(stderr, "bench_structured: %s needs a value\n", a);
			return 2;
		}
		if (!strcmp(a, "--width"))
			o.width = atoll(v);
		else if (!strcmp(a, "--layers"))
			o.layers = atoi(v);
		else if (!strcmp(a, "--rounds"))
			o.rounds = atoi(v);
		else if (!strcmp(a, "--threads"))
			o.threads = atoi(v);
		else if (!strcmp(a, "--node"))
			o.node = v;
		else if (!strcmp(a, "--modules"))
			o.modules = v;
		else if (!strcmp(a, "--fixtures"))
			o.fixtures = v;
		else if (!strcmp(a, "--ort-script"))
			o.ort_script = v;
		else {
			fprintf(stderr, "usage: bench_structured [--width W] [--layers L] [--rounds R] "
					"[--threads T] [--node PATH] [--modules DIR] [--fixtures DIR] "
					"[--ort-script FILE]\n");
			return 2;
		}
		i++;
	}
	if (o.width < 2 || o.layers < 2 || o.layers > SYNTHMODEL_MAX_LAYERS || o.rounds < 1) {
		fprintf(stderr, "bench_structured: width >= 2, 2 <= layers <= %d, rounds >= 1\n",
			SYNTHMODEL_MAX_LAYERS);
		return 2;
	}
	if (big_mlp(&o))
		return 1;
	printf("ONNX Runtime (%d intra-op thread%s, median of %d alternating rounds):\n", o.threads,
	       o.threads == 1 ? "" : "s", o.rounds);
	if (ort_before_after(&o, "lenet300") || ort_before_after(&o, "cnn"))
		return 1;
	return 0;
}
