/* ops_quant: quantization operators (see ops_quant.h). */
#include "ops_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
};

static enum nn_status qaxis_infer(struct exec_infer_ctx *c, struct qaxis *g, struct nn_err *e)
{
	const struct tensor *x = &c->in[0], *s = &c->in[1];
	if (exec_attr_int(c->node, "block_size", 0) != 0)
		return exec_node_err(e, NN_EUNSUPPORTED, c->node, "blocked quantization");
	int64_t ns = exec_numel(s);
	g->outer = exec_numel(x), g->channels = 1, g->inner = 1;
	if (s->ndim == 0 || (s->ndim == 1 && ns == 1)) {
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

static enum nn_status run_dequantize(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const struct qaxis *g = c->priv;
	const struct tensor *x = &c->in[0];
	const float *scale = c->in[1].data;
	bool has_zp = present(c->in, c->n_in, 2);
	float *y = c->out[0].data;
	int64_t i = 0;
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

const struct exec_op exec_ops_quant[] = {
	{"", "DequantizeLinear", NULL, infer_dequantize, run_dequantize, NULL},
	{"", "QuantizeLinear", NULL, infer_quantize, run_quantize, NULL},
	{"", "DynamicQuantizeLinear", NULL, infer_dynq, run_dynq, NULL},
	{"", "MatMulInteger", NULL, infer_mmi, run_mmi, NULL},
};
const size_t exec_ops_quant_count = sizeof exec_ops_quant / sizeof exec_ops_quant[0];
