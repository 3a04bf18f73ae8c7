/* quant_int4: int4 block-wise weight-only quantization (see quant_int4.h). */
#include "quant_int4.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant_bias.h"

/* Scale / reciprocal / zero point of one block from its range. Called once
 * per block: comparisons rather than fmaxf/fminf, which gcc leaves as libm
 * calls (NaN rules); mn/mx are finite here or the block is rejected, and a
 * zero's sign cannot change a scale, zero point or stored nibble. */
static inline void block_params(float mn, float mx, bool sym, float *scale, float *inv,
				float *zp)
{
	float s;
	*zp = 0;
	if (sym) {
		float a = fabsf(mn), b = fabsf(mx);
		s = (a > b ? a : b) / 7.0f;
	} else {
		float lo = mn < 0 ? mn : 0, hi = mx > 0 ? mx : 0;
		s = (hi - lo) / 15.0f;
		if (isnormal(s) && isnormal(1.0f / s)) {
			float z = rintf(-lo / s);
			*zp = z < 0 ? 0 : z > 15 ? 15 : z;
		}
	}
	if (!isnormal(s) || !isnormal(1.0f / s)) { /* zeros (or denormal range): q = zp */
		*scale = 1.0f, *inv = 0.0f, *zp = 0;
		return;
	}
	*scale = s, *inv = 1.0f / s;
}

/* Round half to even for |y| < 2^22 (every y here is within +-16): adding
 * and subtracting 1.5 * 2^23 leaves the integer nearest y, ties to even, in
 * the default rounding mode: the same result as rintf and _mm256_round_ps. */
#define ROUND_MAGIC 12582912.0f

/* Quantizes n elements x[k] with parameters inv/zf/sc[k * pstride] (pstride
 * 0: one block's parameters for all; 1: a row across columns) into
 * q[k] = (value + offset) & 15; adds the squared errors to *sq and maxes the
 * abs error into *me. */
static void q4_run(const float *restrict x, size_t n, const float *inv, const float *zf,
		   const float *sc, size_t pstride, float lo, float hi, unsigned off,
		   uint8_t *restrict q, double *sq, float *me)
{
	float s2 = 0, m = *me;
	for (size_t k = 0; k < n; k++) {
		size_t j = k * pstride;
		float r = ((x[k] * inv[j] + ROUND_MAGIC) - ROUND_MAGIC) + zf[j];
		r = r < lo ? lo : r > hi ? hi : r;
		float d = (r - zf[j]) * sc[j] - x[k];
		s2 += d * d;
		d = fabsf(d);
		m = d > m ? d : m;
		q[k] = (uint8_t)(((unsigned)(int)r + off) & 15u);
	}
	*sq += s2;
	*me = m;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_Q4_AVX2 1

/* q4_run for n a multiple of 8 with AVX2 (no FMA, so every value and error
 * is the scalar version's; only the error sums' order differs). */
__attribute__((target("avx2"))) static void
q4_run_avx2(const float *restrict x, size_t n, const float *inv, const float *zf,
	    const float *sc, size_t pstride, float lo, float hi, unsigned off, uint8_t *restrict q,
	    double *sq, float *me)
{
	__m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
	__m256 acc = _mm256_setzero_ps(), mx = _mm256_setzero_ps();
	__m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	__m256i voff = _mm256_set1_epi32((int)off), m15 = _mm256_set1_epi32(15);
	__m256 vi = _mm256_set1_ps(inv[0]), vz = _mm256_set1_ps(zf[0]), vs = _mm256_set1_ps(sc[0]);
	for (size_t k = 0; k < n; k += 8) {
		if (pstride) {
			vi = _mm256_loadu_ps(inv + k);
			vz = _mm256_loadu_ps(zf + k);
			vs = _mm256_loadu_ps(sc + k);
		}
		__m256 xv = _mm256_loadu_ps(x + k);
		__m256 r = _mm256_round_ps(_mm256_mul_ps(xv, vi),
					   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
		r = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(r, vz), vlo), vhi);
		__m256 d = _mm256_sub_ps(_mm256_mul_ps(_mm256_sub_ps(r, vz), vs), xv);
		acc = _mm256_add_ps(acc, _mm256_mul_ps(d, d));
		mx = _mm256_max_ps(mx, _mm256_and_ps(d, absmask));
		__m256i qi = _mm256_and_si256(_mm256_add_epi32(_mm256_cvtps_epi32(r), voff), m15);
		__m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(qi),
					       _mm256_extracti128_si256(qi, 1));
		_mm_storel_epi64((__m128i *)(void *)(q + k), _mm_packus_epi16(w16, w16));
	}
	float a[8], b[8];
	_mm256_storeu_ps(a, acc);
	_mm256_storeu_ps(b, mx);
	float s2 = 0, m = *me;
	for (int i = 0; i < 8; i++) {
		s2 += a[i];
		m = b[i] > m ? b[i] : m;
	}
	*sq += s2;
	*me = m;
}

/* Range of n contiguous floats (n a multiple of 8); returns whether any is
 * NaN. Same min/max as the scalar loop up to the sign of a zero. */
__attribute__((target("avx2"))) static bool range_avx2(const float *x, size_t n, float *mn,
						       float *mx)
{
	__m256 a = _mm256_set1_ps(INFINITY), z = _mm256_set1_ps(-INFINITY);
	__m256 nan = _mm256_setzero_ps();
	for (size_t k = 0; k < n; k += 8) {
		__m256 v = _mm256_loadu_ps(x + k);
		nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
		a = _mm256_min_ps(v, a); /* v < a ? v : a, the scalar rule */
		z = _mm256_max_ps(v, z);
	}
	float la[8], lz[8];
	_mm256_storeu_ps(la, a);
	_mm256_storeu_ps(lz, z);
	float ra = la[0], rz = lz[0];
	for (int i = 1; i < 8; i++) {
		ra = la[i] < ra ? la[i] : ra;
		rz = lz[i] > rz ? lz[i] : rz;
	}
	*mn = ra, *mx = rz;
	return _mm256_movemask_ps(nan) != 0;
}

/* Column ranges of cnt rows of `inner` floats (row stride inner) into mn/mx
 * for columns [0, inner & ~7), exactly as the scalar loop (min_ps(x, m) is
 * x < m ? x : m); returns whether any is NaN. */
__attribute__((target("avx2"))) static bool ranges_avx2(const float *base, size_t cnt,
							size_t inner, float *mn, float *mx)
{
	size_t v = inner & ~(size_t)7;
	__m256 nan = _mm256_setzero_ps();
	for (size_t i = 0; i < v; i += 8) {
		__m256 a = _mm256_set1_ps(INFINITY), z = _mm256_set1_ps(-INFINITY);
		for (size_t l = 0; l < cnt; l++) {
			__m256 x = _mm256_loadu_ps(base + l * inner + i);
			nan = _mm256_or_ps(nan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
			a = _mm256_min_ps(x, a);
			z = _mm256_max_ps(x, z);
		}
		_mm256_storeu_ps(mn + i, a);
		_mm256_storeu_ps(mx + i, z);
	}
	return _mm256_movemask_ps(nan) != 0;
}

/* block_params for columns [0, n) (n a multiple of 8), bit for bit: the
 * same IEEE divisions, and blends written as the scalar comparisons. Returns
 * whether any range is not finite; folds used scales into *smin / *smax. */
__attribute__((target("avx2"))) static bool params_avx2(const float *mn, const float *mx,
							size_t n, bool sym, float *scale,
							float *inv, float *zp, float *smin,
							float *smax)
{
	const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	const __m256 fmin = _mm256_set1_ps(0x1p-126f), fmax = _mm256_set1_ps(0x1.fffffep127f);
	const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
	__m256 bad = zero, vmin = _mm256_set1_ps(*smin), vmax = _mm256_set1_ps(*smax);
	for (size_t i = 0; i < n; i += 8) {
		__m256 a = _mm256_loadu_ps(mn + i), b = _mm256_loadu_ps(mx + i);
		__m256 aa = _mm256_and_ps(a, absmask), ab = _mm256_and_ps(b, absmask);
		bad = _mm256_or_ps(bad, _mm256_cmp_ps(aa, fmax, _CMP_NLE_UQ));
		bad = _mm256_or_ps(bad, _mm256_cmp_ps(ab, fmax, _CMP_NLE_UQ));
		__m256 s, lo = zero;
		if (sym) {
			s = _mm256_div_ps(_mm256_max_ps(aa, ab), _mm256_set1_ps(7.0f));
		} else {
			lo = _mm256_min_ps(a, zero); /* mn < 0 ? mn : 0 */
			__m256 hi = _mm256_max_ps(b, zero);
			s = _mm256_div_ps(_mm256_sub_ps(hi, lo), _mm256_set1_ps(15.0f));
		}
		__m256 r = _mm256_div_ps(one, s);
		__m256 as = _mm256_and_ps(s, absmask), ar = _mm256_and_ps(r, absmask);
		__m256 ok = _mm256_and_ps(
			_mm256_and_ps(_mm256_cmp_ps(as, fmin, _CMP_GE_OQ),
				      _mm256_cmp_ps(as, fmax, _CMP_LE_OQ)),
			_mm256_and_ps(_mm256_cmp_ps(ar, fmin, _CMP_GE_OQ),
				      _mm256_cmp_ps(ar, fmax, _CMP_LE_OQ)));
		__m256 z = zero;
		if (!sym) {
			__m256 q = _mm256_round_ps(_mm256_div_ps(_mm256_xor_ps(lo, _mm256_set1_ps(-0.0f)), s),
						   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
			/* z < 0 ? 0 : z > 15 ? 15 : z */
			q = _mm256_blendv_ps(q, zero, _mm256_cmp_ps(q, zero, _CMP_LT_OQ));
			q = _mm256_blendv_ps(q, _mm256_set1_ps(15.0f),
					     _mm256_cmp_ps(q, _mm256_set1_ps(15.0f), _CMP_GT_OQ));
			z = _mm256_and_ps(q, ok);
		}
		__m256 sv = _mm256_blendv_ps(one, s, ok);
		_mm256_storeu_ps(scale + i, sv);
		_mm256_storeu_ps(inv + i, _mm256_and_ps(r, ok));
		_mm256_storeu_ps(zp + i, z);
		/* used scales only (inv != 0 exactly when ok) */
		vmin = _mm256_blendv_ps(vmin, _mm256_min_ps(sv, vmin), ok);
		vmax = _mm256_blendv_ps(vmax, _mm256_max_ps(sv, vmax), ok);
	}
	float l[8], h[8];
	_mm256_storeu_ps(l, vmin);
	_mm256_storeu_ps(h, vmax);
	for (int k = 0; k < 8; k++) {
		*smin = l[k] < *smin ? l[k] : *smin;
		*smax = h[k] > *smax ? h[k] : *smax;
	}
	return _mm256_movemask_ps(bad) != 0;
}
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_Q4_AVX512 1
/* AVX-512 paths (16 floats per vector; vpmovdb/vpmovqb narrow int32/int64 to
 * bytes in one instruction). Same IEEE operations per element as the AVX2
 * and scalar code (c11 mode contracts nothing into an FMA), and the error
 * sums are added in the AVX2 code's order: per 8-lane accumulator, the low
 * then the high half of each 16-float vector, then the 8 lanes one after
 * the other, then into the double sum. Values, scales, zero points and
 * metrics are therefore bit-identical to the AVX2 path; tests compare them.
 * Needs AVX-512F and DQ (float and/xor on 512-bit vectors). */
#define T512 __attribute__((target("avx512f,avx512dq")))
/* Software prefetch distance of the first read of each weight, in floats
 * (4 KiB): model weights live in protobuf-c's 4 KiB-page buffers, where the
 * hardware prefetchers stop at every page boundary (as in quant.c). A
 * prefetch never faults, so running past the end of a weight is harmless. */
#define Q4_PF 1024

/* One vector of the 16 per-block ranges (lanes in block order) -> scale,
 * reciprocal and zero point per lane, as block_params computes them one at a
 * time: for symmetric ranges mn is 0 and mx the largest magnitude. Returns
 * the lanes whose scale is used (a normal scale with a normal reciprocal). */
T512 static __mmask16 params16(__m512 mn, __m512 mx, bool sym, __m512 *scale, __m512 *inv,
			       __m512 *zp)
{
	const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
	const __m512 fmin = _mm512_set1_ps(0x1p-126f), fmax = _mm512_set1_ps(0x1.fffffep127f);
	const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
	__m512 s, lo = zero;
	if (sym) {
		s = _mm512_div_ps(_mm512_max_ps(_mm512_and_ps(mn, absmask),
						_mm512_and_ps(mx, absmask)),
				  _mm512_set1_ps(7.0f));
	} else {
		lo = _mm512_min_ps(mn, zero); /* mn < 0 ? mn : 0 */
		__m512 hi = _mm512_max_ps(mx, zero);
		s = _mm512_div_ps(_mm512_sub_ps(hi, lo), _mm512_set1_ps(15.0f));
	}
	__m512 r = _mm512_div_ps(one, s);
	__m512 as = _mm512_and_ps(s, absmask), ar = _mm512_and_ps(r, absmask);
	__mmask16 ok = _mm512_cmp_ps_mask(as, fmin, _CMP_GE_OQ) &
		       _mm512_cmp_ps_mask(as, fmax, _CMP_LE_OQ) &
		       _mm512_cmp_ps_mask(ar, fmin, _CMP_GE_OQ) &
		       _mm512_cmp_ps_mask(ar, fmax, _CMP_LE_OQ);
	__m512 z = zero;
	if (!sym) {
		__m512 q = _mm512_roundscale_ps(
			_mm512_div_ps(_mm512_xor_ps(lo, _mm512_set1_ps(-0.0f)), s),
			_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
		/* z < 0 ? 0 : z > 15 ? 15 : z */
		q = _mm512_mask_mov_ps(q, _mm512_cmp_ps_mask(q, zero, _CMP_LT_OQ), zero);
		q = _mm512_mask_mov_ps(q, _mm512_cmp_ps_mask(q, _mm512_set1_ps(15.0f), _CMP_GT_OQ),
				       _mm512_set1_ps(15.0f));
		z = _mm512_maskz_mov_ps(ok, q);
	}
	*scale = _mm512_mask_mov_ps(one, ok, s);
	*inv = _mm512_maskz_mov_ps(ok, r);
	*zp = z;
	return ok;
}

/* One pair-merge step of the 16-vector reduction: op of the two shuffles. */
#define RED_STEP(op, a, b, sh, imm1, imm2) op(sh(a, b, imm1), sh(a, b, imm2))
#define SH128(a, b, imm) _mm512_shuffle_f32x4(a, b, imm)
#define SH32(a, b, imm) _mm512_shuffle_ps(a, b, imm)

/* Reduces each of v[0..15] to one value; lane i of the result holds v[b]'s
 * with b = (i >> 2) + 4 * (i & 3) (a 4x4 transpose: red16_order puts it
 * back). Four levels of shuffles, 45 operations for 16 vectors instead of
 * 16 horizontal reductions. */
#define DEFINE_RED16(name, op)                                                           \
	T512 static __m512 name(__m512 *v)                                               \
	{                                                                                \
		__m512 w[8], x[4], y[2];                                                 \
		for (int i = 0; i < 8; i++)                                              \
			w[i] = RED_STEP(op, v[2 * i], v[2 * i + 1], SH128, 0x44, 0xEE);  \
		for (int i = 0; i < 4; i++)                                              \
			x[i] = RED_STEP(op, w[2 * i], w[2 * i + 1], SH128, 0x88, 0xDD);  \
		for (int i = 0; i < 2; i++)                                              \
			y[i] = RED_STEP(op, x[2 * i], x[2 * i + 1], SH32, 0x44, 0xEE);   \
		return RED_STEP(op, y[0], y[1], SH32, 0x88, 0xDD);                       \
	}

T512 static inline __m512 max_bits(__m512 a, __m512 b)
{
	return _mm512_castsi512_ps(_mm512_max_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}
T512 static inline __m512 min_f(__m512 a, __m512 b)
{
	return _mm512_min_ps(a, b);
}
T512 static inline __m512 max_f(__m512 a, __m512 b)
{
	return _mm512_max_ps(a, b);
}
DEFINE_RED16(red16_maxbits, max_bits)
DEFINE_RED16(red16_min, min_f)
DEFINE_RED16(red16_max, max_f)

T512 static inline __m512 red16_order(__m512 z)
{
	const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
	return _mm512_permutexvar_ps(idx, z);
}

/* The 8-lane error accumulator of the AVX2 code, fed one 16-float vector of
 * squared errors: its low half, then its high half. */
T512 static inline __m256 acc_add16(__m256 acc, __m512 d2)
{
	acc = _mm256_add_ps(acc, _mm512_castps512_ps256(d2));
	return _mm256_add_ps(acc, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(d2), 1)));
}

/* Quantizes one 16-float vector: returns the nibble values (q + off) & 15
 * as int32 lanes, feeds the error accumulators. */
T512 static inline __m512i q16(__m512 xv, __m512 vi, __m512 vz, __m512 vs, bool sym, __m512 vlo,
			       __m512 vhi, __m512i voff, __m256 *acc, __m512 *mxe)
{
	const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
	__m512 r = _mm512_roundscale_ps(_mm512_mul_ps(xv, vi),
					_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512 d;
	if (sym) {
		/* |x * inv| <= 7 (+ 2 ulp) for a used scale, 0 otherwise: no clamp
		 * needed; r * s - x equals (r + 0 - 0) * s - x for every x (a -0
		 * from the rounding only differs when x is a zero: d is +0 both ways) */
		d = _mm512_sub_ps(_mm512_mul_ps(r, vs), xv);
	} else {
		r = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(r, vz), vlo), vhi);
		d = _mm512_sub_ps(_mm512_mul_ps(_mm512_sub_ps(r, vz), vs), xv);
	}
	*acc = acc_add16(*acc, _mm512_mul_ps(d, d));
	*mxe = _mm512_max_ps(*mxe, _mm512_and_ps(d, absmask));
	return _mm512_and_si512(_mm512_add_epi32(_mm512_cvtps_epi32(r), voff),
				_mm512_set1_epi32(15));
}

/* 16 nibble values (int32 lanes, each < 16) -> 8 bytes, low nibble first:
 * each 64-bit lane (even, odd) becomes even | odd << 4 in its low byte. */
T512 static inline void put8(uint8_t *out, __m512i qi)
{
	__m512i p = _mm512_or_si512(qi, _mm512_srli_epi64(qi, 28));
	_mm_storel_epi64((__m128i *)(void *)out, _mm512_cvtepi64_epi8(p));
}

/* The AVX2 code's horizontal sum: lane 0, then 1, ..., 7, in float. */
T512 static inline float lanes_sum8(__m256 acc)
{
	float a[8];
	_mm256_storeu_ps(a, acc);
	float s2 = 0;
	for (int i = 0; i < 8; i++)
		s2 += a[i];
	return s2;
}

/* Row path: nblk full blocks of `block` (a multiple of 16) contiguous floats
 * at x, 16 blocks at a time: their ranges reduced together (red16_*), their
 * parameters computed in one vector, then each block quantized with its
 * parameters broadcast. Output: packed nibbles at out (byte aligned) when
 * `nibbles`, else one byte per value. scales/zps: the blocks' parameters
 * (zps NULL when symmetric). Error sums go to *sq block by block (each
 * block's 8 lanes summed in order: the sixteen 8-lane sums are transposed
 * into 8 vectors and added lane-parallel, the same additions per block).
 * Returns false, with the group's outputs unwritten, when a block holds NaN
 * or Inf. out may overlay x (the floats are read before the nibbles of the
 * same elements are written, and a nibble's byte lies far behind them). */
T512 static bool rows512(const float *x, size_t nblk, size_t block, bool sym, unsigned off,
			 uint8_t *out, bool nibbles, float *scales, uint8_t *zps, double *sq,
			 float *me, float *smin, float *smax)
{
	const size_t nv = block / 16;
	const __m512i vabs = _mm512_set1_epi32(0x7fffffff), voff = _mm512_set1_epi32((int)off);
	const __m512 vlo = _mm512_set1_ps(sym ? -7.0f : 0.0f), vhi = _mm512_set1_ps(sym ? 7.0f : 15.0f);
	const __m512 zero = _mm512_setzero_ps();
	const __m512 fmax = _mm512_set1_ps(0x1.fffffep127f);
	const __m512 absmask = _mm512_castsi512_ps(vabs);
	const __m512i tlo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
	const __m512i thi = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
	__m512 vmin = _mm512_set1_ps(*smin), vmax = _mm512_set1_ps(*smax), mxe = zero;
	double s = *sq;
	for (size_t g0 = 0; g0 < nblk; g0 += 16) {
		size_t g = nblk - g0 < 16 ? nblk - g0 : 16;
		__mmask16 valid = (__mmask16)((1u << g) - 1);
		const float *xg = x + g0 * block;
		__m512 mn = zero, mx;
		if (sym) {
			__m512 v[16];
			for (size_t b = 0; b < 16; b++) {
				__m512i a = _mm512_setzero_si512();
				for (size_t k = 0; b < g && k < nv; k++) {
					_mm_prefetch((const char *)(xg + b * block + 16 * k + Q4_PF),
						     _MM_HINT_T0);
					a = _mm512_max_epi32(
						a, _mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(
									    xg + b * block + 16 * k)),
								    vabs));
				}
				v[b] = _mm512_castsi512_ps(a);
			}
			mx = red16_order(red16_maxbits(v));
			/* bits at or above +Inf's: Inf or NaN (unused lanes are 0) */
			if (_mm512_cmpge_epi32_mask(_mm512_castps_si512(mx),
						    _mm512_set1_epi32(0x7f800000)))
				return false;
		} else {
			__m512 a[16], z[16];
			__mmask16 nan = 0;
			for (size_t b = 0; b < 16; b++) {
				__m512 lo = _mm512_set1_ps(INFINITY), hi = _mm512_set1_ps(-INFINITY);
				if (b >= g)
					lo = hi = zero;
				for (size_t k = 0; b < g && k < nv; k++) {
					_mm_prefetch((const char *)(xg + b * block + 16 * k + Q4_PF),
						     _MM_HINT_T0);
					__m512 xv = _mm512_loadu_ps(xg + b * block + 16 * k);
					nan |= _mm512_cmp_ps_mask(xv, xv, _CMP_UNORD_Q);
					lo = _mm512_min_ps(xv, lo); /* xv < lo ? xv : lo */
					hi = _mm512_max_ps(xv, hi);
				}
				a[b] = lo, z[b] = hi;
			}
			mn = red16_order(red16_min(a));
			mx = red16_order(red16_max(z));
			if (nan || _mm512_cmp_ps_mask(_mm512_and_ps(mn, absmask), fmax, _CMP_NLE_UQ) ||
			    _mm512_cmp_ps_mask(_mm512_and_ps(mx, absmask), fmax, _CMP_NLE_UQ))
				return false;
		}
		__m512 vsc, vinv, vzp;
		__mmask16 ok = params16(mn, mx, sym, &vsc, &vinv, &vzp) & valid;
		_mm512_mask_storeu_ps(scales + g0, valid, vsc);
		if (zps)
			_mm512_mask_cvtepi32_storeu_epi8(zps + g0, valid, _mm512_cvtps_epi32(vzp));
		vmin = _mm512_mask_min_ps(vmin, ok, vsc, vmin);
		vmax = _mm512_mask_max_ps(vmax, ok, vsc, vmax);
		float fs[16], fi[16], fz[16];
		_mm512_storeu_ps(fs, vsc);
		_mm512_storeu_ps(fi, vinv);
		_mm512_storeu_ps(fz, vzp);
		__m512 p[8];
		for (size_t b = 0; b < 16; b += 2) {
			__m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
			for (size_t h = 0; h < 2 && b + h < g; h++) {
				size_t bb = b + h;
				const float *xb = xg + bb * block;
				__m512 vi = _mm512_set1_ps(fi[bb]), vs = _mm512_set1_ps(fs[bb]);
				__m512 vz = _mm512_set1_ps(fz[bb]);
				for (size_t k = 0; k < nv; k++) {
					__m512i qi = q16(_mm512_loadu_ps(xb + 16 * k), vi, vz, vs, sym,
							 vlo, vhi, voff, &acc[h], &mxe);
					if (nibbles)
						put8(out + (g0 + bb) * block / 2 + 8 * k, qi);
					else
						_mm_storeu_si128((__m128i *)(void *)(out + (g0 + bb) * block +
										   16 * k),
								 _mm512_cvtepi32_epi8(qi));
				}
			}
			p[b / 2] = _mm512_castpd_ps(_mm512_insertf64x4(
				_mm512_castpd256_pd512(_mm256_castps_pd(acc[0])),
				_mm256_castps_pd(acc[1]), 1));
		}
		/* 8x8 transposes (the two 256-bit halves: even and odd blocks):
		 * t[j] lane l holds lane j of block l < 8 ? 2l : 2(l - 8) + 1 */
		__m512 t[8], u[8];
		for (int i = 0; i < 4; i++) {
			t[2 * i] = _mm512_unpacklo_ps(p[2 * i], p[2 * i + 1]);
			t[2 * i + 1] = _mm512_unpackhi_ps(p[2 * i], p[2 * i + 1]);
		}
		for (int h = 0; h < 2; h++) {
			__m512 a0 = t[4 * h], a1 = t[4 * h + 1], a2 = t[4 * h + 2], a3 = t[4 * h + 3];
			u[4 * h + 0] = _mm512_shuffle_ps(a0, a2, 0x44);
			u[4 * h + 1] = _mm512_shuffle_ps(a0, a2, 0xEE);
			u[4 * h + 2] = _mm512_shuffle_ps(a1, a3, 0x44);
			u[4 * h + 3] = _mm512_shuffle_ps(a1, a3, 0xEE);
		}
		__m512 sum = _mm512_permutex2var_ps(u[0], tlo, u[4]);
		for (int j = 1; j < 8; j++)
			sum = _mm512_add_ps(sum, _mm512_permutex2var_ps(u[j & 3], j < 4 ? tlo : thi,
									u[4 + (j & 3)]));
		float s2[16];
		_mm512_storeu_ps(s2, sum);
		for (size_t b = 0; b < g; b++)
			s += s2[b % 2 ? 8 + b / 2 : b / 2];
	}
	*sq = s;
	float m = _mm512_reduce_max_ps(mxe);
	*me = m > *me ? m : *me;
	float l = _mm512_reduce_min_ps(vmin), h = _mm512_reduce_max_ps(vmax);
	*smin = l < *smin ? l : *smin;
	*smax = h > *smax ? h : *smax;
	return true;
}

/* Column path, ranges and parameters: cnt rows of `inner` floats (stride
 * inner) at base, columns [0, v16) (v16 a multiple of 16), read row by row
 * (a sequential stream) into the per-column maxima |w| (symmetric: kept as
 * the float bits in mx) or min/max; then the parameters of 16 columns at a
 * time into scale (the block row of the scales), inv, zf and zps. Returns
 * false on NaN or Inf. */
T512 static bool cols_params512(const float *base, size_t cnt, size_t inner, size_t v16, bool sym,
				float *mn, float *mx, float *scale, float *inv, float *zf,
				uint8_t *zps, float *smin, float *smax)
{
	const __m512i vabs = _mm512_set1_epi32(0x7fffffff);
	const __m512 absmask = _mm512_castsi512_ps(vabs);
	const __m512 fmax = _mm512_set1_ps(0x1.fffffep127f);
	__mmask16 nan = 0;
	if (sym) {
		for (size_t i = 0; i < v16; i += 16)
			_mm512_storeu_ps(mx + i, _mm512_setzero_ps());
		for (size_t l = 0; l < cnt; l++) {
			const float *row = base + l * inner;
			for (size_t i = 0; i < v16; i += 16) {
				_mm_prefetch((const char *)(row + i + Q4_PF), _MM_HINT_T0);
				__m512i a = _mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(row + i)),
							     vabs);
				_mm512_storeu_si512((void *)(mx + i),
						    _mm512_max_epi32(_mm512_loadu_si512(mx + i), a));
			}
		}
	} else {
		for (size_t i = 0; i < v16; i += 16) {
			_mm512_storeu_ps(mn + i, _mm512_set1_ps(INFINITY));
			_mm512_storeu_ps(mx + i, _mm512_set1_ps(-INFINITY));
		}
		for (size_t l = 0; l < cnt; l++) {
			const float *row = base + l * inner;
			for (size_t i = 0; i < v16; i += 16) {
				_mm_prefetch((const char *)(row + i + Q4_PF), _MM_HINT_T0);
				__m512 xv = _mm512_loadu_ps(row + i);
				nan |= _mm512_cmp_ps_mask(xv, xv, _CMP_UNORD_Q);
				_mm512_storeu_ps(mn + i, _mm512_min_ps(xv, _mm512_loadu_ps(mn + i)));
				_mm512_storeu_ps(mx + i, _mm512_max_ps(xv, _mm512_loadu_ps(mx + i)));
			}
		}
	}
	if (nan)
		return false;
	__m512 vmin = _mm512_set1_ps(*smin), vmax = _mm512_set1_ps(*smax);
	for (size_t i = 0; i < v16; i += 16) {
		__m512 a = sym ? _mm512_setzero_ps() : _mm512_loadu_ps(mn + i);
		__m512 b = _mm512_loadu_ps(mx + i);
		if (sym ? _mm512_cmpge_epi32_mask(_mm512_castps_si512(b), _mm512_set1_epi32(0x7f800000))
			: (_mm512_cmp_ps_mask(_mm512_and_ps(a, absmask), fmax, _CMP_NLE_UQ) |
			   _mm512_cmp_ps_mask(_mm512_and_ps(b, absmask), fmax, _CMP_NLE_UQ)))
			return false;
		__m512 vsc, vinv, vzp;
		__mmask16 ok = params16(a, b, sym, &vsc, &vinv, &vzp);
		_mm512_storeu_ps(scale + i, vsc);
		_mm512_storeu_ps(inv + i, vinv);
		_mm512_storeu_ps(zf + i, vzp);
		if (zps)
			_mm512_mask_cvtepi32_storeu_epi8(zps + i, 0xffff, _mm512_cvtps_epi32(vzp));
		vmin = _mm512_mask_min_ps(vmin, ok, vsc, vmin);
		vmax = _mm512_mask_max_ps(vmax, ok, vsc, vmax);
	}
	float l = _mm512_reduce_min_ps(vmin), h = _mm512_reduce_max_ps(vmax);
	*smin = l < *smin ? l : *smin;
	*smax = h > *smax ? h : *smax;
	return true;
}

/* Column path, one row: columns [0, v8) (v8 = inner & ~7) with the
 * per-column parameters, 16 at a time, then 8: nibbles to nib (byte
 * aligned) for the 16s when nib is not NULL, else bytes to q; the last 8
 * always to q[v16..v8). Returns the row's 8-lane error sum (the AVX2 code's
 * order: lane j takes columns j, 8 + j, 16 + j, ...). next (or NULL): the
 * same row of the next block, prefetched line by line so that its range
 * pass finds it in cache: the memory works while this compute-bound pass
 * runs from cache, instead of the two phases taking turns. */
T512 static float cols_row512(const float *row, size_t v8, const float *inv, const float *zf,
			      const float *sc, bool sym, unsigned off, uint8_t *nib, uint8_t *q,
			      const float *next, float *me)
{
	const __m512 vlo = _mm512_set1_ps(sym ? -7.0f : 0.0f), vhi = _mm512_set1_ps(sym ? 7.0f : 15.0f);
	const __m512i voff = _mm512_set1_epi32((int)off);
	__m256 acc = _mm256_setzero_ps();
	__m512 mxe = _mm512_setzero_ps();
	size_t i = 0;
	for (; i + 16 <= v8; i += 16) {
		if (next)
			_mm_prefetch((const char *)(next + i), _MM_HINT_T0);
		__m512i qi = q16(_mm512_loadu_ps(row + i), _mm512_loadu_ps(inv + i),
				 _mm512_loadu_ps(zf + i), _mm512_loadu_ps(sc + i), sym, vlo, vhi, voff,
				 &acc, &mxe);
		if (nib)
			put8(nib + i / 2, qi);
		else
			_mm_storeu_si128((__m128i *)(void *)(q + i), _mm512_cvtepi32_epi8(qi));
	}
	if (i < v8) { /* 8 more columns: a masked vector whose high half is 0 */
		__mmask16 k8 = 0xff;
		__m256 acc8 = _mm256_setzero_ps();
		__m512i qi = q16(_mm512_maskz_loadu_ps(k8, row + i), _mm512_maskz_loadu_ps(k8, inv + i),
				 _mm512_maskz_loadu_ps(k8, zf + i), _mm512_maskz_loadu_ps(k8, sc + i),
				 sym, vlo, vhi, voff, &acc8, &mxe);
		/* acc8 = (0 + low d^2) + 0: exactly the 8 squares; the zero lanes
		 * (x, inv, scale 0) have d = 0 and leave the maximum alone */
		acc = _mm256_add_ps(acc, acc8);
		_mm_storel_epi64((__m128i *)(void *)(q + i), _mm512_cvtepi32_epi8(qi));
	}
	float m = _mm512_reduce_max_ps(mxe);
	*me = m > *me ? m : *me;
	return lanes_sum8(acc);
}
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <emmintrin.h>
#define HAVE_Q4_SSE2 1
#endif

/* Writes n nibbles q[k] at nibble index `at` of packed. seq: the caller
 * writes in increasing nibble order with no gaps, so a byte whose high
 * nibble belongs to a later call is stored whole (high nibble 0, OR-ed by
 * that later call) and packed need not be zeroed: it may be the float
 * storage being read, a few bytes behind. Otherwise packed is zeroed by the
 * caller and every store is an OR. */
static void put_nibbles(uint8_t *restrict packed, size_t at, const uint8_t *restrict q, size_t n,
			bool seq)
{
	size_t k = 0;
	if (n && (at & 1)) {
		packed[at >> 1] |= (uint8_t)(q[0] << 4);
		k = 1;
	}
	uint8_t *d = packed + ((at + k) >> 1);
#ifdef HAVE_Q4_SSE2
	/* 16 bytes from 32 nibble values: each 16-bit lane (lo, hi) -> lo | hi << 4 */
	__m128i ff = _mm_set1_epi16(0xff);
	for (; k + 32 <= n; k += 32, d += 16) {
		__m128i a = _mm_loadu_si128((const __m128i *)(const void *)(q + k));
		__m128i b = _mm_loadu_si128((const __m128i *)(const void *)(q + k + 16));
		a = _mm_and_si128(_mm_or_si128(a, _mm_srli_epi16(a, 4)), ff);
		b = _mm_and_si128(_mm_or_si128(b, _mm_srli_epi16(b, 4)), ff);
		_mm_storeu_si128((__m128i *)(void *)d, _mm_packus_epi16(a, b));
	}
#endif
	for (; k + 1 < n; k += 2)
		*d++ = (uint8_t)(q[k] | (q[k + 1] << 4));
	if (k < n)
		*d = seq ? q[k] : (uint8_t)(*d | q[k]);
}

/* The instruction set a call uses: the requested one when the CPU has it,
 * else the best one below it that it has. */
static enum quant_int4_isa pick_isa(enum quant_int4_isa want)
{
	enum quant_int4_isa isa = QUANT_INT4_ISA_SCALAR;
#if defined(HAVE_Q4_AVX2) || defined(HAVE_Q4_AVX512)
	__builtin_cpu_init();
#endif
#ifdef HAVE_Q4_AVX2
	if (__builtin_cpu_supports("avx2"))
		isa = QUANT_INT4_ISA_AVX2;
#endif
#ifdef HAVE_Q4_AVX512
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))
		isa = QUANT_INT4_ISA_AVX512;
#endif
	if (want != QUANT_INT4_ISA_AUTO && want < isa)
		isa = want;
	return isa;
}

enum quant_int4_isa quant_int4_isa_best(void)
{
	return pick_isa(QUANT_INT4_ISA_AUTO);
}

/* quant_int4_quantize, or (qbytes != NULL, inner 1 only) the nibble values
 * one byte each at qbytes[o * len + l] instead of packed. */
static enum nn_status quantize_impl(const float *w, size_t outer, size_t len, size_t inner,
				    size_t block, bool symmetric, unsigned offset, size_t ostride,
				    uint8_t *packed, uint8_t *qbytes, float *scales,
				    uint8_t *zero_points, struct quant_int4_stats *stats,
				    enum quant_int4_isa want, const struct step_ctx *ctx,
				    struct nn_err *e)
{
	if (block == 0 || block > 4096)
		return err_set(e, NN_EINVAL, "invalid_spec", "", "block_size out of range");
	size_t nb = (len + block - 1) / block;
	size_t cols = inner ? inner : 1, qcap = cols > block ? cols : block;
	qcap = qcap > len ? qcap : len; /* a whole row's bytes (AVX-512 row path) */
	/* mn, mx, inv, zf (cols floats each) + q (qcap bytes) */
	float *mn = malloc(cols * 4 * sizeof *mn + qcap);
	if (!mn)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for int4 scratch");
	float *mx = mn + cols, *inv = mx + cols, *zf = inv + cols;
	uint8_t *q0 = (uint8_t *)(zf + cols), *q = q0;
	float lo = symmetric ? -7.0f : 0.0f, hi = symmetric ? 7.0f : 15.0f;
	double sq = 0;
	float maxerr = 0, smin = INFINITY, smax = 0;
	size_t since = 0;
	enum nn_status st = NN_OK;
	enum quant_int4_isa isa = pick_isa(want);
	bool avx2 = isa >= QUANT_INT4_ISA_AVX2;
	/* AVX-512 takes whole 16-float vectors: blocks of a multiple of 16 along
	 * rows (inner 1), or 16-column strips (inner >= 16); the rest (ragged
	 * last blocks, columns beyond the last 16) goes the AVX2 way. */
	bool r512 = isa >= QUANT_INT4_ISA_AVX512 && inner == 1 && block % 16 == 0;
	bool c512 = isa >= QUANT_INT4_ISA_AVX512 && inner >= 16;
	(void)r512;
	(void)c512;
	for (size_t o = 0; o < outer; o++) {
		size_t b0 = 0;
#ifdef HAVE_Q4_AVX512
		if (r512 && len >= block) {
			size_t nfull = len / block, at = o * ostride;
			const float *base = w + o * len;
			/* nibbles straight to packed when the row starts on a byte;
			 * else bytes, packed afterwards */
			bool direct = !qbytes && at % 2 == 0;
			uint8_t *out = qbytes ? qbytes + o * len : direct ? packed + at / 2 : q0;
			if (!rows512(base, nfull, block, symmetric, offset, out, direct,
				     scales + o * nb, zero_points ? zero_points + o * nb : NULL, &sq,
				     &maxerr, &smin, &smax)) {
				st = err_set(e, NN_EINVAL, "invalid_model", "",
					     "weight contains NaN or Inf");
				goto out;
			}
			if (!qbytes && !direct)
				put_nibbles(packed, at, q0, nfull * block, true);
			b0 = nfull;
			since += nfull * block;
		}
#endif
		for (size_t b = b0; b < nb; b++) {
			size_t l0 = b * block, cnt = l0 + block < len ? block : len - l0;
			const float *base = w + (o * len + l0) * inner;
			float *sc = scales + (o * nb + b) * inner;
			bool bad = false;
			size_t v16 = 0; /* columns [0, v16) done by AVX-512 */
#ifdef HAVE_Q4_AVX512
			if (c512) {
				v16 = inner & ~(size_t)15;
				bad = !cols_params512(base, cnt, inner, v16, symmetric, mn, mx, sc,
						      inv, zf,
						      zero_points ? zero_points + (o * nb + b) * inner
								  : NULL,
						      &smin, &smax);
			}
#endif
			if (inner == 1) {
				float a = INFINITY, z = -INFINITY;
				size_t k = 0;
#ifdef HAVE_Q4_AVX2
				if (avx2 && cnt % 8 == 0) {
					bad = range_avx2(base, cnt, &a, &z);
					k = cnt;
				}
#endif
				for (; k < cnt; k++) {
					float x = base[k];
					bad |= x != x;
					a = x < a ? x : a;
					z = x > z ? x : z;
				}
				mn[0] = a, mx[0] = z;
			} else {
				size_t v = v16;
#ifdef HAVE_Q4_AVX2
				if (avx2 && !v16) {
					bad = ranges_avx2(base, cnt, inner, mn, mx);
					v = inner & ~(size_t)7;
				}
#endif
				for (size_t i = v; i < inner; i++)
					mn[i] = INFINITY, mx[i] = -INFINITY;
				for (size_t l = 0; v < inner && l < cnt; l++) {
					const float *row = base + l * inner;
					for (size_t i = v; i < inner; i++) {
						float x = row[i];
						bad |= x != x;
						mn[i] = x < mn[i] ? x : mn[i];
						mx[i] = x > mx[i] ? x : mx[i];
					}
				}
			}
			size_t pv = v16;
#ifdef HAVE_Q4_AVX2
			if (avx2 && !v16 && inner >= 8) {
				pv = inner & ~(size_t)7;
				bad |= params_avx2(mn, mx, pv, symmetric, sc, inv, zf, &smin, &smax);
				if (zero_points)
					for (size_t i = 0; i < pv; i++)
						zero_points[(o * nb + b) * inner + i] = (uint8_t)zf[i];
			}
#endif
			for (size_t i = pv; i < inner; i++) {
				bad |= !isfinite(mn[i]) || !isfinite(mx[i]);
				block_params(mn[i], mx[i], symmetric, &sc[i], &inv[i], &zf[i]);
				if (zero_points)
					zero_points[(o * nb + b) * inner + i] = (uint8_t)zf[i];
				if (inv[i] != 0) {
					smin = sc[i] < smin ? sc[i] : smin;
					smax = sc[i] > smax ? sc[i] : smax;
				}
			}
			if (bad) {
				st = err_set(e, NN_EINVAL, "invalid_model", "",
					     "weight contains NaN or Inf");
				goto out;
			}
			if (inner == 1) {
				size_t at = o * ostride + l0;
				q = qbytes ? qbytes + o * len + l0 : q0;
#ifdef HAVE_Q4_AVX2
				if (avx2 && cnt % 8 == 0)
					q4_run_avx2(base, cnt, inv, zf, sc, 0, lo, hi, offset, q, &sq,
						    &maxerr);
				else
#endif
					q4_run(base, cnt, inv, zf, sc, 0, lo, hi, offset, q, &sq,
					       &maxerr);
				if (!qbytes)
					put_nibbles(packed, at, q, cnt, true);
			} else {
				for (size_t l = 0; l < cnt; l++) {
					const float *row = base + l * inner;
					size_t at = o * ostride + (l0 + l) * inner;
					size_t v = 0;
#ifdef HAVE_Q4_AVX512
					if (c512) {
						bool direct = at % 2 == 0;
						v = inner & ~(size_t)7;
						/* the next block's row l (a prefetch never faults) */
						const float *nx =
							b + 1 < nb ? row + cnt * inner : NULL;
						sq += cols_row512(row, v, inv, zf, sc, symmetric, offset,
								  direct ? packed + at / 2 : NULL, q,
								  nx, &maxerr);
						q4_run(row + v, inner - v, inv + v, zf + v, sc + v, 1, lo,
						       hi, offset, q + v, &sq, &maxerr);
						if (direct)
							put_nibbles(packed, at + v16, q + v16, inner - v16,
								    true);
						else
							put_nibbles(packed, at, q, inner, true);
						continue;
					}
#endif
#ifdef HAVE_Q4_AVX2
					if (avx2) {
						v = inner & ~(size_t)7;
						q4_run_avx2(row, v, inv, zf, sc, 1, lo, hi, offset, q,
							    &sq, &maxerr);
					}
#endif
					q4_run(row + v, inner - v, inv + v, zf + v, sc + v, 1, lo, hi,
					       offset, q + v, &sq, &maxerr);
					put_nibbles(packed, at, q, inner, true);
				}
			}
			since += cnt * inner;
			if (since >= STEP_POLL_ELEMS) {
				since = 0;
				if (step_canceled(ctx)) {
					st = err_set(e, NN_ECANCELED, "canceled", "",
						     "canceled while quantizing");
					goto out;
				}
			}
		}
		if (since >= STEP_POLL_ELEMS) {
			since = 0;
			if (step_canceled(ctx)) {
				st = err_set(e, NN_ECANCELED, "canceled", "",
					     "canceled while quantizing");
				goto out;
			}
		}
	}
	stats->sq += sq;
	stats->maxerr = maxerr > stats->maxerr ? maxerr : stats->maxerr;
	stats->smin = smin < stats->smin ? smin : stats->smin;
	stats->smax = smax > stats->smax ? smax : stats->smax;
out:
	free(mn);
	return st;
}

#define QT_ROWS 32 /* rows of W quantized per kernel call (their error sums are one
		    * partial sum: the metrics depend on this grouping) */
#define QT_TILE 128 /* rows per transposed write: 64 nibble bytes, a whole cache
		     * line, per output row */

/* ---- threads ----
 *
 * A weight is cut into units whose boundaries depend only on its layout
 * (never on the thread count): 32 rows (QT_ROWS) when inner is 1, else
 * groups of whole blocks along len of about Q4_UNIT_ELEMS elements. Each
 * unit's squared errors are one partial sum, stored by unit index and added
 * in unit order afterwards, so the metrics (and of course the bytes) are the
 * same for any number of threads, one included. Threads take units from an
 * atomic counter (a loaded VM gives threads uneven speeds) and each has its
 * own scratch; max/min statistics are order-free. */
#define Q4_MAX_THREADS 64
#define Q4_UNIT_ELEMS ((size_t)1 << 18)
/* Below this many weights a layer runs on the calling thread alone (a
 * thread start costs tens of microseconds; the result is the same). */
#define Q4_PAR_MIN ((size_t)1 << 16)

/* What one runner found: order-free statistics and its first failure. */
struct q4_slot {
	float maxerr, smin, smax;
	enum nn_status st;
	size_t unit; /* the unit that failed (the lowest one is reported) */
	struct nn_err e;
};

static void slot_init(struct q4_slot *s)
{
	s->maxerr = 0, s->smin = INFINITY, s->smax = 0;
	s->st = NN_OK;
	s->unit = SIZE_MAX;
	memset(&s->e, 0, sizeof s->e);
}

static void slot_merge(struct q4_slot *s, const struct quant_int4_stats *st)
{
	s->maxerr = st->maxerr > s->maxerr ? st->maxerr : s->maxerr;
	s->smin = st->smin < s->smin ? st->smin : s->smin;
	s->smax = st->smax > s->smax ? st->smax : s->smax;
}

static void slot_fail(struct q4_slot *s, size_t unit, enum nn_status st, const struct nn_err *e)
{
	if (s->st == NN_OK || unit < s->unit) {
		s->st = st;
		s->unit = unit;
		s->e = *e;
	}
}

/* Folds the runners' results into stats (part[0..nparts) added in order) or
 * returns the failure of the lowest unit. */
static enum nn_status slots_finish(const struct q4_slot *slot, unsigned nslot, const double *part,
				   size_t nparts, struct quant_int4_stats *stats, struct nn_err *e)
{
	const struct q4_slot *bad = NULL;
	for (unsigned s = 0; s < nslot; s++)
		if (slot[s].st != NN_OK && (!bad || slot[s].unit < bad->unit))
			bad = &slot[s];
	if (bad) {
		*e = bad->e;
		return bad->st;
	}
	for (size_t u = 0; u < nparts; u++)
		stats->sq += part[u];
	for (unsigned s = 0; s < nslot; s++) {
		stats->maxerr = slot[s].maxerr > stats->maxerr ? slot[s].maxerr : stats->maxerr;
		stats->smin = slot[s].smin < stats->smin ? slot[s].smin : stats->smin;
		stats->smax = slot[s].smax > stats->smax ? slot[s].smax : stats->smax;
	}
	return NN_OK;
}

struct q4_runner {
	void (*fn)(void *arg);
	void *arg;
};

static void *runner_main(void *p)
{
	const struct q4_runner *r = p;
	r->fn(r->arg);
	return NULL;
}

/* Runs fn(arg) on the calling thread and on up to threads - 1 new ones, and
 * returns when all have returned. If a thread cannot be created, fewer run:
 * fn takes its work from a shared counter, so any number of runners does
 * all of it. */
static void par_run(unsigned threads, void (*fn)(void *), void *arg)
{
	pthread_t tid[Q4_MAX_THREADS];
	unsigned started = 0;
	struct q4_runner r = {fn, arg};
	for (unsigned t = 1; t < threads && t < Q4_MAX_THREADS; t++) {
		if (pthread_create(&tid[started], NULL, runner_main, &r) != 0)
			break;
		started++;
	}
	fn(arg);
	for (unsigned t = 0; t < started; t++)
		pthread_join(tid[t], NULL);
}

/* The threads the step may use (ctx->threads, 0 or no ctx: 1). */
static unsigned step_threads(const struct step_ctx *ctx)
{
	return ctx && ctx->threads ? ctx->threads : 1;
}

/* One weight's units (quant_int4_quantize's layout). */
struct q4_units {
	const float *w;
	size_t outer, len, inner, block, nb, ostride;
	bool symmetric;
	unsigned offset;
	uint8_t *packed;
	float *scales;
	uint8_t *zero_points;
	enum quant_int4_isa isa;
	const struct step_ctx *ctx;
	size_t per;    /* inner 1: rows per unit; else elements of len per unit */
	size_t upo;    /* inner > 1: units per outer index */
	uint8_t *kbuf; /* units below kunits write their nibbles here (in place) */
	size_t kunits;
	double *part;  /* squared errors per unit */
	atomic_size_t next; /* the next unit to take */
	size_t end;         /* units [.., end) in this phase */
	atomic_uint nslot;
	atomic_bool stop;
	struct q4_slot slot[Q4_MAX_THREADS];
};

/* Nibble index of unit u's first element (even, see quantize_par). */
static size_t unit_start(const struct q4_units *j, size_t u)
{
	if (j->inner == 1)
		return u * j->per * j->ostride;
	return (u / j->upo) * j->ostride + (u % j->upo) * j->per * j->inner;
}

static enum nn_status unit_run(const struct q4_units *j, size_t u, struct quant_int4_stats *st,
			       struct nn_err *e)
{
	uint8_t *dst = (u < j->kunits ? j->kbuf : j->packed) + unit_start(j, u) / 2;
	if (j->inner == 1) {
		size_t o0 = u * j->per, r = j->outer - o0 < j->per ? j->outer - o0 : j->per;
		return quantize_impl(j->w + o0 * j->len, r, j->len, 1, j->block, j->symmetric,
				     j->offset, j->ostride, dst, NULL, j->scales + o0 * j->nb,
				     j->zero_points ? j->zero_points + o0 * j->nb : NULL, st,
				     j->isa, NULL, e);
	}
	size_t o = u / j->upo, l0 = (u % j->upo) * j->per;
	size_t cnt = j->len - l0 < j->per ? j->len - l0 : j->per;
	size_t s0 = (o * j->nb + l0 / j->block) * j->inner;
	return quantize_impl(j->w + (o * j->len + l0) * j->inner, 1, cnt, j->inner, j->block,
			     j->symmetric, j->offset, cnt * j->inner, dst, NULL, j->scales + s0,
			     j->zero_points ? j->zero_points + s0 : NULL, st, j->isa, NULL, e);
}

static void units_worker(void *arg)
{
	struct q4_units *j = arg;
	struct q4_slot *sl = &j->slot[atomic_fetch_add(&j->nslot, 1)];
	while (!atomic_load(&j->stop)) {
		size_t u = atomic_fetch_add(&j->next, 1);
		if (u >= j->end)
			break;
		struct nn_err e = {0};
		enum nn_status st = NN_OK;
		struct quant_int4_stats s = {0, 0, INFINITY, 0};
		if (step_canceled(j->ctx))
			st = err_set(&e, NN_ECANCELED, "canceled", "", "canceled while quantizing");
		else
			st = unit_run(j, u, &s, &e);
		if (st != NN_OK) {
			slot_fail(sl, u, st, &e);
			atomic_store(&j->stop, true);
			break;
		}
		j->part[u] = s.sq;
		slot_merge(sl, &s);
	}
}

static void units_phase(struct q4_units *j, unsigned threads, size_t from, size_t to)
{
	atomic_store(&j->next, from);
	j->end = to;
	atomic_store(&j->nslot, 0);
	par_run(threads, units_worker, j);
}

/* quantize_impl cut into units (module comment above) on up to `threads`
 * threads. When packed is w's own storage and threads run, a unit's nibbles
 * land over the floats of the units in the first eighth of w (nibble x over
 * float x / 8): those units run first with their nibbles kept aside, then
 * the rest writing straight over floats already read, then the kept bytes
 * are copied in. Layouts whose units would start mid-byte (outer > 1,
 * inner > 1, odd ostride) run as one unit. */
static enum nn_status quantize_par(const float *w, size_t outer, size_t len, size_t inner,
				   size_t block, bool symmetric, unsigned offset, size_t ostride,
				   uint8_t *packed, float *scales, uint8_t *zero_points,
				   struct quant_int4_stats *stats, enum quant_int4_isa isa,
				   unsigned threads, const struct step_ctx *ctx, struct nn_err *e)
{
	if (block == 0 || block > 4096)
		return err_set(e, NN_EINVAL, "invalid_spec", "", "block_size out of range");
	size_t n = outer * len * inner;
	if (step_canceled(ctx))
		return err_set(e, NN_ECANCELED, "canceled", "", "canceled while quantizing");
	if (n == 0 || (inner > 1 && outer > 1 && ostride % 2))
		return quantize_impl(w, outer, len, inner, block, symmetric, offset, ostride,
				     packed, NULL, scales, zero_points, stats, isa, ctx, e);
	struct q4_units *j = calloc(1, sizeof *j);
	if (!j)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for int4 units");
	enum nn_status st = NN_OK;
	*j = (struct q4_units){.w = w, .outer = outer, .len = len, .inner = inner,
			       .block = block, .nb = (len + block - 1) / block,
			       .ostride = ostride, .symmetric = symmetric, .offset = offset,
			       .packed = packed, .scales = scales, .zero_points = zero_points,
			       .isa = isa, .ctx = ctx};
	size_t nunits;
	if (inner == 1) {
		j->per = QT_ROWS;
		nunits = (outer + QT_ROWS - 1) / QT_ROWS;
	} else {
		/* whole blocks, an even element count (units start on a byte) */
		size_t g = (Q4_UNIT_ELEMS + block * inner - 1) / (block * inner);
		g += (g * block * inner) % 2;
		j->per = g * block;
		j->upo = (len + j->per - 1) / j->per;
		nunits = outer * j->upo;
	}
	j->kunits = 0;
	j->part = malloc(nunits * sizeof *j->part);
	if (!j->part) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for int4 units");
		goto out;
	}
	for (unsigned s = 0; s < Q4_MAX_THREADS; s++)
		slot_init(&j->slot[s]);
	unsigned t = threads ? threads : 1;
	if (n < Q4_PAR_MIN)
		t = 1;
	t = t < Q4_MAX_THREADS ? t : Q4_MAX_THREADS;
	t = (size_t)t < nunits ? t : (unsigned)nunits;
	size_t kbytes = 0;
	if (t > 1 && (const void *)packed == (const void *)w) {
		size_t edge = n / 8 + 2; /* no unit's nibbles reach a float past it */
		while (j->kunits < nunits && unit_start(j, j->kunits) < edge)
			j->kunits++;
		kbytes = j->kunits < nunits ? unit_start(j, j->kunits) / 2 : (n + 1) / 2;
		if (!(j->kbuf = malloc(kbytes))) {
			st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for int4 units");
			goto out;
		}
	}
	units_phase(j, t, 0, j->kunits ? j->kunits : nunits);
	if (j->kunits && j->kunits < nunits && !atomic_load(&j->stop))
		units_phase(j, t, j->kunits, nunits);
	if (j->kunits && !atomic_load(&j->stop))
		memcpy(packed, j->kbuf, kbytes);
	st = slots_finish(j->slot, t, j->part, nunits, stats, e);
out:
	free(j->kbuf);
	free(j->part);
	free(j);
	return st;
}

enum nn_status quant_int4_quantize(const float *w, size_t outer, size_t len, size_t inner,
				   size_t block, bool symmetric, unsigned offset, size_t ostride,
				   uint8_t *packed, float *scales, uint8_t *zero_points,
				   struct quant_int4_stats *stats, const struct step_ctx *ctx,
				   struct nn_err *e)
{
	return quantize_par(w, outer, len, inner, block, symmetric, offset, ostride, packed,
			    scales, zero_points, stats, QUANT_INT4_ISA_AUTO, 1, ctx, e);
}

enum nn_status quant_int4_quantize_threads(const float *w, size_t outer, size_t len,
					   size_t inner, size_t block, bool symmetric,
					   unsigned offset, size_t ostride, uint8_t *packed,
					   float *scales, uint8_t *zero_points,
					   struct quant_int4_stats *stats, unsigned threads,
					   const struct step_ctx *ctx, struct nn_err *e)
{
	return quantize_par(w, outer, len, inner, block, symmetric, offset, ostride, packed,
			    scales, zero_points, stats, QUANT_INT4_ISA_AUTO, threads, ctx, e);
}

enum nn_status quant_int4_quantize_isa(const float *w, size_t outer, size_t len, size_t inner,
				       size_t block, bool symmetric, unsigned offset,
				       size_t ostride, uint8_t *packed, float *scales,
				       uint8_t *zero_points, struct quant_int4_stats *stats,
				       enum quant_int4_isa isa, struct nn_err *e)
{
	return quantize_par(w, outer, len, inner, block, symmetric, offset, ostride, packed,
			    scales, zero_points, stats, isa, 1, NULL, e);
}


#ifdef HAVE_Q4_SSE2
/* Writes 16 output rows kk0 .. kk0 + 15 of a 32-row group transposed: tq
 * holds 32 rows of k nibble values (one byte each); nibble (r, kk) goes to
 * nibble kk * n + j0 + r of packed. Needs n and j0 even, so each output
 * row's 32 nibbles are 16 whole bytes: rows 2p and 2p + 1 are paired into
 * bytes first, then 16x16 byte blocks are transposed in registers (the
 * per-nibble column loop was a fifth of the step). */
static void tile_put16_sse2(const uint8_t *tq, size_t k, size_t kk0, size_t n, size_t j0,
			    uint8_t *packed)
{
	for (size_t kk = kk0; kk < kk0 + 16; kk += 16) {
		__m128i r[16], t[16];
		for (int p = 0; p < 16; p++) {
			__m128i a = _mm_loadu_si128(
				(const __m128i *)(const void *)(tq + (size_t)(2 * p) * k + kk));
			__m128i b = _mm_loadu_si128(
				(const __m128i *)(const void *)(tq + (size_t)(2 * p + 1) * k + kk));
			/* every byte < 16: the 16-bit shift moves no bit across bytes */
			r[p] = _mm_or_si128(a, _mm_slli_epi16(b, 4));
		}
		/* 8-bit, 16-bit, 32-bit, 64-bit interleaves: afterwards t[c] holds
		 * column c (byte p = row pair p). */
		for (int i = 0; i < 8; i++) {
			t[2 * i] = _mm_unpacklo_epi8(r[2 * i], r[2 * i + 1]);
			t[2 * i + 1] = _mm_unpackhi_epi8(r[2 * i], r[2 * i + 1]);
		}
		/* t[4j + h] (h: column half) pairs of pairs 2j, 2j+1 */
		for (int j = 0; j < 4; j++)
			for (int h = 0; h < 2; h++) {
				__m128i u = t[4 * j + h], v = t[4 * j + 2 + h];
				r[8 * h + 2 * j] = _mm_unpacklo_epi16(u, v);
				r[8 * h + 2 * j + 1] = _mm_unpackhi_epi16(u, v);
			}
		/* r[8h + 2j + q]: columns 8h + 4q .. +3, rows 8j/2.. as 32-bit */
		for (int h = 0; h < 2; h++)
			for (int q = 0; q < 2; q++)
				for (int m = 0; m < 2; m++) {
					__m128i u = r[8 * h + 2 * (2 * m) + q];
					__m128i v = r[8 * h + 2 * (2 * m + 1) + q];
					t[8 * h + 4 * q + 2 * m] = _mm_unpacklo_epi32(u, v);
					t[8 * h + 4 * q + 2 * m + 1] = _mm_unpackhi_epi32(u, v);
				}
		/* t[8h + 4q + 2m + w]: columns 8h + 4q + 2w, +1 as 64-bit lanes, row
		 * pairs 8m .. 8m + 7 */
		for (int h = 0; h < 2; h++)
			for (int q = 0; q < 2; q++)
				for (int w = 0; w < 2; w++) {
					__m128i u = t[8 * h + 4 * q + w], v = t[8 * h + 4 * q + 2 + w];
					int c = 8 * h + 4 * q + 2 * w;
					r[c] = _mm_unpacklo_epi64(u, v);
					r[c + 1] = _mm_unpackhi_epi64(u, v);
				}
		for (int c = 0; c < 16; c++)
			_mm_storeu_si128((__m128i *)(void *)(packed + ((kk + (size_t)c) * n + j0) / 2),
					 r[c]);
	}
}
#endif

#ifdef HAVE_Q4_AVX512
/* tile_put16_sse2 for output rows kk0 .. kk0 + 63 at once: the same
 * interleave network on 512-bit registers, whose four 128-bit lanes carry
 * four 16-row steps (lane L ends up holding output row kk0 + 16 L + c of
 * r[c]); 32 registers hold it without the spills of the 16-register SSE2
 * version (which ran at a quarter of an instruction per cycle). */
__attribute__((target("avx512f,avx512bw"))) static void
tile_put64_avx512(const uint8_t *tq, size_t k, size_t kk, size_t n, size_t j0, uint8_t *packed)
{
	__m512i r[16], t[16];
	for (int p = 0; p < 16; p++) {
		__m512i a = _mm512_loadu_si512(tq + (size_t)(2 * p) * k + kk);
		__m512i b = _mm512_loadu_si512(tq + (size_t)(2 * p + 1) * k + kk);
		r[p] = _mm512_or_si512(a, _mm512_slli_epi16(b, 4));
	}
	for (int i = 0; i < 8; i++) {
		t[2 * i] = _mm512_unpacklo_epi8(r[2 * i], r[2 * i + 1]);
		t[2 * i + 1] = _mm512_unpackhi_epi8(r[2 * i], r[2 * i + 1]);
	}
	for (int j = 0; j < 4; j++)
		for (int h = 0; h < 2; h++) {
			__m512i u = t[4 * j + h], v = t[4 * j + 2 + h];
			r[8 * h + 2 * j] = _mm512_unpacklo_epi16(u, v);
			r[8 * h + 2 * j + 1] = _mm512_unpackhi_epi16(u, v);
		}
	for (int h = 0; h < 2; h++)
		for (int q = 0; q < 2; q++)
			for (int m = 0; m < 2; m++) {
				__m512i u = r[8 * h + 2 * (2 * m) + q];
				__m512i v = r[8 * h + 2 * (2 * m + 1) + q];
				t[8 * h + 4 * q + 2 * m] = _mm512_unpacklo_epi32(u, v);
				t[8 * h + 4 * q + 2 * m + 1] = _mm512_unpackhi_epi32(u, v);
			}
	for (int h = 0; h < 2; h++)
		for (int q = 0; q < 2; q++)
			for (int w = 0; w < 2; w++) {
				__m512i u = t[8 * h + 4 * q + w], v = t[8 * h + 4 * q + 2 + w];
				int c = 8 * h + 4 * q + 2 * w;
				r[c] = _mm512_unpacklo_epi64(u, v);
				r[c + 1] = _mm512_unpackhi_epi64(u, v);
			}
	for (int c = 0; c < 16; c++) {
		uint8_t *d = packed + ((kk + (size_t)c) * n + j0) / 2;
		size_t lane = 16 * n / 2; /* 16 output rows further */
		_mm_storeu_si128((__m128i *)(void *)d, _mm512_castsi512_si128(r[c]));
		_mm_storeu_si128((__m128i *)(void *)(d + lane), _mm512_extracti32x4_epi32(r[c], 1));
		_mm_storeu_si128((__m128i *)(void *)(d + 2 * lane),
				 _mm512_extracti32x4_epi32(r[c], 2));
		_mm_storeu_si128((__m128i *)(void *)(d + 3 * lane),
				 _mm512_extracti32x4_epi32(r[c], 3));
	}
}
#endif

/* Writes the nibbles of `rows` quantized rows (bytes, k per row, at tq)
 * transposed at column j0 of packed ([k][n] nibbles). With n even every
 * store is a whole byte (j0 and, except at the end, rows are even), so
 * packed need not be zeroed; with n odd the caller zeroes it (bytes shared
 * with neighbouring tiles are OR-ed). */
static void tile_write(const uint8_t *tq, size_t rows, size_t k, size_t n, size_t j0,
		       uint8_t *packed, bool bw)
{
	(void)bw;
	/* full 32-row groups, 16 output rows at a time across the groups: each
	 * output row gets its QT_TILE / 2 bytes in one go */
	size_t groups = 0, kk = 0;
#ifdef HAVE_Q4_SSE2
	if (n % 2 == 0) {
		groups = rows / QT_ROWS;
#ifdef HAVE_Q4_AVX512
		if (bw)
			for (; groups && kk + 64 <= k; kk += 64)
				for (size_t g = 0; g < groups; g++)
					tile_put64_avx512(tq + g * QT_ROWS * k, k, kk, n,
							  j0 + g * QT_ROWS, packed);
#endif
		for (; groups && kk + 16 <= k; kk += 16) {
			for (size_t g = 0; g < groups; g++)
				tile_put16_sse2(tq + g * QT_ROWS * k, k, kk, n, j0 + g * QT_ROWS,
						packed);
		}
	}
#endif
	uint8_t col[QT_TILE];
	for (size_t c = 0; c < k; c++) {
		/* rows of the full groups are written for c < kk */
		size_t r0 = c < kk ? groups * QT_ROWS : 0;
		if (r0 >= rows)
			continue;
		for (size_t r = r0; r < rows; r++)
			col[r - r0] = tq[r * k + c];
		put_nibbles(packed, c * n + j0 + r0, col, rows - r0, false);
	}
}

/* Scratch memory the step reuses from one weight to the next (fresh pages
 * fault in at ~2 GB/s with 4 KiB pages: a new 2 MB tile buffer per layer
 * cost more than its transposed writes). Owned by quant_int4_run. */
struct q4_scratch {
	void *mem;
	size_t cap;
};

/* At least `bytes` of s's memory, or NULL (out of memory). */
static void *scratch_get(struct q4_scratch *s, size_t bytes)
{
	if (bytes > s->cap) {
		free(s->mem);
		s->mem = malloc(bytes);
		s->cap = s->mem ? bytes : 0;
	}
	return s->mem;
}

/* One transposed weight's tiles (quantize_transposed). */
struct q4_tiles {
	const float *w;
	size_t n, k, block, nb, ntiles;
	bool symmetric, bw;
	uint8_t *packed;
	float *scales;
	uint8_t *zero_points;
	const struct step_ctx *ctx;
	size_t kept;   /* rows whose bytes wait in kq until every row is read */
	uint8_t *kq;   /* [kept][k] */
	bool write_kept; /* the phase writes kept tiles out instead of quantizing */
	double *part;  /* squared errors per QT_ROWS rows */
	struct q4_scratch *scratch; /* one per runner */
	atomic_size_t next;
	size_t end;
	atomic_uint nslot;
	atomic_bool stop;
	struct q4_slot slot[Q4_MAX_THREADS];
};

static enum nn_status tile_run(struct q4_tiles *j, size_t t, struct q4_scratch *scr,
			       struct q4_slot *sl, struct nn_err *e)
{
	size_t n = j->n, k = j->k, nb = j->nb, j0 = t * QT_TILE;
	size_t rows = n - j0 < QT_TILE ? n - j0 : QT_TILE;
	if (j->write_kept) {
		tile_write(j->kq + j0 * k, rows, k, n, j0, j->packed, j->bw);
		return NN_OK;
	}
	/* tile scales (floats first, for alignment), tile zero points, tile bytes */
	float *tsc = scratch_get(scr, QT_TILE * nb * sizeof *tsc + QT_TILE * nb + QT_TILE * k);
	if (!tsc)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for int4 scratch");
	uint8_t *tzp = (uint8_t *)(tsc + QT_TILE * nb);
	uint8_t *tile = j0 < j->kept ? j->kq + j0 * k : tzp + QT_TILE * nb;
	for (size_t s = 0; s < rows; s += QT_ROWS) {
		size_t r = rows - s < QT_ROWS ? rows - s : QT_ROWS;
		struct quant_int4_stats st = {0, 0, INFINITY, 0};
		enum nn_status rc = quantize_impl(j->w + (j0 + s) * k, r, k, 1, j->block,
						  j->symmetric, 0, k, NULL, tile + s * k,
						  tsc + s * nb, j->symmetric ? NULL : tzp + s * nb,
						  &st, QUANT_INT4_ISA_AUTO, NULL, e);
		if (rc != NN_OK)
			return rc;
		j->part[(j0 + s) / QT_ROWS] = st.sq;
		slot_merge(sl, &st);
	}
	if (j0 >= j->kept)
		tile_write(tile, rows, k, n, j0, j->packed, j->bw);
	for (size_t b = 0; b < nb; b++)
		for (size_t r = 0; r < rows; r++) {
			j->scales[b * n + j0 + r] = tsc[r * nb + b];
			if (j->zero_points)
				j->zero_points[b * n + j0 + r] = tzp[r * nb + b];
		}
	return NN_OK;
}

static void tiles_worker(void *arg)
{
	struct q4_tiles *j = arg;
	unsigned s = atomic_fetch_add(&j->nslot, 1);
	struct q4_slot *sl = &j->slot[s];
	while (!atomic_load(&j->stop)) {
		size_t t = atomic_fetch_add(&j->next, 1);
		if (t >= j->end)
			break;
		struct nn_err e = {0};
		enum nn_status st = NN_OK;
		if (!j->write_kept && step_canceled(j->ctx))
			st = err_set(&e, NN_ECANCELED, "canceled", "", "canceled while quantizing");
		else
			st = tile_run(j, t, &j->scratch[s], sl, &e);
		if (st != NN_OK) {
			slot_fail(sl, t, st, &e);
			atomic_store(&j->stop, true);
			break;
		}
	}
}

static void tiles_phase(struct q4_tiles *j, unsigned threads, size_t from, size_t to,
			bool write_kept)
{
	atomic_store(&j->next, from);
	j->end = to;
	j->write_kept = write_kept;
	atomic_store(&j->nslot, 0);
	par_run(threads, tiles_worker, j);
}

/* W [n][k] (k contiguous) quantized as W^T [k][n] blocked along axis 0:
 * nibble k * n + j of packed, scale and zero point [(k / block) * n + j].
 * The values are those of quant_int4_quantize on W^T; the work runs on
 * K-contiguous rows (the fast path), QT_ROWS rows per kernel call, whose
 * bytes are then written QT_TILE rows at a time column by column (each
 * output row gets whole cache lines): no float transpose of W.
 * inplace (n even): packed is W's own storage. The nibbles of any tile land
 * in the first n * k / 2 bytes, i.e. over rows j < n / 8: the tiles holding
 * those rows are quantized first and their bytes kept aside (1/32 of W's
 * size), every later tile is written straight over rows already read, and
 * the kept tiles last. No output buffer to fault in, no copy.
 * Threads (up to `threads`, scratch[i] each, scratch[Q4_MAX_THREADS] for
 * the kept bytes) take tiles in each of those three phases; tiles write
 * disjoint bytes when n is even, so an odd n runs on the calling thread.
 * Error sums: one partial per QT_ROWS rows, added in row order. */
static enum nn_status quantize_transposed(const float *w, size_t n, size_t k, size_t block,
					  bool symmetric, uint8_t *packed, bool inplace,
					  float *scales, uint8_t *zero_points,
					  struct quant_int4_stats *stats, struct q4_scratch *scratch,
					  unsigned threads, const struct step_ctx *ctx,
					  struct nn_err *e)
{
	if (n == 0 || k == 0)
		return NN_OK;
	struct q4_tiles *j = calloc(1, sizeof *j);
	if (!j)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for int4 tiles");
	enum nn_status st = NN_OK;
	*j = (struct q4_tiles){.w = w, .n = n, .k = k, .block = block,
			       .nb = (k + block - 1) / block,
			       .ntiles = (n + QT_TILE - 1) / QT_TILE, .symmetric = symmetric,
			       .packed = packed, .scales = scales, .zero_points = zero_points,
			       .ctx = ctx, .scratch = scratch};
#ifdef HAVE_Q4_AVX512
	j->bw = pick_isa(QUANT_INT4_ISA_AUTO) == QUANT_INT4_ISA_AVX512 &&
		__builtin_cpu_supports("avx512bw");
#endif
	if (inplace && n * k > 1) {
		size_t risky = ((n * k) / 2 - 1) / (4 * k) + 1; /* rows overlapping the output */
		j->kept = (risky + QT_TILE - 1) / QT_TILE * QT_TILE;
		j->kept = j->kept < n ? j->kept : n;
	}
	j->kq = j->kept ? scratch_get(&scratch[Q4_MAX_THREADS], j->kept * k) : NULL;
	j->part = malloc((n + QT_ROWS - 1) / QT_ROWS * sizeof *j->part);
	if ((j->kept && !j->kq) || !j->part) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for int4 scratch");
		goto out;
	}
	for (unsigned s = 0; s < Q4_MAX_THREADS; s++)
		slot_init(&j->slot[s]);
	unsigned t = threads ? threads : 1;
	if (n % 2 || n * k < Q4_PAR_MIN)
		t = 1;
	t = t < Q4_MAX_THREADS ? t : Q4_MAX_THREADS;
	t = (size_t)t < j->ntiles ? t : (unsigned)j->ntiles;
	size_t kt = j->kept / QT_TILE + (j->kept % QT_TILE != 0);
	if (kt)
		tiles_phase(j, t, 0, kt, false);
	if (kt < j->ntiles && !atomic_load(&j->stop))
		tiles_phase(j, t, kt, j->ntiles, false); /* every kept row has been read */
	if (kt && !atomic_load(&j->stop))
		tiles_phase(j, t, 0, kt, true);
	st = slots_finish(j->slot, t, j->part, (n + QT_ROWS - 1) / QT_ROWS, stats, e);
out:
	free(j->part);
	free(j);
	return st;
}

void quant_int4_pack(const uint8_t *vals, size_t n, uint8_t *out)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		out[i / 2] = (uint8_t)((vals[i] & 15u) | ((vals[i + 1] & 15u) << 4));
	if (n & 1)
		out[n / 2] = vals[n - 1] & 15u;
}

void quant_int4_unpack(const uint8_t *packed, size_t n, bool is_signed, int8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		int v = (packed[i / 2] >> ((i & 1) * 4)) & 15;
		out[i] = (int8_t)(is_signed ? (v ^ 8) - 8 : v);
	}
}

/* ---- graph surgery ---- */

struct iwref {
	char *name, *op, *node;
	int kaxis; /* the weight's reduction axis (blocks run along it) */
};

/* How many node inputs and graph outputs use `name`. */
static size_t uses(const struct onnx_model *m, const char *name)
{
	const Onnx__GraphProto *g = m->proto->graph;
	size_t n = 0;
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t k = 0; k < g->node[i]->n_input; k++)
			n += g->node[i]->input[k] && strcmp(g->node[i]->input[k], name) == 0;
	for (size_t i = 0; i < g->n_output; i++)
		n += g->output[i]->name && strcmp(g->output[i]->name, name) == 0;
	return n;
}

static Onnx__NodeProto *find_node(const struct onnx_model *m, const char *name, const char *op,
				  const char *weight, size_t *idx)
{
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		if (strcmp(n->op_type ? n->op_type : "", op) || strcmp(n->name ? n->name : "", name))
			continue;
		for (size_t k = 0; k < n->n_input; k++)
			if (n->input[k] && strcmp(n->input[k], weight) == 0) {
				*idx = i;
				return n;
			}
	}
	return NULL;
}

/* Sets an initializer's type to 4-bit with the given dims (its raw_data
 * already holds the packed bytes). */
static enum nn_status set_4bit(struct onnx_model *m, const char *name, enum dtype dt, int ndim,
			       const int64_t *dims, struct nn_err *e)
{
	Onnx__TensorProto *tp = onnx_find_initializer(m, name);
	int64_t *d = malloc((size_t)(ndim ? ndim : 1) * sizeof *d);
	if (!tp || !d) {
		free(d);
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for '%s'", name);
	}
	memcpy(d, dims, (size_t)ndim * sizeof *d);
	free(tp->dims);
	tp->dims = d;
	tp->n_dims = (size_t)ndim;
	tp->data_type = dt;
	return NN_OK;
}

static char *mkname(const struct onnx_model *m, const char *base, const char *suffix)
{
	size_t n = strlen(base) + strlen(suffix) + 1;
	char *b = malloc(n);
	if (!b)
		return NULL;
	snprintf(b, n, "%s%s", base, suffix);
	char *u = onnx_unique_name(m, b);
	free(b);
	return u;
}

static enum nn_status add_packed(struct onnx_model *m, const char *name, uint8_t **data,
				 size_t bytes, struct nn_err *e)
{
	struct tensor t = {0};
	int64_t shp[1] = {(int64_t)bytes};
	tensor_view(&t, DT_UINT8, 1, shp, *data);
	t.owned = true;
	enum nn_status st = onnx_add_initializer_take(m, name, &t, e);
	if (st == NN_OK)
		*data = NULL;
	return st;
}

static enum nn_status add_float(struct onnx_model *m, const char *name, float **data, int ndim,
				const int64_t *shape, struct nn_err *e)
{
	struct tensor t = {0};
	tensor_view(&t, DT_FLOAT, ndim, shape, *data);
	t.owned = true;
	enum nn_status st = onnx_add_initializer_take(m, name, &t, e);
	if (st == NN_OK)
		*data = NULL;
	return st;
}

static enum nn_status set_str(char **dst, const char *v, struct nn_err *e)
{
	char *s = strdup(v);
	if (!s)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory");
	free(*dst);
	*dst = s;
	return NN_OK;
}

/* Inserts a new node at index `at` of the graph (after the producer). */
static enum nn_status insert_node(struct onnx_model *m, size_t at, const char *op,
				  const char *name, const char *a, const char *b, const char *out,
				  struct nn_err *e)
{
	Onnx__GraphProto *g = m->proto->graph;
	Onnx__NodeProto *n = malloc(sizeof *n);
	Onnx__NodeProto **arr = realloc(g->node, (g->n_node + 1) * sizeof *arr);
	if (arr)
		g->node = arr;
	if (!n || !arr) {
		free(n);
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for a node");
	}
	onnx__node_proto__init(n);
	n->input = calloc(2, sizeof *n->input);
	n->output = calloc(1, sizeof *n->output);
	n->op_type = strdup(op);
	n->name = strdup(name);
	if (n->input) {
		n->n_input = 2;
		n->input[0] = strdup(a);
		n->input[1] = strdup(b);
	}
	if (n->output) {
		n->n_output = 1;
		n->output[0] = strdup(out);
	}
	if (!n->input || !n->output || !n->op_type || !n->name || !n->input[0] || !n->input[1] ||
	    !n->output[0]) {
		onnx__node_proto__free_unpacked(n, NULL);
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for a node");
	}
	memmove(g->node + at + 1, g->node + at, (g->n_node - at) * sizeof *g->node);
	g->node[at] = n;
	g->n_node++;
	return NN_OK;
}

static enum nn_status ensure_ms_domain(struct onnx_model *m, struct nn_err *e)
{
	Onnx__ModelProto *p = m->proto;
	for (size_t i = 0; i < p->n_opset_import; i++)
		if (p->opset_import[i]->domain &&
		    strcmp(p->opset_import[i]->domain, "com.microsoft") == 0)
			return NN_OK;
	Onnx__OperatorSetIdProto *imp = malloc(sizeof *imp);
	Onnx__OperatorSetIdProto **arr =
		realloc(p->opset_import, (p->n_opset_import + 1) * sizeof *arr);
	if (arr)
		p->opset_import = arr;
	if (!imp || !arr) {
		free(imp);
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for opset import");
	}
	onnx__operator_set_id_proto__init(imp);
	imp->domain = strdup("com.microsoft");
	if (!imp->domain) {
		free(imp);
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for opset import");
	}
	imp->has_version = 1;
	imp->version = 1;
	p->opset_import[p->n_opset_import++] = imp;
	return NN_OK;
}

struct layer_out {
	struct quant_int4_stats stats;
	int64_t blocks;
	size_t bytes_before, bytes_after;
	bool skipped;
	bool as_matmul; /* a Gemm rewritten as MatMul (+ Add) */
	int axis;       /* the blocked axis of the weight as written */
	const char *why;
};

/* Can the node consuming r be rewritten as a MatMul-like node (MatMul, or
 * Gemm with transA 0, alpha 1, beta 1, the weight as B)? NULL when it can,
 * else the reason. *node / *at: the consumer and its index. */
static const char *mm_eligible(struct onnx_model *m, const struct iwref *r, const struct tensor *w,
			       Onnx__NodeProto **node, size_t *at)
{
	*node = find_node(m, r->node, r->op, r->name, at);
	if (!*node || w->ndim != 2)
		return "weight is not 2-D";
	Onnx__NodeProto *n = *node;
	if (n->n_input < 2 || strcmp(n->input[1], r->name) != 0)
		return "weight is the first operand";
	if (!strcmp(r->op, "Gemm")) {
		if (onnx_node_int_attr(n, "transA", 0) != 0)
			return "Gemm with transA";
		const Onnx__AttributeProto *al = onnx_find_attr(n, "alpha", NULL);
		const Onnx__AttributeProto *be = onnx_find_attr(n, "beta", NULL);
		if ((al && al->f != 1.0f) || (be && be->f != 1.0f))
			return "Gemm with alpha or beta other than 1";
	}
	if (uses(m, r->name) != 1)
		return "weight shared with other nodes";
	return NULL;
}

/* Turns a Gemm eligible by mm_eligible into its MatMul part: when it has a
 * C input, the node writes a new value and an Add of C after it (index at + 1)
 * writes the node's old output. Drops C and Gemm's attributes. */
static enum nn_status gemm_split(struct onnx_model *m, Onnx__NodeProto *node, size_t at,
				 const char *base, struct nn_err *e)
{
	enum nn_status st = NN_OK;
	bool has_c = node->n_input >= 3 && node->input[2] && node->input[2][0];
	char *yn = NULL, *an = NULL;
	if (has_c) {
		yn = mkname(m, node->output[0], "_matmul");
		an = mkname(m, node->name && node->name[0] ? node->name : base, "_bias");
		if (!yn || !an) {
			st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory");
			goto out;
		}
		if ((st = insert_node(m, at + 1, "Add", an, yn, node->input[2], node->output[0],
				      e)) != NN_OK)
			goto out;
		free(node->output[0]);
		node->output[0] = yn;
		yn = NULL;
	}
	for (size_t k = 2; k < node->n_input; k++)
		free(node->input[k]);
	if (node->n_input > 2)
		node->n_input = 2;
	onnx_remove_attr(node, "alpha");
	onnx_remove_attr(node, "beta");
	onnx_remove_attr(node, "transA");
	onnx_remove_attr(node, "transB");
	st = set_str(&node->op_type, "MatMul", e);
out:
	free(yn);
	free(an);
	return st;
}

/* format onnx: W -> 4-bit initializer + scale + zero point + DequantizeLinear. */
static enum nn_status one_onnx(struct onnx_model *m, const struct iwref *r,
			       const struct quant_params *p, const struct step_ctx *ctx,
			       Onnx__TensorProto *init, const struct tensor *w,
			       struct layer_out *lo, struct tensor *keep,
			       struct q4_scratch *scratch, struct nn_err *e)
{
	enum nn_status st = NN_OK;
	uint8_t *packed = NULL, *zpb = NULL, *zpk = NULL;
	float *sc = NULL;
	char *qn = NULL, *sn = NULL, *zn = NULL, *nn = NULL;
	struct tensor wv = *w; /* the weight as written: W, or W^T for a Gemm with transB */
	int kaxis = r->kaxis;
	Onnx__NodeProto *node = NULL;
	size_t at = 0;
	/* A Gemm becomes MatMul (+ Add of C) with B as [K, N] blocked along
	 * axis 0: ONNX Runtime fuses DequantizeLinear -> MatMul into its
	 * MatMulNBits kernel but runs DequantizeLinear -> Gemm as two nodes,
	 * re-dequantizing the weight on every call (~20x slower at batch 1). */
	bool to_mm = !strcmp(r->op, "Gemm") && !mm_eligible(m, r, w, &node, &at);
	bool transposed = to_mm && r->kaxis == 1;
	if (transposed) { /* written as W^T [K, N]: quantize_transposed */
		wv.shape[0] = w->shape[1], wv.shape[1] = w->shape[0];
		kaxis = 0;
	}
	w = &wv;
	size_t outer = 1, inner = 1, len = (size_t)w->shape[kaxis];
	for (int d = 0; d < kaxis; d++)
		outer *= (size_t)w->shape[d];
	for (int d = kaxis + 1; d < w->ndim; d++)
		inner *= (size_t)w->shape[d];
	size_t bs = (size_t)p->block_size, nb = (len + bs - 1) / bs;
	size_t n = outer * len * inner, ns = outer * nb * inner;
	int64_t sshape[TENSOR_MAX_DIMS];
	memcpy(sshape, w->shape, sizeof sshape);
	sshape[kaxis] = (int64_t)nb;
	/* Untransposed, the packed nibbles are written over the float storage
	 * (a nibble's byte lies far behind the floats still to be read) and that
	 * storage becomes the INT4 initializer's raw_data, as the int8 step does:
	 * no fresh pages to fault in, no 40 MB unmapped per 10M weights.
	 * Transposed, the tiles' columns land over the first eighth of the rows:
	 * quantize_transposed keeps those rows' bytes aside until they are read
	 * (a fresh 5 MB output buffer per 10M weights faulted in at ~2 GB/s and
	 * was a third of the transposed path), except when N is odd (nibble
	 * bytes shared between tiles: a zeroed buffer copied over the float
	 * storage afterwards). Neither when the floats are kept for bias
	 * correction, or are a private copy. */
	bool take = !keep && n > 0 && !w->owned &&
		    (init->raw_data.data == w->data || (void *)init->float_data == w->data);
	bool inplace = take && (!transposed || inner % 2 == 0);
	packed = inplace ? NULL : calloc(n / 2 + 1, 1);
	sc = malloc((ns ? ns : 1) * sizeof *sc);
	zpb = calloc(ns ? ns : 1, 1);
	zpk = calloc(ns / 2 + 1, 1);
	qn = mkname(m, r->name, "_quantized");
	sn = mkname(m, r->name, "_scale");
	zn = mkname(m, r->name, "_zero_point");
	nn = mkname(m, r->name, "_DequantizeLinear");
	if ((!inplace && !packed) || !sc || !zpb || !zpk || !qn || !sn || !zn || !nn) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for weight '%s'",
			     r->name);
		goto out;
	}
	if (transposed)
		st = quantize_transposed(w->data, inner, len, bs, p->symmetric,
					 inplace ? (uint8_t *)w->data : packed, inplace, sc,
					 p->symmetric ? NULL : zpb, &lo->stats, scratch,
					 step_threads(ctx), ctx, e);
	else
		st = quantize_par(w->data, outer, len, inner, bs, p->symmetric, 0, len * inner,
				  inplace ? (uint8_t *)w->data : packed, sc,
				  p->symmetric ? NULL : zpb, &lo->stats, QUANT_INT4_ISA_AUTO,
				  step_threads(ctx), ctx, e);
	if (st != NN_OK) {
		err_prefix(e, "weight '%s'", r->name);
		goto out; /* in place: the model is half converted, as quant.h says */
	}
	if (take) { /* the storage holds (or gets) the nibbles: take it */
		if (!inplace) {
			memcpy(w->data, packed, (n + 1) / 2);
			free(packed);
		}
		if (init->raw_data.data == w->data) {
			init->raw_data.data = NULL;
			init->raw_data.len = 0;
		} else {
			init->float_data = NULL;
			init->n_float_data = 0;
		}
		packed = (uint8_t *)w->data;
	}
	if (keep) { /* the float values of W as written (W^T for a rewritten Gemm) */
		if ((st = tensor_alloc(keep, DT_FLOAT, wv.ndim, wv.shape, e)) != NN_OK)
			goto out;
		float *dst = keep->data;
		const float *src = wv.data;
		if (transposed) {
			for (size_t j = 0; j < inner; j++)
				for (size_t k = 0; k < len; k++)
					dst[k * inner + j] = src[j * len + k];
		} else {
			memcpy(dst, src, n * sizeof *dst);
		}
	}
	/* symmetric: zpb is all zeros and zpk, calloc'd, already their packed
	 * form (not touching them spares faulting in their pages) */
	if (!p->symmetric)
		quant_int4_pack(zpb, ns, zpk);
	enum dtype qt = p->symmetric ? DT_INT4 : DT_UINT4;
	if ((st = add_packed(m, qn, &packed, (n + 1) / 2, e)) != NN_OK ||
	    (st = set_4bit(m, qn, qt, w->ndim, w->shape, e)) != NN_OK ||
	    (st = add_float(m, sn, &sc, w->ndim, sshape, e)) != NN_OK ||
	    (st = add_packed(m, zn, &zpk, (ns + 1) / 2, e)) != NN_OK ||
	    (st = set_4bit(m, zn, qt, w->ndim, sshape, e)) != NN_OK)
		goto out;
	const char *ins[3] = {qn, sn, zn};
	const char *outs[1] = {r->name};
	Onnx__NodeProto *dq = NULL;
	if ((st = onnx_prepend_node(m, "DequantizeLinear", nn, ins, 3, outs, 1, &dq, e)) !=
		    NN_OK ||
	    (st = onnx_node_set_int_attr(dq, "axis", kaxis, e)) != NN_OK ||
	    (st = onnx_node_set_int_attr(dq, "block_size", p->block_size, e)) != NN_OK)
		goto out;
	if (to_mm) {
		/* re-found: prepending the DequantizeLinear moved the node array */
		Onnx__NodeProto *g = find_node(m, r->node, r->op, r->name, &at);
		if (!g) {
			st = err_set(e, NN_EINTERNAL, "internal", "", "node of '%s' vanished",
				     r->name);
			goto out;
		}
		if ((st = gemm_split(m, g, at, r->name, e)) != NN_OK)
			goto out;
	}
	lo->axis = kaxis;
	lo->as_matmul = to_mm;
	lo->blocks = (int64_t)ns;
	lo->bytes_after = (n + 1) / 2 + ns * 4 + (ns + 1) / 2;
out:
	free(packed);
	free(sc);
	free(zpb);
	free(zpk);
	free(qn);
	free(sn);
	free(zn);
	free(nn);
	return st;
}

/* format matmulnbits: the consuming MatMul/Gemm becomes MatMulNBits. */
static enum nn_status one_mnb(struct onnx_model *m, const struct iwref *r,
			      const struct quant_params *p, const struct step_ctx *ctx,
			      const struct tensor *w, struct layer_out *lo, struct nn_err *e)
{
	enum nn_status st = NN_OK;
	size_t at = 0;
	Onnx__NodeProto *node = NULL;
	bool gemm = strcmp(r->op, "Gemm") == 0;
	lo->skipped = true;
	if ((lo->why = mm_eligible(m, r, w, &node, &at)) != NULL)
		return NN_OK;
	bool tb = gemm && onnx_node_int_attr(node, "transB", 0) != 0;
	size_t K = (size_t)w->shape[tb ? 1 : 0], N = (size_t)w->shape[tb ? 0 : 1];
	size_t bs = (size_t)p->block_size, nb = (K + bs - 1) / bs, zrow = (nb + 1) / 2;
	float *wt = NULL, *sc = NULL;
	uint8_t *packed = NULL, *zpb = NULL, *zpk = NULL;
	char *qn = NULL, *sn = NULL, *zn = NULL;
	size_t pb = N * nb * bs / 2;
	size_t nsc = N * nb + 1; /* +1: never a zero-size allocation */
	packed = calloc(pb + 1, 1);
	sc = malloc(nsc * sizeof *sc);
	zpb = calloc(nsc, 1);
	zpk = calloc(N * zrow + 1, 1);
	if (!tb)
		wt = malloc((K * N + 1) * sizeof *wt);
	qn = mkname(m, r->name, "_Q4");
	sn = mkname(m, r->name, "_scales");
	zn = mkname(m, r->name, "_zp");
	if (!packed || !sc || !zpb || !zpk || (!tb && !wt) || !qn || !sn || !zn) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for weight '%s'",
			     r->name);
		goto out;
	}
	const float *rows = w->data; /* [N][K] */
	if (!tb) {
		const float *src = w->data;
		for (size_t k = 0; k < K; k++)
			for (size_t c = 0; c < N; c++)
				wt[c * K + k] = src[k * N + c];
		rows = wt;
	}
	if ((st = quantize_par(rows, N, K, 1, bs, p->symmetric, p->symmetric ? 8 : 0, nb * bs,
			       packed, sc, p->symmetric ? NULL : zpb, &lo->stats,
			       QUANT_INT4_ISA_AUTO, step_threads(ctx), ctx, e)) != NN_OK) {
		err_prefix(e, "weight '%s'", r->name);
		goto out;
	}
	for (size_t c = 0; c < N; c++)
		quant_int4_pack(zpb + c * nb, nb, zpk + c * zrow);
	int64_t bshape[3] = {(int64_t)N, (int64_t)nb, (int64_t)(bs / 2)};
	int64_t sshape[1] = {(int64_t)(N * nb)};
	struct tensor bt = {0};
	tensor_view(&bt, DT_UINT8, 3, bshape, packed);
	bt.owned = true;
	if ((st = onnx_add_initializer_take(m, qn, &bt, e)) != NN_OK)
		goto out;
	packed = NULL;
	if ((st = add_float(m, sn, &sc, 1, sshape, e)) != NN_OK)
		goto out;
	if (!p->symmetric && (st = add_packed(m, zn, &zpk, N * zrow, e)) != NN_OK)
		goto out;
	/* Y = MatMulNBits(A) (+ C by an Add after it, for a Gemm). */
	if (gemm && (st = gemm_split(m, node, at, r->name, e)) != NN_OK)
		goto out;
	size_t nin = p->symmetric ? 3 : 4;
	char **ins = calloc(nin, sizeof *ins);
	if (!ins) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory");
		goto out;
	}
	ins[0] = node->input[0];
	node->input[0] = NULL;
	ins[1] = strdup(qn);
	ins[2] = strdup(sn);
	if (nin == 4)
		ins[3] = strdup(zn);
	for (size_t k = 0; k < node->n_input; k++)
		free(node->input[k]);
	free(node->input);
	node->input = ins;
	node->n_input = nin;
	if (!ins[1] || !ins[2] || (nin == 4 && !ins[3])) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory");
		goto out;
	}
	if ((st = set_str(&node->op_type, "MatMulNBits", e)) != NN_OK ||
	    (st = set_str(&node->domain, "com.microsoft", e)) != NN_OK ||
	    (st = onnx_node_set_int_attr(node, "K", (int64_t)K, e)) != NN_OK ||
	    (st = onnx_node_set_int_attr(node, "N", (int64_t)N, e)) != NN_OK ||
	    (st = onnx_node_set_int_attr(node, "bits", 4, e)) != NN_OK ||
	    (st = onnx_node_set_int_attr(node, "block_size", p->block_size, e)) != NN_OK ||
	    (st = onnx_node_set_int_attr(node, "accuracy_level", 0, e)) != NN_OK)
		goto out;
	onnx_remove_initializer(m, r->name);
	lo->skipped = false;
	lo->blocks = (int64_t)(N * nb);
	lo->bytes_after = pb + N * nb * 4 + (p->symmetric ? 0 : N * zrow);
out:
	free(wt);
	free(sc);
	free(packed);
	free(zpb);
	free(zpk);
	free(qn);
	free(sn);
	free(zn);
	return st;
}

static enum nn_status one(struct onnx_model *m, const struct iwref *r,
			  const struct quant_params *p, const struct step_ctx *ctx,
			  json_t *layers, uint64_t *params, struct tensor *keep,
			  struct q4_scratch *scratch, struct nn_err *e)
{
	struct tensor w = {0};
	struct layer_out lo = {.stats = {0, 0, INFINITY, 0}};
	Onnx__TensorProto *init = onnx_find_initializer(m, r->name);
	if (!init)
		return err_set(e, NN_EINTERNAL, "internal", "", "weight '%s' vanished", r->name);
	enum nn_status st = onnx_initializer_view(init, &w, e);
	if (st != NN_OK) {
		err_prefix(e, "weight '%s'", r->name);
		return st;
	}
	int64_t n = tensor_numel(&w);
	if (n <= 0) {
		tensor_free(&w);
		return NN_OK; /* nothing to quantize */
	}
	lo.bytes_before = (size_t)n * 4;
	if (p->format == QUANT_FORMAT_ONNX) {
		st = one_onnx(m, r, p, ctx, init, &w, &lo, keep, scratch, e);
		if (st == NN_OK)
			onnx_remove_initializer(m, r->name); /* after w's last use */
	} else {
		st = one_mnb(m, r, p, ctx, &w, &lo, e);
	}
	tensor_free(&w);
	if (st != NN_OK)
		return st;
	json_t *l = json_object();
	int bad = !l || json_array_append_new(layers, l);
	if (!bad) {
		bad |= step_json_set(l, "name", json_string(r->name));
		bad |= step_json_set(l, "op", json_string(r->op));
		bad |= step_json_set(l, "node", json_string(r->node));
		if (lo.skipped) {
			bad |= step_json_set(l, "skipped", json_string(lo.why));
		} else {
			*params += (uint64_t)n;
			bad |= step_json_set(l, "scheme", json_string("int4"));
			bad |= step_json_set(l, "bits", json_integer(4));
			bad |= step_json_set(l, "block_size", json_integer(p->block_size));
			bad |= step_json_set(l, "axis", json_integer(lo.axis));
			if (lo.as_matmul)
				bad |= step_json_set(l, "rewritten", json_string("Gemm as MatMul + Add"));
			bad |= step_json_set(l, "format",
					     json_string(p->format == QUANT_FORMAT_ONNX
								 ? "onnx"
								 : "matmulnbits"));
			bad |= step_json_set(l, "blocks", json_integer(lo.blocks));
			bool any = lo.stats.smax > 0;
			bad |= step_json_set(l, "scale_min", any ? step_json_real(lo.stats.smin)
								  : json_null());
			bad |= step_json_set(l, "scale_max", any ? step_json_real(lo.stats.smax)
								  : json_null());
			bad |= step_json_set(l, "mse", step_json_real(lo.stats.sq / (double)n));
			bad |= step_json_set(l, "max_abs_error", step_json_real(lo.stats.maxerr));
			bad |= step_json_set(l, "bytes_before",
					     json_integer((json_int_t)lo.bytes_before));
			bad |= step_json_set(l, "bytes_after",
					     json_integer((json_int_t)lo.bytes_after));
		}
	}
	if (bad)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for metrics");
	return NN_OK;
}

enum nn_status quant_int4_run(struct onnx_model *m, const struct quant_params *p,
			      const struct step_ctx *ctx, json_t **metrics, struct nn_err *e)
{
	enum nn_status st = NN_OK;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct onnx_weight_ref *refs = NULL;
	size_t nref = 0, nw = 0;
	struct iwref *ws = NULL;
	json_t *out = NULL, *layers = NULL;
	*metrics = NULL;
	struct tensor *floats = NULL;
	struct quant_bias_weight *bw = NULL;
	json_t *bias = NULL, *kept = NULL;
	/* one per runner thread, and the transposed path's kept bytes */
	struct q4_scratch scratch[Q4_MAX_THREADS + 1] = {{0}};
	if (p->block_size < 16 || p->block_size > 128 || (p->block_size & (p->block_size - 1)))
		return err_set(e, NN_EINVAL, "invalid_spec", "", "block_size must be 16..128");
	if (p->bias_correction && p->format != QUANT_FORMAT_ONNX) {
		char field[64];
		snprintf(field, sizeof field, "steps[%zu].bias_correction", p->index);
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "bias_correction needs format \"onnx\" (it corrects layers "
			       "reading a DequantizeLinear output)");
	}
	size_t bytes_before = onnx_packed_size(m);
	/* quant.c's selection (ops, exclude: a weight read by an excluded node
	 * or by a weight operator outside ops stays float, listed in kept_float) */
	if (!(kept = json_array())) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for metrics");
		goto fail;
	}
	if ((st = quant_select_weights(m, p, &refs, &nref, kept, e)) != NN_OK)
		goto fail;
	ws = calloc(nref ? nref : 1, sizeof *ws);
	if (!ws) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for %zu weights", nref);
		goto fail;
	}
	for (size_t i = 0; i < nref; i++) {
		const Onnx__NodeProto *nd = refs[i].node;
		const char *op = nd && nd->op_type ? nd->op_type : "";
		const char *nm = nd && nd->name ? nd->name : "";
		size_t nd_ = refs[i].init->n_dims;
		int ca = refs[i].channel_axis, kaxis;
		unsigned bit = strcmp(op, "Gemm") == 0     ? QUANT_OP_GEMM
			       : strcmp(op, "MatMul") == 0 ? QUANT_OP_MATMUL
							   : 0;
		if (!bit || nd_ < 2)
			continue;
		if (bit == QUANT_OP_GEMM)
			kaxis = ca == 1 ? 0 : 1;
		else if (ca == (int)nd_ - 1)
			kaxis = (int)nd_ - 2;
		else
			continue; /* MatMul's first operand: no K axis of a weight */
		ws[nw].name = strdup(refs[i].init->name ? refs[i].init->name : "");
		ws[nw].op = strdup(op);
		ws[nw].node = strdup(nm);
		ws[nw].kaxis = kaxis;
		if (!ws[nw].name || !ws[nw].op || !ws[nw].node) {
			nw++;
			st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for names");
			goto fail;
		}
		nw++;
	}
	free(refs);
	refs = NULL;
	if (nw == 0) {
		st = err_set(e, NN_EINVAL, "invalid_spec", "",
			     "model has no Gemm/MatMul float weights to quantize to int4");
		goto fail;
	}
	if (p->format == QUANT_FORMAT_ONNX && onnx_opset(m) < 21 &&
	    (st = onnx_raise_opset(m, 21, e)) != NN_OK)
		goto fail;
	if (p->format == QUANT_FORMAT_MATMULNBITS && (st = ensure_ms_domain(m, e)) != NN_OK)
		goto fail;
	layers = json_array();
	if (!layers) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for metrics");
		goto fail;
	}
	if (p->bias_correction) {
		floats = calloc(nw, sizeof *floats);
		bw = calloc(nw, sizeof *bw);
		if (!floats || !bw) {
			st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for float weights");
			goto fail;
		}
	}
	uint64_t params = 0;
	for (size_t i = 0; i < nw; i++) {
		if (step_canceled(ctx)) {
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled while quantizing");
			goto fail;
		}
		if ((st = one(m, &ws[i], p, ctx, layers, &params, floats ? &floats[i] : NULL,
			      scratch, e)) != NN_OK)
			goto fail;
		step_progress(ctx, (double)(i + 1) / (double)nw);
	}
	if (p->bias_correction) {
		/* Bias correction (quant_bias.h) against the float weights as written. */
		size_t nbw = 0;
		for (size_t i = 0; i < nw; i++)
			if (floats[i].data) {
				bw[nbw].name = ws[i].name;
				bw[nbw].floats = &floats[i];
				nbw++;
			}
		if ((st = quant_bias_correct(m, bw, nbw, ctx, &bias, e)) != NN_OK)
			goto fail;
		const json_t *bl = json_object_get(bias, "layers");
		for (size_t k = 0; k < json_array_size(bl); k++) {
			const json_t *b = json_array_get(bl, k);
			const char *nm = json_string_value(json_object_get(b, "name"));
			for (size_t j = 0; nm && j < json_array_size(layers); j++) {
				json_t *l = json_array_get(layers, j);
				const char *ln = json_string_value(json_object_get(l, "name"));
				if (ln && !strcmp(ln, nm) &&
				    json_object_set(l, "bias_mean_shift",
						    json_object_get(b, "mean_shift"))) {
					st = err_set(e, NN_ENOMEM, "out_of_memory", "",
						     "no memory for quantize metrics");
					goto fail;
				}
			}
		}
	}
	out = json_object();
	int bad = !out;
	bad |= step_json_set(out, "scheme", json_string("int4"));
	bad |= step_json_set(out, "bits", json_integer(4));
	bad |= step_json_set(out, "block_size", json_integer(p->block_size));
	bad |= step_json_set(out, "symmetric", json_boolean(p->symmetric));
	bad |= step_json_set(out, "format", json_string(p->format == QUANT_FORMAT_ONNX
								 ? "onnx"
								 : "matmulnbits"));
	bad |= step_json_set(out, "parameters", json_integer((json_int_t)params));
	bad |= step_json_set(out, "bytes_before", json_integer((json_int_t)bytes_before));
	bad |= step_json_set(out, "bytes_after", json_integer((json_int_t)onnx_packed_size(m)));
	bad |= step_json_set(out, "opset", json_integer((json_int_t)onnx_opset(m)));
	bad |= step_json_set(out, "ir_version",
			     json_integer((json_int_t)m->proto->ir_version));
	json_t *contrib = json_array();
	if (contrib && p->format == QUANT_FORMAT_MATMULNBITS)
		bad |= json_array_append_new(contrib, json_string("com.microsoft.MatMulNBits"));
	bad |= step_json_set(out, "contrib_ops", contrib);
	bad |= step_json_set(out, "layers", layers);
	layers = NULL;
	bad |= step_json_set(out, "kept_float", kept);
	kept = NULL;
	if (bias) {
		bad |= step_json_set(out, "bias_correction", bias);
		bias = NULL;
	}
	bad |= step_json_set(out, "seconds", json_real(step_seconds_since(&t0)));
	if (bad) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for quantize metrics");
		goto fail;
	}
	*metrics = out;
	out = NULL;
fail:
	json_decref(out);
	json_decref(layers);
	json_decref(bias);
	json_decref(kept);
	for (size_t i = 0; floats && i < nw; i++)
		tensor_free(&floats[i]);
	free(floats);
	free(bw);
	for (size_t i = 0; ws && i < nw; i++) {
		free(ws[i].name);
		free(ws[i].op);
		free(ws[i].node);
	}
	free(ws);
	free(refs);
	for (size_t i = 0; i <= Q4_MAX_THREADS; i++)
		free(scratch[i].mem);
	return st;
}
