/* synthmodel: big synthetic ONNX models for the benchmarks.
 *
 * A synthetic model is a chain of dense layers with no bias: input "x"
 * [1, dims[0]], then layer i maps dims[i] -> dims[i+1] with either
 *   - Gemm (transB = 1), weight "W<i>" [dims[i+1], dims[i]] (channel axis 0), or
 *   - MatMul, weight "W<i>" [dims[i], dims[i+1]] (channel axis 1),
 * and output "y" [1, dims[n]]. Weights are float32 in raw_data, borrowed from
 * caller-owned arrays while packing (nothing is copied into the proto).
 * Values come from synthmodel_fill: a fixed-seed PRNG, Irwin-Hall sum of four
 * uniforms, i.e. bell-shaped like trained weights, in (-2, 2) * scale.
 * Pure functions of their arguments; safe from any thread. */
#ifndef NNCD_BENCH_SYNTHMODEL_H
#define NNCD_BENCH_SYNTHMODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SYNTHMODEL_MAX_LAYERS 32

struct synthmodel {
	size_t n_layers;
	int64_t dims[SYNTHMODEL_MAX_LAYERS + 1];
	bool gemm[SYNTHMODEL_MAX_LAYERS];               /* Gemm transB=1, else MatMul */
	const float *weights[SYNTHMODEL_MAX_LAYERS];    /* dims[i] * dims[i+1] floats each */
};

/* Fills w[0..n) with bell-shaped values of standard deviation ~scale/1.73. */
void synthmodel_fill(float *w, size_t n, uint64_t seed, float scale);

/* Shape of layer i's weight as stored (rows, cols). */
void synthmodel_weight_shape(const struct synthmodel *s, size_t i, int64_t *rows, int64_t *cols);

/* Serialized model in a new malloc'd buffer (caller frees). */
enum nn_status synthmodel_pack(const struct synthmodel *s, uint8_t **out, size_t *len,
			       struct nn_err *e);

/* Streams the serialized model into path (created or truncated); *len gets
 * its size. Nothing but the caller's weights is held in memory. */
enum nn_status synthmodel_write_file(const struct synthmodel *s, const char *path, size_t *len,
				     struct nn_err *e);

#endif
