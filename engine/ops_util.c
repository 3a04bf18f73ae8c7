/* ops_util: helpers shared by the operator modules (see ops_util.h). */
#include "ops_util.h"

#include <string.h>

bool ops_broadcast_shape(const struct tensor *a, const struct tensor *b, struct tensor *out)
{
	int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
	int64_t shape[TENSOR_MAX_DIMS];
	for (int i = 0; i < nd; i++) {
		int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
		int64_t da = ia >= 0 ? a->shape[ia] : 1;
		int64_t db = ib >= 0 ? b->shape[ib] : 1;
		if (da == db || db == 1)
			shape[i] = da;
		else if (da == 1)
			shape[i] = db;
		else
			return false;
	}
	out->ndim = nd;
	memcpy(out->shape, shape, sizeof(int64_t) * (size_t)nd);
	return true;
}

int64_t ops_int_at(const struct tensor *t, int64_t i)
{
	switch (t->dtype) {
	case DT_INT64:
		return ((const int64_t *)t->data)[i];
	case DT_INT32:
		return ((const int32_t *)t->data)[i];
	case DT_INT16:
		return ((const int16_t *)t->data)[i];
	case DT_INT8:
		return ((const int8_t *)t->data)[i];
	case DT_UINT8:
	case DT_BOOL:
		return ((const uint8_t *)t->data)[i];
	case DT_UINT16:
		return ((const uint16_t *)t->data)[i];
	case DT_UINT32:
		return ((const uint32_t *)t->data)[i];
	case DT_UINT64:
		return (int64_t)((const uint64_t *)t->data)[i];
	default:
		return 0;
	}
}

/* ---- erf and GELU ----
 *
 * erf(x) ~ x * P(x^2) / Q(x^2) with x clamped to [-4, 4]: the minimax
 * rational form Eigen uses for float erf (generic_fast_erf_float), degree
 * 6 in x^2 over degree 4. Clamping is exact in float: erf(4) rounds to 1. */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define OPS_X86 1
#endif

#define ERF_A13 (-2.72614225801306e-10f)
#define ERF_A11 (2.77068142495902e-08f)
#define ERF_A9 (-2.10102402082508e-06f)
#define ERF_A7 (-5.69250639462346e-05f)
#define ERF_A5 (-7.34990630326855e-04f)
#define ERF_A3 (-2.95459980854025e-03f)
#define ERF_A1 (-1.60960333262415e-02f)
#define ERF_B8 (-1.45660718464996e-05f)
#define ERF_B6 (-2.13374055278905e-04f)
#define ERF_B4 (-1.68282697438203e-03f)
#define ERF_B2 (-7.37332916720468e-03f)
#define ERF_B0 (-1.42647390514189e-02f)
#define GELU_RSQRT2 0.70710678118654752f

static float erf_scalar(float x)
{
	if (x != x)
		return x;
	float c = x < -4.0f ? -4.0f : x > 4.0f ? 4.0f : x;
	float x2 = c * c;
	float p = x2 * ERF_A13 + ERF_A11;
	p = p * x2 + ERF_A9;
	p = p * x2 + ERF_A7;
	p = p * x2 + ERF_A5;
	p = p * x2 + ERF_A3;
	p = p * x2 + ERF_A1;
	p = p * c;
	float q = x2 * ERF_B8 + ERF_B6;
	q = q * x2 + ERF_B4;
	q = q * x2 + ERF_B2;
	q = q * x2 + ERF_B0;
	return p / q;
}

static void erf_portable(const float *x, float *y, int64_t n, bool gelu)
{
	for (int64_t i = 0; i < n; i++) {
		float v = x[i];
		y[i] = gelu ? 0.5f * v * (1.0f + erf_scalar(v * GELU_RSQRT2)) : erf_scalar(v);
	}
}

#ifdef OPS_X86
/* NaN inputs: min/max return their second operand when one is NaN, so the
 * clamp is written with x second and NaN propagates through the arithmetic. */
__attribute__((target("avx512f"))) static void erf_avx512(const float *x, float *y, int64_t n,
							   bool gelu)
{
	const __m512 lo = _mm512_set1_ps(-4.0f), hi = _mm512_set1_ps(4.0f);
	const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
	const __m512 rs2 = _mm512_set1_ps(GELU_RSQRT2);
	for (int64_t i = 0; i < n; i += 16) {
		int64_t left = n - i;
		__mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
		__m512 v = _mm512_maskz_loadu_ps(m, x + i);
		__m512 t = gelu ? _mm512_mul_ps(v, rs2) : v;
		__m512 c = _mm512_min_ps(hi, _mm512_max_ps(lo, t));
		__m512 x2 = _mm512_mul_ps(c, c);
		__m512 p = _mm512_fmadd_ps(x2, _mm512_set1_ps(ERF_A13), _mm512_set1_ps(ERF_A11));
		p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(ERF_A9));
		p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(ERF_A7));
		p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(ERF_A5));
		p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(ERF_A3));
		p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(ERF_A1));
		p = _mm512_mul_ps(p, c);
		__m512 q = _mm512_fmadd_ps(x2, _mm512_set1_ps(ERF_B8), _mm512_set1_ps(ERF_B6));
		q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(ERF_B4));
		q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(ERF_B2));
		q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(ERF_B0));
		__m512 r = _mm512_div_ps(p, q);
		if (gelu)
			r = _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, r));
		_mm512_mask_storeu_ps(y + i, m, r);
	}
}

__attribute__((target("avx2,fma"))) static void erf_avx2(const float *x, float *y, int64_t n,
							  bool gelu)
{
	const __m256 lo = _mm256_set1_ps(-4.0f), hi = _mm256_set1_ps(4.0f);
	const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
	const __m256 rs2 = _mm256_set1_ps(GELU_RSQRT2);
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_loadu_ps(x + i);
		__m256 t = gelu ? _mm256_mul_ps(v, rs2) : v;
		__m256 c = _mm256_min_ps(hi, _mm256_max_ps(lo, t));
		__m256 x2 = _mm256_mul_ps(c, c);
		__m256 p = _mm256_fmadd_ps(x2, _mm256_set1_ps(ERF_A13), _mm256_set1_ps(ERF_A11));
		p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(ERF_A9));
		p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(ERF_A7));
		p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(ERF_A5));
		p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(ERF_A3));
		p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(ERF_A1));
		p = _mm256_mul_ps(p, c);
		__m256 q = _mm256_fmadd_ps(x2, _mm256_set1_ps(ERF_B8), _mm256_set1_ps(ERF_B6));
		q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(ERF_B4));
		q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(ERF_B2));
		q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(ERF_B0));
		__m256 r = _mm256_div_ps(p, q);
		if (gelu)
			r = _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, r));
		_mm256_storeu_ps(y + i, r);
	}
	if (i < n) { /* the tail through a padded block keeps the FMA rounding */
		float bx[8] = {0}, by[8];
		memcpy(bx, x + i, sizeof(float) * (size_t)(n - i));
		erf_avx2(bx, by, 8, gelu);
		memcpy(y + i, by, sizeof(float) * (size_t)(n - i));
	}
}
#endif

enum ops_simd ops_simd_best(void)
{
#ifdef OPS_X86
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f"))
		return OPS_SIMD_AVX512;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return OPS_SIMD_AVX2;
#endif
	return OPS_SIMD_SCALAR;
}

static void erf_dispatch(enum ops_simd s, const float *x, float *y, int64_t n, bool gelu)
{
	enum ops_simd best = ops_simd_best();
	if (s > best)
		s = best;
#ifdef OPS_X86
	if (s == OPS_SIMD_AVX512) {
		erf_avx512(x, y, n, gelu);
		return;
	}
	if (s == OPS_SIMD_AVX2) {
		erf_avx2(x, y, n, gelu);
		return;
	}
#endif
	erf_portable(x, y, n, gelu);
}

void ops_erf_simd(enum ops_simd s, const float *x, float *y, int64_t n)
{
	erf_dispatch(s, x, y, n, false);
}

void ops_gelu_simd(enum ops_simd s, const float *x, float *y, int64_t n)
{
	erf_dispatch(s, x, y, n, true);
}

void ops_erf(const float *x, float *y, int64_t n)
{
	erf_dispatch(OPS_SIMD_AVX512, x, y, n, false);
}

void ops_gelu(const float *x, float *y, int64_t n)
{
	erf_dispatch(OPS_SIMD_AVX512, x, y, n, true);
}
