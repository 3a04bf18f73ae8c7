/* ops_math: the executor's element-wise operators: Add/Sub/Mul/Div with
 * multidirectional broadcasting (float32 and integer dtypes), the float32
 * activations (Relu, LeakyRelu, Sigmoid, Tanh, Erf, Gelu, HardSigmoid,
 * HardSwish), Clip (float32 and integer) and Softmax/LogSoftmax.
 * Owns the exec_ops_math table (declared in exec_op.h) and no memory beyond
 * the per-node Softmax geometry it hands to the executor.
 * Threading: stateless kernels, any thread. */
#ifndef NNCD_OPS_MATH_H
#define NNCD_OPS_MATH_H

#include "exec_op.h"

#endif
