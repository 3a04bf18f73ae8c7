/* ops_conv: the ONNX operator adapters for Conv, MaxPool, AveragePool,
 * GlobalAveragePool, GlobalMaxPool and BatchNormalization (inference), on
 * float32, plugged into the executor through exec_op.h.
 *
 * Owns the exec_ops_conv table (declared in exec_op.h): check rejects the
 * attributes these kernels cannot run (naming the attribute), infer parses
 * the attributes once into a private parameter struct (conv.h), resolves
 * auto_pad and ceil_mode to output shapes and declares the im2col scratch;
 * run calls the kernels in conv.c. No state outside the per-node private
 * struct, which run only reads: plans on distinct threads are independent. */
#ifndef NNCD_OPS_CONV_H
#define NNCD_OPS_CONV_H

#include "exec_op.h"

#endif
