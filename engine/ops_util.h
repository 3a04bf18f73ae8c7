/* ops_util: helpers the operator modules share (private to engine/ops_*.c).
 * ops_broadcast_shape and ops_int_at are used by ops_math, ops_gemm and
 * ops_quant; the small infer/run-context checks, set_out and bcast_strides
 * below are static inline so each op module keeps them file-local (no extra
 * exported names, same code as when they lived beside the kernels).
 * ops_erf / ops_gelu are the vectorised float32 erf and exact-form GELU
 * (AVX-512 or AVX2+FMA chosen at run time, portable code otherwise).
 * Owns nothing. Threading: pure functions, any thread. */
#ifndef NNCD_OPS_UTIL_H
#define NNCD_OPS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "exec_op.h"
#include "tensor.h"

/* Multidirectional (numpy) broadcast of a's and b's shapes into out
 * (ndim + shape); false when they do not broadcast. */
bool ops_broadcast_shape(const struct tensor *a, const struct tensor *b, struct tensor *out);

/* Reads element i of an integer tensor (int64, int32, int8, uint8, ...) as
 * int64; 0 for non-integer dtypes. */
int64_t ops_int_at(const struct tensor *t, int64_t i);

/* Vector paths of ops_erf / ops_gelu. */
enum ops_simd { OPS_SIMD_SCALAR, OPS_SIMD_AVX2, OPS_SIMD_AVX512 };

/* The best path this CPU runs (AVX-512F, else AVX2 with FMA, else scalar). */
enum ops_simd ops_simd_best(void);

/* y[i] = erf(x[i]) for n floats (y may equal x). A rational approximation
 * x * P(x^2) / Q(x^2) on |x| <= 4 (erf is +-1 in float beyond), evaluated in
 * float: maximum absolute error against erf() in double 3.3e-7 with FMA,
 * 4.0e-7 on the scalar path (a few ulp of 1.0, near |x| = 3.9; far smaller
 * near 0, where the relative error stays below 1e-6), measured over [-6, 6]
 * in steps of 2^-14 by tests/unit/test_ops_util.c, which holds every path to
 * 5e-7; NaN stays NaN. glibc's erff is more exact (< 1 ulp) but scalar and
 * 8-16x slower; every consumer compares to ONNX Runtime at 1e-4. The vector paths use FMA, the
 * scalar one separate multiplies and adds, so paths may differ in the last
 * bit; a given CPU always takes the same path (bit-identical across threads). */
void ops_erf(const float *x, float *y, int64_t n);
/* y[i] = 0.5 * x[i] * (1 + erf(x[i] / sqrt(2))) (GELU, approximate "none"). */
void ops_gelu(const float *x, float *y, int64_t n);
/* The same on a given path (tests); a path the CPU lacks falls back to the
 * best one it has. */
void ops_erf_simd(enum ops_simd s, const float *x, float *y, int64_t n);
void ops_gelu_simd(enum ops_simd s, const float *x, float *y, int64_t n);

static inline bool has_in(const struct exec_infer_ctx *c, size_t k)
{
	return k < c->n_in && c->in[k].dtype != DT_UNDEFINED;
}

static inline bool run_has_in(const struct exec_run_ctx *c, size_t k)
{
	return k < c->n_in && c->in[k].dtype != DT_UNDEFINED;
}

/* The first `need` inputs present, at most `max`, at least one output. */
static inline enum nn_status want_io(const struct exec_infer_ctx *c, size_t need, size_t max,
				     struct nn_err *e)
{
	if (c->n_in < need || c->n_in > max)
		return exec_node_err(e, NN_EINVAL, c->node, "takes %zu to %zu inputs, has %zu",
				     need, max, c->n_in);
	for (size_t k = 0; k < need; k++)
		if (c->in[k].dtype == DT_UNDEFINED)
			return exec_node_err(e, NN_EINVAL, c->node, "input %zu is required", k);
	if (c->n_out < 1)
		return exec_node_err(e, NN_EINVAL, c->node, "has no output");
	return NN_OK;
}

static inline enum nn_status want_dtype(const struct exec_infer_ctx *c, size_t k, enum dtype dt,
					struct nn_err *e)
{
	if (c->in[k].dtype != dt)
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "input %zu has dtype %s (%s expected)",
				     k, dtype_name(c->in[k].dtype), dtype_name(dt));
	return NN_OK;
}

static inline void set_out(struct tensor *o, enum dtype dt, int ndim, const int64_t *shape)
{
	memset(o, 0, sizeof *o);
	o->dtype = dt;
	o->ndim = ndim;
	if (ndim > 0)
		memcpy(o->shape, shape, sizeof(int64_t) * (size_t)ndim);
}

/* Element strides of t broadcast to y's shape (0 on broadcast dims). */
static inline void bcast_strides(const struct tensor *t, const struct tensor *y, int64_t *st)
{
	int64_t s = 1;
	for (int i = y->ndim - 1; i >= 0; i--) {
		int it = i - (y->ndim - t->ndim);
		int64_t d = it >= 0 ? t->shape[it] : 1;
		st[i] = d == 1 ? 0 : s;
		s *= d;
	}
}

#endif
