/* ops_quant: quantization operators (see ops_quant.h). */
#include "ops_quant.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "exec_op.h"
#include "ops_util.h"

int32_t ops_quant_round_sat(float x, int32_t lo, int32_t hi)
{
	if (!(x > (float)lo)) /* also NaN -> lo */
		return x != x ? 0 : lo;
	if (x >= (float)hi)
		return hi;
	return (int32_t)rintf(x); /* default rounding mode: to nearest, ties to even */
}

enum nn_status ops_quant_unpack4(const Onnx__TensorProto *tp, const char *what, struct tensor *t,
				 struct nn_err *e)
{
	memset(t, 0, sizeof *t);
	bool sgn = tp->data_type == DT_INT4;
	if (tp->n_dims > TENSOR_MAX_DIMS)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_operator", "",
			       "tensor '%.100s' has %zu dimensions (at most %d)", what, tp->n_dims,
			       TENSOR_MAX_DIMS);
	int64_t numel = 1;
	for (size_t d = 0; d < tp->n_dims; d++)
		if (tp->dims[d] < 0 || __builtin_mul_overflow(numel, tp->dims[d], &numel) ||
		    numel > ((int64_t)1 << 44))
			return err_set(e, NN_EINVAL, "invalid_model", "",
				       "tensor '%.100s' has a bad shape", what);
	bool raw = tp->has_raw_data && tp->raw_data.len > 0;
	size_t want = raw ? ((size_t)numel + 1) / 2 : (size_t)numel;
	size_t have = raw ? tp->raw_data.len : tp->n_int32_data;
	if (have != want)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "4-bit tensor '%.100s' holds %zu %s, its shape needs %zu", what, have,
			       raw ? "bytes" : "values", want);
	uint8_t *buf = malloc(numel ? (size_t)numel : 1);
	if (!buf)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "unpacking tensor '%.100s'", what);
	for (int64_t i = 0; i < numel; i++) {
		unsigned v = raw ? (tp->raw_data.data[i / 2] >> ((i & 1) * 4)) & 15u
				 : (unsigned)tp->int32_data[i] & 15u;
		buf[i] = sgn ? (uint8_t)(int8_t)((int)(v ^ 8u) - 8) : (uint8_t)v;
	}
	t->dtype = sgn ? DT_INT8 : DT_UINT8;
	t->ndim = (int)tp->n_dims;
	for (size_t d = 0; d < tp->n_dims; d++)
		t->shape[d] = tp->dims[d];
	t->data = buf;
	t->owned = true;
	return NN_OK;
}

static bool present(const struct tensor *in, size_t n_in, size_t k)
{
	return k < n_in && in[k].dtype != DT_UNDEFINED;
}

static bool q8(enum dtype dt)
{
	return dt == DT_INT8 || dt == DT_UINT8;
}

/* Per-axis geometry shared by DequantizeLinear and QuantizeLinear:
 * channels == 1 for per-tensor. */
struct qaxis {
	int64_t outer, channels, inner;
	/* Blocked (DequantizeLinear opset 21 block_size > 0): channels is the
	 * length of the blocked axis, blocks its block count; the scale is
	 * [outer][blocks][inner] and element (o, l, i) uses entry
	 * (o * blocks + l / block) * inner + i. block 0 = per tensor / axis. */
	int64_t block, blocks;
};

/* The blocked form's geometry: scale (and zero point) have x's shape with
 * the axis dimension divided by block_size, rounded up (ONNX opset 21). */
static enum nn_status qaxis_blocked(struct exec_infer_ctx *c, int64_t block, struct qaxis *g,
				    struct nn_err *e)
{
	const struct tensor *x = &c->in[0], *s = &c->in[1];
	if (block < 0)
		return exec_node_err(e, NN_EINVAL, c->node, "negative block_size");
	int64_t axis = exec_attr_int(c->node, "axis", 1);
	if (axis < 0)
		axis += x->ndim;
	if (axis < 0 || axis >= x->ndim)
		return exec_node_err(e, NN_EINVAL, c->node, "axis out of range");
	if (s->ndim != x->ndim)
		return exec_node_err(e, NN_EINVAL, c->node,
				     "blocked scale must have the input's rank");
	g->outer = 1, g->inner = 1, g->channels = x->shape[axis], g->block = block;
	g->blocks = (x->shape[axis] + block - 1) / block;
	for (int64_t d = 0; d < x->ndim; d++) {
		int64_t want = d == axis ? g->blocks : x->shape[d];
		if (s->shape[d] != want)
			return exec_node_err(e, NN_EINVAL, c->node,
					     "blocked scale dimension %lld is %lld, expected %lld",
					     (long long)d, (long long)s->shape[d], (long long)want);
		if (d < axis)
			g->outer *= x->shape[d];
		else if (d > axis)
			g->inner *= x->shape[d];
	}
	if (present(c->in, c->n_in, 2)) {
		const struct tensor *z = &c->in[2];
		bool same = z->ndim == s->ndim;
		for (int d = 0; same && d < s->ndim; d++)
			same = z->shape[d] == s->shape[d];
		if (!same)
			return exec_node_err(e, NN_EINVAL, c->node,
					     "zero point and scale differ in shape");
	}
	return NN_OK;
}

static enum nn_status qaxis_infer(struct exec_infer_ctx *c, struct qaxis *g, struct nn_err *e)
{
	const struct tensor *x = &c->in[0], *s = &c->in[1];
	int64_t block = exec_attr_int(c->node, "block_size", 0);
	int64_t ns = exec_numel(s);
	g->outer = exec_numel(x), g->channels = 1, g->inner = 1, g->block = 0, g->blocks = 0;
	if (block != 0) {
		/* Only DequantizeLinear runs the blocked form here. */
		if (strcmp(c->node->op_type, "DequantizeLinear") != 0 || c->opset < 21)
			return exec_node_err(e, NN_EUNSUPPORTED, c->node,
					     "block_size needs DequantizeLinear of opset 21");
		enum nn_status st = qaxis_blocked(c, block, g, e);
		if (st != NN_OK)
			return st;
	} else if (s->ndim == 0 || (s->ndim == 1 && ns == 1)) {
		/* per-tensor */
	} else if (s->ndim == 1) {
		int64_t axis = exec_attr_int(c->node, "axis", 1);
		if (axis < 0)
			axis += x->ndim;
		if (axis < 0 || axis >= x->ndim || x->shape[axis] != ns)
			return exec_node_err(e, NN_EINVAL, c->node,
					     "scale of %lld entries does not match axis %lld",
					     (long long)ns, (long long)axis);
		g->outer = 1;
		for (int64_t d = 0; d < axis; d++)
			g->outer *= x->shape[d];
		g->channels = ns;
		for (int64_t d = axis + 1; d < x->ndim; d++)
			g->inner *= x->shape[d];
	} else {
		return exec_node_err(e, NN_EINVAL, c->node, "scale must be a scalar or 1-D");
	}
	if (present(c->in, c->n_in, 2) && exec_numel(&c->in[2]) != ns)
		return exec_node_err(e, NN_EINVAL, c->node,
				     "zero point and scale differ in size");
	if (s->dtype != DT_FLOAT)
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "scale dtype %s",
				     dtype_name(s->dtype));
	struct qaxis *p = malloc(sizeof *p);
	if (!p)
		return exec_node_err(e, NN_ENOMEM, c->node, "out of memory");
	*p = *g;
	c->priv = p;
	return NN_OK;
}

static enum nn_status io_check(const struct exec_infer_ctx *c, size_t need, size_t max,
			       struct nn_err *e)
{
	if (c->n_in < need || c->n_in > max || c->n_out < 1)
		return exec_node_err(e, NN_EINVAL, c->node, "takes %zu to %zu inputs, has %zu",
				     need, max, c->n_in);
	for (size_t k = 0; k < need; k++)
		if (c->in[k].dtype == DT_UNDEFINED)
			return exec_node_err(e, NN_EINVAL, c->node, "input %zu is required", k);
	return NN_OK;
}

static enum nn_status infer_dequantize(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = io_check(c, 2, 3, e);
	if (st != NN_OK)
		return st;
	enum dtype dt = c->in[0].dtype;
	if (!q8(dt) && dt != DT_INT32)
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "input dtype %s", dtype_name(dt));
	if (present(c->in, c->n_in, 2) && c->in[2].dtype != dt)
		return exec_node_err(e, NN_EINVAL, c->node, "zero point dtype %s differs from %s",
				     dtype_name(c->in[2].dtype), dtype_name(dt));
	struct qaxis g;
	if ((st = qaxis_infer(c, &g, e)) != NN_OK)
		return st;
	struct tensor *o = &c->out[0];
	memset(o, 0, sizeof *o);
	o->dtype = DT_FLOAT;
	o->ndim = c->in[0].ndim;
	memcpy(o->shape, c->in[0].shape, sizeof o->shape);
	return NN_OK;
}

/* (x - zp) * scale per block; x int8/uint8 (4-bit initializers arrive
 * unpacked to one byte per element, see exec_tensor_proto) or int32. */
static void dequantize_blocked(const struct qaxis *g, const struct tensor *x, const float *scale,
			       const struct tensor *zp, float *y)
{
	int64_t i = 0;
	for (int64_t o = 0; o < g->outer; o++)
		for (int64_t l = 0; l < g->channels; l++) {
			int64_t sb = (o * g->blocks + l / g->block) * g->inner;
			for (int64_t k = 0; k < g->inner; k++, i++) {
				int64_t z = zp ? ops_int_at(zp, sb + k) : 0;
				int64_t v;
				if (x->dtype == DT_INT8)
					v = ((const int8_t *)x->data)[i];
				else if (x->dtype == DT_UINT8)
					v = ((const uint8_t *)x->data)[i];
				else
					v = ((const int32_t *)x->data)[i];
				y[i] = (float)(v - z) * scale[sb + k];
			}
		}
}

static enum nn_status run_dequantize(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const struct qaxis *g = c->priv;
	const struct tensor *x = &c->in[0];
	const float *scale = c->in[1].data;
	bool has_zp = present(c->in, c->n_in, 2);
	float *y = c->out[0].data;
	int64_t i = 0;
	if (g->block > 0) {
		dequantize_blocked(g, x, scale, has_zp ? &c->in[2] : NULL, y);
		return NN_OK;
	}
	for (int64_t o = 0; o < g->outer; o++)
		for (int64_t ch = 0; ch < g->channels; ch++) {
			float s = scale[ch];
			int64_t zp = has_zp ? ops_int_at(&c->in[2], ch) : 0;
			if (x->dtype == DT_INT8) {
				const int8_t *xs = (const int8_t *)x->data + i;
				float zf = (float)zp;
				for (int64_t k = 0; k < g->inner; k++)
					y[i + k] = ((float)xs[k] - zf) * s;
			} else if (x->dtype == DT_UINT8) {
				const uint8_t *xs = (const uint8_t *)x->data + i;
				float zf = (float)zp;
				for (int64_t k = 0; k < g->inner; k++)
					y[i + k] = ((float)xs[k] - zf) * s;
			} else {
				const int32_t *xs = (const int32_t *)x->data + i;
				for (int64_t k = 0; k < g->inner; k++)
					y[i + k] = (float)((int64_t)xs[k] - zp) * s;
			}
			i += g->inner;
		}
	return NN_OK;
}

static enum nn_status infer_quantize(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = io_check(c, 2, 3, e);
	if (st != NN_OK)
		return st;
	if (c->in[0].dtype != DT_FLOAT)
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "input dtype %s",
				     dtype_name(c->in[0].dtype));
	enum dtype out = DT_UINT8;
	if (present(c->in, c->n_in, 2)) {
		out = c->in[2].dtype;
		if (!q8(out))
			return exec_node_err(e, NN_EUNSUPPORTED, c->node, "zero point dtype %s",
					     dtype_name(out));
	}
	int64_t od = exec_attr_int(c->node, "output_dtype", 0);
	if (od != 0 && !present(c->in, c->n_in, 2)) {
		if (!q8((enum dtype)od))
			return exec_node_err(e, NN_EUNSUPPORTED, c->node, "output_dtype %lld",
					     (long long)od);
		out = (enum dtype)od;
	}
	struct qaxis g;
	if ((st = qaxis_infer(c, &g, e)) != NN_OK)
		return st;
	struct tensor *o = &c->out[0];
	memset(o, 0, sizeof *o);
	o->dtype = out;
	o->ndim = c->in[0].ndim;
	memcpy(o->shape, c->in[0].shape, sizeof o->shape);
	return NN_OK;
}

static enum nn_status run_quantize(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const struct qaxis *g = c->priv;
	const float *x = c->in[0].data;
	const float *scale = c->in[1].data;
	bool has_zp = present(c->in, c->n_in, 2);
	bool s8 = c->out[0].dtype == DT_INT8;
	int32_t lo = s8 ? -128 : 0, hi = s8 ? 127 : 255;
	int64_t i = 0;
	for (int64_t o = 0; o < g->outer; o++)
		for (int64_t ch = 0; ch < g->channels; ch++) {
			float s = scale[ch];
			int32_t zp = has_zp ? (int32_t)ops_int_at(&c->in[2], ch) : 0;
			for (int64_t k = 0; k < g->inner; k++, i++) {
				float r = rintf(x[i] / s);
				int32_t q = ops_quant_round_sat(r + (float)zp, lo, hi);
				if (s8)
					((int8_t *)c->out[0].data)[i] = (int8_t)q;
				else
					((uint8_t *)c->out[0].data)[i] = (uint8_t)q;
			}
		}
	return NN_OK;
}

static enum nn_status infer_dynq(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = io_check(c, 1, 1, e);
	if (st != NN_OK)
		return st;
	if (c->in[0].dtype != DT_FLOAT)
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "input dtype %s",
				     dtype_name(c->in[0].dtype));
	if (c->n_out != 3)
		return exec_node_err(e, NN_EINVAL, c->node, "has %zu outputs (3 expected)",
				     c->n_out);
	memset(c->out, 0, 3 * sizeof *c->out);
	c->out[0].dtype = DT_UINT8;
	c->out[0].ndim = c->in[0].ndim;
	memcpy(c->out[0].shape, c->in[0].shape, sizeof c->out[0].shape);
	c->out[1].dtype = DT_FLOAT;
	c->out[2].dtype = DT_UINT8;
	return NN_OK;
}

static enum nn_status run_dynq(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const float *x = c->in[0].data;
	int64_t n = exec_numel(&c->in[0]);
	float mn = 0.0f, mx = 0.0f;
	for (int64_t i = 0; i < n; i++) {
		mn = fminf(mn, x[i]);
		mx = fmaxf(mx, x[i]);
	}
	float scale = (mx - mn) / 255.0f;
	uint8_t zp = 0;
	uint8_t *y = c->out[0].data;
	if (scale > 0.0f) {
		zp = (uint8_t)ops_quant_round_sat(rintf(0.0f - mn / scale), 0, 255);
		for (int64_t i = 0; i < n; i++)
			y[i] = (uint8_t)ops_quant_round_sat(rintf(x[i] / scale) + (float)zp, 0, 255);
	} else {
		memset(y, 0, (size_t)n);
	}
	*(float *)c->out[1].data = scale;
	*(uint8_t *)c->out[2].data = zp;
	return NN_OK;
}

/* MatMulInteger: numpy matmul of (A - a_zp) and (B - b_zp) in int32.
 * a_zero_point: scalar or per-row [M]; b_zero_point: scalar or per-column [N]. */
struct mmi_geom {
	int64_t m, k, n, batch;
	int nd;
	int64_t bshape[TENSOR_MAX_DIMS], sa[TENSOR_MAX_DIMS], sb[TENSOR_MAX_DIMS];
	bool a_row, b_col;
};

static void strides_to(const struct tensor *t, const struct tensor *y, int64_t *st)
{
	int64_t s = 1;
	for (int i = y->ndim - 1; i >= 0; i--) {
		int it = i - (y->ndim - t->ndim);
		int64_t d = it >= 0 ? t->shape[it] : 1;
		st[i] = d == 1 ? 0 : s;
		s *= d;
	}
}

static enum nn_status infer_mmi(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = io_check(c, 2, 4, e);
	if (st != NN_OK)
		return st;
	const struct tensor *a = &c->in[0], *b = &c->in[1];
	if (!q8(a->dtype) || !q8(b->dtype))
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "input dtypes %s, %s",
				     dtype_name(a->dtype), dtype_name(b->dtype));
	if (a->ndim < 1 || b->ndim < 1)
		return exec_node_err(e, NN_EINVAL, c->node, "inputs must have rank >= 1");
	struct mmi_geom g = {0};
	g.m = a->ndim == 1 ? 1 : a->shape[a->ndim - 2];
	g.k = a->shape[a->ndim - 1];
	int64_t kb = b->ndim == 1 ? b->shape[0] : b->shape[b->ndim - 2];
	g.n = b->ndim == 1 ? 1 : b->shape[b->ndim - 1];
	if (g.k != kb)
		return exec_node_err(e, NN_EINVAL, c->node, "inner dimensions differ");
	for (size_t k = 2; k < 4; k++) {
		if (!present(c->in, c->n_in, k))
			continue;
		const struct tensor *z = &c->in[k];
		if (z->dtype != c->in[k - 2].dtype)
			return exec_node_err(e, NN_EINVAL, c->node, "zero point %zu dtype %s", k,
					     dtype_name(z->dtype));
		int64_t nz = exec_numel(z), want = k == 2 ? g.m : g.n;
		if (nz == 1 && z->ndim <= 1)
			continue;
		if (z->ndim == 1 && nz == want) {
			if (k == 2)
				g.a_row = true;
			else
				g.b_col = true;
			continue;
		}
		return exec_node_err(e, NN_EUNSUPPORTED, c->node,
				     "zero point %zu must be a scalar or 1-D of %lld", k,
				     (long long)want);
	}
	struct tensor ba = {.ndim = a->ndim > 2 ? a->ndim - 2 : 0};
	struct tensor bb = {.ndim = b->ndim > 2 ? b->ndim - 2 : 0};
	memcpy(ba.shape, a->shape, sizeof(int64_t) * (size_t)ba.ndim);
	memcpy(bb.shape, b->shape, sizeof(int64_t) * (size_t)bb.ndim);
	struct tensor bo = {0};
	if (!ops_broadcast_shape(&ba, &bb, &bo))
		return exec_node_err(e, NN_EINVAL, c->node, "batch dimensions do not broadcast");
	g.nd = bo.ndim;
	g.batch = 1;
	memcpy(g.bshape, bo.shape, sizeof(int64_t) * (size_t)bo.ndim);
	strides_to(&ba, &bo, g.sa);
	strides_to(&bb, &bo, g.sb);
	for (int d = 0; d < bo.ndim; d++)
		if (__builtin_mul_overflow(g.batch, bo.shape[d], &g.batch))
			return exec_node_err(e, NN_EINVAL, c->node, "output too large");
	struct tensor *o = &c->out[0];
	memset(o, 0, sizeof *o);
	o->dtype = DT_INT32;
	for (int d = 0; d < bo.ndim; d++)
		o->shape[o->ndim++] = bo.shape[d];
	if (a->ndim > 1)
		o->shape[o->ndim++] = g.m;
	if (b->ndim > 1)
		o->shape[o->ndim++] = g.n;
	struct mmi_geom *p = malloc(sizeof *p);
	if (!p)
		return exec_node_err(e, NN_ENOMEM, c->node, "out of memory");
	*p = g;
	c->priv = p;
	return NN_OK;
}

static void mmi_one(const struct mmi_geom *g, const struct tensor *a, int64_t ao,
		    const struct tensor *b, int64_t bo, const struct tensor *za,
		    const struct tensor *zb, int32_t *y)
{
	for (int64_t i = 0; i < g->m; i++) {
		int32_t *yr = y + i * g->n;
		for (int64_t j = 0; j < g->n; j++)
			yr[j] = 0;
		int32_t zai = za ? (int32_t)ops_int_at(za, g->a_row ? i : 0) : 0;
		for (int64_t kk = 0; kk < g->k; kk++) {
			int32_t av = (int32_t)ops_int_at(a, ao + i * g->k + kk) - zai;
			if (av == 0)
				continue;
			int64_t brow = bo + kk * g->n;
			if (b->dtype == DT_UINT8) {
				const uint8_t *bp = (const uint8_t *)b->data + brow;
				if (!zb)
					for (int64_t j = 0; j < g->n; j++)
						yr[j] += av * (int32_t)bp[j];
				else
					for (int64_t j = 0; j < g->n; j++)
						yr[j] += av * ((int32_t)bp[j] -
							       (int32_t)ops_int_at(zb, g->b_col ? j : 0));
			} else {
				const int8_t *bp = (const int8_t *)b->data + brow;
				if (!zb)
					for (int64_t j = 0; j < g->n; j++)
						yr[j] += av * (int32_t)bp[j];
				else
					for (int64_t j = 0; j < g->n; j++)
						yr[j] += av * ((int32_t)bp[j] -
							       (int32_t)ops_int_at(zb, g->b_col ? j : 0));
			}
		}
	}
}

static enum nn_status run_mmi(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const struct mmi_geom *g = c->priv;
	const struct tensor *za = present(c->in, c->n_in, 2) ? &c->in[2] : NULL;
	const struct tensor *zb = present(c->in, c->n_in, 3) ? &c->in[3] : NULL;
	int32_t *y = c->out[0].data;
	int64_t idx[TENSOR_MAX_DIMS] = {0}, oa = 0, ob = 0;
	for (int64_t t = 0; t < g->batch; t++) {
		mmi_one(g, &c->in[0], oa * g->m * g->k, &c->in[1], ob * g->k * g->n, za, zb,
			y + t * g->m * g->n);
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

/* ---- com.microsoft MatMulNBits (bits 4) ----
 * Y = A[..., K] x W[K, N] (+ bias[N]) with W stored as B uint8
 * [N][blocks][block_size / 2] (element k of column n in nibble k of row n,
 * low nibble first), scales float [N * blocks] and zero points uint8
 * [N][ceil(blocks / 2)] (nibbles; 8 when absent): W[k][n] = (q - zp) *
 * scale. Exact float numerics, as ONNX Runtime at accuracy_level 1: W is
 * dequantized once at infer (B, scales and zero points must be constants)
 * and every run is one sgemm. */
struct mnb {
	int64_t k, n, m; /* m: rows of A (product of its leading dims) */
	float *w;        /* [K, N] */
};

static void mnb_free(void *priv)
{
	struct mnb *p = priv;
	if (p)
		free(p->w);
	free(p);
}

static enum nn_status check_mnb(const Onnx__NodeProto *node, int64_t opset, struct nn_err *e)
{
	(void)opset;
	if (exec_attr_int(node, "bits", 4) != 4)
		return exec_node_err(e, NN_EUNSUPPORTED, node, "only bits 4");
	if (node->n_input > 4 && node->input[4] && node->input[4][0])
		return exec_node_err(e, NN_EUNSUPPORTED, node, "g_idx input");
	return NN_OK;
}

static enum nn_status infer_mnb(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = io_check(c, 3, 6, e);
	if (st != NN_OK)
		return st;
	int64_t k = exec_attr_int(c->node, "K", 0), n = exec_attr_int(c->node, "N", 0);
	int64_t bs = exec_attr_int(c->node, "block_size", 0);
	if (k < 1 || n < 1 || bs < 16 || (bs & (bs - 1)) != 0 || k > INT_MAX ||
	    n > INT_MAX || exec_numel(&c->in[0]) / k > INT_MAX)
		return exec_node_err(e, NN_EINVAL, c->node, "bad K, N or block_size");
	int64_t nb = (k + bs - 1) / bs, blob = bs / 2, zrow = (nb + 1) / 2;
	const struct tensor *a = &c->in[0], *b = &c->in[1], *s = &c->in[2];
	const struct tensor *z = present(c->in, c->n_in, 3) ? &c->in[3] : NULL;
	const struct tensor *bias = present(c->in, c->n_in, 5) ? &c->in[5] : NULL;
	if (a->dtype != DT_FLOAT || a->ndim < 1 || a->shape[a->ndim - 1] != k)
		return exec_node_err(e, NN_EINVAL, c->node, "A must be float with last dimension K");
	if (b->dtype != DT_UINT8 || b->ndim != 3 || b->shape[0] != n || b->shape[1] != nb ||
	    b->shape[2] != blob)
		return exec_node_err(e, NN_EINVAL, c->node,
				     "B must be uint8 [N, blocks, block_size/2]");
	if (s->dtype != DT_FLOAT || exec_numel(s) != n * nb)
		return exec_node_err(e, NN_EINVAL, c->node, "scales must be float [N * blocks]");
	if (z && (z->dtype != DT_UINT8 || exec_numel(z) != n * zrow))
		return exec_node_err(e, NN_EUNSUPPORTED, c->node,
				     "zero points must be uint8 [N * ceil(blocks / 2)]");
	if (bias && (bias->dtype != DT_FLOAT || exec_numel(bias) != n))
		return exec_node_err(e, NN_EINVAL, c->node, "bias must be float [N]");
	if (!b->data || !s->data || (z && !z->data))
		return exec_node_err(e, NN_EUNSUPPORTED, c->node,
				     "B, scales and zero points must be constants");
	size_t cells;
	if (__builtin_mul_overflow((size_t)k, (size_t)n, &cells) ||
	    __builtin_mul_overflow(cells, sizeof(float), &cells))
		return exec_node_err(e, NN_EINVAL, c->node, "K x N overflows");
	struct mnb *p = calloc(1, sizeof *p);
	if (!p || !(p->w = malloc(cells))) {
		free(p);
		return exec_node_err(e, NN_ENOMEM, c->node, "out of memory");
	}
	const uint8_t *bq = b->data, *zq = z ? z->data : NULL;
	const float *sc = s->data;
	for (int64_t col = 0; col < n; col++)
		for (int64_t kk = 0; kk < k; kk++) {
			int64_t blk = kk / bs, at = col * nb * bs + kk; /* nibble index */
			int q = (bq[at / 2] >> ((at & 1) * 4)) & 15;
			int zp = 8;
			if (zq) {
				int64_t zi = col * zrow * 2 + blk;
				zp = (zq[zi / 2] >> ((zi & 1) * 4)) & 15;
			}
			p->w[kk * n + col] = (float)(q - zp) * sc[col * nb + blk];
		}
	p->k = k, p->n = n, p->m = exec_numel(a) / k;
	c->priv = p;
	c->priv_bytes = cells;
	struct tensor *o = &c->out[0];
	memset(o, 0, sizeof *o);
	o->dtype = DT_FLOAT;
	o->ndim = a->ndim;
	memcpy(o->shape, a->shape, sizeof o->shape);
	o->shape[a->ndim - 1] = n;
	return NN_OK;
}

static enum nn_status run_mnb(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const struct mnb *p = c->priv;
	float *y = c->out[0].data;
	const float *bias = present(c->in, c->n_in, 5) ? c->in[5].data : NULL;
	if (p->m == 0)
		return NN_OK;
	if (bias)
		for (int64_t r = 0; r < p->m; r++)
			memcpy(y + r * p->n, bias, (size_t)p->n * sizeof *y);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)p->m, (int)p->n, (int)p->k,
		    1.0f, c->in[0].data, (int)p->k, p->w, (int)p->n, bias ? 1.0f : 0.0f, y,
		    (int)p->n);
	return NN_OK;
}

const struct exec_op exec_ops_quant[] = {
	{"", "DequantizeLinear", NULL, infer_dequantize, run_dequantize, NULL},
	{"", "QuantizeLinear", NULL, infer_quantize, run_quantize, NULL},
	{"", "DynamicQuantizeLinear", NULL, infer_dynq, run_dynq, NULL},
	{"", "MatMulInteger", NULL, infer_mmi, run_mmi, NULL},
	{"com.microsoft", "MatMulNBits", check_mnb, infer_mnb, run_mnb, mnb_free},
};
const size_t exec_ops_quant_count = sizeof exec_ops_quant / sizeof exec_ops_quant[0];
