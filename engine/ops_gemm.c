/* ops_gemm: Gemm and MatMul (see ops_gemm.h).
 * ONNX semantics per operator and opset; every kernel writes only its
 * planned output buffers and never allocates. */
#include "ops_gemm.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "exec_op.h"
#include "gemm.h"
#include "ops_util.h"

/* ---- Gemm ---- */

static enum nn_status infer_gemm(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = want_io(c, 2, 3, e);
	for (size_t k = 0; st == NN_OK && k < 3; k++)
		if (has_in(c, k))
			st = want_dtype(c, k, DT_FLOAT, e);
	if (st != NN_OK)
		return st;
	const struct tensor *a = &c->in[0], *b = &c->in[1];
	if (a->ndim != 2 || b->ndim != 2)
		return exec_node_err(e, NN_EINVAL, c->node, "A and B must be 2-D (ranks %d, %d)",
				     a->ndim, b->ndim);
	bool ta = exec_attr_int(c->node, "transA", 0) != 0;
	bool tb = exec_attr_int(c->node, "transB", 0) != 0;
	int64_t m = ta ? a->shape[1] : a->shape[0], k = ta ? a->shape[0] : a->shape[1];
	int64_t kb = tb ? b->shape[1] : b->shape[0], n = tb ? b->shape[0] : b->shape[1];
	if (k != kb)
		return exec_node_err(e, NN_EINVAL, c->node,
				     "inner dimensions differ (%lld and %lld)", (long long)k,
				     (long long)kb);
	int64_t shape[2] = {m, n};
	if (has_in(c, 2)) {
		const struct tensor *cc = &c->in[2];
		struct tensor y = {.ndim = 2, .shape = {m, n}}, o = {0};
		if (cc->ndim > 2 || !ops_broadcast_shape(&y, cc, &o) || o.shape[0] != m ||
		    o.shape[1] != n)
			return exec_node_err(e, NN_EINVAL, c->node,
					     "C does not broadcast to [%lld, %lld]", (long long)m,
					     (long long)n);
	}
	if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX)
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "dimensions too large for BLAS");
	set_out(&c->out[0], DT_FLOAT, 2, shape);
	/* A constant weight is packed once here for gemm.c's kernel, which beats
	 * OpenBLAS at the executor's small batches; transA stays on BLAS. */
	if (b->data && !ta && k > 0 && n > 0 && gemm_fast_available()) {
		struct gemm_packed *pk = malloc(sizeof *pk);
		if (!pk)
			return exec_node_err(e, NN_ENOMEM, c->node, "out of memory");
		enum nn_status pst = gemm_pack(pk, b->data, k, n, tb, e);
		if (pst != NN_OK) {
			free(pk);
			return exec_node_err(e, pst, c->node, "%s",
					     pst == NN_ENOMEM ? "out of memory packing B"
							      : "B too large to pack");
		}
		c->priv = pk;
		c->priv_bytes = pk->bytes;
	}
	return NN_OK;
}

/* The packed kernel runs on the calling thread only: when OpenBLAS may use
 * more threads, its threaded sgemm wins on the large layers, so the packed
 * weight serves the single-threaded configuration (the daemon's busy workers,
 * the executor's batch slices). */
static bool use_packed(bool packed)
{
	return packed && openblas_get_num_threads() == 1;
}

static void free_gemm(void *priv)
{
	gemm_packed_free(priv);
	free(priv);
}

static enum nn_status run_gemm(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const struct tensor *a = &c->in[0], *b = &c->in[1];
	float *y = c->out[0].data;
	bool ta = exec_attr_int(c->node, "transA", 0) != 0;
	bool tb = exec_attr_int(c->node, "transB", 0) != 0;
	float alpha = exec_attr_float(c->node, "alpha", 1.0f);
	float beta = exec_attr_float(c->node, "beta", 1.0f);
	int m = (int)c->out[0].shape[0], n = (int)c->out[0].shape[1];
	int k = (int)(ta ? a->shape[0] : a->shape[1]);
	if ((int64_t)m * n == 0)
		return NN_OK;
	float gb = 0.0f;
	if (run_has_in(c, 2) && beta != 0.0f) {
		const struct tensor *cc = &c->in[2];
		const float *cd = cc->data;
		int64_t cr = cc->ndim == 2 ? cc->shape[0] : 1;
		int64_t ccols = cc->ndim >= 1 ? cc->shape[cc->ndim - 1] : 1;
		for (int i = 0; i < m; i++) {
			const float *crow = cd + (cr == 1 ? 0 : (int64_t)i * ccols);
			float *yr = y + (int64_t)i * n;
			if (ccols == 1)
				for (int j = 0; j < n; j++)
					yr[j] = beta * crow[0];
			else
				for (int j = 0; j < n; j++)
					yr[j] = beta * crow[j];
		}
		gb = 1.0f;
	}
	if (k == 0) {
		if (gb == 0.0f)
			memset(y, 0, sizeof(float) * (size_t)m * (size_t)n);
		return NN_OK;
	}
	if (use_packed(c->priv != NULL)) {
		gemm_run(c->priv, m, a->data, k, alpha, y, n, gb != 0.0f);
		return NN_OK;
	}
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
		    m, n, k, alpha, a->data, (int)a->shape[1], b->data, (int)b->shape[1], gb, y, n);
	return NN_OK;
}

/* ---- MatMul (numpy matmul semantics) ---- */

struct matmul_geom {
	int64_t m, k, n, batch;
	int nd; /* batch rank */
	int64_t bshape[TENSOR_MAX_DIMS], sa[TENSOR_MAX_DIMS], sb[TENSOR_MAX_DIMS];
	bool fold_a; /* B is 2-D: A's batch folds into M */
	bool packed; /* B is a constant matrix, packed for gemm_run */
	struct gemm_packed pb;
};

static void free_matmul(void *priv)
{
	struct matmul_geom *g = priv;
	gemm_packed_free(&g->pb);
	free(g);
}

static enum nn_status infer_matmul(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = want_io(c, 2, 2, e);
	if (st == NN_OK)
		st = want_dtype(c, 0, DT_FLOAT, e);
	if (st == NN_OK)
		st = want_dtype(c, 1, DT_FLOAT, e);
	if (st != NN_OK)
		return st;
	const struct tensor *a = &c->in[0], *b = &c->in[1];
	if (a->ndim < 1 || b->ndim < 1)
		return exec_node_err(e, NN_EINVAL, c->node, "inputs must have rank >= 1");
	struct matmul_geom *g = calloc(1, sizeof *g);
	if (!g)
		return exec_node_err(e, NN_ENOMEM, c->node, "out of memory");
	g->m = a->ndim == 1 ? 1 : a->shape[a->ndim - 2];
	g->k = a->shape[a->ndim - 1];
	int64_t kb = b->ndim == 1 ? b->shape[0] : b->shape[b->ndim - 2];
	g->n = b->ndim == 1 ? 1 : b->shape[b->ndim - 1];
	if (g->k != kb) {
		int64_t ka = g->k;
		free(g);
		return exec_node_err(e, NN_EINVAL, c->node, "inner dimensions differ (%lld and %lld)",
				     (long long)ka, (long long)kb);
	}
	struct tensor ba = {.ndim = a->ndim > 2 ? a->ndim - 2 : 0};
	struct tensor bb = {.ndim = b->ndim > 2 ? b->ndim - 2 : 0};
	memcpy(ba.shape, a->shape, sizeof(int64_t) * (size_t)ba.ndim);
	memcpy(bb.shape, b->shape, sizeof(int64_t) * (size_t)bb.ndim);
	struct tensor bo = {0};
	if (!ops_broadcast_shape(&ba, &bb, &bo)) {
		free(g);
		return exec_node_err(e, NN_EINVAL, c->node, "batch dimensions do not broadcast");
	}
	g->nd = bo.ndim;
	g->batch = 1;
	memcpy(g->bshape, bo.shape, sizeof(int64_t) * (size_t)bo.ndim);
	bcast_strides(&ba, &bo, g->sa);
	bcast_strides(&bb, &bo, g->sb);
	bool big = false;
	for (int d = 0; d < bo.ndim; d++)
		big |= __builtin_mul_overflow(g->batch, bo.shape[d], &g->batch);
	int64_t mb = 0;
	big |= __builtin_mul_overflow(g->m, g->batch, &mb);
	g->fold_a = b->ndim <= 2;
	int64_t shape[TENSOR_MAX_DIMS];
	int nd = 0;
	for (int d = 0; d < bo.ndim; d++)
		shape[nd++] = bo.shape[d];
	if (a->ndim > 1)
		shape[nd++] = g->m;
	if (b->ndim > 1)
		shape[nd++] = g->n;
	if (big || nd > TENSOR_MAX_DIMS || mb > INT32_MAX || g->n > INT32_MAX ||
	    g->k > INT32_MAX) {
		free(g);
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "shape too large");
	}
	set_out(&c->out[0], DT_FLOAT, nd, shape);
	/* Constant 2-D weight: pack once for gemm.c (see infer_gemm). */
	if (g->fold_a && b->data && g->k > 0 && g->n > 0 && gemm_fast_available()) {
		enum nn_status pst = gemm_pack(&g->pb, b->data, g->k, g->n, false, e);
		if (pst != NN_OK) {
			free(g);
			return exec_node_err(e, pst, c->node, "%s",
					     pst == NN_ENOMEM ? "out of memory packing B"
							      : "B too large to pack");
		}
		g->packed = true;
		c->priv_bytes = g->pb.bytes;
	}
	c->priv = g;
	return NN_OK;
}

static void sgemm_nn(int64_t m, int64_t n, int64_t k, const float *a, const float *b, float *y)
{
	if (m == 0 || n == 0)
		return;
	if (k == 0) {
		memset(y, 0, sizeof(float) * (size_t)(m * n));
		return;
	}
	if (n == 1)
		cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)k, 1.0f, a, (int)k, b, 1,
			    0.0f, y, 1);
	else
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f,
			    a, (int)k, b, (int)n, 0.0f, y, (int)n);
}

static enum nn_status run_matmul(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const struct matmul_geom *g = c->priv;
	const float *a = c->in[0].data, *b = c->in[1].data;
	float *y = c->out[0].data;
	if (use_packed(g->packed)) {
		gemm_run(&g->pb, g->m * g->batch, a, g->k, 1.0f, y, g->n, false);
		return NN_OK;
	}
	if (g->fold_a) {
		sgemm_nn(g->m * g->batch, g->n, g->k, a, b, y);
		return NN_OK;
	}
	int64_t idx[TENSOR_MAX_DIMS] = {0}, oa = 0, ob = 0;
	int64_t ma = g->m * g->k, mb = g->k * g->n, my = g->m * g->n;
	for (int64_t t = 0; t < g->batch; t++) {
		sgemm_nn(g->m, g->n, g->k, a + oa * ma, b + ob * mb, y + t * my);
		for (int d = g->nd - 1; d >= 0; d--) {
			idx[d]++;
			oa += g->sa[d];
			ob += g->sb[d];
			if (idx[d] < g->bshape[d])
				break;
			oa -= g->sa[d] * idx[d];
			ob -= g->sb[d] * idx[d];
			idx[d] = 0;
		}
	}
	return NN_OK;
}

const struct exec_op exec_ops_gemm[] = {
	{"", "Gemm", NULL, infer_gemm, run_gemm, free_gemm},
	{"", "MatMul", NULL, infer_matmul, run_matmul, free_matmul},
};
const size_t exec_ops_gemm_count = sizeof exec_ops_gemm / sizeof exec_ops_gemm[0];
