/* calib: activation ranges from streamed values (see calib.h). */
#include "calib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void calib_init(struct calib_stats *s)
{
	memset(s, 0, sizeof *s);
	s->min = INFINITY;
	s->max = -INFINITY;
}

void calib_free(struct calib_stats *s)
{
	free(s->hist);
	s->hist = NULL;
	s->bins = 0;
}

void calib_observe_minmax(struct calib_stats *s, const float *x, size_t n)
{
	float mn = (float)s->min, mx = (float)s->max;
	uint64_t bad = 0;
	for (size_t i = 0; i < n; i++) {
		float v = x[i];
		if (!isfinite(v)) {
			bad++;
			continue;
		}
		mn = v < mn ? v : mn;
		mx = v > mx ? v : mx;
	}
	s->min = mn;
	s->max = mx;
	s->nonfinite += bad;
	s->count += n - bad;
}

bool calib_needs_hist(enum calib_method method, bool int8_symmetric, bool *abs_values)
{
	*abs_values = method == CALIB_PERCENTILE && int8_symmetric;
	return method != CALIB_MINMAX;
}

enum nn_status calib_hist_begin(struct calib_stats *s, size_t bins, bool abs_values,
				struct nn_err *e)
{
	if (s->count == 0)
		return err_set(e, NN_EINVAL, "invalid_dataset", "dataset",
			       "the tensor took no finite value on the calibration data");
	if (bins < 2 || bins > ((size_t)1 << 24))
		return err_set(e, NN_EINVAL, "internal", "", "histogram bins %zu out of range", bins);
	free(s->hist);
	s->hist = calloc(bins, sizeof *s->hist);
	if (!s->hist)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for a histogram");
	s->bins = bins;
	s->abs_values = abs_values;
	double t = fmax(fabs(s->min), fabs(s->max));
	s->hist_lo = abs_values ? 0.0 : -t;
	s->hist_hi = t;
	return NN_OK;
}

/* numpy.linspace(lo, hi, bins + 1)[i]. */
static double edge(const struct calib_stats *s, size_t i)
{
	if (i >= s->bins)
		return s->hist_hi;
	double step = (s->hist_hi - s->hist_lo) / (double)s->bins;
	double v = (double)i * step;
	return v + s->hist_lo;
}

void calib_observe_hist(struct calib_stats *s, const float *x, size_t n)
{
	if (!s->hist)
		return;
	double lo = s->hist_lo, hi = s->hist_hi;
	if (!(hi > lo)) { /* all values 0: one bin holds them (range is [0, 0]) */
		for (size_t i = 0; i < n; i++)
			if (isfinite(x[i]))
				s->hist[s->bins / 2]++;
		return;
	}
	double norm = (double)s->bins / (hi - lo);
	int64_t nb = (int64_t)s->bins;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(x[i]))
			continue;
		double v = s->abs_values ? fabs((double)x[i]) : (double)x[i];
		if (v < lo || v > hi)
			continue;
		/* numpy.histogram's placement: truncate, then correct against the
		 * edges, the last bin closed on the right. */
		int64_t k = (int64_t)((v - lo) * norm);
		if (k >= nb)
			k = nb - 1;
		if (k > 0 && v < edge(s, (size_t)k))
			k--;
		if (k != nb - 1 && v >= edge(s, (size_t)k + 1))
			k++;
		s->hist[k]++;
	}
}

void calib_qparams(double lo, double hi, bool int8_symmetric, float *scale, int32_t *zero_point)
{
	double rmin = lo < 0 ? lo : 0, rmax = hi > 0 ? hi : 0;
	if (int8_symmetric) {
		double a = fmax(fabs(rmin), fabs(rmax));
		float sc = (float)(2.0 * a / 254.0);
		if (!(sc > 0) || !isnormal(sc)) {
			*scale = 1.0f;
			*zero_point = 0;
			return;
		}
		*scale = sc;
		*zero_point = 0;
		return;
	}
	float sc = (float)((rmax - rmin) / 255.0);
	if (!(sc > 0) || !isnormal(sc)) {
		*scale = 1.0f;
		*zero_point = 0;
		return;
	}
	double z = nearbyint(0.0 - rmin / (double)sc);
	*scale = sc;
	*zero_point = (int32_t)(z < 0 ? 0 : z > 255 ? 255 : z);
}

/* First index i with cdf[i] >= v (numpy.searchsorted, side 'left'). */
static size_t search_cdf(const struct calib_stats *s, double total, double v)
{
	/* np.cumsum(hist / total), as ORT builds its cdf: the same sums in
	 * the same order, so ties at the tail resolve identically. */
	double run = 0;
	for (size_t i = 0; i < s->bins; i++) {
		run += (double)s->hist[i] / total;
		if (run >= v)
			return i;
	}
	return s->bins - 1;
}

static void clip(const struct calib_stats *s, double *lo, double *hi)
{
	if (*lo < s->min)
		*lo = s->min;
	if (*hi > s->max)
		*hi = s->max;
}

static void percentile_range(const struct calib_stats *s, double pct, double *lo, double *hi)
{
	double total = 0;
	for (size_t i = 0; i < s->bins; i++)
		total += (double)s->hist[i];
	if (s->abs_values) {
		double t = edge(s, search_cdf(s, total, pct / 100.0));
		*lo = -t;
		*hi = t;
	} else {
		double cut = (100.0 - pct) / 200.0;
		*lo = edge(s, search_cdf(s, total, cut));
		*hi = edge(s, search_cdf(s, total, 1.0 - cut));
	}
	clip(s, lo, hi);
}

/* quant_utils.smooth_distribution: moves eps of mass onto the empty bins.
 * false when every bin is empty. */
static bool smooth(double *p, size_t n)
{
	const double eps = 0.0001;
	size_t zeros = 0;
	for (size_t i = 0; i < n; i++)
		zeros += p[i] == 0;
	if (zeros == n)
		return false;
	double eps1 = eps * (double)zeros / (double)(n - zeros);
	for (size_t i = 0; i < n; i++)
		p[i] += p[i] == 0 ? eps : -eps1;
	return true;
}

/* scipy.stats.entropy(p, q): KL of the normalised distributions. */
static double kl(const double *p, const double *q, size_t n)
{
	double sp = 0, sq = 0;
	for (size_t i = 0; i < n; i++) {
		sp += p[i];
		sq += q[i];
	}
	double d = 0;
	for (size_t i = 0; i < n; i++) {
		double a = p[i] / sp, b = q[i] / sq;
		if (a > 0)
			d += a * log(a / b);
	}
	return d;
}

static enum nn_status entropy_range(const struct calib_stats *s, double *lo, double *hi,
				    struct nn_err *e)
{
	size_t nb = s->bins, zero = nb / 2, half = CALIB_QUANT_BINS / 2;
	if (zero < half)
		return err_set(e, NN_EINVAL, "internal", "", "too few bins for entropy");
	double *p = malloc(nb * sizeof *p), *q = malloc(nb * sizeof *q);
	uint64_t *qb = malloc(CALIB_QUANT_BINS * sizeof *qb);
	if (!p || !q || !qb) {
		free(p);
		free(q);
		free(qb);
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for entropy search");
	}
	double best = INFINITY;
	size_t best_start = zero - half, best_end = zero + half + 1 <= nb ? zero + half + 1 : nb;
	for (size_t i = half; i <= zero; i++) {
		size_t start = zero - i, end = zero + i + 1 <= nb ? zero + i + 1 : nb;
		size_t len = end - start;
		uint64_t left = 0, right = 0;
		for (size_t j = 0; j < start; j++)
			left += s->hist[j];
		for (size_t j = end; j < nb; j++)
			right += s->hist[j];
		for (size_t j = 0; j < len; j++)
			p[j] = (double)s->hist[start + j];
		p[0] += (double)left;
		p[len - 1] += (double)right;
		size_t merged = len / CALIB_QUANT_BINS;
		for (size_t b = 0; b < CALIB_QUANT_BINS; b++) {
			uint64_t sum = 0;
			for (size_t j = b * merged; j < (b + 1) * merged; j++)
				sum += s->hist[start + j];
			qb[b] = sum;
		}
		for (size_t j = CALIB_QUANT_BINS * merged; j < len; j++)
			qb[CALIB_QUANT_BINS - 1] += s->hist[start + j];
		for (size_t j = 0; j < len; j++)
			q[j] = 0;
		for (size_t b = 0; b < CALIB_QUANT_BINS; b++) {
			size_t norm = 0;
			for (size_t j = b * merged; j < (b + 1) * merged; j++)
				norm += p[j] != 0;
			if (!norm)
				continue;
			/* ORT's q is an int64 array: the quotient is truncated. */
			double v = trunc((double)qb[b] / (double)norm);
			for (size_t j = b * merged; j < (b + 1) * merged; j++)
				q[j] = v;
		}
		double d = INFINITY;
		if (smooth(p, len) && smooth(q, len))
			d = kl(p, q, len);
		if (d < best) {
			best = d;
			best_start = start;
			best_end = end;
		}
	}
	*lo = edge(s, best_start);
	*hi = edge(s, best_end);
	clip(s, lo, hi);
	free(p);
	free(q);
	free(qb);
	return NN_OK;
}

static void mse_range(const struct calib_stats *s, bool int8_symmetric, double *lo, double *hi)
{
	size_t nb = s->bins, zero = nb / 2;
	double qmin = int8_symmetric ? -127 : 0, qmax = int8_symmetric ? 127 : 255;
	double best = INFINITY;
	*lo = s->min;
	*hi = s->max;
	for (size_t k = 1; k <= zero; k++) {
		double a = edge(s, zero - k), b = edge(s, zero + k);
		clip(s, &a, &b);
		float sc;
		int32_t zp;
		calib_qparams(a, b, int8_symmetric, &sc, &zp);
		double err = 0;
		for (size_t j = 0; j < nb; j++) {
			if (!s->hist[j])
				continue;
			double c = (edge(s, j) + edge(s, j + 1)) / 2;
			double qv = nearbyint(c / (double)sc) + zp;
			qv = qv < qmin ? qmin : qv > qmax ? qmax : qv;
			double d = (qv - zp) * (double)sc - c;
			err += (double)s->hist[j] * d * d;
		}
		if (err < best) {
			best = err;
			*lo = a;
			*hi = b;
		}
	}
}

enum nn_status calib_range(const struct calib_stats *s, enum calib_method method,
			   double percentile, bool int8_symmetric, double *lo, double *hi,
			   struct nn_err *e)
{
	if (s->count == 0)
		return err_set(e, NN_EINVAL, "invalid_dataset", "dataset",
			       "the tensor took no finite value on the calibration data");
	if (method == CALIB_MINMAX || !(s->hist_hi > s->hist_lo)) {
		*lo = s->min;
		*hi = s->max;
		return NN_OK;
	}
	bool abs_values;
	calib_needs_hist(method, int8_symmetric, &abs_values);
	if (!s->hist || s->abs_values != abs_values)
		return err_set(e, NN_EINVAL, "internal", "", "calibration histogram missing");
	switch (method) {
	case CALIB_PERCENTILE:
		percentile_range(s, percentile, lo, hi);
		return NN_OK;
	case CALIB_ENTROPY:
		return entropy_range(s, lo, hi, e);
	case CALIB_MSE:
		mse_range(s, int8_symmetric, lo, hi);
		return NN_OK;
	case CALIB_MINMAX:
		break;
	}
	*lo = s->min;
	*hi = s->max;
	return NN_OK;
}
