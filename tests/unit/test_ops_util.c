/* engine/ops_util.c: the vectorised erf and GELU against erf() in double on a
 * dense grid, on every path the CPU has (scalar, AVX2+FMA, AVX-512), with the
 * error bound ops_util.h documents; odd lengths exercise the tails. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ops_util.h"

/* [-6, 6] in steps of 2^-14 (196,609 points), then the special values. */
#define GRID_STEP (1.0 / 16384.0)
#define ERF_MAX_ABS 5e-7

static const char *simd_name(enum ops_simd s)
{
	return s == OPS_SIMD_AVX512 ? "avx512" : s == OPS_SIMD_AVX2 ? "avx2" : "scalar";
}

static int erf_paths_within_bound(void)
{
	int64_t n = (int64_t)(12.0 / GRID_STEP) + 1;
	float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
	CHECK(x && y, "out of memory");
	for (int64_t i = 0; i < n; i++)
		x[i] = (float)(-6.0 + (double)i * GRID_STEP);
	enum ops_simd best = ops_simd_best();
	for (int s = OPS_SIMD_SCALAR; s <= (int)best; s++) {
		ops_erf_simd((enum ops_simd)s, x, y, n);
		double worst = 0.0, at = 0.0;
		for (int64_t i = 0; i < n; i++) {
			double d = fabs((double)y[i] - erf((double)x[i]));
			if (d > worst)
				worst = d, at = x[i];
		}
		printf("erf %s: max abs error %.3g at x = %.6f over %lld points\n",
		       simd_name((enum ops_simd)s), worst, at, (long long)n);
		CHECK(worst <= ERF_MAX_ABS, "%s erf error %.3g at %g", simd_name((enum ops_simd)s),
		      worst, at);
		/* odd symmetry and the saturated ends */
		float sv[7] = {0.0f, -0.0f, 1e-30f, -1e-30f, 50.0f, -50.0f, INFINITY}, so[7];
		ops_erf_simd((enum ops_simd)s, sv, so, 7);
		CHECK(so[0] == 0.0f && so[1] == 0.0f, "erf(0) = %g, erf(-0) = %g", so[0], so[1]);
		CHECK(fabs(so[2] - 1.1283792e-30) < 1e-36 && so[3] == -so[2], "tiny: %g %g", so[2],
		      so[3]);
		CHECK(so[4] == 1.0f && so[5] == -1.0f && so[6] == 1.0f, "ends: %g %g %g", so[4],
		      so[5], so[6]);
		float nan_in = NAN, nan_out = 0.0f;
		ops_erf_simd((enum ops_simd)s, &nan_in, &nan_out, 1);
		CHECK(isnan(nan_out), "erf(NaN) = %g on %s", nan_out, simd_name((enum ops_simd)s));
	}
	free(x);
	free(y);
	return 0;
}

static int gelu_paths_match_double(void)
{
	int64_t n = (int64_t)(20.0 / GRID_STEP) + 1;
	float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
	CHECK(x && y, "out of memory");
	for (int64_t i = 0; i < n; i++)
		x[i] = (float)(-10.0 + (double)i * GRID_STEP);
	enum ops_simd best = ops_simd_best();
	for (int s = OPS_SIMD_SCALAR; s <= (int)best; s++) {
		/* lengths 1..n exercise every tail */
		ops_gelu_simd((enum ops_simd)s, x, y, n);
		double worst = 0.0, at = 0.0;
		for (int64_t i = 0; i < n; i++) {
			double v = x[i], ref = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
			/* |x|/2 * erf's error, plus float rounding of the product */
			double d = fabs((double)y[i] - ref) / (fabs(v) * 0.5 + 1e-30);
			double tol = ERF_MAX_ABS + 4e-7 / (fabs(v) * 0.5 + 1e-30) * fabs(ref);
			if (d > worst)
				worst = d, at = v;
			CHECK(d <= tol || fabs((double)y[i] - ref) < 1e-37, "%s gelu(%g) = %.9g, %.9g",
			      simd_name((enum ops_simd)s), v, y[i], ref);
		}
		printf("gelu %s: max |err| / (|x|/2) %.3g at x = %.6f\n", simd_name((enum ops_simd)s),
		       worst, at);
		for (int64_t len = 1; len <= 40; len++) {
			float out[40];
			memset(out, 0x7f, sizeof out);
			ops_gelu_simd((enum ops_simd)s, x + 1000, out, len);
			for (int64_t i = 0; i < len; i++)
				CHECK(out[i] == y[1000 + i], "length %lld element %lld differs",
				      (long long)len, (long long)i);
			CHECK(len == 40 || out[len] != y[1000 + len], "wrote past length %lld",
			      (long long)len);
		}
	}
	free(x);
	free(y);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	if (!strcmp(argv[1], "erf"))
		return erf_paths_within_bound();
	if (!strcmp(argv[1], "gelu"))
		return gelu_paths_match_double();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
