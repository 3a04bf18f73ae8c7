/* ops_gemm: the executor's matrix products: Gemm (alpha/beta, transA/transB,
 * broadcast C) and MatMul (numpy matmul semantics with batch broadcasting),
 * on float32 via OpenBLAS, or via the packed-weight kernel (gemm.h) when B is
 * a compile-time constant and OpenBLAS runs one thread.
 * Owns the exec_ops_gemm table (declared in exec_op.h) and the per-node
 * state it hands to the executor (packed B, MatMul geometry), freed through
 * the table's free_priv. Threading: run only reads that state, so plans on
 * distinct threads are independent. */
#ifndef NNCD_OPS_GEMM_H
#define NNCD_OPS_GEMM_H

#include "exec_op.h"

#endif
