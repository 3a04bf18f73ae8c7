/* onnx_opset: raising the default-domain opset of a model (see onnx_opset.h).
 * The rules are in convert_node; raise_dry_run runs them with `dry` set, so a
 * refusal is found before anything changes. Not thread-safe per model; no
 * global state. */
#include "onnx_opset.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_io.h"
#include "onnx_wire.h"

#define ONNX_MAX_OPSET 21           /* highest opset onnx_raise_opset targets */

/* ------------------------------------------------------------------ */
/* opset conversion                                                    */

/* Lowest IR version that may carry a given default-domain opset. */
static int64_t ir_for_opset(int64_t opset)
{
	if (opset <= 8) return 3;
	if (opset == 9) return 4;
	if (opset == 10) return 5;
	if (opset == 11) return 6;
	if (opset <= 14) return 7;
	if (opset <= 18) return 8;
	if (opset <= 20) return 9;
	return 10;
}

struct vinfo {
	int rank;      /* -1 unknown */
	int32_t elem;  /* 0 unknown */
};

struct cvt {
	struct onnx_model *m;
	int64_t from, to;
	bool dry; /* first pass: only find nodes that must be rejected */
	struct nameset names; /* value name -> index + 1 into vi (owned keys) */
	struct nameset all;   /* every name in the graph, for new names (owned keys) */
	bool all_built;
	struct vinfo *vi;
	size_t n_vi, cap_vi;
	/* Set by reject(): the node refused and why (for the summary's
	 * opset_upgrade entry); both borrow from the model / string literals. */
	const Onnx__NodeProto *rejected;
	const char *why;
};

#define CHANGED(c, v) ((c)->from < (v) && (v) <= (c)->to)

static const struct vinfo *info_get(const struct cvt *c, const char *name)
{
	uintptr_t k = (uintptr_t)wire_nameset_get(&c->names, name);
	return k ? &c->vi[k - 1] : NULL;
}

static bool info_put(struct cvt *c, const char *name, int rank, int32_t elem)
{
	if (!name || !*name || info_get(c, name))
		return true;
	if (!grow(&c->vi, &c->cap_vi, c->n_vi, sizeof *c->vi))
		return false;
	c->vi[c->n_vi] = (struct vinfo){ rank, elem };
	if (!wire_nameset_put(&c->names, name, (void *)(uintptr_t)(c->n_vi + 1)))
		return false;
	c->n_vi++;
	return true;
}

static bool info_from_vi(struct cvt *c, Onnx__ValueInfoProto *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const Onnx__TypeProto *tp = v[i]->type;
		if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
			continue;
		const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
		if (!info_put(c, v[i]->name, tt->shape ? (int)tt->shape->n_dim : -1,
			      tt->has_elem_type ? tt->elem_type : 0))
			return false;
	}
	return true;
}

static bool op_in(const char *op, const char *const *list)
{
	for (; *list; list++)
		if (streq(op, *list))
			return true;
	return false;
}

static const char *const same_shape_ops[] = {
	"Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "Tanh", "Softplus",
	"Softsign", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round",
	"Erf", "Sin", "Cos", "Identity", "Dropout", "Clip", "Softmax", "LogSoftmax", "Hardmax",
	"BatchNormalization", "InstanceNormalization", "LRN", "Conv", "ConvTranspose", "MaxPool",
	"AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "Transpose", "Cast",
	"HardSwish", "Mish", "Gelu", "ThresholdedRelu", "Sign", "Not", "CumSum",
	"LayerNormalization", "Celu", NULL,
};
static const char *const broadcast_ops[] = {
	"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "And", "Or", "Xor",
	"Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Mod", NULL,
};

/* A conservative forward pass: ranks and element types where they follow
 * from the graph alone, for conversions whose safety depends on them. */
static bool infer_info(struct cvt *c, const Onnx__GraphProto *g)
{
	if (!info_from_vi(c, g->input, g->n_input) || !info_from_vi(c, g->output, g->n_output) ||
	    !info_from_vi(c, g->value_info, g->n_value_info))
		return false;
	for (size_t i = 0; i < g->n_initializer; i++) {
		const Onnx__TensorProto *t = g->initializer[i];
		if (!info_put(c, t->name, (int)t->n_dims, t->data_type))
			return false;
	}
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (!is_default_domain(n->domain) || n->n_output == 0 || n->n_input == 0)
			continue;
		const char *op = n->op_type;
		const struct vinfo *a = info_get(c, n->input[0]);
		const struct vinfo *b = n->n_input > 1 ? info_get(c, n->input[1]) : NULL;
		int rank = -1;
		int32_t elem = a ? a->elem : 0;
		if (streq(op, "Gemm") || streq(op, "Flatten")) {
			rank = 2;
		} else if (op_in(op, same_shape_ops)) {
			rank = a ? a->rank : -1;
			if (streq(op, "Cast"))
				elem = (int32_t)onnx_node_int_attr(n, "to", 0);
		} else if (op_in(op, broadcast_ops)) {
			rank = a ? a->rank : -1;
			for (size_t k = 1; k < n->n_input && rank >= 0; k++) {
				const struct vinfo *o = info_get(c, n->input[k]);
				rank = o && o->rank >= 0 ? (o->rank > rank ? o->rank : rank) : -1;
			}
			if (op_in(op, (const char *const[]){ "And", "Or", "Xor", "Equal", "Greater",
							     "Less", "GreaterOrEqual",
							     "LessOrEqual", NULL }))
				elem = DT_BOOL;
		} else if (streq(op, "MatMul") && a && b && a->rank >= 1 && b->rank >= 1) {
			if (a->rank == 1 && b->rank == 1)
				rank = 0;
			else if (a->rank == 1)
				rank = b->rank - 1;
			else if (b->rank == 1)
				rank = a->rank - 1;
			else
				rank = a->rank > b->rank ? a->rank : b->rank;
		} else if (streq(op, "Reshape") && n->n_input > 1) {
			const Onnx__TensorProto *s = onnx_find_initializer(c->m, n->input[1]);
			if (s && s->n_dims == 1 && s->dims[0] >= 0 && s->dims[0] < 64)
				rank = (int)s->dims[0];
		} else {
			elem = 0;
		}
		if ((rank >= 0 || elem) && !info_put(c, n->output[0], rank, elem))
			return false;
	}
	return true;
}

static void node_label(const Onnx__NodeProto *n, char *buf, size_t cap)
{
	if (n->name && *n->name)
		snprintf(buf, cap, "node '%s' (%s)", n->name, n->op_type ? n->op_type : "?");
	else
		snprintf(buf, cap, "unnamed %s node producing '%s'", n->op_type ? n->op_type : "?",
			 n->n_output ? n->output[0] : "");
}

static enum nn_status reject(struct cvt *c, const Onnx__NodeProto *n, struct nn_err *e,
			     const char *why)
{
	char lab[200];
	c->rejected = n;
	c->why = why;
	node_label(n, lab, sizeof lab);
	return err_set(e, NN_EUNSUPPORTED, "unsupported_opset_conversion", NULL,
		       "cannot raise the opset from %lld to %lld: %s %s", (long long)c->from,
		       (long long)c->to, lab, why);
}

static enum nn_status set_input(Onnx__NodeProto *n, size_t idx, const char *name,
				struct nn_err *e)
{
	if (idx >= n->n_input) {
		char **arr = realloc(n->input, (idx + 1) * sizeof *arr);
		if (!arr)
			return oom(e);
		n->input = arr;
		for (size_t i = n->n_input; i <= idx; i++)
			arr[i] = NULL;
		for (size_t i = n->n_input; i < idx; i++) {
			if (!(arr[i] = xstrdup(""))) {
				n->n_input = i;
				return oom(e);
			}
		}
		n->n_input = idx;
	}
	char *copy = xstrdup(name);
	if (!copy)
		return oom(e);
	if (idx < n->n_input)
		free(n->input[idx]);
	n->input[idx] = copy;
	if (idx >= n->n_input)
		n->n_input = idx + 1;
	return NN_OK;
}

/* Adds an initializer named after the node, of the given tensor, and wires
 * it to input idx of n. */
static enum nn_status add_input_const(struct cvt *c, Onnx__NodeProto *n, size_t idx,
				      const char *suffix, const struct tensor *t, struct nn_err *e)
{
	char base[256];
	snprintf(base, sizeof base, "%s_%s",
		 n->name && *n->name ? n->name : (n->n_output ? n->output[0] : "nncd"), suffix);
	/* One name set for the whole conversion (onnx_unique_name would
	 * rebuild it for every new initializer). */
	if (!c->all_built) {
		if (!onnx_collect_graph_names(c->m->proto->graph, &c->all, 0))
			return oom(e);
		c->all_built = true;
	}
	size_t cap = strlen(base) + 24;
	char *name = malloc(cap);
	if (!name)
		return oom(e);
	snprintf(name, cap, "%s", base);
	for (unsigned long long k = 1; wire_nameset_has(&c->all, name); k++)
		snprintf(name, cap, "%s_%llu", base, k);
	enum nn_status st = onnx_append_initializer(c->m, name, t, e);
	if (st == NN_OK && !wire_nameset_put(&c->all, name, NULL))
		st = oom(e);
	if (st == NN_OK)
		st = set_input(n, idx, name, e);
	free(name);
	return st;
}

/* Moves an ints attribute into input idx as a 1-D int64 initializer. */
static enum nn_status ints_attr_to_input(struct cvt *c, Onnx__NodeProto *n, const char *attr,
					 size_t idx, struct nn_err *e)
{
	Onnx__AttributeProto *a = onnx_find_attr(n, attr, NULL);
	if (!a)
		return NN_OK;
	struct tensor t;
	int64_t dim = (int64_t)a->n_ints;
	int64_t one = 0;
	tensor_view(&t, DT_INT64, 1, &dim, a->n_ints ? (void *)a->ints : &one);
	enum nn_status st = add_input_const(c, n, idx, attr, &t, e);
	if (st == NN_OK)
		onnx_remove_attr(n, attr);
	return st;
}

static enum nn_status set_string_attr(Onnx__NodeProto *node, const char *name, const char *value,
				      struct nn_err *e)
{
	Onnx__AttributeProto *a = malloc(sizeof *a);
	if (!a)
		return oom(e);
	onnx__attribute_proto__init(a);
	size_t len = strlen(value);
	a->name = xstrdup(name);
	a->s.data = malloc(len ? len : 1);
	if (!a->name || !a->s.data) {
		onnx__attribute_proto__free_unpacked(a, NULL);
		return oom(e);
	}
	memcpy(a->s.data, value, len);
	a->s.len = len;
	a->has_s = 1;
	a->has_type = 1;
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
	return onnx_put_attr(node, a, e);
}

static bool string_attr_is(const Onnx__NodeProto *n, const char *name, const char *value,
			   bool if_absent)
{
	const Onnx__AttributeProto *a = onnx_find_attr(n, name, NULL);
	if (!a || !a->has_s)
		return if_absent;
	return a->s.len == strlen(value) && memcmp(a->s.data, value, a->s.len) == 0;
}

/* Upsample (any version) and Resize-10 -> Resize at c->to. ONNX Runtime
 * computes both with asymmetric coordinates and, for nearest, floor
 * rounding (checked bit for bit by onnx_raise_opset_outputs_match_onnxruntime). */
static enum nn_status convert_to_resize(struct cvt *c, Onnx__NodeProto *n, struct nn_err *e)
{
	enum nn_status st;
	bool nearest = string_attr_is(n, "mode", "nearest", true);
	if (n->n_input < 2) {
		/* Upsample-7: scales attribute -> input 1 */
		Onnx__AttributeProto *a = onnx_find_attr(n, "scales", NULL);
		struct tensor t;
		int64_t dim = a ? (int64_t)a->n_floats : 0;
		tensor_view(&t, DT_FLOAT, 1, &dim, a ? (void *)a->floats : NULL);
		if ((st = add_input_const(c, n, 1, "scales", &t, e)) != NN_OK)
			return st;
		onnx_remove_attr(n, "scales");
	}
	if (!streq(n->op_type, "Resize")) {
		char *nm = xstrdup("Resize");
		if (!nm)
			return oom(e);
		free(n->op_type);
		n->op_type = nm;
	}
	if (c->to < 11)
		return NN_OK; /* Resize-10 has Upsample's inputs and meaning */
	/* Resize-11/12 require roi (ignored unless tf_crop_and_resize): an
	 * empty tensor; from 13 it may be left out. */
	char *scales = xstrdup(n->input[1]);
	if (!scales)
		return oom(e);
	if (c->to >= 13) {
		st = set_input(n, 1, "", e);
	} else {
		struct tensor roi;
		int64_t zero = 0;
		float none = 0;
		tensor_view(&roi, DT_FLOAT, 1, &zero, &none);
		st = add_input_const(c, n, 1, "roi", &roi, e);
	}
	if (st == NN_OK)
		st = set_input(n, 2, scales, e);
	free(scales);
	if (st == NN_OK)
		st = set_string_attr(n, "coordinate_transformation_mode", "asymmetric", e);
	if (st == NN_OK && nearest)
		st = set_string_attr(n, "nearest_mode", "floor", e);
	return st;
}

static enum nn_status scalar_to_input(struct cvt *c, Onnx__NodeProto *n, size_t idx,
				      const char *suffix, int32_t elem, double v, struct nn_err *e)
{
	struct tensor t;
	float f = (float)v;
	tensor_view(&t, elem == DT_DOUBLE ? DT_DOUBLE : DT_FLOAT, 0, NULL,
		    elem == DT_DOUBLE ? (void *)&v : (void *)&f);
	return add_input_const(c, n, idx, suffix, &t, e);
}

/* Removes trailing empty optional inputs. */
static void trim_inputs(Onnx__NodeProto *n)
{
	while (n->n_input && n->input[n->n_input - 1][0] == '\0') {
		free(n->input[n->n_input - 1]);
		n->n_input--;
	}
}

static int32_t cast_name_to_type(const char *s, size_t len)
{
	static const char *const names[] = { "", "FLOAT", "UINT8", "INT8", "UINT16", "INT16",
					     "INT32", "INT64", "STRING", "BOOL", "FLOAT16",
					     "DOUBLE", "UINT32", "UINT64", "COMPLEX64",
					     "COMPLEX128", "BFLOAT16" };
	for (int32_t i = 1; i < (int32_t)(sizeof names / sizeof *names); i++)
		if (strlen(names[i]) == len && strncasecmp(names[i], s, len) == 0)
			return i;
	return 0;
}

static const char *const removed_at_10[] = {
	"Affine", "Crop", "DynamicSlice", "GRUUnit", "GivenTensorFill", "ImageScaler",
	"ParametricSoftplus", "Scale", "ScaledTanh", "ATen", NULL,
};
static const char *const reduce_ops_18[] = {
	"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
	"ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", NULL,
};

static enum nn_status convert_graph(struct cvt *c, Onnx__GraphProto *g, int depth,
				    struct nn_err *e);

/* Converts one default-domain node from opset c->from to c->to. In the dry
 * pass it only rejects; mutations happen in the second pass. */
static enum nn_status convert_node(struct cvt *c, Onnx__NodeProto *n, struct nn_err *e)
{
	const char *op = n->op_type ? n->op_type : "";
	enum nn_status st = NN_OK;
	if (!c->dry && CHANGED(c, 6))
		onnx_remove_attr(n, "consumed_inputs"); /* a legacy hint with no semantics */

	if (CHANGED(c, 7) && (op_in(op, broadcast_ops) || streq(op, "Gemm"))) {
		if (!streq(op, "Gemm") && onnx_node_int_attr(n, "broadcast", 0) &&
		    onnx_find_attr(n, "axis", NULL))
			return reject(c, n, e, "uses legacy broadcasting along an axis");
		if (c->dry)
			return NN_OK;
		onnx_remove_attr(n, "broadcast");
		if (!streq(op, "Gemm"))
			onnx_remove_attr(n, "axis");
		return NN_OK;
	}
	if (streq(op, "BatchNormalization")) {
		bool extra = n->n_output > 1;
		if (CHANGED(c, 7) && onnx_find_attr(n, "is_test", NULL) &&
		    !onnx_node_int_attr(n, "is_test", 0) && extra)
			return reject(c, n, e, "is in training mode (is_test=0)");
		if (CHANGED(c, 9) && onnx_find_attr(n, "spatial", NULL) &&
		    !onnx_node_int_attr(n, "spatial", 1))
			return reject(c, n, e, "uses per-activation statistics (spatial=0)");
		if (c->dry)
			return NN_OK;
		if (CHANGED(c, 7))
			onnx_remove_attr(n, "is_test");
		if (CHANGED(c, 9))
			onnx_remove_attr(n, "spatial");
		return NN_OK;
	}
	if (streq(op, "Dropout")) {
		if (CHANGED(c, 10) && n->n_output > 1 && n->output[1][0])
			return reject(c, n, e, "uses its mask output, whose type changed at opset 10");
		if (c->dry)
			return NN_OK;
		if (CHANGED(c, 7))
			onnx_remove_attr(n, "is_test");
		if (CHANGED(c, 12))
			onnx_remove_attr(n, "ratio"); /* inference: Dropout is the identity */
		return NN_OK;
	}
	if (streq(op, "Clip") && CHANGED(c, 11)) {
		Onnx__AttributeProto *mn = onnx_find_attr(n, "min", NULL), *mx = onnx_find_attr(n, "max", NULL);
		const struct vinfo *in = n->n_input ? info_get(c, n->input[0]) : NULL;
		int32_t elem = in && in->elem ? in->elem : DT_FLOAT;
		if ((mn || mx) && elem != DT_FLOAT && elem != DT_DOUBLE)
			return reject(c, n, e, "clips a tensor that is neither float32 nor float64");
		if (c->dry || n->n_input < 1)
			return NN_OK;
		if (mn && (st = scalar_to_input(c, n, 1, "min", elem, mn->f, e)) != NN_OK)
			return st;
		if (mx && (st = scalar_to_input(c, n, 2, "max", elem, mx->f, e)) != NN_OK)
			return st;
		onnx_remove_attr(n, "min");
		onnx_remove_attr(n, "max");
		trim_inputs(n);
		return NN_OK;
	}
	if (streq(op, "Slice") && CHANGED(c, 10)) {
		if (!onnx_find_attr(n, "starts", NULL) || !onnx_find_attr(n, "ends", NULL))
			return reject(c, n, e, "has no starts/ends attributes");
		if (c->dry)
			return NN_OK;
		if ((st = ints_attr_to_input(c, n, "starts", 1, e)) != NN_OK ||
		    (st = ints_attr_to_input(c, n, "ends", 2, e)) != NN_OK ||
		    (st = ints_attr_to_input(c, n, "axes", 3, e)) != NN_OK)
			return st;
		return NN_OK;
	}
	if (streq(op, "Pad") && (CHANGED(c, 2) || CHANGED(c, 11))) {
		const char *pads = onnx_find_attr(n, "pads", NULL) ? "pads" : "paddings";
		Onnx__AttributeProto *val = onnx_find_attr(n, "value", NULL);
		const struct vinfo *in = n->n_input ? info_get(c, n->input[0]) : NULL;
		int32_t elem = in && in->elem ? in->elem : DT_FLOAT;
		if (CHANGED(c, 11) && val && val->f != 0 && elem != DT_FLOAT && elem != DT_DOUBLE)
			return reject(c, n, e, "pads a tensor that is neither float32 nor float64 "
					       "with a non-zero value");
		if (CHANGED(c, 11) && !onnx_find_attr(n, pads, NULL))
			return reject(c, n, e, "has no pads attribute");
		if (c->dry)
			return NN_OK;
		if (!CHANGED(c, 11)) {
			Onnx__AttributeProto *a = onnx_find_attr(n, "paddings", NULL);
			if (a) {
				char *nm = xstrdup("pads");
				if (!nm)
					return oom(e);
				free(a->name);
				a->name = nm;
			}
			return NN_OK;
		}
		if ((st = ints_attr_to_input(c, n, pads, 1, e)) != NN_OK)
			return st;
		if (val && val->f != 0 &&
		    (st = scalar_to_input(c, n, 2, "value", elem, val->f, e)) != NN_OK)
			return st;
		onnx_remove_attr(n, "value");
		return NN_OK;
	}
	if (streq(op, "TopK") && CHANGED(c, 10)) {
		Onnx__AttributeProto *k = onnx_find_attr(n, "k", NULL);
		if (!k || !k->has_i)
			return reject(c, n, e, "has no k attribute");
		if (c->dry)
			return NN_OK;
		struct tensor t;
		int64_t one = 1;
		tensor_view(&t, DT_INT64, 1, &one, &k->i);
		if ((st = add_input_const(c, n, 1, "k", &t, e)) != NN_OK)
			return st;
		onnx_remove_attr(n, "k");
		return NN_OK;
	}
	if ((streq(op, "Upsample") && c->to >= 10) || (streq(op, "Resize") && CHANGED(c, 11))) {
		if (!string_attr_is(n, "mode", "nearest", true) &&
		    !string_attr_is(n, "mode", "linear", false))
			return reject(c, n, e, "uses a mode other than nearest or linear");
		if (n->n_input < 2 && !onnx_find_attr(n, "scales", NULL))
			return reject(c, n, e, "has no scales");
		if (c->dry)
			return NN_OK;
		return convert_to_resize(c, n, e);
	}
	if ((streq(op, "Unsqueeze") || streq(op, "Squeeze") || streq(op, "ReduceSum")) &&
	    CHANGED(c, 13)) {
		if (streq(op, "Unsqueeze") && !onnx_find_attr(n, "axes", NULL))
			return reject(c, n, e, "has no axes attribute");
		if (c->dry)
			return NN_OK;
		return ints_attr_to_input(c, n, "axes", 1, e);
	}
	if (streq(op, "Split") && CHANGED(c, 13)) {
		if (c->dry || n->n_input >= 2)
			return NN_OK;
		return ints_attr_to_input(c, n, "split", 1, e);
	}
	if (op_in(op, reduce_ops_18) && CHANGED(c, 18)) {
		if (c->dry)
			return NN_OK;
		return ints_attr_to_input(c, n, "axes", 1, e);
	}
	if ((streq(op, "Softmax") || streq(op, "LogSoftmax") || streq(op, "Hardmax")) &&
	    CHANGED(c, 13)) {
		/* Before 13 these flatten the input to 2-D around `axis` (default
		 * 1); from 13 they work along `axis` (default -1). Equal only when
		 * the axis is the last one. */
		int64_t axis = onnx_node_int_attr(n, "axis", 1);
		const struct vinfo *in = n->n_input ? info_get(c, n->input[0]) : NULL;
		int rank = in ? in->rank : -1;
		int64_t norm = axis < 0 && rank >= 0 ? axis + rank : axis;
		bool ok = rank >= 0 ? norm == rank - 1 : axis == -1;
		if (!ok)
			return reject(c, n, e, rank >= 0 ?
				      "coerces its input to 2-D around a non-last axis; opset 13 "
				      "changed that meaning" :
				      "has an input of unknown rank, so its opset-13 meaning cannot "
				      "be checked");
		if (c->dry)
			return NN_OK;
		return onnx_node_set_int_attr(n, "axis", rank >= 0 ? rank - 1 : -1, e);
	}
	if (streq(op, "Reshape") && CHANGED(c, 5)) {
		if (!onnx_find_attr(n, "shape", NULL) && n->n_input < 2)
			return reject(c, n, e, "has no shape");
		if (c->dry)
			return NN_OK;
		return ints_attr_to_input(c, n, "shape", 1, e);
	}
	if (streq(op, "Concat") && CHANGED(c, 4)) {
		if (c->dry || onnx_find_attr(n, "axis", NULL))
			return NN_OK;
		return onnx_node_set_int_attr(n, "axis", 1, e);
	}
	if (streq(op, "Cast") && CHANGED(c, 6)) {
		Onnx__AttributeProto *to = onnx_find_attr(n, "to", NULL);
		if (!to || !to->has_s)
			return NN_OK;
		int32_t dt = cast_name_to_type((const char *)to->s.data, to->s.len);
		if (!dt)
			return reject(c, n, e, "casts to an unknown type name");
		if (c->dry)
			return NN_OK;
		return onnx_node_set_int_attr(n, "to", dt, e);
	}
	if (streq(op, "Scatter") && c->to >= 11) {
		if (c->dry)
			return NN_OK;
		/* Same semantics; Scatter was renamed ScatterElements at 11. */
		char *nm = xstrdup("ScatterElements");
		if (!nm)
			return oom(e);
		free(n->op_type);
		n->op_type = nm;
		return NN_OK;
	}
	if (streq(op, "Tile") && CHANGED(c, 6))
		return reject(c, n, e, "uses the opset-1 tiles/axis inputs");
	if (streq(op, "Scan") && CHANGED(c, 9))
		return reject(c, n, e, "uses opset-8 Scan batching");
	if ((streq(op, "LpPool") || streq(op, "GlobalLpPool")) && CHANGED(c, 2))
		return reject(c, n, e, "uses the opset-1 float p attribute");
	if ((streq(op, "RNN") || streq(op, "GRU") || streq(op, "LSTM")) && CHANGED(c, 7) &&
	    onnx_find_attr(n, "output_sequence", NULL))
		return reject(c, n, e, "uses the output_sequence attribute removed at opset 7");
	if (streq(op, "MeanVarianceNormalization") && CHANGED(c, 9))
		return reject(c, n, e, "uses the opset-1 attributes changed at opset 9");
	if (op_in(op, removed_at_10) && c->to >= 10)
		return reject(c, n, e, "is an experimental op removed at opset 10");
	if (streq(op, "GroupNormalization") && CHANGED(c, 21))
		return reject(c, n, e, "changed scale/bias shapes at opset 21");
	if ((streq(op, "DFT") || streq(op, "GridSample")) && CHANGED(c, 20))
		return reject(c, n, e, "changed its attributes at opset 20");
	return NN_OK;
}

static enum nn_status convert_graph(struct cvt *c, Onnx__GraphProto *g, int depth,
				    struct nn_err *e)
{
	if (depth > WIRE_MAX_DEPTH)
		return err_set(e, NN_EINVAL, "invalid_model", NULL, "subgraphs nested too deeply");
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *n = g->node[i];
		/* Subgraphs share the model's opset imports. */
		for (size_t j = 0; j < n->n_attribute; j++) {
			Onnx__AttributeProto *a = n->attribute[j];
			enum nn_status st;
			if (a->g && (st = convert_graph(c, a->g, depth + 1, e)) != NN_OK)
				return st;
			for (size_t k = 0; k < a->n_graphs; k++)
				if ((st = convert_graph(c, a->graphs[k], depth + 1, e)) != NN_OK)
					return st;
		}
		if (!is_default_domain(n->domain))
			continue;
		enum nn_status st = convert_node(c, n, e);
		if (st != NN_OK)
			return st;
	}
	return NN_OK;
}

/* The dry pass of a conversion from c->from to c->to: ranks and element
 * types from the graph, then every node checked against the rules of
 * convert_node without changing anything. onnx_raise_opset runs it before
 * converting; the summary runs it on a weightless skeleton of the model
 * (names, attributes, value infos, initializer dims and types: all that
 * infer_info and the dry rules read), so both give the same verdict. */
static enum nn_status raise_dry_run(struct cvt *c, struct nn_err *e)
{
	Onnx__GraphProto *g = c->m->proto->graph;
	if (c->from >= c->to || !g)
		return NN_OK;
	if (!infer_info(c, g))
		return oom(e);
	c->dry = true;
	enum nn_status st = convert_graph(c, g, 0, e);
	c->dry = false;
	return st;
}

static void cvt_free(struct cvt *c)
{
	wire_nameset_free(&c->names);
	wire_nameset_free(&c->all);
	free(c->vi);
}

enum nn_status onnx_raise_opset_dry(struct onnx_model *m, int64_t from, int64_t to,
				    const Onnx__NodeProto **rejected, const char **why,
				    struct nn_err *e)
{
	struct cvt c = { .m = m, .from = from, .to = to, .names = { .owns = true },
			 .all = { .owns = true } };
	enum nn_status st = raise_dry_run(&c, e);
	*rejected = c.rejected;
	*why = c.why;
	cvt_free(&c);
	return st;
}

enum nn_status onnx_raise_opset(struct onnx_model *m, int64_t version, struct nn_err *e)
{
	Onnx__ModelProto *p = m->proto;
	if (version < 1 || version > ONNX_MAX_OPSET)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_opset", NULL,
			       "cannot raise the opset to %lld: nncd converts up to opset %d",
			       (long long)version, ONNX_MAX_OPSET);
	Onnx__OperatorSetIdProto *imp = NULL;
	for (size_t i = 0; i < p->n_opset_import; i++)
		if (is_default_domain(p->opset_import[i]->domain))
			imp = p->opset_import[i];
	/* Without a default-domain import there is no old meaning to convert
	 * from: the import is added and nodes are left as they are. */
	int64_t from = imp ? (imp->has_version ? imp->version : 1) : version;
	enum nn_status st = NN_OK;
	struct cvt c = { .m = m, .from = from, .to = version, .names = { .owns = true },
			 .all = { .owns = true } };
	/* Reject before changing anything, so a refusal leaves the model as
	 * it was. */
	if ((st = raise_dry_run(&c, e)) != NN_OK)
		goto out;
	if (from < version && p->graph && (st = convert_graph(&c, p->graph, 0, e)) != NN_OK)
		goto out;
	if (!imp) {
		imp = malloc(sizeof *imp);
		if (!imp) {
			st = oom(e);
			goto out;
		}
		onnx__operator_set_id_proto__init(imp);
		if (!(imp->domain = xstrdup("")) ||
		    !push_ptr((void ***)&p->opset_import, &p->n_opset_import, imp)) {
			onnx__operator_set_id_proto__free_unpacked(imp, NULL);
			st = oom(e);
			goto out;
		}
	}
	if (from < version || !imp->has_version) {
		imp->has_version = 1;
		imp->version = version;
	}
	int64_t need = ir_for_opset(imp->version);
	if (!p->has_ir_version || p->ir_version < need) {
		p->has_ir_version = 1;
		p->ir_version = need;
	}
out:
	cvt_free(&c);
	return st;
}
