/* synth: synthetic ONNX models (see synth.h). */
#include "synth.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx.pb-c.h"

/* Everything one model proto points at, owned by one allocation so that the
 * tree can be packed and then released with a single free (plus weights). */
struct synth_layer {
	Onnx__NodeProto gemm, relu;
	char *gemm_in[3], *gemm_out[1], *relu_in[1], *relu_out[1];
	char in_name[32], w_name[32], b_name[32], gemm_name[32], pre_name[32], relu_name[32],
		out_name[32];
	Onnx__TensorProto w, b;
	int64_t wdims[2], bdims[1];
};

struct synth_tree {
	Onnx__ModelProto model;
	Onnx__GraphProto graph;
	Onnx__OperatorSetIdProto opset;
	Onnx__OperatorSetIdProto *opsets[1];
	struct synth_layer layers[SYNTH_MAX_LAYERS];
	Onnx__NodeProto *nodes[2 * SYNTH_MAX_LAYERS];
	Onnx__TensorProto *inits[2 * SYNTH_MAX_LAYERS];
	Onnx__ValueInfoProto vin, vout;
	Onnx__ValueInfoProto *ins[1], *outs[1];
	Onnx__TypeProto tin, tout;
	Onnx__TypeProto__Tensor ttin, ttout;
	Onnx__TensorShapeProto sin, sout;
	Onnx__TensorShapeProto__Dimension din[2], dout[2];
	Onnx__TensorShapeProto__Dimension *pdin[2], *pdout[2];
	Onnx__StringStringEntryProto ext_loc;
	Onnx__StringStringEntryProto *ext[1];
	float *weights; /* largest layer's weights; every tensor borrows a prefix */
};

static void set_err(char *err, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (!err || cap == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, cap, fmt, ap);
	va_end(ap);
}

int64_t synth_param_count(const struct synth_spec *s)
{
	int64_t total = 0;

	for (size_t i = 1; i <= s->n_layers; i++)
		total += s->dims[i - 1] * s->dims[i] + s->dims[i];
	return total;
}

static int check_spec(const struct synth_spec *s, size_t *max_floats, char *err, size_t cap)
{
	size_t biggest = 0;

	if (s->n_layers == 0 || s->n_layers > SYNTH_MAX_LAYERS) {
		set_err(err, cap, "synth: %zu layers (1..%d)", s->n_layers, SYNTH_MAX_LAYERS);
		return -1;
	}
	for (size_t i = 0; i <= s->n_layers; i++) {
		if (s->dims[i] <= 0) {
			set_err(err, cap, "synth: dims[%zu] = %lld", i, (long long)s->dims[i]);
			return -1;
		}
	}
	for (size_t i = 1; i <= s->n_layers; i++) {
		size_t n;

		if (__builtin_mul_overflow((size_t)s->dims[i - 1], (size_t)s->dims[i], &n)) {
			set_err(err, cap, "synth: layer %zu too large", i);
			return -1;
		}
		if (n > biggest)
			biggest = n;
		if ((size_t)s->dims[i] > biggest)
			biggest = (size_t)s->dims[i];
	}
	*max_floats = biggest;
	return 0;
}

static void init_shape(Onnx__TypeProto *t, Onnx__TypeProto__Tensor *tt, Onnx__TensorShapeProto *sh,
		       Onnx__TensorShapeProto__Dimension dims[2],
		       Onnx__TensorShapeProto__Dimension *pdims[2], int64_t width)
{
	onnx__type_proto__init(t);
	onnx__type_proto__tensor__init(tt);
	onnx__tensor_shape_proto__init(sh);
	onnx__tensor_shape_proto__dimension__init(&dims[0]);
	onnx__tensor_shape_proto__dimension__init(&dims[1]);
	dims[0].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
	dims[0].dim_param = "N";
	dims[1].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
	dims[1].dim_value = width;
	pdims[0] = &dims[0];
	pdims[1] = &dims[1];
	sh->n_dim = 2;
	sh->dim = pdims;
	tt->has_elem_type = 1;
	tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
	tt->shape = sh;
	t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
	t->tensor_type = tt;
}

static void fill_weights(float *w, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 0x9e3779b9u;

	if (x == 0)
		x = 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		w[i] = (float)(x >> 8) * (2.0f / 16777216.0f) - 1.0f;
	}
}

/* Builds the proto tree; on success the caller owns *out (free weights, then it). */
static int build_tree(const struct synth_spec *s, struct synth_tree **out, char *err, size_t cap)
{
	struct synth_tree *t;
	size_t max_floats = 0, n_nodes = 0, n_inits = 0;

	if (check_spec(s, &max_floats, err, cap) != 0)
		return -1;
	t = calloc(1, sizeof(*t));
	if (!t) {
		set_err(err, cap, "synth: out of memory");
		return -1;
	}
	t->weights = malloc(max_floats * sizeof(float));
	if (!t->weights) {
		set_err(err, cap, "synth: out of memory for %zu floats", max_floats);
		free(t);
		return -1;
	}
	fill_weights(t->weights, max_floats, s->seed);

	onnx__model_proto__init(&t->model);
	onnx__graph_proto__init(&t->graph);
	onnx__operator_set_id_proto__init(&t->opset);
	t->opset.domain = "";
	t->opset.has_version = 1;
	t->opset.version = 17;
	t->opsets[0] = &t->opset;
	t->model.has_ir_version = 1;
	t->model.ir_version = 8;
	t->model.n_opset_import = 1;
	t->model.opset_import = t->opsets;
	t->model.producer_name = "nncd-tests-synth";
	t->model.producer_version = "1";
	t->model.graph = &t->graph;
	t->graph.name = "synth_mlp";

	for (size_t i = 0; i < s->n_layers; i++) {
		struct synth_layer *l = &t->layers[i];
		bool last = i + 1 == s->n_layers;

		if (i == 0)
			snprintf(l->in_name, sizeof(l->in_name), "x");
		else
			snprintf(l->in_name, sizeof(l->in_name), "%s", t->layers[i - 1].out_name);
		snprintf(l->w_name, sizeof(l->w_name), "fc%zu.weight", i + 1);
		snprintf(l->b_name, sizeof(l->b_name), "fc%zu.bias", i + 1);
		snprintf(l->gemm_name, sizeof(l->gemm_name), "fc%zu", i + 1);
		snprintf(l->relu_name, sizeof(l->relu_name), "relu%zu", i + 1);
		if (last)
			snprintf(l->pre_name, sizeof(l->pre_name), "y");
		else
			snprintf(l->pre_name, sizeof(l->pre_name), "fc%zu_out", i + 1);
		snprintf(l->out_name, sizeof(l->out_name), "h%zu", i + 1);

		onnx__node_proto__init(&l->gemm);
		l->gemm_in[0] = l->in_name;
		l->gemm_in[1] = l->w_name;
		l->gemm_in[2] = l->b_name;
		l->gemm_out[0] = l->pre_name;
		l->gemm.n_input = 3;
		l->gemm.input = l->gemm_in;
		l->gemm.n_output = 1;
		l->gemm.output = l->gemm_out;
		l->gemm.name = l->gemm_name;
		l->gemm.op_type = "Gemm";
		t->nodes[n_nodes++] = &l->gemm;
		if (!last) {
			onnx__node_proto__init(&l->relu);
			l->relu_in[0] = l->pre_name;
			l->relu_out[0] = l->out_name;
			l->relu.n_input = 1;
			l->relu.input = l->relu_in;
			l->relu.n_output = 1;
			l->relu.output = l->relu_out;
			l->relu.name = l->relu_name;
			l->relu.op_type = "Relu";
			t->nodes[n_nodes++] = &l->relu;
		}

		onnx__tensor_proto__init(&l->w);
		l->wdims[0] = s->dims[i];
		l->wdims[1] = s->dims[i + 1];
		l->w.n_dims = 2;
		l->w.dims = l->wdims;
		l->w.has_data_type = 1;
		l->w.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
		l->w.name = l->w_name;
		if (i == 0 && s->external_data) {
			onnx__string_string_entry_proto__init(&t->ext_loc);
			t->ext_loc.key = "location";
			t->ext_loc.value = "synth_weights.bin";
			t->ext[0] = &t->ext_loc;
			l->w.n_external_data = 1;
			l->w.external_data = t->ext;
			l->w.has_data_location = 1;
			l->w.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
		} else {
			l->w.has_raw_data = 1;
			l->w.raw_data.len = (size_t)(s->dims[i] * s->dims[i + 1]) * sizeof(float);
			l->w.raw_data.data = (uint8_t *)t->weights;
		}
		t->inits[n_inits++] = &l->w;

		onnx__tensor_proto__init(&l->b);
		l->bdims[0] = s->dims[i + 1];
		l->b.n_dims = 1;
		l->b.dims = l->bdims;
		l->b.has_data_type = 1;
		l->b.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
		l->b.name = l->b_name;
		l->b.has_raw_data = 1;
		l->b.raw_data.len = (size_t)s->dims[i + 1] * sizeof(float);
		l->b.raw_data.data = (uint8_t *)t->weights;
		t->inits[n_inits++] = &l->b;
	}
	t->graph.n_node = n_nodes;
	t->graph.node = t->nodes;
	t->graph.n_initializer = n_inits;
	t->graph.initializer = t->inits;

	onnx__value_info_proto__init(&t->vin);
	init_shape(&t->tin, &t->ttin, &t->sin, t->din, t->pdin, s->dims[0]);
	t->vin.name = "x";
	t->vin.type = &t->tin;
	t->ins[0] = &t->vin;
	onnx__value_info_proto__init(&t->vout);
	init_shape(&t->tout, &t->ttout, &t->sout, t->dout, t->pdout, s->dims[s->n_layers]);
	t->vout.name = "y";
	t->vout.type = &t->tout;
	t->outs[0] = &t->vout;
	t->graph.n_input = 1;
	t->graph.input = t->ins;
	t->graph.n_output = 1;
	t->graph.output = t->outs;
	*out = t;
	return 0;
}

static void free_tree(struct synth_tree *t)
{
	if (!t)
		return;
	free(t->weights);
	free(t);
}

int synth_build(const struct synth_spec *s, uint8_t **out, size_t *len, char *err, size_t errcap)
{
	struct synth_tree *t = NULL;
	uint8_t *buf;
	size_t n;

	if (build_tree(s, &t, err, errcap) != 0)
		return -1;
	n = onnx__model_proto__get_packed_size(&t->model);
	buf = malloc(n ? n : 1);
	if (!buf) {
		set_err(err, errcap, "synth: out of memory for %zu bytes", n);
		free_tree(t);
		return -1;
	}
	onnx__model_proto__pack(&t->model, buf);
	free_tree(t);
	*out = buf;
	*len = n;
	return 0;
}

/* A ProtobufCBuffer that appends to a FILE: packing streams big raw_data
 * fields straight to disk instead of building the whole model in memory. */
struct file_sink {
	ProtobufCBuffer base;
	FILE *f;
	size_t written;
	int failed;
};

static void file_sink_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
	struct file_sink *fs = (struct file_sink *)b;

	if (fs->failed)
		return;
	if (len && fwrite(data, 1, len, fs->f) != len)
		fs->failed = errno ? errno : EIO;
	fs->written += len;
}

int synth_write_file(const struct synth_spec *s, const char *path, size_t *len, char *err,
		     size_t errcap)
{
	struct synth_tree *t = NULL;
	struct file_sink fs = {.base = {.append = file_sink_append}};

	if (build_tree(s, &t, err, errcap) != 0)
		return -1;
	fs.f = fopen(path, "wb");
	if (!fs.f) {
		set_err(err, errcap, "synth: %s: %s", path, strerror(errno));
		free_tree(t);
		return -1;
	}
	onnx__model_proto__pack_to_buffer(&t->model, &fs.base);
	free_tree(t);
	if (fclose(fs.f) != 0 && !fs.failed)
		fs.failed = errno ? errno : EIO;
	if (fs.failed) {
		set_err(err, errcap, "synth: writing %s: %s", path, strerror(fs.failed));
		return -1;
	}
	if (len)
		*len = fs.written;
	return 0;
}

int synth_tensor_proto(uint8_t **out, size_t *len, char *err, size_t errcap)
{
	Onnx__TensorProto tp;
	int64_t dims[2] = {2, 3};
	float data[6] = {1, 2, 3, 4, 5, 6};
	uint8_t *buf;
	size_t n;

	onnx__tensor_proto__init(&tp);
	tp.n_dims = 2;
	tp.dims = dims;
	tp.has_data_type = 1;
	tp.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
	tp.name = "not_a_model";
	tp.has_raw_data = 1;
	tp.raw_data.len = sizeof(data);
	tp.raw_data.data = (uint8_t *)data;
	n = onnx__tensor_proto__get_packed_size(&tp);
	buf = malloc(n);
	if (!buf) {
		set_err(err, errcap, "synth: out of memory");
		return -1;
	}
	onnx__tensor_proto__pack(&tp, buf);
	*out = buf;
	*len = n;
	return 0;
}
