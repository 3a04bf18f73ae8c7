/* train_conv: forward/backward kernels of the convolution family for
 * training (see train_conv.h). */
#include "train_conv.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* ---- shared size checks ---- */

/* a * b * c * d into *out without overflow. */
static int mul4(int64_t a, int64_t b, int64_t c, int64_t d, int64_t *out)
{
	int64_t t;
	if (__builtin_mul_overflow(a, b, &t) || __builtin_mul_overflow(t, c, &t) ||
	    __builtin_mul_overflow(t, d, &t))
		return 0;
	*out = t;
	return 1;
}

/* One output dim of a sliding window: floor (or ceil) of
 * (in + pb + pe - dk) / s + 1; with ceil the last window must start inside
 * the input or the begin padding (PyTorch's and ONNX Runtime's rule).
 * Returns 0 on overflow; *out may be < 1 (caller refuses it). */
static int window_out(int64_t in, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe,
		      int ceil_mode, int64_t *out)
{
	int64_t dk, span;
	if (__builtin_mul_overflow(k - 1, d, &dk) || __builtin_add_overflow(dk, 1, &dk) ||
	    __builtin_add_overflow(in, pb, &span) || __builtin_add_overflow(span, pe, &span))
		return 0;
	int64_t num = span - dk;
	if (num < 0) {
		*out = 0;
		return 1;
	}
	int64_t o = num / s + 1;
	if (ceil_mode) {
		o += num % s != 0;
		/* checked even when nothing was rounded up, as PyTorch does: a
		 * window wholly inside the end padding is dropped too */
		if ((o - 1) * s >= in + pb)
			o--;
	}
	*out = o;
	return 1;
}

/* ---- Conv ---- */

enum nn_status tc_conv_init(struct tc_conv *s, struct nn_err *e)
{
	if (s->n < 1 || s->c < 1 || s->h < 1 || s->w < 1)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "Conv: input shape [%lld, %lld, %lld, %lld] has a dim below 1",
			       (long long)s->n, (long long)s->c, (long long)s->h, (long long)s->w);
	if (s->m < 1 || s->kh < 1 || s->kw < 1)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "Conv: weight has %lld output channels and a %lldx%lld kernel (each must be >= 1)",
			       (long long)s->m, (long long)s->kh, (long long)s->kw);
	if (s->stride_h < 1 || s->stride_w < 1 || s->dil_h < 1 || s->dil_w < 1)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "Conv: strides (%lld, %lld) and dilations (%lld, %lld) must be >= 1",
			       (long long)s->stride_h, (long long)s->stride_w, (long long)s->dil_h,
			       (long long)s->dil_w);
	if (s->pad_top < 0 || s->pad_left < 0 || s->pad_bottom < 0 || s->pad_right < 0)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "Conv: pads (%lld, %lld, %lld, %lld) must be >= 0",
			       (long long)s->pad_top, (long long)s->pad_left,
			       (long long)s->pad_bottom, (long long)s->pad_right);
	if (s->group < 1 || s->c % s->group != 0 || s->m % s->group != 0)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "Conv: group %lld must divide both the %lld input and the %lld output channels",
			       (long long)s->group, (long long)s->c, (long long)s->m);
	int64_t oh, ow;
	if (!window_out(s->h, s->kh, s->stride_h, s->dil_h, s->pad_top, s->pad_bottom, 0, &oh) ||
	    !window_out(s->w, s->kw, s->stride_w, s->dil_w, s->pad_left, s->pad_right, 0, &ow))
		return err_set(e, NN_EINVAL, "invalid_model", "", "Conv: window size overflows");
	if (oh < 1 || ow < 1)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "Conv: output would be %lldx%lld (the dilated %lldx%lld kernel does not fit the padded %lldx%lld input)",
			       (long long)oh, (long long)ow, (long long)s->kh, (long long)s->kw,
			       (long long)s->h, (long long)s->w);
	/* Every array the caller sizes, and every GEMM dim (cblas takes int). */
	int64_t t, k, ohw;
	if (!mul4(s->n, s->c, s->h, s->w, &t) || !mul4(s->n, s->m, oh, ow, &t) ||
	    !mul4(s->m, s->c / s->group, s->kh, s->kw, &t) ||
	    !mul4(s->c / s->group, s->kh, s->kw, 1, &k) || !mul4(oh, ow, 1, 1, &ohw) ||
	    !mul4(k + s->m / s->group, ohw, 1, 1, &t) || t > (int64_t)(SIZE_MAX / sizeof(float)) ||
	    k > INT_MAX || ohw > INT_MAX || s->m > INT_MAX || s->h * s->w > INT_MAX)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "Conv: sizes too large (input [%lld, %lld, %lld, %lld], %lld output channels)",
			       (long long)s->n, (long long)s->c, (long long)s->h, (long long)s->w,
			       (long long)s->m);
	s->oh = oh;
	s->ow = ow;
	return NN_OK;
}

/* Images per band: the im2col columns of a band of images sit side by side
 * ([k, band * oh * ow]), so one sgemm per band and group replaces `band`
 * tiny ones when images are small. The band holds at most TC_BAND_FLOATS
 * floats (128 KiB) of columns and GEMM outputs: measured on the cnn
 * fixture's convs, keeping the columns in L2 matters more than larger GEMMs
 * (bands of 512 KiB were 15% slower, 4 MiB 60%), and one image per band
 * writes straight into y and reads dy in place. Depends on the shape only:
 * results are the same for a given shape on every call. */
#define TC_BAND_FLOATS (1 << 15)

static int64_t conv_band(const struct tc_conv *s)
{
	int64_t k = (s->c / s->group) * s->kh * s->kw, mg = s->m / s->group;
	int64_t per = (k + mg) * s->oh * s->ow;
	int64_t band = TC_BAND_FLOATS / per;
	if (band < 1)
		band = 1;
	if (band > s->n)
		band = s->n;
	return band;
}

size_t tc_conv_scratch_floats(const struct tc_conv *s)
{
	int64_t k = (s->c / s->group) * s->kh * s->kw, mg = s->m / s->group;
	/* columns [k, band*ohw], then the band's outputs (or output gradients) of
	 * one group [mg, band*ohw] */
	return (size_t)(conv_band(s) * (k + mg) * s->oh * s->ow);
}

/* Valid output range [lo, hi) along one axis for kernel tap offset `off`
 * (= tap * dil - pad): the outputs o with 0 <= o * stride + off < in. */
static inline void tap_span(int64_t off, int64_t stride, int64_t in, int64_t out, int64_t *lo,
			    int64_t *hi)
{
	if (stride == 1) { /* no divisions: this runs per (channel, tap) */
		int64_t l = off < 0 ? -off : 0, h = in - off < out ? in - off : out;
		if (h < l)
			h = l;
		*lo = l;
		*hi = h;
		return;
	}
	int64_t l = 0;
	if (off < 0)
		l = (-off + stride - 1) / stride;
	int64_t h = 0;
	if (in - off > 0)
		h = (in - off - 1) / stride + 1;
	if (h > out)
		h = out;
	if (l > h)
		l = h;
	*lo = l;
	*hi = h;
}

/* im2col and col2im move rows of ow floats (8 to 24 in small CNNs): fixed-
 * size memcpy blocks compile to plain vector moves, where a memcpy call per
 * row or a loop the compiler must version for aliasing cost more than the
 * copy itself. */
static inline void copy_floats(float *restrict d, const float *restrict src, int64_t n)
{
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		memcpy(d + i, src + i, 8 * sizeof(float));
	if (i + 4 <= n) {
		memcpy(d + i, src + i, 4 * sizeof(float));
		i += 4;
	}
	for (; i < n; i++)
		d[i] = src[i];
}

/* Reductions in eight independent float lanes (a single running sum is one
 * long dependency chain the compiler may not reorder: 4 cycles per element),
 * flushed into a double every 512 elements so long planes keep double-like
 * accuracy. sum_floats: sum p; sum_sq_dev: sum (p - m)^2; sum_prod_dev:
 * sum g * (p - m). */
#define TC_LANE_BLOCK 512

static inline double sum_floats(const float *p, int64_t n)
{
	double acc = 0.0;
	for (int64_t b0 = 0; b0 < n; b0 += TC_LANE_BLOCK) {
		int64_t e = n - b0 < TC_LANE_BLOCK ? n : b0 + TC_LANE_BLOCK, i = b0;
		float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
		for (; i + 8 <= e; i += 8)
			for (int j = 0; j < 8; j++)
				lane[j] += p[i + j];
		for (; i < e; i++)
			acc += p[i];
		for (int j = 0; j < 8; j++)
			acc += lane[j];
	}
	return acc;
}

static inline double sum_sq_dev(const float *p, int64_t n, float m)
{
	double acc = 0.0;
	for (int64_t b0 = 0; b0 < n; b0 += TC_LANE_BLOCK) {
		int64_t e = n - b0 < TC_LANE_BLOCK ? n : b0 + TC_LANE_BLOCK, i = b0;
		float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
		for (; i + 8 <= e; i += 8)
			for (int j = 0; j < 8; j++) {
				float d = p[i + j] - m;
				lane[j] += d * d;
			}
		for (; i < e; i++) {
			double d = (double)p[i] - m;
			acc += d * d;
		}
		for (int j = 0; j < 8; j++)
			acc += lane[j];
	}
	return acc;
}

static inline double sum_prod_dev(const float *g, const float *p, int64_t n, float m)
{
	double acc = 0.0;
	for (int64_t b0 = 0; b0 < n; b0 += TC_LANE_BLOCK) {
		int64_t e = n - b0 < TC_LANE_BLOCK ? n : b0 + TC_LANE_BLOCK, i = b0;
		float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
		for (; i + 8 <= e; i += 8)
			for (int j = 0; j < 8; j++)
				lane[j] += g[i + j] * (p[i + j] - m);
		for (; i < e; i++)
			acc += (double)g[i] * ((double)p[i] - m);
		for (int j = 0; j < 8; j++)
			acc += lane[j];
	}
	return acc;
}

static inline void add_floats(float *restrict d, const float *restrict src, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		d[i] += src[i];
}

/* Columns of one image and group: row (ci, ki, kj) of col (rows ld floats
 * apart) holds, for every output position, the input it multiplies with that
 * tap (0 in padding). */
static void im2col(const struct tc_conv *s, int64_t cg, const float *x, float *col, int64_t ld)
{
	int64_t oh = s->oh, ow = s->ow, h = s->h, w = s->w;
	int64_t sh = s->stride_h, sw = s->stride_w;
	for (int64_t ci = 0; ci < cg; ci++) {
		const float *xp = x + ci * h * w;
		for (int64_t ki = 0; ki < s->kh; ki++) {
			int64_t offh = ki * s->dil_h - s->pad_top, ylo, yhi;
			tap_span(offh, sh, h, oh, &ylo, &yhi);
			for (int64_t kj = 0; kj < s->kw; kj++) {
				int64_t offw = kj * s->dil_w - s->pad_left, xlo, xhi;
				tap_span(offw, sw, w, ow, &xlo, &xhi);
				float *c = col;
				col += ld;
				if (ylo > 0)
					memset(c, 0, (size_t)(ylo * ow) * sizeof(float));
				int64_t oy0 = ylo; /* first row the general loop below copies */
				if (sw == 1 && xlo == 0 && xhi == ow && yhi > ylo) {
					/* every row in range: a plain strided 2-D copy */
					int64_t base = offh * w + offw, step = sh * w;
					for (int64_t oy = ylo; oy < yhi; oy++)
						copy_floats(c + oy * ow, xp + (base + oy * step), ow);
					oy0 = yhi;
				}
				for (int64_t oy = oy0; oy < yhi; oy++) {
					float *cr = c + oy * ow;
					/* input index of output ox: row + ox * sw (offw may be
					 * negative, so no pointer is formed before the plane) */
					int64_t row = (oy * sh + offh) * w + offw;
					for (int64_t ox = 0; ox < xlo; ox++)
						cr[ox] = 0.0f;
					if (sw == 1) {
						copy_floats(cr + xlo, xp + (row + xlo), xhi - xlo);
					} else {
						for (int64_t ox = xlo; ox < xhi; ox++)
							cr[ox] = xp[row + ox * sw];
					}
					for (int64_t ox = xhi; ox < ow; ox++)
						cr[ox] = 0.0f;
				}
				if (yhi < oh)
					memset(c + yhi * ow, 0,
					       (size_t)((oh - yhi) * ow) * sizeof(float));
			}
		}
	}
}

/* The adjoint of im2col: dx (one image and group, zeroed by the caller)
 * accumulates every column entry at the input position it was read from. */
static void col2im(const struct tc_conv *s, int64_t cg, const float *col, int64_t ld, float *dx)
{
	int64_t oh = s->oh, ow = s->ow, h = s->h, w = s->w;
	int64_t sh = s->stride_h, sw = s->stride_w;
	for (int64_t ci = 0; ci < cg; ci++) {
		float *dp = dx + ci * h * w;
		for (int64_t ki = 0; ki < s->kh; ki++) {
			int64_t offh = ki * s->dil_h - s->pad_top, ylo, yhi;
			tap_span(offh, sh, h, oh, &ylo, &yhi);
			for (int64_t kj = 0; kj < s->kw; kj++) {
				int64_t offw = kj * s->dil_w - s->pad_left, xlo, xhi;
				tap_span(offw, sw, w, ow, &xlo, &xhi);
				const float *c = col;
				col += ld;
				if (sw == 1 && xlo == 0 && xhi == ow && yhi > ylo) {
					/* every row in range: a plain strided 2-D add */
					int64_t base = offh * w + offw, step = sh * w;
					for (int64_t oy = ylo; oy < yhi; oy++)
						add_floats(dp + (base + oy * step), c + oy * ow, ow);
					continue;
				}
				for (int64_t oy = ylo; oy < yhi; oy++) {
					const float *cr = c + oy * ow;
					int64_t row = (oy * sh + offh) * w + offw;
					if (sw == 1) {
						add_floats(dp + (row + xlo), cr + xlo, xhi - xlo);
					} else {
						for (int64_t ox = xlo; ox < xhi; ox++)
							dp[row + ox * sw] += cr[ox];
					}
				}
			}
		}
	}
}

void tc_conv_forward(const struct tc_conv *s, const float *x, const float *w, const float *b,
		     float *y, float *scratch)
{
	int64_t g = s->group, cg = s->c / g, mg = s->m / g;
	int64_t k = cg * s->kh * s->kw, ohw = s->oh * s->ow, hw = s->h * s->w;
	int64_t band = conv_band(s);
	for (int64_t i0 = 0; i0 < s->n; i0 += band) {
		int64_t nb = s->n - i0 < band ? s->n - i0 : band, ld = nb * ohw;
		float *cols = scratch, *yt = scratch + k * ld;
		for (int64_t gi = 0; gi < g; gi++) {
			for (int64_t j = 0; j < nb; j++)
				im2col(s, cg, x + ((i0 + j) * s->c + gi * cg) * hw, cols + j * ohw, ld);
			/* one image: its slice of y is already [mg, ohw], no copy */
			float *out = nb == 1 ? y + (i0 * s->m + gi * mg) * ohw : yt;
			/* out [mg, nb*ohw] = W_g [mg, k] * cols [k, nb*ohw] */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)mg, (int)ld,
				    (int)k, 1.0f, w + gi * mg * k, (int)k, cols, (int)ld, 0.0f, out,
				    (int)ld);
			if (nb == 1) {
				if (b)
					for (int64_t m = 0; m < mg; m++) {
						float bm = b[gi * mg + m], *row = out + m * ohw;
						for (int64_t p = 0; p < ohw; p++)
							row[p] += bm;
					}
				continue;
			}
			for (int64_t m = 0; m < mg; m++) {
				float bm = b ? b[gi * mg + m] : 0.0f;
				for (int64_t j = 0; j < nb; j++) {
					const float *src = yt + m * ld + j * ohw;
					float *dst = y + ((i0 + j) * s->m + gi * mg + m) * ohw;
					for (int64_t p = 0; p < ohw; p++)
						dst[p] = src[p] + bm;
				}
			}
		}
	}
}

void tc_conv_backward(const struct tc_conv *s, const float *x, const float *w, const float *dy,
		      float *dx, float *dw, float *db, float *scratch)
{
	int64_t g = s->group, cg = s->c / g, mg = s->m / g;
	int64_t k = cg * s->kh * s->kw, ohw = s->oh * s->ow, hw = s->h * s->w;
	int64_t band = conv_band(s);
	if (db) {
		for (int64_t m = 0; m < s->m; m++) {
			double acc = 0.0;
			for (int64_t i = 0; i < s->n; i++)
				acc += sum_floats(dy + (i * s->m + m) * ohw, ohw);
			db[m] = (float)acc;
		}
	}
	for (int64_t i0 = 0; i0 < s->n; i0 += band) {
		int64_t nb = s->n - i0 < band ? s->n - i0 : band, ld = nb * ohw;
		float *cols = scratch, *dyt = scratch + k * ld;
		/* dw is overwritten by the first band and accumulated by the rest. */
		float beta = i0 == 0 ? 0.0f : 1.0f;
		for (int64_t gi = 0; gi < g; gi++) {
			const float *wg = w + gi * mg * k;
			for (int64_t j = 0; j < nb; j++)
				im2col(s, cg, x + ((i0 + j) * s->c + gi * cg) * hw, cols + j * ohw, ld);
			const float *dyg = dyt;
			if (nb == 1) /* one image: its slice of dy is already [mg, ohw] */
				dyg = dy + (i0 * s->m + gi * mg) * ohw;
			else
				for (int64_t m = 0; m < mg; m++)
					for (int64_t j = 0; j < nb; j++)
						memcpy(dyt + m * ld + j * ohw,
						       dy + ((i0 + j) * s->m + gi * mg + m) * ohw,
						       (size_t)ohw * sizeof(float));
			/* dW_g [mg, k] (+)= dyt [mg, nb*ohw] * cols^T [nb*ohw, k] */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mg, (int)k,
				    (int)ld, 1.0f, dyg, (int)ld, cols, (int)ld, beta,
				    dw + gi * mg * k, (int)k);
			if (!dx)
				continue;
			/* dcols [k, nb*ohw] = W_g^T [k, mg] * dyt [mg, nb*ohw] into the
			 * columns' space (consumed above), then col2im per image */
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)ld,
				    (int)mg, 1.0f, wg, (int)k, dyg, (int)ld, 0.0f, cols, (int)ld);
			for (int64_t j = 0; j < nb; j++) {
				float *dxg = dx + ((i0 + j) * s->c + gi * cg) * hw;
				memset(dxg, 0, (size_t)(cg * hw) * sizeof(float));
				col2im(s, cg, cols + j * ohw, ld, dxg);
			}
		}
	}
}

/* ---- pools ---- */

enum nn_status tc_pool_init(struct tc_pool *s, struct nn_err *e)
{
	if (s->n < 1 || s->c < 1 || s->h < 1 || s->w < 1)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "pool: input shape [%lld, %lld, %lld, %lld] has a dim below 1",
			       (long long)s->n, (long long)s->c, (long long)s->h, (long long)s->w);
	if (s->kh < 1 || s->kw < 1 || s->stride_h < 1 || s->stride_w < 1 || s->dil_h < 1 ||
	    s->dil_w < 1)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "pool: kernel %lldx%lld, strides (%lld, %lld), dilations (%lld, %lld) must be >= 1",
			       (long long)s->kh, (long long)s->kw, (long long)s->stride_h,
			       (long long)s->stride_w, (long long)s->dil_h, (long long)s->dil_w);
	if (s->pad_top < 0 || s->pad_left < 0 || s->pad_bottom < 0 || s->pad_right < 0)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "pool: pads (%lld, %lld, %lld, %lld) must be >= 0",
			       (long long)s->pad_top, (long long)s->pad_left,
			       (long long)s->pad_bottom, (long long)s->pad_right);
	int64_t oh, ow;
	if (!window_out(s->h, s->kh, s->stride_h, s->dil_h, s->pad_top, s->pad_bottom,
			s->ceil_mode, &oh) ||
	    !window_out(s->w, s->kw, s->stride_w, s->dil_w, s->pad_left, s->pad_right,
			s->ceil_mode, &ow))
		return err_set(e, NN_EINVAL, "invalid_model", "", "pool: window size overflows");
	if (oh < 1 || ow < 1)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "pool: output would be %lldx%lld (the dilated %lldx%lld kernel does not fit the padded %lldx%lld input)",
			       (long long)oh, (long long)ow, (long long)s->kh, (long long)s->kw,
			       (long long)s->h, (long long)s->w);
	int64_t t;
	/* argmax holds int32 indices into one h*w plane. */
	if (!mul4(s->n, s->c, s->h, s->w, &t) || !mul4(s->n, s->c, oh, ow, &t) ||
	    s->h * s->w > INT32_MAX || t > (int64_t)(SIZE_MAX / sizeof(float)))
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "pool: sizes too large (input [%lld, %lld, %lld, %lld])",
			       (long long)s->n, (long long)s->c, (long long)s->h, (long long)s->w);
	s->oh = oh;
	s->ow = ow;
	return NN_OK;
}

/* Taps [lo, hi) of a window starting at `start` (dilation d, k taps) that
 * fall inside [0, in). */
static inline void window_taps(int64_t start, int64_t k, int64_t d, int64_t in, int64_t *lo,
			       int64_t *hi)
{
	if (d == 1) { /* the common case, without the divisions (per output) */
		int64_t l = start < 0 ? -start : 0, h = in - start < k ? in - start : k;
		if (h < l)
			h = l;
		*lo = l;
		*hi = h;
		return;
	}
	int64_t l = 0;
	if (start < 0)
		l = (-start + d - 1) / d;
	int64_t h = 0;
	if (in - start > 0)
		h = (in - start - 1) / d + 1;
	if (h > k)
		h = k;
	if (l > h)
		l = h;
	*lo = l;
	*hi = h;
}

/* Max of one window, taps [tylo, tyhi) x [txlo, txhi), as PyTorch picks it:
 * strict > keeps the first maximum in scan order, a NaN wins (and stays).
 * The updates are selects, not branches: on real data the comparison is a
 * coin toss the branch predictor loses (3x slower on the cnn fixture's
 * pools). Empty window: -inf and argmax -1. */
static inline float window_max(const float *xp, int64_t row0, int64_t rstep, int64_t cstep,
			       int64_t tylo, int64_t tyhi, int64_t txlo, int64_t txhi, int32_t *at_out)
{
	if (tylo >= tyhi || txlo >= txhi) {
		*at_out = -1;
		return -INFINITY;
	}
	int32_t at = (int32_t)(row0 + tylo * rstep + txlo * cstep);
	float best = xp[at];
	for (int64_t ty = tylo; ty < tyhi; ty++) {
		int64_t row = row0 + ty * rstep;
		for (int64_t tx = txlo; tx < txhi; tx++) {
			int32_t idx = (int32_t)(row + tx * cstep);
			float v = xp[idx];
			/* all-ones when v replaces best; the ternaries GCC turns into
			 * branches, masks it cannot */
			uint32_t m = -(uint32_t)((v > best) | (v != v)), vb, bb;
			memcpy(&vb, &v, sizeof vb);
			memcpy(&bb, &best, sizeof bb);
			bb = (vb & m) | (bb & ~m);
			memcpy(&best, &bb, sizeof best);
			at = (int32_t)(((uint32_t)idx & m) | ((uint32_t)at & ~m));
		}
	}
	*at_out = at;
	return best;
}

#ifdef __SSE2__
/* One tap of four windows at once: lanes where v beats best (or is NaN)
 * take v and its index, in the same order and with the same rule as
 * window_max. */
static inline void max4_step(__m128 v, __m128i idx, __m128 *best, __m128i *at)
{
	__m128 m = _mm_or_ps(_mm_cmpgt_ps(v, *best), _mm_cmpunord_ps(v, v));
	__m128i mi = _mm_castps_si128(m);
	*best = _mm_or_ps(_mm_and_ps(m, v), _mm_andnot_ps(m, *best));
	*at = _mm_or_si128(_mm_and_si128(mi, idx), _mm_andnot_si128(mi, *at));
}

/* MaxPool 2x2 stride 2 without padding or dilation whose windows all lie
 * inside the input (the LeNet/VGG pool): four outputs per step, the two
 * taps of each input row split into even and odd columns by shuffles. */
static void maxpool_2x2s2(const struct tc_pool *s, const float *x, float *y, int32_t *argmax)
{
	int64_t hw = s->h * s->w, ohw = s->oh * s->ow, w = s->w;
	for (int64_t pl = 0; pl < s->n * s->c; pl++) {
		const float *xp = x + pl * hw;
		float *yp = y + pl * ohw;
		int32_t *ap = argmax + pl * ohw;
		for (int64_t oy = 0; oy < s->oh; oy++) {
			const float *r0 = xp + 2 * oy * w, *r1 = r0 + w;
			int32_t i0 = (int32_t)(2 * oy * w);
			int64_t ox = 0;
			for (; ox + 4 <= s->ow; ox += 4) {
				__m128 a0 = _mm_loadu_ps(r0 + 2 * ox), b0 = _mm_loadu_ps(r0 + 2 * ox + 4);
				__m128 a1 = _mm_loadu_ps(r1 + 2 * ox), b1 = _mm_loadu_ps(r1 + 2 * ox + 4);
				__m128 best = _mm_shuffle_ps(a0, b0, _MM_SHUFFLE(2, 0, 2, 0));
				__m128 odd0 = _mm_shuffle_ps(a0, b0, _MM_SHUFFLE(3, 1, 3, 1));
				__m128 even1 = _mm_shuffle_ps(a1, b1, _MM_SHUFFLE(2, 0, 2, 0));
				__m128 odd1 = _mm_shuffle_ps(a1, b1, _MM_SHUFFLE(3, 1, 3, 1));
				int32_t c = i0 + (int32_t)(2 * ox);
				__m128i at = _mm_setr_epi32(c, c + 2, c + 4, c + 6);
				__m128i one = _mm_set1_epi32(1), wv = _mm_set1_epi32((int32_t)w);
				__m128i i01 = _mm_add_epi32(at, one), i10 = _mm_add_epi32(at, wv);
				__m128i i11 = _mm_add_epi32(i10, one);
				max4_step(odd0, i01, &best, &at);
				max4_step(even1, i10, &best, &at);
				max4_step(odd1, i11, &best, &at);
				_mm_storeu_ps(yp + oy * s->ow + ox, best);
				_mm_storeu_si128((__m128i *)(void *)(ap + oy * s->ow + ox), at);
			}
			for (; ox < s->ow; ox++)
				yp[oy * s->ow + ox] = window_max(xp, 2 * oy * w + 2 * ox, w, 1, 0, 2, 0, 2,
								 &ap[oy * s->ow + ox]);
		}
	}
}
#endif

void tc_maxpool_forward(const struct tc_pool *s, const float *x, float *y, int32_t *argmax)
{
	int64_t hw = s->h * s->w, ohw = s->oh * s->ow;
#ifdef __SSE2__
	if (s->kh == 2 && s->kw == 2 && s->stride_h == 2 && s->stride_w == 2 && s->dil_h == 1 &&
	    s->dil_w == 1 && s->pad_top == 0 && s->pad_left == 0 && 2 * s->oh <= s->h &&
	    2 * s->ow <= s->w) {
		maxpool_2x2s2(s, x, y, argmax);
		return;
	}
#endif
	for (int64_t pl = 0; pl < s->n * s->c; pl++) {
		const float *xp = x + pl * hw;
		float *yp = y + pl * ohw;
		int32_t *ap = argmax + pl * ohw;
		for (int64_t oy = 0; oy < s->oh; oy++) {
			int64_t y0 = oy * s->stride_h - s->pad_top, tylo, tyhi;
			window_taps(y0, s->kh, s->dil_h, s->h, &tylo, &tyhi);
			for (int64_t ox = 0; ox < s->ow; ox++) {
				int64_t x0 = ox * s->stride_w - s->pad_left, txlo, txhi;
				window_taps(x0, s->kw, s->dil_w, s->w, &txlo, &txhi);
				yp[oy * s->ow + ox] =
					window_max(xp, y0 * s->w + x0, s->dil_h * s->w, s->dil_w,
						   tylo, tyhi, txlo, txhi, &ap[oy * s->ow + ox]);
			}
		}
	}
}

void tc_maxpool_backward(const struct tc_pool *s, const float *dy, const int32_t *argmax, float *dx)
{
	int64_t hw = s->h * s->w, ohw = s->oh * s->ow;
	memset(dx, 0, (size_t)(s->n * s->c * hw) * sizeof(float));
	for (int64_t pl = 0; pl < s->n * s->c; pl++) {
		float *dp = dx + pl * hw;
		const float *gp = dy + pl * ohw;
		const int32_t *ap = argmax + pl * ohw;
		for (int64_t o = 0; o < ohw; o++)
			if (ap[o] >= 0)
				dp[ap[o]] += gp[o];
	}
}

/* Window of output (oy, ox) along one axis: in-range taps [lo, hi) and the
 * divisor's share: taps inside the padded input when count_include_pad (the
 * part ceil_mode adds past the end padding excluded), else in-range taps. */
struct avg_axis {
	int64_t start, lo, hi, count;
};

static struct avg_axis avg_axis_of(int64_t o, int64_t stride, int64_t pad_b, int64_t pad_e,
				   int64_t k, int64_t d, int64_t in, int include_pad)
{
	struct avg_axis a;
	a.start = o * stride - pad_b;
	window_taps(a.start, k, d, in, &a.lo, &a.hi);
	if (include_pad) {
		int64_t plo, phi;
		/* taps inside [-pad_b, in + pad_e) */
		window_taps(a.start + pad_b, k, d, in + pad_b + pad_e, &plo, &phi);
		a.count = phi - plo;
	} else {
		a.count = a.hi - a.lo;
	}
	return a;
}

void tc_avgpool_forward(const struct tc_pool *s, const float *x, float *y)
{
	int64_t hw = s->h * s->w, ohw = s->oh * s->ow;
	for (int64_t oy = 0; oy < s->oh; oy++) {
		struct avg_axis ay = avg_axis_of(oy, s->stride_h, s->pad_top, s->pad_bottom, s->kh,
						 s->dil_h, s->h, s->count_include_pad);
		for (int64_t ox = 0; ox < s->ow; ox++) {
			struct avg_axis ax =
				avg_axis_of(ox, s->stride_w, s->pad_left, s->pad_right, s->kw,
					    s->dil_w, s->w, s->count_include_pad);
			int64_t cnt = ay.count * ax.count;
			for (int64_t pl = 0; pl < s->n * s->c; pl++) {
				const float *xp = x + pl * hw;
				float acc = 0.0f;
				for (int64_t ty = ay.lo; ty < ay.hi; ty++) {
					int64_t row = (ay.start + ty * s->dil_h) * s->w + ax.start;
					for (int64_t tx = ax.lo; tx < ax.hi; tx++)
						acc += xp[row + tx * s->dil_w];
				}
				y[pl * ohw + oy * s->ow + ox] = cnt > 0 ? acc / (float)cnt : 0.0f;
			}
		}
	}
}

void tc_avgpool_backward(const struct tc_pool *s, const float *dy, float *dx)
{
	int64_t hw = s->h * s->w, ohw = s->oh * s->ow;
	memset(dx, 0, (size_t)(s->n * s->c * hw) * sizeof(float));
	for (int64_t oy = 0; oy < s->oh; oy++) {
		struct avg_axis ay = avg_axis_of(oy, s->stride_h, s->pad_top, s->pad_bottom, s->kh,
						 s->dil_h, s->h, s->count_include_pad);
		for (int64_t ox = 0; ox < s->ow; ox++) {
			struct avg_axis ax =
				avg_axis_of(ox, s->stride_w, s->pad_left, s->pad_right, s->kw,
					    s->dil_w, s->w, s->count_include_pad);
			int64_t cnt = ay.count * ax.count;
			if (cnt <= 0)
				continue;
			for (int64_t pl = 0; pl < s->n * s->c; pl++) {
				float *dp = dx + pl * hw;
				float g = dy[pl * ohw + oy * s->ow + ox] / (float)cnt;
				for (int64_t ty = ay.lo; ty < ay.hi; ty++) {
					int64_t row = (ay.start + ty * s->dil_h) * s->w + ax.start;
					for (int64_t tx = ax.lo; tx < ax.hi; tx++)
						dp[row + tx * s->dil_w] += g;
				}
			}
		}
	}
}

void tc_gap_forward(int64_t n, int64_t c, int64_t hw, const float *x, float *y)
{
	for (int64_t pl = 0; pl < n * c; pl++) {
		y[pl] = (float)(sum_floats(x + pl * hw, hw) / (double)hw);
	}
}

void tc_gap_backward(int64_t n, int64_t c, int64_t hw, const float *dy, float *dx)
{
	for (int64_t pl = 0; pl < n * c; pl++) {
		float g = dy[pl] / (float)hw;
		float *dp = dx + pl * hw;
		for (int64_t p = 0; p < hw; p++)
			dp[p] = g;
	}
}

/* ---- BatchNormalization ---- */

void tc_bn_train_forward(int64_t n, int64_t c, int64_t hw, const float *x, const float *scale,
			 const float *bias, float *running_mean, float *running_var, float momentum,
			 float epsilon, float *y, float *save_mean, float *save_invstd)
{
	int64_t cnt = n * hw;
	for (int64_t ch = 0; ch < c; ch++) {
		/* Two passes: the mean first, then the centred squares, so a large
		 * mean does not cancel the variance away. */
		double sum = 0.0;
		for (int64_t i = 0; i < n; i++)
			sum += sum_floats(x + (i * c + ch) * hw, hw);
		double mean = sum / (double)cnt;
		double ss = 0.0;
		for (int64_t i = 0; i < n; i++)
			ss += sum_sq_dev(x + (i * c + ch) * hw, hw, (float)mean);
		double var = ss / (double)cnt;
		double invstd = 1.0 / sqrt(var + (double)epsilon);
		save_mean[ch] = (float)mean;
		save_invstd[ch] = (float)invstd;
		float a = (float)(invstd * scale[ch]);
		float b = (float)(bias[ch] - mean * invstd * scale[ch]);
		for (int64_t i = 0; i < n; i++) {
			const float *xp = x + (i * c + ch) * hw;
			float *yp = y + (i * c + ch) * hw;
			for (int64_t p = 0; p < hw; p++)
				yp[p] = xp[p] * a + b;
		}
		if (running_mean && running_var) {
			double unbiased = cnt > 1 ? ss / (double)(cnt - 1) : var;
			running_mean[ch] = (float)(running_mean[ch] * (double)momentum +
						   mean * (1.0 - (double)momentum));
			running_var[ch] = (float)(running_var[ch] * (double)momentum +
						  unbiased * (1.0 - (double)momentum));
		}
	}
}

void tc_bn_infer_forward(int64_t n, int64_t c, int64_t hw, const float *x, const float *scale,
			 const float *bias, const float *mean, const float *var, float epsilon, float *y)
{
	for (int64_t ch = 0; ch < c; ch++) {
		float a = scale[ch] / sqrtf(var[ch] + epsilon);
		float b = bias[ch] - mean[ch] * a;
		for (int64_t i = 0; i < n; i++) {
			const float *xp = x + (i * c + ch) * hw;
			float *yp = y + (i * c + ch) * hw;
			for (int64_t p = 0; p < hw; p++)
				yp[p] = xp[p] * a + b;
		}
	}
}

void tc_bn_train_backward(int64_t n, int64_t c, int64_t hw, const float *x, const float *scale,
			  const float *save_mean, const float *save_invstd, const float *dy,
			  float *dx, float *dscale, float *dbias)
{
	int64_t cnt = n * hw;
	for (int64_t ch = 0; ch < c; ch++) {
		double mean = save_mean[ch], invstd = save_invstd[ch];
		double sdy = 0.0, sdyx = 0.0;
		for (int64_t i = 0; i < n; i++) {
			const float *xp = x + (i * c + ch) * hw;
			const float *gp = dy + (i * c + ch) * hw;
			sdy += sum_floats(gp, hw);
			sdyx += sum_prod_dev(gp, xp, hw, save_mean[ch]);
		}
		/* dscale = sum(dy * xhat), dbias = sum(dy);
		 * dx = scale * invstd * (dy - dbias / N - xhat * dscale / N). */
		double dsc = sdyx * invstd;
		if (dscale)
			dscale[ch] = (float)dsc;
		if (dbias)
			dbias[ch] = (float)sdy;
		if (!dx)
			continue;
		double k = scale[ch] * invstd;
		float a = (float)k;                                          /* * dy */
		float bx = (float)(-k * invstd * dsc / (double)cnt);         /* * (x - mean) */
		float c0 = (float)(-k * sdy / (double)cnt);
		float fm = (float)mean;
		for (int64_t i = 0; i < n; i++) {
			const float *xp = x + (i * c + ch) * hw;
			const float *gp = dy + (i * c + ch) * hw;
			float *dp = dx + (i * c + ch) * hw;
			for (int64_t p = 0; p < hw; p++)
				dp[p] = gp[p] * a + (xp[p] - fm) * bx + c0;
		}
	}
}

void tc_bn_infer_backward(int64_t n, int64_t c, int64_t hw, const float *scale, const float *var,
			  float epsilon, const float *dy, float *dx)
{
	for (int64_t ch = 0; ch < c; ch++) {
		float a = scale[ch] / sqrtf(var[ch] + epsilon);
		for (int64_t i = 0; i < n; i++) {
			const float *gp = dy + (i * c + ch) * hw;
			float *dp = dx + (i * c + ch) * hw;
			for (int64_t p = 0; p < hw; p++)
				dp[p] = gp[p] * a;
		}
	}
}

void tc_bn_infer_backward_params(int64_t n, int64_t c, int64_t hw, const float *x,
				 const float *mean, const float *var, float epsilon,
				 const float *dy, float *dscale, float *dbias)
{
	for (int64_t ch = 0; ch < c; ch++) {
		double sdy = 0.0, sdyx = 0.0;
		for (int64_t i = 0; i < n; i++) {
			const float *xp = x + (i * c + ch) * hw;
			const float *gp = dy + (i * c + ch) * hw;
			sdy += sum_floats(gp, hw);
			sdyx += sum_prod_dev(gp, xp, hw, mean[ch]);
		}
		if (dscale)
			dscale[ch] = (float)(sdyx / sqrt((double)var[ch] + (double)epsilon));
		if (dbias)
			dbias[ch] = (float)sdy;
	}
}

/* ---- Pad ---- */

enum nn_status tc_pad_init(struct tc_pad *s, struct nn_err *e)
{
	if (s->n < 1 || s->c < 1 || s->h < 1 || s->w < 1)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "Pad: input shape [%lld, %lld, %lld, %lld] has a dim below 1",
			       (long long)s->n, (long long)s->c, (long long)s->h, (long long)s->w);
	int64_t oh, ow, t;
	if (__builtin_add_overflow(s->h, s->pad_top, &oh) ||
	    __builtin_add_overflow(oh, s->pad_bottom, &oh) ||
	    __builtin_add_overflow(s->w, s->pad_left, &ow) ||
	    __builtin_add_overflow(ow, s->pad_right, &ow))
		return err_set(e, NN_EINVAL, "invalid_model", "", "Pad: padded size overflows");
	if (oh < 1 || ow < 1)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "Pad: output would be %lldx%lld (pads crop the %lldx%lld input away)",
			       (long long)oh, (long long)ow, (long long)s->h, (long long)s->w);
	if (!mul4(s->n, s->c, oh, ow, &t) || t > (int64_t)(SIZE_MAX / sizeof(float)) ||
	    !mul4(s->n, s->c, s->h, s->w, &t))
		return err_set(e, NN_EINVAL, "invalid_model", "", "Pad: sizes too large");
	s->oh = oh;
	s->ow = ow;
	return NN_OK;
}

/* Rows/columns of y that hold x: y index o maps to x index o - pad_begin;
 * [lo, hi) is the range of o with 0 <= o - pad_begin < in. */
static void pad_span(int64_t pad_b, int64_t in, int64_t out, int64_t *lo, int64_t *hi)
{
	int64_t l = pad_b > 0 ? pad_b : 0;
	int64_t h = pad_b + in;
	if (h > out)
		h = out;
	if (l > h)
		l = h;
	*lo = l;
	*hi = h;
}

void tc_pad_forward(const struct tc_pad *s, const float *x, float value, float *y)
{
	int64_t ylo, yhi, xlo, xhi;
	pad_span(s->pad_top, s->h, s->oh, &ylo, &yhi);
	pad_span(s->pad_left, s->w, s->ow, &xlo, &xhi);
	for (int64_t pl = 0; pl < s->n * s->c; pl++) {
		const float *xp = x + pl * s->h * s->w;
		float *yp = y + pl * s->oh * s->ow;
		for (int64_t oy = 0; oy < s->oh; oy++) {
			float *yr = yp + oy * s->ow;
			if (oy < ylo || oy >= yhi) {
				for (int64_t ox = 0; ox < s->ow; ox++)
					yr[ox] = value;
				continue;
			}
			int64_t row = (oy - s->pad_top) * s->w - s->pad_left;
			for (int64_t ox = 0; ox < xlo; ox++)
				yr[ox] = value;
			if (xhi > xlo)
				memcpy(yr + xlo, xp + (row + xlo), (size_t)(xhi - xlo) * sizeof(float));
			for (int64_t ox = xhi; ox < s->ow; ox++)
				yr[ox] = value;
		}
	}
}

void tc_pad_backward(const struct tc_pad *s, const float *dy, float *dx)
{
	int64_t ylo, yhi, xlo, xhi;
	pad_span(s->pad_top, s->h, s->oh, &ylo, &yhi);
	pad_span(s->pad_left, s->w, s->ow, &xlo, &xhi);
	memset(dx, 0, (size_t)(s->n * s->c * s->h * s->w) * sizeof(float));
	for (int64_t pl = 0; pl < s->n * s->c; pl++) {
		float *dp = dx + pl * s->h * s->w;
		const float *gp = dy + pl * s->oh * s->ow;
		for (int64_t oy = ylo; oy < yhi; oy++) {
			const float *gr = gp + oy * s->ow;
			int64_t row = (oy - s->pad_top) * s->w - s->pad_left;
			if (xhi > xlo)
				memcpy(dp + (row + xlo), gr + xlo, (size_t)(xhi - xlo) * sizeof(float));
		}
	}
}
