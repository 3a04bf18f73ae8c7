/* ops_math: element-wise float32/integer operators (see ops_math.h).
 * ONNX semantics per operator and opset; every kernel writes only its
 * planned output buffers and never allocates. */
#include "ops_math.h"

#include <float.h>
#include <math.h>
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
};
const size_t exec_ops_math_count = sizeof exec_ops_math / sizeof exec_ops_math[0];
