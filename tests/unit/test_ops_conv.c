/* Tests for engine/ops_conv through the executor (exec_compile / exec_run):
 * the LeNet-style fixture CNN on real MNIST test images and a model using
 * every conv-family attribute in 1-D, 2-D and 3-D, both against ONNX Runtime
 * run through node at test time; and exec_check_support refusals naming the
 * node and the attribute.
 * Usage: test_ops_conv CASE DATA_DIR [NODE NODE_MODULES SCRIPT CNN_ONNX MNIST_IMAGES]
 * Exit 77 (skipped) when node, onnxruntime-node or the MNIST file is absent. */
#include <errno.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec.h"
#include "onnx_io.h"

extern char **environ;

#define CHECK(cond, ...)                                                              \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, \
				#cond);                                               \
			fprintf(stderr, __VA_ARGS__);                                 \
			fprintf(stderr, "\n");                                        \
			return 1;                                                     \
		}                                                                     \
	} while (0)

/* Agreement with ONNX Runtime, per element: |ours - ort| <= ORT_TOL_ABS +
 * ORT_TOL_REL * |ort| (the acceptance tolerance of issue 3 is 1e-4). */
#define ORT_TOL_ABS 1e-4
#define ORT_TOL_REL 1e-4

static const char *data_dir = ".";
static const char *node_path = "", *node_modules = "", *script = "", *cnn_path = "",
		  *mnist_path = "";

static char tmp_dir[] = "/tmp/test_ops_conv.XXXXXX";

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static float rnd_unit(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (float)((rng_state >> 11) % 2000001) / 1000000.0f - 1.0f;
}

/* ---- ONNX Runtime through node ---- */

struct ort_out {
	int ndim;
	int64_t shape[8];
	int64_t numel;
	const double *data;
};

/* Runs ops_conv_ort.js on the given inputs; *buf (caller frees) receives the
 * file it wrote, outs[] point into it. Returns 0, 1 on error, 77 if skipped. */
static int run_ort(const char *model, const char *const *names, const struct tensor *ins,
		   size_t n_in, double **buf, struct ort_out *outs, size_t n_out)
{
	if (!node_path[0])
		return 77;
	char in_file[256], out_file[256];
	snprintf(in_file, sizeof(in_file), "%s/in.bin", tmp_dir);
	snprintf(out_file, sizeof(out_file), "%s/out.bin", tmp_dir);
	FILE *f = fopen(in_file, "wb");
	CHECK(f, "open %s: %s", in_file, strerror(errno));
	char dims[8][160];
	const char *argv[16 + 8];
	size_t a = 0;
	argv[a++] = node_path;
	argv[a++] = script;
	argv[a++] = node_modules;
	argv[a++] = model;
	argv[a++] = in_file;
	argv[a++] = out_file;
	for (size_t i = 0; i < n_in; i++) {
		int64_t n = tensor_numel(&ins[i]);
		CHECK(fwrite(ins[i].data, sizeof(float), (size_t)n, f) == (size_t)n, "write");
		int len = snprintf(dims[i], sizeof(dims[i]), "%s:", names[i]);
		for (int d = 0; d < ins[i].ndim; d++)
			len += snprintf(dims[i] + len, sizeof(dims[i]) - (size_t)len, "%s%lld",
					d ? "x" : "", (long long)ins[i].shape[d]);
		argv[a++] = dims[i];
	}
	argv[a] = NULL;
	CHECK(fclose(f) == 0, "close");
	pid_t pid;
	int rc = posix_spawn(&pid, node_path, NULL, NULL, (char *const *)argv, environ);
	CHECK(rc == 0, "spawn %s: %s", node_path, strerror(rc));
	int status;
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
	CHECK(WIFEXITED(status), "node killed");
	if (WEXITSTATUS(status) == 77)
		return 77;
	CHECK(WEXITSTATUS(status) == 0, "node exited %d", WEXITSTATUS(status));
	f = fopen(out_file, "rb");
	CHECK(f, "open %s", out_file);
	CHECK(fseek(f, 0, SEEK_END) == 0, "seek");
	long size = ftell(f);
	rewind(f);
	*buf = malloc((size_t)size + 8);
	CHECK(*buf, "oom");
	CHECK(fread(*buf, 1, (size_t)size, f) == (size_t)size, "read");
	fclose(f);
	size_t nvals = (size_t)size / sizeof(double), pos = 0;
	for (size_t o = 0; o < n_out; o++) {
		CHECK(pos < nvals, "ORT wrote %zu outputs, plan has %zu", o, n_out);
		outs[o].ndim = (int)(*buf)[pos++];
		CHECK(outs[o].ndim >= 0 && outs[o].ndim <= 8, "ndim");
		outs[o].numel = 1;
		for (int d = 0; d < outs[o].ndim; d++) {
			outs[o].shape[d] = (int64_t)(*buf)[pos++];
			outs[o].numel *= outs[o].shape[d];
		}
		outs[o].data = *buf + pos;
		pos += (size_t)outs[o].numel;
		CHECK(pos <= nvals, "ORT output %zu truncated", o);
	}
	CHECK(pos == nvals, "ORT wrote more outputs than the plan has");
	return 0;
}

/* Compares output `name` of ours (offset `row0` rows into ORT's batch) and
 * tracks the largest difference. */
static int compare(const char *name, const struct tensor *ours, const struct ort_out *ref,
		   int64_t row0, double *max_diff)
{
	CHECK(ours->ndim == ref->ndim, "%s: rank %d vs ORT %d", name, ours->ndim, ref->ndim);
	for (int d = 1; d < ours->ndim; d++)
		CHECK(ours->shape[d] == ref->shape[d], "%s: dim %d is %lld, ORT %lld", name, d,
		      (long long)ours->shape[d], (long long)ref->shape[d]);
	int64_t n = tensor_numel(ours);
	int64_t off = row0 * (n / ours->shape[0]);
	CHECK(off + n <= ref->numel, "%s: ORT has fewer rows", name);
	for (int64_t i = 0; i < n; i++) {
		double want = ref->data[off + i], got;
		if (ours->dtype == DT_INT64) {
			got = (double)((const int64_t *)ours->data)[i];
			CHECK(got == want, "%s[%lld]: index %.0f, ORT %.0f", name, (long long)i, got,
			      want);
			continue;
		}
		CHECK(ours->dtype == DT_FLOAT, "%s: dtype %d", name, ours->dtype);
		got = ((const float *)ours->data)[i];
		double d = fabs(got - want);
		if (d > *max_diff)
			*max_diff = d;
		CHECK(d <= ORT_TOL_ABS + ORT_TOL_REL * fabs(want), "%s[%lld]: %.9g, ORT %.9g", name,
		      (long long)i, got, want);
	}
	return 0;
}

/* ---- MNIST ---- */

static float *load_mnist(int64_t count)
{
	FILE *f = fopen(mnist_path, "rb");
	if (!f)
		return NULL;
	unsigned char hdr[16];
	float *x = NULL;
	unsigned char *px = malloc((size_t)count * 784);
	if (!px || fread(hdr, 1, 16, f) != 16 || hdr[2] != 8 || hdr[3] != 3 ||
	    fread(px, 784, (size_t)count, f) != (size_t)count)
		goto done;
	x = malloc((size_t)count * 784 * sizeof(float));
	if (x)
		for (int64_t i = 0; i < count * 784; i++)
			x[i] = (float)px[i] / 255.0f;
done:
	free(px);
	fclose(f);
	return x;
}

static int case_cnn_mnist(void)
{
	enum { N_IMAGES = 1000, BATCH = 100 };
	if (access(mnist_path, R_OK) != 0) {
		fprintf(stderr, "skipped: %s not readable\n", mnist_path);
		return 77;
	}
	float *x = load_mnist(N_IMAGES);
	CHECK(x, "cannot read %s", mnist_path);
	struct nn_err e;
	struct onnx_model *m = NULL;
	CHECK(onnx_load_file(cnn_path, &m, &e) == NN_OK, "%s", e.message);
	CHECK(exec_check_support(m, &e) == NN_OK, "%s", e.message);
	struct tensor all;
	tensor_view(&all, DT_FLOAT, 4, (const int64_t[]){N_IMAGES, 1, 28, 28}, x);
	const char *in_name = "input";
	double *buf = NULL;
	struct ort_out ref;
	int rc = run_ort(cnn_path, &in_name, &all, 1, &buf, &ref, 1);
	if (rc != 0) {
		free(x);
		onnx_free(m);
		return rc;
	}
	double max_diff = 0.0;
	int64_t agree = 0;
	const int64_t batches[] = {BATCH, 1};
	for (size_t b = 0; b < 2; b++) {
		int64_t bs = batches[b];
		struct exec_plan *p = NULL;
		CHECK(exec_compile(m, bs, &p, &e) == NN_OK, "compile batch %lld: %s", (long long)bs,
		      e.message);
		CHECK(exec_input_count(p) == 1 && exec_output_count(p) == 1, "io counts");
		int64_t limit = bs == 1 ? 10 : N_IMAGES;
		for (int64_t row = 0; row < limit; row += bs) {
			struct tensor in, out;
			tensor_view(&in, DT_FLOAT, 4, (const int64_t[]){bs, 1, 28, 28},
				    x + row * 784);
			CHECK(exec_run(p, &in, 1, &out, 1, &e) == NN_OK, "run: %s", e.message);
			CHECK(compare("logits", &out, &ref, row, &max_diff) == 0, "rows from %lld",
			      (long long)row);
			for (int64_t i = 0; i < bs && bs > 1; i++) {
				const float *ours = (const float *)out.data + i * 10;
				const double *theirs = ref.data + (row + i) * 10;
				int a = 0, t = 0;
				for (int k = 1; k < 10; k++) {
					if (ours[k] > ours[a])
						a = k;
					if (theirs[k] > theirs[t])
						t = k;
				}
				agree += a == t;
			}
		}
		exec_free(p);
	}
	CHECK(agree == N_IMAGES, "top-1 agrees on %lld of %d images", (long long)agree,
	      N_IMAGES);
	printf("cnn.onnx on %d MNIST images: max |logit - ORT| %.3g, top-1 identical\n",
	       N_IMAGES, max_diff);
	free(buf);
	free(x);
	onnx_free(m);
	return 0;
}

static int case_ops_model(void)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/conv_ops.onnx", data_dir);
	struct nn_err e;
	struct onnx_model *m = NULL;
	CHECK(onnx_load_file(path, &m, &e) == NN_OK, "%s", e.message);
	CHECK(exec_check_support(m, &e) == NN_OK, "%s", e.message);
	struct exec_plan *p = NULL;
	CHECK(exec_compile(m, 2, &p, &e) == NN_OK, "%s", e.message);
	size_t n_in = exec_input_count(p), n_out = exec_output_count(p);
	CHECK(n_in == 3 && n_out == 26, "io counts %zu %zu", n_in, n_out);
	struct tensor ins[3];
	const char *names[3];
	float *data[3] = {NULL, NULL, NULL};
	for (size_t i = 0; i < n_in; i++) {
		const struct tensor *spec = exec_input_spec(p, i);
		int64_t n = tensor_numel(spec);
		data[i] = malloc((size_t)n * sizeof(float));
		CHECK(data[i], "oom");
		for (int64_t k = 0; k < n; k++)
			data[i][k] = rnd_unit();
		tensor_view(&ins[i], DT_FLOAT, spec->ndim, spec->shape, data[i]);
		names[i] = exec_input_name(p, i);
	}
	double *buf = NULL;
	struct ort_out refs[26];
	int rc = run_ort(path, names, ins, n_in, &buf, refs, n_out);
	if (rc != 0)
		return rc;
	struct tensor outs[26];
	CHECK(exec_run(p, ins, n_in, outs, n_out, &e) == NN_OK, "%s", e.message);
	double max_diff = 0.0;
	for (size_t o = 0; o < n_out; o++) {
		const char *name = exec_output_name(p, o);
		CHECK(outs[o].shape[0] == refs[o].shape[0], "%s: batch", name);
		CHECK(compare(name, &outs[o], &refs[o], 0, &max_diff) == 0, "output %s", name);
	}
	/* Run again: planned buffers are reused, results identical. */
	float first = ((const float *)outs[0].data)[0];
	CHECK(exec_run(p, ins, n_in, outs, n_out, &e) == NN_OK, "%s", e.message);
	CHECK(((const float *)outs[0].data)[0] == first, "second run differs");
	printf("conv_ops.onnx: %zu outputs match ONNX Runtime, max |diff| %.3g\n", n_out,
	       max_diff);
	free(buf);
	for (size_t i = 0; i < n_in; i++)
		free(data[i]);
	exec_free(p);
	onnx_free(m);
	return 0;
}

static int case_check_refusals(void)
{
	static const struct {
		const char *file, *node, *attr;
		enum nn_status status;
	} cases[] = {
		{"conv_bad_bn_training.onnx", "bn_train", "training_mode", NN_EUNSUPPORTED},
		{"conv_bad_pool_auto_pad.onnx", "pool_bad_pad", "auto_pad", NN_EINVAL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", data_dir, cases[i].file);
		struct nn_err e;
		struct onnx_model *m = NULL;
		CHECK(onnx_load_file(path, &m, &e) == NN_OK, "%s", e.message);
		enum nn_status st = exec_check_support(m, &e);
		CHECK(st == cases[i].status, "%s: status %s", cases[i].file, err_status_name(st));
		CHECK(strstr(e.message, cases[i].node) && strstr(e.message, cases[i].attr),
		      "%s: message '%s' names neither node nor attribute", cases[i].file, e.message);
		struct exec_plan *p = NULL;
		CHECK(exec_compile(m, 1, &p, &e) != NN_OK, "%s compiled", cases[i].file);
		onnx_free(m);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: test_ops_conv CASE DATA_DIR [NODE NODE_MODULES SCRIPT "
				"CNN_ONNX MNIST_IMAGES]\n");
		return 2;
	}
	data_dir = argv[2];
	if (argc >= 8) {
		node_path = argv[3];
		node_modules = argv[4];
		script = argv[5];
		cnn_path = argv[6];
		mnist_path = argv[7];
	}
	if (!mkdtemp(tmp_dir)) {
		perror("mkdtemp");
		return 1;
	}
	int rc;
	if (!strcmp(argv[1], "cnn_mnist"))
		rc = case_cnn_mnist();
	else if (!strcmp(argv[1], "ops_model"))
		rc = case_ops_model();
	else if (!strcmp(argv[1], "check_refusals"))
		rc = case_check_refusals();
	else {
		fprintf(stderr, "unknown case %s\n", argv[1]);
		rc = 2;
	}
	char f[300];
	snprintf(f, sizeof(f), "%s/in.bin", tmp_dir);
	unlink(f);
	snprintf(f, sizeof(f), "%s/out.bin", tmp_dir);
	unlink(f);
	rmdir(tmp_dir);
	return rc;
}
