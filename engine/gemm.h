/* gemm: float32 matrix product against a weight packed once, for the
 * executor's fully-connected layers (Gemm / MatMul with a constant B).
 *
 * Owns the packed copy of B: gemm_pack lays B [K, N] (or B^T) out as panels
 * of GEMM_NR columns, K-major and zero-padded to GEMM_NR, so a register-
 * blocked micro-kernel (AVX-512: 8 rows x 32 columns of C in 16 zmm
 * accumulators, FMA over K) streams it with aligned loads. gemm_run then
 * computes Y = alpha * A * B (+ Y when accumulating, which is how Gemm's
 * bias / beta*C, filled into Y beforehand, is added). Results differ from
 * BLAS only in summation order.
 *
 * Dispatch: the AVX-512 kernel is used when the CPU has avx512f (checked at
 * pack time, recorded in the struct); otherwise a portable C kernel over the
 * same layout. gemm_fast_available says whether packing is worth it at all
 * (callers keep cblas_sgemm otherwise).
 * Threading: a packed weight is read-only after gemm_pack; any number of
 * threads may run gemm_run on it concurrently (each with its own A and Y). */
#ifndef NNCD_GEMM_H
#define NNCD_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define GEMM_NR 32 /* columns per packed panel */

struct gemm_packed {
	int64_t k, n;     /* B is K x N (after transB) */
	int64_t panels;   /* ceil(n / GEMM_NR) */
	float *data;      /* panels * k * GEMM_NR floats, 64-byte aligned */
	size_t bytes;     /* allocation size of data */
	bool avx512;      /* run with the AVX-512 kernel */
};

/* True when this CPU runs the packed AVX-512 kernel (faster than OpenBLAS
 * for small M); false: keep calling BLAS. */
bool gemm_fast_available(void);

/* Packs B: row-major [k, n] when !trans_b, row-major [n, k] (B^T given)
 * when trans_b. k >= 1, n >= 1. NN_ENOMEM / NN_EINVAL (sizes overflow). */
enum nn_status gemm_pack(struct gemm_packed *p, const float *b, int64_t k, int64_t n,
			 bool trans_b, struct nn_err *e);
void gemm_packed_free(struct gemm_packed *p);

/* Y[m, n] (row stride ldy) = alpha * A[m, k] (row stride lda) * B
 * + (accumulate ? Y : 0). m may be 0. */
void gemm_run(const struct gemm_packed *p, int64_t m, const float *a, int64_t lda, float alpha,
	      float *y, int64_t ldy, bool accumulate);

/* The plain triple loop with the same contract on an unpacked B (trans_b as
 * in gemm_pack): the reference the packed path is tested against. */
void gemm_ref(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
	      bool trans_b, float alpha, float *y, int64_t ldy, bool accumulate);

#endif
