/* ops_basic: dense float32 operators and shape plumbing (see ops_basic.h).
 * ONNX semantics per operator and opset; every kernel writes only its
 * planned output buffers and never allocates. */
#include "ops_basic.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "exec_op.h"
#include "gemm.h"

/* ---- shared helpers ---- */

bool ops_broadcast_shape(const struct tensor *a, const struct tensor *b, struct tensor *out)
{
	int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
	int64_t shape[TENSOR_MAX_DIMS];
	for (int i = 0; i < nd; i++) {
		int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
		int64_t da = ia >= 0 ? a->shape[ia] : 1;
		int64_t db = ib >= 0 ? b->shape[ib] : 1;
		if (da == db || db == 1)
			shape[i] = da;
		else if (da == 1)
			shape[i] = db;
		else
			return false;
	}
	out->ndim = nd;
	memcpy(out->shape, shape, sizeof(int64_t) * (size_t)nd);
	return true;
}

int64_t ops_int_at(const struct tensor *t, int64_t i)
{
	switch (t->dtype) {
	case DT_INT64:
		return ((const int64_t *)t->data)[i];
	case DT_INT32:
		return ((const int32_t *)t->data)[i];
	case DT_INT16:
		return ((const int16_t *)t->data)[i];
	case DT_INT8:
		return ((const int8_t *)t->data)[i];
	case DT_UINT8:
	case DT_BOOL:
		return ((const uint8_t *)t->data)[i];
	case DT_UINT16:
		return ((const uint16_t *)t->data)[i];
	case DT_UINT32:
		return ((const uint32_t *)t->data)[i];
	case DT_UINT64:
		return (int64_t)((const uint64_t *)t->data)[i];
	default:
		return 0;
	}
}

static bool has_in(const struct exec_infer_ctx *c, size_t k)
{
	return k < c->n_in && c->in[k].dtype != DT_UNDEFINED;
}

static bool run_has_in(const struct exec_run_ctx *c, size_t k)
{
	return k < c->n_in && c->in[k].dtype != DT_UNDEFINED;
}

/* The first `need` inputs present, at most `max`, at least one output. */
static enum nn_status want_io(const struct exec_infer_ctx *c, size_t need, size_t max,
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

static enum nn_status want_dtype(const struct exec_infer_ctx *c, size_t k, enum dtype dt,
				 struct nn_err *e)
{
	if (c->in[k].dtype != dt)
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "input %zu has dtype %s (%s expected)",
				     k, dtype_name(c->in[k].dtype), dtype_name(dt));
	return NN_OK;
}

static void set_out(struct tensor *o, enum dtype dt, int ndim, const int64_t *shape)
{
	memset(o, 0, sizeof *o);
	o->dtype = dt;
	o->ndim = ndim;
	if (ndim > 0)
		memcpy(o->shape, shape, sizeof(int64_t) * (size_t)ndim);
}

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

/* ---- element-wise binary ops with broadcasting ---- */

enum binop { B_ADD, B_SUB, B_MUL, B_DIV };

static enum binop binop_of(const char *op)
{
	return op[0] == 'A' ? B_ADD : op[0] == 'S' ? B_SUB : op[0] == 'M' ? B_MUL : B_DIV;
}

static bool bin_dtype_ok(enum dtype dt)
{
	switch (dt) {
	case DT_FLOAT:
	case DT_DOUBLE:
	case DT_INT8:
	case DT_UINT8:
	case DT_INT16:
	case DT_UINT16:
	case DT_INT32:
	case DT_UINT32:
	case DT_INT64:
	case DT_UINT64:
		return true;
	default:
		return false;
	}
}

static enum nn_status infer_binary(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = want_io(c, 2, 2, e);
	if (st != NN_OK)
		return st;
	enum dtype dt = c->in[0].dtype;
	if (!bin_dtype_ok(dt))
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "dtype %s is not supported",
				     dtype_name(dt));
	if (c->in[1].dtype != dt)
		return exec_node_err(e, NN_EINVAL, c->node, "inputs have dtypes %s and %s",
				     dtype_name(dt), dtype_name(c->in[1].dtype));
	struct tensor o = {0};
	if (!ops_broadcast_shape(&c->in[0], &c->in[1], &o))
		return exec_node_err(e, NN_EINVAL, c->node, "input shapes do not broadcast");
	set_out(&c->out[0], dt, o.ndim, o.shape);
	return NN_OK;
}

#define DEF_BIN(NAME, T, DIVEXPR)                                                               \
	static void NAME(enum binop op, const T *a, ptrdiff_t sa, const T *b, ptrdiff_t sb,     \
			 T *y, int64_t n)                                                       \
	{                                                                                       \
		switch (op) {                                                                   \
		case B_ADD:                                                                     \
			for (int64_t i = 0; i < n; i++)                                         \
				y[i] = a[i * sa] + b[i * sb];                                   \
			break;                                                                  \
		case B_SUB:                                                                     \
			for (int64_t i = 0; i < n; i++)                                         \
				y[i] = a[i * sa] - b[i * sb];                                   \
			break;                                                                  \
		case B_MUL:                                                                     \
			for (int64_t i = 0; i < n; i++)                                         \
				y[i] = a[i * sa] * b[i * sb];                                   \
			break;                                                                  \
		case B_DIV:                                                                     \
			for (int64_t i = 0; i < n; i++) {                                       \
				T x = a[i * sa], d = b[i * sb];                                 \
				y[i] = DIVEXPR;                                                 \
			}                                                                       \
			break;                                                                  \
		}                                                                               \
	}

DEF_BIN(bin_f32, float, x / d)
/* integer division by zero has no ONNX result; 0 keeps it defined */
DEF_BIN(bin_i64, int64_t, d == 0 ? 0 : (d == -1 ? (int64_t)(0 - (uint64_t)x) : x / d))
DEF_BIN(bin_i32, int32_t, d == 0 ? 0 : (d == -1 ? (int32_t)(0 - (uint32_t)x) : x / d))
DEF_BIN(bin_f64, double, x / d)
DEF_BIN(bin_i8, int8_t, d == 0 ? 0 : (int8_t)(x / d))
DEF_BIN(bin_u8, uint8_t, d == 0 ? 0 : (uint8_t)(x / d))
DEF_BIN(bin_i16, int16_t, d == 0 ? 0 : (int16_t)(x / d))
DEF_BIN(bin_u16, uint16_t, d == 0 ? 0 : (uint16_t)(x / d))
DEF_BIN(bin_u32, uint32_t, d == 0 ? 0 : x / d)
DEF_BIN(bin_u64, uint64_t, d == 0 ? 0 : x / d)

static void bin_any(enum dtype dt, enum binop op, const void *a, ptrdiff_t sa, const void *b,
		    ptrdiff_t sb, void *y, int64_t n)
{
	switch (dt) {
	case DT_FLOAT:
		bin_f32(op, a, sa, b, sb, y, n);
		break;
	case DT_INT64:
		bin_i64(op, a, sa, b, sb, y, n);
		break;
	case DT_INT32:
		bin_i32(op, a, sa, b, sb, y, n);
		break;
	case DT_DOUBLE:
		bin_f64(op, a, sa, b, sb, y, n);
		break;
	case DT_INT8:
		bin_i8(op, a, sa, b, sb, y, n);
		break;
	case DT_UINT8:
		bin_u8(op, a, sa, b, sb, y, n);
		break;
	case DT_INT16:
		bin_i16(op, a, sa, b, sb, y, n);
		break;
	case DT_UINT16:
		bin_u16(op, a, sa, b, sb, y, n);
		break;
	case DT_UINT32:
		bin_u32(op, a, sa, b, sb, y, n);
		break;
	default:
		bin_u64(op, a, sa, b, sb, y, n);
		break;
	}
}

/* Element strides of t broadcast to y's shape (0 on broadcast dims). */
static void bcast_strides(const struct tensor *t, const struct tensor *y, int64_t *st)
{
	int64_t s = 1;
	for (int i = y->ndim - 1; i >= 0; i--) {
		int it = i - (y->ndim - t->ndim);
		int64_t d = it >= 0 ? t->shape[it] : 1;
		st[i] = d == 1 ? 0 : s;
		s *= d;
	}
}

static enum nn_status run_binary(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const struct tensor *a = &c->in[0], *b = &c->in[1];
	const struct tensor *y = &c->out[0];
	enum binop op = binop_of(c->node->op_type);
	enum dtype dt = y->dtype;
	size_t es = dtype_size(dt);
	int64_t n = exec_numel(y);
	if (n == 0)
		return NN_OK;
	int64_t na = exec_numel(a), nb = exec_numel(b);
	if (na == n && nb == n) {
		bin_any(dt, op, a->data, 1, b->data, 1, y->data, n);
		return NN_OK;
	}
	if (nb == 1 && na == n) {
		bin_any(dt, op, a->data, 1, b->data, 0, y->data, n);
		return NN_OK;
	}
	if (na == 1 && nb == n) {
		bin_any(dt, op, a->data, 0, b->data, 1, y->data, n);
		return NN_OK;
	}
	int64_t sa[TENSOR_MAX_DIMS], sb[TENSOR_MAX_DIMS], idx[TENSOR_MAX_DIMS] = {0};
	bcast_strides(a, y, sa);
	bcast_strides(b, y, sb);
	int nd = y->ndim;
	int64_t inner = y->shape[nd - 1];
	int64_t outer = n / inner;
	int64_t oa = 0, ob = 0;
	for (int64_t o = 0; o < outer; o++) {
		bin_any(dt, op, (const char *)a->data + oa * (int64_t)es, sa[nd - 1],
			(const char *)b->data + ob * (int64_t)es, sb[nd - 1],
			(char *)y->data + o * inner * (int64_t)es, inner);
		for (int d = nd - 2; d >= 0; d--) {
			idx[d]++;
			oa += sa[d];
			ob += sb[d];
			if (idx[d] < y->shape[d])
				break;
			oa -= sa[d] * idx[d];
			ob -= sb[d] * idx[d];
			idx[d] = 0;
		}
	}
	return NN_OK;
}

/* ---- element-wise unary float ops ---- */

static enum nn_status infer_unary(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = want_io(c, 1, 1, e);
	if (st == NN_OK)
		st = want_dtype(c, 0, DT_FLOAT, e);
	if (st != NN_OK)
		return st;
	set_out(&c->out[0], DT_FLOAT, c->in[0].ndim, c->in[0].shape);
	return NN_OK;
}

static enum nn_status run_relu(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const float *x = c->in[0].data;
	float *y = c->out[0].data;
	int64_t n = exec_numel(&c->out[0]);
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i] > 0.0f ? x[i] : 0.0f;
	return NN_OK;
}

static enum nn_status run_leaky_relu(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const float *x = c->in[0].data;
	float *y = c->out[0].data;
	float alpha = exec_attr_float(c->node, "alpha", 0.01f);
	int64_t n = exec_numel(&c->out[0]);
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i] >= 0.0f ? x[i] : alpha * x[i];
	return NN_OK;
}

static enum nn_status run_sigmoid(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const float *x = c->in[0].data;
	float *y = c->out[0].data;
	int64_t n = exec_numel(&c->out[0]);
	for (int64_t i = 0; i < n; i++)
		y[i] = 1.0f / (1.0f + expf(-x[i]));
	return NN_OK;
}

static enum nn_status run_tanh(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const float *x = c->in[0].data;
	float *y = c->out[0].data;
	int64_t n = exec_numel(&c->out[0]);
	for (int64_t i = 0; i < n; i++)
		y[i] = tanhf(x[i]);
	return NN_OK;
}

static enum nn_status run_erf(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const float *x = c->in[0].data;
	float *y = c->out[0].data;
	int64_t n = exec_numel(&c->out[0]);
	for (int64_t i = 0; i < n; i++)
		y[i] = erff(x[i]);
	return NN_OK;
}

static enum nn_status check_gelu(const Onnx__NodeProto *node, int64_t opset, struct nn_err *e)
{
	(void)opset;
	char ap[16];
	exec_attr_string(node, "approximate", ap, sizeof ap, "none");
	if (strcmp(ap, "none") != 0 && strcmp(ap, "tanh") != 0)
		return exec_node_err(e, NN_EUNSUPPORTED, node, "approximate '%s' is not supported",
				     ap);
	return NN_OK;
}

static enum nn_status run_gelu(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const float *x = c->in[0].data;
	float *y = c->out[0].data;
	int64_t n = exec_numel(&c->out[0]);
	char ap[16];
	exec_attr_string(c->node, "approximate", ap, sizeof ap, "none");
	if (strcmp(ap, "tanh") == 0) {
		const float k = 0.7978845608028654f; /* sqrt(2/pi) */
		for (int64_t i = 0; i < n; i++) {
			float v = x[i];
			y[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
		}
	} else {
		for (int64_t i = 0; i < n; i++)
			y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
	}
	return NN_OK;
}

static enum nn_status run_hard_sigmoid(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const float *x = c->in[0].data;
	float *y = c->out[0].data;
	float alpha = exec_attr_float(c->node, "alpha", 0.2f);
	float beta = exec_attr_float(c->node, "beta", 0.5f);
	int64_t n = exec_numel(&c->out[0]);
	for (int64_t i = 0; i < n; i++)
		y[i] = fmaxf(0.0f, fminf(1.0f, alpha * x[i] + beta));
	return NN_OK;
}

static enum nn_status run_hard_swish(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const float *x = c->in[0].data;
	float *y = c->out[0].data;
	int64_t n = exec_numel(&c->out[0]);
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i] * fmaxf(0.0f, fminf(1.0f, x[i] / 6.0f + 0.5f));
	return NN_OK;
}

static bool clip_int_dtype(enum dtype dt)
{
	return dt == DT_INT8 || dt == DT_UINT8 || dt == DT_INT16 || dt == DT_UINT16 ||
	       dt == DT_INT32 || dt == DT_UINT32 || dt == DT_INT64;
}

/* Integer Clip (opset 12+): bounds default to the dtype's range. */
static void clip_int(const struct exec_run_ctx *c)
{
	const struct tensor *x = &c->in[0];
	int64_t lo = INT64_MIN, hi = INT64_MAX;
	if (run_has_in(c, 1))
		lo = ops_int_at(&c->in[1], 0);
	if (run_has_in(c, 2))
		hi = ops_int_at(&c->in[2], 0);
	int64_t n = exec_numel(x);
	for (int64_t i = 0; i < n; i++) {
		int64_t v = ops_int_at(x, i);
		v = v < lo ? lo : v;
		v = v > hi ? hi : v;
		switch (x->dtype) {
		case DT_INT8:
			((int8_t *)c->out[0].data)[i] = (int8_t)v;
			break;
		case DT_UINT8:
			((uint8_t *)c->out[0].data)[i] = (uint8_t)v;
			break;
		case DT_INT16:
			((int16_t *)c->out[0].data)[i] = (int16_t)v;
			break;
		case DT_UINT16:
			((uint16_t *)c->out[0].data)[i] = (uint16_t)v;
			break;
		case DT_INT32:
			((int32_t *)c->out[0].data)[i] = (int32_t)v;
			break;
		case DT_UINT32:
			((uint32_t *)c->out[0].data)[i] = (uint32_t)v;
			break;
		default:
			((int64_t *)c->out[0].data)[i] = v;
			break;
		}
	}
}

/* Clip: min/max attributes before opset 11, optional scalar inputs from 11. */
static enum nn_status infer_clip(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = want_io(c, 1, 3, e);
	if (st != NN_OK)
		return st;
	enum dtype dt = c->in[0].dtype;
	if (dt != DT_FLOAT && !clip_int_dtype(dt))
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "dtype %s is not supported",
				     dtype_name(dt));
	for (size_t k = 1; k < 3; k++) {
		if (!has_in(c, k))
			continue;
		if (c->in[k].dtype != dt || exec_numel(&c->in[k]) != 1)
			return exec_node_err(e, NN_EINVAL, c->node,
					     "input %zu must be a %s scalar", k, dtype_name(dt));
	}
	set_out(&c->out[0], dt, c->in[0].ndim, c->in[0].shape);
	return NN_OK;
}

static enum nn_status run_clip(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	if (c->in[0].dtype != DT_FLOAT) {
		clip_int(c);
		return NN_OK;
	}
	float lo = -FLT_MAX, hi = FLT_MAX;
	if (c->opset < 11) {
		lo = exec_attr_float(c->node, "min", -FLT_MAX);
		hi = exec_attr_float(c->node, "max", FLT_MAX);
	} else {
		lo = -INFINITY, hi = INFINITY; /* absent bound: no clipping, even of inf */
		if (run_has_in(c, 1))
			lo = *(const float *)c->in[1].data;
		if (run_has_in(c, 2))
			hi = *(const float *)c->in[2].data;
	}
	const float *x = c->in[0].data;
	float *y = c->out[0].data;
	int64_t n = exec_numel(&c->out[0]);
	for (int64_t i = 0; i < n; i++) {
		float v = x[i] < lo ? lo : x[i];
		y[i] = v > hi ? hi : v;
	}
	return NN_OK;
}

/* ---- Softmax / LogSoftmax ---- */

struct softmax_geom {
	int64_t outer, n, inner;
};

static enum nn_status infer_softmax(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = infer_unary(c, e);
	if (st != NN_OK)
		return st;
	int64_t r = c->in[0].ndim;
	int64_t axis = exec_attr_int(c->node, "axis", c->opset >= 13 ? -1 : 1);
	if (axis < 0)
		axis += r;
	if (axis < 0 || axis > r || (c->opset >= 13 && axis >= r) || (r == 0 && axis != 0))
		return exec_node_err(e, NN_EINVAL, c->node, "axis out of range for rank %lld",
				     (long long)r);
	struct softmax_geom *g = malloc(sizeof *g);
	if (!g)
		return exec_node_err(e, NN_ENOMEM, c->node, "out of memory");
	g->outer = 1, g->n = 1, g->inner = 1;
	for (int64_t d = 0; d < r; d++) {
		if (d < axis)
			g->outer *= c->in[0].shape[d];
		else if (d == axis || c->opset < 13)
			g->n *= c->in[0].shape[d]; /* < 13: coerced to 2-D at axis */
		else
			g->inner *= c->in[0].shape[d];
	}
	c->priv = g;
	return NN_OK;
}

static enum nn_status run_softmax(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const struct softmax_geom *g = c->priv;
	bool log_form = strcmp(c->node->op_type, "LogSoftmax") == 0;
	const float *x = c->in[0].data;
	float *y = c->out[0].data;
	if (g->n == 0)
		return NN_OK;
	for (int64_t o = 0; o < g->outer; o++) {
		for (int64_t in = 0; in < g->inner; in++) {
			const float *xr = x + o * g->n * g->inner + in;
			float *yr = y + o * g->n * g->inner + in;
			int64_t s = g->inner;
			float mx = -INFINITY;
			for (int64_t i = 0; i < g->n; i++)
				mx = fmaxf(mx, xr[i * s]);
			float sum = 0.0f;
			if (log_form) {
				for (int64_t i = 0; i < g->n; i++)
					sum += expf(xr[i * s] - mx);
				float ls = logf(sum);
				for (int64_t i = 0; i < g->n; i++)
					yr[i * s] = xr[i * s] - mx - ls;
			} else {
				for (int64_t i = 0; i < g->n; i++) {
					float v = expf(xr[i * s] - mx);
					yr[i * s] = v;
					sum += v;
				}
				float inv = 1.0f / sum;
				for (int64_t i = 0; i < g->n; i++)
					yr[i * s] *= inv;
			}
		}
	}
	return NN_OK;
}

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

const struct exec_op exec_ops_basic[] = {
	{"", "Gemm", NULL, infer_gemm, run_gemm, free_gemm},
	{"", "MatMul", NULL, infer_matmul, run_matmul, free_matmul},
	{"", "Add", NULL, infer_binary, run_binary, NULL},
	{"", "Sub", NULL, infer_binary, run_binary, NULL},
	{"", "Mul", NULL, infer_binary, run_binary, NULL},
	{"", "Div", NULL, infer_binary, run_binary, NULL},
	{"", "Relu", NULL, infer_unary, run_relu, NULL},
	{"", "LeakyRelu", NULL, infer_unary, run_leaky_relu, NULL},
	{"", "Sigmoid", NULL, infer_unary, run_sigmoid, NULL},
	{"", "Tanh", NULL, infer_unary, run_tanh, NULL},
	{"", "Erf", NULL, infer_unary, run_erf, NULL},
	{"", "Gelu", check_gelu, infer_unary, run_gelu, NULL},
	{"", "HardSigmoid", NULL, infer_unary, run_hard_sigmoid, NULL},
	{"", "HardSwish", NULL, infer_unary, run_hard_swish, NULL},
	{"", "Clip", NULL, infer_clip, run_clip, NULL},
	{"", "Softmax", NULL, infer_softmax, run_softmax, NULL},
	{"", "LogSoftmax", NULL, infer_softmax, run_softmax, NULL},
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
};
const size_t exec_ops_basic_count = sizeof exec_ops_basic / sizeof exec_ops_basic[0];
