/* onnx_graph: graph helpers for engine passes (see onnx_graph.h).
 * Everything attached to a model is malloc'd and built with the generated
 * __init functions, so onnx_free releases it. Not thread-safe per model;
 * no global state. */
#include "onnx_graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_io.h"
#include "onnx_wire.h"

/* ------------------------------------------------------------------ */
/* which initializers are prunable weights (shared by summary + passes) */

/* Output-channel axis of a weight feeding input `slot` of a default-domain
 * node, or -1 when that slot/shape is not a prunable weight:
 *  Conv   W [M, C/g, k...]            -> 0 (M output channels)
 *  Gemm   B [K, N] (transB=0)         -> 1;  B [N, K] (transB=1) -> 0
 *  MatMul B [..., K, N] (input 1)     -> ndim-1 (columns give output features)
 *  MatMul A [..., M, K] (input 0)     -> ndim-2 (rows give output rows)
 * 1-D MatMul operands and Gemm inputs other than B are not weights here. */
int onnx_weight_channel_axis(const char *op, int slot, size_t ndim, int64_t trans_b)
{
	if (streq(op, "Conv"))
		return slot == 1 && ndim >= 3 ? 0 : -1;
	if (streq(op, "Gemm"))
		return slot == 1 && ndim == 2 ? (trans_b ? 0 : 1) : -1;
	if (streq(op, "MatMul") && ndim >= 2)
		return slot == 1 ? (int)ndim - 1 : slot == 0 ? (int)ndim - 2 : -1;
	return -1;
}

bool onnx_is_weight_op(const char *op)
{
	return streq(op, "Conv") || streq(op, "Gemm") || streq(op, "MatMul");
}

/* ------------------------------------------------------------------ */
/* graph helpers                                                       */

int64_t onnx_opset(const struct onnx_model *m)
{
	const Onnx__ModelProto *p = m->proto;
	for (size_t i = 0; i < p->n_opset_import; i++)
		if (is_default_domain(p->opset_import[i]->domain))
			return p->opset_import[i]->version;
	return 0;
}

Onnx__TensorProto *onnx_find_initializer(const struct onnx_model *m, const char *name)
{
	const Onnx__GraphProto *g = m->proto->graph;
	if (!g || !name)
		return NULL;
	for (size_t i = 0; i < g->n_initializer; i++)
		if (streq(g->initializer[i]->name, name))
			return g->initializer[i];
	return NULL;
}

enum nn_status onnx_prunable_weights(const struct onnx_model *m, struct onnx_weight_ref **out,
				     size_t *count, struct nn_err *e)
{
	*out = NULL;
	*count = 0;
	const Onnx__GraphProto *g = m->proto->graph;
	if (!g)
		return NN_OK;
	struct nameset inits = { 0 }, used = { 0 };
	struct onnx_weight_ref *refs = NULL;
	size_t n = 0, cap = 0;
	for (size_t i = 0; i < g->n_initializer; i++)
		if (!wire_nameset_put(&inits, g->initializer[i]->name, g->initializer[i]))
			goto nomem;
	for (size_t i = 0; i < g->n_node; i++) {
		Onnx__NodeProto *node = g->node[i];
		if (!is_default_domain(node->domain) || !onnx_is_weight_op(node->op_type))
			continue;
		int slots[2] = { 1, streq(node->op_type, "MatMul") ? 0 : -1 };
		int64_t trans_b = onnx_node_int_attr(node, "transB", 0);
		for (int k = 0; k < 2; k++) {
			int slot = slots[k];
			if (slot < 0 || (size_t)slot >= node->n_input)
				continue;
			Onnx__TensorProto *w = wire_nameset_get(&inits, node->input[slot]);
			if (!w || !w->has_data_type || w->data_type != DT_FLOAT)
				continue;
			int axis = onnx_weight_channel_axis(node->op_type, slot, w->n_dims, trans_b);
			if (axis < 0)
				continue;
			if (!wire_nameset_has(&used, w->name)) {
				if (!wire_nameset_put(&used, w->name, NULL) ||
				    !grow(&refs, &cap, n, sizeof *refs))
					goto nomem;
				refs[n++] = (struct onnx_weight_ref){ w, node, axis };
			}
			break;
		}
	}
	wire_nameset_free(&inits);
	wire_nameset_free(&used);
	*out = refs;
	*count = n;
	return NN_OK;
nomem:
	wire_nameset_free(&inits);
	wire_nameset_free(&used);
	free(refs);
	return oom(e);
}

static const char *init_name(const Onnx__TensorProto *t)
{
	return t->name ? t->name : "";
}

enum nn_status onnx_initializer_view(const Onnx__TensorProto *init, struct tensor *out,
				     struct nn_err *e)
{
	memset(out, 0, sizeof *out);
	if (init->has_data_location &&
	    init->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_external_data", NULL,
			       "initializer '%s' uses external data, which nncd does not support "
			       "yet; re-export the model with the weights embedded", init_name(init));
	if (!init->has_data_type || init->data_type != DT_FLOAT)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_dtype", NULL,
			       "initializer '%s' is %s, not float32", init_name(init),
			       dtype_name((enum dtype)init->data_type));
	if (init->n_dims > TENSOR_MAX_DIMS)
		return err_set(e, NN_EUNSUPPORTED, "too_many_dims", NULL,
			       "initializer '%s' has %zu dims; at most %d are supported",
			       init_name(init), init->n_dims, TENSOR_MAX_DIMS);
	struct tensor t;
	tensor_view(&t, DT_FLOAT, (int)init->n_dims, init->dims, NULL);
	size_t bytes;
	enum nn_status st = tensor_nbytes(&t, &bytes, e);
	if (st != NN_OK) {
		err_prefix(e, "initializer '%s'", init_name(init));
		return st;
	}
	if (init->has_raw_data && (init->raw_data.len || !init->n_float_data)) {
		if (init->raw_data.len != bytes)
			return err_set(e, NN_EINVAL, "invalid_model", NULL,
				       "initializer '%s': raw_data has %zu bytes, its dims need %zu",
				       init_name(init), init->raw_data.len, bytes);
		if (bytes && ((uintptr_t)init->raw_data.data % _Alignof(float)) != 0) {
			/* protobuf-c mallocs payloads, so this only happens to data
			 * attached by hand; copy rather than read misaligned floats. */
			void *copy = malloc(bytes);
			if (!copy)
				return oom(e);
			memcpy(copy, init->raw_data.data, bytes);
			t.data = copy;
			t.owned = true;
		} else {
			t.data = init->raw_data.data;
		}
	} else if (init->n_float_data) {
		if (init->n_float_data * sizeof(float) != bytes)
			return err_set(e, NN_EINVAL, "invalid_model", NULL,
				       "initializer '%s': float_data has %zu values, its dims need %zu",
				       init_name(init), init->n_float_data, bytes / sizeof(float));
		t.data = init->float_data;
	} else if (bytes) {
		return err_set(e, NN_EINVAL, "invalid_model", NULL,
			       "initializer '%s' has no data for its %zu elements", init_name(init),
			       bytes / sizeof(float));
	}
	*out = t;
	return NN_OK;
}

static void free_typed_data(Onnx__TensorProto *init)
{
	free(init->float_data);
	init->float_data = NULL;
	init->n_float_data = 0;
	free(init->int32_data);
	init->int32_data = NULL;
	init->n_int32_data = 0;
	for (size_t i = 0; i < init->n_string_data; i++)
		free(init->string_data[i].data);
	free(init->string_data);
	init->string_data = NULL;
	init->n_string_data = 0;
	free(init->int64_data);
	init->int64_data = NULL;
	init->n_int64_data = 0;
	free(init->double_data);
	init->double_data = NULL;
	init->n_double_data = 0;
	free(init->uint64_data);
	init->uint64_data = NULL;
	init->n_uint64_data = 0;
	for (size_t i = 0; i < init->n_external_data; i++)
		onnx__string_string_entry_proto__free_unpacked(init->external_data[i], NULL);
	free(init->external_data);
	init->external_data = NULL;
	init->n_external_data = 0;
	init->has_data_location = 0;
	init->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__DEFAULT;
	if (init->segment) {
		protobuf_c_message_free_unpacked(&init->segment->base, NULL);
		init->segment = NULL;
	}
}

enum nn_status onnx_initializer_set(Onnx__TensorProto *init, const struct tensor *t,
				    struct nn_err *e)
{
	size_t bytes;
	enum nn_status st = tensor_nbytes(t, &bytes, e);
	if (st != NN_OK)
		return st;
	if (bytes && !t->data)
		return err_set(e, NN_EINTERNAL, "internal", NULL,
			       "initializer '%s': tensor has no data", init_name(init));
	int64_t *dims = NULL;
	if (t->ndim && !(dims = malloc((size_t)t->ndim * sizeof *dims)))
		return oom(e);
	if (t->ndim)
		memcpy(dims, t->shape, (size_t)t->ndim * sizeof *dims);
	/* A view of this very raw_data modified in place needs no copy. */
	bool same = init->has_raw_data && t->data == init->raw_data.data &&
		    init->raw_data.len == bytes;
	uint8_t *data = init->raw_data.data;
	if (!same) {
		data = bytes ? malloc(bytes) : NULL;
		if (bytes && !data) {
			free(dims);
			return oom(e);
		}
		if (bytes)
			memcpy(data, t->data, bytes); /* before freeing: t may view float_data */
		free(init->raw_data.data);
	}
	free_typed_data(init);
	free(init->dims);
	init->dims = dims;
	init->n_dims = (size_t)t->ndim;
	init->has_data_type = 1;
	init->data_type = (int32_t)t->dtype;
	init->has_raw_data = 1;
	init->raw_data.data = data;
	init->raw_data.len = bytes;
	return NN_OK;
}

enum nn_status onnx_initializer_take(Onnx__TensorProto *init, struct tensor *t,
				     struct nn_err *e)
{
	size_t bytes;
	enum nn_status st = tensor_nbytes(t, &bytes, e);
	if (st != NN_OK)
		return st;
	if ((bytes && !t->data) || (t->data && !t->owned))
		return err_set(e, NN_EINTERNAL, "internal", NULL,
			       "initializer '%s': tensor data to take is %s", init_name(init),
			       t->data ? "not owned" : "missing");
	int64_t *dims = NULL;
	if (t->ndim && !(dims = malloc((size_t)t->ndim * sizeof *dims)))
		return oom(e);
	if (t->ndim)
		memcpy(dims, t->shape, (size_t)t->ndim * sizeof *dims);
	if (init->raw_data.data != t->data)
		free(init->raw_data.data);
	if (init->float_data == (float *)t->data) /* taken: free_typed_data must not free it */
		init->float_data = NULL;
	free_typed_data(init);
	free(init->dims);
	init->dims = dims;
	init->n_dims = (size_t)t->ndim;
	init->has_data_type = 1;
	init->data_type = (int32_t)t->dtype;
	init->has_raw_data = 1;
	init->raw_data.data = t->data;
	init->raw_data.len = bytes;
	t->data = NULL;
	t->owned = false;
	return NN_OK;
}

/* Appends without the duplicate check (callers that know the name is new);
 * take: t's data is handed over (onnx_initializer_take) instead of copied. */
static enum nn_status append_initializer_impl(struct onnx_model *m, const char *name,
					      struct tensor *t, bool take, struct nn_err *e)
{
	Onnx__GraphProto *g = m->proto->graph;
	if (!g)
		return err_set(e, NN_EINTERNAL, "internal", NULL, "model has no graph");
	Onnx__TensorProto *init = malloc(sizeof *init);
	if (!init)
		return oom(e);
	onnx__tensor_proto__init(init);
	enum nn_status st;
	if (!(init->name = xstrdup(name))) {
		st = oom(e);
		goto fail;
	}
	if ((st = take ? onnx_initializer_take(init, t, e) : onnx_initializer_set(init, t, e)) !=
	    NN_OK)
		goto fail;
	if (!push_ptr((void ***)&g->initializer, &g->n_initializer, init)) {
		st = oom(e);
		if (take) { /* give the data back: failure leaves t as it was */
			t->data = init->raw_data.data;
			t->owned = t->data != NULL;
			init->raw_data.data = NULL;
			init->raw_data.len = 0;
		}
		goto fail;
	}
	return NN_OK;
fail:
	onnx__tensor_proto__free_unpacked(init, NULL);
	return st;
}

enum nn_status onnx_append_initializer(struct onnx_model *m, const char *name,
				       const struct tensor *t, struct nn_err *e)
{
	/* not taking: t is only read */
	return append_initializer_impl(m, name, (struct tensor *)t, false, e);
}

enum nn_status onnx_add_initializer(struct onnx_model *m, const char *name,
				    const struct tensor *t, struct nn_err *e)
{
	if (onnx_find_initializer(m, name))
		return err_set(e, NN_EINVAL, "duplicate_initializer", NULL,
			       "initializer '%s' already exists", name);
	return onnx_append_initializer(m, name, t, e);
}

enum nn_status onnx_add_initializer_take(struct onnx_model *m, const char *name,
					 struct tensor *t, struct nn_err *e)
{
	if (onnx_find_initializer(m, name))
		return err_set(e, NN_EINVAL, "duplicate_initializer", NULL,
			       "initializer '%s' already exists", name);
	return append_initializer_impl(m, name, t, true, e);
}

void onnx_remove_initializer(struct onnx_model *m, const char *name)
{
	Onnx__GraphProto *g = m->proto->graph;
	if (!g || !name)
		return;
	for (size_t i = 0; i < g->n_initializer; i++) {
		if (!streq(g->initializer[i]->name, name))
			continue;
		onnx__tensor_proto__free_unpacked(g->initializer[i], NULL);
		memmove(&g->initializer[i], &g->initializer[i + 1],
			(g->n_initializer - i - 1) * sizeof *g->initializer);
		g->n_initializer--;
		break;
	}
	for (size_t i = 0; i < g->n_input; i++) {
		if (!streq(g->input[i]->name, name))
			continue;
		onnx__value_info_proto__free_unpacked(g->input[i], NULL);
		memmove(&g->input[i], &g->input[i + 1], (g->n_input - i - 1) * sizeof *g->input);
		g->n_input--;
		break;
	}
}

static char **copy_strv(const char *const *v, size_t n, bool *ok)
{
	*ok = true;
	if (!n)
		return NULL;
	char **out = calloc(n, sizeof *out);
	if (!out) {
		*ok = false;
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (!(out[i] = xstrdup(v[i] ? v[i] : ""))) {
			for (size_t j = 0; j < i; j++)
				free(out[j]);
			free(out);
			*ok = false;
			return NULL;
		}
	}
	return out;
}

enum nn_status onnx_prepend_node(struct onnx_model *m, const char *op_type, const char *name,
				 const char *const *inputs, size_t n_inputs,
				 const char *const *outputs, size_t n_outputs,
				 Onnx__NodeProto **out, struct nn_err *e)
{
	if (out)
		*out = NULL;
	Onnx__GraphProto *g = m->proto->graph;
	if (!g)
		return err_set(e, NN_EINTERNAL, "internal", NULL, "model has no graph");
	Onnx__NodeProto *n = malloc(sizeof *n);
	if (!n)
		return oom(e);
	onnx__node_proto__init(n);
	bool ok1, ok2;
	n->op_type = xstrdup(op_type);
	n->name = name ? xstrdup(name) : NULL;
	n->input = copy_strv(inputs, n_inputs, &ok1);
	n->n_input = ok1 ? n_inputs : 0;
	n->output = copy_strv(outputs, n_outputs, &ok2);
	n->n_output = ok2 ? n_outputs : 0;
	if (!n->op_type || (name && !n->name) || !ok1 || !ok2)
		goto nomem;
	Onnx__NodeProto **arr = realloc(g->node, (g->n_node + 1) * sizeof *arr);
	if (!arr)
		goto nomem;
	memmove(arr + 1, arr, g->n_node * sizeof *arr);
	arr[0] = n;
	g->node = arr;
	g->n_node++;
	if (out)
		*out = n;
	return NN_OK;
nomem:
	onnx__node_proto__free_unpacked(n, NULL);
	return oom(e);
}

Onnx__AttributeProto *onnx_find_attr(const Onnx__NodeProto *n, const char *name, size_t *idx)
{
	for (size_t i = 0; i < n->n_attribute; i++) {
		if (streq(n->attribute[i]->name, name)) {
			if (idx)
				*idx = i;
			return n->attribute[i];
		}
	}
	return NULL;
}

void onnx_remove_attr(Onnx__NodeProto *n, const char *name)
{
	size_t i;
	if (!onnx_find_attr(n, name, &i))
		return;
	onnx__attribute_proto__free_unpacked(n->attribute[i], NULL);
	memmove(&n->attribute[i], &n->attribute[i + 1],
		(n->n_attribute - i - 1) * sizeof *n->attribute);
	n->n_attribute--;
}

/* Replaces (or appends) attribute `a` under its name; takes ownership. */
enum nn_status onnx_put_attr(Onnx__NodeProto *node, Onnx__AttributeProto *a, struct nn_err *e)
{
	size_t i;
	if (onnx_find_attr(node, a->name, &i)) {
		onnx__attribute_proto__free_unpacked(node->attribute[i], NULL);
		node->attribute[i] = a;
		return NN_OK;
	}
	if (!push_ptr((void ***)&node->attribute, &node->n_attribute, a)) {
		onnx__attribute_proto__free_unpacked(a, NULL);
		return oom(e);
	}
	return NN_OK;
}

enum nn_status onnx_node_set_int_attr(Onnx__NodeProto *node, const char *name, int64_t value,
				      struct nn_err *e)
{
	Onnx__AttributeProto *a = malloc(sizeof *a);
	if (!a)
		return oom(e);
	onnx__attribute_proto__init(a);
	if (!(a->name = xstrdup(name))) {
		free(a);
		return oom(e);
	}
	a->has_type = 1;
	a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
	a->has_i = 1;
	a->i = value;
	return onnx_put_attr(node, a, e);
}

int64_t onnx_node_int_attr(const Onnx__NodeProto *node, const char *name, int64_t fallback)
{
	const Onnx__AttributeProto *a = onnx_find_attr(node, name, NULL);
	if (!a || !a->has_i)
		return fallback;
	return a->i;
}

static bool collect_vi(Onnx__ValueInfoProto *const *v, size_t n, struct nameset *ns)
{
	for (size_t i = 0; i < n; i++)
		if (!wire_nameset_put(ns, v[i]->name, NULL))
			return false;
	return true;
}

/* Every name in g and its subgraphs (a subgraph sees, and must not
 * shadow, the names of its enclosing graphs). */
bool onnx_collect_graph_names(const Onnx__GraphProto *g, struct nameset *ns, int depth)
{
	if (depth > WIRE_MAX_DEPTH)
		return true;
	if (!collect_vi(g->input, g->n_input, ns) || !collect_vi(g->output, g->n_output, ns) ||
	    !collect_vi(g->value_info, g->n_value_info, ns))
		return false;
	for (size_t i = 0; i < g->n_initializer; i++)
		if (!wire_nameset_put(ns, g->initializer[i]->name, NULL))
			return false;
	for (size_t i = 0; i < g->n_sparse_initializer; i++)
		if (g->sparse_initializer[i]->values &&
		    !wire_nameset_put(ns, g->sparse_initializer[i]->values->name, NULL))
			return false;
	for (size_t i = 0; i < g->n_node; i++) {
		const Onnx__NodeProto *n = g->node[i];
		if (!wire_nameset_put(ns, n->name, NULL))
			return false;
		for (size_t j = 0; j < n->n_input; j++)
			if (!wire_nameset_put(ns, n->input[j], NULL))
				return false;
		for (size_t j = 0; j < n->n_output; j++)
			if (!wire_nameset_put(ns, n->output[j], NULL))
				return false;
		for (size_t j = 0; j < n->n_attribute; j++) {
			const Onnx__AttributeProto *a = n->attribute[j];
			if (a->g && !onnx_collect_graph_names(a->g, ns, depth + 1))
				return false;
			for (size_t k = 0; k < a->n_graphs; k++)
				if (!onnx_collect_graph_names(a->graphs[k], ns, depth + 1))
					return false;
		}
	}
	return true;
}

char *onnx_unique_name(const struct onnx_model *m, const char *base)
{
	struct nameset ns = { 0 };
	char *out = NULL;
	if (!base || !*base)
		base = "nncd";
	if (m->proto->graph && !onnx_collect_graph_names(m->proto->graph, &ns, 0))
		goto done;
	if (!wire_nameset_has(&ns, base)) {
		out = xstrdup(base);
		goto done;
	}
	size_t cap = strlen(base) + 24;
	out = malloc(cap);
	if (!out)
		goto done;
	for (unsigned long long k = 1;; k++) {
		snprintf(out, cap, "%s_%llu", base, k);
		if (!wire_nameset_has(&ns, out))
			break;
	}
done:
	wire_nameset_free(&ns);
	return out;
}

enum nn_status onnx_add_graph_output(Onnx__GraphProto *g, const char *name, struct nn_err *e)
{
	Onnx__ValueInfoProto **v = realloc(g->output, (g->n_output + 1) * sizeof *v);
	if (!v)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for a graph output");
	g->output = v;
	Onnx__ValueInfoProto *vi = malloc(sizeof *vi);
	char *nm = strdup(name);
	if (!vi || !nm) {
		free(vi);
		free(nm);
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for a graph output");
	}
	onnx__value_info_proto__init(vi);
	vi->name = nm;
	g->output[g->n_output++] = vi;
	return NN_OK;
}

bool onnx_is_graph_input(const Onnx__GraphProto *g, const char *name)
{
	for (size_t i = 0; i < g->n_input; i++)
		if (g->input[i]->name && name && !strcmp(g->input[i]->name, name))
			return true;
	return false;
}

size_t onnx_count_readers(const Onnx__GraphProto *g, const char *name)
{
	size_t count = 0;
	for (size_t i = 0; i < g->n_node; i++)
		for (size_t j = 0; j < g->node[i]->n_input; j++)
			if (g->node[i]->input[j] && !strcmp(g->node[i]->input[j], name))
				count++;
	return count;
}
