/* ops_conv: ONNX adapters for the convolution family (see ops_conv.h). */
#include "ops_conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"

/* ---- attribute helpers ---- */

/* Every attribute of the node must be one of `known` (NULL-terminated):
 * an attribute this module does not read would silently change semantics. */
static enum nn_status only_known_attrs(const Onnx__NodeProto *node, const char *const *known,
				       struct nn_err *e)
{
	for (size_t i = 0; i < node->n_attribute; i++) {
		const char *name = node->attribute[i]->name ? node->attribute[i]->name : "";
		bool ok = false;
		for (const char *const *k = known; *k; k++)
			if (!strcmp(name, *k))
				ok = true;
		if (!ok)
			return exec_node_err(e, NN_EUNSUPPORTED, node,
					     "attribute '%s' is not supported", name);
	}
	return NN_OK;
}

static enum nn_status parse_auto_pad(const Onnx__NodeProto *node, enum conv_auto_pad *out,
				     struct nn_err *e)
{
	char buf[32];
	exec_attr_string(node, "auto_pad", buf, sizeof(buf), "NOTSET");
	if (!buf[0]) /* some exporters write "", which ONNX Runtime reads as NOTSET */
		snprintf(buf, sizeof(buf), "NOTSET");
	static const char *const names[] = {"NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"};
	for (int i = 0; i < 4; i++) {
		if (!strcmp(buf, names[i])) {
			*out = (enum conv_auto_pad)i;
			return NN_OK;
		}
	}
	return exec_node_err(e, NN_EINVAL, node, "auto_pad '%s' is not an ONNX auto_pad value",
			     buf);
}

/* An int attribute that must be 0 or 1. */
static enum nn_status flag_attr(const Onnx__NodeProto *node, const char *name, bool *out,
				struct nn_err *e)
{
	int64_t v = exec_attr_int(node, name, 0);
	if (v != 0 && v != 1)
		return exec_node_err(e, NN_EINVAL, node, "%s is %lld (must be 0 or 1)", name,
				     (long long)v);
	*out = v == 1;
	return NN_OK;
}

/* Fills w (spatial dims in[2..], kernel, strides, dilations, pads) from the
 * node's attributes and resolves it. kernel: from the weight (Conv) or NULL
 * to read kernel_shape (pools, where it is required). */
static enum nn_status window_from_node(const Onnx__NodeProto *node, const struct tensor *x,
				       const int64_t *kernel, bool ceil_mode,
				       struct conv_window *w, struct nn_err *e)
{
	memset(w, 0, sizeof(*w));
	int ns = x->ndim - 2;
	if (ns < 1 || ns > CONV_MAX_SPATIAL)
		return exec_node_err(e, ns < 1 ? NN_EINVAL : NN_EUNSUPPORTED, node,
				     "input X has rank %d (3 to %d supported)", x->ndim,
				     CONV_MAX_SPATIAL + 2);
	w->nspatial = ns;
	const int64_t *v;
	size_t n;
	if (exec_attr_ints(node, "kernel_shape", &v, &n)) {
		if (n != (size_t)ns)
			return exec_node_err(e, NN_EINVAL, node,
					     "kernel_shape has %zu values for %d spatial dims", n,
					     ns);
		for (int i = 0; i < ns; i++) {
			if (kernel && kernel[i] != v[i])
				return exec_node_err(e, NN_EINVAL, node,
						     "kernel_shape[%d] = %lld but W has %lld", i,
						     (long long)v[i], (long long)kernel[i]);
			w->kernel[i] = v[i];
		}
	} else if (kernel) {
		memcpy(w->kernel, kernel, sizeof(int64_t) * (size_t)ns);
	} else {
		return exec_node_err(e, NN_EINVAL, node, "kernel_shape is required");
	}
	for (int i = 0; i < ns; i++) {
		w->in[i] = x->shape[2 + i];
		w->strides[i] = 1;
		w->dilations[i] = 1;
	}
	static const char *const lists[] = {"strides", "dilations"};
	int64_t *dst[] = {w->strides, w->dilations};
	for (int l = 0; l < 2; l++) {
		if (!exec_attr_ints(node, lists[l], &v, &n))
			continue;
		if (n != (size_t)ns)
			return exec_node_err(e, NN_EINVAL, node, "%s has %zu values for %d spatial dims",
					     lists[l], n, ns);
		memcpy(dst[l], v, sizeof(int64_t) * (size_t)ns);
	}
	enum conv_auto_pad ap = CONV_PAD_NOTSET;
	enum nn_status st = parse_auto_pad(node, &ap, e);
	if (st != NN_OK)
		return st;
	if (exec_attr_ints(node, "pads", &v, &n) && ap == CONV_PAD_NOTSET) {
		if (n != 2 * (size_t)ns)
			return exec_node_err(e, NN_EINVAL, node, "pads has %zu values for %d spatial dims",
					     n, ns);
		memcpy(w->pads, v, sizeof(int64_t) * 2 * (size_t)ns);
	}
	struct nn_err inner;
	err_clear(&inner);
	st = conv_window_resolve(w, ap, ceil_mode, &inner);
	if (st != NN_OK)
		return exec_node_err(e, st, node, "%s", inner.message);
	return NN_OK;
}

static bool present(const struct tensor *in, size_t n_in, size_t k)
{
	return k < n_in && in[k].dtype != DT_UNDEFINED;
}

static enum nn_status want_float(const struct exec_infer_ctx *c, size_t k, const char *name,
				 struct nn_err *e)
{
	if (!present(c->in, c->n_in, k))
		return exec_node_err(e, NN_EINVAL, c->node, "input %s is required", name);
	if (c->in[k].dtype != DT_FLOAT)
		return exec_node_err(e, NN_EUNSUPPORTED, c->node,
				     "input %s has dtype %s (only float32 is supported)", name,
				     dtype_name(c->in[k].dtype));
	return NN_OK;
}

/* Kernel-level size errors (NN_ETOOBIG) are valid models nncd cannot run. */
static enum nn_status wrap_kernel_err(const struct exec_infer_ctx *c, enum nn_status st,
				      const struct nn_err *inner, struct nn_err *e)
{
	return exec_node_err(e, st == NN_ETOOBIG ? NN_EUNSUPPORTED : st, c->node, "%s",
			     inner->message);
}

static void set_out(struct tensor *o, enum dtype dt, int ndim, const int64_t *shape)
{
	o->dtype = dt;
	o->ndim = ndim;
	memcpy(o->shape, shape, sizeof(int64_t) * (size_t)ndim);
	o->data = NULL;
	o->owned = false;
}

/* ---- Conv ---- */

static const char *const conv_attrs[] = {"auto_pad", "dilations", "group", "kernel_shape",
					 "pads", "strides", NULL};

static enum nn_status conv_check_node(const Onnx__NodeProto *node, int64_t opset,
				      struct nn_err *e)
{
	(void)opset;
	enum conv_auto_pad ap = CONV_PAD_NOTSET;
	enum nn_status st = only_known_attrs(node, conv_attrs, e);
	if (st == NN_OK)
		st = parse_auto_pad(node, &ap, e);
	return st;
}

static enum nn_status conv_infer(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st;
	if (c->n_in < 2 || c->n_in > 3 || c->n_out != 1)
		return exec_node_err(e, NN_EINVAL, c->node,
				     "takes 2 or 3 inputs and 1 output, has %zu and %zu", c->n_in,
				     c->n_out);
	if ((st = want_float(c, 0, "X", e)) != NN_OK || (st = want_float(c, 1, "W", e)) != NN_OK)
		return st;
	const struct tensor *x = &c->in[0], *w = &c->in[1];
	if (w->ndim != x->ndim)
		return exec_node_err(e, NN_EINVAL, c->node, "W has rank %d but X has rank %d",
				     w->ndim, x->ndim);
	struct conv_params p;
	memset(&p, 0, sizeof(p));
	if ((st = window_from_node(c->node, x, w->ndim >= 3 ? w->shape + 2 : NULL, false, &p.win,
				   e)) != NN_OK)
		return st;
	p.batch = x->shape[0];
	p.in_channels = x->shape[1];
	p.out_channels = w->shape[0];
	p.group = exec_attr_int(c->node, "group", 1);
	if (p.group < 1 || p.in_channels % p.group != 0 ||
	    w->shape[1] != p.in_channels / p.group)
		return exec_node_err(e, NN_EINVAL, c->node,
				     "W has %lld input channels per group but X has %lld channels "
				     "in %lld groups",
				     (long long)w->shape[1], (long long)p.in_channels,
				     (long long)p.group);
	if (present(c->in, c->n_in, 2)) {
		if ((st = want_float(c, 2, "B", e)) != NN_OK)
			return st;
		if (c->in[2].ndim != 1 || c->in[2].shape[0] != p.out_channels)
			return exec_node_err(e, NN_EINVAL, c->node,
					     "B must have shape [%lld]", (long long)p.out_channels);
	}
	size_t scratch = 0;
	struct nn_err inner;
	err_clear(&inner);
	if ((st = conv_check(&p, &scratch, &inner)) != NN_OK)
		return wrap_kernel_err(c, st, &inner, e);
	/* Constant weights the kernel wants in another layout are packed once,
	 * here, after the conv_params (one allocation, freed with it). */
	size_t pack = w->data ? conv_pack_floats(&p) : 0;
	size_t head = (sizeof(p) + 63) & ~(size_t)63;
	struct conv_params *priv = aligned_alloc(64, head + ((pack * sizeof(float) + 63) & ~(size_t)63));
	if (!priv)
		return exec_node_err(e, NN_ENOMEM, c->node, "out of memory");
	*priv = p;
	if (pack) {
		float *wp = (float *)(void *)((unsigned char *)priv + head);
		conv_pack_weights(&p, w->data, wp);
		priv->wpack = wp;
		c->priv_bytes = pack * sizeof(float);
	}
	int64_t shape[TENSOR_MAX_DIMS];
	shape[0] = p.batch;
	shape[1] = p.out_channels;
	memcpy(shape + 2, p.win.out, sizeof(int64_t) * (size_t)p.win.nspatial);
	set_out(&c->out[0], DT_FLOAT, x->ndim, shape);
	c->scratch_bytes = scratch;
	c->priv = priv;
	return NN_OK;
}

static enum nn_status conv_run_node(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const struct conv_params *p = c->priv;
	const float *bias = present(c->in, c->n_in, 2) ? c->in[2].data : NULL;
	conv_run(p, c->in[0].data, c->in[1].data, bias, c->out[0].data, c->scratch);
	return NN_OK;
}

/* Conv with a Relu fused into it by the executor at compile time
 * (exec.c, fuse_conv_relu): registered under domain "nncd.fused" so that the
 * executor can find it; a model naming that op gets exactly Conv + Relu. */
static enum nn_status conv_relu_infer(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = conv_infer(c, e);
	if (st == NN_OK)
		((struct conv_params *)c->priv)->relu = true;
	return st;
}

/* ---- MaxPool / AveragePool ---- */

static const char *const maxpool_attrs[] = {"auto_pad", "ceil_mode", "dilations", "kernel_shape",
					    "pads", "storage_order", "strides", NULL};
static const char *const avgpool_attrs[] = {"auto_pad", "ceil_mode", "count_include_pad",
					    "dilations", "kernel_shape", "pads", "strides", NULL};

static enum nn_status pool_check_common(const Onnx__NodeProto *node, const char *const *attrs,
					struct nn_err *e)
{
	enum conv_auto_pad ap = CONV_PAD_NOTSET;
	bool flag = false;
	enum nn_status st = only_known_attrs(node, attrs, e);
	if (st == NN_OK)
		st = parse_auto_pad(node, &ap, e);
	if (st == NN_OK)
		st = flag_attr(node, "ceil_mode", &flag, e);
	if (st == NN_OK && !exec_attr_find(node, "kernel_shape"))
		st = exec_node_err(e, NN_EINVAL, node, "kernel_shape is required");
	return st;
}

static enum nn_status maxpool_check_node(const Onnx__NodeProto *node, int64_t opset,
					 struct nn_err *e)
{
	(void)opset;
	bool flag = false;
	enum nn_status st = pool_check_common(node, maxpool_attrs, e);
	if (st == NN_OK)
		st = flag_attr(node, "storage_order", &flag, e);
	return st;
}

static enum nn_status avgpool_check_node(const Onnx__NodeProto *node, int64_t opset,
					 struct nn_err *e)
{
	(void)opset;
	bool flag = false;
	enum nn_status st = pool_check_common(node, avgpool_attrs, e);
	if (st == NN_OK)
		st = flag_attr(node, "count_include_pad", &flag, e);
	return st;
}

static enum nn_status pool_infer(struct exec_infer_ctx *c, bool is_max, struct nn_err *e)
{
	enum nn_status st;
	size_t max_out = is_max ? 2 : 1;
	if (c->n_in != 1 || c->n_out < 1 || c->n_out > max_out)
		return exec_node_err(e, NN_EINVAL, c->node, "takes 1 input and 1 to %zu outputs",
				     max_out);
	if ((st = want_float(c, 0, "X", e)) != NN_OK)
		return st;
	const struct tensor *x = &c->in[0];
	struct conv_pool_params p;
	memset(&p, 0, sizeof(p));
	bool ceil_mode = false;
	if ((st = flag_attr(c->node, "ceil_mode", &ceil_mode, e)) != NN_OK ||
	    (st = flag_attr(c->node, is_max ? "storage_order" : "count_include_pad",
			    is_max ? &p.column_major : &p.count_include_pad, e)) != NN_OK)
		return st;
	if ((st = window_from_node(c->node, x, NULL, ceil_mode, &p.win, e)) != NN_OK)
		return st;
	p.batch = x->shape[0];
	p.channels = x->shape[1];
	struct nn_err inner;
	err_clear(&inner);
	if ((st = conv_pool_check(&p, &inner)) != NN_OK)
		return wrap_kernel_err(c, st, &inner, e);
	struct conv_pool_params *priv = malloc(sizeof(*priv));
	if (!priv)
		return exec_node_err(e, NN_ENOMEM, c->node, "out of memory");
	*priv = p;
	int64_t shape[TENSOR_MAX_DIMS];
	shape[0] = p.batch;
	shape[1] = p.channels;
	memcpy(shape + 2, p.win.out, sizeof(int64_t) * (size_t)p.win.nspatial);
	set_out(&c->out[0], DT_FLOAT, x->ndim, shape);
	if (c->n_out > 1)
		set_out(&c->out[1], DT_INT64, x->ndim, shape);
	c->priv = priv;
	return NN_OK;
}

static enum nn_status maxpool_infer(struct exec_infer_ctx *c, struct nn_err *e)
{
	return pool_infer(c, true, e);
}

static enum nn_status avgpool_infer(struct exec_infer_ctx *c, struct nn_err *e)
{
	return pool_infer(c, false, e);
}

static enum nn_status maxpool_run_node(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	int64_t *indices = c->n_out > 1 ? c->out[1].data : NULL;
	conv_maxpool(c->priv, c->in[0].data, c->out[0].data, indices);
	return NN_OK;
}

static enum nn_status avgpool_run_node(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	conv_avgpool(c->priv, c->in[0].data, c->out[0].data);
	return NN_OK;
}

/* ---- GlobalAveragePool / GlobalMaxPool ---- */

static const char *const no_attrs[] = {NULL};

static enum nn_status global_check_node(const Onnx__NodeProto *node, int64_t opset,
					struct nn_err *e)
{
	(void)opset;
	return only_known_attrs(node, no_attrs, e);
}

static enum nn_status global_infer(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st;
	if (c->n_in != 1 || c->n_out != 1)
		return exec_node_err(e, NN_EINVAL, c->node, "takes 1 input and 1 output");
	if ((st = want_float(c, 0, "X", e)) != NN_OK)
		return st;
	const struct tensor *x = &c->in[0];
	if (x->ndim < 3)
		return exec_node_err(e, NN_EINVAL, c->node, "input X has rank %d (at least 3)",
				     x->ndim);
	for (int i = 2; i < x->ndim; i++)
		if (x->shape[i] < 1)
			return exec_node_err(e, NN_EINVAL, c->node, "input X has an empty spatial dim");
	int64_t shape[TENSOR_MAX_DIMS];
	shape[0] = x->shape[0];
	shape[1] = x->shape[1];
	for (int i = 2; i < x->ndim; i++)
		shape[i] = 1;
	set_out(&c->out[0], DT_FLOAT, x->ndim, shape);
	return NN_OK;
}

static void global_dims(const struct tensor *x, int64_t *nc, int64_t *spatial)
{
	*nc = x->shape[0] * x->shape[1];
	*spatial = 1;
	for (int i = 2; i < x->ndim; i++)
		*spatial *= x->shape[i];
}

static enum nn_status gap_run_node(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	int64_t nc, spatial;
	global_dims(&c->in[0], &nc, &spatial);
	conv_global_avgpool(nc, spatial, c->in[0].data, c->out[0].data);
	return NN_OK;
}

static enum nn_status gmp_run_node(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	int64_t nc, spatial;
	global_dims(&c->in[0], &nc, &spatial);
	conv_global_maxpool(nc, spatial, c->in[0].data, c->out[0].data);
	return NN_OK;
}

/* ---- BatchNormalization (inference) ---- */

static const char *const bn_attrs[] = {"epsilon", "momentum", "spatial", "is_test",
				       "training_mode", NULL};

static enum nn_status bn_check_node(const Onnx__NodeProto *node, int64_t opset, struct nn_err *e)
{
	(void)opset;
	enum nn_status st = only_known_attrs(node, bn_attrs, e);
	if (st != NN_OK)
		return st;
	if (exec_attr_int(node, "training_mode", 0) != 0)
		return exec_node_err(e, NN_EUNSUPPORTED, node,
				     "training_mode 1 is not supported (inference only)");
	/* Opset 6's is_test 0 asks for training statistics too. */
	if (exec_attr_find(node, "is_test") && exec_attr_int(node, "is_test", 0) != 1)
		return exec_node_err(e, NN_EUNSUPPORTED, node,
				     "is_test 0 is not supported (inference only)");
	if (exec_attr_int(node, "spatial", 1) != 1)
		return exec_node_err(e, NN_EUNSUPPORTED, node,
				     "spatial 0 (per-element statistics) is not supported");
	for (size_t i = 1; i < node->n_output; i++)
		if (node->output[i] && node->output[i][0])
			return exec_node_err(e, NN_EUNSUPPORTED, node,
					     "output %zu ('%s') exists only in training mode", i,
					     node->output[i]);
	return NN_OK;
}

struct bn_priv {
	int64_t batch, channels, spatial;
	float epsilon;
};

static enum nn_status bn_infer(struct exec_infer_ctx *c, struct nn_err *e)
{
	enum nn_status st = bn_check_node(c->node, c->opset, e);
	if (st != NN_OK)
		return st;
	if (c->n_in != 5 || c->n_out < 1)
		return exec_node_err(e, NN_EINVAL, c->node, "takes 5 inputs, has %zu", c->n_in);
	static const char *const names[] = {"X", "scale", "B", "input_mean", "input_var"};
	for (size_t k = 0; k < 5; k++)
		if ((st = want_float(c, k, names[k], e)) != NN_OK)
			return st;
	const struct tensor *x = &c->in[0];
	if (x->ndim < 2)
		return exec_node_err(e, NN_EINVAL, c->node, "input X has rank %d (at least 2)",
				     x->ndim);
	for (size_t k = 1; k < 5; k++)
		if (c->in[k].ndim != 1 || c->in[k].shape[0] != x->shape[1])
			return exec_node_err(e, NN_EINVAL, c->node, "%s must have shape [%lld]",
					     names[k], (long long)x->shape[1]);
	struct bn_priv *priv = malloc(sizeof(*priv));
	if (!priv)
		return exec_node_err(e, NN_ENOMEM, c->node, "out of memory");
	priv->batch = x->shape[0];
	priv->channels = x->shape[1];
	priv->spatial = 1;
	for (int i = 2; i < x->ndim; i++)
		priv->spatial *= x->shape[i];
	priv->epsilon = exec_attr_float(c->node, "epsilon", 1e-5f);
	set_out(&c->out[0], DT_FLOAT, x->ndim, x->shape);
	for (size_t i = 1; i < c->n_out; i++) /* unnamed training outputs: never written */
		set_out(&c->out[i], DT_FLOAT, 1, &x->shape[1]);
	c->priv = priv;
	return NN_OK;
}

static enum nn_status bn_run_node(const struct exec_run_ctx *c, struct nn_err *e)
{
	(void)e;
	const struct bn_priv *p = c->priv;
	conv_batchnorm(p->batch, p->channels, p->spatial, c->in[0].data, c->in[1].data,
		       c->in[2].data, c->in[3].data, c->in[4].data, p->epsilon, c->out[0].data);
	return NN_OK;
}

/* Designated initializers: fields exec_op.h adds later default to zero. */
const struct exec_op exec_ops_conv[] = {
	{.domain = "", .op_type = "Conv", .check = conv_check_node, .infer = conv_infer,
	 .run = conv_run_node},
	{.domain = "", .op_type = "MaxPool", .check = maxpool_check_node, .infer = maxpool_infer,
	 .run = maxpool_run_node},
	{.domain = "", .op_type = "AveragePool", .check = avgpool_check_node,
	 .infer = avgpool_infer, .run = avgpool_run_node},
	{.domain = "", .op_type = "GlobalAveragePool", .check = global_check_node,
	 .infer = global_infer, .run = gap_run_node},
	{.domain = "", .op_type = "GlobalMaxPool", .check = global_check_node,
	 .infer = global_infer, .run = gmp_run_node},
	{.domain = "", .op_type = "BatchNormalization", .check = bn_check_node, .infer = bn_infer,
	 .run = bn_run_node},
	{.domain = "nncd.fused", .op_type = "ConvRelu", .check = conv_check_node,
	 .infer = conv_relu_infer, .run = conv_run_node},
};
const size_t exec_ops_conv_count = sizeof(exec_ops_conv) / sizeof(exec_ops_conv[0]);
