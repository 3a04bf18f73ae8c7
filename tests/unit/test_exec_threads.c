/* Unit tests for batch-split plans (exec_compile_threads in engine/exec.c):
 * 2- and 3-thread plans on the MNIST fixtures (batch 64, an uneven 7, and 1,
 * which stays on one thread), on a graph input that is also an output and on
 * PyTorch's residual block give outputs bit-identical to 1-thread plans
 * compiled for each slice's rows, and equal to the full-batch 1-thread plan
 * within 1e-5 (bit-identical too whenever the GEMM kernels' results for a row
 * do not depend on the row count; OpenBLAS's sgemm picks kernels by size, so
 * a 22-row and a 64-row product may round differently); graphs whose inputs/outputs do not all lead with the batch fall back
 * to one thread and still run; exec_run allocates nothing (heap in use is
 * unchanged across runs); exec_free joins the workers (every case frees its
 * plans, so ASan/TSan builds check the join and the handoff).
 * OpenBLAS stays single-threaded here, as the header asks of callers that
 * split the batch.
 * Usage: test_exec_threads CASE FIXTURES_DIR DATA_DIR */
#include <cblas.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"
#include "onnx_io.h"

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

#define MAX_IO 8

static const char *fix_dir = ".", *data_dir = ".";

static struct onnx_model *load(const char *dir, const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	struct onnx_model *m = NULL;
	struct nn_err e;
	if (onnx_load_file(path, &m, &e) != NN_OK) {
		fprintf(stderr, "loading %s: %s\n", path, e.message);
		return NULL;
	}
	return m;
}

static uint32_t lcg = 12345;

/* Fills every input of the plan with pseudo-random floats; buf[i] owned by
 * the caller (freed with free). */
static int make_inputs(const struct exec_plan *p, struct tensor *in, void **buf)
{
	size_t n = exec_input_count(p);
	CHECK(n <= MAX_IO, "too many inputs");
	for (size_t i = 0; i < n; i++) {
		const struct tensor *spec = exec_input_spec(p, i);
		CHECK(spec->dtype == DT_FLOAT, "input %zu is not float", i);
		size_t cnt = (size_t)tensor_numel(spec);
		float *x = malloc((cnt ? cnt : 1) * sizeof *x);
		CHECK(x, "out of memory");
		for (size_t k = 0; k < cnt; k++) {
			lcg = lcg * 1103515245u + 12345u;
			x[k] = (float)((lcg >> 8) & 0xffff) / 32768.0f - 1.0f;
		}
		buf[i] = x;
		tensor_view(&in[i], spec->dtype, spec->ndim, spec->shape, x);
	}
	return 0;
}

/* Max |a-b| / (1 + |a|) over two float buffers of cnt values (NaN = huge). */
static double rel_diff(const float *a, const float *b, size_t cnt)
{
	double worst = 0;
	for (size_t k = 0; k < cnt; k++) {
		double d = (double)a[k] - (double)b[k];
		d = (d < 0 ? -d : d) / (1.0 + (a[k] < 0 ? -a[k] : a[k]));
		if (d != d)
			d = 1e30;
		if (d > worst)
			worst = d;
	}
	return worst;
}

/* Runs the 1-thread full-batch plan, one 1-thread plan per slice and a
 * `threads` plan on the same inputs (two rounds of fresh inputs: the second
 * run reuses the handoff). The split plan must use `want` threads, match the
 * per-slice plans byte for byte (rows land where they belong, nothing is
 * lost in the handoff) and the full-batch plan within 1e-5. */
static int compare(const struct onnx_model *m, const char *what, int64_t batch, unsigned threads,
		   unsigned want)
{
	struct nn_err e;
	struct exec_plan *p1 = NULL, *pt = NULL, *ps[4] = {0};
	int rc = 1;
	CHECK(want <= 4, "at most 4 slices here");
	CHECK(exec_compile(m, batch, &p1, &e) == NN_OK, "%s: exec_compile: %s", what, e.message);
	if (exec_compile_threads(m, batch, threads, &pt, &e) != NN_OK) {
		fprintf(stderr, "%s: exec_compile_threads: %s\n", what, e.message);
		goto out;
	}
	if (exec_threads(p1) != 1 || exec_threads(pt) != want) {
		fprintf(stderr, "%s batch %lld threads %u: runs on %u threads (plain plan %u), "
			"want %u\n", what, (long long)batch, threads, exec_threads(pt),
			exec_threads(p1), want);
		goto out;
	}
	int64_t rows[4], off[4], at = 0;
	for (unsigned s = 0; s < want; s++) {
		rows[s] = batch / want + ((int64_t)s < batch % (int64_t)want ? 1 : 0);
		off[s] = at;
		at += rows[s];
		if (exec_compile(m, rows[s], &ps[s], &e) != NN_OK) {
			fprintf(stderr, "%s: exec_compile of %lld rows: %s\n", what,
				(long long)rows[s], e.message);
			goto out;
		}
	}
	size_t ni = exec_input_count(p1), no = exec_output_count(p1);
	if (exec_input_count(pt) != ni || exec_output_count(pt) != no || ni > MAX_IO ||
	    no > MAX_IO) {
		fprintf(stderr, "%s: io counts differ or too many\n", what);
		goto out;
	}
	for (size_t i = 0; i < ni; i++) {
		const struct tensor *a = exec_input_spec(p1, i), *b = exec_input_spec(pt, i);
		if (strcmp(exec_input_name(p1, i), exec_input_name(pt, i)) != 0 ||
		    a->ndim != b->ndim || a->dtype != b->dtype ||
		    memcmp(a->shape, b->shape, sizeof a->shape[0] * (size_t)a->ndim) != 0) {
			fprintf(stderr, "%s: input spec %zu differs\n", what, i);
			goto out;
		}
	}
	bool all_exact = true;
	for (int round = 0; round < 2; round++) {
		struct tensor in[MAX_IO], o1[MAX_IO], ot[MAX_IO];
		void *buf[MAX_IO] = {0};
		if (make_inputs(p1, in, buf))
			goto out;
		int bad = 0;
		if (exec_run(p1, in, ni, o1, no, &e) != NN_OK) {
			fprintf(stderr, "%s: 1-thread exec_run: %s\n", what, e.message);
			bad = 1;
		} else if (exec_run(pt, in, ni, ot, no, &e) != NN_OK) {
			fprintf(stderr, "%s: %u-thread exec_run: %s\n", what, threads, e.message);
			bad = 1;
		}
		for (size_t o = 0; !bad && o < no; o++) {
			const struct tensor *spec = exec_output_spec(pt, o);
			size_t sh = sizeof spec->shape[0] * (size_t)(spec->ndim > 0 ? spec->ndim : 0);
			size_t b1 = 0, bt = 0;
			bool same = o1[o].dtype == ot[o].dtype && o1[o].ndim == ot[o].ndim &&
				    spec->ndim == ot[o].ndim && memcmp(spec->shape, ot[o].shape, sh) == 0 &&
				    memcmp(o1[o].shape, ot[o].shape, sh) == 0 &&
				    tensor_nbytes(&o1[o], &b1, NULL) == NN_OK &&
				    tensor_nbytes(&ot[o], &bt, NULL) == NN_OK && b1 == bt;
			if (!same) {
				fprintf(stderr, "%s: output %zu dtype/shape differs\n", what, o);
				bad = 1;
				break;
			}
			bool exact = b1 == 0 || memcmp(o1[o].data, ot[o].data, b1) == 0;
			double d = 0;
			if (!exact && ot[o].dtype == DT_FLOAT)
				d = rel_diff(o1[o].data, ot[o].data, b1 / sizeof(float));
			if (!exact && (ot[o].dtype != DT_FLOAT || d > 1e-5)) {
				fprintf(stderr, "%s batch %lld: output '%s' of the %u-thread plan is "
					"%g off the 1-thread plan (round %d)\n", what,
					(long long)batch, exec_output_name(pt, o), threads, d, round);
				bad = 1;
			}
			all_exact &= exact;
		}
		/* each slice against its own 1-thread plan, byte for byte */
		for (unsigned s = 0; !bad && want > 1 && s < want; s++) {
			struct tensor si[MAX_IO], so[MAX_IO];
			for (size_t i = 0; i < ni; i++) {
				const struct tensor *spec = exec_input_spec(ps[s], i);
				size_t row = 0;
				tensor_nbytes(&in[i], &row, NULL);
				row /= (size_t)batch;
				tensor_view(&si[i], spec->dtype, spec->ndim, spec->shape,
					    (unsigned char *)in[i].data + (size_t)off[s] * row);
			}
			if (exec_run(ps[s], si, ni, so, no, &e) != NN_OK) {
				fprintf(stderr, "%s: slice plan exec_run: %s\n", what, e.message);
				bad = 1;
				break;
			}
			for (size_t o = 0; o < no; o++) {
				size_t sb = 0, rowo = 0;
				tensor_nbytes(&so[o], &sb, NULL);
				tensor_nbytes(&ot[o], &rowo, NULL);
				rowo /= (size_t)batch;
				if (sb && memcmp(so[o].data,
						 (unsigned char *)ot[o].data + (size_t)off[s] * rowo,
						 sb) != 0) {
					fprintf(stderr, "%s batch %lld: slice %u (%lld rows) of output "
						"'%s' differs from its own 1-thread plan (round %d)\n",
						what, (long long)batch, s, (long long)rows[s],
						exec_output_name(pt, o), round);
					bad = 1;
				}
			}
		}
		for (size_t i = 0; i < ni; i++)
			free(buf[i]);
		if (bad)
			goto out;
	}
	printf("%s batch %lld, %u thread(s): %s the full-batch 1-thread plan\n", what,
	       (long long)batch, want, all_exact ? "bit-identical to" : "within 1e-5 of");
	rc = 0;
out:
	for (unsigned s = 0; s < 4; s++)
		exec_free(ps[s]);
	exec_free(p1);
	exec_free(pt);
	return rc;
}

static int fixture_case(const char *file)
{
	struct onnx_model *m = load(fix_dir, file);
	CHECK(m, "cannot load %s", file);
	static const struct {
		int64_t batch;
		unsigned threads, want;
	} runs[] = {
		{64, 2, 2}, {64, 3, 3}, {7, 2, 2}, {7, 3, 3}, {1, 2, 1}, {1, 3, 1}, {2, 3, 2},
	};
	int rc = 0;
	for (size_t r = 0; rc == 0 && r < sizeof runs / sizeof runs[0]; r++)
		rc = compare(m, file, runs[r].batch, runs[r].threads, runs[r].want);
	onnx_free(m);
	return rc;
}

static int test_lenet(void)
{
	return fixture_case("lenet300.onnx");
}

static int test_cnn(void)
{
	return fixture_case("cnn.onnx");
}

/* exec_passthrough: the graph input is also a graph output (copied into the
 * sub-plans' buffers, then gathered); exec_torch_res: Add skip connections. */
static int test_passthrough_and_resblock(void)
{
	const char *files[] = {"exec_passthrough.onnx", "exec_torch_res.onnx",
			       "exec_flatten.onnx"};
	for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
		struct onnx_model *m = load(data_dir, files[f]);
		CHECK(m, "cannot load %s", files[f]);
		int rc = compare(m, files[f], 7, 3, 3);
		if (rc == 0)
			rc = compare(m, files[f], 5, 2, 2);
		onnx_free(m);
		if (rc)
			return rc;
	}
	return 0;
}

/* exec_softmax13 has a fixed input [2,3,4]: at batch 2 the full-batch shapes
 * lead with 2 but a 1-row slice cannot exist. exec_quant has scalar outputs.
 * Both fall back to one plan that runs like exec_compile's. */
static int test_fallback_not_splittable(void)
{
	struct onnx_model *m = load(data_dir, "exec_softmax13.onnx");
	CHECK(m, "cannot load exec_softmax13.onnx");
	int rc = compare(m, "exec_softmax13.onnx", 2, 2, 1);
	onnx_free(m);
	if (rc)
		return rc;
	m = load(data_dir, "exec_quant.onnx");
	CHECK(m, "cannot load exec_quant.onnx");
	rc = compare(m, "exec_quant.onnx", 2, 2, 1);
	onnx_free(m);
	return rc;
}

/* Heap in use (glibc's count over all arenas, worker threads' included) is
 * the same after 20 more runs of a 3-thread plan as after the first run.
 * Under ASan mallinfo2 is not glibc's and reports nothing; the check still
 * runs but proves nothing there. */
static int test_no_allocation_in_run(void)
{
	struct onnx_model *m = load(fix_dir, "cnn.onnx");
	CHECK(m, "cannot load cnn.onnx");
	struct nn_err e;
	struct exec_plan *p = NULL;
	CHECK(exec_compile_threads(m, 16, 3, &p, &e) == NN_OK, "compile: %s", e.message);
	CHECK(exec_threads(p) == 3, "runs on %u threads", exec_threads(p));
	struct tensor in[MAX_IO], out[MAX_IO];
	void *buf[MAX_IO] = {0};
	if (make_inputs(p, in, buf))
		return 1;
	size_t ni = exec_input_count(p), no = exec_output_count(p);
	CHECK(exec_run(p, in, ni, out, no, &e) == NN_OK, "run: %s", e.message);
	struct mallinfo2 before = mallinfo2();
	int ok = 1;
	for (int r = 0; r < 20 && ok; r++)
		ok = exec_run(p, in, ni, out, no, &e) == NN_OK;
	struct mallinfo2 after = mallinfo2();
	for (size_t i = 0; i < ni; i++)
		free(buf[i]);
	exec_free(p);
	onnx_free(m);
	CHECK(ok, "run: %s", e.message);
	CHECK(before.uordblks == after.uordblks && before.hblkhd == after.hblkhd,
	      "heap in use changed across runs: %zu -> %zu bytes (mmapped %zu -> %zu)",
	      before.uordblks, after.uordblks, before.hblkhd, after.hblkhd);
	return 0;
}

/* Wrong input shape is refused by the split plan like by a plain one; many
 * plans created and freed in a row (each joins its workers). */
static int test_bad_input_and_free_cycles(void)
{
	struct onnx_model *m = load(fix_dir, "lenet300.onnx");
	CHECK(m, "cannot load lenet300.onnx");
	struct nn_err e;
	for (int k = 0; k < 20; k++) {
		struct exec_plan *p = NULL;
		CHECK(exec_compile_threads(m, 8, 4, &p, &e) == NN_OK, "compile: %s", e.message);
		CHECK(exec_threads(p) == 4, "runs on %u threads", exec_threads(p));
		if (k == 0) {
			struct tensor in, out[MAX_IO];
			const struct tensor *spec = exec_input_spec(p, 0);
			float *x = calloc((size_t)tensor_numel(spec), sizeof *x);
			CHECK(x, "out of memory");
			int64_t shape[TENSOR_MAX_DIMS];
			memcpy(shape, spec->shape, sizeof shape);
			shape[0] = 7;
			tensor_view(&in, DT_FLOAT, spec->ndim, shape, x);
			enum nn_status st = exec_run(p, &in, 1, out, exec_output_count(p), &e);
			free(x);
			CHECK(st == NN_EINVAL && strstr(e.message, "does not match"),
			      "a 7-row input to an 8-row plan gave %d: %s", (int)st, e.message);
		}
		exec_free(p);
	}
	onnx_free(m);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: test_exec_threads CASE FIXTURES_DIR DATA_DIR\n");
		return 2;
	}
	fix_dir = argv[2];
	data_dir = argv[3];
	openblas_set_num_threads(1);
	static const struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"lenet", test_lenet},
		{"cnn", test_cnn},
		{"passthrough_resblock", test_passthrough_and_resblock},
		{"fallback", test_fallback_not_splittable},
		{"no_alloc", test_no_allocation_in_run},
		{"bad_input_free_cycles", test_bad_input_and_free_cycles},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (strcmp(argv[1], cases[i].name) == 0)
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
