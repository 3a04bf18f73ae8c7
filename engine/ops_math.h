/* ops_math: the executor's element-wise operators: Add/Sub/Mul/Div with
 * multidirectional broadcasting (float32 and integer dtypes), the float32
 * activations (Relu, LeakyRelu, Sigmoid, Tanh, Erf, Gelu, HardSigmoid,
 * HardSwish; Erf and Gelu through ops_util's vectorised erf), Exp, Log, Round,
 * variadic Max/Min (float32/64, int32/64, broadcasting), Cast between the
 * numeric types and bool (out-of-range values saturate), Clip (float32 and
 * integer), Softmax/LogSoftmax, and ReduceMax/Min/Sum/Mean (axes as attribute
 * or, from opset 13 for ReduceSum and 18 for the others, as a constant input;
 * keepdims; noop_with_empty_axes).
 * Owns the exec_ops_math table (declared in exec_op.h) and no memory beyond
 * the per-node Softmax and Reduce geometry it hands to the executor.
 * Threading: stateless kernels, any thread. */
#ifndef NNCD_OPS_MATH_H
#define NNCD_OPS_MATH_H

#include "exec_op.h"

#endif
