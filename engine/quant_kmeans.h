/* quant_kmeans: the kmeans scheme of the `quantize` step (weight sharing,
 * Deep Compression style).
 *
 * Each selected weight W gets a codebook of 2^bits float centroids found by
 * 1-D k-means (Lloyd) on its values: centroids start evenly spaced over
 * [min, max] of the non-zero weights, iterations stop when no centroid moves
 * (at most QUANT_KMEANS_MAX_ITERS). When W holds exact zeros (pruned), 0 is a
 * fixed centroid (codebook[0]) that takes exactly the zeros, and the other
 * 2^bits - 1 centroids cluster the non-zero values: sparsity survives
 * exactly. Sums are accumulated in double in index order: deterministic.
 *
 * Written as ONNX Runtime runs it: W_indices (uint8, W's shape),
 * W_codebook (float [2^bits]), Cast(W_indices, to INT32) and
 * Gather(W_codebook, indices, axis 0) whose output keeps the name W
 * (ONNX Gather takes only int32/int64 indices; uint8 storage + Cast is the
 * smallest layout both runtimes accept). The compact form for the packed
 * format (bits per index + codebook) is in the metrics: packed_bytes.
 * Thread rules as quant.h. */
#ifndef NNCD_QUANT_KMEANS_H
#define NNCD_QUANT_KMEANS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"
#include "quant.h"
#include "step.h"

#define QUANT_KMEANS_MAX_ITERS 300

struct quant_kmeans_stats {
	int iterations;     /* Lloyd iterations run (the last one moved nothing, unless capped) */
	bool converged;
	bool zero_centroid; /* codebook[0] is the fixed 0 for the exact zeros */
	size_t zeros;       /* exact zeros in w */
	double mse, max_abs_error;
};

/* Clusters w[0..n) into 1 << bits centroids (bits 1..8): codebook gets
 * 1 << bits floats, idx[i] the centroid of w[i]. NN_EINVAL for NaN/Inf;
 * NN_ECANCELED when ctx (may be NULL) is canceled. */
enum nn_status quant_kmeans_cluster(const float *w, size_t n, int bits, float *codebook,
				    uint8_t *idx, struct quant_kmeans_stats *stats,
				    const struct step_ctx *ctx, struct nn_err *e);

/* p->scheme is QUANT_KMEANS. Metrics as quant_run's, per layer: bits,
 * centroids, iterations, converged, mse, max_abs_error, bytes (indices +
 * codebook as written), packed_bytes (bits per index + codebook). */
enum nn_status quant_kmeans_run(struct onnx_model *m, const struct quant_params *p,
				const struct step_ctx *ctx, json_t **metrics, struct nn_err *e);

#endif
