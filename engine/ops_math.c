/* ops_math: element-wise float32/integer operators (see ops_math.h).
 * ONNX semantics per operator and opset; every kernel writes only its
 * planned output buffers and never allocates. */
#include "ops_math.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "exec_op.h"
#include "ops_util.h"

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
	ops_erf(x, y, n);
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
		ops_gelu(x, y, n);
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

/* ---- Exp, Log, Round (float32) ---- */

static enum nn_status run_exp(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const float *x = c->in[0].data;
	float *y = c->out[0].data;
	int64_t n = exec_numel(&c->out[0]);
	for (int64_t i = 0; i < n; i++)
		y[i] = expf(x[i]);
	return NN_OK;
}

static enum nn_status run_log(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const float *x = c->in[0].data;
	float *y = c->out[0].data;
	int64_t n = exec_numel(&c->out[0]);
	for (int64_t i = 0; i < n; i++)
		y[i] = logf(x[i]);
	return NN_OK;
}

/* ONNX Round: halves to even, which rintf does in the default rounding mode
 * (the executor never changes it). */
static enum nn_status run_round(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const float *x = c->in[0].data;
	float *y = c->out[0].data;
	int64_t n = exec_numel(&c->out[0]);
	for (int64_t i = 0; i < n; i++)
		y[i] = rintf(x[i]);
	return NN_OK;
}

/* ---- Max / Min (variadic, multidirectional broadcasting) ---- */

static bool minmax_dtype_ok(enum dtype dt)
{
	return dt == DT_FLOAT || dt == DT_DOUBLE || dt == DT_INT32 || dt == DT_INT64;
}

static enum nn_status infer_minmax(struct exec_infer_ctx *c, struct nn_err *e)
{
	if (c->n_in < 1 || c->n_out < 1)
		return exec_node_err(e, NN_EINVAL, c->node, "takes at least 1 input and 1 output");
	enum dtype dt = c->in[0].dtype;
	if (!minmax_dtype_ok(dt))
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "dtype %s is not supported",
				     dtype_name(dt));
	struct tensor o = c->in[0];
	for (size_t k = 1; k < c->n_in; k++) {
		if (c->in[k].dtype != dt)
			return exec_node_err(e, NN_EINVAL, c->node, "inputs have dtypes %s and %s",
					     dtype_name(dt), dtype_name(c->in[k].dtype));
		struct tensor b = {0};
		if (!ops_broadcast_shape(&o, &c->in[k], &b))
			return exec_node_err(e, NN_EINVAL, c->node, "input shapes do not broadcast");
		o.ndim = b.ndim;
		memcpy(o.shape, b.shape, sizeof o.shape);
	}
	set_out(&c->out[0], dt, o.ndim, o.shape);
	return NN_OK;
}

/* NaN wins (numpy's maximum/minimum, which ONNX's reference uses). */
#define MM_F(is_max, a, b) ((a) != (a) ? (a) : (b) != (b) ? (b) : (is_max) ? ((a) > (b) ? (a) : (b)) : ((a) < (b) ? (a) : (b)))

static void minmax_step(enum dtype dt, bool is_max, bool first, const void *a, int64_t ia,
			void *y, int64_t iy)
{
	switch (dt) {
	case DT_FLOAT: {
		float v = ((const float *)a)[ia], *r = (float *)y + iy;
		*r = first ? v : MM_F(is_max, *r, v);
		break;
	}
	case DT_DOUBLE: {
		double v = ((const double *)a)[ia], *r = (double *)y + iy;
		*r = first ? v : MM_F(is_max, *r, v);
		break;
	}
	case DT_INT32: {
		int32_t v = ((const int32_t *)a)[ia], *r = (int32_t *)y + iy;
		*r = first ? v : is_max ? (*r > v ? *r : v) : (*r < v ? *r : v);
		break;
	}
	default: {
		int64_t v = ((const int64_t *)a)[ia], *r = (int64_t *)y + iy;
		*r = first ? v : is_max ? (*r > v ? *r : v) : (*r < v ? *r : v);
		break;
	}
	}
}

static enum nn_status run_minmax(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const struct tensor *y = &c->out[0];
	bool is_max = strcmp(c->node->op_type, "Max") == 0;
	int64_t n = exec_numel(y);
	for (size_t k = 0; k < c->n_in && n > 0; k++) {
		const struct tensor *a = &c->in[k];
		int64_t sa[TENSOR_MAX_DIMS], idx[TENSOR_MAX_DIMS] = {0}, off = 0;
		bcast_strides(a, y, sa);
		for (int64_t i = 0; i < n; i++) {
			minmax_step(y->dtype, is_max, k == 0, a->data, off, y->data, i);
			for (int d = y->ndim - 1; d >= 0; d--) {
				idx[d]++;
				off += sa[d];
				if (idx[d] < y->shape[d])
					break;
				off -= sa[d] * idx[d];
				idx[d] = 0;
			}
		}
	}
	return NN_OK;
}

/* ---- Cast ---- */

static bool cast_dtype_ok(enum dtype dt)
{
	return dt == DT_BOOL || bin_dtype_ok(dt);
}

static enum nn_status infer_cast(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = want_io(c, 1, 1, e);
	if (st != NN_OK)
		return st;
	const Onnx__AttributeProto *a = exec_attr_find(c->node, "to");
	if (!a)
		return exec_node_err(e, NN_EINVAL, c->node, "attribute 'to' is required");
	enum dtype to = (enum dtype)a->i;
	if (!cast_dtype_ok(c->in[0].dtype) || !cast_dtype_ok(to))
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "cast from %s to %s is not supported",
				     dtype_name(c->in[0].dtype), dtype_name(to));
	set_out(&c->out[0], to, c->in[0].ndim, c->in[0].shape);
	return NN_OK;
}

/* Element i of a Cast input: floats as double, integers exactly in one of
 * the two 64-bit forms. */
struct cast_val {
	bool is_float, is_unsigned;
	double f;
	int64_t i;
	uint64_t u;
};

static struct cast_val cast_read(enum dtype dt, const void *p, int64_t i)
{
	struct cast_val v = {0};
	switch (dt) {
	case DT_FLOAT:
		v.is_float = true, v.f = ((const float *)p)[i];
		break;
	case DT_DOUBLE:
		v.is_float = true, v.f = ((const double *)p)[i];
		break;
	case DT_UINT64:
		v.is_unsigned = true, v.u = ((const uint64_t *)p)[i];
		break;
	default: {
		struct tensor t = {0};
		t.dtype = dt;
		t.data = (void *)p;
		v.i = ops_int_at(&t, i);
		break;
	}
	}
	return v;
}

/* Out-of-range values have no ONNX result; they saturate (NaN gives 0) so
 * that no input reaches undefined behaviour. */
static int64_t cast_to_i64(struct cast_val v, int64_t lo, int64_t hi)
{
	if (v.is_float) {
		if (v.f != v.f)
			return 0;
		if (v.f <= (double)lo)
			return lo;
		if (v.f >= (double)hi)
			return hi;
		return (int64_t)v.f;
	}
	if (v.is_unsigned)
		return v.u > (uint64_t)hi ? hi : (int64_t)v.u;
	return v.i < lo ? lo : v.i > hi ? hi : v.i;
}

static uint64_t cast_to_u64(struct cast_val v, uint64_t hi)
{
	if (v.is_float) {
		if (v.f != v.f || v.f <= 0.0)
			return 0;
		if (v.f >= (double)hi)
			return hi;
		return (uint64_t)v.f;
	}
	if (v.is_unsigned)
		return v.u > hi ? hi : v.u;
	return v.i < 0 ? 0 : (uint64_t)v.i > hi ? hi : (uint64_t)v.i;
}

static enum nn_status run_cast(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	enum dtype from = c->in[0].dtype, to = c->out[0].dtype;
	const void *x = c->in[0].data;
	void *y = c->out[0].data;
	int64_t n = exec_numel(&c->out[0]);
	for (int64_t i = 0; i < n; i++) {
		struct cast_val v = cast_read(from, x, i);
		double f = v.is_float ? v.f : v.is_unsigned ? (double)v.u : (double)v.i;
		switch (to) {
		case DT_FLOAT:
			((float *)y)[i] = (float)f;
			break;
		case DT_DOUBLE:
			((double *)y)[i] = f;
			break;
		case DT_BOOL:
			((uint8_t *)y)[i] = v.is_float ? v.f != 0.0 : v.is_unsigned ? v.u != 0 : v.i != 0;
			break;
		case DT_INT8:
			((int8_t *)y)[i] = (int8_t)cast_to_i64(v, INT8_MIN, INT8_MAX);
			break;
		case DT_INT16:
			((int16_t *)y)[i] = (int16_t)cast_to_i64(v, INT16_MIN, INT16_MAX);
			break;
		case DT_INT32:
			((int32_t *)y)[i] = (int32_t)cast_to_i64(v, INT32_MIN, INT32_MAX);
			break;
		case DT_INT64:
			/* 2^63 is exact in double; the largest double below it converts */
			((int64_t *)y)[i] = cast_to_i64(v, INT64_MIN, INT64_MAX);
			break;
		case DT_UINT8:
			((uint8_t *)y)[i] = (uint8_t)cast_to_u64(v, UINT8_MAX);
			break;
		case DT_UINT16:
			((uint16_t *)y)[i] = (uint16_t)cast_to_u64(v, UINT16_MAX);
			break;
		case DT_UINT32:
			((uint32_t *)y)[i] = (uint32_t)cast_to_u64(v, UINT32_MAX);
			break;
		default:
			((uint64_t *)y)[i] = cast_to_u64(v, UINT64_MAX);
			break;
		}
	}
	return NN_OK;
}

/* ---- ReduceMax / ReduceMin / ReduceSum / ReduceMean ----
 *
 * Axes come from the "axes" attribute, or from the optional second input
 * from opset 13 (ReduceSum) / 18 (the others), where it must be a
 * compile-time constant (the plan's shapes depend on it). No axes reduce
 * every axis, unless noop_with_empty_axes = 1 (input-axes opsets only),
 * which makes the node an identity. An empty reduction gives 0 (Sum), NaN
 * (Mean), -inf / +inf (Max / Min; the type's min / max for integers). */

enum reduce_kind { R_MAX, R_MIN, R_SUM, R_MEAN };

struct reduce_geom {
	enum reduce_kind kind;
	bool noop;
	int ndim;
	int64_t shape[TENSOR_MAX_DIMS];  /* input */
	int64_t ostride[TENSOR_MAX_DIMS]; /* output element stride per input dim, 0 if reduced */
	int64_t count;                    /* elements per output element */
};

static enum reduce_kind reduce_kind_of(const char *op)
{
	return !strcmp(op, "ReduceMax") ? R_MAX
	       : !strcmp(op, "ReduceMin") ? R_MIN
	       : !strcmp(op, "ReduceSum") ? R_SUM
					  : R_MEAN;
}

static bool reduce_axes_input(enum reduce_kind k, int64_t opset)
{
	return k == R_SUM ? opset >= 13 : opset >= 18;
}

static enum nn_status infer_reduce(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = want_io(c, 1, 2, e);
	if (st != NN_OK)
		return st;
	enum reduce_kind kind = reduce_kind_of(c->node->op_type);
	const struct tensor *x = &c->in[0];
	enum dtype dt = x->dtype;
	bool ok = dt == DT_FLOAT || dt == DT_DOUBLE || (kind != R_MEAN && (dt == DT_INT32 ||
									    dt == DT_INT64));
	if (!ok)
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "dtype %s is not supported",
				     dtype_name(dt));
	int r = x->ndim;
	int64_t keep = exec_attr_int(c->node, "keepdims", 1);
	int64_t noop_empty = exec_attr_int(c->node, "noop_with_empty_axes", 0);
	if ((keep != 0 && keep != 1) || (noop_empty != 0 && noop_empty != 1))
		return exec_node_err(e, NN_EINVAL, c->node,
				     "keepdims and noop_with_empty_axes must be 0 or 1");
	int64_t axes[TENSOR_MAX_DIMS];
	size_t n_axes = 0;
	bool from_input = reduce_axes_input(kind, c->opset);
	if (from_input) {
		if (c->n_in > 2 || (c->n_in == 2 && has_in(c, 1) && c->in[1].dtype != DT_INT64))
			return exec_node_err(e, NN_EINVAL, c->node, "axes must be an int64 tensor");
		if (has_in(c, 1)) {
			const struct tensor *a = &c->in[1];
			if (!a->data)
				return exec_node_err(e, NN_EUNSUPPORTED, c->node,
						     "axes must be a constant (the output shape "
						     "depends on it)");
			if (a->ndim != 1 || a->shape[0] > r)
				return exec_node_err(e, NN_EINVAL, c->node,
						     "axes must be 1-D with at most %d values", r);
			n_axes = (size_t)a->shape[0];
			for (size_t i = 0; i < n_axes; i++)
				axes[i] = ((const int64_t *)a->data)[i];
		}
	} else {
		if (c->n_in > 1)
			return exec_node_err(e, NN_EINVAL, c->node,
					     "takes 1 input before opset %d",
					     kind == R_SUM ? 13 : 18);
		const int64_t *v;
		size_t n;
		if (exec_attr_ints(c->node, "axes", &v, &n)) {
			if (n > (size_t)r)
				return exec_node_err(e, NN_EINVAL, c->node,
						     "axes has %zu values for rank %d", n, r);
			n_axes = n;
			memcpy(axes, v, n * sizeof *v);
		}
		noop_empty = 0;
	}
	struct reduce_geom *g = calloc(1, sizeof *g);
	if (!g)
		return exec_node_err(e, NN_ENOMEM, c->node, "out of memory");
	g->kind = kind;
	g->ndim = r;
	memcpy(g->shape, x->shape, sizeof g->shape);
	bool red[TENSOR_MAX_DIMS] = {false};
	for (size_t i = 0; i < n_axes; i++) {
		int64_t a = axes[i] < 0 ? axes[i] + r : axes[i];
		if (a < 0 || a >= r || red[a]) {
			free(g);
			return exec_node_err(e, NN_EINVAL, c->node,
					     "axis %lld is out of range for rank %d or repeated",
					     (long long)axes[i], r);
		}
		red[a] = true;
	}
	if (n_axes == 0) {
		if (noop_empty) {
			g->noop = true;
			set_out(&c->out[0], dt, r, x->shape);
			c->priv = g;
			return NN_OK;
		}
		for (int d = 0; d < r; d++)
			red[d] = true;
	}
	int64_t oshape[TENSOR_MAX_DIMS];
	int on = 0;
	g->count = 1;
	for (int d = 0; d < r; d++) {
		if (red[d]) {
			g->count *= x->shape[d];
			if (keep)
				oshape[on++] = 1;
		} else {
			oshape[on++] = x->shape[d];
		}
	}
	int64_t s = 1;
	for (int d = r - 1; d >= 0; d--) {
		g->ostride[d] = red[d] ? 0 : s;
		if (!red[d])
			s *= x->shape[d];
	}
	set_out(&c->out[0], dt, on, oshape);
	c->priv = g;
	return NN_OK;
}

#define DEF_REDUCE(NAME, T, LOWEST, HIGHEST, ACC)                                             \
	static void NAME(const struct reduce_geom *g, const T *x, T *y, int64_t nx, int64_t ny) \
	{                                                                                       \
		for (int64_t i = 0; i < ny; i++)                                                \
			y[i] = g->kind == R_MAX ? (LOWEST) : g->kind == R_MIN ? (HIGHEST) : (T)0; \
		int64_t idx[TENSOR_MAX_DIMS] = {0}, o = 0;                                      \
		int last = g->ndim - 1;                                                         \
		for (int64_t i = 0; i < nx; i++) {                                              \
			T v = x[i], *r = y + o;                                                 \
			switch (g->kind) {                                                      \
			case R_MAX:                                                             \
				if (v > *r || v != v)                                           \
					*r = *r != *r ? *r : v;                                 \
				break;                                                          \
			case R_MIN:                                                             \
				if (v < *r || v != v)                                           \
					*r = *r != *r ? *r : v;                                 \
				break;                                                          \
			default:                                                                \
				*r = ACC(*r, v);                                                \
				break;                                                          \
			}                                                                       \
			for (int d = last; d >= 0; d--) {                                       \
				idx[d]++;                                                       \
				o += g->ostride[d];                                             \
				if (idx[d] < g->shape[d])                                       \
					break;                                                  \
				o -= g->ostride[d] * idx[d];                                    \
				idx[d] = 0;                                                     \
			}                                                                       \
		}                                                                               \
		if (g->kind == R_MEAN)                                                          \
			for (int64_t i = 0; i < ny; i++)                                        \
				y[i] = (T)(y[i] / (T)g->count);                                 \
	}

#define ADD_PLAIN(a, b) ((a) + (b))
/* integer sums wrap (no undefined overflow on untrusted data) */
#define ADD_WRAP32(a, b) ((int32_t)((uint32_t)(a) + (uint32_t)(b)))
#define ADD_WRAP64(a, b) ((int64_t)((uint64_t)(a) + (uint64_t)(b)))
DEF_REDUCE(reduce_f32, float, -INFINITY, INFINITY, ADD_PLAIN)
DEF_REDUCE(reduce_f64, double, -INFINITY, INFINITY, ADD_PLAIN)
DEF_REDUCE(reduce_i32, int32_t, INT32_MIN, INT32_MAX, ADD_WRAP32)
DEF_REDUCE(reduce_i64, int64_t, INT64_MIN, INT64_MAX, ADD_WRAP64)

static enum nn_status run_reduce(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const struct reduce_geom *g = c->priv;
	const struct tensor *x = &c->in[0], *y = &c->out[0];
	int64_t nx = exec_numel(x), ny = exec_numel(y);
	if (g->noop) {
		size_t b = (size_t)nx * dtype_size(x->dtype);
		if (b && y->data != x->data)
			memcpy(y->data, x->data, b);
		return NN_OK;
	}
	switch (x->dtype) {
	case DT_FLOAT:
		reduce_f32(g, x->data, y->data, nx, ny);
		break;
	case DT_DOUBLE:
		reduce_f64(g, x->data, y->data, nx, ny);
		break;
	case DT_INT32:
		reduce_i32(g, x->data, y->data, nx, ny);
		break;
	default:
		reduce_i64(g, x->data, y->data, nx, ny);
		break;
	}
	return NN_OK;
}

const struct exec_op exec_ops_math[] = {
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
	{"", "Exp", NULL, infer_unary, run_exp, NULL},
	{"", "Log", NULL, infer_unary, run_log, NULL},
	{"", "Round", NULL, infer_unary, run_round, NULL},
	{"", "Max", NULL, infer_minmax, run_minmax, NULL},
	{"", "Min", NULL, infer_minmax, run_minmax, NULL},
	{"", "Cast", NULL, infer_cast, run_cast, NULL},
	{"", "ReduceMax", NULL, infer_reduce, run_reduce, NULL},
	{"", "ReduceMin", NULL, infer_reduce, run_reduce, NULL},
	{"", "ReduceSum", NULL, infer_reduce, run_reduce, NULL},
	{"", "ReduceMean", NULL, infer_reduce, run_reduce, NULL},
};
const size_t exec_ops_math_count = sizeof exec_ops_math / sizeof exec_ops_math[0];
