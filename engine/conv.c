/* conv: convolution-family kernels (see conv.h). */
#include "conv.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CONV_X86 1
#endif

/* ---- window geometry ---- */

static const char *const pad_names[] = {"NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"};

enum nn_status conv_window_resolve(struct conv_window *w, enum conv_auto_pad auto_pad,
				   bool ceil_mode, struct nn_err *e)
{
	if (w->nspatial < 1 || w->nspatial > CONV_MAX_SPATIAL)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "kernel_shape: %d spatial dims (1 to %d supported)", w->nspatial,
			       CONV_MAX_SPATIAL);
	if ((int)auto_pad < CONV_PAD_NOTSET || auto_pad > CONV_PAD_SAME_LOWER)
		return err_set(e, NN_EINVAL, "invalid_model", "", "auto_pad: unknown mode %d",
			       (int)auto_pad);
	int ns = w->nspatial;
	for (int i = 0; i < ns; i++) {
		int64_t in = w->in[i], k = w->kernel[i], s = w->strides[i], d = w->dilations[i];
		if (in < 1)
			return err_set(e, NN_EINVAL, "invalid_model", "",
				       "input spatial dim %d is %lld (must be >= 1)", i, (long long)in);
		if (k < 1)
			return err_set(e, NN_EINVAL, "invalid_model", "",
				       "kernel_shape[%d] is %lld (must be >= 1)", i, (long long)k);
		if (s < 1)
			return err_set(e, NN_EINVAL, "invalid_model", "",
				       "strides[%d] is %lld (must be >= 1)", i, (long long)s);
		if (d < 1)
			return err_set(e, NN_EINVAL, "invalid_model", "",
				       "dilations[%d] is %lld (must be >= 1)", i, (long long)d);
		int64_t dk;
		if (__builtin_mul_overflow(k - 1, d, &dk) || __builtin_add_overflow(dk, 1, &dk))
			return err_set(e, NN_EINVAL, "invalid_model", "",
				       "kernel_shape[%d] x dilations[%d] overflows", i, i);
		int64_t *pb = &w->pads[i], *pe = &w->pads[ns + i];
		int64_t out;
		if (auto_pad == CONV_PAD_SAME_UPPER || auto_pad == CONV_PAD_SAME_LOWER) {
			out = in / s + (in % s != 0);
			int64_t total;
			if (__builtin_mul_overflow(out - 1, s, &total) ||
			    __builtin_add_overflow(total, dk, &total))
				return err_set(e, NN_EINVAL, "invalid_model", "",
					       "auto_pad %s: padding of dim %d overflows",
					       pad_names[auto_pad], i);
			total -= in;
			if (total < 0)
				total = 0;
			if (auto_pad == CONV_PAD_SAME_UPPER) {
				*pb = total / 2;
				*pe = total - *pb;
			} else {
				*pe = total / 2;
				*pb = total - *pe;
			}
		} else {
			if (auto_pad == CONV_PAD_VALID) {
				*pb = 0;
				*pe = 0;
			}
			if (*pb < 0 || *pe < 0)
				return err_set(e, NN_EINVAL, "invalid_model", "",
					       "pads for dim %d are %lld, %lld (must be >= 0)", i,
					       (long long)*pb, (long long)*pe);
			int64_t span;
			if (__builtin_add_overflow(in, *pb, &span) ||
			    __builtin_add_overflow(span, *pe, &span))
				return err_set(e, NN_EINVAL, "invalid_model", "",
					       "pads of dim %d overflow", i);
			span -= dk;
			if (span < 0)
				return err_set(e, NN_EINVAL, "invalid_model", "",
					       "kernel_shape[%d]: window of %lld (dilated) exceeds the "
					       "padded input %lld",
					       i, (long long)dk, (long long)(span + dk));
			if (ceil_mode) {
				out = span / s + (span % s != 0) + 1;
				/* A window that would start inside the end padding is
				 * dropped (ONNX Runtime, PyTorch). */
				if ((out - 1) * s >= in + *pb)
					out--;
			} else {
				out = span / s + 1;
			}
		}
		if (out < 1)
			return err_set(e, NN_EINVAL, "invalid_model", "",
				       "output spatial dim %d would be %lld", i, (long long)out);
		w->out[i] = out;
	}
	return NN_OK;
}

/* Product of n dims; false on overflow. */
static bool prod_dims(const int64_t *d, int n, int64_t *out)
{
	int64_t p = 1;
	for (int i = 0; i < n; i++)
		if (__builtin_mul_overflow(p, d[i], &p))
			return false;
	*out = p;
	return true;
}

/* batch * ch * prod(dims) * sizeof(float) fits both int64 and size_t. */
static bool tensor_fits(int64_t batch, int64_t ch, const int64_t *dims, int n)
{
	int64_t p, q;
	if (!prod_dims(dims, n, &p) || __builtin_mul_overflow(p, batch, &q) ||
	    __builtin_mul_overflow(q, ch, &q) || __builtin_mul_overflow(q, (int64_t)sizeof(float), &q))
		return false;
	return (uint64_t)q <= SIZE_MAX;
}

/* ---- Conv ---- */

static bool conv_is_pointwise(const struct conv_window *w)
{
	for (int i = 0; i < w->nspatial; i++)
		if (w->kernel[i] != 1 || w->strides[i] != 1 || w->pads[i] != 0 ||
		    w->pads[w->nspatial + i] != 0)
			return false;
	return true;
}

/* 2-D geometry; 1-D windows are run as 2-D with a height of 1. */
struct geo2 {
	int64_t h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow;
};

static struct geo2 geo2_of(const struct conv_window *w)
{
	struct geo2 g;
	if (w->nspatial == 1) {
		g.h = 1, g.kh = 1, g.sh = 1, g.dh = 1, g.pt = 0, g.oh = 1;
		g.w = w->in[0], g.kw = w->kernel[0], g.sw = w->strides[0], g.dw = w->dilations[0];
		g.pl = w->pads[0], g.ow = w->out[0];
	} else {
		g.h = w->in[0], g.kh = w->kernel[0], g.sh = w->strides[0], g.dh = w->dilations[0];
		g.pt = w->pads[0], g.oh = w->out[0];
		g.w = w->in[1], g.kw = w->kernel[1], g.sw = w->strides[1], g.dw = w->dilations[1];
		g.pl = w->pads[1], g.ow = w->out[1];
	}
	return g;
}

/* im2col of 1-D/2-D convolutions runs over bands of output rows whose
 * columns fit CONV_BAND_FLOATS (128 KiB): the band stays in L2 between
 * im2col writing it and sgemm packing it, and scratch stays small. A band is
 * never narrower than one output row. */
#define CONV_BAND_FLOATS 32768

static int64_t band_rows(int64_t k, int64_t oh, int64_t ow)
{
	int64_t per_row = k * ow; /* no overflow: conv_check bounded k * oh * ow */
	int64_t rows = per_row > 0 ? CONV_BAND_FLOATS / per_row : oh;
	if (rows < 1)
		rows = 1;
	return rows < oh ? rows : oh;
}

/* Padded or strided 1-D/2-D convolutions skip per-tap clipping and gathers:
 * each image's group of channels is copied once into zero-bordered "phase"
 * planes, and every im2col row of a band becomes one memcpy.
 *
 * Stride 1 (any dilation): one plane per channel, the input padded to
 * Hp x Wp (H + pad_top + pad_bottom, likewise W). The output is computed on
 * a grid of OH rows of Wp columns; grid column q reads padded input
 * q + kh*dh*Wp + kw*dw, contiguous in q.
 * Stride s > 1 (dilation 1): the padded input is split into sh x sw phase
 * planes of Hph x Wph (Hph = ceil(Hp / sh)), plane (a, b) holding padded rows
 * a, a + sh, ... and columns b, b + sw, ...; tap (kh, kw) reads plane
 * (kh % sh, kw % sw) at grid position + (kh / sh) * Wph + kw / sw, again
 * contiguous, on a grid of OH rows of Wph columns.
 * sgemm writes the grid into scratch; the OW valid columns of each row are
 * copied out (plus bias) and the wrap-around columns dropped. Reads run past
 * the last plane by at most the largest column offset, which the buffer
 * holds as zeros. The unpadded stride-1 case keeps im2col_2d, which needs no
 * copy at all. */
#define CONV_PADDED_BAND_FLOATS 65536
#define CONV_PADDED_MAX_FLOATS ((int64_t)1 << 24)

struct padded {
	int64_t hp, wp;       /* padded input */
	int64_t ph, pw;       /* phases per dim (the strides) */
	int64_t hq, wq;       /* phase plane rows, columns (= grid width) */
	int64_t plane;        /* hq * wq */
	int64_t pad_floats;   /* cg * ph * pw planes + slack */
	int64_t rows, band_floats;
};

static bool padded_geometry(const struct conv_window *w, int64_t cg, int64_t k, int64_t mg,
			    struct padded *pg)
{
	if (w->nspatial > 2)
		return false;
	bool any_pad = false, strided = false;
	for (int i = 0; i < w->nspatial; i++) {
		any_pad |= w->pads[i] != 0 || w->pads[w->nspatial + i] != 0;
		strided |= w->strides[i] != 1;
	}
	if (!any_pad && !strided) /* im2col_2d's unpadded path copies less */
		return false;
	struct geo2 g = geo2_of(w);
	if (strided && (g.dh != 1 || g.dw != 1))
		return false;
	int64_t pb = w->nspatial == 1 ? 0 : w->pads[2], pr = w->pads[w->nspatial == 1 ? 1 : 3];
	int64_t slack, per_row, planes;
	if (__builtin_add_overflow(g.h, g.pt, &pg->hp) || __builtin_add_overflow(pg->hp, pb, &pg->hp) ||
	    __builtin_add_overflow(g.w, g.pl, &pg->wp) || __builtin_add_overflow(pg->wp, pr, &pg->wp))
		return false;
	pg->ph = g.sh;
	pg->pw = g.sw;
	pg->hq = (pg->hp + g.sh - 1) / g.sh;
	pg->wq = (pg->wp + g.sw - 1) / g.sw;
	slack = strided ? (g.kw - 1) / g.sw : (g.kw - 1) * g.dw;
	if (__builtin_mul_overflow(pg->hq, pg->wq, &pg->plane) ||
	    __builtin_mul_overflow(g.sh, g.sw, &planes) ||
	    __builtin_mul_overflow(planes, cg, &planes) ||
	    __builtin_mul_overflow(pg->plane, planes, &pg->pad_floats) ||
	    __builtin_add_overflow(pg->pad_floats, slack, &pg->pad_floats) ||
	    __builtin_mul_overflow(k + mg, pg->wq, &per_row) ||
	    pg->pad_floats > CONV_PADDED_MAX_FLOATS || per_row > CONV_PADDED_MAX_FLOATS)
		return false;
	pg->pad_floats = (pg->pad_floats + 15) & ~(int64_t)15; /* the band starts 64-byte aligned */
	/* every valid output reads inside its phase plane */
	if ((g.oh - 1) + (g.kh - 1) * g.dh / g.sh >= pg->hq || g.ow > pg->wq)
		return false;
	int64_t rows = CONV_PADDED_BAND_FLOATS / per_row;
	if (rows < 1)
		rows = 1;
	if (rows > g.oh)
		rows = g.oh;
	int64_t bands = (g.oh + rows - 1) / rows;
	pg->rows = (g.oh + bands - 1) / bands; /* even bands */
	pg->band_floats = per_row * pg->rows;
	return true;
}

/* Fills the phase planes of cg channels of x (see above). */
static void fill_phases(const struct geo2 *g, const struct padded *pg, int64_t cg, const float *x,
			float *xp)
{
	memset(xp, 0, (size_t)pg->pad_floats * sizeof(float));
	if (pg->ph == 1 && pg->pw == 1) {
		for (int64_t c = 0; c < cg; c++)
			for (int64_t r = 0; r < g->h; r++)
				memcpy(xp + c * pg->plane + (r + g->pt) * pg->wq + g->pl,
				       x + (c * g->h + r) * g->w, (size_t)g->w * sizeof(float));
		return;
	}
	for (int64_t c = 0; c < cg; c++) {
		const float *xc = x + c * g->h * g->w;
		/* phases no tap reads (a >= KH or b >= KW: 1x1 strided) stay zero */
		for (int64_t a = 0; a < pg->ph && a < g->kh; a++) {
			for (int64_t b = 0; b < pg->pw && b < g->kw; b++) {
				float *pl = xp + ((c * pg->ph + a) * pg->pw + b) * pg->plane;
				/* padded column j * sw + b is input column j * sw + b - pl */
				int64_t j0 = 0, j1 = pg->wq;
				while (j0 < j1 && j0 * pg->pw + b - g->pl < 0)
					j0++;
				while (j1 > j0 && (j1 - 1) * pg->pw + b - g->pl >= g->w)
					j1--;
				for (int64_t i = 0; i < pg->hq; i++) {
					int64_t r = i * pg->ph + a - g->pt;
					if (r < 0 || r >= g->h)
						continue;
					const float *src = xc + r * g->w + b - g->pl;
					float *dst = pl + i * pg->wq;
					for (int64_t j = j0; j < j1; j++)
						dst[j] = src[j * pg->pw];
				}
			}
		}
	}
}

/* Offset in the phase buffer of tap t = (c, kh, kw) at grid position 0 of
 * band row oh0. */
static int64_t tap_offset(const struct geo2 *g, const struct padded *pg, int64_t c, int64_t kh,
			  int64_t kw, int64_t oh0)
{
	if (pg->ph != 1 || pg->pw != 1)
		return ((c * pg->ph + kh % pg->ph) * pg->pw + kw % pg->pw) * pg->plane +
		       (oh0 + kh / pg->ph) * pg->wq + kw / pg->pw;
	return c * pg->plane + (oh0 + kh * g->dh) * pg->wq + kw * g->dw;
}

#ifdef CONV_X86
/* Implicit GEMM on the grid: cbuf[m][q] = sum_t w[m][t] * xp[off[t] + q] for
 * q < nq, m < mg: tiles of 6 output channels x 64 grid positions in 24 zmm
 * accumulators, the tap loop innermost; the last tile of a row is masked.
 * Each output is summed over t in order, whatever its tile. */
/* One tile: MR x (NV * 16) (both constants after inlining). */
__attribute__((target("avx512f"), always_inline)) static inline void
grid_tile_avx512(const int mr, const int nv, const float *xp, const int64_t *off, int64_t k,
		 const float *wm, int64_t q0, const __mmask16 *mk, float *cb, int64_t nq)
{
	__m512 acc[6][4], x[4];
	_Pragma("GCC unroll 6") for (int i = 0; i < mr; i++)
		_Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)
			acc[i][v] = _mm512_setzero_ps();
	for (int64_t t = 0; t < k; t++) {
		const float *src = xp + off[t] + q0;
		_Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)
			x[v] = _mm512_maskz_loadu_ps(mk[v], src + 16 * v);
		_Pragma("GCC unroll 6") for (int i = 0; i < mr; i++) {
			__m512 wv = _mm512_set1_ps(wm[i * k + t]);
			_Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)
				acc[i][v] = _mm512_fmadd_ps(wv, x[v], acc[i][v]);
		}
	}
	_Pragma("GCC unroll 6") for (int i = 0; i < mr; i++)
		_Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)
			_mm512_mask_storeu_ps(cb + i * nq + q0 + 16 * v, mk[v], acc[i][v]);
}

/* Tiles of up to 64 positions; the last tile of a row is as narrow as its
 * remainder allows (masked lanes still cost FMAs). */
__attribute__((target("avx512f"))) static void grid_gemm_avx512(const float *xp,
								  const int64_t *off, int64_t k,
								  const float *w, int64_t mg,
								  int64_t nq, float *cbuf)
{
	for (int64_t q0 = 0; q0 < nq;) {
		int64_t left = nq - q0;
		int nv = left >= 64 ? 4 : (int)((left + 15) / 16);
		__mmask16 mk[4];
		for (int v = 0; v < 4; v++) {
			int64_t l = left - 16 * v;
			mk[v] = l >= 16 ? (__mmask16)0xFFFF
				: l <= 0 ? (__mmask16)0 : (__mmask16)((1u << l) - 1u);
		}
		/* channel tiles of even size (32 = 6+6+5+5+5+5, not 6*5+2: a
		 * narrow tile spends its loads on few FMAs) */
		int64_t tiles = (mg + 5) / 6, base = mg / tiles, extra = mg % tiles;
		for (int64_t ti = 0, m0 = 0; ti < tiles; ti++) {
			int mr = (int)(base + (ti < extra ? 1 : 0));
			const float *wm = w + m0 * k;
			float *cb = cbuf + m0 * nq;
			m0 += mr;
			switch (mr * 4 + nv - 1) {
#define GRID_CASE(R, V)                                                         \
	case R * 4 + V - 1:                                                     \
		grid_tile_avx512(R, V, xp, off, k, wm, q0, mk, cb, nq);         \
		break;
#define GRID_ROW(R) GRID_CASE(R, 1) GRID_CASE(R, 2) GRID_CASE(R, 3) GRID_CASE(R, 4)
				GRID_ROW(1)
				GRID_ROW(2)
				GRID_ROW(3)
				GRID_ROW(4)
				GRID_ROW(5)
				GRID_ROW(6)
#undef GRID_ROW
#undef GRID_CASE
			}
		}
		q0 += 16 * nv;
	}
}
#endif

/* The OW valid columns of each grid row of a band into y (+ bias, Relu). */
__attribute__((target("avx512f"))) static void compact_avx512(const float *cbuf, int64_t nq,
								int64_t wq, int64_t rows,
								int64_t mg, const float *bg,
								bool relu, float *yb, int64_t plane,
								int64_t ow)
{
	const __m512 zero = _mm512_setzero_ps();
	for (int64_t m = 0; m < mg; m++) {
		__m512 b = _mm512_set1_ps(bg ? bg[m] : 0.0f);
		for (int64_t r = 0; r < rows; r++) {
			const float *src = cbuf + m * nq + r * wq;
			float *out = yb + m * plane + r * ow;
			for (int64_t j = 0; j < ow; j += 16) {
				int64_t left = ow - j;
				__mmask16 mk = left >= 16 ? (__mmask16)0xFFFF
							  : (__mmask16)((1u << left) - 1u);
				__m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, src + j), b);
				/* max(v, 0) with NaN -> 0: max returns its second operand
				 * when one is NaN */
				if (relu)
					v = _mm512_max_ps(v, zero);
				_mm512_mask_storeu_ps(out + j, mk, v);
			}
		}
	}
}

static bool conv_avx512(const struct conv_params *p)
{
#ifdef CONV_X86
	if (p->portable)
		return false;
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f");
#else
	(void)p;
	return false;
#endif
}

/* scratch: phase planes (pad_floats), then per band either im2col columns
 * (k * nq) and the grid output (mg * nq), or (AVX-512) k tap offsets and the
 * grid output. */
static void conv_padded(const struct geo2 *g, const struct padded *pg, int64_t cg, int64_t mg,
			const float *xg, const float *wg, const float *bg, float *yg,
			float *scratch, bool avx512, bool relu)
{
	float *xp = scratch, *col = scratch + pg->pad_floats;
	int64_t k = cg * g->kh * g->kw;
	fill_phases(g, pg, cg, xg, xp);
	for (int64_t oh0 = 0; oh0 < g->oh; oh0 += pg->rows) {
		int64_t oh1 = oh0 + pg->rows < g->oh ? oh0 + pg->rows : g->oh;
		int64_t nq = (oh1 - oh0) * pg->wq;
		float *cbuf = col + k * nq;
#ifdef CONV_X86
		if (avx512 && nq >= 2) {
			/* k int64 offsets fit in the k * nq floats of the columns */
			int64_t *off = (int64_t *)(void *)col;
			int64_t t = 0;
			for (int64_t c = 0; c < cg; c++)
				for (int64_t kh = 0; kh < g->kh; kh++)
					for (int64_t kw = 0; kw < g->kw; kw++)
						off[t++] = tap_offset(g, pg, c, kh, kw, oh0);
			grid_gemm_avx512(xp, off, k, wg, mg, nq, cbuf);
		} else
#endif
		{
			(void)avx512;
			float *dst = col;
			for (int64_t c = 0; c < cg; c++)
				for (int64_t kh = 0; kh < g->kh; kh++)
					for (int64_t kw = 0; kw < g->kw; kw++, dst += nq)
						memcpy(dst, xp + tap_offset(g, pg, c, kh, kw, oh0),
						       (size_t)nq * sizeof(float));
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)mg, (int)nq,
				    (int)k, 1.0f, wg, (int)k, col, (int)nq, 0.0f, cbuf, (int)nq);
		}
#ifdef CONV_X86
		if (avx512) {
			compact_avx512(cbuf, nq, pg->wq, oh1 - oh0, mg, bg, relu, yg + oh0 * g->ow,
				       g->oh * g->ow, g->ow);
			continue;
		}
#endif
		for (int64_t m = 0; m < mg; m++) {
			float b = bg ? bg[m] : 0.0f;
			for (int64_t oh = oh0; oh < oh1; oh++) {
				const float *src = cbuf + m * nq + (oh - oh0) * pg->wq;
				float *out = yg + (m * g->oh + oh) * g->ow;
				if (relu) {
					for (int64_t j = 0; j < g->ow; j++) {
						float v = src[j] + b;
						out[j] = v > 0.0f ? v : 0.0f;
					}
				} else {
					for (int64_t j = 0; j < g->ow; j++)
						out[j] = src[j] + b;
				}
			}
		}
	}
}

/* Output-channel-vectorised direct convolution (AVX-512): for 2-D convs with
 * a multiple of 16 output channels per group, stride 1 or 2 and at least 32
 * taps (the ResNet's 3x3 layers), each zmm accumulates 16 output channels of
 * one output position, tiles of up to 8 positions of a row x 32 channels, the
 * input read by broadcasts from a zero-bordered padded copy: no wasted lanes
 * (the grid kernel's wrap-around columns cost 13-23% on 14x14 and 7x7 maps).
 * Weights are repacked per call and group to [tap][channel]; results are
 * scattered to NCHW with the bias and fused Relu. Every output sums its taps
 * in order, in any tile. */
#define OC_TILE 8

struct oc16 {
	int64_t hp, wp, plane, pad_floats, wpack_floats, off_floats;
};

static bool oc16_geometry(const struct conv_params *p, int64_t cg, int64_t mg, int64_t k,
			  struct oc16 *o)
{
	const struct conv_window *w = &p->win;
	if (w->nspatial != 2 || mg % 16 != 0 || k < 32 || w->strides[0] != w->strides[1] ||
	    (w->strides[0] != 1 && w->strides[0] != 2))
		return false;
	struct geo2 g = geo2_of(w);
	int64_t planes, wpack, outp;
	if (__builtin_add_overflow(g.h, g.pt + w->pads[2], &o->hp) ||
	    __builtin_add_overflow(g.w, g.pl + w->pads[3], &o->wp) ||
	    __builtin_mul_overflow(o->hp, o->wp, &o->plane) ||
	    __builtin_mul_overflow(o->plane, cg, &planes) ||
	    __builtin_mul_overflow(k, mg, &wpack) || __builtin_mul_overflow(g.oh, g.ow, &outp) ||
	    planes > CONV_PADDED_MAX_FLOATS || wpack > CONV_PADDED_MAX_FLOATS ||
	    outp * 16 > INT32_MAX)
		return false;
	/* every tap of every output inside the padded input */
	if ((g.oh - 1) * g.sh + (g.kh - 1) * g.dh >= o->hp ||
	    (g.ow - 1) * g.sw + (g.kw - 1) * g.dw >= o->wp)
		return false;
	o->pad_floats = (planes + 15) & ~(int64_t)15;
	o->wpack_floats = (wpack + 15) & ~(int64_t)15;
	o->off_floats = 2 * k;
	return true;
}

#ifdef CONV_X86
__attribute__((target("avx512f"), always_inline)) static inline void
oc_tile_avx512(const int tw, const int nv, const int st, const float *xs, const int64_t *off,
	       int64_t k, const float *wp, int64_t mg, float *yt, __m512i vidx, int64_t plane,
	       const float *bias, bool relu)
{
	__m512 acc[OC_TILE][2];
	_Pragma("GCC unroll 8") for (int j = 0; j < tw; j++)
		_Pragma("GCC unroll 2") for (int v = 0; v < nv; v++)
			acc[j][v] = _mm512_setzero_ps();
	for (int64_t t = 0; t < k; t++) {
		const float *src = xs + off[t];
		const float *wt = wp + t * mg;
		__m512 w0 = _mm512_loadu_ps(wt);
		__m512 w1 = nv > 1 ? _mm512_loadu_ps(wt + 16) : w0;
		_Pragma("GCC unroll 8") for (int j = 0; j < tw; j++) {
			__m512 xb = _mm512_set1_ps(src[j * st]);
			acc[j][0] = _mm512_fmadd_ps(w0, xb, acc[j][0]);
			if (nv > 1)
				acc[j][1] = _mm512_fmadd_ps(w1, xb, acc[j][1]);
		}
	}
	const __m512 zero = _mm512_setzero_ps();
	_Pragma("GCC unroll 2") for (int v = 0; v < nv; v++) {
		__m512 b = bias ? _mm512_loadu_ps(bias + 16 * v) : zero;
		_Pragma("GCC unroll 8") for (int j = 0; j < tw; j++) {
			__m512 r = _mm512_add_ps(acc[j][v], b);
			if (relu)
				r = _mm512_max_ps(r, zero); /* NaN -> 0, as Relu */
			_mm512_i32scatter_ps(yt + 16 * v * plane + j, vidx, r, 4);
		}
	}
}

#define OC_FN(NV, ST)                                                                       \
	__attribute__((target("avx512f"))) static void oc_row_##NV##_##ST(                      \
		int tw, const float *xs, const int64_t *off, int64_t k, const float *wp,         \
		int64_t mg, float *yt, __m512i vidx, int64_t plane, const float *bias, bool relu) \
	{                                                                                   \
		switch (tw) {                                                               \
		case 1: oc_tile_avx512(1, NV, ST, xs, off, k, wp, mg, yt, vidx, plane, bias, relu); break; \
		case 2: oc_tile_avx512(2, NV, ST, xs, off, k, wp, mg, yt, vidx, plane, bias, relu); break; \
		case 3: oc_tile_avx512(3, NV, ST, xs, off, k, wp, mg, yt, vidx, plane, bias, relu); break; \
		case 4: oc_tile_avx512(4, NV, ST, xs, off, k, wp, mg, yt, vidx, plane, bias, relu); break; \
		case 5: oc_tile_avx512(5, NV, ST, xs, off, k, wp, mg, yt, vidx, plane, bias, relu); break; \
		case 6: oc_tile_avx512(6, NV, ST, xs, off, k, wp, mg, yt, vidx, plane, bias, relu); break; \
		case 7: oc_tile_avx512(7, NV, ST, xs, off, k, wp, mg, yt, vidx, plane, bias, relu); break; \
		default: oc_tile_avx512(8, NV, ST, xs, off, k, wp, mg, yt, vidx, plane, bias, relu); break; \
		}                                                                           \
	}
OC_FN(1, 1)
OC_FN(2, 1)
OC_FN(1, 2)
OC_FN(2, 2)
#undef OC_FN

/* One image and group: xg [cg][H][W] -> yg [mg][OH][OW]. wp: packed
 * weights [k][mg]; off: k tap offsets; xp: padded input scratch. */
__attribute__((target("avx512f"))) static void conv_oc16(const struct geo2 *g,
							   const struct oc16 *o, int64_t cg,
							   int64_t mg, const float *xg,
							   const float *wp, const int64_t *off,
							   int64_t k, const float *bg, bool relu,
							   float *yg, float *xp)
{
	memset(xp, 0, (size_t)o->pad_floats * sizeof(float));
	for (int64_t c = 0; c < cg; c++)
		for (int64_t r = 0; r < g->h; r++)
			memcpy(xp + c * o->plane + (r + g->pt) * o->wp + g->pl,
			       xg + (c * g->h + r) * g->w, (size_t)g->w * sizeof(float));
	int64_t plane = g->oh * g->ow;
	__m512i vidx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
							     12, 13, 14, 15),
					  _mm512_set1_epi32((int)plane));
	for (int64_t oh = 0; oh < g->oh; oh++) {
		for (int64_t ow0 = 0; ow0 < g->ow; ow0 += OC_TILE) {
			int tw = g->ow - ow0 < OC_TILE ? (int)(g->ow - ow0) : OC_TILE;
			const float *xs = xp + oh * g->sh * o->wp + ow0 * g->sw;
			for (int64_t oc0 = 0; oc0 < mg; oc0 += 32) {
				int nv = mg - oc0 >= 32 ? 2 : 1;
				float *yt = yg + oc0 * plane + oh * g->ow + ow0;
				const float *b = bg ? bg + oc0 : NULL;
				if (g->sh == 1) {
					if (nv == 2)
						oc_row_2_1(tw, xs, off, k, wp + oc0, mg, yt, vidx, plane, b, relu);
					else
						oc_row_1_1(tw, xs, off, k, wp + oc0, mg, yt, vidx, plane, b, relu);
				} else {
					if (nv == 2)
						oc_row_2_2(tw, xs, off, k, wp + oc0, mg, yt, vidx, plane, b, relu);
					else
						oc_row_1_2(tw, xs, off, k, wp + oc0, mg, yt, vidx, plane, b, relu);
				}
			}
		}
	}
}
#endif

/* The oc16 path runs when the CPU has AVX-512 and the geometry fits. */
static bool oc16_use(const struct conv_params *p, int64_t cg, int64_t mg, int64_t k,
		     struct oc16 *o)
{
	return conv_avx512(p) && oc16_geometry(p, cg, mg, k, o);
}

static int64_t conv_taps(const struct conv_params *p)
{
	int64_t ks = 1;
	for (int i = 0; i < p->win.nspatial; i++)
		ks *= p->win.kernel[i];
	return p->in_channels / p->group * ks;
}

size_t conv_pack_floats(const struct conv_params *p)
{
	struct oc16 o;
	int64_t cg = p->in_channels / p->group, mg = p->out_channels / p->group;
	if (conv_is_pointwise(&p->win) || !oc16_use(p, cg, mg, conv_taps(p), &o))
		return 0;
	return (size_t)(p->group * o.wpack_floats);
}

/* Per group, [tap][channel] (the oc16 kernel loads 16 channels of a tap). */
void conv_pack_weights(const struct conv_params *p, const float *w, float *out)
{
	struct oc16 o;
	int64_t cg = p->in_channels / p->group, mg = p->out_channels / p->group;
	int64_t k = conv_taps(p);
	if (!oc16_geometry(p, cg, mg, k, &o))
		return;
	for (int64_t g = 0; g < p->group; g++) {
		const float *wg = w + g * mg * k;
		float *wp = out + g * o.wpack_floats;
		for (int64_t t = 0; t < k; t++)
			for (int64_t m = 0; m < mg; m++)
				wp[t * mg + m] = wg[m * k + t];
	}
}

enum nn_status conv_check(const struct conv_params *p, size_t *scratch_bytes, struct nn_err *e)
{
	const struct conv_window *w = &p->win;
	if (w->nspatial < 1 || w->nspatial > CONV_MAX_SPATIAL)
		return err_set(e, NN_EINVAL, "invalid_model", "", "Conv: %d spatial dims",
			       w->nspatial);
	if (p->batch < 0 || p->in_channels < 1 || p->out_channels < 1)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "Conv: batch %lld, input channels %lld, output channels %lld "
			       "(batch must be >= 0, channels >= 1)",
			       (long long)p->batch, (long long)p->in_channels,
			       (long long)p->out_channels);
	if (p->group < 1 || p->in_channels % p->group != 0 || p->out_channels % p->group != 0)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "Conv: group %lld does not divide input channels %lld and output "
			       "channels %lld",
			       (long long)p->group, (long long)p->in_channels,
			       (long long)p->out_channels);
	int64_t cg = p->in_channels / p->group, mg = p->out_channels / p->group;
	int64_t ks, outn, k;
	if (!tensor_fits(p->batch, p->in_channels, w->in, w->nspatial) ||
	    !tensor_fits(p->batch, p->out_channels, w->out, w->nspatial) ||
	    !tensor_fits(p->out_channels, cg, w->kernel, w->nspatial) ||
	    !prod_dims(w->kernel, w->nspatial, &ks) || !prod_dims(w->out, w->nspatial, &outn) ||
	    __builtin_mul_overflow(ks, cg, &k))
		return err_set(e, NN_ETOOBIG, "too_large", "", "Conv: tensor sizes overflow");
	/* cblas takes int dimensions. */
	if (k > INT_MAX || outn > INT_MAX || mg > INT_MAX)
		return err_set(e, NN_ETOOBIG, "too_large", "",
			       "Conv: GEMM of %lld x %lld x %lld exceeds the BLAS int range",
			       (long long)mg, (long long)outn, (long long)k);
	size_t bytes = 0;
	if (!conv_is_pointwise(w)) {
		int64_t elems;
		if (__builtin_mul_overflow(k, outn, &elems) ||
		    __builtin_mul_overflow(elems, (int64_t)sizeof(float), &elems) ||
		    (uint64_t)elems > SIZE_MAX)
			return err_set(e, NN_ETOOBIG, "too_large", "",
				       "Conv: im2col buffer size overflows");
		bytes = (size_t)elems;
		struct padded pg;
		struct oc16 o;
		if (oc16_use(p, cg, mg, k, &o)) {
			bytes = (size_t)(o.pad_floats + o.wpack_floats + o.off_floats) * sizeof(float);
		} else if (padded_geometry(w, cg, k, mg, &pg)) {
			bytes = (size_t)(pg.pad_floats + pg.band_floats) * sizeof(float);
		} else if (w->nspatial <= 2) {
			struct geo2 g2 = geo2_of(w);
			bytes = (size_t)(k * band_rows(k, g2.oh, g2.ow) * g2.ow) * sizeof(float);
		}
	}
	*scratch_bytes = bytes;
	return NN_OK;
}

/* Copies n floats in fixed 8-float blocks: the rows im2col copies are a few
 * dozen floats, where a memcpy call or a vectorised loop with its alias
 * check and remainder handling costs more than the copy. */
static inline void copy_run(float *restrict dst, const float *restrict src, int64_t n)
{
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		memcpy(dst + i, src + i, 8 * sizeof(float));
	/* The tail without a loop, which the compiler would turn into a
	 * memmove call again. */
	if (n - i >= 4) {
		memcpy(dst + i, src + i, 4 * sizeof(float));
		i += 4;
	}
	if (n - i >= 2) {
		memcpy(dst + i, src + i, 2 * sizeof(float));
		i += 2;
	}
	if (n - i >= 1)
		dst[i] = src[i];
}

/* Zeroes n floats the same way (padding columns are one or two floats). */
static inline void zero_run(float *dst, int64_t n)
{
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		memset(dst + i, 0, 8 * sizeof(float));
	if (n - i >= 4) {
		memset(dst + i, 0, 4 * sizeof(float));
		i += 4;
	}
	if (n - i >= 2) {
		memset(dst + i, 0, 2 * sizeof(float));
		i += 2;
	}
	if (n - i >= 1)
		dst[i] = 0.0f;
}

/* Rows (c, kh, kw), columns (oh, ow): col[(c*KH+kh)*KW+kw][oh*OW+ow] =
 * x[c][oh*sh-pt+kh*dh][ow*sw-pl+kw*dw], 0 outside the input. */
static void im2col_2d(const struct geo2 *g, int64_t channels, const float *x, int64_t oh0,
		      int64_t oh1, float *col)
{
	if (g->pt == 0 && g->pl == 0 && g->sh == 1 && g->sw == 1 &&
	    g->oh + (g->kh - 1) * g->dh <= g->h && g->ow + (g->kw - 1) * g->dw <= g->w) {
		/* Unpadded stride 1 (LeNet-style valid convolutions): every
		 * row segment is in range, nothing to clip or zero. */
		const int64_t ow = g->ow, w = g->w;
		for (int64_t c = 0; c < channels; c++) {
			const float *xc = x + c * g->h * w;
			for (int64_t kh = 0; kh < g->kh; kh++) {
				for (int64_t kw = 0; kw < g->kw; kw++) {
					const float *src = xc + kh * g->dh * w + kw * g->dw;
					if (ow == 8) {
						for (int64_t r = oh0; r < oh1; r++, col += 8)
							memcpy(col, src + r * w, 8 * sizeof(float));
					} else {
						for (int64_t r = oh0; r < oh1; r++, col += ow)
							copy_run(col, src + r * w, ow);
					}
				}
			}
		}
		return;
	}
	for (int64_t c = 0; c < channels; c++) {
		const float *xc = x + c * g->h * g->w;
		for (int64_t kh = 0; kh < g->kh; kh++) {
			for (int64_t kw = 0; kw < g->kw; kw++) {
				/* Output columns whose input column is in range:
				 * 0 <= ow*sw - pl + kw*dw < W. */
				int64_t off = kw * g->dw - g->pl;
				int64_t lo = off >= 0 ? 0 : (-off + g->sw - 1) / g->sw;
				int64_t hi = g->w - off <= 0 ? 0 : (g->w - off + g->sw - 1) / g->sw;
				if (hi > g->ow)
					hi = g->ow;
				if (lo > hi)
					lo = hi;
				for (int64_t oh = oh0; oh < oh1; oh++) {
					int64_t ih = oh * g->sh - g->pt + kh * g->dh;
					if (ih < 0 || ih >= g->h) {
						zero_run(col, g->ow);
						col += g->ow;
						continue;
					}
					const float *xr = xc + ih * g->w + off;
					zero_run(col, lo);
					if (g->sw == 1) {
						copy_run(col + lo, xr + lo, hi - lo);
					} else {
						for (int64_t ow = lo; ow < hi; ow++)
							col[ow] = xr[ow * g->sw];
					}
					zero_run(col + hi, g->ow - hi);
					col += g->ow;
				}
			}
		}
	}
}

/* N-D im2col for 3 or more spatial dims: rows (c, kernel offset in row-major
 * order), columns the output positions in row-major order. */
static void im2col_nd(const struct conv_window *w, int64_t channels, const float *x, float *col)
{
	int ns = w->nspatial;
	int64_t ks = 1, outn = 1, inn = 1;
	for (int i = 0; i < ns; i++) {
		ks *= w->kernel[i];
		outn *= w->out[i];
		inn *= w->in[i];
	}
	for (int64_t c = 0; c < channels; c++) {
		const float *xc = x + c * inn;
		int64_t kk[CONV_MAX_SPATIAL] = {0};
		for (int64_t r = 0; r < ks; r++) {
			int64_t o[CONV_MAX_SPATIAL] = {0};
			for (int64_t j = 0; j < outn; j++) {
				int64_t off = 0;
				bool valid = true;
				for (int i = 0; i < ns; i++) {
					int64_t ii = o[i] * w->strides[i] - w->pads[i] +
						     kk[i] * w->dilations[i];
					if (ii < 0 || ii >= w->in[i]) {
						valid = false;
						break;
					}
					off = off * w->in[i] + ii;
				}
				*col++ = valid ? xc[off] : 0.0f;
				for (int i = ns - 1; i >= 0; i--) {
					if (++o[i] < w->out[i])
						break;
					o[i] = 0;
				}
			}
			for (int i = ns - 1; i >= 0; i--) {
				if (++kk[i] < w->kernel[i])
					break;
				kk[i] = 0;
			}
		}
	}
}

/* Rows m < mg of Y (row stride ld), columns [0, n): max(y, 0), NaN -> 0
 * (a fused Relu, applied while the rows sgemm wrote are in cache). */
static void relu_rows(float *y, int64_t mg, int64_t n, int64_t ld)
{
	for (int64_t m = 0; m < mg; m++) {
		float *row = y + m * ld;
		for (int64_t j = 0; j < n; j++)
			row[j] = row[j] > 0.0f ? row[j] : 0.0f;
	}
}

/* Rows m < mg of Y (row stride ld), columns [0, n), set to bias[m]. */
static void fill_bias(float *y, int64_t mg, int64_t n, int64_t ld, const float *bias)
{
	for (int64_t m = 0; m < mg; m++) {
		float b = bias[m];
		float *row = y + m * ld;
		for (int64_t j = 0; j < n; j++)
			row[j] = b;
	}
}

void conv_run(const struct conv_params *p, const float *x, const float *w, const float *bias,
	      float *y, float *scratch)
{
	const struct conv_window *win = &p->win;
	int ns = win->nspatial;
	int64_t cg = p->in_channels / p->group, mg = p->out_channels / p->group;
	int64_t ks = 1, outn = 1, inn = 1;
	for (int i = 0; i < ns; i++) {
		ks *= win->kernel[i];
		outn *= win->out[i];
		inn *= win->in[i];
	}
	int64_t k = cg * ks;
	bool pointwise = conv_is_pointwise(win);
	struct geo2 g2 = geo2_of(win);
	int64_t rows = band_rows(k, g2.oh, g2.ow);
	struct padded pg;
	bool padded = !pointwise && padded_geometry(win, cg, k, mg, &pg);
	bool avx512 = padded && conv_avx512(p);
#ifdef CONV_X86
	struct oc16 o;
	if (!pointwise && oc16_use(p, cg, mg, k, &o)) {
		float *xp = scratch, *wp = scratch + o.pad_floats;
		int64_t *off = (int64_t *)(void *)(scratch + o.pad_floats + o.wpack_floats);
		int64_t t = 0;
		for (int64_t c = 0; c < cg; c++)
			for (int64_t kh = 0; kh < g2.kh; kh++)
				for (int64_t kw = 0; kw < g2.kw; kw++)
					off[t++] = c * o.plane + kh * g2.dh * o.wp + kw * g2.dw;
		for (int64_t g = 0; g < p->group; g++) {
			const float *wgp = p->wpack ? p->wpack + g * o.wpack_floats : wp;
			if (!p->wpack) {
				const float *wg = w + g * mg * k;
				for (int64_t tt = 0; tt < k; tt++) /* [m][t] -> [t][m] */
					for (int64_t m = 0; m < mg; m++)
						wp[tt * mg + m] = wg[m * k + tt];
			}
			for (int64_t n = 0; n < p->batch; n++)
				conv_oc16(&g2, &o, cg, mg, x + (n * p->in_channels + g * cg) * inn,
					  wgp, off, k, bias ? bias + g * mg : NULL, p->relu,
					  y + (n * p->out_channels + g * mg) * outn, xp);
		}
		return;
	}
#endif
	for (int64_t n = 0; n < p->batch; n++) {
		for (int64_t g = 0; g < p->group; g++) {
			const float *xg = x + (n * p->in_channels + g * cg) * inn;
			const float *wg = w + g * mg * k;
			float *yg = y + (n * p->out_channels + g * mg) * outn;
			const float *bg = bias ? bias + g * mg : NULL;
			float beta = bias ? 1.0f : 0.0f;
			if (padded) {
				conv_padded(&g2, &pg, cg, mg, xg, wg, bg, yg, scratch, avx512, p->relu);
				continue;
			}
			if (pointwise || ns > 2) {
				if (bg)
					fill_bias(yg, mg, outn, outn, bg);
				const float *col = xg;
				if (!pointwise) {
					im2col_nd(win, cg, xg, scratch);
					col = scratch;
				}
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)mg,
					    (int)outn, (int)k, 1.0f, wg, (int)k, col, (int)outn, beta,
					    yg, (int)outn);
				if (p->relu)
					relu_rows(yg, mg, outn, outn);
				continue;
			}
			/* Bands of output rows: columns [oh0 * OW, oh1 * OW) of Y. */
			for (int64_t oh0 = 0; oh0 < g2.oh; oh0 += rows) {
				int64_t oh1 = oh0 + rows < g2.oh ? oh0 + rows : g2.oh;
				int64_t nc = (oh1 - oh0) * g2.ow;
				im2col_2d(&g2, cg, xg, oh0, oh1, scratch);
				/* The band's bias right before sgemm reads it back:
				 * still in cache, unlike a whole-image fill. */
				if (bg)
					fill_bias(yg + oh0 * g2.ow, mg, nc, outn, bg);
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)mg,
					    (int)nc, (int)k, 1.0f, wg, (int)k, scratch, (int)nc, beta,
					    yg + oh0 * g2.ow, (int)outn);
				if (p->relu)
					relu_rows(yg + oh0 * g2.ow, mg, nc, outn);
			}
		}
	}
}

void conv_reference(const struct conv_params *p, const float *x, const float *w,
		    const float *bias, float *y)
{
	const struct conv_window *win = &p->win;
	int ns = win->nspatial;
	int64_t cg = p->in_channels / p->group, mg = p->out_channels / p->group;
	int64_t ks = 1, outn = 1, inn = 1;
	for (int i = 0; i < ns; i++) {
		ks *= win->kernel[i];
		outn *= win->out[i];
		inn *= win->in[i];
	}
	for (int64_t n = 0; n < p->batch; n++) {
		for (int64_t m = 0; m < p->out_channels; m++) {
			int64_t g = m / mg;
			int64_t o[CONV_MAX_SPATIAL] = {0};
			for (int64_t j = 0; j < outn; j++) {
				double acc = bias ? bias[m] : 0.0;
				for (int64_t c = 0; c < cg; c++) {
					const float *xc = x + (n * p->in_channels + g * cg + c) * inn;
					const float *wc = w + (m * cg + c) * ks;
					int64_t kk[CONV_MAX_SPATIAL] = {0};
					for (int64_t r = 0; r < ks; r++) {
						int64_t off = 0;
						bool valid = true;
						for (int i = 0; i < ns; i++) {
							int64_t ii = o[i] * win->strides[i] -
								     win->pads[i] +
								     kk[i] * win->dilations[i];
							if (ii < 0 || ii >= win->in[i])
								valid = false;
							off = off * win->in[i] + ii;
						}
						if (valid)
							acc += (double)xc[off] * (double)wc[r];
						for (int i = ns - 1; i >= 0; i--) {
							if (++kk[i] < win->kernel[i])
								break;
							kk[i] = 0;
						}
					}
				}
				y[(n * p->out_channels + m) * outn + j] = (float)acc;
				for (int i = ns - 1; i >= 0; i--) {
					if (++o[i] < win->out[i])
						break;
					o[i] = 0;
				}
			}
		}
	}
}

/* ---- pools ---- */

enum nn_status conv_pool_check(const struct conv_pool_params *p, struct nn_err *e)
{
	const struct conv_window *w = &p->win;
	if (w->nspatial < 1 || w->nspatial > CONV_MAX_SPATIAL)
		return err_set(e, NN_EINVAL, "invalid_model", "", "pool: %d spatial dims",
			       w->nspatial);
	if (p->batch < 0 || p->channels < 1)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "pool: batch %lld, channels %lld (batch must be >= 0, channels >= 1)",
			       (long long)p->batch, (long long)p->channels);
	int64_t ks;
	if (!tensor_fits(p->batch, p->channels, w->in, w->nspatial) ||
	    !tensor_fits(p->batch, p->channels, w->out, w->nspatial) ||
	    !tensor_fits(p->batch, p->channels * 2, w->out, w->nspatial) || /* int64 indices */
	    !prod_dims(w->kernel, w->nspatial, &ks))
		return err_set(e, NN_ETOOBIG, "too_large", "", "pool: tensor sizes overflow");
	return NN_OK;
}

/* Per output position and dim: the window start and the range [lo, hi) of
 * kernel indices that land inside the input. */
struct pool_span {
	int64_t start, lo, hi;
};

static struct pool_span pool_span_of(const struct conv_window *w, int i, int64_t o)
{
	struct pool_span s;
	int64_t d = w->dilations[i], k = w->kernel[i], in = w->in[i];
	s.start = o * w->strides[i] - w->pads[i];
	s.lo = s.start >= 0 ? 0 : (-s.start + d - 1) / d;
	s.hi = in - s.start <= 0 ? 0 : (in - s.start + d - 1) / d;
	if (s.hi > k)
		s.hi = k;
	if (s.lo > s.hi)
		s.lo = s.hi;
	return s;
}

/* Strides of the spatial dims of one plane, row-major and column-major. */
static void plane_strides(const struct conv_window *w, int64_t *row, int64_t *colm)
{
	int ns = w->nspatial;
	row[ns - 1] = 1;
	for (int i = ns - 2; i >= 0; i--)
		row[i] = row[i + 1] * w->in[i + 1];
	colm[0] = 1;
	for (int i = 1; i < ns; i++)
		colm[i] = colm[i - 1] * w->in[i - 1];
}

/* Kernel taps [lo, hi) of one window dim that land inside [0, in). */
static inline void tap_range(int64_t start, int64_t k, int64_t d, int64_t in, int64_t *lo,
			     int64_t *hi)
{
	int64_t l, h;
	if (d == 1) {
		l = start >= 0 ? 0 : -start;
		h = in - start;
	} else {
		l = start >= 0 ? 0 : (-start + d - 1) / d;
		h = in - start <= 0 ? 0 : (in - start + d - 1) / d;
	}
	if (h > k)
		h = k;
	if (l > h)
		l = h;
	*lo = l;
	*hi = h;
}

#ifdef __SSE2__
/* Four outputs of a 2x2 stride-2 max pool from rows r0, r1 (8 floats each). */
static inline void max2x2_s2_x4(const float *r0, const float *r1, float *y)
{
	__m128 a0 = _mm_loadu_ps(r0), a1 = _mm_loadu_ps(r0 + 4);
	__m128 b0 = _mm_loadu_ps(r1), b1 = _mm_loadu_ps(r1 + 4);
	__m128 best = _mm_set1_ps(-INFINITY);
	best = _mm_max_ps(_mm_shuffle_ps(a0, a1, _MM_SHUFFLE(2, 0, 2, 0)), best);
	best = _mm_max_ps(_mm_shuffle_ps(a0, a1, _MM_SHUFFLE(3, 1, 3, 1)), best);
	best = _mm_max_ps(_mm_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0)), best);
	best = _mm_max_ps(_mm_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1)), best);
	_mm_storeu_ps(y, best);
}
#endif

/* 1-D and 2-D pools: the shapes CNNs use, without the N-D odometer. */
static void maxpool_2d(const struct conv_pool_params *p, const float *x, float *y,
		       int64_t *indices)
{
	struct geo2 g = geo2_of(&p->win);
	int64_t inn = g.h * g.w, outn = g.oh * g.ow;
	for (int64_t plane = 0; plane < p->batch * p->channels; plane++) {
		const float *xp = x + plane * inn;
		float *yp = y + plane * outn;
		int64_t *ip = indices ? indices + plane * outn : NULL;
		for (int64_t oh = 0; oh < g.oh; oh++) {
			int64_t hs = oh * g.sh - g.pt, hlo, hhi;
			tap_range(hs, g.kh, g.dh, g.h, &hlo, &hhi);
			/* Columns whose window lies inside the input: no clipping,
			 * fixed tap counts (the whole row of an unpadded pool). */
			int64_t ilo = 0, ihi = 0;
			if (!ip && hlo == 0 && hhi == g.kh) {
				ilo = (g.pl + g.sw - 1) / g.sw;
				int64_t last = g.w - 1 + g.pl - (g.kw - 1) * g.dw;
				ihi = last < 0 ? 0 : last / g.sw + 1;
				if (ihi > g.ow)
					ihi = g.ow;
				if (ilo > ihi)
					ilo = ihi;
			}
			if (ilo < ihi) {
				const float *base = xp + hs * g.w - g.pl;
				float *yr = yp + oh * g.ow;
				if (g.kh == 2 && g.kw == 2 && g.dh == 1 && g.dw == 1) {
					const float *r0 = base, *r1 = base + g.w;
					int64_t ow = ilo;
#ifdef __SSE2__
					/* The 2x2 stride-2 pool of LeNet/VGG, four outputs
					 * at a time: even and odd columns split by shuffles.
					 * maxps returns its second operand when one is NaN,
					 * so with the running max second NaN never wins. */
					if (g.sw == 2) {
						for (; ow + 4 <= ihi; ow += 4)
							max2x2_s2_x4(r0 + 2 * ow, r1 + 2 * ow, yr + ow);
					}
#endif
					for (; ow < ihi; ow++) {
						int64_t c = ow * g.sw;
						float best = -INFINITY;
						best = r0[c] > best ? r0[c] : best;
						best = r0[c + 1] > best ? r0[c + 1] : best;
						best = r1[c] > best ? r1[c] : best;
						best = r1[c + 1] > best ? r1[c + 1] : best;
						yr[ow] = best;
					}
				} else {
					for (int64_t ow = ilo; ow < ihi; ow++) {
						float best = -INFINITY;
						for (int64_t a = 0; a < g.kh; a++) {
							const float *row =
								base + a * g.dh * g.w + ow * g.sw;
							for (int64_t b = 0; b < g.kw; b++) {
								float v = row[b * g.dw];
								best = v > best ? v : best;
							}
						}
						yr[ow] = best;
					}
				}
			}
			for (int64_t ow = 0; ow < g.ow; ow++) {
				if (ow == ilo && ilo < ihi) {
					ow = ihi - 1;
					continue;
				}
				int64_t ws = ow * g.sw - g.pl, wlo, whi;
				tap_range(ws, g.kw, g.dw, g.w, &wlo, &whi);
				float best = -INFINITY;
				int64_t best_off = -1;
				if (!ip) {
					/* Branch-free max (NaN never wins): the
					 * compare-and-branch of the index path
					 * mispredicts on every other tap. */
					for (int64_t a = hlo; a < hhi; a++) {
						const float *row = xp + (hs + a * g.dh) * g.w + ws;
						for (int64_t b = wlo; b < whi; b++) {
							float v = row[b * g.dw];
							best = v > best ? v : best;
						}
					}
					yp[oh * g.ow + ow] = best;
					continue;
				}
				for (int64_t a = hlo; a < hhi; a++) {
					int64_t roff = (hs + a * g.dh) * g.w + ws;
					const float *row = xp + roff;
					for (int64_t b = wlo; b < whi; b++) {
						float v = row[b * g.dw];
						/* The first non-NaN tap names the index,
						 * so a window of -inf still has one. */
						if (v > best || (best_off < 0 && v == v)) {
							best = v;
							best_off = roff + b * g.dw;
						}
					}
				}
				yp[oh * g.ow + ow] = best;
				{
					int64_t idx = -1;
					if (best_off >= 0)
						idx = plane * inn +
						      (p->column_major
							       ? (best_off % g.w) * g.h + best_off / g.w
							       : best_off);
					ip[oh * g.ow + ow] = idx;
				}
			}
		}
	}
}

static void avgpool_2d(const struct conv_pool_params *p, const float *x, float *y)
{
	struct geo2 g = geo2_of(&p->win);
	const struct conv_window *w = &p->win;
	int64_t pad_end_h = w->nspatial == 1 ? 0 : w->pads[2];
	int64_t pad_end_w = w->nspatial == 1 ? w->pads[1] : w->pads[3];
	int64_t inn = g.h * g.w, outn = g.oh * g.ow;
	for (int64_t plane = 0; plane < p->batch * p->channels; plane++) {
		const float *xp = x + plane * inn;
		float *yp = y + plane * outn;
		for (int64_t oh = 0; oh < g.oh; oh++) {
			int64_t hs = oh * g.sh - g.pt, hlo, hhi, hpad, junk;
			tap_range(hs, g.kh, g.dh, g.h, &hlo, &hhi);
			/* Taps before the end of the end padding (the start is
			 * never before the begin padding). */
			tap_range(hs, g.kh, g.dh, g.h + pad_end_h, &junk, &hpad);
			for (int64_t ow = 0; ow < g.ow; ow++) {
				int64_t ws = ow * g.sw - g.pl, wlo, whi, wpad;
				tap_range(ws, g.kw, g.dw, g.w, &wlo, &whi);
				tap_range(ws, g.kw, g.dw, g.w + pad_end_w, &junk, &wpad);
				float sum = 0.0f;
				for (int64_t a = hlo; a < hhi; a++) {
					const float *row = xp + (hs + a * g.dh) * g.w + ws;
					for (int64_t b = wlo; b < whi; b++)
						sum += row[b * g.dw];
				}
				int64_t div = p->count_include_pad ? hpad * wpad
								   : (hhi - hlo) * (whi - wlo);
				yp[oh * g.ow + ow] = div > 0 ? sum / (float)div : 0.0f;
			}
		}
	}
}

void conv_maxpool(const struct conv_pool_params *p, const float *x, float *y, int64_t *indices)
{
	if (p->win.nspatial <= 2) {
		maxpool_2d(p, x, y, indices);
		return;
	}
	const struct conv_window *w = &p->win;
	int ns = w->nspatial;
	int64_t inn = 1, outn = 1;
	for (int i = 0; i < ns; i++) {
		inn *= w->in[i];
		outn *= w->out[i];
	}
	int64_t rs[CONV_MAX_SPATIAL], cs[CONV_MAX_SPATIAL];
	plane_strides(w, rs, cs);
	int64_t last = ns - 1, dl = w->dilations[last];
	for (int64_t plane = 0; plane < p->batch * p->channels; plane++) {
		const float *xp = x + plane * inn;
		int64_t o[CONV_MAX_SPATIAL] = {0};
		for (int64_t j = 0; j < outn; j++) {
			struct pool_span sp[CONV_MAX_SPATIAL];
			bool empty = false;
			for (int i = 0; i < ns; i++) {
				sp[i] = pool_span_of(w, i, o[i]);
				if (sp[i].lo >= sp[i].hi)
					empty = true;
			}
			float best = -INFINITY;
			int64_t best_off = -1;
			if (!empty) {
				int64_t kk[CONV_MAX_SPATIAL];
				for (int i = 0; i < ns; i++)
					kk[i] = sp[i].lo;
				for (;;) {
					int64_t base = 0;
					for (int i = 0; i < last; i++)
						base += (sp[i].start + kk[i] * w->dilations[i]) * rs[i];
					const float *xr = xp + base + sp[last].start;
					for (int64_t q = sp[last].lo; q < sp[last].hi; q++) {
						float v = xr[q * dl];
						/* The first non-NaN tap seeds the max, so a
						 * window of -inf still names an index. */
						if (v > best || (best_off < 0 && !isnan(v))) {
							best = v;
							best_off = base + sp[last].start + q * dl;
						}
					}
					int i = (int)last - 1;
					for (; i >= 0; i--) {
						if (++kk[i] < sp[i].hi)
							break;
						kk[i] = sp[i].lo;
					}
					if (i < 0)
						break;
				}
			}
			y[plane * outn + j] = best;
			if (indices) {
				int64_t idx = -1;
				if (best_off >= 0) {
					if (p->column_major) {
						idx = 0;
						int64_t rem = best_off;
						for (int i = 0; i < ns; i++) {
							idx += (rem / rs[i]) * cs[i];
							rem %= rs[i];
						}
					} else {
						idx = best_off;
					}
					idx += plane * inn;
				}
				indices[plane * outn + j] = idx;
			}
			for (int i = ns - 1; i >= 0; i--) {
				if (++o[i] < w->out[i])
					break;
				o[i] = 0;
			}
		}
	}
}

void conv_avgpool(const struct conv_pool_params *p, const float *x, float *y)
{
	if (p->win.nspatial <= 2) {
		avgpool_2d(p, x, y);
		return;
	}
	const struct conv_window *w = &p->win;
	int ns = w->nspatial;
	int64_t inn = 1, outn = 1;
	for (int i = 0; i < ns; i++) {
		inn *= w->in[i];
		outn *= w->out[i];
	}
	int64_t rs[CONV_MAX_SPATIAL], cs[CONV_MAX_SPATIAL];
	plane_strides(w, rs, cs);
	int64_t last = ns - 1, dl = w->dilations[last];
	for (int64_t plane = 0; plane < p->batch * p->channels; plane++) {
		const float *xp = x + plane * inn;
		int64_t o[CONV_MAX_SPATIAL] = {0};
		for (int64_t j = 0; j < outn; j++) {
			struct pool_span sp[CONV_MAX_SPATIAL];
			bool empty = false;
			int64_t in_range = 1, with_pad = 1;
			for (int i = 0; i < ns; i++) {
				sp[i] = pool_span_of(w, i, o[i]);
				if (sp[i].lo >= sp[i].hi)
					empty = true;
				in_range *= sp[i].hi - sp[i].lo;
				/* Kernel taps inside [-pad_begin, in + pad_end): the
				 * start is never before -pad_begin, so count those
				 * before the end of the end padding. */
				int64_t lim = w->in[i] + w->pads[ns + i] - sp[i].start;
				int64_t d = w->dilations[i];
				int64_t cnt = lim <= 0 ? 0 : (lim + d - 1) / d;
				if (cnt > w->kernel[i])
					cnt = w->kernel[i];
				with_pad *= cnt;
			}
			double sum = 0.0;
			if (!empty) {
				int64_t kk[CONV_MAX_SPATIAL];
				for (int i = 0; i < ns; i++)
					kk[i] = sp[i].lo;
				for (;;) {
					int64_t base = 0;
					for (int i = 0; i < last; i++)
						base += (sp[i].start + kk[i] * w->dilations[i]) * rs[i];
					const float *xr = xp + base + sp[last].start;
					for (int64_t q = sp[last].lo; q < sp[last].hi; q++)
						sum += xr[q * dl];
					int i = (int)last - 1;
					for (; i >= 0; i--) {
						if (++kk[i] < sp[i].hi)
							break;
						kk[i] = sp[i].lo;
					}
					if (i < 0)
						break;
				}
			}
			int64_t div = p->count_include_pad ? with_pad : in_range;
			y[plane * outn + j] = div > 0 ? (float)(sum / (double)div) : 0.0f;
			for (int i = ns - 1; i >= 0; i--) {
				if (++o[i] < w->out[i])
					break;
				o[i] = 0;
			}
		}
	}
}

void conv_global_avgpool(int64_t nc, int64_t spatial, const float *x, float *y)
{
	for (int64_t c = 0; c < nc; c++) {
		const float *xp = x + c * spatial;
		double sum = 0.0;
		for (int64_t i = 0; i < spatial; i++)
			sum += xp[i];
		y[c] = (float)(sum / (double)spatial);
	}
}

void conv_global_maxpool(int64_t nc, int64_t spatial, const float *x, float *y)
{
	for (int64_t c = 0; c < nc; c++) {
		const float *xp = x + c * spatial;
		float best = -INFINITY;
		for (int64_t i = 0; i < spatial; i++)
			best = xp[i] > best ? xp[i] : best;
		y[c] = best;
	}
}

void conv_batchnorm(int64_t batch, int64_t channels, int64_t spatial, const float *x,
		    const float *scale, const float *bias, const float *mean, const float *var,
		    float epsilon, float *y)
{
	for (int64_t c = 0; c < channels; c++) {
		float a = scale[c] / sqrtf(var[c] + epsilon);
		float b = bias[c] - mean[c] * a;
		for (int64_t n = 0; n < batch; n++) {
			const float *xp = x + (n * channels + c) * spatial;
			float *yp = y + (n * channels + c) * spatial;
			for (int64_t i = 0; i < spatial; i++)
				yp[i] = xp[i] * a + b;
		}
	}
}
