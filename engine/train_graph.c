/* train_graph: reverse-mode training graph over an ONNX model (see train_graph.h).
 *
 * Compile: nodes are visited in the model's (topological) order. Shapes come
 * from the executor's own per-operator inference (exec_op.h) at the maximum
 * batch, and any node whose inputs are all compile-time constants (or a Shape)
 * is folded by the executor's kernel, which is how PyTorch's
 * Shape->Gather->Unsqueeze->Concat->Reshape pattern disappears. The remaining
 * nodes become training nodes with their own forward and backward kernels
 * here (dense and element-wise) or in train_conv.h (convolution family).
 *
 * Values: every activation has dim 0 = the batch, so a smaller batch n runs
 * on the same buffers with n rows. Shape-only nodes (Reshape, Flatten,
 * Squeeze, Unsqueeze, Identity) alias their input's value and gradient
 * buffers: no copy forward, nothing to do backward. An activation gets its
 * own buffer only when backward reads it (bwd_reads), or it is the output or
 * a tap; the others share slabs by forward lifetime (plan_buffers).
 * Backward: a value's gradient buffer carries a `written` flag reset at the
 * start of tg_backward; the first contribution overwrites, later ones add, so
 * nothing is zeroed per batch except where a broadcast reduction needs it. */
#include "train_graph.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "exec_op.h"
#include "rng.h"
#include "train_conv.h"

#define TG_MAX_IN 8

enum tg_kind {
	K_ALIAS, K_GEMM, K_MATMUL, K_ADD, K_SUB, K_MUL, K_DIV,
	K_RELU, K_LEAKY, K_SIGMOID, K_TANH, K_GELU, K_GELU_TANH, K_ERF, K_HSWISH, K_HSIGMOID,
	K_CLIP, K_SOFTMAX, K_LOGSOFTMAX, K_DROPOUT, K_TRANSPOSE, K_CONCAT,
	K_CONV, K_MAXPOOL, K_AVGPOOL, K_GAP, K_BN, K_PAD,
};

struct tg_value {
	char *name;
	enum dtype dtype;
	int ndim;
	int64_t shape[TENSOR_MAX_DIMS]; /* at the max batch */
	bool is_const;   /* initializer or folded: data in cdata */
	bool is_init;    /* a model initializer (write-back target) */
	bool batched;    /* activation: dim 0 is the batch */
	int64_t per;     /* batched: elements per sample; const: numel */
	void *cdata;     /* owned constant data (any dtype) */
	float *val;      /* float view: cdata, an owned activation buffer, or the alias root's */
	float *grad;     /* gradient buffer (root values that need one) */
	bool own_val;
	bool needs_grad;
	bool written;    /* backward: grad holds a contribution */
	int alias;       /* -1, or the value whose buffers this one shares */
	int def;         /* producing training node, -1 for inputs and constants */
};

struct tg_node {
	const Onnx__NodeProto *proto; /* borrowed during compile only */
	char *name;
	enum tg_kind kind;
	int in[TG_MAX_IN];
	int n_in;
	int out;
	bool back;       /* some input needs a gradient */
	float alpha, beta, lo, hi, ratio, momentum, eps, pad_value;
	int trans_b;
	int64_t k, nn;   /* Gemm / MatMul: inner and output columns */
	int64_t rows_per; /* MatMul: rows per sample; Softmax: rows per sample */
	int64_t cols;    /* Softmax columns; Concat / BN / GAP channel helpers */
	int64_t perm[TENSOR_MAX_DIMS];
	int64_t axis;
	struct tc_conv conv;
	struct tc_pool pool;
	struct tc_pad pad;
	int32_t *argmax;
	float *save_mean, *save_invstd;
	uint8_t *mask;
};

struct tg_tapinfo {
	int v;
	float *grad; /* max_batch * per floats */
};

struct tg_graph {
	struct tg_value *v;
	size_t nv, cap_v;
	struct tg_node *nodes;
	size_t nn, cap_n;
	struct tg_param *params;
	int *param_v;
	size_t np;
	int *state_v; /* BN running statistics (written back) */
	size_t nstate;
	struct tg_tapinfo *taps;
	size_t ntaps;
	int in_v, out_v;
	struct tensor in_spec, out_spec;
	int64_t max_batch, n;
	bool training, ran;
	struct rng rng;
	float *tmp1, *tmp2; /* scratch for accumulating kernels that overwrite */
	size_t tmp_floats;
	float *tmpc;        /* 2 x the widest channel count: per-channel gradients */
	size_t tmpc_floats;
	struct tg_slab *slabs; /* shared buffers of activations backward does not read */
	size_t n_slabs;
	float *conv_scratch;
	size_t conv_scratch_floats;
};

/* ---------------------------------------------------------------- helpers */

static int root(const struct tg_graph *g, int vi)
{
	while (vi >= 0 && g->v[vi].alias >= 0)
		vi = g->v[vi].alias;
	return vi;
}

static int value_find(const struct tg_graph *g, const char *name)
{
	for (size_t i = g->nv; i-- > 0;)
		if (strcmp(g->v[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int value_add(struct tg_graph *g, const char *name, struct nn_err *e)
{
	if (g->nv == g->cap_v) {
		size_t cap = g->cap_v ? g->cap_v * 2 : 64;
		struct tg_value *nv = realloc(g->v, cap * sizeof *nv);
		if (!nv) {
			err_set(e, NN_ENOMEM, "out_of_memory", "", "allocating the train graph");
			return -1;
		}
		g->v = nv;
		g->cap_v = cap;
	}
	struct tg_value *v = &g->v[g->nv];
	memset(v, 0, sizeof *v);
	v->alias = -1;
	v->def = -1;
	v->name = strdup(name ? name : "");
	if (!v->name) {
		err_set(e, NN_ENOMEM, "out_of_memory", "", "allocating the train graph");
		return -1;
	}
	return (int)g->nv++;
}

static int64_t numel_of(int ndim, const int64_t *shape)
{
	int64_t n = 1;
	for (int i = 0; i < ndim; i++)
		n *= shape[i];
	return n;
}

/* Elements of value vi for the current batch n. */
static int64_t cur_numel(const struct tg_graph *g, int vi)
{
	const struct tg_value *v = &g->v[vi];
	return v->batched ? g->n * v->per : v->per;
}

static float *fbuf(size_t n)
{
	size_t bytes = (n ? n : 1) * sizeof(float);
	bytes = (bytes + 63) & ~(size_t)63;
	return aligned_alloc(64, bytes);
}

static enum nn_status oom(struct nn_err *e)
{
	return err_set(e, NN_ENOMEM, "out_of_memory", "", "allocating the train graph");
}

static void add_into(float *d, const float *s, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		d[i] += s[i];
}

/* Gradient destination of value vi: its root's buffer; *acc tells whether a
 * contribution is already there. Call mark() after writing. */
static float *gdst(struct tg_graph *g, int vi, bool *acc)
{
	int r = root(g, vi);
	*acc = g->v[r].written;
	return g->v[r].grad;
}

static void mark(struct tg_graph *g, int vi)
{
	g->v[root(g, vi)].written = true;
}

static bool needs(const struct tg_graph *g, int vi)
{
	return vi >= 0 && g->v[root(g, vi)].needs_grad;
}

static const float *val(const struct tg_graph *g, int vi)
{
	return g->v[root(g, vi)].val;
}

/* ------------------------------------------------- broadcast element-wise */

enum bc_code { BF_ADD, BF_SUB, BF_MUL, BF_DIV, BG_ADD, BG_SUB, BG_MULA, BG_MULB, BG_DIVA, BG_DIVB };

struct bc {
	int d;
	int64_t dim[TENSOR_MAX_DIMS];
	int64_t sa[TENSOR_MAX_DIMS], sb[TENSOR_MAX_DIMS], so[TENSOR_MAX_DIMS];
};

/* Strides of an input of shape (nd, sh) right-aligned into output dims od[d]
 * (0 where it broadcasts). */
static void bc_strides(int d, const int64_t *od, int nd, const int64_t *sh, int64_t *s)
{
	int64_t st = 1;
	for (int k = d - 1; k >= 0; k--) {
		int j = k - (d - nd);
		int64_t dim = j >= 0 ? sh[j] : 1;
		s[k] = (dim == 1 && od[k] != 1) ? 0 : st;
		st *= dim;
	}
}

/* Runtime broadcast description for node nd (batch rows g->n), with
 * adjacent dimensions merged where every operand stays contiguous. */
static void bc_build(const struct tg_graph *g, const struct tg_node *nd, struct bc *bc)
{
	const struct tg_value *o = &g->v[nd->out];
	int d = o->ndim;
	int64_t od[TENSOR_MAX_DIMS], ash[TENSOR_MAX_DIMS], bsh[TENSOR_MAX_DIMS];
	memcpy(od, o->shape, sizeof od);
	if (d > 0)
		od[0] = g->n;
	const struct tg_value *a = &g->v[nd->in[0]], *b = &g->v[nd->in[1]];
	memcpy(ash, a->shape, sizeof ash);
	memcpy(bsh, b->shape, sizeof bsh);
	if (a->batched)
		ash[0] = g->n;
	if (b->batched)
		bsh[0] = g->n;
	int64_t sa[TENSOR_MAX_DIMS], sb[TENSOR_MAX_DIMS], so[TENSOR_MAX_DIMS];
	bc_strides(d, od, a->ndim, ash, sa);
	bc_strides(d, od, b->ndim, bsh, sb);
	bc_strides(d, od, d, od, so);
	/* merge dim k into k+1 when all three are linear across the pair */
	bc->d = 0;
	for (int k = 0; k < d; k++) {
		if (od[k] == 1)
			continue;
		int c = bc->d;
		if (c > 0 && bc->sa[c - 1] == sa[k] * od[k] &&
		    bc->sb[c - 1] == sb[k] * od[k] && bc->so[c - 1] == so[k] * od[k]) {
			/* previous (outer) dim continues this one linearly: fold it in */
			bc->dim[c - 1] *= od[k];
			bc->sa[c - 1] = sa[k];
			bc->sb[c - 1] = sb[k];
			bc->so[c - 1] = so[k];
			continue;
		}
		bc->dim[c] = od[k];
		bc->sa[c] = sa[k];
		bc->sb[c] = sb[k];
		bc->so[c] = so[k];
		bc->d++;
	}
	if (bc->d == 0) {
		bc->d = 1;
		bc->dim[0] = 1;
		bc->sa[0] = bc->sb[0] = bc->so[0] = 0;
	}
}

/* Forward (BF_*): t[o] = a op b over the output (ts = so).
 * Backward (BG_*): t[ts-index] += f(dy[o], a, b) (t is dA with ts = sa, or
 * dB with ts = sb; zeroed by the caller when it holds no contribution). */
static void bc_run(const struct bc *bc, enum bc_code code, float *t, const int64_t *ts,
		   const float *dy, const float *a, const float *b)
{
	int d = bc->d;
	int64_t idx[TENSOR_MAX_DIMS] = {0};
	int64_t n_in = bc->dim[d - 1];
	int64_t ia = bc->sa[d - 1], ib = bc->sb[d - 1], io = bc->so[d - 1], it = ts[d - 1];
	for (;;) {
		int64_t oa = 0, ob = 0, oo = 0, ot = 0;
		for (int k = 0; k < d - 1; k++) {
			oa += idx[k] * bc->sa[k];
			ob += idx[k] * bc->sb[k];
			oo += idx[k] * bc->so[k];
			ot += idx[k] * ts[k];
		}
		const float *pa = a + oa, *pb = b + ob, *pd = dy ? dy + oo : NULL;
		float *pt = t + ot;
		switch (code) {
		case BF_ADD:
			for (int64_t i = 0; i < n_in; i++)
				pt[i * it] = pa[i * ia] + pb[i * ib];
			break;
		case BF_SUB:
			for (int64_t i = 0; i < n_in; i++)
				pt[i * it] = pa[i * ia] - pb[i * ib];
			break;
		case BF_MUL:
			for (int64_t i = 0; i < n_in; i++)
				pt[i * it] = pa[i * ia] * pb[i * ib];
			break;
		case BF_DIV:
			for (int64_t i = 0; i < n_in; i++)
				pt[i * it] = pa[i * ia] / pb[i * ib];
			break;
		case BG_ADD:
			for (int64_t i = 0; i < n_in; i++)
				pt[i * it] += pd[i * io];
			break;
		case BG_SUB:
			for (int64_t i = 0; i < n_in; i++)
				pt[i * it] -= pd[i * io];
			break;
		case BG_MULA:
			for (int64_t i = 0; i < n_in; i++)
				pt[i * it] += pd[i * io] * pb[i * ib];
			break;
		case BG_MULB:
			for (int64_t i = 0; i < n_in; i++)
				pt[i * it] += pd[i * io] * pa[i * ia];
			break;
		case BG_DIVA:
			for (int64_t i = 0; i < n_in; i++)
				pt[i * it] += pd[i * io] / pb[i * ib];
			break;
		case BG_DIVB:
			for (int64_t i = 0; i < n_in; i++) {
				float bv = pb[i * ib];
				pt[i * it] -= pd[i * io] * pa[i * ia] / (bv * bv);
			}
			break;
		}
		int k = d - 2;
		while (k >= 0 && ++idx[k] == bc->dim[k])
			idx[k--] = 0;
		if (k < 0)
			break;
	}
}

/* --------------------------------------------------------------- permute */

/* dst = src permuted: dst dim k = src dim perm[k]. acc adds into dst. */
static void permute(int nd, const int64_t *sdims, const int64_t *perm, const float *src,
		    float *dst, bool acc)
{
	int64_t sst[TENSOR_MAX_DIMS], ddim[TENSOR_MAX_DIMS], ps[TENSOR_MAX_DIMS];
	int64_t st = 1;
	for (int k = nd - 1; k >= 0; k--) {
		sst[k] = st;
		st *= sdims[k];
	}
	for (int k = 0; k < nd; k++) {
		ddim[k] = sdims[perm[k]];
		ps[k] = sst[perm[k]];
	}
	int64_t total = st, idx[TENSOR_MAX_DIMS] = {0}, off = 0;
	for (int64_t o = 0; o < total; o++) {
		if (acc)
			dst[o] += src[off];
		else
			dst[o] = src[off];
		for (int k = nd - 1; k >= 0; k--) {
			off += ps[k];
			if (++idx[k] < ddim[k])
				break;
			off -= ps[k] * ddim[k];
			idx[k] = 0;
		}
	}
}

/* ------------------------------------------------------------- compile */

static enum nn_status fold_node(struct tg_graph *g, const Onnx__NodeProto *n,
				const struct exec_op *op, int64_t opset, struct tensor *in,
				size_t n_in, struct nn_err *e)
{
	enum nn_status st;
	struct tensor *out = calloc(n->n_output ? n->n_output : 1, sizeof *out);
	if (!out)
		return oom(e);
	struct exec_infer_ctx ic = {.node = n, .opset = opset, .in = in, .n_in = n_in,
				    .out = out, .n_out = n->n_output};
	void *scratch = NULL;
	if ((st = op->infer(&ic, e)) != NN_OK)
		goto done;
	for (size_t k = 0; k < n->n_output; k++) {
		size_t es = dtype_size(out[k].dtype);
		int64_t ne = numel_of(out[k].ndim, out[k].shape);
		if (!es || ne < 0 || ne > ((int64_t)1 << 40) / (int64_t)es) {
			st = exec_node_err(e, NN_EUNSUPPORTED, n, "cannot fold output %zu", k);
			goto done;
		}
		out[k].data = calloc((size_t)(ne ? ne : 1), es);
		out[k].owned = true;
		if (!out[k].data) {
			st = oom(e);
			goto done;
		}
	}
	if (ic.scratch_bytes) {
		scratch = aligned_alloc(64, (ic.scratch_bytes + 63) & ~(size_t)63);
		if (!scratch) {
			st = oom(e);
			goto done;
		}
	}
	struct exec_run_ctx rc = {.node = n, .opset = opset, .priv = ic.priv, .in = in,
				  .n_in = n_in, .out = out, .n_out = n->n_output,
				  .scratch = scratch, .scratch_bytes = ic.scratch_bytes};
	if ((st = op->run(&rc, e)) != NN_OK)
		goto done;
	for (size_t k = 0; k < n->n_output; k++) {
		if (!n->output[k] || !n->output[k][0])
			continue;
		int vi = value_add(g, n->output[k], e);
		if (vi < 0) {
			st = NN_ENOMEM;
			goto done;
		}
		struct tg_value *v = &g->v[vi];
		v->is_const = true;
		v->dtype = out[k].dtype;
		v->ndim = out[k].ndim;
		memcpy(v->shape, out[k].shape, sizeof v->shape);
		v->per = numel_of(v->ndim, v->shape);
		v->cdata = out[k].data;
		out[k].data = NULL;
		if (v->dtype == DT_FLOAT)
			v->val = v->cdata;
	}
done:
	if (ic.priv) {
		if (op->free_priv)
			op->free_priv(ic.priv);
		else
			free(ic.priv);
	}
	free(scratch);
	for (size_t k = 0; k < n->n_output; k++)
		free(out[k].data);
	free(out);
	return st;
}

static enum nn_status add_const_init(struct tg_graph *g, const Onnx__TensorProto *tp,
				     struct nn_err *e)
{
	struct tensor t;
	enum nn_status st = exec_tensor_proto(tp, tp->name, &t, e);
	if (st != NN_OK)
		return st;
	size_t es = dtype_size(t.dtype);
	int64_t ne = tensor_numel(&t);
	if (!es || ne < 0) {
		tensor_free(&t);
		return err_set(e, NN_EUNSUPPORTED, "unsupported_model", "",
			       "initializer '%.100s': unsupported dtype", tp->name);
	}
	void *copy = malloc((size_t)(ne ? ne : 1) * es);
	if (!copy) {
		tensor_free(&t);
		return oom(e);
	}
	if (ne)
		memcpy(copy, t.data, (size_t)ne * es);
	int vi = value_add(g, tp->name, e);
	if (vi < 0) {
		free(copy);
		tensor_free(&t);
		return NN_ENOMEM;
	}
	struct tg_value *v = &g->v[vi];
	v->is_const = v->is_init = true;
	v->dtype = t.dtype;
	v->ndim = t.ndim;
	memcpy(v->shape, t.shape, sizeof v->shape);
	v->per = ne;
	v->cdata = copy;
	if (v->dtype == DT_FLOAT)
		v->val = copy;
	tensor_free(&t);
	return NN_OK;
}

static bool is_op(const Onnx__NodeProto *n, const char *op)
{
	return n->op_type && strcmp(n->op_type, op) == 0;
}

static const struct {
	const char *op;
	enum tg_kind kind;
} kinds[] = {
	{"Gemm", K_GEMM}, {"MatMul", K_MATMUL}, {"Add", K_ADD}, {"Sub", K_SUB}, {"Mul", K_MUL},
	{"Div", K_DIV}, {"Relu", K_RELU}, {"LeakyRelu", K_LEAKY}, {"Sigmoid", K_SIGMOID},
	{"Tanh", K_TANH}, {"Gelu", K_GELU}, {"Erf", K_ERF}, {"HardSwish", K_HSWISH},
	{"HardSigmoid", K_HSIGMOID}, {"Clip", K_CLIP}, {"Softmax", K_SOFTMAX},
	{"LogSoftmax", K_LOGSOFTMAX}, {"Flatten", K_ALIAS}, {"Reshape", K_ALIAS},
	{"Squeeze", K_ALIAS}, {"Unsqueeze", K_ALIAS}, {"Identity", K_ALIAS},
	{"Dropout", K_DROPOUT}, {"Transpose", K_TRANSPOSE}, {"Concat", K_CONCAT},
	{"Conv", K_CONV}, {"MaxPool", K_MAXPOOL}, {"AveragePool", K_AVGPOOL},
	{"GlobalAveragePool", K_GAP}, {"BatchNormalization", K_BN}, {"Pad", K_PAD},
};

static bool const_scalar(const struct tg_graph *g, int vi, double *out)
{
	if (vi < 0)
		return false;
	const struct tg_value *v = &g->v[root(g, vi)];
	if (!v->is_const || v->per != 1)
		return false;
	switch (v->dtype) {
	case DT_FLOAT: *out = ((const float *)v->cdata)[0]; return true;
	case DT_DOUBLE: *out = ((const double *)v->cdata)[0]; return true;
	case DT_FLOAT16: return false;
	case DT_INT64: *out = (double)((const int64_t *)v->cdata)[0]; return true;
	case DT_INT32: *out = ((const int32_t *)v->cdata)[0]; return true;
	case DT_BOOL: *out = ((const uint8_t *)v->cdata)[0]; return true;
	default: return false;
	}
}

static enum nn_status pads_attr(const Onnx__NodeProto *n, int64_t *pt, int64_t *pl, int64_t *pb,
				int64_t *pr, struct nn_err *e)
{
	char ap[32];
	exec_attr_string(n, "auto_pad", ap, sizeof ap, "NOTSET");
	if (strcmp(ap, "NOTSET") != 0 && strcmp(ap, "VALID") != 0)
		return exec_node_err(e, NN_EUNSUPPORTED, n, "auto_pad %s is not supported in training",
				     ap);
	const int64_t *p;
	size_t np;
	*pt = *pl = *pb = *pr = 0;
	if (exec_attr_ints(n, "pads", &p, &np) && strcmp(ap, "NOTSET") == 0) {
		if (np != 4)
			return exec_node_err(e, NN_EUNSUPPORTED, n, "only 2-D pads are supported");
		*pt = p[0];
		*pl = p[1];
		*pb = p[2];
		*pr = p[3];
	}
	return NN_OK;
}

static void ints2(const Onnx__NodeProto *n, const char *name, int64_t *a, int64_t *b, int64_t def)
{
	const int64_t *p;
	size_t np;
	*a = *b = def;
	if (exec_attr_ints(n, name, &p, &np) && np == 2) {
		*a = p[0];
		*b = p[1];
	}
}

/* Node-specific setup of a training node whose inputs/output are in place. */
static enum nn_status setup_node(struct tg_graph *g, struct tg_node *nd, int64_t opset,
				 struct nn_err *e)
{
	const Onnx__NodeProto *n = nd->proto;
	struct tg_value *x = &g->v[nd->in[0]];
	struct tg_value *y = &g->v[nd->out];
	double d;
	enum nn_status st;
	for (int i = 0; i < nd->n_in; i++) {
		if (nd->in[i] < 0)
			continue;
		const struct tg_value *v = &g->v[nd->in[i]];
		bool float_slot = !(nd->kind == K_ALIAS && i > 0) &&
				  !(nd->kind == K_DROPOUT && i > 0) && !(nd->kind == K_PAD && i != 0 && i != 2) &&
				  !(nd->kind == K_CLIP && i > 0);
		if (float_slot && v->dtype != DT_FLOAT)
			return exec_node_err(e, NN_EUNSUPPORTED, n,
					     "input '%.100s' is %s; training runs on float32",
					     v->name, dtype_name(v->dtype));
		if (v->batched && i > 0 && nd->kind != K_ADD && nd->kind != K_SUB &&
		    nd->kind != K_MUL && nd->kind != K_DIV && nd->kind != K_CONCAT)
			return exec_node_err(e, NN_EUNSUPPORTED, n,
					     "input %d must be a constant or parameter, not an activation",
					     i);
	}
	if (!x->batched && nd->kind != K_ADD && nd->kind != K_SUB && nd->kind != K_MUL &&
	    nd->kind != K_DIV && nd->kind != K_CONCAT)
		return exec_node_err(e, NN_EINTERNAL, n, "first input is not an activation");
	switch (nd->kind) {
	case K_GEMM: {
		if (exec_attr_int(n, "transA", 0))
			return exec_node_err(e, NN_EUNSUPPORTED, n,
					     "transA=1 on an activation (batch must be dim 0)");
		nd->alpha = exec_attr_float(n, "alpha", 1.0f);
		nd->beta = exec_attr_float(n, "beta", 1.0f);
		nd->trans_b = (int)exec_attr_int(n, "transB", 0);
		const struct tg_value *b = &g->v[nd->in[1]];
		if (x->ndim != 2 || b->ndim != 2)
			return exec_node_err(e, NN_EUNSUPPORTED, n, "Gemm needs 2-D A and B");
		nd->k = x->shape[1];
		nd->nn = y->shape[1];
		if (g->max_batch > INT_MAX || nd->k > INT_MAX || nd->nn > INT_MAX)
			return exec_node_err(e, NN_ETOOBIG, n, "dimensions exceed the BLAS int range");
		if (nd->n_in > 2 && nd->in[2] >= 0) {
			const struct tg_value *c = &g->v[nd->in[2]];
			if (!(c->per == 1 || (c->per == nd->nn && c->shape[c->ndim - 1] == nd->nn)))
				return exec_node_err(e, NN_EUNSUPPORTED, n,
						     "C must be a scalar or broadcast along rows ([N] or [1,N])");
		}
		break;
	}
	case K_MATMUL: {
		const struct tg_value *b = &g->v[nd->in[1]];
		if (b->ndim != 2 || x->ndim < 2)
			return exec_node_err(e, NN_EUNSUPPORTED, n,
					     "MatMul needs A [.., K] (rank >= 2) and a 2-D constant B");
		nd->k = b->shape[0];
		nd->nn = b->shape[1];
		nd->rows_per = x->per / nd->k;
		if (g->max_batch * nd->rows_per > INT_MAX || nd->k > INT_MAX || nd->nn > INT_MAX)
			return exec_node_err(e, NN_ETOOBIG, n, "dimensions exceed the BLAS int range");
		break;
	}
	case K_ADD:
	case K_SUB:
	case K_MUL:
	case K_DIV:
		for (int i = 0; i < 2; i++) {
			const struct tg_value *v = &g->v[nd->in[i]];
			if (v->batched && v->ndim != y->ndim)
				return exec_node_err(e, NN_EUNSUPPORTED, n,
						     "an activation operand must have the output's rank");
			/* a constant as long as the batch would not follow a smaller batch */
			if (!v->batched && v->ndim == y->ndim && v->shape[0] != 1)
				return exec_node_err(e, NN_EUNSUPPORTED, n,
						     "constant '%.100s' varies along the batch dimension",
						     v->name);
		}
		break;
	case K_LEAKY:
		nd->alpha = exec_attr_float(n, "alpha", 0.01f);
		break;
	case K_HSIGMOID:
		nd->alpha = exec_attr_float(n, "alpha", 0.2f);
		nd->beta = exec_attr_float(n, "beta", 0.5f);
		break;
	case K_GELU: {
		char ap[16];
		exec_attr_string(n, "approximate", ap, sizeof ap, "none");
		if (strcmp(ap, "tanh") == 0)
			nd->kind = K_GELU_TANH;
		else if (strcmp(ap, "none") != 0)
			return exec_node_err(e, NN_EUNSUPPORTED, n, "approximate '%s'", ap);
		break;
	}
	case K_CLIP:
		nd->lo = -INFINITY;
		nd->hi = INFINITY;
		if (opset < 11) {
			nd->lo = exec_attr_float(n, "min", -INFINITY);
			nd->hi = exec_attr_float(n, "max", INFINITY);
		} else {
			if (nd->n_in > 1 && nd->in[1] >= 0) {
				if (!const_scalar(g, nd->in[1], &d))
					return exec_node_err(e, NN_EUNSUPPORTED, n, "min must be a constant scalar");
				nd->lo = (float)d;
			}
			if (nd->n_in > 2 && nd->in[2] >= 0) {
				if (!const_scalar(g, nd->in[2], &d))
					return exec_node_err(e, NN_EUNSUPPORTED, n, "max must be a constant scalar");
				nd->hi = (float)d;
			}
		}
		break;
	case K_SOFTMAX:
	case K_LOGSOFTMAX: {
		int64_t ax = exec_attr_int(n, "axis", opset < 13 ? 1 : -1);
		if (ax < 0)
			ax += x->ndim;
		if (ax < 1 || ax >= x->ndim)
			return exec_node_err(e, NN_EUNSUPPORTED, n, "axis over the batch is not supported");
		if (opset >= 13 && ax != x->ndim - 1)
			return exec_node_err(e, NN_EUNSUPPORTED, n,
					     "only the last axis is supported in training");
		nd->cols = numel_of(x->ndim - (int)ax, x->shape + ax);
		nd->rows_per = x->per / nd->cols;
		break;
	}
	case K_DROPOUT:
		nd->ratio = 0.5f;
		if (opset < 12) {
			nd->ratio = exec_attr_float(n, "ratio", 0.5f);
		} else if (nd->n_in > 1 && nd->in[1] >= 0) {
			if (!const_scalar(g, nd->in[1], &d))
				return exec_node_err(e, NN_EUNSUPPORTED, n, "ratio must be a constant scalar");
			nd->ratio = (float)d;
		}
		if (!(nd->ratio >= 0.0f && nd->ratio < 1.0f))
			return exec_node_err(e, NN_EUNSUPPORTED, n, "ratio %g must be in [0, 1)",
					     (double)nd->ratio);
		if (n->n_output > 1 && n->output[1] && n->output[1][0])
			return exec_node_err(e, NN_EUNSUPPORTED, n, "the mask output is not supported");
		nd->mask = malloc((size_t)(g->max_batch * x->per));
		if (!nd->mask)
			return oom(e);
		break;
	case K_TRANSPOSE: {
		const int64_t *p;
		size_t np;
		if (exec_attr_ints(n, "perm", &p, &np)) {
			for (size_t k = 0; k < np; k++)
				nd->perm[k] = p[k];
		} else {
			for (int k = 0; k < x->ndim; k++)
				nd->perm[k] = x->ndim - 1 - k;
		}
		if (nd->perm[0] != 0)
			return exec_node_err(e, NN_EUNSUPPORTED, n, "perm must keep the batch at dim 0");
		break;
	}
	case K_CONCAT: {
		int64_t ax = exec_attr_int(n, "axis", 0);
		if (ax < 0)
			ax += y->ndim;
		if (ax < 1 || ax >= y->ndim)
			return exec_node_err(e, NN_EUNSUPPORTED, n, "concat along the batch");
		for (int i = 0; i < nd->n_in; i++)
			if (!g->v[nd->in[i]].batched)
				return exec_node_err(e, NN_EUNSUPPORTED, n,
						     "constant inputs are not supported (every input must be an activation)");
		nd->axis = ax;
		break;
	}
	case K_CONV: {
		const struct tg_value *w = &g->v[nd->in[1]];
		if (x->ndim != 4 || w->ndim != 4)
			return exec_node_err(e, NN_EUNSUPPORTED, n, "only 2-D convolution is supported");
		struct tc_conv *c = &nd->conv;
		c->n = g->max_batch;
		c->c = x->shape[1];
		c->h = x->shape[2];
		c->w = x->shape[3];
		c->m = w->shape[0];
		c->kh = w->shape[2];
		c->kw = w->shape[3];
		ints2(n, "strides", &c->stride_h, &c->stride_w, 1);
		ints2(n, "dilations", &c->dil_h, &c->dil_w, 1);
		if ((st = pads_attr(n, &c->pad_top, &c->pad_left, &c->pad_bottom, &c->pad_right, e)))
			return st;
		c->group = exec_attr_int(n, "group", 1);
		if ((st = tc_conv_init(c, e)) != NN_OK)
			return st;
		if (c->oh != y->shape[2] || c->ow != y->shape[3])
			return exec_node_err(e, NN_EINTERNAL, n, "conv output shape disagrees");
		if ((size_t)c->m > g->tmpc_floats)
			g->tmpc_floats = (size_t)c->m;
		size_t sf = tc_conv_scratch_floats(c);
		if (sf > g->conv_scratch_floats)
			g->conv_scratch_floats = sf;
		break;
	}
	case K_MAXPOOL:
	case K_AVGPOOL: {
		if (x->ndim != 4)
			return exec_node_err(e, NN_EUNSUPPORTED, n, "only 2-D pooling is supported");
		if (n->n_output > 1 && n->output[1] && n->output[1][0])
			return exec_node_err(e, NN_EUNSUPPORTED, n, "the Indices output is not supported");
		struct tc_pool *p = &nd->pool;
		p->n = g->max_batch;
		p->c = x->shape[1];
		p->h = x->shape[2];
		p->w = x->shape[3];
		ints2(n, "kernel_shape", &p->kh, &p->kw, 0);
		ints2(n, "strides", &p->stride_h, &p->stride_w, 1);
		ints2(n, "dilations", &p->dil_h, &p->dil_w, 1);
		if ((st = pads_attr(n, &p->pad_top, &p->pad_left, &p->pad_bottom, &p->pad_right, e)))
			return st;
		p->ceil_mode = (int)exec_attr_int(n, "ceil_mode", 0);
		p->count_include_pad = (int)exec_attr_int(n, "count_include_pad", 0);
		if ((st = tc_pool_init(p, e)) != NN_OK)
			return st;
		if (p->oh != y->shape[2] || p->ow != y->shape[3])
			return exec_node_err(e, NN_EINTERNAL, n, "pool output shape disagrees");
		if (nd->kind == K_MAXPOOL) {
			nd->argmax = malloc((size_t)(g->max_batch * y->per) * sizeof(int32_t));
			if (!nd->argmax)
				return oom(e);
		}
		break;
	}
	case K_GAP:
		if (x->ndim < 3)
			return exec_node_err(e, NN_EUNSUPPORTED, n, "input rank below 3");
		break;
	case K_BN: {
		if (n->n_output > 1)
			for (size_t k = 1; k < n->n_output; k++)
				if (n->output[k] && n->output[k][0])
					return exec_node_err(e, NN_EUNSUPPORTED, n,
							     "training-mode outputs (mean/var) are not supported");
		if (nd->n_in != 5 || x->ndim < 2)
			return exec_node_err(e, NN_EUNSUPPORTED, n, "needs X, scale, B, mean, var");
		int64_t c = x->shape[1];
		for (int i = 1; i < 5; i++)
			if (g->v[nd->in[i]].per != c)
				return exec_node_err(e, NN_EINVAL, n, "input %d does not have %lld channels",
						     i, (long long)c);
		for (int i = 3; i < 5; i++) {
			const struct tg_value *s = &g->v[root(g, nd->in[i])];
			if (!s->is_init)
				return exec_node_err(e, NN_EUNSUPPORTED, n,
						     "running statistics must be initializers");
		}
		nd->eps = exec_attr_float(n, "epsilon", 1e-5f);
		nd->momentum = exec_attr_float(n, "momentum", 0.9f);
		nd->cols = c;
		if ((size_t)c > g->tmpc_floats)
			g->tmpc_floats = (size_t)c;
		nd->save_mean = fbuf((size_t)c);
		nd->save_invstd = fbuf((size_t)c);
		if (!nd->save_mean || !nd->save_invstd)
			return oom(e);
		break;
	}
	case K_PAD: {
		char mode[16];
		exec_attr_string(n, "mode", mode, sizeof mode, "constant");
		if (strcmp(mode, "constant") != 0)
			return exec_node_err(e, NN_EUNSUPPORTED, n, "mode %s is not supported", mode);
		if (x->ndim != 4)
			return exec_node_err(e, NN_EUNSUPPORTED, n, "only 4-D input is supported");
		int64_t p8[8];
		if (opset < 11) {
			const int64_t *p;
			size_t np;
			if (!exec_attr_ints(n, "pads", &p, &np) || np != 8)
				return exec_node_err(e, NN_EINVAL, n, "pads must have 8 values");
			memcpy(p8, p, sizeof p8);
			nd->pad_value = exec_attr_float(n, "value", 0.0f);
		} else {
			const struct tg_value *pv = nd->n_in > 1 && nd->in[1] >= 0
							    ? &g->v[root(g, nd->in[1])] : NULL;
			if (!pv || !pv->is_const || pv->dtype != DT_INT64 || pv->per != 8)
				return exec_node_err(e, NN_EUNSUPPORTED, n,
						     "pads must be a constant of 8 int64 values");
			memcpy(p8, pv->cdata, sizeof p8);
			if (nd->n_in > 3 && nd->in[3] >= 0)
				return exec_node_err(e, NN_EUNSUPPORTED, n, "axes input is not supported");
			if (nd->n_in > 2 && nd->in[2] >= 0) {
				if (!const_scalar(g, nd->in[2], &d))
					return exec_node_err(e, NN_EUNSUPPORTED, n,
							     "constant_value must be a constant scalar");
				nd->pad_value = (float)d;
			}
		}
		if (p8[0] || p8[1] || p8[4] || p8[5])
			return exec_node_err(e, NN_EUNSUPPORTED, n, "only spatial padding is supported");
		struct tc_pad *p = &nd->pad;
		p->n = g->max_batch;
		p->c = x->shape[1];
		p->h = x->shape[2];
		p->w = x->shape[3];
		p->pad_top = p8[2];
		p->pad_left = p8[3];
		p->pad_bottom = p8[6];
		p->pad_right = p8[7];
		if ((st = tc_pad_init(p, e)) != NN_OK)
			return st;
		break;
	}
	default:
		break;
	}
	return NN_OK;
}

static bool frozen(const struct tg_options *opt, const char *name)
{
	for (size_t i = 0; i < opt->n_frozen; i++)
		if (opt->frozen[i] && strcmp(opt->frozen[i], name) == 0)
			return true;
	return false;
}

static enum nn_status add_param(struct tg_graph *g, const struct tg_options *opt, int vi,
				bool decay, struct nn_err *e)
{
	if (vi < 0)
		return NN_OK;
	int r = root(g, vi);
	struct tg_value *v = &g->v[r];
	if (!v->is_init || v->dtype != DT_FLOAT || v->needs_grad || frozen(opt, v->name))
		return NN_OK;
	struct tg_param *np = realloc(g->params, (g->np + 1) * sizeof *np);
	if (!np)
		return oom(e);
	g->params = np;
	int *npv = realloc(g->param_v, (g->np + 1) * sizeof *npv);
	if (!npv)
		return oom(e);
	g->param_v = npv;
	v->needs_grad = true;
	v->grad = fbuf((size_t)v->per);
	if (!v->grad)
		return oom(e);
	g->params[g->np] = (struct tg_param){.name = v->name, .value = v->val, .grad = v->grad,
					     .n = (size_t)v->per, .decay = decay};
	g->param_v[g->np++] = r;
	return NN_OK;
}

static enum nn_status find_params(struct tg_graph *g, const struct tg_options *opt,
				  struct nn_err *e)
{
	enum nn_status st;
	for (size_t i = 0; i < g->nn; i++) {
		struct tg_node *nd = &g->nodes[i];
		switch (nd->kind) {
		case K_GEMM:
			if ((st = add_param(g, opt, nd->in[1], true, e)) ||
			    (nd->n_in > 2 && (st = add_param(g, opt, nd->in[2], false, e))))
				return st;
			break;
		case K_MATMUL:
			if ((st = add_param(g, opt, nd->in[1], true, e)))
				return st;
			break;
		case K_CONV:
			if ((st = add_param(g, opt, nd->in[1], true, e)) ||
			    (nd->n_in > 2 && (st = add_param(g, opt, nd->in[2], false, e))))
				return st;
			break;
		case K_BN:
			if ((st = add_param(g, opt, nd->in[1], false, e)) ||
			    (st = add_param(g, opt, nd->in[2], false, e)))
				return st;
			break;
		case K_ADD:
		case K_SUB:
			for (int s = 0; s < 2; s++) {
				int other = nd->in[1 - s];
				const struct tg_value *o = &g->v[other];
				if (!o->batched || o->def < 0 || g->v[nd->in[s]].batched)
					continue;
				enum tg_kind pk = g->nodes[o->def].kind;
				if (o->alias < 0 && (pk == K_GEMM || pk == K_MATMUL || pk == K_CONV) &&
				    (st = add_param(g, opt, nd->in[s], false, e)))
					return st;
			}
			break;
		default:
			break;
		}
		if (nd->kind == K_BN) {
			for (int s = 3; s < 5; s++) {
				int r = root(g, nd->in[s]);
				bool seen = false;
				for (size_t k = 0; k < g->nstate; k++)
					seen |= g->state_v[k] == r;
				if (seen)
					continue;
				int *ns = realloc(g->state_v, (g->nstate + 1) * sizeof *ns);
				if (!ns)
					return oom(e);
				g->state_v = ns;
				g->state_v[g->nstate++] = r;
			}
		}
	}
	return NN_OK;
}

static enum nn_status input_value(struct tg_graph *g, const Onnx__ValueInfoProto *vi,
				  struct nn_err *e)
{
	const Onnx__TypeProto *tp = vi->type;
	if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_model", "",
			       "input '%.100s' is not a tensor", vi->name);
	const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
	if (tt->elem_type != DT_FLOAT)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_model", "",
			       "input '%.100s' is %s; a student's input must be float32", vi->name,
			       dtype_name((enum dtype)tt->elem_type));
	if (!tt->shape || tt->shape->n_dim < 1 || tt->shape->n_dim > TENSOR_MAX_DIMS)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_model", "",
			       "input '%.100s' needs a known shape with a batch dimension", vi->name);
	int vx = value_add(g, vi->name, e);
	if (vx < 0)
		return NN_ENOMEM;
	struct tg_value *v = &g->v[vx];
	v->dtype = DT_FLOAT;
	v->batched = true;
	v->ndim = (int)tt->shape->n_dim;
	/* dim 0 is the batch even when the export fixed it (PyTorch without
	 * dynamic axes writes 1): a node whose shape depends on that value (a
	 * Reshape to [1, -1]) is refused by name in compile_node */
	v->shape[0] = g->max_batch;
	for (int k = 1; k < v->ndim; k++) {
		const Onnx__TensorShapeProto__Dimension *dm = tt->shape->dim[k];
		bool fixed = dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
		if (!fixed || dm->dim_value < 1)
			return err_set(e, NN_EUNSUPPORTED, "unsupported_model", "",
				       "input '%.100s' dimension %d is not a fixed size", vi->name, k);
		v->shape[k] = dm->dim_value;
	}
	int64_t per = 1;
	for (int k = 1; k < v->ndim; k++)
		if (__builtin_mul_overflow(per, v->shape[k], &per) || per > ((int64_t)1 << 31))
			return err_set(e, NN_ETOOBIG, "too_big", "", "input sample is too large");
	v->per = per;
	g->in_v = vx;
	return NN_OK;
}

static bool is_init_name(const Onnx__GraphProto *gp, const char *name)
{
	for (size_t i = 0; i < gp->n_initializer; i++)
		if (gp->initializer[i]->name && strcmp(gp->initializer[i]->name, name) == 0)
			return true;
	return false;
}

static enum nn_status compile_node(struct tg_graph *g, const Onnx__NodeProto *n, int64_t opset,
				   struct nn_err *e)
{
	enum nn_status st;
	if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx") != 0)
		return exec_node_err(e, NN_EUNSUPPORTED, n, "domain %.60s is not supported in training",
				     n->domain);
	const struct exec_op *op = exec_op_find("", n->op_type ? n->op_type : "");
	if (!op)
		return exec_node_err(e, NN_EUNSUPPORTED, n, "operator %.60s is not supported",
				     n->op_type ? n->op_type : "?");
	if (op->check && (st = op->check(n, opset, e)) != NN_OK)
		return st;
	if (n->n_input > TG_MAX_IN)
		return exec_node_err(e, NN_EUNSUPPORTED, n, "more than %d inputs", TG_MAX_IN);
	struct tensor in[TG_MAX_IN];
	int ins[TG_MAX_IN];
	bool all_const = true;
	memset(in, 0, sizeof in);
	for (size_t k = 0; k < n->n_input; k++) {
		ins[k] = -1;
		if (!n->input[k] || !n->input[k][0])
			continue;
		int vi = value_find(g, n->input[k]);
		if (vi < 0)
			return exec_node_err(e, NN_EINVAL, n,
					     "input '%.100s' is not produced before this node",
					     n->input[k]);
		ins[k] = vi;
		const struct tg_value *v = &g->v[vi];
		const struct tg_value *rv = &g->v[root(g, vi)];
		in[k].dtype = v->dtype;
		in[k].ndim = v->ndim;
		memcpy(in[k].shape, v->shape, sizeof in[k].shape);
		in[k].data = rv->is_const ? rv->cdata : NULL;
		if (!rv->is_const)
			all_const = false;
	}
	bool identity = is_op(n, "Identity");
	if ((all_const && !identity) || is_op(n, "Shape"))
		return fold_node(g, n, op, opset, in, n->n_input, e);
	if (identity && all_const) {
		/* kept as an alias, not a copy: an initializer shared through an
		 * Identity (PyTorch's export of equal tensors) stays one parameter */
		if (n->n_input != 1 || n->n_output != 1 || ins[0] < 0)
			return exec_node_err(e, NN_EINVAL, n, "Identity needs one input and output");
		int vo = value_add(g, n->output[0], e);
		if (vo < 0)
			return NN_ENOMEM;
		struct tg_value *y = &g->v[vo];
		const struct tg_value *x = &g->v[ins[0]];
		y->dtype = x->dtype;
		y->ndim = x->ndim;
		memcpy(y->shape, x->shape, sizeof y->shape);
		y->per = x->per;
		y->is_const = true;
		y->alias = ins[0];
		y->val = x->val;
		return NN_OK;
	}

	enum tg_kind kind = K_ALIAS;
	bool known = false;
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
		if (is_op(n, kinds[i].op)) {
			kind = kinds[i].kind;
			known = true;
		}
	if (!known)
		return exec_node_err(e, NN_EUNSUPPORTED, n,
				     "operator %.60s has no gradient in nncd's training engine",
				     n->op_type);
	/* shapes by the executor's inference (Dropout: its own, since the
	 * executor refuses training_mode=1) */
	struct tensor out[3];
	memset(out, 0, sizeof out);
	if (n->n_output < 1 || n->n_output > 3)
		return exec_node_err(e, NN_EUNSUPPORTED, n, "unexpected output count");
	if (kind == K_DROPOUT) {
		out[0] = in[0];
		out[0].data = NULL;
	} else {
		struct exec_infer_ctx ic = {.node = n, .opset = opset, .in = in, .n_in = n->n_input,
					    .out = out, .n_out = n->n_output};
		st = op->infer(&ic, e);
		if (ic.priv) {
			if (op->free_priv)
				op->free_priv(ic.priv);
			else
				free(ic.priv);
		}
		if (st != NN_OK)
			return st;
	}
	if (out[0].dtype != DT_FLOAT)
		return exec_node_err(e, NN_EUNSUPPORTED, n, "output is %s; training runs on float32",
				     dtype_name(out[0].dtype));
	if (n->n_input < 1 || ins[0] < 0)
		return exec_node_err(e, NN_EINVAL, n, "missing first input");
	if (!g->v[ins[0]].batched && kind != K_ADD && kind != K_SUB &&
	    kind != K_MUL && kind != K_DIV && kind != K_CONCAT)
		return exec_node_err(e, NN_EUNSUPPORTED, n,
				     "first input must depend on the graph input");
	if (out[0].ndim < 1 || out[0].shape[0] != g->max_batch)
		return exec_node_err(e, NN_EUNSUPPORTED, n,
				     "output does not keep the batch as dimension 0");
	if (kind == K_ALIAS && ((is_op(n, "Squeeze") || is_op(n, "Unsqueeze")) &&
				 g->max_batch == 1 && in[0].ndim != out[0].ndim)) {
		/* at batch 1 a squeeze of dim 0 would look like the batch: check axes */
		const int64_t *ax;
		size_t na;
		if (exec_attr_ints(n, "axes", &ax, &na)) {
			for (size_t k = 0; k < na; k++)
				if (ax[k] == 0 || ax[k] == -(int64_t)in[0].ndim)
					return exec_node_err(e, NN_EUNSUPPORTED, n,
							     "squeezes the batch dimension");
		}
	}
	int64_t ne = numel_of(out[0].ndim, out[0].shape);
	if (ne < 1 || ne > ((int64_t)1 << 34))
		return exec_node_err(e, NN_ETOOBIG, n, "output has %lld elements", (long long)ne);

	if (g->nn == g->cap_n) {
		size_t cap = g->cap_n ? g->cap_n * 2 : 32;
		struct tg_node *nn = realloc(g->nodes, cap * sizeof *nn);
		if (!nn)
			return oom(e);
		g->nodes = nn;
		g->cap_n = cap;
	}
	struct tg_node *nd = &g->nodes[g->nn];
	memset(nd, 0, sizeof *nd);
	nd->proto = n;
	nd->kind = kind;
	nd->name = strdup(n->name ? n->name : "");
	if (!nd->name)
		return oom(e);
	g->nn++;
	nd->n_in = (int)n->n_input;
	for (int k = 0; k < nd->n_in; k++)
		nd->in[k] = ins[k];
	int vo = value_add(g, n->output[0], e);
	if (vo < 0)
		return NN_ENOMEM;
	nd->out = vo;
	struct tg_value *y = &g->v[vo];
	y->dtype = DT_FLOAT;
	y->ndim = out[0].ndim;
	memcpy(y->shape, out[0].shape, sizeof y->shape);
	y->batched = true;
	y->per = ne / g->max_batch;
	y->def = (int)g->nn - 1;
	if (kind == K_ALIAS) {
		const struct tg_value *x = &g->v[nd->in[0]];
		if (x->per != y->per)
			return exec_node_err(e, NN_EUNSUPPORTED, n,
					     "reshape moves elements across the batch dimension");
		y->alias = nd->in[0];
	}
	return setup_node(g, nd, opset, e);
}

/* Does node nd's backward read the value of its input slot k (or, k == -1,
 * its output)? Only those activations are kept after the forward pass; the
 * others share buffers by forward lifetime (plan_buffers). */
static bool bwd_reads(const struct tg_graph *g, const struct tg_node *nd, int k)
{
	if (!nd->back)
		return false;
	switch (nd->kind) {
	case K_GEMM:
	case K_MATMUL:
		return k == 0 && needs(g, nd->in[1]); /* dB = A^T dY */
	case K_CONV:
	case K_BN:
		return k == 0;
	case K_MUL:
	case K_DIV:
		return k == 0 || k == 1;
	case K_RELU: case K_LEAKY: case K_GELU: case K_GELU_TANH: case K_ERF: case K_HSWISH:
	case K_HSIGMOID: case K_CLIP:
		return k == 0;
	case K_SIGMOID: case K_TANH: case K_SOFTMAX: case K_LOGSOFTMAX:
		return k == -1;
	default:
		return false;
	}
}

struct tg_slab {
	float *p;
	size_t floats;
	int busy_until; /* last node reading the current owner */
};

/* Activation buffers: a value backward reads, the output and the taps get
 * their own; every other activation only lives from its producer to its last
 * reader in the forward pass, so those share slabs (first fit, a slab grows
 * to the largest value it ever holds). */
static enum nn_status plan_buffers(struct tg_graph *g, struct tg_slab **slabs_out,
				   size_t *n_slabs, struct nn_err *e)
{
	size_t nv = g->nv;
	bool *keep = calloc(nv ? nv : 1, sizeof *keep);
	int *last = malloc((nv ? nv : 1) * sizeof *last);
	struct tg_slab *slabs = NULL;
	size_t ns = 0;
	enum nn_status st = NN_OK;
	if (!keep || !last) {
		st = oom(e);
		goto done;
	}
	for (size_t i = 0; i < nv; i++)
		last[i] = -1;
	keep[root(g, g->out_v)] = true;
	for (size_t t = 0; t < g->ntaps; t++)
		keep[root(g, g->taps[t].v)] = true;
	for (size_t i = 0; i < g->nn; i++) {
		const struct tg_node *nd = &g->nodes[i];
		for (int k = 0; k < nd->n_in; k++) {
			if (nd->in[k] < 0)
				continue;
			int r = root(g, nd->in[k]);
			last[r] = (int)i;
			if (bwd_reads(g, nd, k))
				keep[r] = true;
		}
		if (bwd_reads(g, nd, -1))
			keep[root(g, nd->out)] = true;
	}
	/* values in definition order: the graph input (def -1) first, then nodes */
	for (int pass = -1; pass < (int)g->nn; pass++) {
		int vi = pass < 0 ? g->in_v : g->nodes[pass].out;
		struct tg_value *v = &g->v[vi];
		if (v->alias >= 0 || v->val)
			continue;
		size_t f = (size_t)(g->max_batch * v->per);
		if (keep[vi]) {
			v->val = fbuf(f);
			v->own_val = true;
			if (!v->val) {
				st = oom(e);
				goto done;
			}
			continue;
		}
		int end = last[vi] < pass ? pass : last[vi];
		size_t best = ns;
		for (size_t b = 0; b < ns; b++)
			if (slabs[b].busy_until < pass &&
			    (best == ns || (slabs[b].floats >= f) > (slabs[best].floats >= f)))
				best = b;
		if (best == ns) {
			struct tg_slab *nsl = realloc(slabs, (ns + 1) * sizeof *nsl);
			if (!nsl) {
				st = oom(e);
				goto done;
			}
			slabs = nsl;
			slabs[ns++] = (struct tg_slab){.p = NULL, .floats = 0, .busy_until = -2};
		}
		if (slabs[best].floats < f) {
			free(slabs[best].p);
			slabs[best].p = NULL;
			slabs[best].floats = f;
		}
		slabs[best].busy_until = end;
		/* remember the slab; pointers are set once every slab has its size */
		v->val = NULL;
		last[vi] = -(int)best - 2; /* encoded slab index */
	}
	for (size_t b = 0; b < ns; b++) {
		slabs[b].p = fbuf(slabs[b].floats);
		if (!slabs[b].p) {
			st = oom(e);
			goto done;
		}
	}
	for (int pass = -1; pass < (int)g->nn; pass++) {
		int vi = pass < 0 ? g->in_v : g->nodes[pass].out;
		struct tg_value *v = &g->v[vi];
		if (v->alias >= 0 || v->val || last[vi] > -2)
			continue;
		v->val = slabs[-last[vi] - 2].p;
	}
done:
	free(keep);
	free(last);
	*slabs_out = slabs;
	*n_slabs = ns;
	return st;
}

static enum nn_status allocate(struct tg_graph *g, const struct tg_options *opt,
			       struct nn_err *e)
{
	enum nn_status st;
	/* gradient need, in graph order */
	for (size_t i = 0; i < g->nn; i++) {
		struct tg_node *nd = &g->nodes[i];
		bool any = false;
		for (int k = 0; k < nd->n_in; k++)
			any |= needs(g, nd->in[k]);
		nd->back = any;
		if (g->v[nd->out].alias < 0)
			g->v[nd->out].needs_grad = any;
	}
	if (opt->n_taps) {
		g->taps = calloc(opt->n_taps, sizeof *g->taps);
		if (!g->taps)
			return oom(e);
		for (size_t t = 0; t < opt->n_taps; t++) {
			const char *nm = opt->taps[t] ? opt->taps[t] : "";
			int vi = value_find(g, nm);
			if (vi < 0 || !g->v[vi].batched)
				return err_set(e, NN_EINVAL, "invalid_spec", "",
					       "tap '%.100s' is not an activation of the model", nm);
			g->taps[t].v = vi;
			g->taps[t].grad = fbuf((size_t)(g->max_batch * g->v[vi].per));
			g->ntaps = t + 1;
			if (!g->taps[t].grad)
				return oom(e);
			memset(g->taps[t].grad, 0,
			       (size_t)(g->max_batch * g->v[vi].per) * sizeof(float));
		}
	}
	if ((st = plan_buffers(g, &g->slabs, &g->n_slabs, e)) != NN_OK)
		return st;
	size_t maxf = 0;
	for (size_t i = 0; i < g->nv; i++) {
		struct tg_value *v = &g->v[i];
		size_t f = (size_t)(v->batched ? g->max_batch * v->per : v->per);
		if (f > maxf)
			maxf = f;
		if (v->alias >= 0 || v->is_const)
			continue;
		if (v->needs_grad && !v->grad) {
			v->grad = fbuf(f);
			if (!v->grad)
				return oom(e);
		}
	}
	g->tmp_floats = maxf;
	g->tmp1 = fbuf(maxf);
	g->tmp2 = fbuf(maxf);
	g->conv_scratch = fbuf(g->conv_scratch_floats);
	g->tmpc = fbuf(2 * g->tmpc_floats);
	if (!g->tmp1 || !g->tmp2 || !g->conv_scratch || !g->tmpc)
		return oom(e);
	return NN_OK;
}

enum nn_status tg_compile(const struct onnx_model *m, const struct tg_options *opt,
			  struct tg_graph **out, struct nn_err *e)
{
	*out = NULL;
	if (!m || !m->proto || !m->proto->graph)
		return err_set(e, NN_EINVAL, "invalid_model", "", "model has no graph");
	if (!opt || opt->max_batch < 1 || opt->max_batch > ((int64_t)1 << 24))
		return err_set(e, NN_EINVAL, "invalid_spec", "", "max batch must be in [1, 2^24]");
	const Onnx__GraphProto *gp = m->proto->graph;
	int64_t opset = onnx_opset(m);
	enum nn_status st;
	struct tg_graph *g = calloc(1, sizeof *g);
	if (!g)
		return oom(e);
	g->max_batch = opt->max_batch;
	g->in_v = g->out_v = -1;
	rng_seed(&g->rng, opt->seed);

	const Onnx__ValueInfoProto *input = NULL;
	size_t n_inputs = 0;
	for (size_t i = 0; i < gp->n_input; i++) {
		if (!gp->input[i]->name || is_init_name(gp, gp->input[i]->name))
			continue;
		input = gp->input[i];
		n_inputs++;
	}
	if (n_inputs != 1) {
		st = err_set(e, NN_EUNSUPPORTED, "unsupported_model", "",
			     "a student must have exactly one input (this model has %zu)", n_inputs);
		goto fail;
	}
	if (gp->n_output != 1 || !gp->output[0]->name) {
		st = err_set(e, NN_EUNSUPPORTED, "unsupported_model", "",
			     "a student must have exactly one output (this model has %zu)",
			     gp->n_output);
		goto fail;
	}
	for (size_t i = 0; i < gp->n_initializer; i++)
		if ((st = add_const_init(g, gp->initializer[i], e)) != NN_OK)
			goto fail;
	if ((st = input_value(g, input, e)) != NN_OK)
		goto fail;
	for (size_t i = 0; i < gp->n_node; i++)
		if ((st = compile_node(g, gp->node[i], opset, e)) != NN_OK)
			goto fail;
	g->out_v = value_find(g, gp->output[0]->name);
	if (g->out_v < 0 || !g->v[g->out_v].batched) {
		st = err_set(e, NN_EUNSUPPORTED, "unsupported_model", "",
			     "output '%.100s' does not depend on the input", gp->output[0]->name);
		goto fail;
	}
	if ((st = find_params(g, opt, e)) != NN_OK || (st = allocate(g, opt, e)) != NN_OK)
		goto fail;
	/* the output's gradient may be set by the caller even if no node needs it */
	{
		struct tg_value *iv = &g->v[g->in_v], *ov = &g->v[g->out_v];
		g->in_spec = (struct tensor){.dtype = DT_FLOAT, .ndim = iv->ndim};
		memcpy(g->in_spec.shape, iv->shape, sizeof iv->shape);
		g->out_spec = (struct tensor){.dtype = DT_FLOAT, .ndim = ov->ndim};
		memcpy(g->out_spec.shape, ov->shape, sizeof ov->shape);
	}
	for (size_t i = 0; i < g->nn; i++)
		g->nodes[i].proto = NULL;
	*out = g;
	return NN_OK;
fail:
	tg_free(g);
	return st;
}

void tg_free(struct tg_graph *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->nv; i++) {
		struct tg_value *v = &g->v[i];
		free(v->name);
		free(v->cdata);
		if (v->own_val)
			free(v->val);
		if (v->alias < 0)
			free(v->grad);
	}
	for (size_t i = 0; i < g->nn; i++) {
		struct tg_node *nd = &g->nodes[i];
		free(nd->name);
		free(nd->argmax);
		free(nd->save_mean);
		free(nd->save_invstd);
		free(nd->mask);
	}
	for (size_t t = 0; t < g->ntaps; t++)
		free(g->taps[t].grad);
	free(g->taps);
	free(g->v);
	free(g->nodes);
	free(g->params);
	free(g->param_v);
	free(g->state_v);
	free(g->tmp1);
	free(g->tmp2);
	free(g->conv_scratch);
	free(g->tmpc);
	for (size_t i = 0; i < g->n_slabs; i++)
		free(g->slabs[i].p);
	free(g->slabs);
	free(g);
}

size_t tg_param_count(const struct tg_graph *g)
{
	return g->np;
}

struct tg_param *tg_param(struct tg_graph *g, size_t i)
{
	return i < g->np ? &g->params[i] : NULL;
}

int64_t tg_max_batch(const struct tg_graph *g)
{
	return g->max_batch;
}

const struct tensor *tg_input_spec(const struct tg_graph *g)
{
	return &g->in_spec;
}

const struct tensor *tg_output_spec(const struct tg_graph *g)
{
	return &g->out_spec;
}

int64_t tg_input_sample_numel(const struct tg_graph *g)
{
	return g->v[g->in_v].per;
}

int64_t tg_output_sample_numel(const struct tg_graph *g)
{
	return g->v[g->out_v].per;
}

const char *tg_input_name(const struct tg_graph *g)
{
	return g->v[g->in_v].name;
}

const char *tg_output_name(const struct tg_graph *g)
{
	return g->v[g->out_v].name;
}

/* --------------------------------------------------------------- forward */

static float gelu_cdf(float x)
{
	return 0.5f * (1.0f + erff(x * 0.70710678118654752f));
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

static void fwd_unary(const struct tg_node *nd, const float *x, float *y, int64_t n)
{
	switch (nd->kind) {
	case K_RELU:
		for (int64_t i = 0; i < n; i++)
			y[i] = x[i] > 0.0f ? x[i] : 0.0f;
		break;
	case K_LEAKY:
		for (int64_t i = 0; i < n; i++)
			y[i] = x[i] >= 0.0f ? x[i] : nd->alpha * x[i];
		break;
	case K_SIGMOID:
		for (int64_t i = 0; i < n; i++)
			y[i] = 1.0f / (1.0f + expf(-x[i]));
		break;
	case K_TANH:
		for (int64_t i = 0; i < n; i++)
			y[i] = tanhf(x[i]);
		break;
	case K_GELU:
		for (int64_t i = 0; i < n; i++)
			y[i] = x[i] * gelu_cdf(x[i]);
		break;
	case K_GELU_TANH:
		for (int64_t i = 0; i < n; i++) {
			float v = x[i];
			y[i] = 0.5f * v * (1.0f + tanhf(GELU_K * (v + 0.044715f * v * v * v)));
		}
		break;
	case K_ERF:
		for (int64_t i = 0; i < n; i++)
			y[i] = erff(x[i]);
		break;
	case K_HSWISH:
		for (int64_t i = 0; i < n; i++) {
			float t = x[i] / 6.0f + 0.5f;
			t = t < 0.0f ? 0.0f : (t > 1.0f ? 1.0f : t);
			y[i] = x[i] * t;
		}
		break;
	case K_HSIGMOID:
		for (int64_t i = 0; i < n; i++) {
			float t = nd->alpha * x[i] + nd->beta;
			y[i] = t < 0.0f ? 0.0f : (t > 1.0f ? 1.0f : t);
		}
		break;
	case K_CLIP:
		for (int64_t i = 0; i < n; i++) {
			float v = x[i];
			v = v < nd->lo ? nd->lo : v;
			y[i] = v > nd->hi ? nd->hi : v;
		}
		break;
	default:
		break;
	}
}

static void bwd_unary(const struct tg_node *nd, const float *x, const float *y, const float *dy,
		      float *dx, int64_t n, bool acc)
{
#define PUT(expr)                                   \
	for (int64_t i = 0; i < n; i++) {           \
		float gv_ = (expr);                 \
		dx[i] = acc ? dx[i] + gv_ : gv_;    \
	}
	switch (nd->kind) {
	case K_RELU:
		PUT(x[i] > 0.0f ? dy[i] : 0.0f);
		break;
	case K_LEAKY:
		PUT(x[i] >= 0.0f ? dy[i] : nd->alpha * dy[i]);
		break;
	case K_SIGMOID:
		PUT(dy[i] * y[i] * (1.0f - y[i]));
		break;
	case K_TANH:
		PUT(dy[i] * (1.0f - y[i] * y[i]));
		break;
	case K_GELU:
		PUT(dy[i] * (gelu_cdf(x[i]) +
			     x[i] * 0.3989422804014327f * expf(-0.5f * x[i] * x[i])));
		break;
	case K_GELU_TANH:
		for (int64_t i = 0; i < n; i++) {
			float v = x[i];
			float t = tanhf(GELU_K * (v + 0.044715f * v * v * v));
			float gv = dy[i] * (0.5f * (1.0f + t) +
					    0.5f * v * (1.0f - t * t) * GELU_K *
						    (1.0f + 3.0f * 0.044715f * v * v));
			dx[i] = acc ? dx[i] + gv : gv;
		}
		break;
	case K_ERF:
		PUT(dy[i] * 1.1283791670955126f * expf(-x[i] * x[i]));
		break;
	case K_HSWISH:
		PUT(x[i] < -3.0f ? 0.0f : (x[i] > 3.0f ? dy[i] : dy[i] * (x[i] / 3.0f + 0.5f)));
		break;
	case K_HSIGMOID:
		for (int64_t i = 0; i < n; i++) {
			float t = nd->alpha * x[i] + nd->beta;
			float gv = (t > 0.0f && t < 1.0f) ? dy[i] * nd->alpha : 0.0f;
			dx[i] = acc ? dx[i] + gv : gv;
		}
		break;
	case K_CLIP:
		PUT((x[i] >= nd->lo && x[i] <= nd->hi) ? dy[i] : 0.0f);
		break;
	default:
		break;
	}
#undef PUT
}

static void softmax_rows(const float *x, float *y, int64_t rows, int64_t cols, bool log_sm)
{
	for (int64_t r = 0; r < rows; r++) {
		const float *xr = x + r * cols;
		float *yr = y + r * cols;
		float mx = xr[0];
		for (int64_t c = 1; c < cols; c++)
			mx = xr[c] > mx ? xr[c] : mx;
		double s = 0.0;
		for (int64_t c = 0; c < cols; c++)
			s += exp((double)(xr[c] - mx));
		if (log_sm) {
			float ls = (float)log(s);
			for (int64_t c = 0; c < cols; c++)
				yr[c] = xr[c] - mx - ls;
		} else {
			float inv = (float)(1.0 / s);
			for (int64_t c = 0; c < cols; c++)
				yr[c] = expf(xr[c] - mx) * inv;
		}
	}
}

/* Concat helper: outer blocks (n * dims before axis) and each input's block size. */
static int64_t concat_outer(const struct tg_graph *g, const struct tg_node *nd)
{
	const struct tg_value *y = &g->v[nd->out];
	int64_t o = g->n;
	for (int k = 1; k < nd->axis; k++)
		o *= y->shape[k];
	return o;
}

static int64_t concat_block(const struct tg_graph *g, const struct tg_node *nd, int i)
{
	const struct tg_value *x = &g->v[nd->in[i]];
	return numel_of(x->ndim - (int)nd->axis, x->shape + nd->axis);
}

static void runtime_dims(const struct tg_graph *g, int vi, int64_t *dims)
{
	const struct tg_value *v = &g->v[vi];
	memcpy(dims, v->shape, sizeof v->shape);
	if (v->batched)
		dims[0] = g->n;
}

static enum nn_status fwd_node(struct tg_graph *g, struct tg_node *nd, struct nn_err *e)
{
	const int64_t n = g->n;
	const float *x = val(g, nd->in[0]);
	float *y = g->v[nd->out].val;
	const int64_t ny = n * g->v[nd->out].per;
	switch (nd->kind) {
	case K_ALIAS:
		break;
	case K_GEMM: {
		const float *b = val(g, nd->in[1]);
		const float *c = nd->n_in > 2 && nd->in[2] >= 0 ? val(g, nd->in[2]) : NULL;
		float beta = 0.0f;
		if (c && nd->beta != 0.0f) {
			int64_t cn = g->v[nd->in[2]].per;
			for (int64_t r = 0; r < n; r++) {
				float *yr = y + r * nd->nn;
				if (cn == 1)
					for (int64_t j = 0; j < nd->nn; j++)
						yr[j] = nd->beta * c[0];
				else if (nd->beta == 1.0f)
					memcpy(yr, c, (size_t)nd->nn * sizeof(float));
				else
					for (int64_t j = 0; j < nd->nn; j++)
						yr[j] = nd->beta * c[j];
			}
			beta = 1.0f;
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, nd->trans_b ? CblasTrans : CblasNoTrans,
			    (int)n, (int)nd->nn, (int)nd->k, nd->alpha, x, (int)nd->k, b,
			    nd->trans_b ? (int)nd->k : (int)nd->nn, beta, y, (int)nd->nn);
		break;
	}
	case K_MATMUL: {
		const float *b = val(g, nd->in[1]);
		int64_t rows = n * nd->rows_per;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)nd->nn,
			    (int)nd->k, 1.0f, x, (int)nd->k, b, (int)nd->nn, 0.0f, y, (int)nd->nn);
		break;
	}
	case K_ADD:
	case K_SUB:
	case K_MUL:
	case K_DIV: {
		struct bc bc;
		bc_build(g, nd, &bc);
		static const enum bc_code fc[] = {[K_ADD] = BF_ADD, [K_SUB] = BF_SUB,
						  [K_MUL] = BF_MUL, [K_DIV] = BF_DIV};
		bc_run(&bc, fc[nd->kind], y, bc.so, NULL, x, val(g, nd->in[1]));
		break;
	}
	case K_RELU: case K_LEAKY: case K_SIGMOID: case K_TANH: case K_GELU: case K_GELU_TANH:
	case K_ERF: case K_HSWISH: case K_HSIGMOID: case K_CLIP:
		fwd_unary(nd, x, y, ny);
		break;
	case K_SOFTMAX:
	case K_LOGSOFTMAX:
		softmax_rows(x, y, n * nd->rows_per, nd->cols, nd->kind == K_LOGSOFTMAX);
		break;
	case K_DROPOUT:
		if (g->training && nd->ratio > 0.0f) {
			float scale = 1.0f / (1.0f - nd->ratio);
			for (int64_t i = 0; i < ny; i++) {
				uint8_t keep = rng_uniform(&g->rng) >= nd->ratio;
				nd->mask[i] = keep;
				y[i] = keep ? x[i] * scale : 0.0f;
			}
		} else {
			memcpy(y, x, (size_t)ny * sizeof(float));
		}
		break;
	case K_TRANSPOSE: {
		int64_t dims[TENSOR_MAX_DIMS];
		runtime_dims(g, nd->in[0], dims);
		permute(g->v[nd->in[0]].ndim, dims, nd->perm, x, y, false);
		break;
	}
	case K_CONCAT: {
		int64_t outer = concat_outer(g, nd), off = 0;
		int64_t yb = 0;
		for (int i = 0; i < nd->n_in; i++)
			yb += concat_block(g, nd, i);
		for (int i = 0; i < nd->n_in; i++) {
			int64_t b = concat_block(g, nd, i);
			const float *xi = val(g, nd->in[i]);
			for (int64_t o = 0; o < outer; o++)
				memcpy(y + o * yb + off, xi + o * b, (size_t)b * sizeof(float));
			off += b;
		}
		break;
	}
	case K_CONV: {
		struct tc_conv c = nd->conv;
		c.n = n;
		const float *b = nd->n_in > 2 && nd->in[2] >= 0 ? val(g, nd->in[2]) : NULL;
		tc_conv_forward(&c, x, val(g, nd->in[1]), b, y, g->conv_scratch);
		break;
	}
	case K_MAXPOOL: {
		struct tc_pool p = nd->pool;
		p.n = n;
		tc_maxpool_forward(&p, x, y, nd->argmax);
		break;
	}
	case K_AVGPOOL: {
		struct tc_pool p = nd->pool;
		p.n = n;
		tc_avgpool_forward(&p, x, y);
		break;
	}
	case K_GAP: {
		const struct tg_value *xv = &g->v[nd->in[0]];
		tc_gap_forward(n, xv->shape[1], xv->per / xv->shape[1], x, y);
		break;
	}
	case K_BN: {
		const struct tg_value *xv = &g->v[nd->in[0]];
		int64_t c = nd->cols, hw = xv->per / c;
		float *mean = g->v[root(g, nd->in[3])].val, *var = g->v[root(g, nd->in[4])].val;
		if (g->training) {
			if (n * hw < 2)
				return err_set(e, NN_EINVAL, "invalid_argument", "",
					       "BatchNormalization '%.100s' in training needs more than one value per channel (batch %lld)",
					       nd->name, (long long)n);
			tc_bn_train_forward(n, c, hw, x, val(g, nd->in[1]), val(g, nd->in[2]), mean,
					    var, nd->momentum, nd->eps, y, nd->save_mean,
					    nd->save_invstd);
		} else {
			tc_bn_infer_forward(n, c, hw, x, val(g, nd->in[1]), val(g, nd->in[2]), mean,
					    var, nd->eps, y);
		}
		break;
	}
	case K_PAD: {
		struct tc_pad p = nd->pad;
		p.n = n;
		tc_pad_forward(&p, x, nd->pad_value, y);
		break;
	}
	}
	return NN_OK;
}

enum nn_status tg_forward(struct tg_graph *g, const float *x, int64_t n, bool training,
			  const float **out, struct nn_err *e)
{
	if (n < 1 || n > g->max_batch)
		return err_set(e, NN_EINVAL, "invalid_argument", "",
			       "batch %lld is outside [1, %lld]", (long long)n,
			       (long long)g->max_batch);
	g->n = n;
	g->training = training;
	g->ran = false;
	struct tg_value *iv = &g->v[g->in_v];
	memcpy(iv->val, x, (size_t)(n * iv->per) * sizeof(float));
	for (size_t t = 0; t < g->ntaps; t++)
		memset(g->taps[t].grad, 0, (size_t)(n * g->v[g->taps[t].v].per) * sizeof(float));
	for (size_t i = 0; i < g->nn; i++) {
		enum nn_status st = fwd_node(g, &g->nodes[i], e);
		if (st != NN_OK)
			return st;
	}
	g->ran = true;
	*out = val(g, g->out_v);
	return NN_OK;
}

const float *tg_tap(const struct tg_graph *g, const char *name, int64_t *numel)
{
	for (size_t t = 0; t < g->ntaps; t++)
		if (strcmp(g->v[g->taps[t].v].name, name) == 0) {
			if (numel)
				*numel = g->v[g->taps[t].v].per;
			return val(g, g->taps[t].v);
		}
	return NULL;
}

float *tg_tap_grad(struct tg_graph *g, const char *name)
{
	for (size_t t = 0; t < g->ntaps; t++)
		if (strcmp(g->v[g->taps[t].v].name, name) == 0)
			return g->taps[t].grad;
	return NULL;
}

/* -------------------------------------------------------------- backward */

/* Sums dy [rows, cols] over rows, times s, into d (acc adds). */
static void colsum(const float *dy, int64_t rows, int64_t cols, float s, float *d, bool acc)
{
	if (!acc)
		memset(d, 0, (size_t)cols * sizeof(float));
	if (s == 1.0f) {
		for (int64_t r = 0; r < rows; r++)
			add_into(d, dy + r * cols, cols);
	} else {
		for (int64_t r = 0; r < rows; r++)
			for (int64_t c = 0; c < cols; c++)
				d[c] += s * dy[r * cols + c];
	}
}

/* For kernels that overwrite: where to write (dst or tmp) and whether to add tmp after. */
static float *ow_target(float *dst, bool acc, float *tmp)
{
	return acc ? tmp : dst;
}

static void bwd_node(struct tg_graph *g, struct tg_node *nd)
{
	const int64_t n = g->n;
	const int o = root(g, nd->out);
	if (!g->v[o].written || !nd->back)
		return;
	const float *dy = g->v[o].grad;
	const float *x = val(g, nd->in[0]);
	const float *y = g->v[nd->out].val;
	const int64_t ny = n * g->v[nd->out].per;
	bool acc;
	switch (nd->kind) {
	case K_ALIAS:
		break;
	case K_GEMM: {
		const float *b = val(g, nd->in[1]);
		if (needs(g, nd->in[0])) {
			float *dx = gdst(g, nd->in[0], &acc);
			if (nd->trans_b) /* B [N,K]: dA = dY B */
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)nd->k,
					    (int)nd->nn, nd->alpha, dy, (int)nd->nn, b, (int)nd->k,
					    acc ? 1.0f : 0.0f, dx, (int)nd->k);
			else /* B [K,N]: dA = dY B^T */
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)nd->k,
					    (int)nd->nn, nd->alpha, dy, (int)nd->nn, b, (int)nd->nn,
					    acc ? 1.0f : 0.0f, dx, (int)nd->k);
			mark(g, nd->in[0]);
		}
		if (needs(g, nd->in[1])) {
			float *db = gdst(g, nd->in[1], &acc);
			if (nd->trans_b) /* dB [N,K] = dY^T A */
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nd->nn, (int)nd->k,
					    (int)n, nd->alpha, dy, (int)nd->nn, x, (int)nd->k,
					    acc ? 1.0f : 0.0f, db, (int)nd->k);
			else /* dB [K,N] = A^T dY */
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nd->k, (int)nd->nn,
					    (int)n, nd->alpha, x, (int)nd->k, dy, (int)nd->nn,
					    acc ? 1.0f : 0.0f, db, (int)nd->nn);
			mark(g, nd->in[1]);
		}
		if (nd->n_in > 2 && needs(g, nd->in[2])) {
			float *dc = gdst(g, nd->in[2], &acc);
			if (g->v[nd->in[2]].per == 1) {
				double s = 0.0;
				for (int64_t i = 0; i < ny; i++)
					s += dy[i];
				dc[0] = (acc ? dc[0] : 0.0f) + nd->beta * (float)s;
			} else {
				colsum(dy, n, nd->nn, nd->beta, dc, acc);
			}
			mark(g, nd->in[2]);
		}
		break;
	}
	case K_MATMUL: {
		const float *b = val(g, nd->in[1]);
		int64_t rows = n * nd->rows_per;
		if (needs(g, nd->in[0])) {
			float *dx = gdst(g, nd->in[0], &acc);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)nd->k,
				    (int)nd->nn, 1.0f, dy, (int)nd->nn, b, (int)nd->nn,
				    acc ? 1.0f : 0.0f, dx, (int)nd->k);
			mark(g, nd->in[0]);
		}
		if (needs(g, nd->in[1])) {
			float *db = gdst(g, nd->in[1], &acc);
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nd->k, (int)nd->nn,
				    (int)rows, 1.0f, x, (int)nd->k, dy, (int)nd->nn,
				    acc ? 1.0f : 0.0f, db, (int)nd->nn);
			mark(g, nd->in[1]);
		}
		break;
	}
	case K_ADD:
	case K_SUB:
	case K_MUL:
	case K_DIV: {
		struct bc bc;
		bc_build(g, nd, &bc);
		const float *a = x, *b = val(g, nd->in[1]);
		for (int s = 0; s < 2; s++) {
			if (!needs(g, nd->in[s]))
				continue;
			float *d = gdst(g, nd->in[s], &acc);
			int64_t dn = cur_numel(g, nd->in[s]);
			bool same = dn == ny;
			if (same && !acc && (nd->kind == K_ADD || (nd->kind == K_SUB && s == 0))) {
				memcpy(d, dy, (size_t)ny * sizeof(float));
			} else if (same && nd->kind == K_MUL && !acc) {
				/* same shape, no broadcast on this side: direct product */
				const float *other = s == 0 ? b : a;
				const int64_t *os = s == 0 ? bc.sb : bc.sa;
				if (bc.d == 1 && os[0] == 1) {
					for (int64_t i = 0; i < ny; i++)
						d[i] = dy[i] * other[i];
				} else {
					memset(d, 0, (size_t)dn * sizeof(float));
					bc_run(&bc, s == 0 ? BG_MULA : BG_MULB, d, s == 0 ? bc.sa : bc.sb,
					       dy, a, b);
				}
			} else {
				if (!acc)
					memset(d, 0, (size_t)dn * sizeof(float));
				enum bc_code code;
				switch (nd->kind) {
				case K_ADD: code = BG_ADD; break;
				case K_SUB: code = s == 0 ? BG_ADD : BG_SUB; break;
				case K_MUL: code = s == 0 ? BG_MULA : BG_MULB; break;
				default: code = s == 0 ? BG_DIVA : BG_DIVB; break;
				}
				bc_run(&bc, code, d, s == 0 ? bc.sa : bc.sb, dy, a, b);
			}
			mark(g, nd->in[s]);
		}
		break;
	}
	case K_RELU: case K_LEAKY: case K_SIGMOID: case K_TANH: case K_GELU: case K_GELU_TANH:
	case K_ERF: case K_HSWISH: case K_HSIGMOID: case K_CLIP: {
		float *dx = gdst(g, nd->in[0], &acc);
		bwd_unary(nd, x, y, dy, dx, ny, acc);
		mark(g, nd->in[0]);
		break;
	}
	case K_SOFTMAX:
	case K_LOGSOFTMAX: {
		float *dx = gdst(g, nd->in[0], &acc);
		int64_t rows = n * nd->rows_per, cols = nd->cols;
		for (int64_t r = 0; r < rows; r++) {
			const float *yr = y + r * cols, *dr = dy + r * cols;
			float *xr = dx + r * cols;
			double s = 0.0;
			if (nd->kind == K_SOFTMAX) {
				for (int64_t c = 0; c < cols; c++)
					s += (double)dr[c] * yr[c];
				for (int64_t c = 0; c < cols; c++) {
					float gv = yr[c] * (dr[c] - (float)s);
					xr[c] = acc ? xr[c] + gv : gv;
				}
			} else {
				for (int64_t c = 0; c < cols; c++)
					s += dr[c];
				for (int64_t c = 0; c < cols; c++) {
					float gv = dr[c] - expf(yr[c]) * (float)s;
					xr[c] = acc ? xr[c] + gv : gv;
				}
			}
		}
		mark(g, nd->in[0]);
		break;
	}
	case K_DROPOUT: {
		float *dx = gdst(g, nd->in[0], &acc);
		if (g->training && nd->ratio > 0.0f) {
			float scale = 1.0f / (1.0f - nd->ratio);
			for (int64_t i = 0; i < ny; i++) {
				float gv = nd->mask[i] ? dy[i] * scale : 0.0f;
				dx[i] = acc ? dx[i] + gv : gv;
			}
		} else if (acc) {
			add_into(dx, dy, ny);
		} else {
			memcpy(dx, dy, (size_t)ny * sizeof(float));
		}
		mark(g, nd->in[0]);
		break;
	}
	case K_TRANSPOSE: {
		float *dx = gdst(g, nd->in[0], &acc);
		int64_t dims[TENSOR_MAX_DIMS], inv[TENSOR_MAX_DIMS];
		runtime_dims(g, nd->out, dims);
		int nd_ = g->v[nd->out].ndim;
		for (int k = 0; k < nd_; k++)
			inv[nd->perm[k]] = k;
		permute(nd_, dims, inv, dy, dx, acc);
		mark(g, nd->in[0]);
		break;
	}
	case K_CONCAT: {
		int64_t outer = concat_outer(g, nd), off = 0, yb = 0;
		for (int i = 0; i < nd->n_in; i++)
			yb += concat_block(g, nd, i);
		for (int i = 0; i < nd->n_in; i++) {
			int64_t b = concat_block(g, nd, i);
			if (needs(g, nd->in[i])) {
				float *dx = gdst(g, nd->in[i], &acc);
				for (int64_t q = 0; q < outer; q++) {
					if (acc)
						add_into(dx + q * b, dy + q * yb + off, b);
					else
						memcpy(dx + q * b, dy + q * yb + off, (size_t)b * sizeof(float));
				}
				mark(g, nd->in[i]);
			}
			off += b;
		}
		break;
	}
	case K_CONV: {
		struct tc_conv c = nd->conv;
		c.n = n;
		bool nx = needs(g, nd->in[0]), nw = needs(g, nd->in[1]);
		bool nb = nd->n_in > 2 && needs(g, nd->in[2]);
		bool ax = false, aw = false, ab = false;
		float *dx = nx ? gdst(g, nd->in[0], &ax) : NULL;
		float *dw = nw ? gdst(g, nd->in[1], &aw) : NULL;
		float *db = nb ? gdst(g, nd->in[2], &ab) : NULL;
		int64_t nxn = cur_numel(g, nd->in[0]);
		int64_t nwn = g->v[nd->in[1]].per;
		/* dw always computed by the kernel: frozen W goes to scratch */
		float *tw = (!nw || aw) ? g->tmp2 : dw;
		float *tx = nx ? ow_target(dx, ax, g->tmp1) : NULL;
		float *tb = nb ? ow_target(db, ab, g->tmpc) : NULL;
		tc_conv_backward(&c, x, val(g, nd->in[1]), dy, tx, tw, tb, g->conv_scratch);
		if (nx) {
			if (ax)
				add_into(dx, g->tmp1, nxn);
			mark(g, nd->in[0]);
		}
		if (nw) {
			if (aw)
				add_into(dw, g->tmp2, nwn);
			mark(g, nd->in[1]);
		}
		if (nb) {
			if (ab)
				add_into(db, tb, c.m);
			mark(g, nd->in[2]);
		}
		break;
	}
	case K_MAXPOOL:
	case K_AVGPOOL: {
		struct tc_pool p = nd->pool;
		p.n = n;
		float *dx = gdst(g, nd->in[0], &acc);
		float *t = ow_target(dx, acc, g->tmp1);
		if (nd->kind == K_MAXPOOL)
			tc_maxpool_backward(&p, dy, nd->argmax, t);
		else
			tc_avgpool_backward(&p, dy, t);
		if (acc)
			add_into(dx, g->tmp1, cur_numel(g, nd->in[0]));
		mark(g, nd->in[0]);
		break;
	}
	case K_GAP: {
		const struct tg_value *xv = &g->v[nd->in[0]];
		float *dx = gdst(g, nd->in[0], &acc);
		float *t = ow_target(dx, acc, g->tmp1);
		tc_gap_backward(n, xv->shape[1], xv->per / xv->shape[1], dy, t);
		if (acc)
			add_into(dx, g->tmp1, n * xv->per);
		mark(g, nd->in[0]);
		break;
	}
	case K_BN: {
		const struct tg_value *xv = &g->v[nd->in[0]];
		int64_t c = nd->cols, hw = xv->per / c, nx_ = n * xv->per;
		bool nx = needs(g, nd->in[0]), ns = needs(g, nd->in[1]), nb = needs(g, nd->in[2]);
		bool ax = false, as = false, ab = false;
		float *dx = nx ? gdst(g, nd->in[0], &ax) : NULL;
		float *ds = ns ? gdst(g, nd->in[1], &as) : NULL;
		float *db = nb ? gdst(g, nd->in[2], &ab) : NULL;
		float *tx = nx && !ax ? dx : g->tmp1;
		float *ts = ns && !as ? ds : g->tmpc;
		float *tb = nb && !ab ? db : g->tmpc + c;
		const float *scale = val(g, nd->in[1]);
		const float *mean = g->v[root(g, nd->in[3])].val;
		const float *var = g->v[root(g, nd->in[4])].val;
		if (g->training) {
			tc_bn_train_backward(n, c, hw, x, scale, nd->save_mean, nd->save_invstd, dy, tx,
					     ts, tb);
		} else {
			if (nx)
				tc_bn_infer_backward(n, c, hw, scale, var, nd->eps, dy, tx);
			if (ns || nb)
				tc_bn_infer_backward_params(n, c, hw, x, mean, var, nd->eps, dy,
							    ns ? ts : NULL, nb ? tb : NULL);
		}
		if (nx) {
			if (ax)
				add_into(dx, tx, nx_);
			mark(g, nd->in[0]);
		}
		if (ns) {
			if (as)
				add_into(ds, ts, c);
			mark(g, nd->in[1]);
		}
		if (nb) {
			if (ab)
				add_into(db, tb, c);
			mark(g, nd->in[2]);
		}
		break;
	}
	case K_PAD: {
		struct tc_pad p = nd->pad;
		p.n = n;
		float *dx = gdst(g, nd->in[0], &acc);
		float *t = ow_target(dx, acc, g->tmp1);
		tc_pad_backward(&p, dy, t);
		if (acc)
			add_into(dx, g->tmp1, cur_numel(g, nd->in[0]));
		mark(g, nd->in[0]);
		break;
	}
	}
}

enum nn_status tg_backward(struct tg_graph *g, const float *dout, struct nn_err *e)
{
	if (!g->ran)
		return err_set(e, NN_EINVAL, "invalid_argument", "",
			       "tg_backward needs a completed tg_forward first");
	for (size_t i = 0; i < g->nv; i++)
		g->v[i].written = false;
	int o = root(g, g->out_v);
	int64_t no = g->n * g->v[g->out_v].per;
	if (g->v[o].grad) {
		memcpy(g->v[o].grad, dout, (size_t)no * sizeof(float));
		g->v[o].written = true;
	}
	for (size_t t = 0; t < g->ntaps; t++) {
		int r = root(g, g->taps[t].v);
		if (!g->v[r].grad)
			continue;
		int64_t nt = g->n * g->v[r].per;
		if (g->v[r].written)
			add_into(g->v[r].grad, g->taps[t].grad, nt);
		else
			memcpy(g->v[r].grad, g->taps[t].grad, (size_t)nt * sizeof(float));
		g->v[r].written = true;
	}
	for (size_t i = g->nn; i-- > 0;)
		bwd_node(g, &g->nodes[i]);
	for (size_t i = 0; i < g->np; i++)
		if (!g->v[g->param_v[i]].written)
			memset(g->params[i].grad, 0, g->params[i].n * sizeof(float));
	return NN_OK;
}

size_t tg_graph_bytes(const struct tg_graph *g)
{
	size_t b = 0;
	for (size_t i = 0; i < g->nv; i++) {
		const struct tg_value *v = &g->v[i];
		size_t f = (size_t)(v->batched ? g->max_batch * v->per : v->per);
		if (v->cdata)
			b += f * (dtype_size(v->dtype) ? dtype_size(v->dtype) : 1);
		if (v->own_val)
			b += f * sizeof(float);
		if (v->alias < 0 && v->grad)
			b += f * sizeof(float);
	}
	for (size_t i = 0; i < g->n_slabs; i++)
		b += g->slabs[i].floats * sizeof(float);
	for (size_t i = 0; i < g->nn; i++) {
		const struct tg_node *nd = &g->nodes[i];
		size_t f = (size_t)(g->max_batch * g->v[nd->out].per);
		if (nd->argmax)
			b += f * sizeof(int32_t);
		if (nd->mask)
			b += (size_t)(g->max_batch * g->v[nd->in[0]].per);
		if (nd->save_mean)
			b += 2 * (size_t)nd->cols * sizeof(float);
	}
	for (size_t t = 0; t < g->ntaps; t++)
		b += (size_t)(g->max_batch * g->v[g->taps[t].v].per) * sizeof(float);
	b += (2 * g->tmp_floats + g->conv_scratch_floats + 2 * g->tmpc_floats) * sizeof(float);
	return b;
}

/* ------------------------------------------------------------ write-back */

static enum nn_status write_one(const struct tg_value *v, struct onnx_model *m, struct nn_err *e)
{
	Onnx__TensorProto *init = onnx_find_initializer(m, v->name);
	if (!init)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "initializer '%.100s' is not in the model written back to", v->name);
	struct tensor cur;
	enum nn_status st = onnx_initializer_view(init, &cur, e);
	if (st != NN_OK)
		return st;
	if (tensor_numel(&cur) != v->per)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "initializer '%.100s' has %lld elements, the trained tensor %lld",
			       v->name, (long long)tensor_numel(&cur), (long long)v->per);
	struct tensor t;
	tensor_view(&t, DT_FLOAT, cur.ndim, cur.shape, v->val);
	return onnx_initializer_set(init, &t, e);
}

enum nn_status tg_write_back(const struct tg_graph *g, struct onnx_model *m, struct nn_err *e)
{
	enum nn_status st;
	for (size_t i = 0; i < g->np; i++)
		if ((st = write_one(&g->v[g->param_v[i]], m, e)) != NN_OK)
			return st;
	for (size_t i = 0; i < g->nstate; i++)
		if ((st = write_one(&g->v[g->state_v[i]], m, e)) != NN_OK)
			return st;
	return NN_OK;
}
