#include "synthmodel.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx.pb-c.h"

/* splitmix64: tiny, fast and good enough for synthetic weights. */
static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void synthmodel_fill(float *w, size_t n, uint64_t seed, float scale)
{
	uint64_t s = seed;
	const float k = scale / 32768.0f;
	for (size_t i = 0; i < n; i++) {
		uint64_t r = splitmix64(&s);
		/* Four 16-bit uniforms summed: Irwin-Hall, mean 2 * 65535. */
		int32_t sum = (int32_t)(r & 0xffff) + (int32_t)((r >> 16) & 0xffff) +
			      (int32_t)((r >> 32) & 0xffff) + (int32_t)(r >> 48) - 2 * 65535;
		w[i] = (float)sum * k * 0.5f;
	}
}

void synthmodel_weight_shape(const struct synthmodel *s, size_t i, int64_t *rows, int64_t *cols)
{
	if (s->gemm[i]) {
		*rows = s->dims[i + 1];
		*cols = s->dims[i];
	} else {
		*rows = s->dims[i];
		*cols = s->dims[i + 1];
	}
}

/* Every proto struct of one model, so one free() releases them. */
struct holder {
	Onnx__ModelProto model;
	Onnx__OperatorSetIdProto opset;
	Onnx__OperatorSetIdProto *opsets[1];
	Onnx__GraphProto graph;
	Onnx__NodeProto nodes[SYNTHMODEL_MAX_LAYERS];
	Onnx__NodeProto *node_ptrs[SYNTHMODEL_MAX_LAYERS];
	Onnx__AttributeProto transb[SYNTHMODEL_MAX_LAYERS];
	Onnx__AttributeProto *attr_ptrs[SYNTHMODEL_MAX_LAYERS][1];
	Onnx__TensorProto inits[SYNTHMODEL_MAX_LAYERS];
	Onnx__TensorProto *init_ptrs[SYNTHMODEL_MAX_LAYERS];
	int64_t init_dims[SYNTHMODEL_MAX_LAYERS][2];
	char names[SYNTHMODEL_MAX_LAYERS + 1][16];   /* activations x, h1.., y */
	char wnames[SYNTHMODEL_MAX_LAYERS][16];
	char nnames[SYNTHMODEL_MAX_LAYERS][16];
	char *node_in[SYNTHMODEL_MAX_LAYERS][2];
	char *node_out[SYNTHMODEL_MAX_LAYERS][1];
	/* graph input and output value infos */
	Onnx__ValueInfoProto vi[2];
	Onnx__ValueInfoProto *vi_ptrs[2][1];
	Onnx__TypeProto type[2];
	Onnx__TypeProto__Tensor ttype[2];
	Onnx__TensorShapeProto shape[2];
	Onnx__TensorShapeProto__Dimension dim[2][2];
	Onnx__TensorShapeProto__Dimension *dim_ptrs[2][2];
};

static void set_value_info(struct holder *h, int k, char *name, int64_t width)
{
	Onnx__ValueInfoProto vi = ONNX__VALUE_INFO_PROTO__INIT;
	Onnx__TypeProto tp = ONNX__TYPE_PROTO__INIT;
	Onnx__TypeProto__Tensor tt = ONNX__TYPE_PROTO__TENSOR__INIT;
	Onnx__TensorShapeProto sp = ONNX__TENSOR_SHAPE_PROTO__INIT;
	for (int d = 0; d < 2; d++) {
		Onnx__TensorShapeProto__Dimension dm = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
		dm.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
		dm.dim_value = d == 0 ? 1 : width;
		h->dim[k][d] = dm;
		h->dim_ptrs[k][d] = &h->dim[k][d];
	}
	sp.n_dim = 2;
	sp.dim = h->dim_ptrs[k];
	h->shape[k] = sp;
	tt.has_elem_type = 1;
	tt.elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
	tt.shape = &h->shape[k];
	h->ttype[k] = tt;
	tp.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
	tp.tensor_type = &h->ttype[k];
	h->type[k] = tp;
	vi.name = name;
	vi.type = &h->type[k];
	h->vi[k] = vi;
	h->vi_ptrs[k][0] = &h->vi[k];
}

static enum nn_status build(const struct synthmodel *s, struct holder **out, struct nn_err *e)
{
	if (s->n_layers == 0 || s->n_layers > SYNTHMODEL_MAX_LAYERS)
		return err_set(e, NN_EINVAL, "invalid_argument", "", "layer count %zu outside 1..%d",
			       s->n_layers, SYNTHMODEL_MAX_LAYERS);
	struct holder *h = calloc(1, sizeof *h);
	if (!h)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for the model proto");
	size_t n = s->n_layers;
	snprintf(h->names[0], sizeof h->names[0], "x");
	for (size_t i = 1; i < n; i++)
		snprintf(h->names[i], sizeof h->names[i], "h%zu", i);
	snprintf(h->names[n], sizeof h->names[n], "y");

	for (size_t i = 0; i < n; i++) {
		int64_t rows, cols;
		synthmodel_weight_shape(s, i, &rows, &cols);
		size_t bytes = (size_t)rows * (size_t)cols * sizeof(float);
		snprintf(h->wnames[i], sizeof h->wnames[i], "W%zu", i);
		snprintf(h->nnames[i], sizeof h->nnames[i], "layer%zu", i);

		Onnx__TensorProto t = ONNX__TENSOR_PROTO__INIT;
		h->init_dims[i][0] = rows;
		h->init_dims[i][1] = cols;
		t.name = h->wnames[i];
		t.n_dims = 2;
		t.dims = h->init_dims[i];
		t.has_data_type = 1;
		t.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
		t.has_raw_data = 1;
		t.raw_data.len = bytes;
		/* Borrowed for packing only: the proto is never freed by protobuf-c. */
		t.raw_data.data = (uint8_t *)(uintptr_t)s->weights[i];
		h->inits[i] = t;
		h->init_ptrs[i] = &h->inits[i];

		Onnx__NodeProto nd = ONNX__NODE_PROTO__INIT;
		h->node_in[i][0] = h->names[i];
		h->node_in[i][1] = h->wnames[i];
		h->node_out[i][0] = h->names[i + 1];
		nd.n_input = 2;
		nd.input = h->node_in[i];
		nd.n_output = 1;
		nd.output = h->node_out[i];
		nd.name = h->nnames[i];
		if (s->gemm[i]) {
			Onnx__AttributeProto a = ONNX__ATTRIBUTE_PROTO__INIT;
			a.name = "transB";
			a.has_type = 1;
			a.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
			a.has_i = 1;
			a.i = 1;
			h->transb[i] = a;
			h->attr_ptrs[i][0] = &h->transb[i];
			nd.op_type = "Gemm";
			nd.n_attribute = 1;
			nd.attribute = h->attr_ptrs[i];
		} else {
			nd.op_type = "MatMul";
		}
		h->nodes[i] = nd;
		h->node_ptrs[i] = &h->nodes[i];
	}
	set_value_info(h, 0, h->names[0], s->dims[0]);
	set_value_info(h, 1, h->names[n], s->dims[n]);

	Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
	g.name = "nncd_bench";
	g.n_node = n;
	g.node = h->node_ptrs;
	g.n_initializer = n;
	g.initializer = h->init_ptrs;
	g.n_input = 1;
	g.input = h->vi_ptrs[0];
	g.n_output = 1;
	g.output = h->vi_ptrs[1];
	h->graph = g;

	Onnx__OperatorSetIdProto os = ONNX__OPERATOR_SET_ID_PROTO__INIT;
	os.domain = "";
	os.has_version = 1;
	os.version = 17;
	h->opset = os;
	h->opsets[0] = &h->opset;

	Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
	m.has_ir_version = 1;
	m.ir_version = 8;
	m.n_opset_import = 1;
	m.opset_import = h->opsets;
	m.producer_name = "nncd-bench";
	m.producer_version = "1";
	m.graph = &h->graph;
	h->model = m;
	*out = h;
	return NN_OK;
}

enum nn_status synthmodel_pack(const struct synthmodel *s, uint8_t **out, size_t *len,
			       struct nn_err *e)
{
	struct holder *h;
	enum nn_status st = build(s, &h, e);
	if (st != NN_OK)
		return st;
	size_t n = onnx__model_proto__get_packed_size(&h->model);
	uint8_t *buf = malloc(n ? n : 1);
	if (!buf) {
		free(h);
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for %zu bytes", n);
	}
	size_t got = onnx__model_proto__pack(&h->model, buf);
	free(h);
	if (got != n) {
		free(buf);
		return err_set(e, NN_EINTERNAL, "internal", "", "packed %zu bytes, expected %zu",
			       got, n);
	}
	*out = buf;
	*len = n;
	return NN_OK;
}

struct file_sink {
	ProtobufCBuffer base;
	FILE *f;
	size_t written;
	int err; /* errno of the first failed write */
};

static void file_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
	struct file_sink *s = (struct file_sink *)b;
	if (s->err)
		return;
	if (fwrite(data, 1, len, s->f) != len)
		s->err = errno ? errno : EIO;
	else
		s->written += len;
}

enum nn_status synthmodel_write_file(const struct synthmodel *s, const char *path, size_t *len,
				     struct nn_err *e)
{
	struct holder *h;
	enum nn_status st = build(s, &h, e);
	if (st != NN_OK)
		return st;
	struct file_sink sink = {.base = {.append = file_append}};
	sink.f = fopen(path, "wb");
	if (!sink.f) {
		st = err_set(e, NN_EIO, "io_error", "", "cannot create %s: %s", path,
			     strerror(errno));
		free(h);
		return st;
	}
	onnx__model_proto__pack_to_buffer(&h->model, &sink.base);
	free(h);
	if (fclose(sink.f) != 0 && !sink.err)
		sink.err = errno ? errno : EIO;
	if (sink.err)
		return err_set(e, NN_EIO, "io_error", "", "writing %s: %s", path,
			       strerror(sink.err));
	*len = sink.written;
	return NN_OK;
}
