/* Unit tests for engine/conv: the im2col + sgemm Conv against the direct-loop
 * reference on many random shapes and parameters, the auto_pad / ceil_mode
 * geometry against hand-computed shapes, and the pools and BatchNormalization
 * against hand-computed values.
 * Usage: test_conv CASE */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"

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

/* Fast conv vs reference: |fast - ref| <= CONV_TOL_ABS + CONV_TOL_REL * |ref|.
 * sgemm sums in float in a different order than the double reference; with
 * inputs in [-1, 1] and reductions of at most a few hundred terms the
 * difference stays far below this. */
#define CONV_TOL_REL 1e-5
#define CONV_TOL_ABS 1e-5

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}
static int64_t rnd_in(int64_t lo, int64_t hi) /* inclusive */
{
	return lo + (int64_t)(rnd() % (uint32_t)(hi - lo + 1));
}
static float rnd_unit(void)
{
	return (float)(rnd() % 2000001) / 1000000.0f - 1.0f;
}

static float *rand_array(int64_t n)
{
	float *a = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
	if (a)
		for (int64_t i = 0; i < n; i++)
			a[i] = rnd_unit();
	return a;
}

static int64_t prod(const int64_t *d, int n)
{
	int64_t p = 1;
	for (int i = 0; i < n; i++)
		p *= d[i];
	return p;
}

/* One random Conv configuration run both ways. Returns 0 ok, 1 mismatch,
 * 2 when the drawn parameters are invalid (the caller draws again). */
static int one_random_conv(int ns, int *paths_seen, double *max_err)
{
	struct conv_params p;
	memset(&p, 0, sizeof(p));
	p.win.nspatial = ns;
	p.batch = rnd_in(1, 3);
	int kind = (int)rnd_in(0, 5);
	p.group = kind == 0 ? rnd_in(2, 4) : 1;
	int64_t cg = rnd_in(1, ns >= 3 ? 3 : 5), mg = rnd_in(1, ns >= 3 ? 3 : 6);
	if (kind == 1) { /* depthwise */
		p.group = rnd_in(2, 8);
		cg = 1;
		mg = rnd_in(1, 2);
	}
	p.in_channels = cg * p.group;
	p.out_channels = mg * p.group;
	bool pointwise = kind == 2;
	bool valid_s1 = kind == 3; /* unpadded stride 1: im2col's unclipped path */
	enum conv_auto_pad ap = CONV_PAD_NOTSET;
	if (!pointwise && !valid_s1 && rnd_in(0, 3) == 0)
		ap = (enum conv_auto_pad)rnd_in(1, 3);
	for (int i = 0; i < ns; i++) {
		int64_t maxin = ns == 1 ? 40 : ns == 2 ? 14 : 6;
		p.win.in[i] = rnd_in(1, maxin);
		p.win.kernel[i] = pointwise ? 1 : rnd_in(1, ns >= 3 ? 3 : 5);
		p.win.strides[i] = pointwise || valid_s1 ? 1 : rnd_in(1, 3);
		p.win.dilations[i] = rnd_in(1, 2);
		p.win.pads[i] = pointwise || valid_s1 ? 0 : rnd_in(0, 2);
		p.win.pads[ns + i] = pointwise || valid_s1 ? 0 : rnd_in(0, 2);
	}
	struct nn_err e;
	if (conv_window_resolve(&p.win, ap, false, &e) != NN_OK)
		return 2;
	/* half the padded/strided convs on the portable im2col + sgemm path, the
	 * rest on the AVX-512 kernels when the CPU has it (set before conv_check,
	 * whose scratch size depends on the path) */
	p.portable = rnd_in(0, 1) == 1;
	p.relu = rnd_in(0, 2) == 0; /* a fused Relu on every path */
	size_t scratch_bytes = 0;
	if (conv_check(&p, &scratch_bytes, &e) != NN_OK) {
		fprintf(stderr, "conv_check: %s\n", e.message);
		return 1;
	}
	if (pointwise && scratch_bytes != 0) {
		fprintf(stderr, "pointwise conv asked for %zu scratch bytes\n", scratch_bytes);
		return 1;
	}
	*paths_seen |= pointwise;
	if (valid_s1 && ns == 2 && p.win.out[1] == 8)
		*paths_seen |= 2; /* the 8-wide block copy */
	int64_t nx = p.batch * p.in_channels * prod(p.win.in, ns);
	int64_t ny = p.batch * p.out_channels * prod(p.win.out, ns);
	int64_t nw = p.out_channels * cg * prod(p.win.kernel, ns);
	float *x = rand_array(nx), *w = rand_array(nw), *b = rand_array(p.out_channels);
	float *y = malloc((size_t)ny * sizeof(float)), *yr = malloc((size_t)ny * sizeof(float));
	float *scratch = malloc(scratch_bytes ? scratch_bytes : 1);
	int rc = 1;
	if (!x || !w || !b || !y || !yr || !scratch) {
		fprintf(stderr, "out of memory\n");
		goto done;
	}
	const float *bias = rnd_in(0, 1) ? b : NULL;
	conv_run(&p, x, w, bias, y, scratch);
	conv_reference(&p, x, w, bias, yr);
	if (p.relu)
		for (int64_t i = 0; i < ny; i++)
			yr[i] = yr[i] > 0.0f ? yr[i] : 0.0f;
	rc = 0;
	for (int64_t i = 0; i < ny; i++) {
		double d = fabs((double)y[i] - (double)yr[i]);
		if (d > *max_err)
			*max_err = d;
		if (!(d <= CONV_TOL_ABS + CONV_TOL_REL * fabs((double)yr[i]))) {
			fprintf(stderr,
				"mismatch at %lld: fast %.9g ref %.9g (ns %d, group %lld, C %lld, "
				"M %lld, auto_pad %d, in0 %lld k0 %lld s0 %lld d0 %lld p0 %lld/%lld)\n",
				(long long)i, (double)y[i], (double)yr[i], ns, (long long)p.group,
				(long long)p.in_channels, (long long)p.out_channels, (int)ap,
				(long long)p.win.in[0], (long long)p.win.kernel[0],
				(long long)p.win.strides[0], (long long)p.win.dilations[0],
				(long long)p.win.pads[0], (long long)p.win.pads[ns]);
			rc = 1;
			break;
		}
	}
done:
	free(x);
	free(w);
	free(b);
	free(y);
	free(yr);
	free(scratch);
	return rc;
}

static int case_conv_matches_reference(void)
{
	int paths = 0, runs = 0; /* bit 0: 1x1 path drawn, bit 1: 8-wide valid stride 1 */
	double max_err = 0.0;
	for (int ns = 1; ns <= 3; ns++) {
		int target = ns == 3 ? 60 : 300;
		for (int done = 0, tries = 0; done < target && tries < target * 20; tries++) {
			int rc = one_random_conv(ns, &paths, &max_err);
			if (rc == 2)
				continue;
			CHECK(rc == 0, "random conv %d with %d spatial dims", done, ns);
			done++;
			runs++;
		}
	}
	CHECK(runs >= 600, "only %d valid random configurations", runs);
	CHECK(paths & 1, "the 1x1 path was never drawn");
	CHECK(paths & 2, "an unpadded stride-1 conv 8 wide was never drawn");
	printf("%d random convs match the reference, max |diff| %.3g\n", runs, max_err);
	return 0;
}

/* Convolutions large enough that conv_run's im2col runs in several bands of
 * output rows (and one with a single row per band), against the reference;
 * the padded, strided and depthwise shapes take the phase-plane path. */
static int case_bands_match_reference(void)
{
	static const struct {
		int64_t c, m, group, h, w, k, s, d, pad;
	} shapes[] = {
		{16, 8, 1, 40, 40, 3, 1, 1, 1},  /* K 144, OW 40: 5 rows a band */
		{64, 4, 1, 12, 62, 3, 1, 1, 0},  /* K 576, OW 60: one row a band */
		{12, 6, 2, 37, 45, 5, 2, 1, 2},  /* strided, padded, grouped */
		{8, 8, 1, 30, 50, 3, 1, 2, 0},   /* dilated, unpadded stride 1 */
		{6, 6, 6, 70, 70, 3, 1, 1, 1},   /* depthwise: K 9, many rows */
		{8, 8, 1, 20, 23, 3, 3, 1, 1},   /* stride 3, padded: 9 phase planes */
		{16, 32, 1, 14, 14, 1, 2, 1, 0}, /* 1x1 stride 2 (ResNet projection) */
		{4, 4, 1, 17, 19, 3, 1, 2, 2},   /* dilated and padded */
		/* multiples of 16 output channels, >= 32 taps: the AVX-512
		 * channel-vectorised kernel (32 = two vectors, 16 = one) */
		{16, 32, 1, 14, 14, 3, 1, 1, 1}, /* ResNet 3x3, 14x14 */
		{16, 32, 1, 14, 14, 3, 2, 1, 1}, /* stride 2 */
		{32, 16, 1, 7, 9, 3, 1, 2, 2},   /* dilated, padded, 7 x 9 */
		{32, 96, 2, 9, 11, 3, 1, 1, 1},  /* grouped: 48 = 32 + 16 per group */
	};
	double max_err = 0.0;
	for (size_t t = 0; t < sizeof(shapes) / sizeof(shapes[0]); t++) {
		struct conv_params p;
		memset(&p, 0, sizeof(p));
		p.batch = 2, p.in_channels = shapes[t].c, p.out_channels = shapes[t].m;
		p.group = shapes[t].group;
		p.win.nspatial = 2;
		p.win.in[0] = shapes[t].h, p.win.in[1] = shapes[t].w;
		for (int i = 0; i < 2; i++) {
			p.win.kernel[i] = shapes[t].k, p.win.strides[i] = shapes[t].s;
			p.win.dilations[i] = shapes[t].d;
			p.win.pads[i] = shapes[t].pad, p.win.pads[2 + i] = shapes[t].pad;
		}
		struct nn_err e;
		size_t sb = 0;
		CHECK(conv_window_resolve(&p.win, CONV_PAD_NOTSET, false, &e) == NN_OK, "%s",
		      e.message);
		/* the scratch of both paths (AVX-512 kernels and portable) */
		size_t sb_portable = 0;
		p.portable = true;
		CHECK(conv_check(&p, &sb_portable, &e) == NN_OK, "%s", e.message);
		p.portable = false;
		CHECK(conv_check(&p, &sb, &e) == NN_OK, "%s", e.message);
		int64_t k = shapes[t].c / shapes[t].group * shapes[t].k * shapes[t].k;
		/* Bands keep scratch near 128 KiB (im2col) or 256 KiB (padded or
		 * strided convs, which add one group's padded input, split into
		 * stride x stride phase planes), never below one output row. */
		size_t row_bytes = (size_t)(k * p.win.out[1]) * sizeof(float);
		bool phased = shapes[t].pad != 0 || shapes[t].s != 1;
		int64_t hq = (shapes[t].h + 2 * shapes[t].pad + shapes[t].s - 1) / shapes[t].s;
		int64_t wq = (shapes[t].w + 2 * shapes[t].pad + shapes[t].s - 1) / shapes[t].s;
		size_t input_bytes = (size_t)(shapes[t].c / shapes[t].group * hq * wq * shapes[t].s *
					      shapes[t].s + shapes[t].k) * sizeof(float);
		size_t band_cap = phased ? 262144 : 131072;
		size_t cap = (row_bytes > band_cap ? row_bytes : band_cap) + (phased ? input_bytes : 0);
		CHECK(sb_portable <= cap && sb_portable >= row_bytes,
		      "shape %zu: scratch %zu bytes (cap %zu)", t, sb_portable, cap);
		CHECK(sb <= cap, "shape %zu: AVX-512 scratch %zu bytes (cap %zu)", t, sb, cap);
		if (sb_portable > sb)
			sb = sb_portable;
		int64_t nx = p.batch * p.in_channels * p.win.in[0] * p.win.in[1];
		int64_t ny = p.batch * p.out_channels * p.win.out[0] * p.win.out[1];
		int64_t nw = p.out_channels * k;
		float *x = rand_array(nx), *w = rand_array(nw), *b = rand_array(p.out_channels);
		float *y = malloc((size_t)ny * sizeof(float)), *yr = malloc((size_t)ny * sizeof(float));
		float *scratch = malloc(sb);
		CHECK(x && w && b && y && yr && scratch, "oom");
		p.relu = t % 2 == 1; /* a fused Relu on every other shape */
		conv_reference(&p, x, w, b, yr);
		if (p.relu)
			for (int64_t i = 0; i < ny; i++)
				yr[i] = yr[i] > 0.0f ? yr[i] : 0.0f;
		int bad = -1;
		for (int portable = 0; portable <= 1 && bad < 0; portable++) {
			p.portable = portable == 1; /* both the AVX-512 grid kernel and im2col + sgemm */
			conv_run(&p, x, w, b, y, scratch);
			for (int64_t i = 0; i < ny && bad < 0; i++) {
				double d = fabs((double)y[i] - (double)yr[i]);
				if (d > max_err)
					max_err = d;
				if (!(d <= CONV_TOL_ABS + CONV_TOL_REL * fabs((double)yr[i])))
					bad = (int)i;
			}
		}
		if (bad >= 0)
			fprintf(stderr, "shape %zu: element %d fast %.9g ref %.9g\n", t, bad,
				(double)y[bad], (double)yr[bad]);
		free(x), free(w), free(b), free(y), free(yr), free(scratch);
		CHECK(bad < 0, "banded conv %zu differs from the reference", t);
	}
	printf("banded convs match the reference, max |diff| %.3g\n", max_err);
	return 0;
}

/* Hand-computed output shapes and pads for each auto_pad mode and ceil_mode. */
static int case_window_shapes(void)
{
	struct nn_err e;
	struct conv_window w;
	/* SAME_UPPER, in 7, k 3, s 2: out 4, total pad (4-1)*2+3-7 = 2 -> 1/1. */
	memset(&w, 0, sizeof(w));
	w.nspatial = 2;
	w.in[0] = 7, w.in[1] = 6;
	w.kernel[0] = 3, w.kernel[1] = 4;
	w.strides[0] = 2, w.strides[1] = 2;
	w.dilations[0] = 1, w.dilations[1] = 1;
	CHECK(conv_window_resolve(&w, CONV_PAD_SAME_UPPER, false, &e) == NN_OK, "%s", e.message);
	/* dim 1: in 6, k 4, s 2: out 3, total (3-1)*2+4-6 = 2 -> 1/1. */
	CHECK(w.out[0] == 4 && w.out[1] == 3, "out %lld %lld", (long long)w.out[0],
	      (long long)w.out[1]);
	CHECK(w.pads[0] == 1 && w.pads[2] == 1 && w.pads[1] == 1 && w.pads[3] == 1, "pads");
	/* SAME with an odd total: in 5, k 4, s 1: out 5, total 3: UPPER 1/2, LOWER 2/1. */
	memset(&w, 0, sizeof(w));
	w.nspatial = 1;
	w.in[0] = 5, w.kernel[0] = 4, w.strides[0] = 1, w.dilations[0] = 1;
	CHECK(conv_window_resolve(&w, CONV_PAD_SAME_UPPER, false, &e) == NN_OK, "%s", e.message);
	CHECK(w.out[0] == 5 && w.pads[0] == 1 && w.pads[1] == 2, "upper %lld %lld %lld",
	      (long long)w.out[0], (long long)w.pads[0], (long long)w.pads[1]);
	CHECK(conv_window_resolve(&w, CONV_PAD_SAME_LOWER, false, &e) == NN_OK, "%s", e.message);
	CHECK(w.out[0] == 5 && w.pads[0] == 2 && w.pads[1] == 1, "lower");
	/* SAME with dilation: in 10, k 3, d 2 (dk 5), s 3: out 4, total 9+5-10 = 4. */
	w.in[0] = 10, w.kernel[0] = 3, w.dilations[0] = 2, w.strides[0] = 3;
	CHECK(conv_window_resolve(&w, CONV_PAD_SAME_LOWER, false, &e) == NN_OK, "%s", e.message);
	CHECK(w.out[0] == 4 && w.pads[0] == 2 && w.pads[1] == 2, "dilated same");
	/* VALID ignores given pads: in 10, dk 5, s 3 -> floor(5/3)+1 = 2. */
	w.pads[0] = 7, w.pads[1] = 7;
	CHECK(conv_window_resolve(&w, CONV_PAD_VALID, false, &e) == NN_OK, "%s", e.message);
	CHECK(w.out[0] == 2 && w.pads[0] == 0 && w.pads[1] == 0, "valid");
	/* NOTSET floor vs ceil: in 4, k 3, s 2, pads 0: floor 1, ceil 2. */
	w.in[0] = 4, w.kernel[0] = 3, w.dilations[0] = 1, w.strides[0] = 2;
	w.pads[0] = 0, w.pads[1] = 0;
	CHECK(conv_window_resolve(&w, CONV_PAD_NOTSET, false, &e) == NN_OK, "%s", e.message);
	CHECK(w.out[0] == 1, "floor %lld", (long long)w.out[0]);
	CHECK(conv_window_resolve(&w, CONV_PAD_NOTSET, true, &e) == NN_OK, "%s", e.message);
	CHECK(w.out[0] == 2, "ceil %lld", (long long)w.out[0]);
	/* ceil_mode drops a window starting in the end padding: in 5, k 2,
	 * s 2, pads 0/1: span 4, ceil(4/2)+1 = 3, start (3-1)*2 = 4 < 5 kept;
	 * in 4, k 2, s 2, pads 0/1: span 3, ceil 2+1 = 3, start 4 >= 4 dropped. */
	w.in[0] = 5, w.kernel[0] = 2, w.strides[0] = 2, w.pads[0] = 0, w.pads[1] = 1;
	CHECK(conv_window_resolve(&w, CONV_PAD_NOTSET, true, &e) == NN_OK, "%s", e.message);
	CHECK(w.out[0] == 3, "kept %lld", (long long)w.out[0]);
	w.in[0] = 4;
	CHECK(conv_window_resolve(&w, CONV_PAD_NOTSET, true, &e) == NN_OK, "%s", e.message);
	CHECK(w.out[0] == 2, "dropped %lld", (long long)w.out[0]);
	/* Rejections name the attribute. */
	w.strides[0] = 0;
	CHECK(conv_window_resolve(&w, CONV_PAD_NOTSET, false, &e) == NN_EINVAL &&
		      strstr(e.message, "strides"),
	      "stride 0: %s", e.message);
	w.strides[0] = 1, w.dilations[0] = 0;
	CHECK(conv_window_resolve(&w, CONV_PAD_NOTSET, false, &e) == NN_EINVAL &&
		      strstr(e.message, "dilations"),
	      "dilation 0: %s", e.message);
	w.dilations[0] = 1, w.pads[0] = -1;
	CHECK(conv_window_resolve(&w, CONV_PAD_NOTSET, false, &e) == NN_EINVAL &&
		      strstr(e.message, "pads"),
	      "negative pad: %s", e.message);
	w.pads[0] = 0, w.pads[1] = 0, w.kernel[0] = 9;
	CHECK(conv_window_resolve(&w, CONV_PAD_NOTSET, false, &e) == NN_EINVAL &&
		      strstr(e.message, "kernel_shape"),
	      "kernel larger than input: %s", e.message);
	w.kernel[0] = INT64_MAX / 2, w.dilations[0] = 4;
	CHECK(conv_window_resolve(&w, CONV_PAD_NOTSET, false, &e) == NN_EINVAL, "overflow");
	/* Group must divide both channel counts. */
	struct conv_params p;
	memset(&p, 0, sizeof(p));
	p.win.nspatial = 1;
	p.win.in[0] = 4, p.win.kernel[0] = 1, p.win.strides[0] = 1, p.win.dilations[0] = 1;
	CHECK(conv_window_resolve(&p.win, CONV_PAD_NOTSET, false, &e) == NN_OK, "%s", e.message);
	p.batch = 1, p.in_channels = 6, p.out_channels = 4, p.group = 3;
	size_t sb;
	CHECK(conv_check(&p, &sb, &e) == NN_EINVAL && strstr(e.message, "group"), "group: %s",
	      e.message);
	/* An empty batch is valid and computes nothing. */
	p.batch = 0, p.out_channels = 3;
	CHECK(conv_check(&p, &sb, &e) == NN_OK, "batch 0: %s", e.message);
	conv_run(&p, NULL, NULL, NULL, NULL, NULL);
	struct conv_pool_params pp;
	memset(&pp, 0, sizeof(pp));
	pp.win = p.win;
	pp.channels = 2;
	CHECK(conv_pool_check(&pp, &e) == NN_OK, "pool batch 0: %s", e.message);
	conv_maxpool(&pp, NULL, NULL, NULL);
	conv_avgpool(&pp, NULL, NULL);
	pp.batch = -1;
	CHECK(conv_pool_check(&pp, &e) == NN_EINVAL, "pool batch -1");
	return 0;
}

static int expect(const float *got, const float *want, int n, const char *what)
{
	for (int i = 0; i < n; i++)
		CHECK(fabsf(got[i] - want[i]) <= 1e-6f * (1.0f + fabsf(want[i])),
		      "%s[%d]: got %.9g want %.9g", what, i, (double)got[i], (double)want[i]);
	return 0;
}

static void pool2d(struct conv_pool_params *p, int64_t h, int64_t w, int64_t k, int64_t s,
		   int64_t d, int64_t pad)
{
	memset(p, 0, sizeof(*p));
	p->batch = 1, p->channels = 1;
	p->win.nspatial = 2;
	p->win.in[0] = h, p->win.in[1] = w;
	for (int i = 0; i < 2; i++) {
		p->win.kernel[i] = k, p->win.strides[i] = s, p->win.dilations[i] = d;
		p->win.pads[i] = pad, p->win.pads[2 + i] = pad;
	}
}

static int case_maxpool_values(void)
{
	struct nn_err e;
	struct conv_pool_params p;
	float x[25], y[16];
	int64_t idx[16];
	for (int i = 0; i < 25; i++)
		x[i] = (float)(i + 1);
	/* 5x5 of 1..25, k 2, s 2: [[7,9],[17,19]]; indices row-major [[6,8],[16,18]],
	 * column-major [[6,16],[8,18]] (ONNX maxpool_with_argmax_2d_precomputed_strides). */
	pool2d(&p, 5, 5, 2, 2, 1, 0);
	CHECK(conv_window_resolve(&p.win, CONV_PAD_NOTSET, false, &e) == NN_OK, "%s", e.message);
	CHECK(conv_pool_check(&p, &e) == NN_OK, "%s", e.message);
	conv_maxpool(&p, x, y, idx);
	CHECK(expect(y, (const float[]){7, 9, 17, 19}, 4, "max") == 0, "values");
	CHECK(idx[0] == 6 && idx[1] == 8 && idx[2] == 16 && idx[3] == 18, "row-major indices");
	p.column_major = true;
	conv_maxpool(&p, x, y, idx);
	CHECK(idx[0] == 6 && idx[1] == 16 && idx[2] == 8 && idx[3] == 18,
	      "column-major indices %lld %lld %lld %lld", (long long)idx[0], (long long)idx[1],
	      (long long)idx[2], (long long)idx[3]);
	/* 4x4 of 1..16, k 3, s 2, ceil_mode: [[11,12],[15,16]] (ONNX maxpool_2d_ceil). */
	pool2d(&p, 4, 4, 3, 2, 1, 0);
	CHECK(conv_window_resolve(&p.win, CONV_PAD_NOTSET, true, &e) == NN_OK, "%s", e.message);
	CHECK(p.win.out[0] == 2 && p.win.out[1] == 2, "ceil shape");
	conv_maxpool(&p, x, y, NULL);
	CHECK(expect(y, (const float[]){11, 12, 15, 16}, 4, "ceil") == 0, "ceil values");
	/* 4x4, k 2, s 1, dilation 2: [[11,12],[15,16]] (ONNX maxpool_2d_dilations). */
	pool2d(&p, 4, 4, 2, 1, 2, 0);
	CHECK(conv_window_resolve(&p.win, CONV_PAD_NOTSET, false, &e) == NN_OK, "%s", e.message);
	conv_maxpool(&p, x, y, idx);
	CHECK(expect(y, (const float[]){11, 12, 15, 16}, 4, "dilated") == 0, "dilated values");
	CHECK(idx[0] == 10 && idx[3] == 15, "dilated indices");
	/* Padding never wins, even over negative values: -x, k 3, s 1, pad 1 on
	 * 3x3 (values -1..-9): corner max -1 (index 0), centre -1. */
	float neg[9];
	for (int i = 0; i < 9; i++)
		neg[i] = -(float)(i + 1);
	pool2d(&p, 3, 3, 3, 1, 1, 1);
	CHECK(conv_window_resolve(&p.win, CONV_PAD_NOTSET, false, &e) == NN_OK, "%s", e.message);
	conv_maxpool(&p, neg, y, idx);
	CHECK(expect(y, (const float[]){-1, -1, -2, -1, -1, -2, -4, -4, -5}, 9, "neg") == 0,
	      "padded negative values");
	CHECK(idx[8] == 4, "index %lld", (long long)idx[8]);
	/* Batch and channel offsets are part of the index. */
	float two[50];
	for (int i = 0; i < 50; i++)
		two[i] = (float)(i % 25);
	pool2d(&p, 5, 5, 5, 1, 1, 0);
	p.channels = 2;
	CHECK(conv_window_resolve(&p.win, CONV_PAD_NOTSET, false, &e) == NN_OK, "%s", e.message);
	conv_maxpool(&p, two, y, idx);
	CHECK(y[0] == 24 && y[1] == 24 && idx[0] == 24 && idx[1] == 49, "plane offsets");
	/* NaN never wins. */
	float nanx[4] = {NAN, 2, 1, NAN};
	pool2d(&p, 2, 2, 2, 1, 1, 0);
	CHECK(conv_window_resolve(&p.win, CONV_PAD_NOTSET, false, &e) == NN_OK, "%s", e.message);
	conv_maxpool(&p, nanx, y, idx);
	CHECK(y[0] == 2 && idx[0] == 1, "nan");
	/* The same through the 2x2 stride-2 path, four outputs at a time. */
	float nan8[16] = {NAN, 1, 5, NAN, -INFINITY, NAN, 7, 8,
			  2, NAN, NAN, NAN, -INFINITY, -INFINITY, NAN, 9};
	memset(&p, 0, sizeof(p));
	p.batch = 1, p.channels = 1, p.win.nspatial = 2;
	p.win.in[0] = 2, p.win.in[1] = 8;
	for (int i = 0; i < 2; i++)
		p.win.kernel[i] = 2, p.win.strides[i] = 2, p.win.dilations[i] = 1;
	CHECK(conv_window_resolve(&p.win, CONV_PAD_NOTSET, false, &e) == NN_OK, "%s", e.message);
	conv_maxpool(&p, nan8, y, NULL);
	CHECK(y[0] == 2 && y[1] == 5 && y[2] == -INFINITY && y[3] == 9,
	      "2x2 stride 2: %g %g %g %g", (double)y[0], (double)y[1], (double)y[2], (double)y[3]);
	/* 1-D and 3-D. */
	float x1[6] = {3, 1, 4, 1, 5, 9};
	struct conv_pool_params q;
	memset(&q, 0, sizeof(q));
	q.batch = 1, q.channels = 1, q.win.nspatial = 1;
	q.win.in[0] = 6, q.win.kernel[0] = 2, q.win.strides[0] = 2, q.win.dilations[0] = 1;
	CHECK(conv_window_resolve(&q.win, CONV_PAD_NOTSET, false, &e) == NN_OK, "%s", e.message);
	conv_maxpool(&q, x1, y, idx);
	CHECK(expect(y, (const float[]){3, 4, 9}, 3, "1d") == 0 && idx[2] == 5, "1d");
	float x3[27];
	for (int i = 0; i < 27; i++)
		x3[i] = (float)((i * 7) % 27);
	memset(&q, 0, sizeof(q));
	q.batch = 1, q.channels = 1, q.win.nspatial = 3;
	for (int i = 0; i < 3; i++)
		q.win.in[i] = 3, q.win.kernel[i] = 2, q.win.strides[i] = 1, q.win.dilations[i] = 1;
	CHECK(conv_window_resolve(&q.win, CONV_PAD_NOTSET, false, &e) == NN_OK, "%s", e.message);
	conv_maxpool(&q, x3, y, idx);
	/* Window at (0,0,0) covers flat offsets {0,1,3,4,9,10,12,13}: values
	 * 0,7,21,1,9,16,3,10 -> 21 at (0,1,0), flat index 3. */
	CHECK(y[0] == 21 && idx[0] == 3, "3d %g %lld", (double)y[0], (long long)idx[0]);
	return 0;
}

static int case_avgpool_values(void)
{
	struct nn_err e;
	struct conv_pool_params p;
	float x[16], y[16];
	for (int i = 0; i < 16; i++)
		x[i] = (float)(i + 1);
	/* 3x3 of 1..9, k 2, s 2, pads 1: windows {1}, {2,3}, {4,7}, {5,6,8,9}. */
	pool2d(&p, 3, 3, 2, 2, 1, 1);
	CHECK(conv_window_resolve(&p.win, CONV_PAD_NOTSET, false, &e) == NN_OK, "%s", e.message);
	CHECK(conv_pool_check(&p, &e) == NN_OK, "%s", e.message);
	conv_avgpool(&p, x, y);
	CHECK(expect(y, (const float[]){1, 2.5f, 5.5f, 7}, 4, "exclude pad") == 0, "exclude");
	p.count_include_pad = true;
	conv_avgpool(&p, x, y);
	CHECK(expect(y, (const float[]){0.25f, 1.25f, 2.75f, 7}, 4, "include pad") == 0,
	      "include");
	/* 4x4 of 1..16, k 3, s 2, ceil_mode: [[6,7.5],[12,13.5]] (ONNX
	 * averagepool_2d_ceil); with count_include_pad the taps past the input
	 * that ceil_mode adds do not count either (no pads given). */
	pool2d(&p, 4, 4, 3, 2, 1, 0);
	CHECK(conv_window_resolve(&p.win, CONV_PAD_NOTSET, true, &e) == NN_OK, "%s", e.message);
	conv_avgpool(&p, x, y);
	CHECK(expect(y, (const float[]){6, 7.5f, 12, 13.5f}, 4, "ceil") == 0, "ceil");
	p.count_include_pad = true;
	conv_avgpool(&p, x, y);
	CHECK(expect(y, (const float[]){6, 7.5f, 12, 13.5f}, 4, "ceil include") == 0,
	      "ceil include");
	/* ceil_mode with end padding 1 on 4x4, k 3, s 2: out 2; window 1 spans
	 * [2, 5): taps 2,3 real, 4 pad -> include-pad divisor 3 per dim. */
	pool2d(&p, 4, 4, 3, 2, 1, 0);
	p.win.pads[2] = 1, p.win.pads[3] = 1;
	CHECK(conv_window_resolve(&p.win, CONV_PAD_NOTSET, true, &e) == NN_OK, "%s", e.message);
	CHECK(p.win.out[0] == 2, "ceil pad shape %lld", (long long)p.win.out[0]);
	p.count_include_pad = true;
	conv_avgpool(&p, x, y);
	/* last window: rows 2,3 cols 2,3 = 11+12+15+16 = 54 over 9. */
	CHECK(expect(y + 3, (const float[]){6.0f}, 1, "ceil pad include") == 0, "ceil pad");
	/* Dilated average: 4x4, k 2, d 2, s 1: (1+3+9+11)/4 = 6. */
	pool2d(&p, 4, 4, 2, 1, 2, 0);
	CHECK(conv_window_resolve(&p.win, CONV_PAD_NOTSET, false, &e) == NN_OK, "%s", e.message);
	conv_avgpool(&p, x, y);
	CHECK(expect(y, (const float[]){6, 7, 10, 11}, 4, "dilated") == 0, "dilated");
	return 0;
}

/* The 1-D/2-D pool paths (unclipped rows, branch-free max) against the N-D
 * path, reached by the same pool with a leading spatial dim of 1: equal
 * values and indices on random shapes, pads, strides, dilations and
 * ceil_mode; y equals x at the index. */
static int case_pool_paths_match_nd(void)
{
	int runs = 0;
	for (int t = 0; t < 4000 && runs < 400; t++) {
		struct conv_pool_params p2, p3;
		memset(&p2, 0, sizeof(p2));
		p2.batch = rnd_in(1, 2), p2.channels = rnd_in(1, 3);
		p2.win.nspatial = (int)rnd_in(1, 2);
		int ns = p2.win.nspatial;
		for (int i = 0; i < ns; i++) {
			p2.win.in[i] = rnd_in(1, 12);
			p2.win.kernel[i] = rnd_in(1, 4);
			p2.win.strides[i] = rnd_in(1, 3);
			p2.win.dilations[i] = rnd_in(1, 2);
			p2.win.pads[i] = rnd_in(0, 2);
			p2.win.pads[ns + i] = rnd_in(0, 2);
		}
		p2.count_include_pad = rnd_in(0, 1);
		p2.column_major = rnd_in(0, 1);
		enum conv_auto_pad ap = (enum conv_auto_pad)rnd_in(0, 3);
		bool ceil_mode = rnd_in(0, 1);
		struct nn_err e;
		if (conv_window_resolve(&p2.win, ap, ceil_mode, &e) != NN_OK)
			continue;
		p3 = p2;
		p3.win.nspatial = ns + 1;
		p3.win.in[0] = 1, p3.win.kernel[0] = 1, p3.win.strides[0] = 1;
		p3.win.dilations[0] = 1, p3.win.out[0] = 1;
		for (int i = 0; i < ns; i++) {
			p3.win.in[1 + i] = p2.win.in[i], p3.win.kernel[1 + i] = p2.win.kernel[i];
			p3.win.strides[1 + i] = p2.win.strides[i];
			p3.win.dilations[1 + i] = p2.win.dilations[i];
			p3.win.out[1 + i] = p2.win.out[i];
		}
		for (int i = 0; i < 2 * (ns + 1); i++)
			p3.win.pads[i] = 0;
		for (int i = 0; i < ns; i++) {
			p3.win.pads[1 + i] = p2.win.pads[i];
			p3.win.pads[ns + 2 + i] = p2.win.pads[ns + i];
		}
		int64_t nx = p2.batch * p2.channels * prod(p2.win.in, ns);
		int64_t ny = p2.batch * p2.channels * prod(p2.win.out, ns);
		float *x = rand_array(nx);
		float *a = malloc((size_t)ny * sizeof(float)), *b = malloc((size_t)ny * sizeof(float));
		float *c = malloc((size_t)ny * sizeof(float));
		int64_t *ia = malloc((size_t)ny * sizeof(int64_t)), *ib = malloc((size_t)ny * sizeof(int64_t));
		CHECK(x && a && b && c && ia && ib, "oom");
		conv_maxpool(&p2, x, a, NULL);
		conv_maxpool(&p2, x, b, ia);
		conv_maxpool(&p3, x, c, ib);
		int rc = 0;
		for (int64_t i = 0; i < ny && rc == 0; i++) {
			if (a[i] != b[i] || b[i] != c[i] || ia[i] != ib[i]) {
				fprintf(stderr, "max %lld: fast %g indexed %g nd %g, index %lld vs %lld\n",
					(long long)i, (double)a[i], (double)b[i], (double)c[i],
					(long long)ia[i], (long long)ib[i]);
				rc = 1;
			}
			/* Map the (possibly column-major) index back to x. */
			int64_t idx = ia[i], plane = idx / prod(p2.win.in, ns), r = idx % prod(p2.win.in, ns);
			if (p2.column_major && ns == 2)
				r = (r % p2.win.in[0]) * p2.win.in[1] + r / p2.win.in[0];
			if (rc == 0 && idx >= 0 && x[plane * prod(p2.win.in, ns) + r] != a[i]) {
				fprintf(stderr, "max %lld: index %lld does not hold the max\n",
					(long long)i, (long long)idx);
				rc = 1;
			}
		}
		conv_avgpool(&p2, x, a);
		conv_avgpool(&p3, x, c);
		for (int64_t i = 0; i < ny && rc == 0; i++) {
			if (fabsf(a[i] - c[i]) > 1e-6f * (1.0f + fabsf(c[i]))) {
				fprintf(stderr, "avg %lld: 2-D path %.9g, N-D path %.9g\n", (long long)i,
					(double)a[i], (double)c[i]);
				rc = 1;
			}
		}
		free(x), free(a), free(b), free(c), free(ia), free(ib);
		CHECK(rc == 0, "run %d: ns %d k0 %lld s0 %lld d0 %lld pads %lld/%lld auto_pad %d ceil %d",
		      runs, ns, (long long)p2.win.kernel[0], (long long)p2.win.strides[0],
		      (long long)p2.win.dilations[0], (long long)p2.win.pads[0],
		      (long long)p2.win.pads[ns], (int)ap, (int)ceil_mode);
		runs++;
	}
	CHECK(runs >= 400, "only %d valid random pools", runs);
	printf("%d random pools: 1-D/2-D paths match the N-D path\n", runs);
	return 0;
}

static int case_global_and_batchnorm(void)
{
	float x[12] = {1, 2, 3, -4, 5, 6, 7, 8, -9, 10, 11, 12}, y[12];
	conv_global_avgpool(3, 4, x, y);
	CHECK(expect(y, (const float[]){0.5f, 6.5f, 6.0f}, 3, "gap") == 0, "global avg");
	conv_global_maxpool(3, 4, x, y);
	CHECK(expect(y, (const float[]){3, 8, 12}, 3, "gmp") == 0, "global max");
	/* batch 2, channels 2, spatial 3, epsilon 1: channel 0 (scale 2, bias 1,
	 * mean 1, var 3) gives (x-1)/2*2+1 = x; channel 1 (scale 1, bias 0,
	 * mean 0, var 0.25) gives x / sqrt(1.25). */
	const float scale[2] = {2, 1}, bias[2] = {1, 0}, mean[2] = {1, 0}, var[2] = {3, 0.25f};
	float bx[12] = {1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6};
	conv_batchnorm(2, 2, 3, bx, scale, bias, mean, var, 1.0f, y);
	float s1 = 1.0f / sqrtf(1.25f);
	const float want[12] = {1, 2, 3, s1, 2 * s1, 3 * s1, 4, 5, 6, 4 * s1, 5 * s1, 6 * s1};
	CHECK(expect(y, want, 12, "bn") == 0, "batchnorm");
	conv_batchnorm(2, 2, 3, bx, scale, bias, mean, var, 1.0f, bx); /* in place */
	CHECK(expect(bx, want, 12, "bn in place") == 0, "batchnorm in place");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_conv CASE\n");
		return 2;
	}
	const char *c = argv[1];
	if (!strcmp(c, "matches_reference"))
		return case_conv_matches_reference();
	if (!strcmp(c, "bands_match_reference"))
		return case_bands_match_reference();
	if (!strcmp(c, "window_shapes"))
		return case_window_shapes();
	if (!strcmp(c, "maxpool_values"))
		return case_maxpool_values();
	if (!strcmp(c, "avgpool_values"))
		return case_avgpool_values();
	if (!strcmp(c, "pool_paths_match_nd"))
		return case_pool_paths_match_nd();
	if (!strcmp(c, "global_and_batchnorm"))
		return case_global_and_batchnorm();
	fprintf(stderr, "unknown case %s\n", c);
	return 2;
}
