/* Unit tests for engine/gemm.c: the packed-weight kernels (AVX-512 when the
 * CPU has it, and the portable one) against gemm_ref on random shapes with
 * ragged M/N/K edges, transB, alpha, accumulation and row strides wider than
 * the matrices (whose padding must stay untouched); pack's argument checks;
 * and through the executor (ops_gemm.c's hook): the MNIST MLP fixture (Gemm,
 * transB, bias) and MatMul with a constant 2-D weight run with one OpenBLAS
 * thread (packed kernel) match the two-thread run (cblas_sgemm), and the plan
 * counts the packed weights.
 * Usage: test_gemm CASE [MODEL...] */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "exec.h"
#include "gemm.h"
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

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static float rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (float)((rng_state >> 40) & 0xFFFFFF) / (float)0x1000000 * 2.0f - 1.0f;
}

#define SENTINEL 12345.0f

/* One shape: the packed run (kernel chosen by `fast`) and gemm_ref on the same
 * inputs, Y prefilled with the same random values (used when accumulating)
 * and SENTINEL in the row padding. Error bound: summation-order differences,
 * relative to sum |a||b|. */
static int one_case(int64_t m, int64_t n, int64_t k, bool tb, float alpha, bool acc, bool fast)
{
	int64_t lda = k + (m % 3), ldy = n + (n % 2) * 3;
	size_t na = (size_t)(m * lda + 1), nb = (size_t)(k * n), ny = (size_t)(m * ldy + 1);
	float *a = malloc(sizeof(float) * na), *b = malloc(sizeof(float) * nb);
	float *y = malloc(sizeof(float) * ny), *yr = malloc(sizeof(float) * ny);
	float *bound = malloc(sizeof(float) * ny);
	CHECK(a && b && y && yr && bound, "out of memory");
	for (size_t i = 0; i < na; i++)
		a[i] = rnd();
	for (size_t i = 0; i < nb; i++)
		b[i] = rnd();
	for (size_t i = 0; i < ny; i++)
		y[i] = yr[i] = SENTINEL;
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++)
			y[i * ldy + j] = yr[i * ldy + j] = rnd();
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			double s = 0;
			for (int64_t kk = 0; kk < k; kk++)
				s += fabs(a[i * lda + kk] * (tb ? b[j * k + kk] : b[kk * n + j]));
			/* Each side is within k*u*s of the exact sum (u = 2^-24). */
			bound[i * ldy + j] = (float)(1.2e-7 * (double)(k + 2) * fabs(alpha) * s + 1e-6);
		}
	struct gemm_packed p;
	struct nn_err e = {0};
	CHECK(gemm_pack(&p, b, k, n, tb, &e) == NN_OK, "pack m=%lld n=%lld k=%lld: %s",
	      (long long)m, (long long)n, (long long)k, e.message);
	CHECK(p.bytes >= sizeof(float) * (size_t)(p.panels * k * GEMM_NR), "bytes %zu", p.bytes);
	p.avx512 = fast;
	gemm_run(&p, m, a, lda, alpha, y, ldy, acc);
	gemm_ref(m, n, k, a, lda, b, tb, alpha, yr, ldy, acc);
	int rc = 0;
	for (int64_t i = 0; i < m && !rc; i++)
		for (int64_t j = 0; j < ldy && !rc; j++) {
			float got = y[i * ldy + j], want = yr[i * ldy + j];
			if (j >= n) {
				if (got != SENTINEL) {
					fprintf(stderr, "padding written at [%lld,%lld]\n", (long long)i,
						(long long)j);
					rc = 1;
				}
			} else if (!(fabsf(got - want) <= bound[i * ldy + j])) {
				fprintf(stderr,
					"m=%lld n=%lld k=%lld tb=%d alpha=%g acc=%d fast=%d: [%lld,%lld] "
					"%.9g vs %.9g\n",
					(long long)m, (long long)n, (long long)k, tb, alpha, acc, fast,
					(long long)i, (long long)j, got, want);
				rc = 1;
			}
		}
	if (y[m * ldy] != SENTINEL) {
		fprintf(stderr, "wrote past the last row\n");
		rc = 1;
	}
	gemm_packed_free(&p);
	free(a);
	free(b);
	free(y);
	free(yr);
	free(bound);
	return rc;
}

static int run_shapes(bool fast)
{
	static const int64_t ms[] = {1, 2, 5, 7, 8, 9, 13, 16, 64, 67};
	static const int64_t ns[] = {1, 3, 10, 15, 16, 17, 31, 32, 33, 48, 100, 130};
	static const int64_t ks[] = {1, 2, 7, 16, 100, 301};
	static const float alphas[] = {1.0f, 0.5f, -2.0f};
	int count = 0;
	for (size_t im = 0; im < sizeof ms / sizeof ms[0]; im++)
		for (size_t in = 0; in < sizeof ns / sizeof ns[0]; in++)
			for (size_t ik = 0; ik < sizeof ks / sizeof ks[0]; ik++) {
				/* Vary the flags over the grid rather than crossing them all. */
				size_t v = im + in * 3 + ik * 7;
				bool tb = v & 1, acc = (v >> 1) & 1;
				float alpha = alphas[v % 3];
				if (one_case(ms[im], ns[in], ks[ik], tb, alpha, acc, fast))
					return 1;
				count++;
			}
	/* The executor's MLP layers, every flag combination. */
	static const int64_t mlp[][3] = {{64, 300, 784}, {64, 100, 300}, {64, 10, 100}, {1, 300, 784}};
	for (size_t s = 0; s < 4; s++)
		for (int f = 0; f < 8; f++) {
			if (one_case(mlp[s][0], mlp[s][1], mlp[s][2], f & 1, alphas[(f >> 1) % 3],
				     (f >> 2) & 1, fast))
				return 1;
			count++;
		}
	printf("%d shapes match the reference (%s kernel)\n", count, fast ? "avx512" : "portable");
	return 0;
}

static int case_fast_matches_reference(void)
{
	if (!gemm_fast_available()) {
		printf("no avx512f on this CPU: skipped\n");
		return 77;
	}
	return run_shapes(true);
}

static int case_portable_matches_reference(void)
{
	return run_shapes(false);
}

static int case_m_zero_writes_nothing(void)
{
	float b[6] = {1, 2, 3, 4, 5, 6}, y[2] = {SENTINEL, SENTINEL};
	struct gemm_packed p;
	struct nn_err e = {0};
	CHECK(gemm_pack(&p, b, 2, 3, false, &e) == NN_OK, "%s", e.message);
	gemm_run(&p, 0, b, 2, 1.0f, y, 3, false);
	CHECK(y[0] == SENTINEL && y[1] == SENTINEL, "y written for m = 0");
	gemm_packed_free(&p);
	CHECK(p.data == NULL, "free leaves data set");
	return 0;
}

static int case_pack_rejects_empty_and_oversized(void)
{
	float b[1] = {1};
	struct gemm_packed p;
	struct nn_err e = {0};
	CHECK(gemm_pack(&p, b, 0, 4, false, &e) == NN_EINVAL, "k = 0 accepted");
	CHECK(p.data == NULL, "data set on failure");
	CHECK(gemm_pack(&p, b, 4, 0, true, &e) == NN_EINVAL, "n = 0 accepted");
	/* Sizes whose byte count overflows: rejected before any allocation or read. */
	CHECK(gemm_pack(&p, b, INT64_MAX / 64, 64, false, &e) == NN_EINVAL, "overflow accepted");
	CHECK(strstr(e.message, "too large") != NULL, "message: %s", e.message);
	CHECK(p.data == NULL, "data set on failure");
	return 0;
}

/* Runs the plan once with `threads` OpenBLAS threads; *outs gets malloc'd
 * copies of every float output (caller frees), *n_outs their count. */
static int run_plan(struct exec_plan *p, struct tensor *in, size_t ni, int threads, float ***outs,
		    size_t **lens)
{
	struct nn_err e = {0};
	size_t no = exec_output_count(p);
	struct tensor out[8];
	CHECK(no <= 8, "too many outputs");
	openblas_set_num_threads(threads);
	CHECK(exec_run(p, in, ni, out, no, &e) == NN_OK, "run: %s", e.message);
	*outs = calloc(no, sizeof(float *));
	*lens = calloc(no, sizeof(size_t));
	CHECK(*outs && *lens, "out of memory");
	for (size_t i = 0; i < no; i++) {
		CHECK(out[i].dtype == DT_FLOAT, "output %zu not float", i);
		size_t n = (size_t)tensor_numel(&out[i]);
		(*outs)[i] = malloc(sizeof(float) * (n ? n : 1));
		CHECK((*outs)[i], "out of memory");
		memcpy((*outs)[i], out[i].data, sizeof(float) * n);
		(*lens)[i] = n;
	}
	return 0;
}

/* argv: model path, batch, minimum packed bytes the plan must count. */
static int one_model(const char *path, int64_t batch, size_t min_packed)
{
	struct onnx_model *m = NULL;
	struct exec_plan *p = NULL;
	struct nn_err e = {0};
	CHECK(onnx_load_file(path, &m, &e) == NN_OK, "%s: %s", path, e.message);
	CHECK(exec_compile(m, batch, &p, &e) == NN_OK, "%s: compile: %s", path, e.message);
	size_t ni = exec_input_count(p), no = exec_output_count(p);
	struct tensor in[8];
	CHECK(ni <= 8, "too many inputs");
	for (size_t i = 0; i < ni; i++) {
		in[i] = *exec_input_spec(p, i);
		CHECK(in[i].dtype == DT_FLOAT, "input %zu not float", i);
		size_t n = (size_t)tensor_numel(&in[i]);
		float *d = malloc(sizeof(float) * (n ? n : 1));
		CHECK(d, "out of memory");
		for (size_t j = 0; j < n; j++)
			d[j] = rnd();
		in[i].data = d;
	}
	float **fast = NULL, **blas = NULL;
	size_t *lf = NULL, *lb = NULL;
	int rc = run_plan(p, in, ni, 1, &fast, &lf);
	if (!rc)
		rc = run_plan(p, in, ni, 2, &blas, &lb);
	if (!rc && openblas_get_num_threads() < 2)
		printf("%s: OpenBLAS has one thread here; both runs took the same path\n", path);
	if (!rc && gemm_fast_available() && exec_plan_bytes(p) < min_packed) {
		fprintf(stderr, "%s: plan bytes %zu do not count the packed weights (>= %zu)\n",
			path, exec_plan_bytes(p), min_packed);
		rc = 1;
	}
	for (size_t i = 0; !rc && i < no; i++) {
		double maxd = 0;
		for (size_t j = 0; j < lf[i]; j++) {
			double d = fabs((double)fast[i][j] - blas[i][j]);
			if (!(d <= 1e-5 * (1.0 + fabs(blas[i][j])))) {
				fprintf(stderr, "%s output %zu [%zu]: %.9g vs %.9g\n", path, i, j,
					fast[i][j], blas[i][j]);
				rc = 1;
				break;
			}
			maxd = d > maxd ? d : maxd;
		}
		if (!rc)
			printf("%s output %zu: %zu values, max |packed - blas| %.3g\n", path, i,
			       lf[i], maxd);
	}
	for (size_t i = 0; i < no; i++) {
		if (fast)
			free(fast[i]);
		if (blas)
			free(blas[i]);
	}
	free(fast);
	free(blas);
	free(lf);
	free(lb);
	for (size_t i = 0; i < ni; i++)
		free(in[i].data);
	exec_free(p);
	onnx_free(m);
	return rc;
}

static int case_exec_packed_matches_blas(int argc, char **argv)
{
	CHECK(argc >= 4, "usage: test_gemm exec_packed_matches_blas LENET300 MATMUL_MODEL");
	/* lenet300: packed 784x320 + 300x128 + 100x32 floats; exec_matmul: 4x32. */
	size_t lenet_packed = sizeof(float) * (784 * 320 + 300 * 128 + 100 * 32);
	if (one_model(argv[2], 64, lenet_packed) || one_model(argv[2], 7, lenet_packed))
		return 1;
	return one_model(argv[3], 1, sizeof(float) * 4 * 32);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_gemm CASE\n");
		return 2;
	}
	static const struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"fast_matches_reference", case_fast_matches_reference},
		{"portable_matches_reference", case_portable_matches_reference},
		{"m_zero_writes_nothing", case_m_zero_writes_nothing},
		{"pack_rejects_empty_and_oversized", case_pack_rejects_empty_and_oversized},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (strcmp(argv[1], cases[i].name) == 0)
			return cases[i].fn();
	if (strcmp(argv[1], "exec_packed_matches_blas") == 0)
		return case_exec_packed_matches_blas(argc, argv);
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
