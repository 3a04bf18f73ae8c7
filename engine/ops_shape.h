/* ops_shape: the shape plumbing PyTorch exports around the dense layers:
 * Flatten, Reshape, Unsqueeze, Squeeze, Identity, Dropout (inference),
 * Transpose, Concat, Constant, Shape, Gather and Pad (the all-zero Pad PyTorch
 * puts in front of AvgPool2d; constant, edge and reflect modes).
 * Owns the exec_ops_shape table (declared in exec_op.h) and no memory beyond
 * per-node state it hands to the executor (Constant's value, Transpose's
 * permutation). Threading: stateless kernels, any thread. */
#ifndef NNCD_OPS_SHAPE_H
#define NNCD_OPS_SHAPE_H

#include "exec_op.h"

#endif
