#include "quant.h"
#include "quant_dynamic.h"
#include "quant_float.h"
#include "quant_kmeans.h"
#include "quant_static.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "onnx_graph.h"
#include "quant_bias.h"
#include "quant_int4.h"
#include "spec.h"
#include "tensor.h"

typedef uint32_t u32a __attribute__((may_alias));

#define ABS_MASK 0x7fffffffu
/* Adding then subtracting 1.5 * 2^23 rounds any |y| <= 2^22 to the nearest
 * integer, ties to even, in the current (default) rounding mode: the same as
 * nearbyintf, but with two adds the vectorizer can use on plain SSE2. */
#define ROUND_MAGIC 12582912.0f
/* The hot loops are compiled twice, for AVX2 and for the x86-64 baseline
 * (SSE2), and the dynamic loader picks one per CPU (ifunc). AVX2 doubles the
 * lanes and has packs and integer min/max that SSE2 emulates: the quantize
 * pass with its error metrics is compute-bound on SSE2. Both clones run the
 * same IEEE operations on every element (c11 mode does not contract a * b + c
 * into an FMA, and "avx2" does not enable FMA anyway), and the per-lane float
 * sums keep their order, so the results are bit-identical either way. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HOT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HOT_CLONES
#endif
/* Software prefetch distance, in elements (4 KiB of floats): the hardware
 * prefetchers stop at 4 KiB page boundaries, and a model's weights live in
 * protobuf-c's 4 KiB-page buffers, not huge pages. */
#define PF_DIST 1024

/* Inner loops run over fixed-size chunks so that gcc -O2's "very cheap"
 * vectorizer cost model accepts them (no runtime trip count, no epilogue). */
#define CHUNK 64

/* ---- per-channel parameters (shared by the kernels and the references) ---- */

/* amax must be finite. */
static void sym_params(float amax, float *scale, float *inv)
{
	float s = amax / 127.0f;
	if (!(s >= FLT_MIN)) { /* all zeros, or too small for a normal scale */
		*scale = 1.0f;
		*inv = 0.0f;
	} else {
		*scale = s;
		*inv = 127.0f / amax;
	}
}

/* mn, mx must be finite. */
static void asym_params(float mn, float mx, float *scale, float *inv, float *zpf)
{
	float lo = mn < 0 ? mn : 0.0f, hi = mx > 0 ? mx : 0.0f;
	float s = hi / 255.0f - lo / 255.0f; /* no overflow for any finite range */
	if (!(s >= FLT_MIN)) {
		*scale = 1.0f;
		*inv = 0.0f;
		*zpf = 0.0f;
		return;
	}
	*scale = s;
	*inv = 1.0f / s;
	float z = nearbyintf(-lo * *inv);
	*zpf = z < 0 ? 0 : z > 255 ? 255 : z;
}

/* ---- vectorizable building blocks ----
 * Float comparisons are done on integer images of the bits: with the default
 * -ftrapping-math gcc will not if-convert float compares, but it vectorizes
 * integer ones on plain SSE2. restrict tells it the arrays do not overlap. */

static inline float bits_float(uint32_t b)
{
	float f;
	memcpy(&f, &b, sizeof f);
	return f;
}

/* An int32 that orders like the float (for non-NaN): negative floats get
 * their magnitude bits flipped. Its own inverse. */
static inline int32_t order_key(uint32_t b)
{
	uint32_t neg = 0u - (b >> 31);
	return (int32_t)(b ^ (neg >> 1));
}

static inline float key_float(int32_t k)
{
	return bits_float((uint32_t)order_key((uint32_t)k));
}

/* Keys at or beyond these mean +-Inf or NaN. */
#define KEY_POS_INF ((int32_t)0x7f800000)
#define KEY_NEG_INF ((int32_t)0x807fffff)

HOT_CLONES
static int32_t absmax_block(const float *restrict w, size_t n)
{
	const u32a *u = (const u32a *)w;
	/* Non-negative magnitudes' bits compare the same as signed ints. */
	int32_t m = 0;
	size_t i = 0;
	for (; i + CHUNK <= n; i += CHUNK) {
		int32_t c = 0;
		for (size_t j = 0; j < CHUNK; j++) {
			int32_t x = (int32_t)(u[i + j] & ABS_MASK);
			c = x > c ? x : c;
		}
		m = c > m ? c : m;
	}
	for (; i < n; i++) {
		int32_t x = (int32_t)(u[i] & ABS_MASK);
		m = x > m ? x : m;
	}
	return m;
}

HOT_CLONES
static void absmax_rows(const float *restrict w, size_t n, int32_t *restrict acc)
{
	const u32a *u = (const u32a *)w;
	size_t i = 0;
	for (; i + CHUNK <= n; i += CHUNK) {
		for (size_t j = 0; j < CHUNK; j++) {
			int32_t x = (int32_t)(u[i + j] & ABS_MASK);
			acc[i + j] = x > acc[i + j] ? x : acc[i + j];
		}
	}
	for (; i < n; i++) {
		int32_t x = (int32_t)(u[i] & ABS_MASK);
		acc[i] = x > acc[i] ? x : acc[i];
	}
}

/* Four rows at a time: the per-channel maxima are read and written once per
 * four elements instead of once per element (they do not fit L1 for wide
 * layers). */
HOT_CLONES
static void absmax_rows4(const float *restrict w, size_t stride, size_t n, int32_t *restrict acc)
{
	const u32a *u0 = (const u32a *)w, *u1 = (const u32a *)(w + stride),
		   *u2 = (const u32a *)(w + 2 * stride), *u3 = (const u32a *)(w + 3 * stride);
	size_t i = 0;
	for (; i + CHUNK <= n; i += CHUNK) {
		for (size_t j = 0; j < CHUNK; j++) {
			int32_t x0 = (int32_t)(u0[i + j] & ABS_MASK), x1 = (int32_t)(u1[i + j] & ABS_MASK);
			int32_t x2 = (int32_t)(u2[i + j] & ABS_MASK), x3 = (int32_t)(u3[i + j] & ABS_MASK);
			int32_t a = x0 > x1 ? x0 : x1, b = x2 > x3 ? x2 : x3;
			a = a > b ? a : b;
			acc[i + j] = a > acc[i + j] ? a : acc[i + j];
		}
	}
	for (; i < n; i++) {
		for (size_t r = 0; r < 4; r++) {
			int32_t x = (int32_t)(((const u32a *)(w + r * stride))[i] & ABS_MASK);
			acc[i] = x > acc[i] ? x : acc[i];
		}
	}
}

HOT_CLONES
static void minmax_block(const float *restrict w, size_t n, int32_t *kmin, int32_t *kmax)
{
	const u32a *u = (const u32a *)w;
	int32_t lo = *kmin, hi = *kmax;
	size_t i = 0;
	for (; i + CHUNK <= n; i += CHUNK) {
		int32_t cl = lo, ch = hi;
		for (size_t j = 0; j < CHUNK; j++) {
			int32_t k = order_key(u[i + j]);
			cl = k < cl ? k : cl;
			ch = k > ch ? k : ch;
		}
		lo = cl;
		hi = ch;
	}
	for (; i < n; i++) {
		int32_t k = order_key(u[i]);
		lo = k < lo ? k : lo;
		hi = k > hi ? k : hi;
	}
	*kmin = lo;
	*kmax = hi;
}

HOT_CLONES
static void minmax_rows(const float *restrict w, size_t n, int32_t *restrict kmin,
			int32_t *restrict kmax)
{
	const u32a *u = (const u32a *)w;
	size_t i = 0;
	for (; i + CHUNK <= n; i += CHUNK) {
		for (size_t j = 0; j < CHUNK; j++) {
			int32_t k = order_key(u[i + j]);
			kmin[i + j] = k < kmin[i + j] ? k : kmin[i + j];
			kmax[i + j] = k > kmax[i + j] ? k : kmax[i + j];
		}
	}
	for (; i < n; i++) {
		int32_t k = order_key(u[i]);
		kmin[i] = k < kmin[i] ? k : kmin[i];
		kmax[i] = k > kmax[i] ? k : kmax[i];
	}
}

/* Round to nearest even, then clamp as integers (the same as clamping first,
 * the bounds being integers). |y| stays far below 2^22 for every input the
 * parameters above produce. */
static inline int32_t q8(float x, float inv)
{
	int32_t v = (int32_t)((x * inv + ROUND_MAGIC) - ROUND_MAGIC);
	v = v > 127 ? 127 : v;
	v = v < -127 ? -127 : v;
	return v;
}

static inline int32_t qu8(float x, float inv, float zpf)
{
	int32_t v = (int32_t)(((x * inv + zpf) + ROUND_MAGIC) - ROUND_MAGIC);
	v = v > 255 ? 255 : v;
	v = v < 0 ? 0 : v;
	return v;
}

HOT_CLONES
static void q8_block(const float *restrict w, size_t n, float inv, int8_t *restrict q)
{
	size_t i = 0;
	for (; i + CHUNK <= n; i += CHUNK)
		for (size_t j = 0; j < CHUNK; j++)
			q[i + j] = (int8_t)q8(w[i + j], inv);
	for (; i < n; i++)
		q[i] = (int8_t)q8(w[i], inv);
}

HOT_CLONES
static void q8_rows(const float *restrict w, size_t n, const float *restrict inv,
		    int8_t *restrict q)
{
	size_t i = 0;
	for (; i + CHUNK <= n; i += CHUNK)
		for (size_t j = 0; j < CHUNK; j++)
			q[i + j] = (int8_t)q8(w[i + j], inv[i + j]);
	for (; i < n; i++)
		q[i] = (int8_t)q8(w[i], inv[i]);
}

HOT_CLONES
static void qu8_block(const float *restrict w, size_t n, float inv, float zpf,
		      uint8_t *restrict q)
{
	size_t i = 0;
	for (; i + CHUNK <= n; i += CHUNK)
		for (size_t j = 0; j < CHUNK; j++)
			q[i + j] = (uint8_t)qu8(w[i + j], inv, zpf);
	for (; i < n; i++)
		q[i] = (uint8_t)qu8(w[i], inv, zpf);
}

HOT_CLONES
static void qu8_rows(const float *restrict w, size_t n, const float *restrict inv,
		     const float *restrict zpf, uint8_t *restrict q)
{
	size_t i = 0;
	for (; i + CHUNK <= n; i += CHUNK)
		for (size_t j = 0; j < CHUNK; j++)
			q[i + j] = (uint8_t)qu8(w[i + j], inv[i + j], zpf[i + j]);
	for (; i < n; i++)
		q[i] = (uint8_t)qu8(w[i], inv[i], zpf[i]);
}

/* ---- quantize and measure the error in one pass (used by the step) ----
 * The step reports the dequantization error, (float)(q - zero_point) * scale
 * against w as ONNX Runtime computes it; doing that inside the quantize pass,
 * while w is in registers, saves a third pass over the weights. Float partial
 * sums live in ERR_LANES lanes (gcc does not vectorize an in-order float
 * reduction) and are flushed to double every ERR_FLUSH_EVERY lane steps; |d|
 * maxima use the integer image of the float bits. */

#define ERR_LANES 16
#define ERR_FLUSH_EVERY 256

struct err_stats {
	double sq;       /* sum of squared errors */
	int32_t maxbits; /* bits of the largest |error| */
	int32_t *used;   /* per channel: non-zero once some q differs from the zero point */
	bool avx2;       /* use the AVX2 loops (the CPU has AVX2) */
	bool avx512;     /* use the AVX-512 loops (the CPU has AVX-512F) */
	double *log;     /* non-NULL: the addends of sq are stored here, in order,
			  * instead (a threaded unit's; see q8_par) */
	size_t nlog;
};

/* sq += v, or v logged: adding the logs of units in unit order afterwards
 * gives the same double as one running sum. */
static inline void err_add(struct err_stats *st, double v)
{
	if (st->log)
		st->log[st->nlog++] = v;
	else
		st->sq += v;
}

static inline int32_t abs_bits(float d)
{
	uint32_t b;
	memcpy(&b, &d, sizeof b);
	return (int32_t)(b & ABS_MASK);
}

static void lanes_fold(float *sq, int32_t *mx, struct err_stats *st)
{
	for (size_t j = 0; j < ERR_LANES; j++) {
		err_add(st, sq[j]);
		sq[j] = 0;
		st->maxbits = mx[j] > st->maxbits ? mx[j] : st->maxbits;
	}
}

HOT_CLONES
static void q8_block_err(const float *restrict w, size_t n, float inv, float s,
			 int8_t *restrict q, struct err_stats *st)
{
	/* Blocks of ERR_FLUSH_EVERY lane steps with the lanes in locals (no
	 * address escapes inside a block, so they stay in registers); the same
	 * additions in the same order as one running loop with a flush counter. */
	float sq[ERR_LANES] = {0};
	int32_t mx[ERR_LANES] = {0};
	size_t i = 0;
	while (i + ERR_LANES <= n) {
		size_t steps = (n - i) / ERR_LANES;
		steps = steps < ERR_FLUSH_EVERY ? steps : ERR_FLUSH_EVERY;
		float a[ERR_LANES] = {0};
		int32_t b[ERR_LANES] = {0};
		for (size_t t = 0; t < steps; t++, i += ERR_LANES) {
			for (size_t j = 0; j < ERR_LANES; j++) {
				float x = w[i + j];
				int32_t v = q8(x, inv);
				q[i + j] = (int8_t)v;
				float d = (float)v * s - x;
				int32_t ab = abs_bits(d);
				a[j] += d * d;
				b[j] = ab > b[j] ? ab : b[j];
			}
		}
		for (size_t j = 0; j < ERR_LANES; j++) {
			sq[j] = a[j];
			mx[j] = b[j] > mx[j] ? b[j] : mx[j];
		}
		if (steps == ERR_FLUSH_EVERY)
			lanes_fold(sq, mx, st); /* a full block: flushed now, as before */
	}
	for (; i < n; i++) {
		float x = w[i];
		int32_t v = q8(x, inv);
		q[i] = (int8_t)v;
		float d = (float)v * s - x;
		int32_t ab = abs_bits(d);
		err_add(st, (double)d * d);
		st->maxbits = ab > st->maxbits ? ab : st->maxbits;
	}
	lanes_fold(sq, mx, st);
}

HOT_CLONES
static void q8_rows_err(const float *restrict w, size_t n, const float *restrict inv,
			const float *restrict s, int8_t *restrict q, struct err_stats *st)
{
	float sq[ERR_LANES] = {0};
	int32_t mx[ERR_LANES] = {0};
	size_t i = 0;
	for (; i + ERR_LANES <= n; i += ERR_LANES) {
		for (size_t j = 0; j < ERR_LANES; j++) {
			float x = w[i + j];
			int32_t v = q8(x, inv[i + j]);
			q[i + j] = (int8_t)v;
			float d = (float)v * s[i + j] - x;
			int32_t ab = abs_bits(d);
			sq[j] += d * d;
			mx[j] = ab > mx[j] ? ab : mx[j];
		}
	}
	for (; i < n; i++) {
		float x = w[i];
		int32_t v = q8(x, inv[i]);
		q[i] = (int8_t)v;
		float d = (float)v * s[i] - x;
		int32_t ab = abs_bits(d);
		err_add(st, (double)d * d);
		st->maxbits = ab > st->maxbits ? ab : st->maxbits;
	}
	lanes_fold(sq, mx, st); /* a row is at most `channels` elements: no overflow risk */
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define HAVE_ERR_AVX2 1

/* The symmetric quantize-and-measure loops in AVX2 intrinsics. gcc
 * vectorizes the C versions with 16-byte vectors only (sixteen int8 outputs
 * per lane step fill one), which leaves the step's quantize pass
 * compute-bound. Same operations per element and per lane as the C loops:
 * lane j of the 16 accumulates elements i + j (two 8-float registers), no
 * FMA (not enabled for these functions), so the results are bit-identical;
 * tests compare the two. */
__attribute__((target("avx2"))) static inline void
q8x16_avx2(const float *w, __m256 inv0, __m256 inv1, __m256 s0, __m256 s1, int8_t *q,
	   __m256 *sq0, __m256 *sq1, __m256i *mx0, __m256i *mx1)
{
	const __m256 magic = _mm256_set1_ps(ROUND_MAGIC);
	const __m256i top = _mm256_set1_epi32(127), bot = _mm256_set1_epi32(-127);
	const __m256i absm = _mm256_set1_epi32((int32_t)ABS_MASK);
	__m256 x0 = _mm256_loadu_ps(w), x1 = _mm256_loadu_ps(w + 8);
	__m256i v0 = _mm256_cvttps_epi32(
		_mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x0, inv0), magic), magic));
	__m256i v1 = _mm256_cvttps_epi32(
		_mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x1, inv1), magic), magic));
	v0 = _mm256_max_epi32(_mm256_min_epi32(v0, top), bot);
	v1 = _mm256_max_epi32(_mm256_min_epi32(v1, top), bot);
	__m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(v0, v1), 0xd8);
	_mm_storeu_si128((__m128i *)q, _mm_packs_epi16(_mm256_castsi256_si128(p),
						       _mm256_extracti128_si256(p, 1)));
	__m256 d0 = _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v0), s0), x0);
	__m256 d1 = _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v1), s1), x1);
	*sq0 = _mm256_add_ps(*sq0, _mm256_mul_ps(d0, d0));
	*sq1 = _mm256_add_ps(*sq1, _mm256_mul_ps(d1, d1));
	*mx0 = _mm256_max_epi32(*mx0, _mm256_and_si256(_mm256_castps_si256(d0), absm));
	*mx1 = _mm256_max_epi32(*mx1, _mm256_and_si256(_mm256_castps_si256(d1), absm));
}

__attribute__((target("avx2"))) static void
lanes_store_avx2(__m256 sq0, __m256 sq1, __m256i mx0, __m256i mx1, float *sq, int32_t *mx)
{
	int32_t b[ERR_LANES];
	_mm256_storeu_ps(sq, sq0);
	_mm256_storeu_ps(sq + 8, sq1);
	_mm256_storeu_si256((__m256i *)b, mx0);
	_mm256_storeu_si256((__m256i *)(b + 8), mx1);
	for (size_t j = 0; j < ERR_LANES; j++)
		mx[j] = b[j] > mx[j] ? b[j] : mx[j];
}

/* q8_block_err, same flush points. */
__attribute__((target("avx2"))) static void
q8_block_err_avx2(const float *restrict w, size_t n, float inv, float s, int8_t *restrict q,
		  struct err_stats *st)
{
	float sq[ERR_LANES] = {0};
	int32_t mx[ERR_LANES] = {0};
	const __m256 vi = _mm256_set1_ps(inv), vs = _mm256_set1_ps(s);
	size_t i = 0;
	while (i + ERR_LANES <= n) {
		size_t steps = (n - i) / ERR_LANES;
		steps = steps < ERR_FLUSH_EVERY ? steps : ERR_FLUSH_EVERY;
		__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
		__m256i b0 = _mm256_setzero_si256(), b1 = _mm256_setzero_si256();
		for (size_t t = 0; t < steps; t++, i += ERR_LANES) {
			_mm_prefetch((const char *)(w + i + PF_DIST), _MM_HINT_T0);
			q8x16_avx2(w + i, vi, vi, vs, vs, q + i, &a0, &a1, &b0, &b1);
		}
		lanes_store_avx2(a0, a1, b0, b1, sq, mx);
		if (steps == ERR_FLUSH_EVERY)
			lanes_fold(sq, mx, st);
	}
	for (; i < n; i++) {
		float x = w[i];
		int32_t v = q8(x, inv);
		q[i] = (int8_t)v;
		float d = (float)v * s - x;
		int32_t ab = abs_bits(d);
		err_add(st, (double)d * d);
		st->maxbits = ab > st->maxbits ? ab : st->maxbits;
	}
	lanes_fold(sq, mx, st);
}

/* q8_rows_err: one fold per row. */
__attribute__((target("avx2"))) static void
q8_rows_err_avx2(const float *restrict w, size_t n, const float *restrict inv,
		 const float *restrict s, int8_t *restrict q, struct err_stats *st)
{
	float sq[ERR_LANES] = {0};
	int32_t mx[ERR_LANES] = {0};
	__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
	__m256i b0 = _mm256_setzero_si256(), b1 = _mm256_setzero_si256();
	size_t i = 0;
	for (; i + ERR_LANES <= n; i += ERR_LANES) {
		_mm_prefetch((const char *)(w + i + PF_DIST), _MM_HINT_T0);
		q8x16_avx2(w + i, _mm256_loadu_ps(inv + i), _mm256_loadu_ps(inv + i + 8),
			   _mm256_loadu_ps(s + i), _mm256_loadu_ps(s + i + 8), q + i, &a0, &a1, &b0,
			   &b1);
	}
	lanes_store_avx2(a0, a1, b0, b1, sq, mx);
	for (; i < n; i++) {
		float x = w[i];
		int32_t v = q8(x, inv[i]);
		q[i] = (int8_t)v;
		float d = (float)v * s[i] - x;
		int32_t ab = abs_bits(d);
		err_add(st, (double)d * d);
		st->maxbits = ab > st->maxbits ? ab : st->maxbits;
	}
	lanes_fold(sq, mx, st);
}

/* The same loops with AVX-512F: one 16-float register is exactly the 16
 * error lanes (lane j takes elements i + j), and vpmovdb narrows the int32
 * values to bytes in one instruction; half the instructions of the AVX2
 * loops, the same operations per element and per lane (no FMA), so values
 * and metrics stay bit-identical (tests compare them). */
#define HAVE_ERR_AVX512 1
__attribute__((target("avx512f"))) static inline void
q8x16_avx512(const float *w, __m512 inv, __m512 s, int8_t *q, __m512 *sq, __m512i *mx)
{
	const __m512 magic = _mm512_set1_ps(ROUND_MAGIC);
	const __m512i absm = _mm512_set1_epi32((int32_t)ABS_MASK);
	__m512 x = _mm512_loadu_ps(w);
	__m512i v = _mm512_cvttps_epi32(
		_mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x, inv), magic), magic));
	v = _mm512_max_epi32(_mm512_min_epi32(v, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
	_mm_storeu_si128((__m128i *)(void *)q, _mm512_cvtepi32_epi8(v));
	__m512 d = _mm512_sub_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(v), s), x);
	*sq = _mm512_add_ps(*sq, _mm512_mul_ps(d, d));
	*mx = _mm512_max_epi32(*mx, _mm512_and_si512(_mm512_castps_si512(d), absm));
}

__attribute__((target("avx512f"))) static void lanes_store_avx512(__m512 a, __m512i b, float *sq,
								  int32_t *mx)
{
	int32_t m[ERR_LANES];
	_mm512_storeu_ps(sq, a);
	_mm512_storeu_si512((void *)m, b);
	for (size_t j = 0; j < ERR_LANES; j++)
		mx[j] = m[j] > mx[j] ? m[j] : mx[j];
}

/* q8_block_err, same flush points. */
__attribute__((target("avx512f"))) static void
q8_block_err_avx512(const float *restrict w, size_t n, float inv, float s, int8_t *restrict q,
		    struct err_stats *st)
{
	float sq[ERR_LANES] = {0};
	int32_t mx[ERR_LANES] = {0};
	const __m512 vi = _mm512_set1_ps(inv), vs = _mm512_set1_ps(s);
	size_t i = 0;
	while (i + ERR_LANES <= n) {
		size_t steps = (n - i) / ERR_LANES;
		steps = steps < ERR_FLUSH_EVERY ? steps : ERR_FLUSH_EVERY;
		__m512 a = _mm512_setzero_ps();
		__m512i b = _mm512_setzero_si512();
		for (size_t t = 0; t < steps; t++, i += ERR_LANES) {
			_mm_prefetch((const char *)(w + i + PF_DIST), _MM_HINT_T0);
			q8x16_avx512(w + i, vi, vs, q + i, &a, &b);
		}
		lanes_store_avx512(a, b, sq, mx);
		if (steps == ERR_FLUSH_EVERY)
			lanes_fold(sq, mx, st);
	}
	for (; i < n; i++) {
		float x = w[i];
		int32_t v = q8(x, inv);
		q[i] = (int8_t)v;
		float d = (float)v * s - x;
		int32_t ab = abs_bits(d);
		err_add(st, (double)d * d);
		st->maxbits = ab > st->maxbits ? ab : st->maxbits;
	}
	lanes_fold(sq, mx, st);
}

/* q8_rows_err: one fold per row. */
__attribute__((target("avx512f"))) static void
q8_rows_err_avx512(const float *restrict w, size_t n, const float *restrict inv,
		   const float *restrict s, int8_t *restrict q, struct err_stats *st)
{
	float sq[ERR_LANES] = {0};
	int32_t mx[ERR_LANES] = {0};
	__m512 a = _mm512_setzero_ps();
	__m512i b = _mm512_setzero_si512();
	size_t i = 0;
	for (; i + ERR_LANES <= n; i += ERR_LANES) {
		_mm_prefetch((const char *)(w + i + PF_DIST), _MM_HINT_T0);
		q8x16_avx512(w + i, _mm512_loadu_ps(inv + i), _mm512_loadu_ps(s + i), q + i, &a, &b);
	}
	lanes_store_avx512(a, b, sq, mx);
	for (; i < n; i++) {
		float x = w[i];
		int32_t v = q8(x, inv[i]);
		q[i] = (int8_t)v;
		float d = (float)v * s[i] - x;
		int32_t ab = abs_bits(d);
		err_add(st, (double)d * d);
		st->maxbits = ab > st->maxbits ? ab : st->maxbits;
	}
	lanes_fold(sq, mx, st);
}
#endif

/* The step's symmetric error loops: AVX-512 or AVX2 when the CPU has it. */
static void q8_block_err_any(const float *restrict w, size_t n, float inv, float s,
			     int8_t *restrict q, struct err_stats *st)
{
#ifdef HAVE_ERR_AVX512
	if (st->avx512) {
		q8_block_err_avx512(w, n, inv, s, q, st);
		return;
	}
#endif
#ifdef HAVE_ERR_AVX2
	if (st->avx2) {
		q8_block_err_avx2(w, n, inv, s, q, st);
		return;
	}
#endif
	q8_block_err(w, n, inv, s, q, st);
}

static void q8_rows_err_any(const float *restrict w, size_t n, const float *restrict inv,
			    const float *restrict s, int8_t *restrict q, struct err_stats *st)
{
#ifdef HAVE_ERR_AVX512
	if (st->avx512) {
		q8_rows_err_avx512(w, n, inv, s, q, st);
		return;
	}
#endif
#ifdef HAVE_ERR_AVX2
	if (st->avx2) {
		q8_rows_err_avx2(w, n, inv, s, q, st);
		return;
	}
#endif
	q8_rows_err(w, n, inv, s, q, st);
}

HOT_CLONES
static void qu8_block_err(const float *restrict w, size_t n, float inv, float zpf, float s,
			  uint8_t *restrict q, struct err_stats *st, int32_t *used)
{
	float sq[ERR_LANES] = {0};
	int32_t mx[ERR_LANES] = {0}, any[ERR_LANES] = {0};
	int32_t zi = (int32_t)zpf;
	unsigned steps = 0;
	size_t i = 0;
	for (; i + ERR_LANES <= n; i += ERR_LANES) {
		for (size_t j = 0; j < ERR_LANES; j++) {
			float x = w[i + j];
			int32_t v = qu8(x, inv, zpf);
			q[i + j] = (uint8_t)v;
			float d = (float)(v - zi) * s - x;
			int32_t ab = abs_bits(d);
			sq[j] += d * d;
			mx[j] = ab > mx[j] ? ab : mx[j];
			any[j] |= v ^ zi;
		}
		if (++steps == ERR_FLUSH_EVERY) {
			steps = 0;
			lanes_fold(sq, mx, st);
		}
	}
	for (; i < n; i++) {
		float x = w[i];
		int32_t v = qu8(x, inv, zpf);
		q[i] = (uint8_t)v;
		float d = (float)(v - zi) * s - x;
		int32_t ab = abs_bits(d);
		err_add(st, (double)d * d);
		st->maxbits = ab > st->maxbits ? ab : st->maxbits;
		*used |= v ^ zi;
	}
	lanes_fold(sq, mx, st);
	for (size_t j = 0; j < ERR_LANES; j++)
		*used |= any[j];
}

HOT_CLONES
static void qu8_rows_err(const float *restrict w, size_t n, const float *restrict inv,
			 const float *restrict zpf, const float *restrict s, uint8_t *restrict q,
			 struct err_stats *st, int32_t *restrict used)
{
	float sq[ERR_LANES] = {0};
	int32_t mx[ERR_LANES] = {0};
	size_t i = 0;
	for (; i + ERR_LANES <= n; i += ERR_LANES) {
		for (size_t j = 0; j < ERR_LANES; j++) {
			float x = w[i + j];
			int32_t v = qu8(x, inv[i + j], zpf[i + j]);
			q[i + j] = (uint8_t)v;
			float d = ((float)v - zpf[i + j]) * s[i + j] - x;
			int32_t ab = abs_bits(d);
			sq[j] += d * d;
			mx[j] = ab > mx[j] ? ab : mx[j];
			used[i + j] |= v ^ (int32_t)zpf[i + j];
		}
	}
	for (; i < n; i++) {
		float x = w[i];
		int32_t v = qu8(x, inv[i], zpf[i]);
		q[i] = (uint8_t)v;
		float d = ((float)v - zpf[i]) * s[i] - x;
		int32_t ab = abs_bits(d);
		err_add(st, (double)d * d);
		st->maxbits = ab > st->maxbits ? ab : st->maxbits;
		used[i] |= v ^ (int32_t)zpf[i];
	}
	lanes_fold(sq, mx, st);
}

/* ---- kernels ---- */

/* Cancel polling by element count: `*since` accumulates work done. */
static enum nn_status poll(const struct step_ctx *ctx, size_t *since, size_t add,
			   struct nn_err *e)
{
	*since += add;
	if (*since < STEP_POLL_ELEMS)
		return NN_OK;
	*since = 0;
	if (step_canceled(ctx))
		return err_set(e, NN_ECANCELED, "canceled", "", "canceled while quantizing");
	return NN_OK;
}

static enum nn_status nonfinite(struct nn_err *e)
{
	return err_set(e, NN_EINVAL, "invalid_model", "", "weight contains NaN or Inf");
}

/* In place (the step: q overlays the float storage of w), pass 2 quantizes a
 * piece into a separate scratch buffer and then copies it over the floats it
 * came from: q[i] lives at byte i, w[i] at bytes 4i..4i+3, so a piece's bytes
 * only cover floats already read, and the kernels' restrict promises hold.
 * Row kernels (inner == 1) take a whole row of `channels` elements; block
 * kernels take pieces of INPLACE_PIECE elements, a multiple of the error
 * lanes' flush interval (ERR_LANES * ERR_FLUSH_EVERY), so the error sums are
 * accumulated in the same order as in one call: metrics stay bit-identical. */
#define INPLACE_PIECE ((size_t)4 * ERR_LANES * ERR_FLUSH_EVERY)
_Static_assert(INPLACE_PIECE % (ERR_LANES * ERR_FLUSH_EVERY) == 0, "pieces end on a flush");

/* Per-channel working arrays, one allocation per kernel call. */
struct chan_scratch {
	int32_t *ka, *kb; /* pass-1 keys: |w| maxima (sym) or min/max order keys (asym) */
	float *inv, *zpf;
	void *mem;
};

static enum nn_status scratch_new(struct chan_scratch *s, size_t outer, size_t channels,
				  size_t inner, struct nn_err *e)
{
	size_t n, bytes;
	if (channels == 0 || __builtin_mul_overflow(outer, channels, &n) ||
	    __builtin_mul_overflow(n, inner, &n) || __builtin_mul_overflow(channels, 16, &bytes))
		return err_set(e, NN_EINVAL, "invalid_argument", "",
			       "bad weight layout %zu x %zu x %zu", outer, channels, inner);
	s->mem = malloc(bytes);
	if (!s->mem)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for %zu scales",
			       channels);
	s->ka = s->mem;
	s->kb = s->ka + channels;
	s->inv = (float *)(s->kb + channels);
	s->zpf = s->inv + channels;
	return NN_OK;
}

/* stats: NULL for the bare kernel; the step passes one to get its error
 * metrics from the quantize pass itself. */
static enum nn_status sym_impl(const float *w, size_t outer, size_t channels, size_t inner,
			       int8_t *q, float *scales, const struct chan_scratch *s,
			       struct err_stats *stats, void *tmp, const struct step_ctx *ctx,
			       struct nn_err *e)
{
	enum nn_status st;
	size_t since = 0;
	int32_t *amax = s->ka;
	float *inv = s->inv;
	if (outer == 1 && inner > 1 && stats && tmp) {
		/* The step, channels contiguous (Gemm transB, Conv): each channel's
		 * range and quantization in one visit, the second read from L1/L2
		 * instead of memory. Same operations in the same order as the two
		 * passes below, so the same values and metrics; but a NaN or Inf
		 * in a later channel is found after earlier ones were written (the
		 * step then leaves the model half converted, as quant.h says). */
		for (size_t c = 0; c < channels; c++) {
			const float *wc = w + c * inner;
			int32_t m = absmax_block(wc, inner);
			if (m >= KEY_POS_INF)
				return nonfinite(e);
			sym_params(bits_float((uint32_t)m), &scales[c], &inv[c]);
			stats->used[c] = inv[c] != 0.0f;
			for (size_t off = 0; off < inner; off += INPLACE_PIECE) {
				size_t len = inner - off < INPLACE_PIECE ? inner - off : INPLACE_PIECE;
				q8_block_err_any(wc + off, len, inv[c], scales[c], tmp, stats);
				memcpy(q + c * inner + off, tmp, len);
			}
			if ((st = poll(ctx, &since, 2 * inner, e)) != NN_OK)
				return st;
		}
		return NN_OK;
	}
	memset(amax, 0, channels * sizeof *amax);
	for (size_t o = 0; o < outer; o++) {
		const float *row = w + o * channels * inner;
		if (inner == 1 && o + 4 <= outer) {
			absmax_rows4(row, channels, channels, amax);
			o += 3;
			if ((st = poll(ctx, &since, 3 * channels, e)) != NN_OK)
				return st;
		} else if (inner == 1) {
			absmax_rows(row, channels, amax);
		} else {
			for (size_t c = 0; c < channels; c++) {
				int32_t m = absmax_block(row + c * inner, inner);
				amax[c] = m > amax[c] ? m : amax[c];
			}
		}
		if ((st = poll(ctx, &since, channels * inner, e)) != NN_OK)
			return st;
	}
	for (size_t c = 0; c < channels; c++) {
		if (amax[c] >= KEY_POS_INF)
			return nonfinite(e);
		sym_params(bits_float((uint32_t)amax[c]), &scales[c], &inv[c]);
		/* Some q of channel c is non-zero exactly when inv[c] != 0: then the
		 * element of magnitude amax maps to round(amax * (127 / amax)) = 127
		 * (the product is 127 within an ulp); with inv 0 every q is 0. So
		 * the step learns which channels are used without a per-element OR. */
		if (stats)
			stats->used[c] = inv[c] != 0.0f;
	}
	for (size_t o = 0; o < outer; o++) {
		const float *row = w + o * channels * inner;
		int8_t *qrow = q + o * channels * inner;
		if (inner == 1 && stats && tmp && o == 0) {
			/* in place, row 0's bytes overlay its own floats: through tmp;
			 * row o >= 1's bytes [o C, (o + 1) C) lie below its floats
			 * [4 o C, ...) and over rows already read: written directly */
			q8_rows_err_any(row, channels, inv, scales, tmp, stats);
			memcpy(qrow, tmp, channels);
		} else if (inner == 1 && stats) {
			q8_rows_err_any(row, channels, inv, scales, qrow, stats);
		} else if (inner == 1) {
			q8_rows(row, channels, inv, qrow);
		} else {
			for (size_t c = 0; c < channels; c++) {
				const float *wc = row + c * inner;
				int8_t *qc = qrow + c * inner;
				if (stats && tmp) {
					for (size_t off = 0; off < inner; off += INPLACE_PIECE) {
						size_t len = inner - off < INPLACE_PIECE ? inner - off
											 : INPLACE_PIECE;
						q8_block_err_any(wc + off, len, inv[c], scales[c],
								 tmp, stats);
						memcpy(qc + off, tmp, len);
					}
				} else if (stats) {
					q8_block_err_any(wc, inner, inv[c], scales[c], qc, stats);
				} else {
					q8_block(wc, inner, inv[c], qc);
				}
			}
		}
		if ((st = poll(ctx, &since, channels * inner, e)) != NN_OK)
			return st;
	}
	return NN_OK;
}

enum nn_status quant_int8_symmetric_per_channel(const float *w, size_t outer, size_t channels,
						size_t inner, int8_t *q, float *scales,
						const struct step_ctx *ctx, struct nn_err *e)
{
	struct chan_scratch s = {0};
	enum nn_status st = scratch_new(&s, outer, channels, inner, e);
	if (st != NN_OK)
		return st;
	st = sym_impl(w, outer, channels, inner, q, scales, &s, NULL, NULL, ctx, e);
	free(s.mem);
	return st;
}

enum nn_status quant_int8_symmetric_per_tensor(const float *w, size_t n, int8_t *q, float *scale,
					       const struct step_ctx *ctx, struct nn_err *e)
{
	int32_t ka, kb;
	float inv, zpf;
	struct chan_scratch s = {&ka, &kb, &inv, &zpf, NULL};
	return sym_impl(w, 1, 1, n, q, scale, &s, NULL, NULL, ctx, e);
}

static enum nn_status asym_impl(const float *w, size_t outer, size_t channels, size_t inner,
				uint8_t *q, float *scales, uint8_t *zps,
				const struct chan_scratch *s, struct err_stats *stats, void *tmp,
				const struct step_ctx *ctx, struct nn_err *e)
{
	enum nn_status st;
	size_t since = 0;
	int32_t *kmin = s->ka, *kmax = s->kb;
	if (outer == 1 && inner > 1 && stats && tmp) {
		/* range and quantization per channel in one visit, as sym_impl */
		for (size_t c = 0; c < channels; c++) {
			const float *wc = w + c * inner;
			kmin[c] = 0;
			kmax[c] = 0;
			minmax_block(wc, inner, &kmin[c], &kmax[c]);
			if (kmax[c] >= KEY_POS_INF || kmin[c] <= KEY_NEG_INF)
				return nonfinite(e);
			asym_params(key_float(kmin[c]), key_float(kmax[c]), &scales[c], &s->inv[c],
				    &s->zpf[c]);
			zps[c] = (uint8_t)s->zpf[c];
			for (size_t off = 0; off < inner; off += INPLACE_PIECE) {
				size_t len = inner - off < INPLACE_PIECE ? inner - off : INPLACE_PIECE;
				qu8_block_err(wc + off, len, s->inv[c], s->zpf[c], scales[c], tmp, stats,
					      &stats->used[c]);
				memcpy(q + c * inner + off, tmp, len);
			}
			if ((st = poll(ctx, &since, 2 * inner, e)) != NN_OK)
				return st;
		}
		return NN_OK;
	}
	for (size_t c = 0; c < channels; c++) {
		kmin[c] = 0; /* the range always includes 0 (key of +0 is 0) */
		kmax[c] = 0;
	}
	for (size_t o = 0; o < outer; o++) {
		const float *row = w + o * channels * inner;
		if (inner == 1) {
			minmax_rows(row, channels, kmin, kmax);
		} else {
			for (size_t c = 0; c < channels; c++)
				minmax_block(row + c * inner, inner, &kmin[c], &kmax[c]);
		}
		if ((st = poll(ctx, &since, channels * inner, e)) != NN_OK)
			return st;
	}
	for (size_t c = 0; c < channels; c++) {
		if (kmax[c] >= KEY_POS_INF || kmin[c] <= KEY_NEG_INF)
			return nonfinite(e);
		asym_params(key_float(kmin[c]), key_float(kmax[c]), &scales[c], &s->inv[c],
			    &s->zpf[c]);
		zps[c] = (uint8_t)s->zpf[c];
	}
	for (size_t o = 0; o < outer; o++) {
		const float *row = w + o * channels * inner;
		uint8_t *qrow = q + o * channels * inner;
		if (inner == 1 && stats && tmp && o == 0) { /* as in sym_impl */
			qu8_rows_err(row, channels, s->inv, s->zpf, scales, tmp, stats,
				     stats->used);
			memcpy(qrow, tmp, channels);
		} else if (inner == 1 && stats) {
			qu8_rows_err(row, channels, s->inv, s->zpf, scales, qrow, stats,
				     stats->used);
		} else if (inner == 1) {
			qu8_rows(row, channels, s->inv, s->zpf, qrow);
		} else {
			for (size_t c = 0; c < channels; c++) {
				const float *wc = row + c * inner;
				uint8_t *qc = qrow + c * inner;
				if (stats && tmp) {
					for (size_t off = 0; off < inner; off += INPLACE_PIECE) {
						size_t len = inner - off < INPLACE_PIECE ? inner - off
											 : INPLACE_PIECE;
						qu8_block_err(wc + off, len, s->inv[c], s->zpf[c],
							      scales[c], tmp, stats, &stats->used[c]);
						memcpy(qc + off, tmp, len);
					}
				} else if (stats) {
					qu8_block_err(wc, inner, s->inv[c], s->zpf[c], scales[c], qc,
						      stats, &stats->used[c]);
				} else {
					qu8_block(wc, inner, s->inv[c], s->zpf[c], qc);
				}
			}
		}
		if ((st = poll(ctx, &since, channels * inner, e)) != NN_OK)
			return st;
	}
	return NN_OK;
}

enum nn_status quant_uint8_asymmetric_per_channel(const float *w, size_t outer, size_t channels,
						  size_t inner, uint8_t *q, float *scales,
						  uint8_t *zero_points, const struct step_ctx *ctx,
						  struct nn_err *e)
{
	struct chan_scratch s = {0};
	enum nn_status st = scratch_new(&s, outer, channels, inner, e);
	if (st != NN_OK)
		return st;
	st = asym_impl(w, outer, channels, inner, q, scales, zero_points, &s, NULL, NULL, ctx, e);
	free(s.mem);
	return st;
}

/* ---- the step on ctx->threads threads ----
 *
 * A weight is cut into units whose boundaries depend only on its layout,
 * never on the thread count: rows (inner == 1, about Q8_UNIT_ELEMS values
 * per unit), whole channels (outer == 1, a channel of at most Q8_UNIT_ELEMS
 * values: range and quantization in one visit) or Q8_UNIT_ELEMS runs of one
 * channel (outer == 1, bigger channels, per_tensor included). Each unit's
 * squared errors are one partial sum, stored by unit index and added in unit
 * order afterwards, so bytes and metrics are the same for any number of
 * threads, one included. "Partial sum" is exact: a unit logs the addends of
 * the error sum (err_stats.log: lane flushes and tail elements, the same
 * float values in the same order as before) and the logs are added to one
 * double in unit order, which is the very running sum of the single-thread
 * kernel: the metrics did not move, not even in the last digit. The logs
 * cost at most 31 doubles per row of >= Q8_MIN_RUN values (8 bytes per
 * ~33 values); shorter rows or channels, and layouts with outer > 1 and
 * inner > 1 (a channel axis in the middle), run as before on the calling
 * thread. Maxima, minima and "used" flags are order-free. Threads take units
 * from an atomic counter and keep their own scratch.
 *
 * In place: unit values land on bytes [s, s + len) of w's storage, i.e. over
 * floats [s / 4, (s + len) / 4), always in the first quarter of w. With
 * threads, the units holding floats of that quarter run first with their
 * bytes kept aside, then the others write straight over floats already read,
 * then the kept bytes are copied in. On one thread units run in order and a
 * write bounces through scratch only when it would overlay its own floats
 * (the weight's first row or piece). */
#define Q8_MAX_THREADS 64
#define Q8_UNIT_ELEMS ((size_t)1 << 18)
_Static_assert(Q8_UNIT_ELEMS % INPLACE_PIECE == 0, "units end on a flush");
/* Below this many weights a layer runs on the calling thread alone (a
 * thread start costs tens of microseconds; the result is the same). */
#define Q8_PAR_MIN ((size_t)1 << 16)
/* Shortest row (inner == 1) or channel (outer == 1) run the units take. */
#define Q8_MIN_RUN ((size_t)1024)

/* Whether q8_par takes the layout (else sym_impl / asym_impl, one thread). */
static bool q8_threadable(size_t outer, size_t channels, size_t inner)
{
	return (inner == 1 && channels >= Q8_MIN_RUN) || (outer == 1 && inner >= Q8_MIN_RUN);
}

/* Most addends a block kernel run over len values logs, in INPLACE_PIECE
 * pieces: 16 per full flush, and per piece a last fold and a tail. */
static size_t q8_block_cap(size_t len)
{
	return len / (ERR_LANES * ERR_FLUSH_EVERY) * ERR_LANES +
	       (len / INPLACE_PIECE + 1) * (2 * ERR_LANES - 1);
}

enum q8_mode { Q8_ROWS, Q8_FUSED, Q8_SPLIT };

/* The kept bytes and the error logs, kept from weight to weight of one step:
 * fresh pages fault in at ~2 GB/s, slower than the quantization itself. */
struct q8_reuse {
	uint8_t *kbuf;
	size_t kcap;
	double *log;
	size_t lcap;
};

/* *p with room for `bytes` (its old contents are not kept). */
static bool q8_room(void **p, size_t *cap, size_t bytes)
{
	if (bytes <= *cap)
		return true;
	free(*p);
	*cap = 0;
	if (!(*p = malloc(bytes)))
		return false;
	*cap = bytes;
	return true;
}

/* What one runner found, and its scratch. */
struct q8_slot {
	int32_t maxbits;
	enum nn_status st;
	size_t unit; /* the unit that failed (the lowest one is reported) */
	struct nn_err e;
	int32_t *ka, *kb; /* rows: this runner's channel range keys */
	int32_t *used;    /* rows, asymmetric: this runner's used flags */
	uint8_t *tmp;     /* bounce buffer */
	void *mem;
};

struct q8_job {
	const float *w;
	size_t outer, channels, inner, n;
	bool sym;
	uint8_t *q;
	float *scales;
	uint8_t *zps;
	const struct chan_scratch *s; /* merged keys, inv, zpf */
	struct err_stats proto;       /* the kernels' ISA choice */
	int32_t *used;                /* per channel (the step's) */
	const struct step_ctx *ctx;
	enum q8_mode mode;
	size_t per;  /* rows (ROWS), channels (FUSED) or values (SPLIT) per unit */
	size_t upc;  /* SPLIT: units per channel */
	size_t nunits;
	bool range;  /* this phase measures ranges (ROWS, SPLIT) */
	uint8_t *kbuf; /* units below kunits write their bytes here */
	size_t kunits;
	double *log;             /* unit u's error addends at log + u * cap */
	size_t cap;
	size_t *nlog;            /* addends logged per unit */
	int32_t *uka, *ukb, *uused; /* SPLIT: per unit keys and used flags */
	atomic_size_t next;      /* the next unit to take */
	size_t end;              /* units [.., end) in this phase */
	atomic_uint nslot;
	atomic_bool stop;
	struct q8_slot slot[Q8_MAX_THREADS];
};

struct q8_runner {
	void (*fn)(void *arg);
	void *arg;
};

static void *q8_runner_main(void *p)
{
	const struct q8_runner *r = p;
	r->fn(r->arg);
	return NULL;
}

/* Runs fn(arg) on the calling thread and on up to threads - 1 new ones, and
 * returns when all have returned. If a thread cannot be created, fewer run:
 * fn takes its work from a shared counter, so any number of runners does
 * all of it. */
static void q8_par_run(unsigned threads, void (*fn)(void *), void *arg)
{
	pthread_t tid[Q8_MAX_THREADS];
	unsigned started = 0;
	struct q8_runner r = {fn, arg};
	for (unsigned t = 1; t < threads && t < Q8_MAX_THREADS; t++) {
		if (pthread_create(&tid[started], NULL, q8_runner_main, &r) != 0)
			break;
		started++;
	}
	fn(arg);
	for (unsigned t = 0; t < started; t++)
		pthread_join(tid[t], NULL);
}

/* Element (= output byte) index of unit u's first value. */
static size_t q8_unit_start(const struct q8_job *j, size_t u)
{
	switch (j->mode) {
	case Q8_ROWS:
		return u * j->per * j->channels;
	case Q8_FUSED:
		return u * j->per * j->inner;
	case Q8_SPLIT:
		break;
	}
	return (u / j->upc) * j->inner + (u % j->upc) * j->per;
}

/* Where unit u's bytes for values [s, s + len) go: the kept buffer, or w's
 * storage (through tmp when they would overlay their own floats). */
static uint8_t *q8_dst(const struct q8_job *j, size_t u, size_t s, size_t len, uint8_t *tmp,
		       bool *bounce)
{
	*bounce = false;
	if (u < j->kunits)
		return j->kbuf + s;
	if (len > 3 * s) {
		*bounce = true;
		return tmp;
	}
	return j->q + s;
}

/* Values [s, s + len) of channel c with channel c's parameters. */
static void q8_seg(const struct q8_job *j, size_t u, size_t s, size_t len, size_t c,
		   uint8_t *tmp, struct err_stats *us, int32_t *used)
{
	for (size_t off = 0; off < len; off += INPLACE_PIECE) {
		size_t l = len - off < INPLACE_PIECE ? len - off : INPLACE_PIECE;
		bool b;
		uint8_t *d = q8_dst(j, u, s + off, l, tmp, &b);
		if (j->sym)
			q8_block_err_any(j->w + s + off, l, j->s->inv[c], j->scales[c], (int8_t *)d,
					 us);
		else
			qu8_block_err(j->w + s + off, l, j->s->inv[c], j->s->zpf[c], j->scales[c],
				      d, us, used);
		if (b)
			memcpy(j->q + s + off, tmp, l);
	}
}

/* Channel c's parameters from its merged range keys. */
static enum nn_status q8_params(const struct q8_job *j, size_t c, struct nn_err *e)
{
	const struct chan_scratch *s = j->s;
	if (j->sym) {
		if (s->ka[c] >= KEY_POS_INF)
			return nonfinite(e);
		sym_params(bits_float((uint32_t)s->ka[c]), &j->scales[c], &s->inv[c]);
		j->used[c] = s->inv[c] != 0.0f; /* as in sym_impl */
		return NN_OK;
	}
	if (s->kb[c] >= KEY_POS_INF || s->ka[c] <= KEY_NEG_INF)
		return nonfinite(e);
	asym_params(key_float(s->ka[c]), key_float(s->kb[c]), &j->scales[c], &s->inv[c],
		    &s->zpf[c]);
	j->zps[c] = (uint8_t)s->zpf[c];
	return NN_OK;
}

static enum nn_status q8_unit(struct q8_job *j, size_t u, struct q8_slot *sl, struct nn_err *e)
{
	size_t C = j->channels;
	if (j->mode == Q8_ROWS && j->range) {
		size_t o0 = u * j->per, o1 = o0 + j->per < j->outer ? o0 + j->per : j->outer;
		for (size_t o = o0; o < o1; o++) {
			const float *row = j->w + o * C;
			if (!j->sym) {
				minmax_rows(row, C, sl->ka, sl->kb);
			} else if (o + 4 <= o1) {
				absmax_rows4(row, C, C, sl->ka);
				o += 3;
			} else {
				absmax_rows(row, C, sl->ka);
			}
		}
		return NN_OK;
	}
	if (j->mode == Q8_SPLIT && j->range) {
		size_t c = u / j->upc, off = (u % j->upc) * j->per;
		size_t len = j->inner - off < j->per ? j->inner - off : j->per;
		const float *p = j->w + c * j->inner + off;
		if (j->sym) {
			j->uka[u] = absmax_block(p, len);
		} else {
			j->uka[u] = 0, j->ukb[u] = 0;
			minmax_block(p, len, &j->uka[u], &j->ukb[u]);
		}
		return NN_OK;
	}
	struct err_stats us = j->proto;
	us.sq = 0, us.maxbits = 0, us.used = NULL;
	us.log = j->log + u * j->cap, us.nlog = 0;
	if (j->mode == Q8_ROWS) {
		size_t o0 = u * j->per, o1 = o0 + j->per < j->outer ? o0 + j->per : j->outer;
		for (size_t o = o0; o < o1; o++) {
			bool b;
			uint8_t *d = q8_dst(j, u, o * C, C, sl->tmp, &b);
			if (j->sym)
				q8_rows_err_any(j->w + o * C, C, j->s->inv, j->scales, (int8_t *)d,
						&us);
			else
				qu8_rows_err(j->w + o * C, C, j->s->inv, j->s->zpf, j->scales, d,
					     &us, sl->used);
			if (b)
				memcpy(j->q + o * C, sl->tmp, C);
		}
	} else if (j->mode == Q8_SPLIT) {
		size_t c = u / j->upc, off = (u % j->upc) * j->per;
		size_t len = j->inner - off < j->per ? j->inner - off : j->per;
		q8_seg(j, u, c * j->inner + off, len, c, sl->tmp, &us, &j->uused[u]);
	} else {
		/* whole channels: range and values in one visit (sym_impl) */
		size_t c0 = u * j->per, c1 = c0 + j->per < C ? c0 + j->per : C;
		for (size_t c = c0; c < c1; c++) {
			const float *wc = j->w + c * j->inner;
			enum nn_status st;
			if (j->sym) {
				j->s->ka[c] = absmax_block(wc, j->inner);
			} else {
				j->s->ka[c] = 0, j->s->kb[c] = 0;
				minmax_block(wc, j->inner, &j->s->ka[c], &j->s->kb[c]);
			}
			if ((st = q8_params(j, c, e)) != NN_OK)
				return st;
			q8_seg(j, u, c * j->inner, j->inner, c, sl->tmp, &us,
			       j->sym ? NULL : &j->used[c]);
		}
	}
	j->nlog[u] = us.nlog;
	sl->maxbits = us.maxbits > sl->maxbits ? us.maxbits : sl->maxbits;
	return NN_OK;
}

static void q8_worker(void *arg)
{
	struct q8_job *j = arg;
	struct q8_slot *sl = &j->slot[atomic_fetch_add(&j->nslot, 1)];
	while (!atomic_load(&j->stop)) {
		size_t u = atomic_fetch_add(&j->next, 1);
		if (u >= j->end)
			break;
		struct nn_err e = {0};
		enum nn_status st = NN_OK;
		if (step_canceled(j->ctx))
			st = err_set(&e, NN_ECANCELED, "canceled", "", "canceled while quantizing");
		else
			st = q8_unit(j, u, sl, &e);
		if (st != NN_OK) {
			if (sl->st == NN_OK || u < sl->unit) {
				sl->st = st;
				sl->unit = u;
				sl->e = e;
			}
			atomic_store(&j->stop, true);
			break;
		}
	}
}

/* Runs units [from, to) on t runners; the lowest failing unit's error, if any. */
static enum nn_status q8_phase(struct q8_job *j, unsigned t, size_t from, size_t to, bool range,
			       struct nn_err *e)
{
	atomic_store(&j->next, from);
	j->end = to;
	j->range = range;
	atomic_store(&j->nslot, 0);
	q8_par_run(t, q8_worker, j);
	const struct q8_slot *bad = NULL;
	for (unsigned s = 0; s < t; s++)
		if (j->slot[s].st != NN_OK && (!bad || j->slot[s].unit < bad->unit))
			bad = &j->slot[s];
	if (bad) {
		*e = bad->e;
		return bad->st;
	}
	return NN_OK;
}

/* The step's quantization of a weight with outer == 1 or inner == 1 (see
 * above) on up to `threads` threads; adds to stats->sq / maxbits and sets
 * stats->used. q is w's own storage. */
static enum nn_status q8_par(const float *w, size_t outer, size_t channels, size_t inner,
			     bool sym, uint8_t *q, float *scales, uint8_t *zps,
			     const struct chan_scratch *s, struct err_stats *stats,
			     struct q8_reuse *ru, unsigned threads, const struct step_ctx *ctx,
			     struct nn_err *e)
{
	enum nn_status st = NN_OK;
	if (step_canceled(ctx))
		return err_set(e, NN_ECANCELED, "canceled", "", "canceled while quantizing");
	struct q8_job *j = calloc(1, sizeof *j);
	if (!j)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for int8 units");
	*j = (struct q8_job){.w = w, .outer = outer, .channels = channels, .inner = inner,
			     .n = outer * channels * inner, .sym = sym, .q = q, .scales = scales,
			     .zps = zps, .s = s, .proto = *stats, .used = stats->used, .ctx = ctx};
	if (inner == 1) {
		j->mode = Q8_ROWS;
		j->per = channels >= Q8_UNIT_ELEMS ? 1 : Q8_UNIT_ELEMS / channels;
		j->nunits = (outer + j->per - 1) / j->per;
		j->cap = j->per * (2 * ERR_LANES - 1); /* per row: a tail and one fold */
	} else if (inner <= Q8_UNIT_ELEMS) {
		j->mode = Q8_FUSED;
		j->per = Q8_UNIT_ELEMS / inner;
		j->nunits = (channels + j->per - 1) / j->per;
		j->cap = j->per * q8_block_cap(inner);
	} else {
		j->mode = Q8_SPLIT;
		j->per = Q8_UNIT_ELEMS;
		j->upc = (inner + Q8_UNIT_ELEMS - 1) / Q8_UNIT_ELEMS;
		j->nunits = channels * j->upc;
		j->cap = q8_block_cap(Q8_UNIT_ELEMS);
	}
	unsigned t = threads ? threads : 1;
	if (j->n < Q8_PAR_MIN)
		t = 1;
	t = t < Q8_MAX_THREADS ? t : Q8_MAX_THREADS;
	t = (size_t)t < j->nunits ? t : (unsigned)j->nunits;
	size_t kbytes = 0;
	size_t nl;
	if (__builtin_mul_overflow(j->nunits, j->cap, &nl) ||
	    __builtin_mul_overflow(nl, sizeof *j->log, &nl))
		goto nomem;
	if (!q8_room((void **)&ru->log, &ru->lcap, nl))
		goto nomem;
	j->log = ru->log;
	j->nlog = malloc(j->nunits * sizeof *j->nlog);
	if (!j->nlog)
		goto nomem;
	if (j->mode == Q8_SPLIT) {
		j->uka = malloc(j->nunits * sizeof *j->uka);
		j->ukb = malloc(j->nunits * sizeof *j->ukb);
		j->uused = calloc(j->nunits, sizeof *j->uused);
		if (!j->uka || !j->ukb || !j->uused)
			goto nomem;
	}
	for (unsigned i = 0; i < t; i++) {
		struct q8_slot *sl = &j->slot[i];
		size_t keys = j->mode == Q8_ROWS ? 3 * channels : 0;
		size_t tmpb = j->mode == Q8_ROWS ? channels : INPLACE_PIECE;
		if (!(sl->mem = calloc(1, keys * sizeof(int32_t) + tmpb)))
			goto nomem;
		sl->ka = sl->mem;
		sl->kb = sl->ka + channels;
		sl->used = sl->kb + channels;
		sl->tmp = (uint8_t *)(sl->ka + keys);
		sl->unit = SIZE_MAX;
	}
	if (t > 1) {
		size_t edge = j->n / 4 + 1; /* no unit's bytes reach a float past it */
		while (j->kunits < j->nunits && q8_unit_start(j, j->kunits) < edge)
			j->kunits++;
		kbytes = j->kunits < j->nunits ? q8_unit_start(j, j->kunits) : j->n;
		if (!q8_room((void **)&ru->kbuf, &ru->kcap, kbytes))
			goto nomem;
		j->kbuf = ru->kbuf;
	}
	/* Everything that can fail for want of memory is above: w is intact. */
	if (j->mode != Q8_FUSED) {
		if ((st = q8_phase(j, t, 0, j->nunits, true, e)) != NN_OK)
			goto out;
		for (size_t c = 0; c < channels; c++) {
			int32_t a = 0, b = 0;
			if (j->mode == Q8_ROWS) {
				for (unsigned i = 0; i < t; i++) {
					const struct q8_slot *sl = &j->slot[i];
					a = sym ? (sl->ka[c] > a ? sl->ka[c] : a)
						: (sl->ka[c] < a ? sl->ka[c] : a);
					b = sl->kb[c] > b ? sl->kb[c] : b;
				}
			} else {
				for (size_t u = c * j->upc; u < (c + 1) * j->upc; u++) {
					a = sym ? (j->uka[u] > a ? j->uka[u] : a)
						: (j->uka[u] < a ? j->uka[u] : a);
					b = sym ? 0 : (j->ukb[u] > b ? j->ukb[u] : b);
				}
			}
			s->ka[c] = a;
			s->kb[c] = b;
			if ((st = q8_params(j, c, e)) != NN_OK)
				goto out;
		}
	}
	if (j->kunits) {
		if ((st = q8_phase(j, t, 0, j->kunits, false, e)) != NN_OK ||
		    (st = q8_phase(j, t, j->kunits, j->nunits, false, e)) != NN_OK)
			goto out;
		memcpy(q, j->kbuf, kbytes); /* every float has been read */
	} else if ((st = q8_phase(j, t, 0, j->nunits, false, e)) != NN_OK) {
		goto out;
	}
	for (size_t u = 0; u < j->nunits; u++)
		for (size_t k = 0; k < j->nlog[u]; k++)
			stats->sq += j->log[u * j->cap + k];
	for (unsigned i = 0; i < t; i++) {
		const struct q8_slot *sl = &j->slot[i];
		stats->maxbits = sl->maxbits > stats->maxbits ? sl->maxbits : stats->maxbits;
		for (size_t c = 0; !sym && j->mode == Q8_ROWS && c < channels; c++)
			stats->used[c] |= sl->used[c];
	}
	for (size_t c = 0; !sym && j->mode == Q8_SPLIT && c < channels; c++)
		for (size_t u = c * j->upc; u < (c + 1) * j->upc; u++)
			stats->used[c] |= j->uused[u];
	goto out;
nomem:
	st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for int8 units");
out:
	for (unsigned i = 0; i < Q8_MAX_THREADS; i++)
		free(j->slot[i].mem);
	free(j->nlog);
	free(j->uka);
	free(j->ukb);
	free(j->uused);
	free(j);
	return st;
}

/* ---- scalar references ---- */

bool quant_ref_int8_symmetric(const float *w, size_t outer, size_t channels, size_t inner,
			      int8_t *q, float *scales)
{
	for (size_t c = 0; c < channels; c++) {
		float amax = 0.0f;
		for (size_t o = 0; o < outer; o++) {
			for (size_t i = 0; i < inner; i++) {
				float x = w[(o * channels + c) * inner + i];
				if (!isfinite(x))
					return false;
				amax = fmaxf(amax, fabsf(x));
			}
		}
		float inv = 0.0f;
		sym_params(amax, &scales[c], &inv);
		for (size_t o = 0; o < outer; o++) {
			for (size_t i = 0; i < inner; i++) {
				size_t at = (o * channels + c) * inner + i;
				float y = fminf(fmaxf(nearbyintf(w[at] * inv), -127.0f), 127.0f);
				q[at] = (int8_t)y;
			}
		}
	}
	return true;
}

bool quant_ref_uint8_asymmetric(const float *w, size_t outer, size_t channels, size_t inner,
				uint8_t *q, float *scales, uint8_t *zero_points)
{
	for (size_t c = 0; c < channels; c++) {
		float mn = 0.0f, mx = 0.0f;
		for (size_t o = 0; o < outer; o++) {
			for (size_t i = 0; i < inner; i++) {
				float x = w[(o * channels + c) * inner + i];
				if (!isfinite(x))
					return false;
				mn = fminf(mn, x);
				mx = fmaxf(mx, x);
			}
		}
		float inv = 0.0f, zpf = 0.0f;
		asym_params(mn, mx, &scales[c], &inv, &zpf);
		zero_points[c] = (uint8_t)zpf;
		for (size_t o = 0; o < outer; o++) {
			for (size_t i = 0; i < inner; i++) {
				size_t at = (o * channels + c) * inner + i;
				float y = fminf(fmaxf(nearbyintf(w[at] * inv + zpf), 0.0f), 255.0f);
				q[at] = (uint8_t)y;
			}
		}
	}
	return true;
}

/* ---- spec parameters ---- */

static enum nn_status parse_flag(const json_t *step, size_t index, const char *key, bool fallback,
				 bool *out, struct nn_err *e)
{
	char field[128], got[96];
	const json_t *v = json_object_get(step, key);
	*out = fallback;
	if (!v)
		return NN_OK;
	if (!json_is_boolean(v)) {
		snprintf(field, sizeof field, "steps[%zu].%s", index, key);
		return err_set(e, NN_EINVAL, "invalid_spec", field, "%s must be true or false, got %s",
			       key, step_describe_json(v, got, sizeof got));
	}
	*out = json_is_true(v);
	return NN_OK;
}

/* "ops": ["Gemm", "MatMul", "Conv", "Gather"] (a non-empty subset of `allowed`). */
static enum nn_status parse_ops(const json_t *step, size_t index, unsigned allowed,
				unsigned fallback, unsigned *out, struct nn_err *e)
{
	static const char *const names[] = {"Gemm", "MatMul", "Conv", "Gather", NULL};
	char field[128], got[96], list[96] = "";
	const json_t *v = json_object_get(step, "ops");
	*out = fallback;
	if (!v)
		return NN_OK;
	for (unsigned k = 0, used = 0; names[k]; k++)
		if (allowed & (1u << k))
			used += (unsigned)snprintf(list + used, sizeof list - used, "%s%s",
						   used ? ", " : "", names[k]);
	snprintf(field, sizeof field, "steps[%zu].ops", index);
	if (!json_is_array(v) || json_array_size(v) == 0)
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "ops must be a non-empty array of operator names (%s), got %s", list,
			       step_describe_json(v, got, sizeof got));
	unsigned bits = 0;
	for (size_t i = 0; i < json_array_size(v); i++) {
		const char *name = json_string_value(json_array_get(v, i));
		unsigned k = 0;
		while (name && names[k] && strcmp(names[k], name))
			k++;
		if (!name || !names[k] || !(allowed & (1u << k)))
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "this scheme quantizes the weights of %s; got %s", list,
				       step_describe_json(json_array_get(v, i), got, sizeof got));
		bits |= 1u << k;
	}
	*out = bits;
	return NN_OK;
}

/* "exclude": ["node name" or "OpType", ...]. */
static enum nn_status parse_exclude(const json_t *step, size_t index, const json_t **out,
				    struct nn_err *e)
{
	char field[128], got[96];
	const json_t *v = json_object_get(step, "exclude");
	*out = NULL;
	if (!v)
		return NN_OK;
	bool ok = json_is_array(v);
	for (size_t i = 0; ok && i < json_array_size(v); i++)
		ok = json_is_string(json_array_get(v, i));
	if (!ok) {
		snprintf(field, sizeof field, "steps[%zu].exclude", index);
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "exclude must be an array of node names or operator types, got %s",
			       step_describe_json(v, got, sizeof got));
	}
	*out = v;
	return NN_OK;
}

static enum nn_status parse_number_in(const json_t *step, size_t index, const char *key, double lo,
				      double hi, double fallback, double *out, struct nn_err *e)
{
	char field[128], got[96];
	const json_t *v = json_object_get(step, key);
	*out = fallback;
	if (!v)
		return NN_OK;
	double x = json_is_number(v) ? json_number_value(v) : NAN;
	if (!(x > lo && x <= hi)) {
		snprintf(field, sizeof field, "steps[%zu].%s", index, key);
		return err_set(e, NN_EINVAL, "invalid_spec", field, "%s must be in (%g, %g], got %s",
			       key, lo, hi, step_describe_json(v, got, sizeof got));
	}
	*out = x;
	return NN_OK;
}

enum nn_status quant_params_parse(const json_t *step, size_t index, struct quant_params *out,
				  struct nn_err *e)
{
	static const char *const schemes[] = {"int8",    "int4",   "fp16",  "bf16",
					      "dynamic", "static", "kmeans", NULL};
	/* Keys per scheme, in the order of enum quant_scheme. */
	static const char *const keys[][12] = {
		{"op", "scheme", "granularity", "symmetric", "ops", "exclude", "bias_correction",
		 "dataset", NULL},
		{"op", "scheme", "symmetric", "block_size", "format", "ops", "exclude",
		 "bias_correction", "dataset", NULL},
		{"op", "scheme", "graph", "keep_io_types", "exclude", NULL},
		{"op", "scheme", "graph", "keep_io_types", "exclude", NULL},
		{"op", "scheme", "symmetric", "granularity", "ops", "exclude", NULL},
		{"op", "scheme", "calibration", "percentile", "activations", "granularity",
		 "symmetric", "exclude", "dataset", NULL},
		{"op", "scheme", "bits", "ops", "exclude", NULL},
	};
	static const char *const granularities[] = {"per_channel", "per_tensor", NULL};
	static const char *const formats[] = {"onnx", "matmulnbits", NULL};
	static const char *const calibrations[] = {"minmax", "percentile", "entropy", "mse", NULL};
	static const char *const activations[] = {"uint8", "int8", NULL};
	const unsigned weight_ops = QUANT_OP_GEMM | QUANT_OP_MATMUL | QUANT_OP_CONV;
	char field[128], got[96];
	int scheme = 0, granularity = 0, format = 0, calibration = 0, act = 0;
	memset(out, 0, sizeof *out);
	out->index = index;
	enum nn_status st;
	if (!json_is_object(step))
		return step_check_keys(step, index, "quantize", keys[0], e);
	if ((st = step_parse_choice(step, index, "scheme", schemes, -1, &scheme, e)) != NN_OK)
		return st;
	if ((st = step_check_keys(step, index, "quantize", keys[scheme], e)) != NN_OK) {
		size_t len = strlen(e->message);
		snprintf(e->message + len, sizeof e->message - len, " (scheme %s)", schemes[scheme]);
		return st;
	}
	out->scheme = (enum quant_scheme)scheme;
	/* dynamic defaults to per tensor, as ONNX Runtime's quantize_dynamic does */
	if ((st = step_parse_choice(step, index, "granularity", granularities,
				    out->scheme == QUANT_DYNAMIC ? 1 : 0, &granularity, e)) != NN_OK ||
	    (st = parse_flag(step, index, "symmetric", true, &out->symmetric, e)) != NN_OK ||
	    (st = parse_exclude(step, index, &out->exclude, e)) != NN_OK ||
	    (st = parse_flag(step, index, "bias_correction", false, &out->bias_correction, e)) !=
		    NN_OK ||
	    (st = parse_flag(step, index, "graph", false, &out->whole_graph, e)) != NN_OK ||
	    (st = parse_flag(step, index, "keep_io_types", true, &out->keep_io_types, e)) != NN_OK)
		return st;
	out->granularity = granularity == 1 ? QUANT_PER_TENSOR : QUANT_PER_CHANNEL;
	switch (out->scheme) {
	case QUANT_INT8:
		st = parse_ops(step, index, weight_ops | QUANT_OP_GATHER, weight_ops, &out->ops, e);
		break;
	case QUANT_INT4: {
		if ((st = step_parse_choice(step, index, "format", formats, 0, &format, e)) != NN_OK)
			return st;
		out->format = format == 1 ? QUANT_FORMAT_MATMULNBITS : QUANT_FORMAT_ONNX;
		/* matmulnbits rewrites a Gemm as MatMulNBits + Add (quant_int4.h) */
		unsigned allowed = QUANT_OP_GEMM | QUANT_OP_MATMUL;
		if ((st = parse_ops(step, index, allowed, allowed, &out->ops, e)) != NN_OK)
			return st;
		const json_t *b = json_object_get(step, "block_size");
		out->block_size = 32;
		if (b) {
			json_int_t v = json_is_integer(b) ? json_integer_value(b) : 0;
			if (v != 16 && v != 32 && v != 64 && v != 128) {
				snprintf(field, sizeof field, "steps[%zu].block_size", index);
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "block_size must be 16, 32, 64 or 128, got %s",
					       step_describe_json(b, got, sizeof got));
			}
			out->block_size = (int)v;
		}
		break;
	}
	case QUANT_FP16:
	case QUANT_BF16:
		out->ops = weight_ops;
		break;
	case QUANT_DYNAMIC:
		st = parse_ops(step, index, QUANT_OP_GEMM | QUANT_OP_MATMUL,
			       QUANT_OP_GEMM | QUANT_OP_MATMUL, &out->ops, e);
		break;
	case QUANT_STATIC:
		out->ops = weight_ops;
		if ((st = step_parse_choice(step, index, "calibration", calibrations, 0, &calibration,
					    e)) != NN_OK ||
		    (st = step_parse_choice(step, index, "activations", activations, 0, &act, e)) !=
			    NN_OK ||
		    (st = parse_number_in(step, index, "percentile", 50, 100, 99.99, &out->percentile,
					  e)) != NN_OK)
			return st;
		out->calibration = (enum quant_calibration)calibration;
		out->activations_int8 = act == 1;
		if (json_object_get(step, "percentile") && out->calibration != QUANT_CALIB_PERCENTILE) {
			snprintf(field, sizeof field, "steps[%zu].percentile", index);
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "percentile applies to calibration \"percentile\" only");
		}
		break;
	case QUANT_KMEANS: {
		if ((st = parse_ops(step, index, weight_ops | QUANT_OP_GATHER, weight_ops, &out->ops,
				    e)) != NN_OK)
			return st;
		const json_t *b = json_object_get(step, "bits");
		out->bits = 4;
		if (b) {
			json_int_t v = json_is_integer(b) ? json_integer_value(b) : 0;
			if (v < 2 || v > 8) {
				snprintf(field, sizeof field, "steps[%zu].bits", index);
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "bits must be an integer in [2, 8] (2^bits centroids), "
					       "got %s",
					       step_describe_json(b, got, sizeof got));
			}
			out->bits = (int)v;
		}
		break;
	}
	}
	if (st != NN_OK)
		return st;
	const json_t *ds = json_object_get(step, "dataset");
	if (ds) {
		struct spec_dataset d;
		snprintf(field, sizeof field, "steps[%zu].dataset", index);
		if ((st = spec_parse_dataset(ds, field, &d, e)) != NN_OK)
			return st;
		out->has_dataset = true;
	}
	return NN_OK;
}

/* ---- which weights a scheme quantizes ---- */

bool quant_node_excluded(const struct quant_params *p, const char *name, const char *op_type)
{
	for (size_t i = 0; p->exclude && i < json_array_size(p->exclude); i++) {
		const char *x = json_string_value(json_array_get(p->exclude, i));
		if (x && ((name && !strcmp(x, name)) || (op_type && !strcmp(x, op_type))))
			return true;
	}
	return false;
}

/* The quant_ops bit of a default-domain weight operator, 0 for others. */
static unsigned op_bit(const Onnx__NodeProto *n)
{
	if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx"))
		return 0;
	const char *op = n->op_type ? n->op_type : "";
	return !strcmp(op, "Gemm")     ? QUANT_OP_GEMM
	       : !strcmp(op, "MatMul") ? QUANT_OP_MATMUL
	       : !strcmp(op, "Conv")   ? QUANT_OP_CONV
	       : !strcmp(op, "Gather") ? QUANT_OP_GATHER
				       : 0;
}

/* Why weight `name` stays float, or NULL when it may be quantized: its
 * DequantizeLinear output keeps the name, so every node reading it sees the
 * quantized values, and one excluded or unselected weight operator among
 * them keeps it float. */
static const char *keep_float_reason(const Onnx__GraphProto *g, const struct quant_params *p,
				     unsigned ops, const char *name)
{
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		bool reads = false;
		for (size_t k = 0; k < n->n_input && !reads; k++)
			reads = n->input[k] && !strcmp(n->input[k], name);
		if (!reads)
			continue;
		if (quant_node_excluded(p, n->name, n->op_type))
			return "excluded";
		unsigned b = op_bit(n);
		if (b && !(ops & b))
			return "operator not in ops";
	}
	return NULL;
}

enum nn_status quant_select_weights(const struct onnx_model *m, const struct quant_params *p,
				    struct onnx_weight_ref **out, size_t *count, json_t *skipped,
				    struct nn_err *e)
{
	struct onnx_weight_ref *all = NULL, *sel = NULL;
	size_t nall = 0, n = 0;
	*out = NULL;
	*count = 0;
	enum nn_status st = onnx_prunable_weights(m, &all, &nall, e);
	if (st != NN_OK)
		return st;
	const Onnx__GraphProto *g = m->proto->graph;
	/* ops 0 (params filled by hand, not by the parser): the default set. */
	unsigned ops = p->ops ? p->ops : QUANT_OP_GEMM | QUANT_OP_MATMUL | QUANT_OP_CONV;
	size_t ngather = 0;
	for (size_t i = 0; g && (ops & QUANT_OP_GATHER) && i < g->n_node; i++)
		ngather += op_bit(g->node[i]) == QUANT_OP_GATHER;
	size_t cap = nall + ngather;
	if (cap && !(sel = calloc(cap, sizeof *sel))) {
		free(all);
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for %zu weights", cap);
	}
	int bad = 0;
	for (size_t i = 0; i < nall; i++) {
		const char *why = keep_float_reason(g, p, ops, all[i].init->name);
		if (!why)
			sel[n++] = all[i];
		else if (skipped)
			bad |= json_array_append_new(
				skipped, json_pack("{s:s, s:s}", "name", all[i].init->name, "reason", why));
	}
	/* Embedding tables: a float initializer that is a Gather's data input,
	 * quantized per row (axis 0) or per tensor. */
	for (size_t i = 0; g && ngather && i < g->n_node; i++) {
		Onnx__NodeProto *nd = g->node[i];
		if (op_bit(nd) != QUANT_OP_GATHER || nd->n_input < 1 || !nd->input[0])
			continue;
		Onnx__TensorProto *w = onnx_find_initializer(m, nd->input[0]);
		if (!w || !w->has_data_type || w->data_type != DT_FLOAT || w->n_dims < 1)
			continue;
		bool dup = false;
		for (size_t k = 0; k < n && !dup; k++)
			dup = sel[k].init == w;
		if (dup)
			continue;
		const char *why = keep_float_reason(g, p, ops, w->name);
		if (!why)
			sel[n++] = (struct onnx_weight_ref){w, nd, 0};
		else if (skipped)
			bad |= json_array_append_new(
				skipped, json_pack("{s:s, s:s}", "name", w->name, "reason", why));
	}
	free(all);
	if (bad) {
		free(sel);
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for metrics");
	}
	if (n == 0) {
		free(sel);
		sel = NULL;
	}
	*out = sel;
	*count = n;
	return NN_OK;
}

/* ---- the step ---- */

struct wref {
	char *name, *op, *node;
	int channel_axis;
};

static json_t *shape_json(const struct tensor *t)
{
	json_t *a = json_array();
	for (int d = 0; a && d < t->ndim; d++) {
		if (json_array_append_new(a, json_integer(t->shape[d]))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* Quantizes one weight (looked up by name: earlier weights' removal may have
 * moved the initializer array) and rewires the graph. Appends its metrics.
 * The quantized values are written in place over the weight's own float
 * storage, which then becomes the new initializer's raw_data (shrunk with
 * realloc, never copied): no fresh output memory to fault in (~2 GB/s with
 * 4 KiB pages, slower than the quantization itself) and no copy. */
static enum nn_status quantize_one(struct onnx_model *m, const struct wref *r,
				   const struct quant_params *p, const struct step_ctx *ctx,
				   json_t *layers, uint64_t *params, struct q8_reuse *ru,
				   struct nn_err *e)
{
	enum nn_status st = NN_OK;
	struct tensor w = {0}, q = {0}, sc = {0}, zp = {0};
	char *qname = NULL, *sname = NULL, *zname = NULL, *nname = NULL, *buf = NULL;
	int32_t *used = NULL;
	void *tmp = NULL;
	Onnx__TensorProto *init = onnx_find_initializer(m, r->name);
	if (!init)
		return err_set(e, NN_EINTERNAL, "internal", "", "weight '%s' vanished", r->name);
	if ((st = onnx_initializer_view(init, &w, e)) != NN_OK) {
		err_prefix(e, "weight '%s'", r->name);
		return st;
	}
	int64_t n = tensor_numel(&w);
	if (n < 0) {
		st = err_set(e, NN_EINVAL, "invalid_model", "", "weight '%s' has an invalid shape",
			     r->name);
		goto fail;
	}
	bool per_channel = p->granularity == QUANT_PER_CHANNEL && w.ndim >= 1 &&
			   r->channel_axis >= 0 && r->channel_axis < w.ndim &&
			   w.shape[r->channel_axis] > 0;
	size_t outer = 1, channels = 1, inner = (size_t)n;
	if (per_channel) {
		channels = (size_t)w.shape[r->channel_axis];
		for (int d = 0; d < r->channel_axis; d++)
			outer *= (size_t)w.shape[d];
		inner = 1;
		for (int d = r->channel_axis + 1; d < w.ndim; d++)
			inner *= (size_t)w.shape[d];
	}
	enum dtype qt = p->symmetric ? DT_INT8 : DT_UINT8;
	int64_t cshape[1] = {(int64_t)channels};
	/* Everything that can fail for want of memory comes before the in-place
	 * pass, which destroys the float values. */
	size_t blen = strlen(r->name) + 32;
	buf = malloc(blen);
	if (!buf) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for names");
		goto fail;
	}
	snprintf(buf, blen, "%s_quantized", r->name);
	qname = onnx_unique_name(m, buf);
	snprintf(buf, blen, "%s_scale", r->name);
	sname = onnx_unique_name(m, buf);
	snprintf(buf, blen, "%s_zero_point", r->name);
	zname = onnx_unique_name(m, buf);
	snprintf(buf, blen, "%s_DequantizeLinear", r->name);
	nname = onnx_unique_name(m, buf);
	if (!qname || !sname || !zname || !nname) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for names");
		goto fail;
	}
	/* q overlays w (see INPLACE_PIECE); it is a view until the step owns w's storage. */
	tensor_view(&q, qt, w.ndim, w.shape, n > 0 ? w.data : NULL);
	size_t tmp_len = inner == 1 ? channels : inner < INPLACE_PIECE ? inner : INPLACE_PIECE;
	if ((st = tensor_alloc(&sc, DT_FLOAT, per_channel ? 1 : 0, cshape, e)) != NN_OK ||
	    (st = tensor_alloc(&zp, qt, per_channel ? 1 : 0, cshape, e)) != NN_OK)
		goto fail;
	if (n > 0 && !(tmp = malloc(tmp_len))) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for quantize scratch");
		goto fail;
	}
	/* The error metrics come out of the quantize pass (struct err_stats):
	 * (float)(q - zero_point) * scale, as ONNX Runtime computes it, against w.
	 * scale_min/max cover channels holding a non-zero weight; all-zero
	 * channels (scale 1 by convention, every q equal to the zero point) are
	 * counted separately so they do not masquerade as a coarse scale. */
	struct chan_scratch scratch = {0};
	struct err_stats stats = {0, 0, NULL, false, false, NULL, 0};
#ifdef HAVE_ERR_AVX2
	__builtin_cpu_init();
	stats.avx2 = __builtin_cpu_supports("avx2");
#endif
#ifdef HAVE_ERR_AVX512
	stats.avx512 = __builtin_cpu_supports("avx512f");
#endif
	used = calloc(channels, sizeof *used);
	if (!used) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for metrics");
		goto fail;
	}
	stats.used = used;
	if (n == 0) {
		for (size_t c = 0; c < channels; c++) /* empty weight: nothing to scale */
			((float *)sc.data)[c] = 1.0f;
	} else if ((st = scratch_new(&scratch, outer, channels, inner, e)) == NN_OK) {
		if (q8_threadable(outer, channels, inner))
			st = q8_par(w.data, outer, channels, inner, p->symmetric, q.data, sc.data,
				    zp.data, &scratch, &stats, ru, ctx && ctx->threads ? ctx->threads : 1,
				    ctx, e);
		else if (p->symmetric)
			st = sym_impl(w.data, outer, channels, inner, q.data, sc.data, &scratch,
				      &stats, tmp, ctx, e);
		else
			st = asym_impl(w.data, outer, channels, inner, q.data, sc.data, zp.data,
				       &scratch, &stats, tmp, ctx, e);
		free(scratch.mem);
	}
	if (st != NN_OK) {
		err_prefix(e, "weight '%s'", r->name);
		goto fail;
	}
	if (n > 0) {
		/* The storage now holds the quantized values: take it from the float
		 * initializer (or from the view's aligned copy) for the new one. */
		void *data = w.data;
		if (!w.owned) {
			if (init->raw_data.data == data) {
				init->raw_data.data = NULL;
				init->raw_data.len = 0;
			} else if ((void *)init->float_data == data) {
				init->float_data = NULL;
				init->n_float_data = 0;
			} else {
				st = err_set(e, NN_EINTERNAL, "internal", "",
					     "weight '%s': view of unknown storage", r->name);
				goto fail;
			}
		}
		/* Not shrunk: giving back the float tail (3/4 of it) would unmap
		 * its pages now, about a fifth of the step's time; it goes when the
		 * model is freed, and the step never holds more memory than the
		 * float model did. */
		w.data = NULL;
		w.owned = false;
		q.data = data;
		q.owned = true;
	}
	const float *scales = sc.data;
	float smin = INFINITY, smax = 0;
	size_t zero_channels = 0;
	double sq = stats.sq;
	double maxerr = bits_float((uint32_t)stats.maxbits);
	for (size_t c = 0; c < channels; c++) {
		if (used[c]) {
			smin = scales[c] < smin ? scales[c] : smin;
			smax = scales[c] > smax ? scales[c] : smax;
		} else {
			zero_channels++;
		}
	}

	tensor_free(&w); /* (empty unless the weight was empty) */
	if ((st = onnx_add_initializer_take(m, qname, &q, e)) != NN_OK ||
	    (st = onnx_add_initializer(m, sname, &sc, e)) != NN_OK ||
	    (st = onnx_add_initializer(m, zname, &zp, e)) != NN_OK)
		goto fail;
	const char *ins[3] = {qname, sname, zname};
	const char *outs[1] = {r->name};
	Onnx__NodeProto *node = NULL;
	if ((st = onnx_prepend_node(m, "DequantizeLinear", nname, ins, 3, outs, 1, &node, e)) !=
	    NN_OK)
		goto fail;
	if (per_channel && (st = onnx_node_set_int_attr(node, "axis", r->channel_axis, e)) != NN_OK)
		goto fail;
	onnx_remove_initializer(m, r->name);
	*params += (uint64_t)n;

	json_t *l = json_object();
	int bad = !l || json_array_append_new(layers, l);
	if (!bad) {
		bad |= step_json_set(l, "name", json_string(r->name));
		bad |= step_json_set(l, "op", json_string(r->op));
		bad |= step_json_set(l, "node", json_string(r->node));
		bad |= step_json_set(l, "scheme", json_string("int8"));
		bad |= step_json_set(l, "bits", json_integer(8));
		bad |= step_json_set(l, "dtype", json_string(p->symmetric ? "int8" : "uint8"));
		bad |= step_json_set(l, "shape", shape_json(&q));
		bad |= step_json_set(l, "granularity",
				     json_string(per_channel ? "per_channel" : "per_tensor"));
		if (per_channel)
			bad |= step_json_set(l, "axis", json_integer(r->channel_axis));
		bad |= step_json_set(l, "scale_min", zero_channels < channels ? step_json_real(smin)
									    : json_null());
		bad |= step_json_set(l, "scale_max", zero_channels < channels ? step_json_real(smax)
									    : json_null());
		bad |= step_json_set(l, "zero_channels", json_integer((json_int_t)zero_channels));
		bad |= step_json_set(l, "mse", step_json_real(n ? sq / (double)n : 0.0));
		bad |= step_json_set(l, "max_abs_error", step_json_real(maxerr));
	}
	if (bad)
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for quantize metrics");
fail:
	tensor_free(&w);
	tensor_free(&q);
	tensor_free(&sc);
	tensor_free(&zp);
	free(buf);
	free(used);
	free(tmp);
	free(qname);
	free(sname);
	free(zname);
	free(nname);
	return st;
}

enum nn_status quant_run(struct onnx_model *m, const struct quant_params *p,
			 const struct step_ctx *ctx, json_t **metrics, struct nn_err *e)
{
	enum nn_status st = NN_OK;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct onnx_weight_ref *refs = NULL;
	size_t nref = 0;
	struct wref *ws = NULL;
	json_t *out = NULL, *layers = NULL, *skipped = NULL, *bias = NULL;
	struct tensor *floats = NULL;
	struct quant_bias_weight *bw = NULL;
	struct q8_reuse reuse = {0};
	*metrics = NULL;

	switch (p->scheme) {
	case QUANT_INT8:
		break;
	case QUANT_FP16:
	case QUANT_BF16:
		return quant_float_run(m, p, ctx, metrics, e);
	case QUANT_DYNAMIC:
		return quant_dynamic_run(m, p, ctx, metrics, e);
	case QUANT_KMEANS:
		return quant_kmeans_run(m, p, ctx, metrics, e);
	case QUANT_INT4:
		return quant_int4_run(m, p, ctx, metrics, e);
	case QUANT_STATIC:
		return quant_static_run(m, p, ctx, metrics, e);
	}
	if (p->granularity != QUANT_PER_CHANNEL && p->granularity != QUANT_PER_TENSOR)
		return err_set(e, NN_EINVAL, "invalid_spec", "", "unknown granularity");
	size_t bytes_before = onnx_packed_size(m);
	if (!(skipped = json_array())) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for metrics");
		goto fail;
	}
	if ((st = quant_select_weights(m, p, &refs, &nref, skipped, e)) != NN_OK)
		goto fail;
	if (nref == 0) {
		st = err_set(e, NN_EINVAL, "invalid_spec", "",
			     "model has no Gemm/MatMul/Conv%s float weights to quantize%s",
			     p->ops & QUANT_OP_GATHER ? "/Gather" : "",
			     json_array_size(skipped) ? " (all left float by ops/exclude)" : "");
		goto fail;
	}
	/* DequantizeLinear exists from opset 10 and takes `axis` from 13. */
	if (onnx_opset(m) < 13 && (st = onnx_raise_opset(m, 13, e)) != NN_OK)
		goto fail;
	/* Copy what we need from the refs: their pointers do not survive the
	 * initializer removals below. */
	ws = calloc(nref, sizeof *ws);
	if (!ws) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for %zu weights", nref);
		goto fail;
	}
	for (size_t i = 0; i < nref; i++) {
		const Onnx__NodeProto *nd = refs[i].node;
		ws[i].name = strdup(refs[i].init->name ? refs[i].init->name : "");
		ws[i].op = strdup(nd && nd->op_type ? nd->op_type : "");
		ws[i].node = strdup(nd && nd->name ? nd->name : "");
		ws[i].channel_axis = refs[i].channel_axis;
		/* element count from dims (checked again against the data by the view) */
		int64_t numel = 1;
		const Onnx__TensorProto *t = refs[i].init;
		for (size_t d = 0; d < t->n_dims; d++) {
			if (t->dims[d] < 0 || __builtin_mul_overflow(numel, t->dims[d], &numel)) {
				st = err_set(e, NN_EINVAL, "invalid_model", "",
					     "weight '%s' has an invalid shape", t->name);
				goto fail;
			}
		}
		if (!ws[i].name || !ws[i].op || !ws[i].node) {
			st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for names");
			goto fail;
		}
	}
	free(refs);
	refs = NULL;

	layers = json_array();
	if (!layers) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for metrics");
		goto fail;
	}
	/* Bias correction compares against the float weights, which the
	 * in-place quantization destroys: copy them first (only then). */
	if (p->bias_correction) {
		floats = calloc(nref, sizeof *floats);
		bw = calloc(nref, sizeof *bw);
		if (!floats || !bw) {
			st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for float weights");
			goto fail;
		}
		for (size_t i = 0; i < nref; i++) {
			struct tensor v = {0};
			Onnx__TensorProto *init = onnx_find_initializer(m, ws[i].name);
			if (!init) {
				st = err_set(e, NN_EINTERNAL, "internal", "", "weight '%s' vanished",
					     ws[i].name);
				goto fail;
			}
			if ((st = onnx_initializer_view(init, &v, e)) != NN_OK ||
			    (st = tensor_alloc(&floats[i], DT_FLOAT, v.ndim, v.shape, e)) != NN_OK) {
				tensor_free(&v);
				goto fail;
			}
			int64_t cnt = tensor_numel(&v);
			if (cnt > 0)
				memcpy(floats[i].data, v.data, (size_t)cnt * sizeof(float));
			tensor_free(&v);
			bw[i].name = ws[i].name;
			bw[i].floats = &floats[i];
		}
	}
	uint64_t params = 0;
	for (size_t i = 0; i < nref; i++) {
		if (step_canceled(ctx)) {
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled while quantizing");
			goto fail;
		}
		if ((st = quantize_one(m, &ws[i], p, ctx, layers, &params, &reuse, e)) != NN_OK)
			goto fail;
		step_progress(ctx, (double)(i + 1) / (double)nref);
	}
	if (p->bias_correction) {
		if ((st = quant_bias_correct(m, bw, nref, ctx, &bias, e)) != NN_OK)
			goto fail;
		/* each layer's entry also states the mean shift applied to its bias */
		const json_t *bl = json_object_get(bias, "layers");
		for (size_t k = 0; k < json_array_size(bl); k++) {
			const json_t *b = json_array_get(bl, k);
			const char *nm = json_string_value(json_object_get(b, "name"));
			for (size_t j = 0; nm && j < json_array_size(layers); j++) {
				json_t *l = json_array_get(layers, j);
				if (!strcmp(json_string_value(json_object_get(l, "name")), nm) &&
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
	bad |= step_json_set(out, "scheme", json_string("int8"));
	bad |= step_json_set(out, "granularity", json_string(p->granularity == QUANT_PER_CHANNEL
								     ? "per_channel"
								     : "per_tensor"));
	bad |= step_json_set(out, "symmetric", json_boolean(p->symmetric));
	bad |= step_json_set(out, "parameters", json_integer((json_int_t)params));
	bad |= step_json_set(out, "bytes_before", json_integer((json_int_t)bytes_before));
	bad |= step_json_set(out, "bytes_after", json_integer((json_int_t)onnx_packed_size(m)));
	bad |= step_json_set(out, "opset", json_integer((json_int_t)onnx_opset(m)));
	bad |= step_json_set(out, "layers", layers);
	layers = NULL;
	bad |= step_json_set(out, "kept_float", skipped);
	skipped = NULL;
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
	json_decref(skipped);
	json_decref(bias);
	for (size_t i = 0; floats && i < nref; i++)
		tensor_free(&floats[i]);
	free(floats);
	free(bw);
	if (ws) {
		for (size_t i = 0; i < nref; i++) {
			free(ws[i].name);
			free(ws[i].op);
			free(ws[i].node);
		}
	}
	free(ws);
	free(refs);
	free(reuse.kbuf);
	free(reuse.log);
	return st;
}
