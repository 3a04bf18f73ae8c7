/* ops_basic: the executor's dense float32 operators and the shape plumbing
 * PyTorch exports around them (Gemm, MatMul, element-wise arithmetic with
 * broadcasting, activations, Softmax, Reshape/Flatten/Transpose/Concat,
 * Shape/Gather/Unsqueeze/Squeeze, Constant, Identity, Dropout).
 * The op table (exec_ops_basic) is declared in exec_op.h; this header gives
 * the shape helpers other op modules reuse.
 * Owns no memory beyond per-node state it hands to the executor (Constant's
 * value). Threading: stateless kernels, any thread. */
#ifndef NNCD_OPS_BASIC_H
#define NNCD_OPS_BASIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

/* Multidirectional (numpy) broadcast of a's and b's shapes into out
 * (ndim + shape); false when they do not broadcast. */
bool ops_broadcast_shape(const struct tensor *a, const struct tensor *b, struct tensor *out);

/* Reads element i of an integer tensor (int64, int32, int8, uint8, ...) as
 * int64; 0 for non-integer dtypes. */
int64_t ops_int_at(const struct tensor *t, int64_t i);

#endif
