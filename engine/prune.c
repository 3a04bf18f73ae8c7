#include "prune.h"
#include "prune_recon.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dead.h"
#include "spec.h"
#include "structured.h"
#include "tensor.h"

/* Float bits read as integers. The IEEE bits of a non-negative float order
 * exactly like the float (NaNs above +Inf), so |w| is compared as
 * (bits & 0x7fffffff) with plain integer ops the vectorizer handles. The
 * may_alias type makes reading float storage through it well defined. */
typedef uint32_t u32a __attribute__((may_alias));

#define ABS_MASK 0x7fffffffu
#define HI_BUCKETS 32768u /* bits 30..16 of |w| */
#define LO_BUCKETS 65536u /* bits 15..0 of |w| */
#define SUBHISTS 4u
/* Pass 1 counts into SUBHISTS uint32 histograms in turn, so consecutive
 * elements falling into the same bucket (the common case: weights cluster)
 * do not serialize on one counter; they are folded into 64-bit totals before
 * any uint32 counter could overflow. */
#define FOLD_EVERY ((uint64_t)1 << 32)
#define VEC_CHUNK 64 /* fixed inner trip count: gcc -O2 vectorizes these loops */
/* Software prefetch distance, in elements (4 KiB): the hardware prefetchers
 * stop at 4 KiB page boundaries, and a model's weights are in protobuf-c's
 * 4 KiB-page buffers. */
#define PF_DIST 1024

/* Hot loops compiled for AVX2 and for the baseline, one picked per CPU at
 * load time (ifunc); integer-only, so identical results either way. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HOT_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HOT_CLONES
#endif

struct hists {
	uint64_t hi[HI_BUCKETS];
	union {
		uint32_t sub[SUBHISTS][HI_BUCKETS];
		uint64_t lo[LO_BUCKETS];
	} u;
};
_Static_assert(sizeof(((struct hists *)0)->u.sub) == sizeof(((struct hists *)0)->u.lo),
	       "pass-2 histogram reuses pass-1 scratch");

/* Progress over a known amount of element work, shared by the passes of one step. */
struct prog {
	const struct step_ctx *ctx;
	double done, total;
};

static enum nn_status prog_tick(struct prog *pg, size_t elems, struct nn_err *e)
{
	if (!pg)
		return NN_OK;
	pg->done += (double)elems;
	if (pg->total > 0)
		step_progress(pg->ctx, pg->done / pg->total);
	if (step_canceled(pg->ctx))
		return err_set(e, NN_ECANCELED, "canceled", "", "canceled while pruning");
	return NN_OK;
}

/* Returns the number of exact zeros (+0 or -0) seen, so the step gets its
 * "non-zeros before" figure without another pass. */
static uint64_t hist_hi_chunk(const float *restrict w, size_t n,
			      uint32_t (*restrict sub)[HI_BUCKETS])
{
	const u32a *u = (const u32a *)w;
	uint64_t zeros = 0;
	size_t i = 0;
	for (; i + SUBHISTS <= n; i += SUBHISTS) {
		uint32_t a0 = u[i] & ABS_MASK, a1 = u[i + 1] & ABS_MASK;
		uint32_t a2 = u[i + 2] & ABS_MASK, a3 = u[i + 3] & ABS_MASK;
		sub[0][a0 >> 16]++;
		sub[1][a1 >> 16]++;
		sub[2][a2 >> 16]++;
		sub[3][a3 >> 16]++;
		zeros += (uint64_t)(a0 == 0) + (a1 == 0) + (a2 == 0) + (a3 == 0);
	}
	for (; i < n; i++) {
		uint32_t a = u[i] & ABS_MASK;
		sub[0][a >> 16]++;
		zeros += a == 0;
	}
	return zeros;
}

static void fold_hi(struct hists *h)
{
	for (size_t b = 0; b < HI_BUCKETS; b++) {
		h->hi[b] += (uint64_t)h->u.sub[0][b] + h->u.sub[1][b] + h->u.sub[2][b] +
			    h->u.sub[3][b];
	}
	memset(h->u.sub, 0, sizeof h->u.sub);
}

HOT_CLONES
static void hist_lo_chunk(const float *restrict w, size_t n, uint32_t hb, uint64_t *restrict lo)
{
	const u32a *u = (const u32a *)w;
	size_t i = 0;
	/* Only elements of one pass-1 bucket are counted: a vectorized scan finds
	 * the 64-element chunks holding any, and only those are walked. */
	for (; i + VEC_CHUNK <= n; i += VEC_CHUNK) {
		uint32_t any = 0;
		for (size_t j = 0; j < VEC_CHUNK; j++)
			any |= ((u[i + j] & ABS_MASK) >> 16) == hb;
		if (!any)
			continue;
		for (size_t j = 0; j < VEC_CHUNK; j++) {
			uint32_t a = u[i + j] & ABS_MASK;
			if ((a >> 16) == hb)
				lo[a & 0xffffu]++;
		}
	}
	for (; i < n; i++) {
		uint32_t a = u[i] & ABS_MASK;
		if ((a >> 16) == hb)
			lo[a & 0xffffu]++;
	}
}

/* Pass 2 fused with the zeroing (prune_arrays): every element of a pass-1
 * bucket below hb is certainly below t and is zeroed now; elements above hb
 * are certainly kept (and counted: they are non-zero); elements of bucket hb
 * go into the low histogram and their global positions into pos[], in order,
 * for the fix-up once t is known. Returns the kept count. */
HOT_CLONES
static uint64_t zero_lo_chunk(float *restrict w, size_t n, uint32_t hb, uint64_t *restrict lo,
			      uint64_t base, uint64_t *restrict pos, size_t *npos)
{
	u32a *u = (u32a *)w;
	uint64_t kept = 0;
	size_t i = 0;
	for (; i + VEC_CHUNK <= n; i += VEC_CHUNK) {
		uint32_t any = 0, c = 0;
		for (size_t j = 0; j < VEC_CHUNK; j++) {
			uint32_t x = u[i + j], hi = (x & ABS_MASK) >> 16;
			any |= hi == hb;
			c += hi > hb;
			u[i + j] = hi < hb ? 0u : x;
		}
		kept += c;
		if (!any)
			continue;
		for (size_t j = 0; j < VEC_CHUNK; j++) {
			uint32_t a = u[i + j] & ABS_MASK;
			if ((a >> 16) == hb) {
				lo[a & 0xffffu]++;
				pos[(*npos)++] = base + i + j;
			}
		}
	}
	for (; i < n; i++) {
		uint32_t x = u[i], a = x & ABS_MASK, hi = a >> 16;
		kept += hi > hb;
		u[i] = hi < hb ? 0u : x;
		if (hi == hb) {
			lo[a & 0xffffu]++;
			pos[(*npos)++] = base + i;
		}
	}
	return kept;
}

/* Positions recorded for the fused path are capped (8 bytes each): past this
 * the bucket is huge (many equal magnitudes) and the plain three-pass path
 * is used instead. */
#define FUSE_MAX_POSITIONS ((uint64_t)1 << 23)

/* Asks select_impl to zero while it selects (prune_arrays). */
struct fuse {
	float *const *arrays; /* the same arrays, writable */
	uint64_t *nz_after;   /* per array; may be NULL */
	bool done;            /* set when the arrays were pruned */
};

/* zeros (may be NULL): per array, the count of exact zeros, from pass 1.
 * fz (may be NULL): prune while selecting when bucket hb is small enough
 * (fz->done tells); the plain selection otherwise. */
static enum nn_status select_impl(const float *const *arrays, const size_t *lens,
				  size_t n_arrays, uint64_t k, struct prog *pg,
				  struct prune_selection *sel, uint64_t *zeros, struct fuse *fz,
				  struct nn_err *e)
{
	enum nn_status st = NN_OK;
	uint64_t *pos = NULL;
	size_t npos = 0;
	uint64_t total = 0;
	for (size_t a = 0; a < n_arrays; a++)
		total += lens[a];
	if (k == 0 || k > total)
		return err_set(e, NN_EINVAL, "invalid_argument", "",
			       "selection rank %llu outside 1..%llu", (unsigned long long)k,
			       (unsigned long long)total);
	struct hists *h = calloc(1, sizeof *h);
	if (!h)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for histograms");

	/* Pass 1: histogram of bits 30..16. */
	uint64_t since_fold = 0;
	for (size_t a = 0; a < n_arrays; a++) {
		uint64_t z = 0;
		if (zeros)
			zeros[a] = 0;
		for (size_t off = 0; off < lens[a]; off += STEP_POLL_ELEMS) {
			size_t len = lens[a] - off < STEP_POLL_ELEMS ? lens[a] - off : STEP_POLL_ELEMS;
			if (since_fold + len >= FOLD_EVERY) {
				fold_hi(h);
				since_fold = 0;
			}
			z += hist_hi_chunk(arrays[a] + off, len, h->u.sub);
			if (zeros)
				zeros[a] = z;
			since_fold += len;
			if ((st = prog_tick(pg, len, e)) != NN_OK)
				goto out;
		}
	}
	fold_hi(h);

	uint64_t cum = 0;
	uint32_t hb = 0;
	while (cum + h->hi[hb] < k) /* terminates: the counts sum to total >= k */
		cum += h->hi[hb++];

	if (fz && h->hi[hb] <= FUSE_MAX_POSITIONS && h->hi[hb] <= total / 8 + 1024) {
		pos = malloc((size_t)h->hi[hb] * sizeof *pos + 1);
		if (!pos) /* fall back to the plain path rather than fail */
			fz = NULL;
	} else {
		fz = NULL;
	}

	/* Pass 2: histogram of bits 15..0 within bucket hb (zeroing lower buckets
	 * on the way when fused). */
	memset(h->u.lo, 0, sizeof h->u.lo);
	uint64_t base = 0;
	for (size_t a = 0; a < n_arrays; a++) {
		uint64_t kept = 0;
		for (size_t off = 0; off < lens[a]; off += STEP_POLL_ELEMS) {
			size_t len = lens[a] - off < STEP_POLL_ELEMS ? lens[a] - off : STEP_POLL_ELEMS;
			if (fz)
				kept += zero_lo_chunk(fz->arrays[a] + off, len, hb, h->u.lo,
						      base + off, pos, &npos);
			else
				hist_lo_chunk(arrays[a] + off, len, hb, h->u.lo);
			if ((st = prog_tick(pg, len, e)) != NN_OK)
				goto out;
		}
		if (fz && fz->nz_after)
			fz->nz_after[a] = kept;
		base += lens[a];
	}
	uint32_t lb = 0;
	while (cum + h->u.lo[lb] < k)
		cum += h->u.lo[lb++];

	uint32_t bits = hb << 16 | lb;
	memcpy(&sel->threshold, &bits, sizeof bits);
	sel->below = cum;
	sel->ties = h->u.lo[lb];

	if (fz) {
		/* Fix-up of bucket hb, in recorded (= array, element) order: below t
		 * goes, then ties until k are reached; the rest stays. */
		uint64_t need = k - cum, start = 0;
		size_t a = 0;
		for (size_t p = 0; p < npos; p++) {
			while (pos[p] >= start + lens[a])
				start += lens[a++];
			u32a *u = (u32a *)(fz->arrays[a] + (pos[p] - start));
			uint32_t v = *u & ABS_MASK;
			if (v < bits || (v == bits && need > 0)) {
				need -= v == bits;
				*u = 0;
			} else if (fz->nz_after) {
				fz->nz_after[a] += v != 0;
			}
		}
		fz->done = true;
		st = prog_tick(pg, (size_t)total, e); /* the zeroing pass it replaced */
	}
out:
	free(pos);
	free(h);
	return st;
}

/* ---- selection from a sample, checked exactly (large inputs) ----
 *
 * Pass 1 of the radix selection is bound by its scattered histogram
 * increments, not by memory. On large inputs a fixed-seed sample of
 * SAMPLE_LINES lines of SAMPLE_LINE consecutive elements (one per stratum of
 * the concatenated arrays) gives an estimate of t and a bracket [lo, hi]
 * around it, many standard deviations wide. One read-only pass, plain
 * vectorized compares, then counts |w| < lo and gathers the magnitudes in
 * [lo, hi]; if the k-th smallest is among those (below < k <= below +
 * candidates) the exact radix selection over the candidates alone gives t,
 * `below` and `ties` exactly as the full selection would (every tie of t is
 * a candidate). If not (a sample that misrepresents the data: rare by
 * construction), the full radix selection answers instead. Either way the
 * result is exact; the sample only decides how fast it comes. */

#define SAMPLE_LINE 16u                      /* elements per sampled line (64 bytes) */
#define SAMPLE_LINES_MAX ((size_t)1 << 16)   /* up to 2^20 sampled elements */
#define SAMPLE_MIN_TOTAL ((uint64_t)1 << 22) /* smaller inputs: radix directly */
#define SAMPLE_FRACTION 32u                  /* sample at most 1/32 of the elements */
#define BRACKET_SIGMAS 8.0                   /* bracket half-width, in standard deviations */
#define CAND_CHUNK 32                        /* elements per "any candidate?" test */
#define SEED 0x9e3779b97f4a7c15ull

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Walks the sampled lines in order: line j starts at a random place in the
 * j-th of `lines` equal strata of the concatenated arrays. */
struct line_walk {
	uint64_t rng, start;
	size_t a;
};

static const u32a *line_at(struct line_walk *wk, const float *const *arrays, const size_t *lens,
			   size_t n_arrays, uint64_t total, size_t lines, size_t j, size_t *take)
{
	uint64_t lo = total * j / lines, hi = total * (j + 1) / lines;
	uint64_t p = lo + splitmix64(&wk->rng) % (hi - lo);
	while (wk->a + 1 < n_arrays && p >= wk->start + lens[wk->a])
		wk->start += lens[wk->a++];
	size_t off = (size_t)(p - wk->start), len = lens[wk->a];
	*take = len < SAMPLE_LINE ? len : SAMPLE_LINE;
	if (off + *take > len)
		off = len - *take;
	return (const u32a *)(arrays[wk->a] + off);
}

/* Fills out[] with the |w| bits of the sampled lines; returns the count. A
 * second walker runs SAMPLE_AHEAD lines ahead and prefetches: the lines are
 * scattered over the whole model, each one a cache (and TLB) miss. */
#define SAMPLE_AHEAD 16
static size_t sample_abs(const float *const *arrays, const size_t *lens, size_t n_arrays,
			 uint64_t total, size_t lines, uint32_t *out)
{
	struct line_walk main_wk = {SEED, 0, 0}, ahead = {SEED, 0, 0};
	size_t m = 0, take;
	for (size_t j = 0; j < lines && j < SAMPLE_AHEAD; j++)
		__builtin_prefetch(line_at(&ahead, arrays, lens, n_arrays, total, lines, j, &take));
	for (size_t j = 0; j < lines; j++) {
		if (j + SAMPLE_AHEAD < lines)
			__builtin_prefetch(line_at(&ahead, arrays, lens, n_arrays, total, lines,
						   j + SAMPLE_AHEAD, &take));
		const u32a *u = line_at(&main_wk, arrays, lens, n_arrays, total, lines, j, &take);
		for (size_t i = 0; i < take; i++)
			out[m++] = u[i] & ABS_MASK;
	}
	return m;
}

/* Bits of a value at or below the r-th smallest of s[0..m) (r from 1) and of
 * one at or above the r2-th, r <= r2, to 2^-15 relative precision: a
 * histogram of bits 30..16, then of bits 15..8 within the two buckets. */
static enum nn_status sample_bracket(const uint32_t *s, size_t m, uint64_t r, uint64_t r2,
				     uint32_t *lo, uint32_t *hi)
{
	uint32_t *h = calloc(HI_BUCKETS + 512, sizeof *h);
	if (!h)
		return NN_ENOMEM;
	for (size_t i = 0; i < m; i++)
		h[s[i] >> 16]++;
	uint64_t c1 = 0, c2 = 0;
	uint32_t b1 = 0, b2 = 0;
	while (c1 + h[b1] < r)
		c1 += h[b1++];
	while (c2 + h[b2] < r2)
		c2 += h[b2++];
	uint32_t *h1 = h + HI_BUCKETS, *h2 = h1 + 256;
	for (size_t i = 0; i < m; i++) {
		uint32_t x = s[i];
		h1[(x >> 8) & 255] += (x >> 16) == b1;
		h2[(x >> 8) & 255] += (x >> 16) == b2;
	}
	uint32_t s1 = 0, s2 = 0;
	while (c1 + h1[s1] < r)
		c1 += h1[s1++];
	while (c2 + h2[s2] < r2)
		c2 += h2[s2++];
	*lo = b1 << 16 | s1 << 8;
	*hi = b2 << 16 | s2 << 8 | 0xffu;
	free(h);
	return NN_OK;
}

/* The read-only counting pass over one chunk: returns the count of |w| < lo,
 * adds exact zeros to *zeros and appends magnitudes in [lo, hi] to cand
 * (up to cap; *nc counts them all, so *nc > cap tells an overflow). */
HOT_CLONES
static uint64_t bracket_chunk(const float *restrict w, size_t n, int32_t lo, int32_t hi,
			      uint64_t *zeros, uint32_t *restrict cand, size_t cap, size_t *nc)
{
	const u32a *u = (const u32a *)w;
	uint64_t below = 0, z = 0;
	size_t i = 0, c = *nc;
	for (; i + CAND_CHUNK <= n; i += CAND_CHUNK) {
		int32_t b = 0, zz = 0, any = 0;
		for (size_t j = 0; j < CAND_CHUNK; j++) {
			int32_t a = (int32_t)(u[i + j] & ABS_MASK);
			b += a < lo;
			zz += a == 0;
			any |= (a >= lo) & (a <= hi);
		}
		below += (uint64_t)b;
		z += (uint64_t)zz;
		if (!any)
			continue;
		for (size_t j = 0; j < CAND_CHUNK; j++) {
			/* branch-free append (cand has room for cap + 1: the last slot
			 * absorbs writes past the cap) */
			int32_t a = (int32_t)(u[i + j] & ABS_MASK);
			cand[c < cap ? c : cap] = (uint32_t)a;
			c += (a >= lo) & (a <= hi);
		}
	}
	for (; i < n; i++) {
		int32_t a = (int32_t)(u[i] & ABS_MASK);
		below += a < lo;
		z += a == 0;
		if (a >= lo && a <= hi) {
			if (c < cap)
				cand[c] = (uint32_t)a;
			c++;
		}
	}
	*zeros += z;
	*nc = c;
	return below;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define HAVE_BRACKET_AVX2 1
/* bracket_chunk with AVX2 intrinsics: the same counts and the same
 * candidates in the same order, but candidates are picked out of each
 * 8-element vector by its compare mask (movemask + count trailing zeros)
 * instead of a scalar walk over every chunk holding one, which cost more
 * than the whole vector pass at ~1% candidates. */
__attribute__((target("avx2,bmi"))) static uint64_t
bracket_chunk_avx2(const float *restrict w, size_t n, int32_t lo, int32_t hi, uint64_t *zeros,
		   uint32_t *restrict cand, size_t cap, size_t *nc)
{
	const u32a *u = (const u32a *)w;
	const __m256i absm = _mm256_set1_epi32((int32_t)ABS_MASK);
	const __m256i vlo = _mm256_set1_epi32(lo), vhi = _mm256_set1_epi32(hi);
	const __m256i zero = _mm256_setzero_si256();
	__m256i bacc = zero, zacc = zero;
	size_t i = 0, c = *nc;
	uint64_t below = 0, z = 0;
	/* Lane counters hold at most n / 8 each: n is at most STEP_POLL_ELEMS. */
	for (; i + 16 <= n; i += 16) {
		__m256i a0 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(u + i)), absm);
		__m256i a1 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(u + i + 8)), absm);
		__m256i lt0 = _mm256_cmpgt_epi32(vlo, a0), lt1 = _mm256_cmpgt_epi32(vlo, a1);
		__m256i gt0 = _mm256_cmpgt_epi32(a0, vhi), gt1 = _mm256_cmpgt_epi32(a1, vhi);
		bacc = _mm256_add_epi32(bacc, _mm256_add_epi32(lt0, lt1)); /* -1 per hit */
		zacc = _mm256_add_epi32(zacc, _mm256_add_epi32(_mm256_cmpeq_epi32(a0, zero),
							       _mm256_cmpeq_epi32(a1, zero)));
		unsigned m0 = (unsigned)_mm256_movemask_ps(
			_mm256_castsi256_ps(_mm256_or_si256(lt0, gt0)));
		unsigned m1 = (unsigned)_mm256_movemask_ps(
			_mm256_castsi256_ps(_mm256_or_si256(lt1, gt1)));
		unsigned mk = ~(m0 | m1 << 8) & 0xffffu; /* lanes inside [lo, hi] */
		while (mk) {
			unsigned j = (unsigned)__builtin_ctz(mk);
			cand[c < cap ? c : cap] = u[i + j] & ABS_MASK;
			c++;
			mk &= mk - 1;
		}
	}
	uint32_t lb[8], lz[8];
	_mm256_storeu_si256((__m256i *)lb, _mm256_sub_epi32(zero, bacc));
	_mm256_storeu_si256((__m256i *)lz, _mm256_sub_epi32(zero, zacc));
	for (size_t j = 0; j < 8; j++) {
		below += lb[j];
		z += lz[j];
	}
	for (; i < n; i++) {
		int32_t a = (int32_t)(u[i] & ABS_MASK);
		below += a < lo;
		z += a == 0;
		if (a >= lo && a <= hi) {
			cand[c < cap ? c : cap] = (uint32_t)a;
			c++;
		}
	}
	*zeros += z;
	*nc = c;
	return below;
}
#endif

/* The exact part: one counting pass with the bracket [lo, hi] (|w| bits),
 * then the radix selection over the candidates. *hit false when the k-th
 * smallest is not in the bracket or more than cap candidates came up. */
static enum nn_status bracket_select(const float *const *arrays, const size_t *lens,
				     size_t n_arrays, uint64_t k, uint64_t total, uint32_t lo,
				     uint32_t hi, size_t cap, struct prog *pg,
				     struct prune_selection *sel, uint64_t *zeros, bool *hit,
				     struct nn_err *e)
{
	enum nn_status st = NN_OK;
	*hit = false;
	uint32_t *cand = malloc((cap + 1) * sizeof *cand);
	if (!cand)
		return NN_OK; /* no memory for the fast path: the radix one needs less */
	uint64_t below = 0;
	size_t nc = 0;
	_Static_assert(STEP_POLL_ELEMS <= ((size_t)1 << 32), "AVX2 lane counters");
#ifdef HAVE_BRACKET_AVX2
	__builtin_cpu_init();
	bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi");
#endif
	for (size_t a = 0; a < n_arrays; a++) {
		uint64_t z = 0;
		for (size_t off = 0; off < lens[a]; off += STEP_POLL_ELEMS) {
			size_t len = lens[a] - off < STEP_POLL_ELEMS ? lens[a] - off : STEP_POLL_ELEMS;
#ifdef HAVE_BRACKET_AVX2
			if (avx2)
				below += bracket_chunk_avx2(arrays[a] + off, len, (int32_t)lo,
							    (int32_t)hi, &z, cand, cap, &nc);
			else
#endif
				below += bracket_chunk(arrays[a] + off, len, (int32_t)lo,
						       (int32_t)hi, &z, cand, cap, &nc);
			if ((st = prog_tick(pg, len, e)) != NN_OK)
				goto out;
		}
		if (zeros)
			zeros[a] = z;
	}
	if (nc > cap || k <= below || k - below > nc)
		goto out; /* missed: the radix selection answers */
	const float *cf = (const float *)cand;
	size_t cn = nc;
	struct prune_selection sub;
	if ((st = select_impl(&cf, &cn, 1, k - below, NULL, &sub, NULL, NULL, e)) != NN_OK)
		goto out;
	sel->threshold = sub.threshold;
	sel->below = below + sub.below;
	sel->ties = sub.ties;
	*hit = true;
	st = prog_tick(pg, (size_t)total, e); /* the histogram pass it replaced */
out:
	free(cand);
	return st;
}

/* The sampled selection. *hit is false (and nothing else is set) when the
 * input is too small to sample, the bracket missed the k-th element or too
 * many candidates came up: the caller then runs the radix selection. zeros
 * (may be NULL): per array, the exact zeros seen. Failures are only
 * NN_ECANCELED (from pg) and NN_EINVAL for a bad k. */
static enum nn_status select_sampled(const float *const *arrays, const size_t *lens,
				     size_t n_arrays, uint64_t k, struct prog *pg,
				     struct prune_selection *sel, uint64_t *zeros, bool *hit,
				     struct nn_err *e)
{
	enum nn_status st = NN_OK;
	uint32_t *smp = NULL;
	*hit = false;
	uint64_t total = 0;
	for (size_t a = 0; a < n_arrays; a++)
		total += lens[a];
	if (k == 0 || k > total)
		return err_set(e, NN_EINVAL, "invalid_argument", "",
			       "selection rank %llu outside 1..%llu", (unsigned long long)k,
			       (unsigned long long)total);
	if (total < SAMPLE_MIN_TOTAL)
		return NN_OK;
	size_t lines = (size_t)(total / SAMPLE_FRACTION / SAMPLE_LINE);
	lines = lines < SAMPLE_LINES_MAX ? lines : SAMPLE_LINES_MAX;
	smp = malloc(lines * SAMPLE_LINE * sizeof *smp);
	if (!smp) /* no memory for the fast path: the radix one needs less */
		return NN_OK;
	size_t m = sample_abs(arrays, lens, n_arrays, total, lines, smp);

	/* The sample's count of elements below t is about Binomial(m, k/total);
	 * lines of neighbouring weights are correlated, so the variance is
	 * doubled before taking BRACKET_SIGMAS deviations either side. */
	double q = (double)k / (double)total;
	double dev = BRACKET_SIGMAS * sqrt(2.0 * (double)m * q * (1.0 - q)) + 64.0;
	double rc = q * (double)m;
	uint64_t r1 = rc - dev < 1.0 ? 1 : (uint64_t)(rc - dev);
	uint64_t r2 = rc + dev >= (double)m ? m : (uint64_t)(rc + dev) + 1;
	uint32_t lo, hi;
	if (sample_bracket(smp, m, r1, r2, &lo, &hi) != NN_OK)
		goto out;
	if (r1 == 1)
		lo = 0; /* the bracket reaches down to the smallest magnitude */
	if (r2 == m)
		hi = ABS_MASK; /* ... or up to the largest, NaNs included */
	free(smp);
	smp = NULL;

	/* Room for 4x the expected candidates (pages only fault in when used). */
	double expect = (double)total * (2.0 * dev + 2.0) / (double)m;
	size_t cap = (size_t)(4.0 * expect) + 65536;
	if ((uint64_t)cap > total)
		cap = (size_t)total;
	st = bracket_select(arrays, lens, n_arrays, k, total, lo, hi, cap, pg, sel, zeros, hit, e);
out:
	free(smp);
	return st;
}

/* Sampled selection on large inputs, radix otherwise or when it misses. */
static enum nn_status select_any(const float *const *arrays, const size_t *lens, size_t n_arrays,
				 uint64_t k, struct prog *pg, struct prune_selection *sel,
				 struct nn_err *e)
{
	bool hit;
	enum nn_status st = select_sampled(arrays, lens, n_arrays, k, pg, sel, NULL, &hit, e);
	if (st != NN_OK || hit)
		return st;
	return select_impl(arrays, lens, n_arrays, k, pg, sel, NULL, NULL, e);
}

enum nn_status prune_select(const float *const *arrays, const size_t *lens, size_t n_arrays,
			    uint64_t k, const struct step_ctx *ctx, struct prune_selection *sel,
			    struct nn_err *e)
{
	double total = 0;
	for (size_t a = 0; a < n_arrays; a++)
		total += (double)lens[a];
	struct prog pg = {ctx, 0, 2 * total};
	return select_any(arrays, lens, n_arrays, k, &pg, sel, e);
}

enum nn_status prune_select_radix(const float *const *arrays, const size_t *lens,
				  size_t n_arrays, uint64_t k, struct prune_selection *sel,
				  struct nn_err *e)
{
	return select_impl(arrays, lens, n_arrays, k, NULL, sel, NULL, NULL, e);
}

enum nn_status prune_select_sampled(const float *const *arrays, const size_t *lens,
				    size_t n_arrays, uint64_t k, struct prune_selection *sel,
				    bool *hit, struct nn_err *e)
{
	return select_sampled(arrays, lens, n_arrays, k, NULL, sel, NULL, hit, e);
}

enum nn_status prune_select_in_bracket(const float *const *arrays, const size_t *lens,
				       size_t n_arrays, uint64_t k, float lo, float hi,
				       struct prune_selection *sel, bool *hit, struct nn_err *e)
{
	uint64_t total = 0;
	for (size_t a = 0; a < n_arrays; a++)
		total += lens[a];
	*hit = false;
	if (k == 0 || k > total)
		return err_set(e, NN_EINVAL, "invalid_argument", "",
			       "selection rank %llu outside 1..%llu", (unsigned long long)k,
			       (unsigned long long)total);
	uint32_t lb, hb;
	memcpy(&lb, &lo, sizeof lb);
	memcpy(&hb, &hi, sizeof hb);
	lb &= ABS_MASK;
	hb &= ABS_MASK;
	if (lb > hb)
		return NN_OK;
	return bracket_select(arrays, lens, n_arrays, k, total, lb, hb, (size_t)total, NULL, sel,
			      NULL, hit, e);
}

enum nn_status prune_kth_abs(const float *const *arrays, const size_t *lens, size_t n_arrays,
			     uint64_t k, float *out)
{
	struct prune_selection sel;
	enum nn_status st = select_any(arrays, lens, n_arrays, k, NULL, &sel, NULL);
	if (st == NN_OK)
		*out = sel.threshold;
	return st;
}

/* Zeroes elements whose |w| bits are below cut (cut may be 0x80000000 to
 * include every finite and NaN magnitude's tie class up to 0x7fffffff).
 * Returns the non-zeros left, so the step needs no counting pass. */
HOT_CLONES
static uint64_t zero_below_chunk(float *w, size_t n, uint32_t cut)
{
	u32a *u = (u32a *)w;
	uint64_t nz = 0;
	size_t i = 0;
	for (; i + VEC_CHUNK <= n; i += VEC_CHUNK) {
		__builtin_prefetch(u + i + PF_DIST, 1);
		uint32_t c = 0;
		for (size_t j = 0; j < VEC_CHUNK; j++) {
			uint32_t x = u[i + j], a = x & ABS_MASK;
			u[i + j] = a < cut ? 0u : x;
			c += a >= cut && a != 0;
		}
		nz += c;
	}
	for (; i < n; i++) {
		uint32_t x = u[i], a = x & ABS_MASK;
		u[i] = a < cut ? 0u : x;
		nz += a >= cut && a != 0;
	}
	return nz;
}

/* Zeroes the first `need` elements whose |w| bits equal tb (in order);
 * returns how many it zeroed. */
HOT_CLONES
static uint64_t zero_ties(float *w, size_t n, uint32_t tb, uint64_t need)
{
	u32a *u = (u32a *)w;
	uint64_t done = 0;
	size_t i = 0;
	while (done < need && i < n) {
		if (i + VEC_CHUNK <= n) {
			uint32_t any = 0;
			for (size_t j = 0; j < VEC_CHUNK; j++)
				any |= (u[i + j] & ABS_MASK) == tb;
			if (!any) {
				i += VEC_CHUNK;
				continue;
			}
		}
		size_t end = i + VEC_CHUNK <= n ? i + VEC_CHUNK : n;
		for (; i < end && done < need; i++) {
			if ((u[i] & ABS_MASK) == tb) {
				u[i] = 0;
				done++;
			}
		}
	}
	return done;
}

/* nz_before, nz_after (may be NULL): per-array non-zero counts; nz_after is
 * filled from the zeroing itself (nz_before is copied when nothing changes). */
static enum nn_status zero_impl(float *const *arrays, const size_t *lens, size_t n_arrays,
				const struct prune_selection *sel, uint64_t k, struct prog *pg,
				const uint64_t *nz_before, uint64_t *nz_after, struct nn_err *e)
{
	enum nn_status st;
	if (k < sel->below || k - sel->below > sel->ties)
		return err_set(e, NN_EINTERNAL, "internal", "",
			       "prune_zero: rank %llu does not match the selection",
			       (unsigned long long)k);
	uint32_t tb;
	memcpy(&tb, &sel->threshold, sizeof tb);
	tb &= ABS_MASK;
	uint64_t need = k - sel->below; /* ties to zero, in order */
	if (tb == 0) { /* only zeros qualify: nothing changes */
		for (size_t a = 0; nz_before && nz_after && a < n_arrays; a++)
			nz_after[a] = nz_before[a];
		return prog_tick(pg, 0, e);
	}
	uint32_t cut = need == sel->ties ? tb + 1 : tb;
	for (size_t a = 0; a < n_arrays; a++) {
		uint64_t nz = 0;
		for (size_t off = 0; off < lens[a]; off += STEP_POLL_ELEMS) {
			size_t len = lens[a] - off < STEP_POLL_ELEMS ? lens[a] - off : STEP_POLL_ELEMS;
			nz += zero_below_chunk(arrays[a] + off, len, cut);
			if ((st = prog_tick(pg, len, e)) != NN_OK)
				return st;
		}
		if (nz_after)
			nz_after[a] = nz;
	}
	if (need == sel->ties || need == 0)
		return NN_OK;
	/* Partial tie class: zero the first `need` elements equal to t, in
	 * order. Reached whenever t's magnitude occurs more than once and only
	 * some of those go (common at 10^8 weights), so the search for the ties
	 * is vectorized. */
	for (size_t a = 0; a < n_arrays && need > 0; a++) {
		uint64_t z = zero_ties(arrays[a], lens[a], tb, need);
		need -= z;
		if (nz_after)
			nz_after[a] -= z; /* tb != 0: the ties were non-zeros */
	}
	return NN_OK;
}

enum nn_status prune_zero(float *const *arrays, const size_t *lens, size_t n_arrays,
			  const struct prune_selection *sel, uint64_t k,
			  const struct step_ctx *ctx, struct nn_err *e)
{
	double total = 0;
	for (size_t a = 0; a < n_arrays; a++)
		total += (double)lens[a];
	struct prog pg = {ctx, 0, total};
	return zero_impl(arrays, lens, n_arrays, sel, k, &pg, NULL, NULL, e);
}

HOT_CLONES
static uint64_t count_nonzero(const float *w, size_t n)
{
	const u32a *u = (const u32a *)w;
	uint64_t nz = 0;
	size_t i = 0;
	for (; i + VEC_CHUNK <= n; i += VEC_CHUNK) {
		uint32_t c = 0;
		for (size_t j = 0; j < VEC_CHUNK; j++)
			c += (u[i + j] & ABS_MASK) != 0;
		nz += c;
	}
	for (; i < n; i++)
		nz += (u[i] & ABS_MASK) != 0;
	return nz;
}

/* nz_before, nz_after: NULL, or per-array non-zero counts to fill (from the
 * passes themselves; one counting pass only when k is 0). */
static enum nn_status prune_arrays_impl(float *const *arrays, const size_t *lens,
					size_t n_arrays, uint64_t k, struct prog *pg,
					float *threshold, uint64_t *nz_before, uint64_t *nz_after,
					struct nn_err *e)
{
	*threshold = 0;
	if (k == 0) {
		for (size_t a = 0; nz_before && nz_after && a < n_arrays; a++)
			nz_before[a] = nz_after[a] = count_nonzero(arrays[a], lens[a]);
		return NN_OK;
	}
	struct prune_selection sel;
	struct fuse fz = {arrays, nz_after, false};
	bool hit;
	enum nn_status st = select_sampled((const float *const *)arrays, lens, n_arrays, k, pg,
					   &sel, nz_before, &hit, e);
	if (st == NN_OK && !hit)
		st = select_impl((const float *const *)arrays, lens, n_arrays, k, pg, &sel,
				 nz_before, &fz, e);
	if (st != NN_OK)
		return st;
	for (size_t a = 0; nz_before && a < n_arrays; a++)
		nz_before[a] = lens[a] - nz_before[a]; /* zeros -> non-zeros */
	*threshold = sel.threshold;
	if (fz.done)
		return NN_OK;
	return zero_impl(arrays, lens, n_arrays, &sel, k, pg, nz_before, nz_after, e);
}

enum nn_status prune_arrays(float *const *arrays, const size_t *lens, size_t n_arrays, uint64_t k,
			    const struct step_ctx *ctx, float *threshold, struct nn_err *e)
{
	double total = 0;
	for (size_t a = 0; a < n_arrays; a++)
		total += (double)lens[a];
	struct prog pg = {ctx, 0, 3 * total};
	return prune_arrays_impl(arrays, lens, n_arrays, k, &pg, threshold, NULL, NULL, e);
}

/* ---- N:M semi-structured pruning ----
 *
 * Element i of a group survives when fewer than `keep` elements beat it:
 * j beats i when |w_j| > |w_i|, or |w_j| == |w_i| and j < i (ties keep the
 * lower index). Magnitudes are compared as IEEE bits with the sign cleared,
 * like the magnitude selection (NaN above +Inf). Groups of up to 8 count
 * ranks pairwise (branch-free, vectorized across groups where the layout
 * allows); longer groups select the keep-th largest of unique 64-bit keys
 * (|w| bits, then the reversed index) by quickselect: O(m) per group, no
 * sort. */

#define NM_MAX_M 64
#define NM_SMALL 8   /* pairwise rank counting up to this group length */
#define NM_COLS 64   /* columns per tile of the strided (inner > 1) kernel */

/* Survivor bit mask of a group of len <= NM_SMALL magnitudes, keep < len. */
static unsigned nm_mask_small(const uint32_t *a, size_t len, size_t keep)
{
	unsigned rank[NM_SMALL] = {0};
	for (size_t i = 0; i < len; i++) {
		for (size_t j = i + 1; j < len; j++) {
			unsigned b = a[i] >= a[j]; /* the lower index wins ties */
			rank[j] += b;
			rank[i] += !b;
		}
	}
	unsigned mask = 0;
	for (size_t i = 0; i < len; i++)
		mask |= (unsigned)(rank[i] < keep) << i;
	return mask;
}

/* The keep-th largest (keep from 1) of len distinct keys; k is reordered. */
static uint64_t nm_kth_largest(uint64_t *k, int len, int keep)
{
	int lo = 0, hi = len - 1, want = keep - 1; /* position in descending order */
	while (lo < hi) {
		uint64_t x = k[lo], y = k[lo + (hi - lo) / 2], z = k[hi];
		uint64_t pivot = x < y ? (y < z ? y : x < z ? z : x) : (x < z ? x : y < z ? z : y);
		int i = lo, j = hi;
		while (i <= j) { /* descending: larger keys to the left */
			while (k[i] > pivot)
				i++;
			while (k[j] < pivot)
				j--;
			if (i <= j) {
				uint64_t t = k[i];
				k[i++] = k[j];
				k[j--] = t;
			}
		}
		if (want <= j)
			hi = j;
		else if (want >= i)
			lo = i;
		else
			return k[want]; /* between the parts: the pivot itself */
	}
	return k[lo];
}

/* One group of len elements at stride `stride`, keep < len <= NM_MAX_M.
 * Adds its non-zeros before/after to the counters. */
static void nm_group(u32a *u, size_t stride, size_t len, size_t keep, uint64_t *nzb,
		     uint64_t *nza)
{
	uint32_t a[NM_MAX_M];
	uint64_t before = 0, after = 0;
	for (size_t i = 0; i < len; i++) {
		a[i] = u[i * stride] & ABS_MASK;
		before += a[i] != 0;
	}
	if (len <= NM_SMALL) {
		unsigned mask = nm_mask_small(a, len, keep);
		for (size_t i = 0; i < len; i++) {
			if (mask >> i & 1u)
				after += a[i] != 0;
			else
				u[i * stride] = 0;
		}
	} else {
		uint64_t k[NM_MAX_M];
		for (size_t i = 0; i < len; i++)
			k[i] = (uint64_t)a[i] << 6 | (uint64_t)(NM_MAX_M - 1 - i);
		uint64_t t = nm_kth_largest(k, (int)len, (int)keep);
		for (size_t i = 0; i < len; i++) {
			if (((uint64_t)a[i] << 6 | (uint64_t)(NM_MAX_M - 1 - i)) >= t)
				after += a[i] != 0;
			else
				u[i * stride] = 0;
		}
	}
	*nzb += before;
	*nza += after;
}

/* NM_COLS neighbouring groups of len <= NM_SMALL rows at stride `inner`
 * (a tile of columns), keep < len: the pairwise ranks computed column-wise
 * with fixed trip counts, so gcc vectorizes every loop. */
HOT_CLONES
static void nm_cols_small(u32a *restrict u, size_t inner, size_t len, size_t keep, uint64_t *nzb,
			  uint64_t *nza)
{
	uint32_t rank[NM_SMALL][NM_COLS];
	memset(rank, 0, sizeof rank);
	for (size_t i = 0; i < len; i++) {
		for (size_t j = i + 1; j < len; j++) {
			const u32a *ri = u + i * inner, *rj = u + j * inner;
			for (size_t c = 0; c < NM_COLS; c++) {
				uint32_t b = (ri[c] & ABS_MASK) >= (rj[c] & ABS_MASK);
				rank[j][c] += b;
				rank[i][c] += 1u - b;
			}
		}
	}
	uint32_t before = 0, after = 0;
	for (size_t i = 0; i < len; i++) {
		u32a *r = u + i * inner;
		for (size_t c = 0; c < NM_COLS; c++) {
			uint32_t x = r[c], nz = (x & ABS_MASK) != 0, k = rank[i][c] < keep;
			before += nz;
			after += nz & k;
			r[c] = k ? x : 0u;
		}
	}
	*nzb += before;
	*nza += after;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HAVE_NM4_AVX2 1
/* In-lane 4x4 transpose of four 8-float vectors: lane h of v0..v3 holds
 * groups (2q + h) for q = 0..3; afterwards r_i holds element i of all eight
 * groups. Its own inverse. */
#define NM4_TRANSPOSE(v0, v1, v2, v3)                                                   \
	do {                                                                           \
		__m256 t0_ = _mm256_unpacklo_ps(v0, v1), t1_ = _mm256_unpacklo_ps(v2, v3); \
		__m256 t2_ = _mm256_unpackhi_ps(v0, v1), t3_ = _mm256_unpackhi_ps(v2, v3); \
		v0 = _mm256_shuffle_ps(t0_, t1_, 0x44);                                \
		v1 = _mm256_shuffle_ps(t0_, t1_, 0xee);                                \
		v2 = _mm256_shuffle_ps(t2_, t3_, 0x44);                                \
		v3 = _mm256_shuffle_ps(t2_, t3_, 0xee);                                \
	} while (0)

/* Contiguous groups of 4 (n:4), eight groups per iteration: transpose so
 * that each vector holds one position of eight groups, six compares give
 * every element's rank, mask, transpose back. Returns the groups done
 * (groups rounded down to a multiple of 8). */
__attribute__((target("avx2"))) static size_t nm4_avx2(float *w, size_t groups, unsigned keep,
							uint64_t *nzb, uint64_t *nza)
{
	const __m256i absm = _mm256_set1_epi32((int32_t)ABS_MASK), zero = _mm256_setzero_si256();
	const __m256i kv = _mm256_set1_epi32((int32_t)keep);
	const __m256i one = _mm256_set1_epi32(1), two = _mm256_set1_epi32(2),
		      three = _mm256_set1_epi32(3);
	__m256i zb = zero, za = zero; /* -1 per zero element, before / after */
	size_t g = 0;
	for (; g + 8 <= groups; g += 8) {
		float *p = w + 4 * g;
		__m256 v0 = _mm256_loadu_ps(p), v1 = _mm256_loadu_ps(p + 8);
		__m256 v2 = _mm256_loadu_ps(p + 16), v3 = _mm256_loadu_ps(p + 24);
		NM4_TRANSPOSE(v0, v1, v2, v3);
		__m256i a0 = _mm256_and_si256(_mm256_castps_si256(v0), absm);
		__m256i a1 = _mm256_and_si256(_mm256_castps_si256(v1), absm);
		__m256i a2 = _mm256_and_si256(_mm256_castps_si256(v2), absm);
		__m256i a3 = _mm256_and_si256(_mm256_castps_si256(v3), absm);
		/* c_ij (i < j): -1 when j beats i (strictly larger), else 0 (i beats j). */
		__m256i c01 = _mm256_cmpgt_epi32(a1, a0), c02 = _mm256_cmpgt_epi32(a2, a0);
		__m256i c03 = _mm256_cmpgt_epi32(a3, a0), c12 = _mm256_cmpgt_epi32(a2, a1);
		__m256i c13 = _mm256_cmpgt_epi32(a3, a1), c23 = _mm256_cmpgt_epi32(a3, a2);
		/* rank_i = #{j > i: c_ij} + #{j < i: !c_ji} */
		__m256i r0 = _mm256_sub_epi32(zero, _mm256_add_epi32(_mm256_add_epi32(c01, c02), c03));
		__m256i r1 = _mm256_sub_epi32(_mm256_add_epi32(one, c01), _mm256_add_epi32(c12, c13));
		__m256i r2 = _mm256_sub_epi32(_mm256_add_epi32(two, _mm256_add_epi32(c02, c12)), c23);
		__m256i r3 = _mm256_add_epi32(_mm256_add_epi32(three, c03), _mm256_add_epi32(c13, c23));
		__m256i k0 = _mm256_cmpgt_epi32(kv, r0), k1 = _mm256_cmpgt_epi32(kv, r1);
		__m256i k2 = _mm256_cmpgt_epi32(kv, r2), k3 = _mm256_cmpgt_epi32(kv, r3);
		__m256i z0 = _mm256_cmpeq_epi32(a0, zero), z1 = _mm256_cmpeq_epi32(a1, zero);
		__m256i z2 = _mm256_cmpeq_epi32(a2, zero), z3 = _mm256_cmpeq_epi32(a3, zero);
		zb = _mm256_add_epi32(zb, _mm256_add_epi32(_mm256_add_epi32(z0, z1),
							   _mm256_add_epi32(z2, z3)));
		/* after: zero unless kept and non-zero */
		__m256i n0 = _mm256_andnot_si256(z0, k0), n1 = _mm256_andnot_si256(z1, k1);
		__m256i n2 = _mm256_andnot_si256(z2, k2), n3 = _mm256_andnot_si256(z3, k3);
		za = _mm256_add_epi32(za, _mm256_add_epi32(_mm256_add_epi32(n0, n1),
							   _mm256_add_epi32(n2, n3)));
		v0 = _mm256_and_ps(v0, _mm256_castsi256_ps(k0));
		v1 = _mm256_and_ps(v1, _mm256_castsi256_ps(k1));
		v2 = _mm256_and_ps(v2, _mm256_castsi256_ps(k2));
		v3 = _mm256_and_ps(v3, _mm256_castsi256_ps(k3));
		NM4_TRANSPOSE(v0, v1, v2, v3);
		_mm256_storeu_ps(p, v0);
		_mm256_storeu_ps(p + 8, v1);
		_mm256_storeu_ps(p + 16, v2);
		_mm256_storeu_ps(p + 24, v3);
	}
	/* Lane counters gain at most 4 per iteration: they would wrap after 2^33
	 * groups in one call, far beyond a model (protobuf caps it at 2 GiB). */
	uint32_t lb[8], la[8];
	_mm256_storeu_si256((__m256i *)lb, zb);
	_mm256_storeu_si256((__m256i *)la, za);
	uint64_t zeros = 0, kept = 0;
	for (int j = 0; j < 8; j++) {
		zeros += (uint32_t)-lb[j];
		kept += (uint32_t)-la[j];
	}
	*nzb += 4 * (uint64_t)g - zeros;
	*nza += kept;
	return g;
}
#endif

/* Element work accumulated between two cancel polls. */
struct nm_tick {
	struct prog *pg;
	size_t pending;
};

static enum nn_status nm_tick(struct nm_tick *t, size_t elems, struct nn_err *e)
{
	t->pending += elems;
	if (t->pending < STEP_POLL_ELEMS)
		return NN_OK;
	size_t done = t->pending;
	t->pending = 0;
	return prog_tick(t->pg, done, e);
}

/* Groups of length m laid out consecutively (inner == 1), `groups` of them
 * from w; keep < m. */
static void nm_contiguous(float *w, size_t groups, size_t m, size_t keep, bool avx2,
			  uint64_t *nzb, uint64_t *nza)
{
	size_t g = 0;
#ifdef HAVE_NM4_AVX2
	if (avx2 && m == 4)
		g = nm4_avx2(w, groups, (unsigned)keep, nzb, nza);
#else
	(void)avx2;
#endif
	for (; g < groups; g++)
		nm_group((u32a *)(w + g * m), 1, m, keep, nzb, nza);
}

static enum nn_status nm_impl(float *w, size_t outer, size_t len, size_t inner, size_t n,
			      size_t m, struct prog *pg, uint64_t *nz_before, uint64_t *nz_after,
			      struct nn_err *e)
{
	enum nn_status st;
	uint64_t nzb = 0, nza = 0;
	struct nm_tick tk = {pg, 0};
	bool avx2 = false;
#ifdef HAVE_NM4_AVX2
	__builtin_cpu_init();
	avx2 = __builtin_cpu_supports("avx2");
#endif
	size_t full = len / m, tail = len % m, tail_keep = tail < n ? tail : n;
	if (inner == 1 && tail == 0) {
		/* The whole tensor is one run of groups: chunks of whole groups. */
		size_t groups = outer * full, per = STEP_POLL_ELEMS / m;
		for (size_t g = 0; g < groups; g += per) {
			size_t cnt = groups - g < per ? groups - g : per;
			nm_contiguous(w + g * m, cnt, m, n, avx2, &nzb, &nza);
			if ((st = prog_tick(pg, cnt * m, e)) != NN_OK)
				return st;
		}
	} else if (inner == 1) {
		for (size_t o = 0; o < outer; o++) {
			float *row = w + o * len;
			nm_contiguous(row, full, m, n, avx2, &nzb, &nza);
			if (tail > tail_keep) {
				nm_group((u32a *)(row + full * m), 1, tail, tail_keep, &nzb, &nza);
			} else { /* a tail of at most n elements stays whole: count it */
				for (size_t i = 0; i < tail; i++) {
					bool nz = (((u32a *)row)[full * m + i] & ABS_MASK) != 0;
					nzb += nz;
					nza += nz;
				}
			}
			if ((st = nm_tick(&tk, len, e)) != NN_OK)
				return st;
		}
	} else {
		/* Groups run down columns: a block of m rows at a time, in tiles of
		 * NM_COLS columns (all in cache while their ranks are counted). */
		for (size_t o = 0; o < outer; o++) {
			u32a *base = (u32a *)(w + o * len * inner);
			for (size_t r0 = 0; r0 < len; r0 += m) {
				size_t glen = len - r0 < m ? len - r0 : m;
				size_t keep = glen < m ? tail_keep : n;
				u32a *blk = base + r0 * inner;
				size_t c = 0;
				if (keep < glen && glen <= NM_SMALL) {
					for (; c + NM_COLS <= inner; c += NM_COLS)
						nm_cols_small(blk + c, inner, glen, keep, &nzb, &nza);
				}
				for (; c < inner; c++) {
					if (keep < glen) {
						nm_group(blk + c, inner, glen, keep, &nzb, &nza);
						continue;
					}
					for (size_t i = 0; i < glen; i++) {
						bool nz = (blk[c + i * inner] & ABS_MASK) != 0;
						nzb += nz;
						nza += nz;
					}
				}
				if ((st = nm_tick(&tk, glen * inner, e)) != NN_OK)
					return st;
			}
		}
	}
	if (tk.pending && (st = prog_tick(pg, tk.pending, e)) != NN_OK)
		return st;
	if (nz_before)
		*nz_before = nzb;
	if (nz_after)
		*nz_after = nza;
	return NN_OK;
}

static enum nn_status nm_check_args(size_t outer, size_t len, size_t inner, int n, int m,
				    size_t *numel, struct nn_err *e)
{
	if (!(n >= 1 && n < m && m <= NM_MAX_M))
		return err_set(e, NN_EINVAL, "invalid_argument", "",
			       "N:M needs 1 <= n < m <= %d, got %d:%d", NM_MAX_M, n, m);
	size_t x;
	if (__builtin_mul_overflow(outer, len, &x) || __builtin_mul_overflow(x, inner, numel))
		return err_set(e, NN_EINVAL, "invalid_argument", "",
			       "N:M view [%zu, %zu, %zu] overflows", outer, len, inner);
	return NN_OK;
}

enum nn_status prune_nm(float *w, size_t outer, size_t len, size_t inner, int n, int m,
			const struct step_ctx *ctx, uint64_t *nz_before, uint64_t *nz_after,
			struct nn_err *e)
{
	size_t numel = 0;
	enum nn_status st = nm_check_args(outer, len, inner, n, m, &numel, e);
	if (st != NN_OK)
		return st;
	struct prog pg = {ctx, 0, (double)numel};
	return nm_impl(w, outer, len, inner, (size_t)n, (size_t)m, &pg, nz_before, nz_after, e);
}

enum nn_status prune_nm_layout(const struct onnx_weight_ref *r, const struct tensor *w,
			       size_t *outer, size_t *len, size_t *inner, int *axis,
			       struct nn_err *e)
{
	const char *op = r->node && r->node->op_type ? r->node->op_type : "";
	const char *name = r->init && r->init->name ? r->init->name : "";
	int nd = w->ndim;
	size_t d[TENSOR_MAX_DIMS];
	for (int i = 0; i < nd; i++) {
		if (w->shape[i] < 0)
			goto bad;
		d[i] = (size_t)w->shape[i];
	}
	size_t lead = 1;
	/* Subproducts of a valid shape can still overflow when another dim is 0. */
	if (!strcmp(op, "Gemm") && nd == 2) {
		bool trans_b = onnx_node_int_attr(r->node, "transB", 0) != 0;
		*axis = trans_b ? 1 : 0;
		*outer = trans_b ? d[0] : 1;
		*len = trans_b ? d[1] : d[0];
		*inner = trans_b ? 1 : d[1];
		return NN_OK;
	}
	if (!strcmp(op, "MatMul") && nd >= 2 &&
	    (r->channel_axis == nd - 1 || r->channel_axis == nd - 2)) {
		for (int i = 0; i < nd - 2; i++)
			if (__builtin_mul_overflow(lead, d[i], &lead))
				goto bad;
		if (r->channel_axis == nd - 1) { /* B [.., K, N]: K is axis nd-2 */
			*axis = nd - 2;
			*outer = lead;
			*len = d[nd - 2];
			*inner = d[nd - 1];
		} else { /* A [.., M, K]: K is the last axis */
			*axis = nd - 1;
			if (__builtin_mul_overflow(lead, d[nd - 2], outer))
				goto bad;
			*len = d[nd - 1];
			*inner = 1;
		}
		return NN_OK;
	}
	if (!strcmp(op, "Conv") && nd >= 3) {
		for (int i = 1; i < nd; i++)
			if (__builtin_mul_overflow(lead, d[i], &lead))
				goto bad;
		*axis = 1;
		*outer = d[0];
		*len = lead;
		*inner = 1;
		return NN_OK;
	}
bad:
	return err_set(e, NN_EINVAL, "invalid_model", "",
		       "weight '%s' (rank %d) does not fit its %s node for N:M pruning", name, nd,
		       op);
}

/* ---- spec parameters ---- */

static enum nn_status parse_fraction(const json_t *step, size_t index, const char *key,
				     double lo, bool lo_open, double *out, struct nn_err *e)
{
	char field[128], got[96];
	snprintf(field, sizeof field, "steps[%zu].%s", index, key);
	const json_t *v = json_object_get(step, key);
	double x = json_is_number(v) ? json_number_value(v) : NAN;
	if (!(lo_open ? x > lo : x >= lo) || !(x < 1))
		return err_set(e, NN_EINVAL, "invalid_spec", field, "%s must be a number in %s%g, 1), got %s",
			       key, lo_open ? "(" : "[", lo, step_describe_json(v, got, sizeof got));
	*out = x;
	return NN_OK;
}

static enum nn_status parse_int(const json_t *step, size_t index, const char *key, int lo, int hi,
				int fallback, int *out, struct nn_err *e)
{
	char field[128], got[96];
	const json_t *v = json_object_get(step, key);
	if (!v) {
		*out = fallback;
		return NN_OK;
	}
	snprintf(field, sizeof field, "steps[%zu].%s", index, key);
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "%s must be an integer in [%d, %d], got %s", key, lo, hi,
			       step_describe_json(v, got, sizeof got));
	*out = (int)json_integer_value(v);
	return NN_OK;
}

static enum nn_status parse_bool(const json_t *step, size_t index, const char *key, bool *out,
				 struct nn_err *e)
{
	char field[128], got[96];
	const json_t *v = json_object_get(step, key);
	if (!v) {
		*out = false;
		return NN_OK;
	}
	snprintf(field, sizeof field, "steps[%zu].%s", index, key);
	if (!json_is_boolean(v))
		return err_set(e, NN_EINVAL, "invalid_spec", field, "%s must be true or false, got %s",
			       key, step_describe_json(v, got, sizeof got));
	*out = json_is_true(v);
	return NN_OK;
}

/* "layers": {"<initializer>": fraction}, each in [0, 1) (0 leaves the layer
 * alone). */
static enum nn_status parse_layers(const json_t *step, size_t index, const json_t **out,
				   struct nn_err *e)
{
	char field[192], got[96];
	const json_t *v = json_object_get(step, "layers");
	*out = NULL;
	if (!v)
		return NN_OK;
	snprintf(field, sizeof field, "steps[%zu].layers", index);
	if (!json_is_object(v) || json_object_size(v) == 0)
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "layers must be a non-empty object {\"<weight name>\": fraction}, got %s",
			       step_describe_json(v, got, sizeof got));
	const char *name;
	json_t *x;
	json_object_foreach((json_t *)v, name, x) {
		double f = json_is_number(x) ? json_number_value(x) : NAN;
		if (!(f >= 0 && f < 1)) {
			snprintf(field, sizeof field, "steps[%zu].layers.%.100s", index, name);
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "a layer's fraction must be a number in [0, 1), got %s",
				       step_describe_json(x, got, sizeof got));
		}
	}
	*out = v;
	return NN_OK;
}

enum nn_status prune_params_parse(const json_t *step, size_t index, struct prune_params *out,
				  struct nn_err *e)
{
	static const char *const methods[] = {"magnitude", "nm", "structured", "dead", NULL};
	/* Keys per method, in the order of enum prune_method. */
	static const char *const keys[][9] = {
		{"op", "method", "sparsity", "scope", "layers", "keep_first_last", "reconstruct",
		 "dataset", NULL},
		{"op", "method", "n", "m", "keep_first_last", "reconstruct", "dataset", NULL},
		{"op", "method", "ratio", "scope", "criterion", "layers", "keep_first_last", NULL},
		{"op", "method", "dataset", "threshold", NULL},
	};
	static const char *const scopes[] = {"layer", "global", NULL};
	static const char *const criteria[] = {"l1", "l2", NULL};
	char field[128], got[96];
	int method = 0, scope = 0, criterion = 0;
	memset(out, 0, sizeof *out);
	enum nn_status st;
	if (!json_is_object(step))
		return step_check_keys(step, index, "prune", keys[0], e);
	if ((st = step_parse_choice(step, index, "method", methods, 0, &method, e)) != NN_OK)
		return st;
	if ((st = step_check_keys(step, index, methods[method], keys[method], e)) != NN_OK) {
		snprintf(e->message + strlen(e->message), sizeof e->message - strlen(e->message),
			 " (method %s)", methods[method]);
		return st;
	}
	out->method = (enum prune_method)method;
	out->index = index;
	if ((st = parse_bool(step, index, "keep_first_last", &out->keep_first_last, e)) != NN_OK ||
	    (st = parse_bool(step, index, "reconstruct", &out->reconstruct, e)) != NN_OK ||
	    (st = parse_layers(step, index, &out->layers, e)) != NN_OK)
		return st;
	const json_t *ds = json_object_get(step, "dataset");
	if (ds) {
		struct spec_dataset d;
		snprintf(field, sizeof field, "steps[%zu].dataset", index);
		if ((st = spec_parse_dataset(ds, field, &d, e)) != NN_OK)
			return st;
		out->has_dataset = true;
	}
	if (ds && (out->method == PRUNE_MAGNITUDE || out->method == PRUNE_NM) && !out->reconstruct) {
		snprintf(field, sizeof field, "steps[%zu].dataset", index);
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "method %s uses a dataset only with \"reconstruct\": true",
			       methods[method]);
	}
	switch (out->method) {
	case PRUNE_MAGNITUDE:
		if (!json_object_get(step, "sparsity") && !out->layers) {
			snprintf(field, sizeof field, "steps[%zu].sparsity", index);
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "missing required field 'sparsity' (a number in [0, 1))");
		}
		if (json_object_get(step, "sparsity") &&
		    (st = parse_fraction(step, index, "sparsity", 0, false, &out->sparsity, e)) != NN_OK)
			return st;
		if ((st = step_parse_choice(step, index, "scope", scopes, 1, &scope, e)) != NN_OK)
			return st;
		out->scope = scope == 0 ? PRUNE_SCOPE_LAYER : PRUNE_SCOPE_GLOBAL;
		return NN_OK;
	case PRUNE_NM:
		if ((st = parse_int(step, index, "m", 2, 64, 4, &out->m, e)) != NN_OK ||
		    (st = parse_int(step, index, "n", 1, 63, 2, &out->n, e)) != NN_OK)
			return st;
		if (out->n >= out->m) {
			snprintf(field, sizeof field, "steps[%zu].n", index);
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "n must be smaller than m (at most n non-zeros in each group "
				       "of m), got %d:%d",
				       out->n, out->m);
		}
		return NN_OK;
	case PRUNE_STRUCTURED:
		if (!json_object_get(step, "ratio") && !out->layers) {
			snprintf(field, sizeof field, "steps[%zu].ratio", index);
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "missing required field 'ratio' (fraction of neurons/channels "
				       "to remove, in (0, 1))");
		}
		if (json_object_get(step, "ratio") &&
		    (st = parse_fraction(step, index, "ratio", 0, true, &out->ratio, e)) != NN_OK)
			return st;
		if ((st = step_parse_choice(step, index, "scope", scopes, 0, &scope, e)) != NN_OK ||
		    (st = step_parse_choice(step, index, "criterion", criteria, 0, &criterion, e)) !=
			    NN_OK)
			return st;
		out->scope = scope == 0 ? PRUNE_SCOPE_LAYER : PRUNE_SCOPE_GLOBAL;
		out->criterion = criterion == 0 ? PRUNE_L1 : PRUNE_L2;
		return NN_OK;
	case PRUNE_DEAD: {
		const json_t *t = json_object_get(step, "threshold");
		snprintf(field, sizeof field, "steps[%zu].threshold", index);
		out->threshold = 0;
		if (t) {
			double x = json_is_number(t) ? json_number_value(t) : NAN;
			if (!(x >= 0 && isfinite(x)))
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "threshold must be a number >= 0, got %s",
					       step_describe_json(t, got, sizeof got));
			out->threshold = x;
		}
		return NN_OK;
	}
	}
	return NN_OK;
}

/* ---- the step ---- */

/* Element count from an initializer's dims; -1 on negative dims or overflow. */
static int64_t init_numel(const Onnx__TensorProto *t)
{
	int64_t n = 1;
	for (size_t d = 0; d < t->n_dims; d++) {
		if (t->dims[d] < 0 || __builtin_mul_overflow(n, t->dims[d], &n))
			return -1;
	}
	return n;
}

/* Non-zeros of any initializer, for the whole-model figures. Float weights are
 * compared by value (-0 is zero); other dtypes element by element from
 * raw_data or their typed field; strings count as non-zero. */
static uint64_t init_nonzeros(const Onnx__TensorProto *t, uint64_t numel)
{
	uint64_t nz = 0;
	if (t->data_type == DT_FLOAT) {
		struct tensor v;
		if (onnx_initializer_view(t, &v, NULL) != NN_OK)
			return numel;
		int64_t n = tensor_numel(&v);
		nz = n > 0 ? count_nonzero(v.data, (size_t)n) : 0;
		tensor_free(&v);
		return nz;
	}
	size_t es = dtype_size((enum dtype)t->data_type);
	if (t->has_raw_data && t->raw_data.len > 0 && es > 0) {
		size_t n = t->raw_data.len / es;
		for (size_t i = 0; i < n; i++) {
			const uint8_t *p = t->raw_data.data + i * es;
			size_t b = 0;
			while (b < es && p[b] == 0)
				b++;
			nz += b < es;
		}
		return nz;
	}
	for (size_t i = 0; i < t->n_int32_data; i++)
		nz += t->int32_data[i] != 0;
	for (size_t i = 0; i < t->n_int64_data; i++)
		nz += t->int64_data[i] != 0;
	for (size_t i = 0; i < t->n_uint64_data; i++)
		nz += t->uint64_data[i] != 0;
	for (size_t i = 0; i < t->n_double_data; i++)
		nz += t->double_data[i] != 0;
	for (size_t i = 0; i < t->n_float_data; i++)
		nz += t->float_data[i] != 0;
	nz += t->n_string_data;
	return nz;
}

/* The DequantizeLinear node that reads t as its quantized input and has a
 * zero-point initializer of t's byte-sized dtype, or NULL. */
static const Onnx__NodeProto *dq_consumer(const Onnx__GraphProto *g, const Onnx__TensorProto *t,
					  const Onnx__TensorProto **zp)
{
	if (t->data_type != DT_INT8 && t->data_type != DT_UINT8)
		return NULL;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (strcmp(n->op_type, "DequantizeLinear") || (n->domain && *n->domain) ||
		    n->n_input < 3 || strcmp(n->input[0], t->name))
			continue;
		for (size_t j = 0; j < g->n_initializer; j++) {
			const Onnx__TensorProto *z = g->initializer[j];
			if (!strcmp(z->name, n->input[2]) && z->data_type == t->data_type &&
			    z->has_raw_data) {
				*zp = z;
				return n;
			}
		}
	}
	return NULL;
}

/* Elements of a DequantizeLinear input that differ from their zero point
 * (a weight pruned to 0 is stored as the zero point); `numel` when the layout
 * is not one this module writes (per-tensor or per-axis raw data). */
static uint64_t dq_nonzeros(const Onnx__TensorProto *t, const Onnx__NodeProto *dq,
			    const Onnx__TensorProto *zp, uint64_t numel)
{
	if (!t->has_raw_data || t->raw_data.len != numel || zp->raw_data.len == 0)
		return numel;
	uint64_t channels = zp->raw_data.len, inner = 1;
	if (channels > 1) {
		int64_t axis = onnx_node_int_attr(dq, "axis", 1);
		if (axis < 0)
			axis += (int64_t)t->n_dims;
		if (axis < 0 || axis >= (int64_t)t->n_dims || (uint64_t)t->dims[axis] != channels ||
		    onnx_find_attr(dq, "block_size", NULL))
			return numel;
		for (size_t d = (size_t)axis + 1; d < t->n_dims; d++)
			inner *= (uint64_t)t->dims[d];
	}
	uint64_t nz = 0;
	for (uint64_t i = 0; i < numel; i++)
		nz += t->raw_data.data[i] != zp->raw_data.data[channels > 1 ? (i / inner) % channels : 0];
	return nz;
}

void prune_model_counts(const struct onnx_model *m, uint64_t *parameters, uint64_t *nonzeros)
{
	*parameters = *nonzeros = 0;
	const Onnx__GraphProto *g = m && m->proto ? m->proto->graph : NULL;
	for (size_t i = 0; g && i < g->n_initializer; i++) {
		const Onnx__TensorProto *t = g->initializer[i], *zp = NULL;
		int64_t n = init_numel(t);
		if (n < 0)
			continue;
		*parameters += (uint64_t)n;
		const Onnx__NodeProto *dq = dq_consumer(g, t, &zp);
		*nonzeros += dq ? dq_nonzeros(t, dq, zp, (uint64_t)n) : init_nonzeros(t, (uint64_t)n);
	}
}

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

static double ratio(uint64_t num, uint64_t den)
{
	return den ? (double)num / (double)den : 0.0;
}

/* k = round(sparsity * n), never above n. */
static uint64_t rank_for(double sparsity, uint64_t n)
{
	double k = floor(sparsity * (double)n + 0.5);
	if (k <= 0)
		return 0;
	if (k >= (double)n)
		return n;
	return (uint64_t)k;
}

/* ---- the step's weights and metrics (every method) ---- */

/* The prunable weights of a model as writable float arrays, graph order. */
struct wset {
	struct onnx_weight_ref *refs;
	size_t n;
	struct tensor *views;
	float **arrays;
	size_t *lens;
	uint64_t *nz_before, *nz_after;
	const char **names;
	uint64_t total;
};

static void wset_free(struct wset *w)
{
	if (w->views) {
		for (size_t i = 0; i < w->n; i++)
			tensor_free(&w->views[i]);
	}
	free(w->views);
	free(w->arrays);
	free(w->lens);
	free(w->nz_before);
	free(w->nz_after);
	free(w->names);
	free(w->refs);
	memset(w, 0, sizeof *w);
}

static enum nn_status wset_load(struct onnx_model *m, struct wset *w, struct nn_err *e)
{
	enum nn_status st;
	memset(w, 0, sizeof *w);
	if ((st = onnx_prunable_weights(m, &w->refs, &w->n, e)) != NN_OK)
		return st;
	if (w->n == 0)
		return err_set(e, NN_EINVAL, "invalid_spec", "",
			       "model has no Gemm/MatMul/Conv float weights to prune");
	w->views = calloc(w->n, sizeof *w->views);
	w->arrays = calloc(w->n, sizeof *w->arrays);
	w->lens = calloc(w->n, sizeof *w->lens);
	w->nz_before = calloc(w->n, sizeof *w->nz_before);
	w->nz_after = calloc(w->n, sizeof *w->nz_after);
	w->names = calloc(w->n, sizeof *w->names);
	if (!w->views || !w->arrays || !w->lens || !w->nz_before || !w->nz_after || !w->names)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for %zu weights", w->n);
	for (size_t i = 0; i < w->n; i++) {
		w->names[i] = w->refs[i].init->name ? w->refs[i].init->name : "";
		if ((st = onnx_initializer_view(w->refs[i].init, &w->views[i], e)) != NN_OK) {
			err_prefix(e, "weight '%s'", w->names[i]);
			return st;
		}
		int64_t n = tensor_numel(&w->views[i]);
		if (n < 0)
			return err_set(e, NN_EINVAL, "invalid_model", "",
				       "weight '%s' has an invalid shape", w->names[i]);
		w->arrays[i] = w->views[i].data;
		w->lens[i] = (size_t)n;
		w->total += (uint64_t)n;
	}
	return NN_OK;
}

/* A view that had to copy (unaligned storage) is written back. */
static enum nn_status wset_store(struct wset *w, struct nn_err *e)
{
	enum nn_status st;
	for (size_t i = 0; i < w->n; i++) {
		if (w->views[i].owned &&
		    (st = onnx_initializer_set(w->refs[i].init, &w->views[i], e)) != NN_OK)
			return st;
	}
	return NN_OK;
}

/* The per-layer object every method reports; NULL when out of memory. */
static json_t *layer_json(const struct wset *w, size_t i)
{
	json_t *l = json_object();
	if (!l)
		return NULL;
	const struct onnx_weight_ref *r = &w->refs[i];
	const char *node = r->node && r->node->name ? r->node->name : "";
	const char *op = r->node && r->node->op_type ? r->node->op_type : "";
	int bad = 0;
	bad |= step_json_set(l, "name", json_string(w->names[i]));
	bad |= step_json_set(l, "op", json_string(op));
	bad |= step_json_set(l, "node", json_string(node));
	bad |= step_json_set(l, "shape", shape_json(&w->views[i]));
	bad |= step_json_set(l, "parameters", json_integer((json_int_t)w->lens[i]));
	bad |= step_json_set(l, "nonzeros", json_integer((json_int_t)w->nz_after[i]));
	bad |= step_json_set(l, "sparsity", json_real(1.0 - ratio(w->nz_after[i], w->lens[i])));
	if (bad) {
		json_decref(l);
		return NULL;
	}
	return l;
}

/* Totals over the prunable weights and the whole model, and the sizes;
 * nonzero when out of memory. */
static int totals_json(json_t *out, const struct onnx_model *m, const struct wset *w,
		       size_t bytes_before)
{
	uint64_t nz = 0, nz_before = 0;
	for (size_t i = 0; i < w->n; i++) {
		nz += w->nz_after[i];
		nz_before += w->nz_before[i];
	}
	uint64_t model_params = 0, model_nz = 0;
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; g && i < g->n_initializer; i++) {
		int64_t n = init_numel(g->initializer[i]);
		if (n < 0)
			continue;
		model_params += (uint64_t)n;
		/* pruned weights' counts are known already: do not read them again */
		size_t r = 0;
		while (r < w->n && w->refs[r].init != g->initializer[i])
			r++;
		model_nz += r < w->n ? w->nz_after[r] : init_nonzeros(g->initializer[i], (uint64_t)n);
	}
	int bad = 0;
	bad |= step_json_set(out, "parameters", json_integer((json_int_t)w->total));
	bad |= step_json_set(out, "nonzeros_before", json_integer((json_int_t)nz_before));
	bad |= step_json_set(out, "nonzeros", json_integer((json_int_t)nz));
	bad |= step_json_set(out, "sparsity", json_real(1.0 - ratio(nz, w->total)));
	bad |= step_json_set(out, "model_parameters", json_integer((json_int_t)model_params));
	bad |= step_json_set(out, "model_nonzeros", json_integer((json_int_t)model_nz));
	bad |= step_json_set(out, "bytes_before", json_integer((json_int_t)bytes_before));
	bad |= step_json_set(out, "bytes_after", json_integer((json_int_t)onnx_packed_size(m)));
	return bad;
}

/* keep_first_last: the first and the last prunable weight stay dense. */
static bool kept_dense(const struct prune_params *p, size_t i, size_t n)
{
	return p->keep_first_last && (i == 0 || i + 1 == n);
}

/* "a, b, c" of at most cap bytes, "..." when cut. */
static void join_names(const char *const *names, size_t n, char *buf, size_t cap)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(names[i]) + (i ? 2 : 0);
		if (used + len + 4 >= cap) {
			snprintf(buf + used, cap - used, "%s...", i ? ", " : "");
			return;
		}
		used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", names[i]);
	}
}

/* p->layers against the model's prunable names (graph order). */
static enum nn_status check_layer_names(const struct prune_params *p, const char *const *names,
					size_t n, struct nn_err *e)
{
	char field[192], list[320];
	const char *key;
	json_t *v;
	if (!p->layers)
		return NN_OK;
	json_object_foreach((json_t *)p->layers, key, v) {
		size_t i = 0;
		while (i < n && strcmp(names[i], key))
			i++;
		snprintf(field, sizeof field, "steps[%zu].layers.%.100s", p->index, key);
		if (i == n) {
			join_names(names, n, list, sizeof list);
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "'%.100s' is not a prunable weight of this model (a float "
				       "initializer a Gemm, MatMul or Conv consumes); prunable: %s",
				       key, list);
		}
		if (p->method == PRUNE_MAGNITUDE && kept_dense(p, i, n))
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "keep_first_last leaves '%.100s' (the %s prunable weight) "
				       "dense: drop it from layers or set keep_first_last to false",
				       key, i == 0 ? "first" : "last");
	}
	return NN_OK;
}

enum nn_status prune_check_layers(const struct prune_params *p, const json_t *summary,
				  struct nn_err *e)
{
	const json_t *list = json_object_get(summary, "prunable");
	size_t n = json_array_size(list);
	if (!p->layers || n == 0)
		return NN_OK;
	const char **names = calloc(n, sizeof *names);
	if (!names)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for %zu names", n);
	for (size_t i = 0; i < n; i++) {
		const char *s = json_string_value(json_object_get(json_array_get(list, i), "name"));
		names[i] = s ? s : "";
	}
	enum nn_status st = check_layer_names(p, names, n, e);
	free(names);
	return st;
}

/* ---- magnitude ---- */

enum mag_rule {
	RULE_SCOPE,    /* pruned by scope/sparsity */
	RULE_OVERRIDE, /* "layers" gives its own fraction */
	RULE_DENSE,    /* keep_first_last */
};

/* ---- reconstruction (magnitude and N:M) ---- */

/* The prunable weights' values before pruning, one array in wset order. */
static enum nn_status originals_copy(const struct wset *w, float **out, struct nn_err *e)
{
	size_t bytes;
	if (__builtin_mul_overflow((size_t)w->total, sizeof(float), &bytes) ||
	    !(*out = malloc(bytes ? bytes : 1)))
		return err_set(e, NN_ENOMEM, "out_of_memory", "",
			       "no memory to keep %llu weights for reconstruction",
			       (unsigned long long)w->total);
	size_t at = 0;
	for (size_t i = 0; i < w->n; i++) {
		memcpy(*out + at, w->arrays[i], w->lens[i] * sizeof(float));
		at += w->lens[i];
	}
	return NN_OK;
}

/* Re-fits the kept weights of every pruned (not kept-dense) layer and adds
 * the report as metrics["reconstruction"]. */
static enum nn_status reconstruct(struct onnx_model *m, const struct prune_params *p,
				  const struct wset *w, const float *orig,
				  const struct step_ctx *ctx, json_t *metrics, struct nn_err *e)
{
	struct recon_weight *rw = calloc(w->n ? w->n : 1, sizeof *rw);
	if (!rw)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for %zu weights", w->n);
	size_t n = 0, at = 0;
	for (size_t i = 0; i < w->n; at += w->lens[i], i++) {
		if (kept_dense(p, i, w->n))
			continue;
		rw[n].init = w->refs[i].init;
		rw[n].node = w->refs[i].node;
		rw[n++].original = orig + at;
	}
	json_t *r = NULL;
	enum nn_status st = recon_run(m, rw, n, ctx, &r, e);
	free(rw);
	if (st == NN_OK && step_json_set(metrics, "reconstruction", r))
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for prune metrics");
	return st;
}

static enum nn_status magnitude_run(struct onnx_model *m, const struct prune_params *p,
				    const struct step_ctx *ctx, json_t **metrics, struct nn_err *e)
{
	enum nn_status st = NN_OK;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct wset w;
	enum mag_rule *rule = NULL;
	double *target = NULL;
	float *thresholds = NULL, **rest = NULL, *orig = NULL;
	size_t *rest_lens = NULL, *rest_idx = NULL;
	uint64_t *rest_nzb = NULL, *rest_nza = NULL;
	json_t *out = NULL, *layers = NULL;

	if (!(p->sparsity >= 0 && p->sparsity < 1) ||
	    (p->scope != PRUNE_SCOPE_GLOBAL && p->scope != PRUNE_SCOPE_LAYER))
		return err_set(e, NN_EINVAL, "invalid_spec", "",
			       "sparsity must be a number in [0, 1), got %g", p->sparsity);
	size_t bytes_before = onnx_packed_size(m);
	if ((st = wset_load(m, &w, e)) != NN_OK)
		goto fail;
	if ((st = check_layer_names(p, w.names, w.n, e)) != NN_OK)
		goto fail;
	if (p->reconstruct && (st = originals_copy(&w, &orig, e)) != NN_OK)
		goto fail;
	size_t n = w.n;
	rule = calloc(n, sizeof *rule);
	target = calloc(n, sizeof *target);
	thresholds = calloc(n, sizeof *thresholds);
	rest = calloc(n, sizeof *rest);
	rest_lens = calloc(n, sizeof *rest_lens);
	rest_idx = calloc(n, sizeof *rest_idx);
	rest_nzb = calloc(n, sizeof *rest_nzb);
	rest_nza = calloc(n, sizeof *rest_nza);
	if (!rule || !target || !thresholds || !rest || !rest_lens || !rest_idx || !rest_nzb ||
	    !rest_nza) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for %zu weights", n);
		goto fail;
	}
	size_t n_rest = 0;
	uint64_t rest_total = 0;
	for (size_t i = 0; i < n; i++) {
		const json_t *o = p->layers ? json_object_get(p->layers, w.names[i]) : NULL;
		if (kept_dense(p, i, n)) {
			rule[i] = RULE_DENSE;
		} else if (o) {
			rule[i] = RULE_OVERRIDE;
			target[i] = json_number_value(o);
		} else {
			rule[i] = RULE_SCOPE;
			target[i] = p->sparsity;
			rest[n_rest] = w.arrays[i];
			rest_lens[n_rest] = w.lens[i];
			rest_idx[n_rest++] = i;
			rest_total += w.lens[i];
		}
	}

	struct prog pg = {ctx, 0, 3.0 * (double)w.total};
	float global_t = 0;
	if (p->scope == PRUNE_SCOPE_GLOBAL && n_rest > 0) {
		/* One threshold over the weights no override or keep_first_last
		 * claims: k counted on those alone. */
		st = prune_arrays_impl(rest, rest_lens, n_rest, rank_for(p->sparsity, rest_total),
				       &pg, &global_t, rest_nzb, rest_nza, e);
		for (size_t r = 0; st == NN_OK && r < n_rest; r++) {
			size_t i = rest_idx[r];
			thresholds[i] = global_t;
			w.nz_before[i] = rest_nzb[r];
			w.nz_after[i] = rest_nza[r];
		}
	}
	for (size_t i = 0; i < n && st == NN_OK; i++) {
		if (rule[i] == RULE_DENSE) {
			w.nz_before[i] = w.nz_after[i] = count_nonzero(w.arrays[i], w.lens[i]);
			st = prog_tick(&pg, 3 * w.lens[i], e);
		} else if (rule[i] == RULE_OVERRIDE || p->scope == PRUNE_SCOPE_LAYER) {
			st = prune_arrays_impl(&w.arrays[i], &w.lens[i], 1,
					       rank_for(target[i], w.lens[i]), &pg, &thresholds[i],
					       &w.nz_before[i], &w.nz_after[i], e);
			if (st == NN_OK && step_canceled(ctx))
				st = err_set(e, NN_ECANCELED, "canceled", "", "canceled while pruning");
		}
	}
	if (st != NN_OK || (st = wset_store(&w, e)) != NN_OK)
		goto fail;

	static const char *const rule_names[] = {"", "override", "dense"};
	out = json_object();
	layers = json_array();
	int bad = !out || !layers;
	for (size_t i = 0; !bad && i < n; i++) {
		json_t *l = layer_json(&w, i);
		bad |= !l || json_array_append_new(layers, l);
		if (bad)
			break;
		const char *rn = rule[i] == RULE_SCOPE
					 ? (p->scope == PRUNE_SCOPE_GLOBAL ? "global" : "layer")
					 : rule_names[rule[i]];
		bad |= step_json_set(l, "rule", json_string(rn));
		bad |= step_json_set(l, "sparsity_target", json_real(target[i]));
		bad |= step_json_set(l, "threshold", rule[i] == RULE_DENSE
							     ? json_null()
							     : step_json_real(thresholds[i]));
	}
	bad |= step_json_set(out, "method", json_string("magnitude"));
	bad |= step_json_set(out, "scope",
			     json_string(p->scope == PRUNE_SCOPE_GLOBAL ? "global" : "layer"));
	bad |= step_json_set(out, "sparsity_target", json_real(p->sparsity));
	bad |= step_json_set(out, "keep_first_last", json_boolean(p->keep_first_last));
	bad |= step_json_set(out, "threshold", p->scope == PRUNE_SCOPE_GLOBAL && n_rest > 0
							? step_json_real(global_t)
							: json_null());
	bad |= totals_json(out, m, &w, bytes_before);
	bad |= step_json_set(out, "layers", layers);
	layers = NULL; /* owned by out now (or already freed by a failed set) */
	if (bad) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for prune metrics");
		goto fail;
	}
	if (p->reconstruct && (st = reconstruct(m, p, &w, orig, ctx, out, e)) != NN_OK)
		goto fail;
	if (step_json_set(out, "seconds", json_real(step_seconds_since(&t0)))) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for prune metrics");
		goto fail;
	}
	step_progress(ctx, 1.0);
	*metrics = out;
	out = NULL;
fail:
	json_decref(layers);
	json_decref(out);
	wset_free(&w);
	free(rule);
	free(target);
	free(thresholds);
	free(rest);
	free(rest_lens);
	free(rest_idx);
	free(rest_nzb);
	free(rest_nza);
	free(orig);
	return st;
}

/* ---- N:M ---- */

static enum nn_status nm_run(struct onnx_model *m, const struct prune_params *p,
			     const struct step_ctx *ctx, json_t **metrics, struct nn_err *e)
{
	enum nn_status st = NN_OK;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct wset w;
	size_t (*dims)[3] = NULL; /* outer, len, inner per weight */
	int *axes = NULL;
	float *orig = NULL;
	json_t *out = NULL, *layers = NULL;
	if (!(p->n >= 1 && p->n < p->m && p->m <= NM_MAX_M))
		return err_set(e, NN_EINVAL, "invalid_spec", "",
			       "N:M needs 1 <= n < m <= %d, got %d:%d", NM_MAX_M, p->n, p->m);
	size_t bytes_before = onnx_packed_size(m);
	if ((st = wset_load(m, &w, e)) != NN_OK)
		goto fail;
	dims = calloc(w.n, sizeof *dims);
	axes = calloc(w.n, sizeof *axes);
	if (!dims || !axes) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for %zu weights", w.n);
		goto fail;
	}
	for (size_t i = 0; i < w.n; i++) {
		if ((st = prune_nm_layout(&w.refs[i], &w.views[i], &dims[i][0], &dims[i][1],
					  &dims[i][2], &axes[i], e)) != NN_OK)
			goto fail;
	}
	if (p->reconstruct && (st = originals_copy(&w, &orig, e)) != NN_OK)
		goto fail;
	struct prog pg = {ctx, 0, (double)w.total};
	uint64_t groups_total = 0;
	for (size_t i = 0; i < w.n; i++) {
		if (kept_dense(p, i, w.n)) {
			w.nz_before[i] = w.nz_after[i] = count_nonzero(w.arrays[i], w.lens[i]);
			st = prog_tick(&pg, w.lens[i], e);
		} else {
			st = nm_impl(w.arrays[i], dims[i][0], dims[i][1], dims[i][2], (size_t)p->n,
				     (size_t)p->m, &pg, &w.nz_before[i], &w.nz_after[i], e);
		}
		if (st != NN_OK)
			goto fail;
	}
	if ((st = wset_store(&w, e)) != NN_OK)
		goto fail;

	out = json_object();
	layers = json_array();
	int bad = !out || !layers;
	for (size_t i = 0; !bad && i < w.n; i++) {
		json_t *l = layer_json(&w, i);
		bad |= !l || json_array_append_new(layers, l);
		if (bad)
			break;
		size_t len = dims[i][1], mm = (size_t)p->m;
		uint64_t groups = (uint64_t)dims[i][0] * dims[i][2] * ((len + mm - 1) / mm);
		bool dense = kept_dense(p, i, w.n);
		groups_total += dense ? 0 : groups;
		bad |= step_json_set(l, "rule", json_string(dense ? "dense" : "nm"));
		bad |= step_json_set(l, "axis", json_integer(axes[i]));
		bad |= step_json_set(l, "group_length", json_integer((json_int_t)len));
		bad |= step_json_set(l, "groups", json_integer(dense ? 0 : (json_int_t)groups));
		bad |= step_json_set(l, "tail", json_integer((json_int_t)(len % mm)));
	}
	char pattern[16];
	snprintf(pattern, sizeof pattern, "%d:%d", p->n, p->m);
	bad |= step_json_set(out, "method", json_string("nm"));
	bad |= step_json_set(out, "n", json_integer(p->n));
	bad |= step_json_set(out, "m", json_integer(p->m));
	bad |= step_json_set(out, "pattern", json_string(pattern));
	bad |= step_json_set(out, "keep_first_last", json_boolean(p->keep_first_last));
	bad |= step_json_set(out, "groups", json_integer((json_int_t)groups_total));
	bad |= totals_json(out, m, &w, bytes_before);
	bad |= step_json_set(out, "layers", layers);
	layers = NULL;
	if (bad) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for prune metrics");
		goto fail;
	}
	if (p->reconstruct && (st = reconstruct(m, p, &w, orig, ctx, out, e)) != NN_OK)
		goto fail;
	if (step_json_set(out, "seconds", json_real(step_seconds_since(&t0)))) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for prune metrics");
		goto fail;
	}
	step_progress(ctx, 1.0);
	*metrics = out;
	out = NULL;
fail:
	json_decref(layers);
	json_decref(out);
	wset_free(&w);
	free(dims);
	free(axes);
	free(orig);
	return st;
}

enum nn_status prune_run(struct onnx_model *m, const struct prune_params *p,
			 const struct step_ctx *ctx, json_t **metrics, struct nn_err *e)
{
	*metrics = NULL;
	if (p->method == PRUNE_NM)
		return nm_run(m, p, ctx, metrics, e);
	if (p->method == PRUNE_STRUCTURED)
		return structured_run(m, p, ctx, metrics, e);
	if (p->method == PRUNE_DEAD)
		return dead_run(m, p, ctx, metrics, e);
	if (p->method != PRUNE_MAGNITUDE) /* every parsed method is dispatched above */
		return err_set(e, NN_EINTERNAL, "internal", "", "prune_run: unknown method %d",
			       (int)p->method);
	return magnitude_run(m, p, ctx, metrics, e);
}
