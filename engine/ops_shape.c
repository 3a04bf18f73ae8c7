/* ops_shape: shape plumbing operators (see ops_shape.h).
 * ONNX semantics per operator and opset; every kernel writes only its
 * planned output buffers and never allocates. */
#include "ops_shape.h"

#include <stdlib.h>
#include <string.h>

#include "exec_op.h"
#include "ops_util.h"

static enum nn_status need_const(const struct exec_infer_ctx *c, size_t k, const char *what,
				 struct nn_err *e)
{
	if (!c->in[k].data)
		return exec_node_err(e, NN_EUNSUPPORTED, c->node,
				     "%s (input %zu) must be a compile-time constant", what, k);
	if (c->in[k].dtype != DT_INT64 && c->in[k].dtype != DT_INT32)
		return exec_node_err(e, NN_EINVAL, c->node, "%s has dtype %s (int64 expected)", what,
				     dtype_name(c->in[k].dtype));
	return NN_OK;
}

static size_t bytes_of(const struct tensor *t)
{
	return (size_t)exec_numel(t) * dtype_size(t->dtype);
}

static enum nn_status run_copy(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	size_t n = bytes_of(&c->out[0]);
	if (n && c->out[0].data != c->in[0].data)
		memmove(c->out[0].data, c->in[0].data, n);
	return NN_OK;
}

/* ---- shape ops ---- */

static enum nn_status infer_flatten(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = want_io(c, 1, 1, e);
	if (st != NN_OK)
		return st;
	int64_t r = c->in[0].ndim;
	int64_t axis = exec_attr_int(c->node, "axis", 1);
	if (axis < 0)
		axis += r;
	if (axis < 0 || axis > r)
		return exec_node_err(e, NN_EINVAL, c->node, "axis out of range for rank %lld",
				     (long long)r);
	int64_t shape[2] = {1, 1};
	for (int64_t d = 0; d < r; d++)
		shape[d < axis ? 0 : 1] *= c->in[0].shape[d];
	set_out(&c->out[0], c->in[0].dtype, 2, shape);
	return NN_OK;
}

static enum nn_status infer_reshape(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st;
	const struct tensor *x = &c->in[0];
	int64_t want[TENSOR_MAX_DIMS];
	int64_t nd;
	if (c->opset < 5) {
		if ((st = want_io(c, 1, 1, e)) != NN_OK)
			return st;
		const int64_t *v;
		size_t n;
		if (!exec_attr_ints(c->node, "shape", &v, &n))
			return exec_node_err(e, NN_EINVAL, c->node, "shape attribute missing");
		if (n > TENSOR_MAX_DIMS)
			return exec_node_err(e, NN_EUNSUPPORTED, c->node, "rank %zu too large", n);
		nd = (int64_t)n;
		for (size_t i = 0; i < n; i++)
			want[i] = v[i];
	} else {
		if ((st = want_io(c, 2, 2, e)) != NN_OK || (st = need_const(c, 1, "shape", e)) != NN_OK)
			return st;
		if (c->in[1].ndim != 1)
			return exec_node_err(e, NN_EINVAL, c->node, "shape must be 1-D");
		nd = c->in[1].shape[0];
		if (nd > TENSOR_MAX_DIMS)
			return exec_node_err(e, NN_EUNSUPPORTED, c->node, "rank %lld too large",
					     (long long)nd);
		for (int64_t i = 0; i < nd; i++)
			want[i] = ops_int_at(&c->in[1], i);
	}
	bool allowzero = exec_attr_int(c->node, "allowzero", 0) != 0;
	int64_t total = exec_numel(x), prod = 1;
	int neg = -1;
	for (int64_t i = 0; i < nd; i++) {
		if (want[i] == 0 && !allowzero) {
			if (i >= x->ndim)
				return exec_node_err(e, NN_EINVAL, c->node,
						     "shape[%lld] = 0 copies a missing dimension",
						     (long long)i);
			want[i] = x->shape[i];
		}
		if (want[i] == -1) {
			if (neg >= 0)
				return exec_node_err(e, NN_EINVAL, c->node, "more than one -1 in shape");
			neg = (int)i;
			continue;
		}
		if (want[i] < 0 || __builtin_mul_overflow(prod, want[i], &prod))
			return exec_node_err(e, NN_EINVAL, c->node, "bad shape value %lld",
					     (long long)want[i]);
	}
	if (neg >= 0) {
		if (prod == 0 || total % prod != 0)
			return exec_node_err(e, NN_EINVAL, c->node,
					     "cannot infer -1: %lld elements into %lld", (long long)total,
					     (long long)prod);
		want[neg] = total / prod;
		prod = total;
	}
	if (prod != total)
		return exec_node_err(e, NN_EINVAL, c->node,
				     "shape holds %lld elements, input has %lld", (long long)prod,
				     (long long)total);
	set_out(&c->out[0], x->dtype, (int)nd, want);
	return NN_OK;
}

static enum nn_status infer_identity(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = want_io(c, 1, 1, e);
	if (st != NN_OK)
		return st;
	set_out(&c->out[0], c->in[0].dtype, c->in[0].ndim, c->in[0].shape);
	return NN_OK;
}

/* Dropout at inference: identity; the optional mask is all true. A constant
 * training_mode of true would need random numbers: not supported. */
static enum nn_status infer_dropout(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = want_io(c, 1, 3, e);
	if (st != NN_OK)
		return st;
	if (has_in(c, 2)) {
		if (!c->in[2].data)
			return exec_node_err(e, NN_EUNSUPPORTED, c->node,
					     "training_mode must be a compile-time constant");
		if (ops_int_at(&c->in[2], 0) != 0)
			return exec_node_err(e, NN_EUNSUPPORTED, c->node,
					     "training_mode true is not supported");
	}
	set_out(&c->out[0], c->in[0].dtype, c->in[0].ndim, c->in[0].shape);
	if (c->n_out > 1)
		set_out(&c->out[1], DT_BOOL, c->in[0].ndim, c->in[0].shape);
	return NN_OK;
}

static enum nn_status run_dropout(const struct exec_run_ctx *c, struct nn_err *e)
{
	run_copy(c, e);
	if (c->n_out > 1)
		memset(c->out[1].data, 1, (size_t)exec_numel(&c->out[1]));
	return NN_OK;
}

static enum nn_status infer_transpose(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = want_io(c, 1, 1, e);
	if (st != NN_OK)
		return st;
	const struct tensor *x = &c->in[0];
	const int64_t *perm;
	size_t n;
	int64_t *p = malloc(sizeof(int64_t) * TENSOR_MAX_DIMS);
	if (!p)
		return exec_node_err(e, NN_ENOMEM, c->node, "out of memory");
	if (exec_attr_ints(c->node, "perm", &perm, &n)) {
		bool seen[TENSOR_MAX_DIMS] = {false};
		if ((int)n != x->ndim) {
			free(p);
			return exec_node_err(e, NN_EINVAL, c->node, "perm has %zu entries, rank is %d",
					     n, x->ndim);
		}
		for (size_t i = 0; i < n; i++) {
			int64_t v = perm[i] < 0 ? perm[i] + x->ndim : perm[i];
			if (v < 0 || v >= x->ndim || seen[v]) {
				free(p);
				return exec_node_err(e, NN_EINVAL, c->node, "perm is not a permutation");
			}
			seen[v] = true;
			p[i] = v;
		}
	} else {
		for (int i = 0; i < x->ndim; i++)
			p[i] = x->ndim - 1 - i;
	}
	int64_t shape[TENSOR_MAX_DIMS];
	for (int i = 0; i < x->ndim; i++)
		shape[i] = x->shape[p[i]];
	set_out(&c->out[0], x->dtype, x->ndim, shape);
	c->priv = p;
	return NN_OK;
}

static enum nn_status run_transpose(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const int64_t *p = c->priv;
	const struct tensor *x = &c->in[0], *y = &c->out[0];
	int nd = x->ndim;
	size_t es = dtype_size(x->dtype);
	int64_t n = exec_numel(y);
	if (n == 0)
		return NN_OK;
	if (nd <= 1) {
		memcpy(y->data, x->data, (size_t)n * es);
		return NN_OK;
	}
	int64_t xs[TENSOR_MAX_DIMS], st[TENSOR_MAX_DIMS], idx[TENSOR_MAX_DIMS] = {0};
	int64_t s = 1;
	for (int d = nd - 1; d >= 0; d--) {
		xs[d] = s;
		s *= x->shape[d];
	}
	for (int d = 0; d < nd; d++)
		st[d] = xs[p[d]]; /* input stride of output dim d */
	const char *src = x->data;
	char *dst = y->data;
	int64_t inner = y->shape[nd - 1], is = st[nd - 1], off = 0;
	for (int64_t o = 0; o < n; o += inner) {
		if (es == 4) { /* integer moves: bit patterns kept for every 4-byte dtype */
			const uint32_t *sp = (const uint32_t *)src + off;
			uint32_t *dp = (uint32_t *)dst + o;
			for (int64_t i = 0; i < inner; i++)
				dp[i] = sp[i * is];
		} else {
			for (int64_t i = 0; i < inner; i++)
				memcpy(dst + (o + i) * (int64_t)es, src + (off + i * is) * (int64_t)es,
				       es);
		}
		for (int d = nd - 2; d >= 0; d--) {
			idx[d]++;
			off += st[d];
			if (idx[d] < y->shape[d])
				break;
			off -= st[d] * idx[d];
			idx[d] = 0;
		}
	}
	return NN_OK;
}

static enum nn_status infer_concat(struct exec_infer_ctx *c, struct nn_err *e)
{
	if (c->n_in < 1 || c->n_out < 1)
		return exec_node_err(e, NN_EINVAL, c->node, "needs inputs and an output");
	const struct tensor *x0 = &c->in[0];
	for (size_t k = 0; k < c->n_in; k++)
		if (c->in[k].dtype == DT_UNDEFINED)
			return exec_node_err(e, NN_EINVAL, c->node, "input %zu is empty", k);
	const Onnx__AttributeProto *ax = exec_attr_find(c->node, "axis");
	if (!ax && c->opset >= 4)
		return exec_node_err(e, NN_EINVAL, c->node, "axis attribute missing");
	int64_t axis = exec_attr_int(c->node, "axis", 1);
	if (axis < 0)
		axis += x0->ndim;
	if (axis < 0 || axis >= x0->ndim)
		return exec_node_err(e, NN_EINVAL, c->node, "axis out of range");
	int64_t shape[TENSOR_MAX_DIMS];
	memcpy(shape, x0->shape, sizeof shape);
	shape[axis] = 0;
	for (size_t k = 0; k < c->n_in; k++) {
		const struct tensor *x = &c->in[k];
		if (x->dtype != x0->dtype || x->ndim != x0->ndim)
			return exec_node_err(e, NN_EINVAL, c->node,
					     "input %zu differs in dtype or rank", k);
		for (int d = 0; d < x->ndim; d++)
			if (d != axis && x->shape[d] != x0->shape[d])
				return exec_node_err(e, NN_EINVAL, c->node,
						     "input %zu differs in dimension %d", k, d);
		if (__builtin_add_overflow(shape[axis], x->shape[axis], &shape[axis]))
			return exec_node_err(e, NN_EINVAL, c->node, "output too large");
	}
	set_out(&c->out[0], x0->dtype, x0->ndim, shape);
	return NN_OK;
}

static enum nn_status run_concat(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const struct tensor *y = &c->out[0];
	int64_t axis = exec_attr_int(c->node, "axis", 1);
	if (axis < 0)
		axis += y->ndim;
	size_t es = dtype_size(y->dtype);
	int64_t outer = 1, inner = 1;
	for (int64_t d = 0; d < axis; d++)
		outer *= y->shape[d];
	for (int64_t d = axis + 1; d < y->ndim; d++)
		inner *= y->shape[d];
	int64_t yrow = y->shape[axis] * inner;
	int64_t at = 0;
	for (size_t k = 0; k < c->n_in; k++) {
		const struct tensor *x = &c->in[k];
		int64_t xrow = x->shape[axis] * inner;
		if (xrow == 0)
			continue;
		for (int64_t o = 0; o < outer; o++)
			memcpy((char *)y->data + (o * yrow + at) * (int64_t)es,
			       (const char *)x->data + o * xrow * (int64_t)es, (size_t)xrow * es);
		at += xrow;
	}
	return NN_OK;
}

/* Constant: the value is decoded once at infer and copied out by run. */
static void free_tensor_priv(void *p)
{
	tensor_free(p);
	free(p);
}

static enum nn_status check_constant(const Onnx__NodeProto *node, int64_t opset, struct nn_err *e)
{
	(void)opset;
	static const char *ok[] = {"value", "value_float", "value_floats", "value_int",
				   "value_ints"};
	if (node->n_attribute != 1)
		return exec_node_err(e, NN_EINVAL, node, "needs exactly one attribute");
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
		if (node->attribute[0]->name && strcmp(node->attribute[0]->name, ok[i]) == 0)
			return NN_OK;
	return exec_node_err(e, NN_EUNSUPPORTED, node, "attribute '%.60s' is not supported",
			     node->attribute[0]->name ? node->attribute[0]->name : "");
}

static enum nn_status infer_constant(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = check_constant(c->node, c->opset, e);
	if (st != NN_OK)
		return st;
	if (c->n_out < 1)
		return exec_node_err(e, NN_EINVAL, c->node, "has no output");
	const Onnx__AttributeProto *a = c->node->attribute[0];
	struct tensor *t = calloc(1, sizeof *t);
	if (!t)
		return exec_node_err(e, NN_ENOMEM, c->node, "out of memory");
	const char *nm = a->name;
	if (strcmp(nm, "value") == 0) {
		if (!a->t) {
			free(t);
			return exec_node_err(e, NN_EINVAL, c->node, "value has no tensor");
		}
		if ((st = exec_tensor_proto(a->t, c->node->output[0], t, e)) != NN_OK) {
			free(t);
			return st;
		}
	} else {
		bool f = strcmp(nm, "value_float") == 0 || strcmp(nm, "value_floats") == 0;
		bool list = strcmp(nm, "value_floats") == 0 || strcmp(nm, "value_ints") == 0;
		int64_t n = list ? (int64_t)(f ? a->n_floats : a->n_ints) : 1;
		int64_t shape[1] = {n};
		if ((st = tensor_alloc(t, f ? DT_FLOAT : DT_INT64, list ? 1 : 0, shape, e)) != NN_OK) {
			free(t);
			return st;
		}
		if (f)
			memcpy(t->data, list ? a->floats : &a->f, sizeof(float) * (size_t)n);
		else
			memcpy(t->data, list ? a->ints : &a->i, sizeof(int64_t) * (size_t)n);
	}
	set_out(&c->out[0], t->dtype, t->ndim, t->shape);
	c->priv = t;
	return NN_OK;
}

static enum nn_status run_constant(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const struct tensor *t = c->priv;
	size_t n = bytes_of(t);
	if (n)
		memcpy(c->out[0].data, t->data, n);
	return NN_OK;
}

/* Shape (start/end from opset 15). Reads only the input's shape, so the
 * executor folds it whenever shapes are known (always). */
static void shape_range(const struct tensor *x, const Onnx__NodeProto *node, int64_t *s,
			int64_t *en)
{
	int64_t r = x->ndim;
	*s = exec_attr_int(node, "start", 0);
	*en = exec_attr_int(node, "end", r);
	if (*s < 0)
		*s += r;
	if (*en < 0)
		*en += r;
	*s = *s < 0 ? 0 : (*s > r ? r : *s);
	*en = *en < 0 ? 0 : (*en > r ? r : *en);
	if (*en < *s)
		*en = *s;
}

static enum nn_status infer_shape(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = want_io(c, 1, 1, e);
	if (st != NN_OK)
		return st;
	int64_t s, en;
	shape_range(&c->in[0], c->node, &s, &en);
	int64_t shape[1] = {en - s};
	set_out(&c->out[0], DT_INT64, 1, shape);
	return NN_OK;
}

static enum nn_status run_shape(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	int64_t s, en;
	shape_range(&c->in[0], c->node, &s, &en);
	int64_t *y = c->out[0].data;
	for (int64_t i = s; i < en; i++)
		y[i - s] = c->in[0].shape[i];
	return NN_OK;
}

static enum nn_status infer_gather(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = want_io(c, 2, 2, e);
	if (st != NN_OK)
		return st;
	const struct tensor *x = &c->in[0], *ix = &c->in[1];
	if (ix->dtype != DT_INT64 && ix->dtype != DT_INT32)
		return exec_node_err(e, NN_EINVAL, c->node, "indices have dtype %s",
				     dtype_name(ix->dtype));
	if (dtype_size(x->dtype) == 0)
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "data dtype %s",
				     dtype_name(x->dtype));
	int64_t axis = exec_attr_int(c->node, "axis", 0);
	if (axis < 0)
		axis += x->ndim;
	if (axis < 0 || axis >= x->ndim)
		return exec_node_err(e, NN_EINVAL, c->node, "axis out of range");
	int nd = x->ndim - 1 + ix->ndim;
	if (nd > TENSOR_MAX_DIMS)
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "output rank %d too large", nd);
	int64_t shape[TENSOR_MAX_DIMS];
	int k = 0;
	for (int d = 0; d < axis; d++)
		shape[k++] = x->shape[d];
	for (int d = 0; d < ix->ndim; d++)
		shape[k++] = ix->shape[d];
	for (int d = (int)axis + 1; d < x->ndim; d++)
		shape[k++] = x->shape[d];
	set_out(&c->out[0], x->dtype, nd, shape);
	return NN_OK;
}

static enum nn_status run_gather(const struct exec_run_ctx *c, struct nn_err *e)
{
	const struct tensor *x = &c->in[0], *ix = &c->in[1];
	int64_t axis = exec_attr_int(c->node, "axis", 0);
	if (axis < 0)
		axis += x->ndim;
	size_t es = dtype_size(x->dtype);
	int64_t outer = 1, inner = 1, dim = x->shape[axis], ni = exec_numel(ix);
	for (int64_t d = 0; d < axis; d++)
		outer *= x->shape[d];
	for (int64_t d = axis + 1; d < x->ndim; d++)
		inner *= x->shape[d];
	size_t row = (size_t)inner * es;
	char *y = c->out[0].data;
	for (int64_t j = 0; j < ni; j++) {
		int64_t v = ops_int_at(ix, j);
		if (v < 0)
			v += dim;
		if (v < 0 || v >= dim)
			return exec_node_err(e, NN_EINVAL, c->node, "index %lld out of range [%lld, %lld)",
					     (long long)ops_int_at(ix, j), (long long)-dim,
					     (long long)dim);
	}
	for (int64_t o = 0; o < outer; o++)
		for (int64_t j = 0; j < ni; j++) {
			int64_t v = ops_int_at(ix, j);
			if (v < 0)
				v += dim;
			memcpy(y + ((size_t)(o * ni + j)) * row,
			       (const char *)x->data + ((size_t)(o * dim + v)) * row, row);
		}
	return NN_OK;
}

/* Unsqueeze / Squeeze: axes attribute before opset 13, optional constant
 * input from 13. */
static enum nn_status read_axes(struct exec_infer_ctx *c, int64_t *axes, size_t *n, bool *given,
				struct nn_err *e)
{
	*n = 0;
	*given = false;
	if (c->opset < 13) {
		const int64_t *v;
		size_t k;
		if (exec_attr_ints(c->node, "axes", &v, &k)) {
			if (k > TENSOR_MAX_DIMS)
				return exec_node_err(e, NN_EINVAL, c->node, "too many axes");
			memcpy(axes, v, sizeof(int64_t) * k);
			*n = k;
			*given = true;
		}
		return NN_OK;
	}
	if (!has_in(c, 1))
		return NN_OK;
	enum nn_status st = need_const(c, 1, "axes", e);
	if (st != NN_OK)
		return st;
	int64_t k = exec_numel(&c->in[1]);
	if (k > TENSOR_MAX_DIMS)
		return exec_node_err(e, NN_EINVAL, c->node, "too many axes");
	for (int64_t i = 0; i < k; i++)
		axes[i] = ops_int_at(&c->in[1], i);
	*n = (size_t)k;
	*given = true;
	return NN_OK;
}

static enum nn_status infer_unsqueeze(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = want_io(c, 1, 2, e);
	int64_t axes[TENSOR_MAX_DIMS];
	size_t n;
	bool given;
	if (st == NN_OK)
		st = read_axes(c, axes, &n, &given, e);
	if (st != NN_OK)
		return st;
	const struct tensor *x = &c->in[0];
	int64_t r = x->ndim + (int64_t)n;
	if (!given)
		return exec_node_err(e, NN_EINVAL, c->node, "axes missing");
	if (r > TENSOR_MAX_DIMS)
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "output rank too large");
	bool ins[TENSOR_MAX_DIMS] = {false};
	for (size_t i = 0; i < n; i++) {
		int64_t a = axes[i] < 0 ? axes[i] + r : axes[i];
		if (a < 0 || a >= r || ins[a])
			return exec_node_err(e, NN_EINVAL, c->node, "bad or repeated axis %lld",
					     (long long)axes[i]);
		ins[a] = true;
	}
	int64_t shape[TENSOR_MAX_DIMS];
	int k = 0;
	for (int64_t d = 0; d < r; d++)
		shape[d] = ins[d] ? 1 : x->shape[k++];
	set_out(&c->out[0], x->dtype, (int)r, shape);
	return NN_OK;
}

static enum nn_status infer_squeeze(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = want_io(c, 1, 2, e);
	int64_t axes[TENSOR_MAX_DIMS];
	size_t n;
	bool given;
	if (st == NN_OK)
		st = read_axes(c, axes, &n, &given, e);
	if (st != NN_OK)
		return st;
	const struct tensor *x = &c->in[0];
	bool drop[TENSOR_MAX_DIMS] = {false};
	if (!given || n == 0) {
		for (int d = 0; d < x->ndim; d++)
			drop[d] = x->shape[d] == 1;
	} else {
		for (size_t i = 0; i < n; i++) {
			int64_t a = axes[i] < 0 ? axes[i] + x->ndim : axes[i];
			if (a < 0 || a >= x->ndim || x->shape[a] != 1)
				return exec_node_err(e, NN_EINVAL, c->node,
						     "axis %lld is not a dimension of size 1",
						     (long long)axes[i]);
			drop[a] = true;
		}
	}
	int64_t shape[TENSOR_MAX_DIMS];
	int k = 0;
	for (int d = 0; d < x->ndim; d++)
		if (!drop[d])
			shape[k++] = x->shape[d];
	set_out(&c->out[0], x->dtype, k, shape);
	return NN_OK;
}

/* Pad (opset 2: pads/value attributes; 11+: pads and constant_value inputs;
 * 18+: optional axes input). Modes constant, edge and reflect; negative pads
 * crop. pads must be a compile-time constant (PyTorch exports it as one, e.g.
 * the all-zero Pad in front of every AvgPool2d with count_include_pad). */
enum pad_mode { PAD_CONSTANT, PAD_EDGE, PAD_REFLECT };

struct pad_priv {
	enum pad_mode mode;
	int64_t begin[TENSOR_MAX_DIMS];
	float value; /* opset < 11 fill value (float data only) */
};

static enum nn_status pad_mode_of(const Onnx__NodeProto *node, enum pad_mode *mode,
				  struct nn_err *e)
{
	char m[16];
	exec_attr_string(node, "mode", m, sizeof m, "constant");
	if (strcmp(m, "constant") == 0)
		*mode = PAD_CONSTANT;
	else if (strcmp(m, "edge") == 0)
		*mode = PAD_EDGE;
	else if (strcmp(m, "reflect") == 0)
		*mode = PAD_REFLECT;
	else
		return exec_node_err(e, NN_EUNSUPPORTED, node, "mode '%s' is not supported", m);
	return NN_OK;
}

static enum nn_status check_pad(const Onnx__NodeProto *node, int64_t opset, struct nn_err *e)
{
	(void)opset;
	enum pad_mode mode;
	return pad_mode_of(node, &mode, e);
}

static enum nn_status infer_pad(struct exec_infer_ctx *c, struct nn_err *e)
{
	bool attr_form = c->opset < 11;
	enum nn_status st = want_io(c, attr_form ? 1 : 2, attr_form ? 1 : 4, e);
	if (st != NN_OK)
		return st;
	const struct tensor *x = &c->in[0];
	int r = x->ndim;
	struct pad_priv pp = {.value = exec_attr_float(c->node, "value", 0.0f)};
	if ((st = pad_mode_of(c->node, &pp.mode, e)) != NN_OK)
		return st;
	int64_t pads[2 * TENSOR_MAX_DIMS] = {0};
	int64_t axes[TENSOR_MAX_DIMS];
	int64_t n_axes = r;
	for (int d = 0; d < r; d++)
		axes[d] = d;
	if (attr_form) {
		const int64_t *v;
		size_t n;
		if (!exec_attr_ints(c->node, "pads", &v, &n) || n != 2 * (size_t)r)
			return exec_node_err(e, NN_EINVAL, c->node,
					     "attribute pads must hold 2 x rank (%d) values", r);
		for (size_t i = 0; i < n; i++)
			pads[i] = v[i];
		if (x->dtype != DT_FLOAT && pp.value != 0.0f)
			return exec_node_err(e, NN_EUNSUPPORTED, c->node,
					     "a non-zero value on %s data is not supported",
					     dtype_name(x->dtype));
	} else {
		if ((st = need_const(c, 1, "pads", e)) != NN_OK)
			return st;
		if (has_in(c, 3)) {
			if ((st = need_const(c, 3, "axes", e)) != NN_OK)
				return st;
			n_axes = exec_numel(&c->in[3]);
			if (n_axes > r)
				return exec_node_err(e, NN_EINVAL, c->node,
						     "%lld axes for rank %d", (long long)n_axes, r);
			for (int64_t i = 0; i < n_axes; i++) {
				int64_t a = ops_int_at(&c->in[3], i);
				if (a < 0)
					a += r;
				if (a < 0 || a >= r)
					return exec_node_err(e, NN_EINVAL, c->node,
							     "axis %lld out of range for rank %d",
							     (long long)ops_int_at(&c->in[3], i), r);
				for (int64_t j = 0; j < i; j++)
					if (axes[j] == a)
						return exec_node_err(e, NN_EINVAL, c->node,
								     "axis %lld repeated", (long long)a);
				axes[i] = a;
			}
		}
		if (exec_numel(&c->in[1]) != 2 * n_axes)
			return exec_node_err(e, NN_EINVAL, c->node,
					     "pads holds %lld values, 2 x %lld expected",
					     (long long)exec_numel(&c->in[1]), (long long)n_axes);
		for (int64_t i = 0; i < n_axes; i++) {
			pads[axes[i]] = ops_int_at(&c->in[1], i);
			pads[r + axes[i]] = ops_int_at(&c->in[1], n_axes + i);
		}
		if (has_in(c, 2)) {
			if (c->in[2].dtype != x->dtype || exec_numel(&c->in[2]) != 1)
				return exec_node_err(e, NN_EINVAL, c->node,
						     "constant_value must be one %s value",
						     dtype_name(x->dtype));
		}
	}
	int64_t shape[TENSOR_MAX_DIMS];
	for (int d = 0; d < r; d++) {
		int64_t b = pads[d], en = pads[r + d], n = x->shape[d];
		/* pads come from the file: bound them before adding */
		const int64_t cap = (int64_t)1 << 40;
		if (b < -cap || b > cap || en < -cap || en > cap || n + b + en < 0)
			return exec_node_err(e, NN_EINVAL, c->node,
					     "pads %lld, %lld on axis %d of size %lld give a "
					     "negative or too large size",
					     (long long)b, (long long)en, d, (long long)n);
		shape[d] = n + b + en;
		/* edge and reflect read existing values: the axis must have some */
		if (pp.mode != PAD_CONSTANT && shape[d] > 0 && (b > 0 || en > 0) && n == 0)
			return exec_node_err(e, NN_EINVAL, c->node,
					     "%s padding of the empty axis %d",
					     pp.mode == PAD_EDGE ? "edge" : "reflect", d);
		if (pp.mode == PAD_REFLECT && (b >= n || en >= n) && (b > 0 || en > 0))
			return exec_node_err(e, NN_EUNSUPPORTED, c->node,
					     "reflect pads %lld, %lld on axis %d of size %lld: "
					     "pads must be smaller than the axis",
					     (long long)b, (long long)en, d, (long long)n);
		pp.begin[d] = b;
	}
	struct pad_priv *priv = malloc(sizeof *priv);
	if (!priv)
		return exec_node_err(e, NN_ENOMEM, c->node, "out of memory");
	*priv = pp;
	c->priv = priv;
	set_out(&c->out[0], x->dtype, r, shape);
	return NN_OK;
}

/* Input index read for output index o on an axis of size n that starts
 * `begin` elements into the output; -1 = the constant fill. */
static int64_t pad_src(int64_t o, int64_t begin, int64_t n, enum pad_mode mode)
{
	int64_t i = o - begin;
	if (i >= 0 && i < n)
		return i;
	if (mode == PAD_CONSTANT)
		return -1;
	if (mode == PAD_EDGE)
		return i < 0 ? 0 : n - 1;
	/* reflect: infer guaranteed the pads are smaller than n, so one fold */
	return i < 0 ? -i : 2 * (n - 1) - i;
}

static enum nn_status run_pad(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const struct pad_priv *pp = c->priv;
	const struct tensor *x = &c->in[0];
	struct tensor *y = &c->out[0];
	size_t es = dtype_size(x->dtype);
	int r = y->ndim;
	int64_t total = exec_numel(y);
	if (total == 0)
		return NN_OK;
	unsigned char fill[16] = {0};
	if (run_has_in(c, 2) && c->in[2].data)
		memcpy(fill, c->in[2].data, es);
	else if (x->dtype == DT_FLOAT)
		memcpy(fill, &pp->value, sizeof(float));
	/* all-zero pads (PyTorch's AvgPool2d export): one copy */
	bool same = true;
	for (int d = 0; d < r && same; d++)
		same = pp->begin[d] == 0 && y->shape[d] == x->shape[d];
	if (same) {
		if (y->data != x->data)
			memmove(y->data, x->data, (size_t)total * es);
		return NN_OK;
	}
	int64_t xstride[TENSOR_MAX_DIMS];
	int64_t s = 1;
	for (int d = r - 1; d >= 0; d--) {
		xstride[d] = s;
		s *= x->shape[d];
	}
	int64_t w = y->shape[r - 1], nx = x->shape[r - 1], b = pp->begin[r - 1];
	int64_t idx[TENSOR_MAX_DIMS] = {0}; /* odometer over the output's outer axes */
	const unsigned char *xd = x->data;
	unsigned char *yd = y->data;
	for (int64_t row = 0; row < total / w; row++) {
		int64_t base = 0;
		bool in_range = true;
		for (int d = 0; d < r - 1; d++) {
			int64_t si = pad_src(idx[d], pp->begin[d], x->shape[d], pp->mode);
			if (si < 0) {
				in_range = false;
				break;
			}
			base += si * xstride[d];
		}
		unsigned char *yr = yd + (size_t)(row * w) * es;
		/* [lo, hi): the outputs that read x[o - b] in order: one memcpy */
		int64_t lo = b > 0 ? b : 0, hi = b + nx < w ? b + nx : w;
		if (!in_range || hi <= lo)
			lo = hi = w;
		for (int64_t o = 0; o < w; o++) {
			if (o == lo) {
				memcpy(yr + (size_t)o * es, xd + (size_t)(base + lo - b) * es,
				       (size_t)(hi - lo) * es);
				o = hi - 1;
				continue;
			}
			int64_t si = in_range ? pad_src(o, b, nx, pp->mode) : -1;
			memcpy(yr + (size_t)o * es, si < 0 ? fill : xd + (size_t)(base + si) * es, es);
		}
		for (int d = r - 2; d >= 0; d--) {
			if (++idx[d] < y->shape[d])
				break;
			idx[d] = 0;
		}
	}
	return NN_OK;
}

static enum nn_status infer_copy_like(struct exec_infer_ctx *c, struct nn_err *e)
{
	const char *op = c->node->op_type;
	if (strcmp(op, "Flatten") == 0)
		return infer_flatten(c, e);
	if (strcmp(op, "Reshape") == 0)
		return infer_reshape(c, e);
	if (strcmp(op, "Unsqueeze") == 0)
		return infer_unsqueeze(c, e);
	if (strcmp(op, "Squeeze") == 0)
		return infer_squeeze(c, e);
	return infer_identity(c, e);
}

const struct exec_op exec_ops_shape[] = {
	{"", "Flatten", NULL, infer_copy_like, run_copy, NULL},
	{"", "Reshape", NULL, infer_copy_like, run_copy, NULL},
	{"", "Unsqueeze", NULL, infer_copy_like, run_copy, NULL},
	{"", "Squeeze", NULL, infer_copy_like, run_copy, NULL},
	{"", "Identity", NULL, infer_copy_like, run_copy, NULL},
	{"", "Dropout", NULL, infer_dropout, run_dropout, NULL},
	{"", "Transpose", NULL, infer_transpose, run_transpose, NULL},
	{"", "Concat", NULL, infer_concat, run_concat, NULL},
	{"", "Constant", check_constant, infer_constant, run_constant, free_tensor_priv},
	{"", "Shape", NULL, infer_shape, run_shape, NULL},
	{"", "Gather", NULL, infer_gather, run_gather, NULL},
	{"", "Pad", check_pad, infer_pad, run_pad, NULL},
};
const size_t exec_ops_shape_count = sizeof exec_ops_shape / sizeof exec_ops_shape[0];
