/* replace_act: the `replace_activation` step (see replace_act.h).
 *
 * Works on the proto directly: an index of the main graph's values (who
 * writes each, how many read it) finds the patterns; matched patterns are
 * rewritten (last node in place), the rest of their nodes deleted, and the
 * constants nobody reads any more removed. Everything attached to the model
 * is malloc'd, as onnx_free expects. */
#include "replace_act.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "prune.h"

#define SQRT2 1.4142135623730951
#define SQRT1_2 0.7071067811865476
#define SQRT_2_OVER_PI 0.7978845608028654
#define GELU_TANH_C 0.044715
#define MATCH_MAX_NODES 12

static const char *const FROM_NAMES[] = {"Gelu", "Sigmoid", "Tanh", "Swish", "Relu"};
static const char *const TO_NAMES[] = {"Relu", "HardSigmoid", "HardTanh", "HardSwish",
				       "LeakyRelu"};
/* The pair each source goes to, by enum ract_from. */
static const enum ract_to PAIR_TO[] = {RACT_TO_RELU, RACT_TO_HARD_SIGMOID, RACT_TO_HARD_TANH,
				       RACT_TO_HARD_SWISH, RACT_TO_LEAKY_RELU};
static const char PAIRS_TEXT[] = "Gelu -> Relu, Sigmoid -> HardSigmoid, Tanh -> HardTanh (or "
				 "Clip), Swish (or SiLU) -> HardSwish, Relu -> LeakyRelu";

/* PyTorch's hardsigmoid: relu6(x + 3) / 6. */
#define HARD_SIGMOID_ALPHA (1.0 / 6.0)
#define HARD_SIGMOID_BETA 0.5

static enum nn_status oom(struct nn_err *e)
{
	return err_set(e, NN_ENOMEM, "out_of_memory", "", "out of memory replacing activations");
}

static bool streq(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

static bool default_domain(const char *d)
{
	return !d || !*d || !strcmp(d, "ai.onnx");
}

/* ------------------------------------------------------------------ */
/* parameters                                                          */

static bool parse_from(const char *s, enum ract_from *out)
{
	for (size_t i = 0; i < sizeof FROM_NAMES / sizeof FROM_NAMES[0]; i++) {
		if (streq(s, FROM_NAMES[i])) {
			*out = (enum ract_from)i;
			return true;
		}
	}
	if (streq(s, "SiLU")) {
		*out = RACT_FROM_SWISH;
		return true;
	}
	return false;
}

static bool parse_to(const char *s, enum ract_to *out)
{
	for (size_t i = 0; i < sizeof TO_NAMES / sizeof TO_NAMES[0]; i++) {
		if (streq(s, TO_NAMES[i])) {
			*out = (enum ract_to)i;
			return true;
		}
	}
	if (streq(s, "Clip")) {
		*out = RACT_TO_HARD_TANH;
		return true;
	}
	return false;
}

enum nn_status ract_params_parse(const json_t *step, size_t index, struct ract_params *out,
				 struct nn_err *e)
{
	static const char *const keys[] = {"op", "from", "to", "nodes", "alpha", NULL};
	char field[128], got[96];
	enum nn_status st;
	memset(out, 0, sizeof *out);
	out->index = index;
	out->alpha = 0.01;
	if ((st = step_check_keys(step, index, "replace_activation", keys, e)) != NN_OK)
		return st;

	const json_t *from = json_object_get(step, "from"), *to = json_object_get(step, "to");
	snprintf(field, sizeof field, "steps[%zu].from", index);
	if (!from)
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "missing required field 'from'; supported pairs: %s", PAIRS_TEXT);
	if (!parse_from(json_string_value(from), &out->from))
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "unsupported activation %s to replace; supported pairs: %s",
			       step_describe_json(from, got, sizeof got), PAIRS_TEXT);
	snprintf(field, sizeof field, "steps[%zu].to", index);
	if (!to)
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "missing required field 'to'; supported pairs: %s", PAIRS_TEXT);
	if (!parse_to(json_string_value(to), &out->to) || PAIR_TO[out->from] != out->to) {
		const char *why = "";
		if (out->from == RACT_FROM_GELU && streq(json_string_value(to), "HardSwish"))
			why = " (HardSwish approximates x*sigmoid(x), which is GELU only with x "
			      "scaled by 1.702: unscaled it is further from GELU than Relu)";
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "unsupported pair %s -> %s%s; supported pairs: %s",
			       FROM_NAMES[out->from], step_describe_json(to, got, sizeof got), why,
			       PAIRS_TEXT);
	}

	const json_t *alpha = json_object_get(step, "alpha");
	if (alpha) {
		snprintf(field, sizeof field, "steps[%zu].alpha", index);
		if (out->to != RACT_TO_LEAKY_RELU)
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "alpha is LeakyRelu's slope and goes only with \"to\": "
				       "\"LeakyRelu\"");
		double a = json_is_number(alpha) ? json_number_value(alpha) : NAN;
		if (!(a > 0 && a < 1))
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "alpha must be a number in (0, 1), got %s",
				       step_describe_json(alpha, got, sizeof got));
		out->alpha = a;
	}

	const json_t *nodes = json_object_get(step, "nodes");
	if (nodes) {
		snprintf(field, sizeof field, "steps[%zu].nodes", index);
		size_t n = json_array_size(nodes);
		if (!json_is_array(nodes) || n == 0 || n > RACT_MAX_NODES)
			return err_set(e, NN_EINVAL, "invalid_spec", field,
				       "nodes must be an array of 1 to %d node names, got %s",
				       RACT_MAX_NODES,
				       json_is_array(nodes) ? (n ? "more" : "an empty array")
							    : step_describe_json(nodes, got, sizeof got));
		for (size_t k = 0; k < n; k++) {
			const json_t *v = json_array_get(nodes, k);
			const char *s = json_string_value(v);
			snprintf(field, sizeof field, "steps[%zu].nodes[%zu]", index, k);
			if (!s || !*s)
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "must be a node name, got %s",
					       step_describe_json(v, got, sizeof got));
			for (size_t j = 0; j < k; j++)
				if (streq(s, json_string_value(json_array_get(nodes, j))))
					return err_set(e, NN_EINVAL, "invalid_spec", field,
						       "node '%.80s' is listed twice (also "
						       "nodes[%zu])",
						       s, j);
		}
		out->nodes = nodes;
	}
	return NN_OK;
}

/* Operators (summary "ops" keys) one of which a model must hold for `from`
 * to have a chance of matching. NULL-terminated. */
static const char *const *source_ops(enum ract_from f)
{
	static const char *const gelu[] = {"Gelu", "Erf", "Tanh", NULL};
	static const char *const sigmoid[] = {"Sigmoid", NULL};
	static const char *const tanh_[] = {"Tanh", NULL};
	static const char *const relu[] = {"Relu", NULL};
	switch (f) {
	case RACT_FROM_GELU:
		return gelu;
	case RACT_FROM_SIGMOID:
	case RACT_FROM_SWISH:
		return sigmoid;
	case RACT_FROM_TANH:
		return tanh_;
	case RACT_FROM_RELU:
		break;
	}
	return relu;
}

enum nn_status ract_check_model(const struct ract_params *p, const json_t *summary,
				const json_t *steps, struct nn_err *e)
{
	char field[128];
	/* HardSwish raises the opset to 14, through 13: a model the summary says
	 * cannot reach 13 cannot reach 14 either. */
	const json_t *up = json_object_get(json_object_get(summary, "opset_upgrade"), "13");
	if (p->to == RACT_TO_HARD_SWISH && json_is_object(up)) {
		const char *node = json_string_value(json_object_get(up, "node"));
		const char *op = json_string_value(json_object_get(up, "op"));
		const char *why = json_string_value(json_object_get(up, "message"));
		snprintf(field, sizeof field, "steps[%zu].to", p->index);
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "HardSwish needs opset 14 and raising this model would change node "
			       "'%.80s' (%.40s): %.200s; re-export the model at opset >= 14",
			       node ? node : "?", op ? op : "?",
			       why ? why : "the conversion is not supported");
	}
	const json_t *ops = json_object_get(summary, "ops");
	if (!json_is_object(ops))
		return NN_OK;
	/* Earlier steps that may add what the summary does not show. */
	for (size_t i = 0; i < p->index && i < json_array_size(steps); i++) {
		const json_t *s = json_array_get(steps, i);
		const char *op = json_string_value(json_object_get(s, "op"));
		if (streq(op, "prune") || streq(op, "quantize") || streq(op, "sensitivity"))
			continue;
		if (streq(op, "replace_activation")) {
			enum ract_to t;
			if (!parse_to(json_string_value(json_object_get(s, "to")), &t) ||
			    !(p->from == RACT_FROM_RELU && t == RACT_TO_RELU))
				continue;
		}
		return NN_OK;
	}
	const char *const *need = source_ops(p->from);
	for (size_t k = 0; need[k]; k++)
		if (json_object_get(ops, need[k]))
			return NN_OK;
	snprintf(field, sizeof field, "steps[%zu].from", p->index);
	return err_set(e, NN_EINVAL, "invalid_spec", field,
		       "the model has no %s activation to replace (it has no %s node)",
		       FROM_NAMES[p->from],
		       p->from == RACT_FROM_GELU ? "Gelu, Erf or Tanh"
		       : p->from == RACT_FROM_SWISH ? "Sigmoid"
						     : source_ops(p->from)[0]);
}

/* ------------------------------------------------------------------ */
/* value index of the main graph                                       */

struct value {
	const char *name; /* borrowed from the proto; NULL = empty slot */
	int producer;     /* node index, -1 for initializers / graph inputs */
	int readers;      /* node inputs naming it (+1 per subgraph use, +1 if a graph output) */
	int last_reader;
	bool initializer, graph_input;
};

struct gindex {
	const Onnx__GraphProto *g;
	struct value *v;
	size_t cap; /* power of two */
	bool init_is_const_input; /* IR < 4: initializers are listed among inputs */
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* The slot of name (creating it when `add`); NULL when absent (or name empty). */
static struct value *lookup(struct gindex *x, const char *name, bool add)
{
	if (!name || !*name)
		return NULL;
	size_t i = (size_t)hash_str(name) & (x->cap - 1);
	while (x->v[i].name) {
		if (!strcmp(x->v[i].name, name))
			return &x->v[i];
		i = (i + 1) & (x->cap - 1);
	}
	if (!add)
		return NULL;
	x->v[i].name = name;
	x->v[i].producer = -1;
	x->v[i].last_reader = -1;
	return &x->v[i];
}

/* Every name a subgraph reads counts as one more reader (it may come from
 * the outer scope). */
static void mark_subgraph_reads(struct gindex *x, const Onnx__GraphProto *g, int depth)
{
	if (depth > 32)
		return;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		for (size_t j = 0; j < n->n_input; j++) {
			struct value *v = lookup(x, n->input[j], false);
			if (v)
				v->readers++;
		}
		for (size_t j = 0; j < n->n_attribute; j++) {
			const Onnx__AttributeProto *a = n->attribute[j];
			if (a->g)
				mark_subgraph_reads(x, a->g, depth + 1);
			for (size_t k = 0; k < a->n_graphs; k++)
				mark_subgraph_reads(x, a->graphs[k], depth + 1);
		}
	}
	for (size_t i = 0; i < g->n_output; i++) {
		struct value *v = lookup(x, g->output[i]->name, false);
		if (v)
			v->readers++;
	}
}

static void gindex_free(struct gindex *x)
{
	free(x->v);
	x->v = NULL;
}

static enum nn_status gindex_build(const struct onnx_model *m, struct gindex *x, struct nn_err *e)
{
	const Onnx__GraphProto *g = m->proto->graph;
	memset(x, 0, sizeof *x);
	x->g = g;
	x->init_is_const_input = m->proto->has_ir_version && m->proto->ir_version < 4;
	size_t names = g->n_initializer + g->n_input + g->n_output;
	for (size_t i = 0; i < g->n_node; i++)
		names += g->node[i]->n_input + g->node[i]->n_output;
	size_t cap = 16;
	while (cap < 2 * names + 16) {
		if (cap > SIZE_MAX / 4)
			return oom(e);
		cap *= 2;
	}
	x->cap = cap;
	if (!(x->v = calloc(cap, sizeof *x->v)))
		return oom(e);
	for (size_t i = 0; i < g->n_initializer; i++) {
		struct value *v = lookup(x, g->initializer[i]->name, true);
		if (v)
			v->initializer = true;
	}
	for (size_t i = 0; i < g->n_input; i++) {
		struct value *v = lookup(x, g->input[i]->name, true);
		if (v)
			v->graph_input = true;
	}
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		for (size_t j = 0; j < n->n_output; j++) {
			struct value *v = lookup(x, n->output[j], true);
			if (v)
				v->producer = (int)i;
		}
		for (size_t j = 0; j < n->n_input; j++) {
			struct value *v = lookup(x, n->input[j], true);
			if (v) {
				v->readers++;
				v->last_reader = (int)i;
			}
		}
	}
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		for (size_t j = 0; j < n->n_attribute; j++) {
			const Onnx__AttributeProto *a = n->attribute[j];
			if (a->g)
				mark_subgraph_reads(x, a->g, 1);
			for (size_t k = 0; k < a->n_graphs; k++)
				mark_subgraph_reads(x, a->graphs[k], 1);
		}
	}
	for (size_t i = 0; i < g->n_output; i++) {
		struct value *v = lookup(x, g->output[i]->name, true);
		if (v)
			v->readers++; /* a graph output is read by the caller */
	}
	return NN_OK;
}

static const Onnx__NodeProto *node_at(const struct gindex *x, int i)
{
	return i >= 0 && (size_t)i < x->g->n_node ? x->g->node[i] : NULL;
}

static bool node_is(const Onnx__NodeProto *n, const char *op)
{
	return n && default_domain(n->domain) && streq(n->op_type, op);
}

/* The one node reading `name` (and nothing else reads it), else -1. */
static int sole_reader(struct gindex *x, const char *name)
{
	struct value *v = lookup(x, name, false);
	return v && v->readers == 1 ? v->last_reader : -1;
}

static int producer(struct gindex *x, const char *name)
{
	struct value *v = lookup(x, name, false);
	return v ? v->producer : -1;
}

/* A float32 tensor holding one element: its value and rank. */
static bool tensor_scalar(const Onnx__TensorProto *t, double *val, size_t *rank)
{
	if (!t || !t->has_data_type || t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ||
	    t->n_external_data || t->segment)
		return false;
	for (size_t d = 0; d < t->n_dims; d++)
		if (t->dims[d] != 1)
			return false;
	float f;
	if (t->has_raw_data && t->raw_data.len == sizeof f)
		memcpy(&f, t->raw_data.data, sizeof f);
	else if (!t->has_raw_data && t->n_float_data == 1)
		f = t->float_data[0];
	else
		return false;
	*val = f;
	*rank = t->n_dims;
	return true;
}

/* Rank of value `name` when the graph declares its type, else -1. */
static int declared_rank(const Onnx__GraphProto *g, const char *name)
{
	Onnx__ValueInfoProto *const *lists[] = {g->input, g->value_info, g->output};
	size_t counts[] = {g->n_input, g->n_value_info, g->n_output};
	for (size_t l = 0; l < 3; l++) {
		for (size_t i = 0; i < counts[l]; i++) {
			const Onnx__ValueInfoProto *vi = lists[l][i];
			if (!streq(vi->name, name))
				continue;
			const Onnx__TypeProto *t = vi->type;
			if (t && t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE &&
			    t->tensor_type && t->tensor_type->shape)
				return (int)t->tensor_type->shape->n_dim;
			return -1;
		}
	}
	return -1;
}

/* `name` is a float32 scalar constant (initializer that no graph input can
 * override, or a Constant node) within 1e-6 relative of want, and its rank
 * cannot broadcast x to a higher rank. */
static bool const_is(struct gindex *x, const char *name, double want, const char *xname)
{
	struct value *v = lookup(x, name, false);
	if (!v)
		return false;
	double val = 0;
	size_t rank = 0;
	bool ok = false;
	if (v->initializer && (!v->graph_input || x->init_is_const_input)) {
		const Onnx__GraphProto *g = x->g;
		for (size_t i = 0; i < g->n_initializer && !ok; i++)
			if (streq(g->initializer[i]->name, name))
				ok = tensor_scalar(g->initializer[i], &val, &rank);
	} else if (v->producer >= 0 && !v->graph_input) {
		const Onnx__NodeProto *c = node_at(x, v->producer);
		if (!node_is(c, "Constant") || c->n_output != 1 || c->n_attribute != 1)
			return false;
		const Onnx__AttributeProto *a = c->attribute[0];
		if (streq(a->name, "value") && a->t) {
			ok = tensor_scalar(a->t, &val, &rank);
		} else if (streq(a->name, "value_float") && a->has_f) {
			val = a->f;
			rank = 0;
			ok = true;
		}
	}
	if (!ok || fabs(val - want) > 1e-6 * fabs(want))
		return false;
	if (rank == 0)
		return true;
	int xr = declared_rank(x->g, xname);
	return xr >= 0 && (size_t)xr >= rank;
}

/* For a two-input node, the slot (0/1) holding a constant near want whose
 * other input is not a constant; -1 if none. */
static int const_slot(struct gindex *x, const Onnx__NodeProto *n, double want)
{
	if (!n || n->n_input != 2 || n->n_output != 1)
		return -1;
	for (int s = 0; s < 2; s++)
		if (const_is(x, n->input[s], want, n->input[1 - s]))
			return s;
	return -1;
}

/* ------------------------------------------------------------------ */
/* matching                                                            */

struct match {
	int core;  /* the activation node whose name the replacement takes */
	int last;  /* the node rewritten in place */
	int nodes[MATCH_MAX_NODES];
	int n_nodes;
	const char *x; /* the activation's input (borrowed from the proto) */
	const char *pattern;
	int dtype; /* x's element type (for Clip's bounds), set before rewriting */
	bool selected;
};

static void add_node(struct match *mt, int i)
{
	if (mt->n_nodes < MATCH_MAX_NODES)
		mt->nodes[mt->n_nodes++] = i;
}

/* Common GELU tail after the Erf/Tanh node `core` whose output is t:
 *   a = t + 1; then m = x * a; y = m * 0.5   or   h = x * 0.5; y = h * a. */
static bool match_gelu_tail(struct gindex *x, int core, const char *xn, struct match *mt)
{
	const Onnx__NodeProto *c = node_at(x, core);
	if (!c || c->n_output != 1)
		return false;
	int ai = sole_reader(x, c->output[0]);
	const Onnx__NodeProto *a = node_at(x, ai);
	int s = const_slot(x, a, 1.0);
	if (!node_is(a, "Add") || s < 0 || !streq(a->input[1 - s], c->output[0]))
		return false;
	int mi = sole_reader(x, a->output[0]);
	const Onnx__NodeProto *mn = node_at(x, mi);
	if (!node_is(mn, "Mul") || mn->n_input != 2 || mn->n_output != 1)
		return false;
	int aslot = streq(mn->input[0], a->output[0]) ? 0 : 1;
	const char *other = mn->input[1 - aslot];
	add_node(mt, ai);
	add_node(mt, mi);
	if (streq(other, xn)) { /* m = x * a; y = m * 0.5 */
		int hi = sole_reader(x, mn->output[0]);
		const Onnx__NodeProto *h = node_at(x, hi);
		int hs = const_slot(x, h, 0.5);
		if (!node_is(h, "Mul") || hs < 0 || !streq(h->input[1 - hs], mn->output[0]))
			return false;
		add_node(mt, hi);
		mt->last = hi;
		return true;
	}
	/* h = x * 0.5, read only by m; y = h * a */
	int hi = producer(x, other);
	const Onnx__NodeProto *h = node_at(x, hi);
	int hs = const_slot(x, h, 0.5);
	if (!node_is(h, "Mul") || hs < 0 || !streq(h->input[1 - hs], xn) ||
	    sole_reader(x, other) != mi)
		return false;
	add_node(mt, hi);
	mt->last = mi;
	return true;
}

/* Erf node ei: d = x / sqrt(2) (or x * 1/sqrt(2), either order); e = Erf(d). */
static bool match_erf(struct gindex *x, int ei, struct match *mt)
{
	const Onnx__NodeProto *en = node_at(x, ei);
	if (en->n_input != 1 || en->n_output != 1)
		return false;
	int di = producer(x, en->input[0]);
	const Onnx__NodeProto *d = node_at(x, di);
	if (!d || d->n_input != 2 || d->n_output != 1 || sole_reader(x, d->output[0]) != ei)
		return false;
	int xs;
	if (node_is(d, "Div")) {
		if (!const_is(x, d->input[1], SQRT2, d->input[0]))
			return false;
		xs = 0;
	} else if (node_is(d, "Mul")) {
		int cs = const_slot(x, d, SQRT1_2);
		if (cs < 0)
			return false;
		xs = 1 - cs;
	} else {
		return false;
	}
	const char *xn = d->input[xs];
	if (!xn || !*xn)
		return false;
	*mt = (struct match){.core = ei, .x = xn, .pattern = "Erf pattern"};
	add_node(mt, di);
	add_node(mt, ei);
	return match_gelu_tail(x, ei, xn, mt);
}

/* The cube of x as p: Mul(x, Mul(x, x)) in either order (Pow(x, 3) is not
 * matched: nncd's executor has no Pow, so it could not verify the model). */
static bool match_cube(struct gindex *x, const char *p, const char *xn, struct match *mt)
{
	int pi = producer(x, p);
	const Onnx__NodeProto *pn = node_at(x, pi);
	if (!pn || pn->n_output != 1 || pn->n_input != 2)
		return false;
	if (!node_is(pn, "Mul"))
		return false;
	int xs = streq(pn->input[0], xn) ? 0 : streq(pn->input[1], xn) ? 1 : -1;
	if (xs < 0)
		return false;
	const char *sq = pn->input[1 - xs];
	int qi = producer(x, sq);
	const Onnx__NodeProto *q = node_at(x, qi);
	if (!node_is(q, "Mul") || q->n_input != 2 || !streq(q->input[0], xn) ||
	    !streq(q->input[1], xn) || sole_reader(x, sq) != pi)
		return false;
	add_node(mt, pi);
	add_node(mt, qi);
	return true;
}

/* Tanh node ti: t = Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)), operands in
 * either order (PyTorch's approximate="tanh" export). */
static bool match_gelu_tanh(struct gindex *x, int ti, struct match *mt)
{
	const Onnx__NodeProto *tn = node_at(x, ti);
	if (tn->n_input != 1 || tn->n_output != 1)
		return false;
	int si = producer(x, tn->input[0]);
	const Onnx__NodeProto *sn = node_at(x, si);
	int cs = const_slot(x, sn, SQRT_2_OVER_PI);
	if (!node_is(sn, "Mul") || cs < 0 || sole_reader(x, sn->output[0]) != ti)
		return false;
	const char *sum = sn->input[1 - cs];
	int ai = producer(x, sum);
	const Onnx__NodeProto *an = node_at(x, ai);
	if (!node_is(an, "Add") || an->n_input != 2 || an->n_output != 1 ||
	    sole_reader(x, sum) != si)
		return false;
	for (int k = 0; k < 2; k++) {
		const char *xn = an->input[k], *cube_term = an->input[1 - k];
		if (!xn || !*xn)
			continue;
		int ci = producer(x, cube_term);
		const Onnx__NodeProto *cn = node_at(x, ci);
		int ks = const_slot(x, cn, GELU_TANH_C);
		if (!node_is(cn, "Mul") || ks < 0 || sole_reader(x, cube_term) != ai)
			continue;
		*mt = (struct match){.core = ti, .x = xn, .pattern = "tanh pattern"};
		add_node(mt, si);
		add_node(mt, ai);
		add_node(mt, ci);
		add_node(mt, ti);
		if (!match_cube(x, cn->input[1 - ks], xn, mt) || sole_reader(x, cn->input[1 - ks]) != ci)
			continue;
		if (match_gelu_tail(x, ti, xn, mt))
			return true;
	}
	return false;
}

/* Sigmoid node si: y = x * Sigmoid(x), either order. */
static bool match_swish(struct gindex *x, int si, struct match *mt)
{
	const Onnx__NodeProto *sn = node_at(x, si);
	if (sn->n_input != 1 || sn->n_output != 1 || !sn->input[0] || !*sn->input[0])
		return false;
	int mi = sole_reader(x, sn->output[0]);
	const Onnx__NodeProto *mn = node_at(x, mi);
	if (!node_is(mn, "Mul") || mn->n_input != 2 || mn->n_output != 1)
		return false;
	int ss = streq(mn->input[0], sn->output[0]) ? 0 : 1;
	if (!streq(mn->input[1 - ss], sn->input[0]))
		return false;
	*mt = (struct match){.core = si, .last = mi, .x = sn->input[0], .pattern = "Swish pattern"};
	add_node(mt, si);
	add_node(mt, mi);
	return true;
}

static bool match_single(const Onnx__NodeProto *n, int i, const char *pattern, struct match *mt)
{
	if (n->n_input < 1 || n->n_output != 1 || !n->input[0] || !*n->input[0])
		return false;
	*mt = (struct match){.core = i, .last = i, .x = n->input[0], .pattern = pattern};
	add_node(mt, i);
	return true;
}

/* Tries node i as the activation node of a `from` match. */
static bool match_at(struct gindex *x, enum ract_from from, int i, struct match *mt)
{
	const Onnx__NodeProto *n = node_at(x, i);
	switch (from) {
	case RACT_FROM_GELU:
		if (node_is(n, "Gelu"))
			return match_single(n, i, "Gelu op", mt);
		if (node_is(n, "Erf"))
			return match_erf(x, i, mt);
		if (node_is(n, "Tanh"))
			return match_gelu_tanh(x, i, mt);
		return false;
	case RACT_FROM_SIGMOID:
		return node_is(n, "Sigmoid") && match_single(n, i, "Sigmoid op", mt);
	case RACT_FROM_TANH:
		return node_is(n, "Tanh") && match_single(n, i, "Tanh op", mt);
	case RACT_FROM_SWISH:
		return node_is(n, "Sigmoid") && match_swish(x, i, mt);
	case RACT_FROM_RELU:
		return node_is(n, "Relu") && match_single(n, i, "Relu op", mt);
	}
	return false;
}

/* Every match of `from` in node order; a node belongs to one match at most. */
static enum nn_status find_matches(struct gindex *x, enum ract_from from, struct match **out,
				   size_t *count, struct nn_err *e)
{
	size_t n = x->g->n_node, cap = 0, cnt = 0;
	struct match *ms = NULL;
	bool *used = calloc(n ? n : 1, sizeof *used);
	if (!used)
		return oom(e);
	for (size_t i = 0; i < n; i++) {
		struct match mt;
		if (used[i] || !match_at(x, from, (int)i, &mt) || mt.n_nodes >= MATCH_MAX_NODES)
			continue;
		bool clash = false;
		for (int k = 0; k < mt.n_nodes; k++)
			clash |= used[mt.nodes[k]];
		if (clash)
			continue;
		if (cnt == cap) {
			size_t nc = cap ? 2 * cap : 16;
			struct match *g = realloc(ms, nc * sizeof *g);
			if (!g) {
				free(ms);
				free(used);
				return oom(e);
			}
			ms = g;
			cap = nc;
		}
		for (int k = 0; k < mt.n_nodes; k++)
			used[mt.nodes[k]] = true;
		ms[cnt++] = mt;
	}
	free(used);
	*out = ms;
	*count = cnt;
	return NN_OK;
}

/* Marks the matches `nodes` selects (all without a list); a listed name
 * that is in no match is an error naming it and what it is. */
static enum nn_status select_matches(const struct gindex *x, const struct ract_params *p,
				     struct match *ms, size_t n, struct nn_err *e)
{
	if (!p->nodes) {
		for (size_t i = 0; i < n; i++)
			ms[i].selected = true;
		return NN_OK;
	}
	for (size_t k = 0; k < json_array_size(p->nodes); k++) {
		const char *want = json_string_value(json_array_get(p->nodes, k));
		bool found = false;
		for (size_t i = 0; i < n; i++) {
			for (int j = 0; j < ms[i].n_nodes; j++) {
				if (streq(node_at(x, ms[i].nodes[j])->name, want)) {
					ms[i].selected = found = true;
					break;
				}
			}
		}
		if (found)
			continue;
		char field[128];
		snprintf(field, sizeof field, "steps[%zu].nodes[%zu]", p->index, k);
		for (size_t i = 0; i < x->g->n_node; i++) {
			const Onnx__NodeProto *nd = x->g->node[i];
			if (streq(nd->name, want))
				return err_set(e, NN_EINVAL, "invalid_spec", field,
					       "node '%.80s' (%.40s) is not part of a %s activation "
					       "nncd replaces",
					       want, nd->op_type ? nd->op_type : "?",
					       FROM_NAMES[p->from]);
		}
		return err_set(e, NN_EINVAL, "invalid_spec", field,
			       "the model has no node named '%.80s'", want);
	}
	return NN_OK;
}

/* ------------------------------------------------------------------ */
/* rewriting                                                           */

static Onnx__AttributeProto *float_attr(const char *name, double value)
{
	Onnx__AttributeProto *a = malloc(sizeof *a);
	if (!a)
		return NULL;
	onnx__attribute_proto__init(a);
	if (!(a->name = strdup(name))) {
		free(a);
		return NULL;
	}
	a->has_type = 1;
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
	a->has_f = 1;
	a->f = (float)value;
	return a;
}

static void clear_attrs(Onnx__NodeProto *n)
{
	for (size_t i = 0; i < n->n_attribute; i++)
		onnx__attribute_proto__free_unpacked(n->attribute[i], NULL);
	free(n->attribute);
	n->attribute = NULL;
	n->n_attribute = 0;
}

/* Sets n's attributes to the given float ones (n has none when called). */
static enum nn_status set_float_attrs(Onnx__NodeProto *n, const char *const *names,
				      const double *values, size_t count, struct nn_err *e)
{
	if (!count)
		return NN_OK;
	if (!(n->attribute = calloc(count, sizeof *n->attribute)))
		return oom(e);
	for (size_t i = 0; i < count; i++) {
		if (!(n->attribute[i] = float_attr(names[i], values[i])))
			return oom(e);
		n->n_attribute++;
	}
	return NN_OK;
}

/* Replaces n's inputs with a copy of `names`. */
static enum nn_status set_inputs(Onnx__NodeProto *n, const char *const *names, size_t count,
				 struct nn_err *e)
{
	char **in = calloc(count, sizeof *in);
	if (!in)
		return oom(e);
	for (size_t i = 0; i < count; i++) {
		if (!(in[i] = strdup(names[i]))) {
			for (size_t j = 0; j < i; j++)
				free(in[j]);
			free(in);
			return oom(e);
		}
	}
	for (size_t i = 0; i < n->n_input; i++)
		free(n->input[i]);
	free(n->input);
	n->input = in;
	n->n_input = count;
	return NN_OK;
}

static enum nn_status set_string(char **slot, const char *value, struct nn_err *e)
{
	char *s = NULL;
	if (value && !(s = strdup(value)))
		return oom(e);
	free(*slot);
	*slot = s;
	return NN_OK;
}

/* Element type of value `name`: declared in the graph, or the `to` of the
 * Cast writing it, else float32 (what nncd's graphs compute in). */
static int value_elem_type(struct gindex *x, const char *name)
{
	const Onnx__GraphProto *g = x->g;
	Onnx__ValueInfoProto *const *lists[] = {g->input, g->value_info, g->output};
	size_t counts[] = {g->n_input, g->n_value_info, g->n_output};
	for (size_t l = 0; l < 3; l++) {
		for (size_t i = 0; i < counts[l]; i++) {
			const Onnx__TypeProto *t = lists[l][i]->type;
			if (streq(lists[l][i]->name, name) && t &&
			    t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && t->tensor_type &&
			    t->tensor_type->has_elem_type)
				return t->tensor_type->elem_type;
		}
	}
	const Onnx__NodeProto *c = node_at(x, producer(x, name));
	if (node_is(c, "Cast"))
		return (int)onnx_node_int_attr(c, "to", DT_FLOAT);
	return DT_FLOAT;
}

/* Names of the shared Clip bounds per element type (float, double, float16,
 * bfloat16: at most 4 entries), created on first use. */
struct clip_bounds {
	int dtype;
	char *min, *max;
};

static enum nn_status add_scalar(struct onnx_model *m, const char *base, int dtype, double v,
				 char **name, struct nn_err *e)
{
	struct tensor t;
	enum nn_status st = tensor_alloc(&t, (enum dtype)dtype, 0, NULL, e);
	if (st != NN_OK)
		return st;
	if (dtype == DT_FLOAT) {
		*(float *)t.data = (float)v;
	} else if (dtype == DT_DOUBLE) {
		*(double *)t.data = v;
	} else { /* +-1 in float16 / bfloat16 */
		uint16_t bits = dtype == DT_FLOAT16 ? (v < 0 ? 0xBC00 : 0x3C00)
						    : (v < 0 ? 0xBF80 : 0x3F80);
		memcpy(t.data, &bits, sizeof bits);
	}
	if (!(*name = onnx_unique_name(m, base))) {
		tensor_free(&t);
		return oom(e);
	}
	st = onnx_add_initializer_take(m, *name, &t, e);
	tensor_free(&t);
	return st;
}

static enum nn_status clip_bounds_for(struct onnx_model *m, struct clip_bounds *cb, size_t *n_cb,
				      int dtype, const struct clip_bounds **out, struct nn_err *e)
{
	for (size_t i = 0; i < *n_cb; i++) {
		if (cb[i].dtype == dtype) {
			*out = &cb[i];
			return NN_OK;
		}
	}
	if (dtype != DT_FLOAT && dtype != DT_DOUBLE && dtype != DT_FLOAT16 && dtype != DT_BFLOAT16)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_model", "",
			       "Tanh reads a tensor of element type %d; Tanh and Clip take float, "
			       "double, float16 or bfloat16",
			       dtype);
	struct clip_bounds *b = &cb[*n_cb];
	*b = (struct clip_bounds){.dtype = dtype};
	(*n_cb)++;
	enum nn_status st = add_scalar(m, "hardtanh_min", dtype, -1.0, &b->min, e);
	if (st == NN_OK)
		st = add_scalar(m, "hardtanh_max", dtype, 1.0, &b->max, e);
	*out = b;
	return st;
}

/* Rewrites match mt's last node into the replacement activation. Reads x
 * only through node_at: the value index borrows names from node inputs,
 * which rewriting frees. */
static enum nn_status rewrite(struct onnx_model *m, struct gindex *x, const struct match *mt,
			      const struct ract_params *p, struct clip_bounds *cb, size_t *n_cb,
			      struct nn_err *e)
{
	Onnx__NodeProto *last = x->g->node[mt->last];
	const Onnx__NodeProto *core = x->g->node[mt->core];
	enum nn_status st;
	const char *inputs[3] = {mt->x, NULL, NULL};
	size_t n_inputs = 1;
	const char *attr_names[2];
	double attr_values[2];
	size_t n_attrs = 0;
	const char *op = TO_NAMES[p->to];
	switch (p->to) {
	case RACT_TO_RELU:
	case RACT_TO_HARD_SWISH:
		break;
	case RACT_TO_HARD_SIGMOID:
		attr_names[0] = "alpha";
		attr_values[0] = HARD_SIGMOID_ALPHA;
		attr_names[1] = "beta";
		attr_values[1] = HARD_SIGMOID_BETA;
		n_attrs = 2;
		break;
	case RACT_TO_LEAKY_RELU:
		attr_names[0] = "alpha";
		attr_values[0] = p->alpha;
		n_attrs = 1;
		break;
	case RACT_TO_HARD_TANH:
		op = "Clip";
		if (onnx_opset(m) >= 11) { /* min/max are inputs from Clip-11 */
			const struct clip_bounds *b = NULL;
			if ((st = clip_bounds_for(m, cb, n_cb, mt->dtype, &b, e)) != NN_OK)
				return st;
			inputs[1] = b->min;
			inputs[2] = b->max;
			n_inputs = 3;
		} else {
			attr_names[0] = "min";
			attr_values[0] = -1.0;
			attr_names[1] = "max";
			attr_values[1] = 1.0;
			n_attrs = 2;
		}
		break;
	}
	/* copy x before the inputs it may point into are freed */
	char *xcopy = strdup(mt->x);
	if (!xcopy)
		return oom(e);
	inputs[0] = xcopy;
	st = set_inputs(last, inputs, n_inputs, e);
	free(xcopy);
	if (st != NN_OK)
		return st;
	if ((st = set_string(&last->op_type, op, e)) != NN_OK)
		return st;
	if (last != core && (st = set_string(&last->name, core->name, e)) != NN_OK)
		return st;
	clear_attrs(last);
	return set_float_attrs(last, attr_names, attr_values, n_attrs, e);
}

/* Copies of the names the nodes flagged in `touched` read or write (called
 * before they are rewritten or freed): the candidates for cleanup. */
static enum nn_status collect_names(const Onnx__GraphProto *g, const bool *touched,
				    char ***out, size_t *count, struct nn_err *e)
{
	size_t n_names = 0, cap = 0;
	char **names = NULL;
	for (size_t i = 0; i < g->n_node; i++) {
		if (!touched[i])
			continue;
		const Onnx__NodeProto *n = g->node[i];
		size_t need = n_names + n->n_input + n->n_output;
		if (need > cap) {
			size_t nc = need * 2 + 16;
			char **gr = realloc(names, nc * sizeof *gr);
			if (!gr)
				goto nomem;
			names = gr;
			cap = nc;
		}
		for (size_t j = 0; j < n->n_input + n->n_output; j++) {
			const char *s = j < n->n_input ? n->input[j] : n->output[j - n->n_input];
			if (!s || !*s)
				continue;
			if (!(names[n_names] = strdup(s)))
				goto nomem;
			n_names++;
		}
	}
	*out = names;
	*count = n_names;
	return NN_OK;
nomem:
	for (size_t k = 0; k < n_names; k++)
		free(names[k]);
	free(names);
	return oom(e);
}

/* Deletes the nodes flagged in `drop`, then the constants (initializers,
 * Constant nodes) and value_info entries among `names` that nothing reads or
 * writes any more. */
static enum nn_status delete_nodes(struct onnx_model *m, const bool *drop, char *const *names,
				   size_t n_names, struct nn_err *e)
{
	Onnx__GraphProto *g = m->proto->graph;
	struct gindex x;
	enum nn_status st;
	size_t kept = 0;
	for (size_t i = 0; i < g->n_node; i++) {
		if (drop[i])
			onnx__node_proto__free_unpacked(g->node[i], NULL);
		else
			g->node[kept++] = g->node[i];
	}
	g->n_node = kept;

	/* What nobody reads any more, decided on an index of the graph without
	 * the dropped nodes; nothing is freed while the index (which borrows
	 * names from the proto) is alive. */
	if ((st = gindex_build(m, &x, e)) != NN_OK)
		return st;
	bool *dead_const = calloc(g->n_node ? g->n_node : 1, sizeof *dead_const);
	bool *dead_init = calloc(n_names ? n_names : 1, sizeof *dead_init);
	bool *dead_vi = calloc(g->n_value_info ? g->n_value_info : 1, sizeof *dead_vi);
	if (!dead_const || !dead_init || !dead_vi) {
		free(dead_const);
		free(dead_init);
		free(dead_vi);
		gindex_free(&x);
		return oom(e);
	}
	for (size_t k = 0; k < n_names; k++) {
		struct value *v = lookup(&x, names[k], false);
		if (!v || v->readers)
			continue;
		const Onnx__NodeProto *c = node_at(&x, v->producer);
		if (node_is(c, "Constant") && c->n_output == 1 && c->n_input == 0)
			dead_const[v->producer] = true;
		else if (v->producer < 0 && v->initializer &&
			 (!v->graph_input || x.init_is_const_input))
			dead_init[k] = true;
	}
	/* value_info of the values the dropped nodes (or dead Constants) wrote */
	for (size_t i = 0; i < g->n_value_info; i++) {
		const char *vn = g->value_info[i]->name;
		struct value *v = lookup(&x, vn, false);
		bool gone = !v || (v->producer < 0 && !v->initializer && !v->graph_input) ||
			    (v->producer >= 0 && dead_const[v->producer]) ||
			    (v->initializer && !v->readers);
		bool ours = false;
		for (size_t k = 0; k < n_names && !ours; k++)
			ours = streq(names[k], vn);
		dead_vi[i] = gone && ours;
	}
	gindex_free(&x);
	kept = 0;
	for (size_t i = 0; i < g->n_node; i++) {
		if (dead_const[i])
			onnx__node_proto__free_unpacked(g->node[i], NULL);
		else
			g->node[kept++] = g->node[i];
	}
	g->n_node = kept;
	kept = 0;
	for (size_t i = 0; i < g->n_value_info; i++) {
		if (dead_vi[i])
			onnx__value_info_proto__free_unpacked(g->value_info[i], NULL);
		else
			g->value_info[kept++] = g->value_info[i];
	}
	g->n_value_info = kept;
	for (size_t k = 0; k < n_names; k++)
		if (dead_init[k])
			onnx_remove_initializer(m, names[k]);
	free(dead_const);
	free(dead_init);
	free(dead_vi);
	return NN_OK;
}

static json_t *match_json(const struct gindex *x, const struct match *mt)
{
	json_t *o = json_object();
	const char *name = node_at(x, mt->core)->name;
	if (!o || step_json_set(o, "name", name && *name ? json_string(name) : json_null()) ||
	    step_json_set(o, "pattern", json_string(mt->pattern))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

enum nn_status ract_run(struct onnx_model *m, const struct ract_params *p,
			const struct step_ctx *ctx, json_t **metrics, struct nn_err *e)
{
	*metrics = NULL;
	if (!m || !m->proto || !m->proto->graph)
		return err_set(e, NN_EINVAL, "invalid_model", "", "model has no graph");
	if (step_canceled(ctx))
		return err_set(e, NN_ECANCELED, "canceled", "", "canceled");
	struct gindex x = {0};
	struct match *ms = NULL;
	size_t n = 0, n_cb = 0;
	struct clip_bounds cb[4] = {{0}};
	bool *drop = NULL, *touched = NULL;
	char **names = NULL;
	size_t n_names = 0;
	json_t *out = NULL, *list = NULL;
	uint64_t params_before, params_after, nonzeros;
	prune_model_counts(m, &params_before, &nonzeros);
	enum nn_status st;
	char field[128];
	snprintf(field, sizeof field, "steps[%zu].from", p->index);

	for (int pass = 0; pass < 2; pass++) {
		if ((st = gindex_build(m, &x, e)) != NN_OK)
			goto done;
		if ((st = find_matches(&x, p->from, &ms, &n, e)) != NN_OK)
			goto done;
		if ((st = select_matches(&x, p, ms, n, e)) != NN_OK)
			goto done;
		if (n == 0) {
			st = err_set(e, NN_EINVAL, "nothing_to_replace", field,
				     "the model has no %s activation nncd can replace (it looks "
				     "for %s); nothing was replaced",
				     FROM_NAMES[p->from],
				     p->from == RACT_FROM_GELU
					     ? "Gelu nodes, PyTorch's Erf pattern x*0.5*(1+Erf(x/"
					       "sqrt(2))) and its tanh approximation"
				     : p->from == RACT_FROM_SWISH ? "x * Sigmoid(x)"
				     : p->from == RACT_FROM_SIGMOID ? "Sigmoid nodes"
				     : p->from == RACT_FROM_TANH ? "Tanh nodes"
								 : "Relu nodes");
			goto done;
		}
		/* HardSwish is an opset-14 operator: raise first, then match again
		 * on the converted graph (node positions may have moved). */
		if (pass == 0 && p->to == RACT_TO_HARD_SWISH && onnx_opset(m) < 14) {
			free(ms);
			ms = NULL;
			gindex_free(&x);
			if ((st = onnx_raise_opset(m, 14, e)) != NN_OK) {
				err_prefix(e, "HardSwish needs opset 14");
				goto done;
			}
			continue;
		}
		break;
	}

	if (!(out = json_object()) || !(list = json_array()))
		goto nomem;
	size_t replaced = 0;
	for (size_t i = 0; i < n; i++) {
		if (!ms[i].selected)
			continue;
		if (json_array_append_new(list, match_json(&x, &ms[i])))
			goto nomem;
		replaced++;
	}
	size_t n_node = x.g->n_node ? x.g->n_node : 1;
	if (!(drop = calloc(n_node, sizeof *drop)) || !(touched = calloc(n_node, sizeof *touched)))
		goto nomem;
	for (size_t i = 0; i < n; i++) {
		if (!ms[i].selected)
			continue;
		if (p->to == RACT_TO_HARD_TANH)
			ms[i].dtype = value_elem_type(&x, ms[i].x);
		for (int k = 0; k < ms[i].n_nodes; k++) {
			touched[ms[i].nodes[k]] = true;
			drop[ms[i].nodes[k]] = ms[i].nodes[k] != ms[i].last;
		}
	}
	if ((st = collect_names(x.g, touched, &names, &n_names, e)) != NN_OK)
		goto done;
	for (size_t i = 0; i < n; i++)
		if (ms[i].selected && (st = rewrite(m, &x, &ms[i], p, cb, &n_cb, e)) != NN_OK)
			goto done;
	/* x borrows names from nodes about to be freed */
	gindex_free(&x);
	if ((st = delete_nodes(m, drop, names, n_names, e)) != NN_OK)
		goto done;
	prune_model_counts(m, &params_after, &nonzeros);

	int bad = step_json_set(out, "from", json_string(FROM_NAMES[p->from]));
	bad |= step_json_set(out, "to", json_string(TO_NAMES[p->to]));
	bad |= step_json_set(out, "replaced", json_integer((json_int_t)replaced));
	bad |= step_json_set(out, "nodes", list);
	list = NULL;
	if (p->to == RACT_TO_LEAKY_RELU)
		bad |= step_json_set(out, "alpha", json_real(p->alpha));
	if (p->to == RACT_TO_HARD_SIGMOID) {
		bad |= step_json_set(out, "alpha", json_real(HARD_SIGMOID_ALPHA));
		bad |= step_json_set(out, "beta", json_real(HARD_SIGMOID_BETA));
	}
	bad |= step_json_set(out, "parameters_before", json_integer((json_int_t)params_before));
	bad |= step_json_set(out, "parameters_after", json_integer((json_int_t)params_after));
	bad |= step_json_set(out, "opset", json_integer((json_int_t)onnx_opset(m)));
	if (bad)
		goto nomem;
	step_progress(ctx, 1.0);
	*metrics = out;
	out = NULL;
	st = NN_OK;
	goto done;
nomem:
	st = oom(e);
done:
	for (size_t i = 0; i < n_cb; i++) {
		free(cb[i].min);
		free(cb[i].max);
	}
	gindex_free(&x);
	free(ms);
	free(drop);
	free(touched);
	for (size_t k = 0; k < n_names; k++)
		free(names[k]);
	free(names);
	json_decref(list);
	json_decref(out);
	return st;
}
