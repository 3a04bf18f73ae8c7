/* train_conv: forward/backward kernels of the convolution family for
 * training (see train_conv.h). */
#include "train_conv.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

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
	    !mul4(k, ohw, 1, 1, &t) || t > (int64_t)(SIZE_MAX / sizeof(float)) || k > INT_MAX ||
	    ohw > INT_MAX || s->m > INT_MAX || s->h * s->w > INT_MAX)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "Conv: sizes too large (input [%lld, %lld, %lld, %lld], %lld output channels)",
			       (long long)s->n, (long long)s->c, (long long)s->h, (long long)s->w,
			       (long long)s->m);
	s->oh = oh;
	s->ow = ow;
	return NN_OK;
}

/* 1x1, stride 1, no padding: the input plane of a group is already the
 * column matrix, so no im2col and no scratch. */
static int conv_pointwise(const struct tc_conv *s)
{
	return s->kh == 1 && s->kw == 1 && s->stride_h == 1 && s->stride_w == 1 &&
	       s->pad_top == 0 && s->pad_left == 0 && s->pad_bottom == 0 && s->pad_right == 0;
}

size_t tc_conv_scratch_floats(const struct tc_conv *s)
{
	if (conv_pointwise(s))
		return 1; /* nothing is used; 1 so callers never allocate 0 bytes */
	return (size_t)((s->c / s->group) * s->kh * s->kw) * (size_t)(s->oh * s->ow);
}

/* Valid output range [lo, hi) along one axis for kernel tap offset `off`
 * (= tap * dil - pad): the outputs o with 0 <= o * stride + off < in. */
static void tap_span(int64_t off, int64_t stride, int64_t in, int64_t out, int64_t *lo,
		     int64_t *hi)
{
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

/* Columns of one image and group: row (ci, ki, kj) of col holds, for every
 * output position, the input it multiplies with that tap (0 in padding). */
static void im2col(const struct tc_conv *s, int64_t cg, const float *x, float *col)
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
				col += oh * ow;
				if (ylo > 0)
					memset(c, 0, (size_t)(ylo * ow) * sizeof(float));
				for (int64_t oy = ylo; oy < yhi; oy++) {
					float *cr = c + oy * ow;
					/* input index of output ox: row + ox * sw (offw may be
					 * negative, so no pointer is formed before the plane) */
					int64_t row = (oy * sh + offh) * w + offw;
					for (int64_t ox = 0; ox < xlo; ox++)
						cr[ox] = 0.0f;
					if (sw == 1) {
						if (xhi > xlo)
							memcpy(cr + xlo, xp + row + xlo,
							       (size_t)(xhi - xlo) * sizeof(float));
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
static void col2im(const struct tc_conv *s, int64_t cg, const float *col, float *dx)
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
				col += oh * ow;
				for (int64_t oy = ylo; oy < yhi; oy++) {
					const float *cr = c + oy * ow;
					int64_t row = (oy * sh + offh) * w + offw;
					if (sw == 1) {
						float *dr = dp + row + xlo;
						const float *cs = cr + xlo;
						for (int64_t j = 0; j < xhi - xlo; j++)
							dr[j] += cs[j];
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
	int pw = conv_pointwise(s);
	for (int64_t i = 0; i < s->n; i++) {
		const float *xi = x + i * s->c * hw;
		float *yi = y + i * s->m * ohw;
		float beta = 0.0f;
		if (b) {
			for (int64_t m = 0; m < s->m; m++) {
				float *yr = yi + m * ohw;
				for (int64_t p = 0; p < ohw; p++)
					yr[p] = b[m];
			}
			beta = 1.0f;
		}
		for (int64_t gi = 0; gi < g; gi++) {
			const float *xg = xi + gi * cg * hw;
			const float *cols = xg;
			if (!pw) {
				im2col(s, cg, xg, scratch);
				cols = scratch;
			}
			/* y_g [mg, ohw] (+)= W_g [mg, k] * cols [k, ohw] */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)mg, (int)ohw,
				    (int)k, 1.0f, w + gi * mg * k, (int)k, cols, (int)ohw, beta,
				    yi + gi * mg * ohw, (int)ohw);
		}
	}
}

void tc_conv_backward(const struct tc_conv *s, const float *x, const float *w, const float *dy,
		      float *dx, float *dw, float *db, float *scratch)
{
	int64_t g = s->group, cg = s->c / g, mg = s->m / g;
	int64_t k = cg * s->kh * s->kw, ohw = s->oh * s->ow, hw = s->h * s->w;
	int pw = conv_pointwise(s);
	if (db) {
		for (int64_t m = 0; m < s->m; m++) {
			double acc = 0.0;
			for (int64_t i = 0; i < s->n; i++) {
				const float *dr = dy + (i * s->m + m) * ohw;
				float part = 0.0f;
				for (int64_t p = 0; p < ohw; p++)
					part += dr[p];
				acc += part;
			}
			db[m] = (float)acc;
		}
	}
	for (int64_t i = 0; i < s->n; i++) {
		const float *xi = x + i * s->c * hw;
		const float *dyi = dy + i * s->m * ohw;
		/* dw is overwritten by the first image and accumulated by the rest. */
		float beta = i == 0 ? 0.0f : 1.0f;
		for (int64_t gi = 0; gi < g; gi++) {
			const float *xg = xi + gi * cg * hw;
			const float *dyg = dyi + gi * mg * ohw;
			const float *wg = w + gi * mg * k;
			const float *cols = xg;
			if (!pw) {
				im2col(s, cg, xg, scratch);
				cols = scratch;
			}
			/* dW_g [mg, k] (+)= dy_g [mg, ohw] * cols^T [ohw, k] */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mg, (int)k,
				    (int)ohw, 1.0f, dyg, (int)ohw, cols, (int)ohw, beta,
				    dw + gi * mg * k, (int)k);
			if (!dx)
				continue;
			float *dxg = dx + i * s->c * hw + gi * cg * hw;
			if (pw) {
				/* dx_g [cg, hw] = W_g^T [cg, mg] * dy_g [mg, hw] */
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k,
					    (int)ohw, (int)mg, 1.0f, wg, (int)k, dyg, (int)ohw,
					    0.0f, dxg, (int)ohw);
				continue;
			}
			/* dcols [k, ohw] = W_g^T [k, mg] * dy_g [mg, ohw], then col2im;
			 * the columns of x were consumed above, so scratch is reused. */
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)ohw,
				    (int)mg, 1.0f, wg, (int)k, dyg, (int)ohw, 0.0f, scratch,
				    (int)ohw);
			memset(dxg, 0, (size_t)(cg * hw) * sizeof(float));
			col2im(s, cg, scratch, dxg);
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
static void window_taps(int64_t start, int64_t k, int64_t d, int64_t in, int64_t *lo,
			int64_t *hi)
{
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

void tc_maxpool_forward(const struct tc_pool *s, const float *x, float *y, int32_t *argmax)
{
	int64_t hw = s->h * s->w, ohw = s->oh * s->ow;
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
				float best = -INFINITY;
				int64_t at = -1;
				for (int64_t ty = tylo; ty < tyhi; ty++) {
					int64_t row = (y0 + ty * s->dil_h) * s->w;
					for (int64_t tx = txlo; tx < txhi; tx++) {
						int64_t idx = row + x0 + tx * s->dil_w;
						float v = xp[idx];
						/* strict > keeps the first maximum; NaN wins as in
						 * PyTorch */
						if (at < 0 || v > best || isnan(v)) {
							best = v;
							at = idx;
						}
					}
				}
				yp[oy * s->ow + ox] = best;
				ap[oy * s->ow + ox] = (int32_t)at;
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
		const float *xp = x + pl * hw;
		double acc = 0.0;
		for (int64_t p = 0; p < hw; p++)
			acc += xp[p];
		y[pl] = (float)(acc / (double)hw);
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
		/* Two passes in double: the mean first, then the centred squares,
		 * so a large mean does not cancel the variance away. */
		double sum = 0.0;
		for (int64_t i = 0; i < n; i++) {
			const float *xp = x + (i * c + ch) * hw;
			for (int64_t p = 0; p < hw; p++)
				sum += xp[p];
		}
		double mean = sum / (double)cnt;
		double ss = 0.0;
		for (int64_t i = 0; i < n; i++) {
			const float *xp = x + (i * c + ch) * hw;
			for (int64_t p = 0; p < hw; p++) {
				double d = xp[p] - mean;
				ss += d * d;
			}
		}
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
			for (int64_t p = 0; p < hw; p++) {
				sdy += gp[p];
				sdyx += gp[p] * (xp[p] - mean);
			}
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
		double sdy = 0.0, sdyx = 0.0, m = mean[ch];
		for (int64_t i = 0; i < n; i++) {
			const float *xp = x + (i * c + ch) * hw;
			const float *gp = dy + (i * c + ch) * hw;
			for (int64_t p = 0; p < hw; p++) {
				sdy += gp[p];
				sdyx += gp[p] * (xp[p] - m);
			}
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
				memcpy(yr + xlo, xp + row + xlo, (size_t)(xhi - xlo) * sizeof(float));
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
				memcpy(dp + row + xlo, gr + xlo, (size_t)(xhi - xlo) * sizeof(float));
		}
	}
}
