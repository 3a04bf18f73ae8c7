/* calib: activation range estimation for static quantization, from values
 * streamed in two passes (never all values in memory).
 *
 * Owns struct calib_stats: the running min/max of one tensor (pass 1) and a
 * histogram of CALIB_BINS bins (pass 2) over a range fixed by pass 1:
 *   signed: [-t, t] with t = max(|min|, |max|) (ONNX Runtime's
 *           HistogramCollector.collect_value), used by entropy, mse and
 *           asymmetric percentile;
 *   abs:    [0, t] of |x| (collect_absolute_value), used by symmetric
 *           percentile (int8 activations).
 * Bin placement follows numpy.histogram on float64 data exactly (edges
 * lo + i * (hi - lo) / bins, the last bin closed), so a numpy reference
 * reproduces every count (tests/unit/data/calib_reference.py).
 *
 * Methods (calib_range):
 *   minmax:     [min, max].
 *   percentile: ONNX Runtime's HistogramCalibrater.compute_percentile: with
 *               the abs histogram, +-edge[first i with cdf[i] >= p/100];
 *               with the signed one, [edge[first i with cdf >= c],
 *               edge[first i with cdf >= 1 - c]], c = (100 - p) / 200.
 *               The result is clipped to [min, max].
 *   entropy:    TensorRT's KL-divergence threshold search as ONNX Runtime's
 *               HistogramCalibrater.get_entropy_threshold implements it
 *               (onnxruntime/python/tools/quantization/calibrate.py): for
 *               i = 64 .. bins/2 the slice hist[bins/2 - i, bins/2 + i + 1)
 *               is the reference p (outliers added to its end bins), merged
 *               into CALIB_QUANT_BINS (128) bins (the remainder into the last
 *               one), expanded back over p's non-zero bins with the integer
 *               truncation of ORT's int64 q, both smoothed (eps 1e-4,
 *               quant_utils.smooth_distribution) and compared by KL(p||q) on
 *               normalised distributions; the first minimum wins and the
 *               threshold (edge[start], edge[end]) is clipped to [min, max].
 *               Arithmetic is in double (ORT smooths in float32).
 *   mse:        the range minimising the mean squared error of quantizing
 *               the histogram (bin centres weighted by counts) with the
 *               scheme actually deployed (uint8 asymmetric, or int8
 *               symmetric): candidates are [edge[bins/2 - k], edge[bins/2 + k]]
 *               clipped to [min, max], k = 1 .. bins/2; first minimum wins.
 * Scale/zero point (calib_qparams) as ORT's compute_scale_zp: the range is
 * widened to include 0; uint8: scale = (hi - lo) / 255, zp = round(-lo /
 * scale); int8 symmetric: scale = max(|lo|, |hi|) / 127, zp 0; a range of
 * width 0 gets scale 1.
 *
 * No globals; a calib_stats belongs to one thread. */
#ifndef NNCD_CALIB_H
#define NNCD_CALIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define CALIB_BINS 2048
#define CALIB_QUANT_BINS 128

enum calib_method {
	CALIB_MINMAX,
	CALIB_PERCENTILE,
	CALIB_ENTROPY,
	CALIB_MSE,
};

struct calib_stats {
	double min, max;      /* pass 1 (finite values only) */
	uint64_t count;       /* finite values seen in pass 1 */
	uint64_t nonfinite;   /* NaN/Inf values seen (ignored) */
	uint64_t *hist;       /* pass 2: bins counts, owned; NULL before calib_hist_begin */
	size_t bins;
	double hist_lo, hist_hi;
	bool abs_values;      /* histogram of |x| over [0, t] */
};

void calib_init(struct calib_stats *s);
void calib_free(struct calib_stats *s);
/* Pass 1. */
void calib_observe_minmax(struct calib_stats *s, const float *x, size_t n);
/* Starts pass 2 over the range pass 1 found (bins >= 2*CALIB_QUANT_BINS for
 * entropy). NN_ENOMEM; NN_EINVAL when pass 1 saw no finite value. */
enum nn_status calib_hist_begin(struct calib_stats *s, size_t bins, bool abs_values,
				struct nn_err *e);
/* Pass 2 (values outside the pass-1 range, impossible for the same data, are
 * not counted, as numpy.histogram drops values outside its range). */
void calib_observe_hist(struct calib_stats *s, const float *x, size_t n);
/* True when `method` needs pass 2 (and whether with the abs histogram). */
bool calib_needs_hist(enum calib_method method, bool int8_symmetric, bool *abs_values);

/* The chosen range. percentile in (50, 100]; int8_symmetric: activations
 * int8 symmetric (else uint8 asymmetric). NN_EINVAL when no finite value
 * was seen or the histogram the method needs is missing. */
enum nn_status calib_range(const struct calib_stats *s, enum calib_method method,
			   double percentile, bool int8_symmetric, double *lo, double *hi,
			   struct nn_err *e);
/* Scale and zero point of range [lo, hi] (see above). */
void calib_qparams(double lo, double hi, bool int8_symmetric, float *scale, int32_t *zero_point);

#endif
