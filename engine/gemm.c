/* gemm: packed-weight float32 GEMM for small M (see gemm.h). */
#include "gemm.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define GEMM_X86 1
#endif

#define GEMM_MR 8 /* rows of C per micro-tile: 8 x 32 = 16 zmm accumulators */

bool gemm_fast_available(void)
{
#ifdef GEMM_X86
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f");
#else
	return false;
#endif
}

enum nn_status gemm_pack(struct gemm_packed *p, const float *b, int64_t k, int64_t n,
			 bool trans_b, struct nn_err *e)
{
	memset(p, 0, sizeof *p);
	if (k < 1 || n < 1)
		return err_set(e, NN_EINVAL, "invalid_argument", "", "gemm_pack: empty matrix");
	int64_t panels = (n + GEMM_NR - 1) / GEMM_NR, floats = 0;
	size_t bytes = 0;
	if (__builtin_mul_overflow(panels, k, &floats) ||
	    __builtin_mul_overflow(floats, (int64_t)GEMM_NR, &floats) ||
	    __builtin_mul_overflow((size_t)floats, sizeof(float), &bytes))
		return err_set(e, NN_EINVAL, "invalid_argument", "", "gemm_pack: matrix too large");
	/* aligned_alloc wants a multiple of the alignment: GEMM_NR floats are 128 bytes. */
	float *d = aligned_alloc(64, bytes);
	if (!d)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "gemm_pack: out of memory");
	for (int64_t jp = 0; jp < panels; jp++) {
		int64_t j0 = jp * GEMM_NR, w = n - j0 < GEMM_NR ? n - j0 : GEMM_NR;
		float *panel = d + jp * k * GEMM_NR;
		for (int64_t kk = 0; kk < k; kk++) {
			float *row = panel + kk * GEMM_NR;
			if (trans_b)
				for (int64_t j = 0; j < w; j++)
					row[j] = b[(j0 + j) * k + kk];
			else
				memcpy(row, b + kk * n + j0, sizeof(float) * (size_t)w);
			for (int64_t j = w; j < GEMM_NR; j++)
				row[j] = 0.0f;
		}
	}
	p->k = k;
	p->n = n;
	p->panels = panels;
	p->data = d;
	p->bytes = bytes;
	p->avx512 = gemm_fast_available();
	return NN_OK;
}

void gemm_packed_free(struct gemm_packed *p)
{
	free(p->data);
	memset(p, 0, sizeof *p);
}

/* Portable kernel over the packed layout: one row of C against one panel,
 * GEMM_NR accumulators the compiler can vectorise. */
static void run_portable(const struct gemm_packed *p, int64_t m, const float *a, int64_t lda,
			 float alpha, float *y, int64_t ldy, bool accumulate)
{
	for (int64_t jp = 0; jp < p->panels; jp++) {
		const float *panel = p->data + jp * p->k * GEMM_NR;
		int64_t j0 = jp * GEMM_NR, w = p->n - j0 < GEMM_NR ? p->n - j0 : GEMM_NR;
		for (int64_t i = 0; i < m; i++) {
			float acc[GEMM_NR] = {0};
			const float *ar = a + i * lda;
			for (int64_t kk = 0; kk < p->k; kk++) {
				const float *br = panel + kk * GEMM_NR;
				for (int j = 0; j < GEMM_NR; j++)
					acc[j] += ar[kk] * br[j];
			}
			float *yr = y + i * ldy + j0;
			for (int64_t j = 0; j < w; j++)
				yr[j] = alpha * acc[j] + (accumulate ? yr[j] : 0.0f);
		}
	}
}

#ifdef GEMM_X86
/* MR x 32 tile of C over the whole K: MR is a constant at every call site
 * (the switch below), so the row loops unroll and acc stays in registers. */
__attribute__((target("avx512f"), always_inline)) static inline void
tile_avx512(const int mr, const bool two, int64_t k, const float *a, int64_t lda,
	    const float *panel, float alpha, float *y, int64_t ldy, bool accumulate, __mmask16 m0,
	    __mmask16 m1)
{
	__m512 c0[GEMM_MR], c1[GEMM_MR];
	for (int r = 0; r < mr; r++) {
		c0[r] = _mm512_setzero_ps();
		c1[r] = _mm512_setzero_ps();
	}
	/* two == false: the panel's last 16 columns are padding (w <= 16), skip them. */
	for (int64_t kk = 0; kk < k; kk++) {
		__m512 b0 = _mm512_load_ps(panel + kk * GEMM_NR);
		__m512 b1 = two ? _mm512_load_ps(panel + kk * GEMM_NR + 16) : b0;
		for (int r = 0; r < mr; r++) {
			__m512 av = _mm512_set1_ps(a[r * lda + kk]);
			c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
			if (two)
				c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
		}
	}
	__m512 va = _mm512_set1_ps(alpha);
	for (int r = 0; r < mr; r++) {
		float *yr = y + r * ldy;
		__m512 v0 = _mm512_mul_ps(va, c0[r]), v1 = _mm512_mul_ps(va, c1[r]);
		if (accumulate)
			v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, yr));
		_mm512_mask_storeu_ps(yr, m0, v0);
		if (two) {
			if (accumulate)
				v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, yr + 16));
			_mm512_mask_storeu_ps(yr + 16, m1, v1);
		}
	}
}

__attribute__((target("avx512f"))) static void
run_avx512(const struct gemm_packed *p, int64_t m, const float *a, int64_t lda, float alpha,
	   float *y, int64_t ldy, bool accumulate)
{
	/* Panel-outer: one panel (k x 32 floats) is reused by every row block
	 * while it sits in L2; the A rows of a block are streamed along K. */
	for (int64_t jp = 0; jp < p->panels; jp++) {
		const float *panel = p->data + jp * p->k * GEMM_NR;
		int64_t j0 = jp * GEMM_NR, w = p->n - j0 < GEMM_NR ? p->n - j0 : GEMM_NR;
		__mmask16 m0 = (__mmask16)(w >= 16 ? 0xFFFF : (1u << w) - 1u);
		__mmask16 m1 = (__mmask16)(w >= 32 ? 0xFFFF : w <= 16 ? 0 : (1u << (w - 16)) - 1u);
		for (int64_t i = 0; i < m; i += GEMM_MR) {
			int64_t rows = m - i < GEMM_MR ? m - i : GEMM_MR;
			const float *ai = a + i * lda;
			float *yi = y + i * ldy + j0;
			bool two = w > 16;
			switch (rows) {
#define GEMM_TILE(R)                                                                           \
	case R:                                                                                \
		if (two)                                                                       \
			tile_avx512(R, true, p->k, ai, lda, panel, alpha, yi, ldy, accumulate, m0, \
				    m1);                                                       \
		else                                                                           \
			tile_avx512(R, false, p->k, ai, lda, panel, alpha, yi, ldy, accumulate, m0, \
				    m1);                                                       \
		break;
				GEMM_TILE(1)
				GEMM_TILE(2)
				GEMM_TILE(3)
				GEMM_TILE(4)
				GEMM_TILE(5)
				GEMM_TILE(6)
				GEMM_TILE(7)
				GEMM_TILE(8)
#undef GEMM_TILE
			default:
				break;
			}
		}
	}
}
#endif

void gemm_run(const struct gemm_packed *p, int64_t m, const float *a, int64_t lda, float alpha,
	      float *y, int64_t ldy, bool accumulate)
{
	if (m <= 0)
		return;
#ifdef GEMM_X86
	if (p->avx512) {
		run_avx512(p, m, a, lda, alpha, y, ldy, accumulate);
		return;
	}
#endif
	run_portable(p, m, a, lda, alpha, y, ldy, accumulate);
}

void gemm_ref(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
	      bool trans_b, float alpha, float *y, int64_t ldy, bool accumulate)
{
	for (int64_t i = 0; i < m; i++)
		for (int64_t j = 0; j < n; j++) {
			float s = 0.0f;
			for (int64_t kk = 0; kk < k; kk++)
				s += a[i * lda + kk] * (trans_b ? b[j * k + kk] : b[kk * n + j]);
			float *yij = y + i * ldy + j;
			*yij = alpha * s + (accumulate ? *yij : 0.0f);
		}
}
