/* test_prune_recon: engine/prune_recon.c against an independent float64
 * numpy implementation of the documented rule (data/make_recon_cases.py), on
 * a Gemm(transB) + MatMul MLP with a dead input column and a CNN with a
 * strided padded Conv, a grouped dilated Conv and a 1x1 Conv; and the step's
 * contract: pruned weights stay exactly zero, the report is complete, a
 * prune step with reconstruct but no data is refused, and prune_run with
 * "reconstruct" beats the mask alone on the layers' output error.
 * usage: test_prune_recon CASE DATA_DIR */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"
#include "eval.h"
#include "npy.h"
#include "onnx_graph.h"
#include "prune.h"
#include "prune_recon.h"

/* A float32 .npy into an owned tensor. */
static int load_npy(const char *dir, const char *name, struct tensor *t)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s.npy", dir, name);
	int fd = open(path, O_RDONLY);
	struct npy_header h;
	struct nn_err e = {0};
	CHECK(fd >= 0, "open %s", path);
	CHECK(npy_read_header_fd(fd, &h, &e) == NN_OK && h.dtype == DT_FLOAT, "%s: %s", path,
	      e.message);
	CHECK(tensor_alloc(t, DT_FLOAT, h.ndim, h.shape, &e) == NN_OK, "alloc");
	CHECK(pread(fd, t->data, h.data_bytes, (off_t)h.data_offset) == (ssize_t)h.data_bytes,
	      "read %s", path);
	close(fd);
	return 0;
}

static Onnx__TensorProto *init_named(struct onnx_model *m, const char *name)
{
	Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; i < g->n_initializer; i++)
		if (!strcmp(g->initializer[i]->name, name))
			return g->initializer[i];
	return NULL;
}

static const Onnx__NodeProto *reader_of(struct onnx_model *m, const char *name)
{
	Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; i < g->n_node; i++)
		if (g->node[i]->n_input > 1 && !strcmp(g->node[i]->input[1], name))
			return g->node[i];
	return NULL;
}

/* Prunes each weight where the expected result is zero, reconstructs, and
 * compares every weight with numpy's. */
static int matches_reference(const char *dir, const char *model, const char *const *names,
			     size_t n)
{
	char path[1024], base[256];
	struct onnx_model *m = NULL;
	struct nn_err e = {0};
	snprintf(path, sizeof path, "%s/%s.onnx", dir, model);
	CHECK(onnx_load_file(path, &m, &e) == NN_OK, "%s: %s", path, e.message);
	struct tensor x, expect[4], views[4];
	float *orig[4];
	struct recon_weight rw[4];
	snprintf(base, sizeof base, "%s_x", model);
	if (load_npy(dir, base, &x))
		return 1;
	for (size_t i = 0; i < n; i++) {
		snprintf(base, sizeof base, "%s_%s", model, names[i]);
		if (load_npy(dir, base, &expect[i]))
			return 1;
		Onnx__TensorProto *t = init_named(m, names[i]);
		CHECK(t && onnx_initializer_view(t, &views[i], &e) == NN_OK, "view %s", names[i]);
		int64_t len = tensor_numel(&views[i]);
		CHECK(len == tensor_numel(&expect[i]), "%s: element count", names[i]);
		orig[i] = malloc((size_t)len * sizeof(float));
		memcpy(orig[i], views[i].data, (size_t)len * sizeof(float));
		float *w = views[i].data, *want = expect[i].data;
		for (int64_t j = 0; j < len; j++)
			if (want[j] == 0)
				w[j] = 0;
		CHECK(!views[i].owned || onnx_initializer_set(t, &views[i], &e) == NN_OK, "store");
		rw[i] = (struct recon_weight){t, reader_of(m, names[i]), orig[i]};
	}
	struct eval_data cal = {&x, NULL};
	struct step_ctx ctx = {.calib = &cal, .threads = 1};
	json_t *out = NULL;
	CHECK(recon_run(m, rw, n, &ctx, &out, &e) == NN_OK, "recon_run: %s", e.message);
	CHECK(json_integer_value(json_object_get(out, "samples")) == x.shape[0], "samples");
	json_t *layers = json_object_get(out, "layers");
	CHECK(json_array_size(layers) == n, "one report row per weight");
	for (size_t i = 0; i < n; i++) {
		json_t *l = json_array_get(layers, i);
		CHECK(!strcmp(json_string_value(json_object_get(l, "status")), "reconstructed"),
		      "%s status", names[i]);
		double before = json_number_value(json_object_get(l, "output_error_pruned"));
		double after = json_number_value(json_object_get(l, "output_error"));
		CHECK(after < before, "%s: output error %g not below the mask's %g", names[i], after,
		      before);
		struct tensor now;
		CHECK(onnx_initializer_view(init_named(m, names[i]), &now, &e) == NN_OK, "view");
		const float *got = now.data, *want = expect[i].data;
		double maxdiff = 0, maxref = 0;
		for (int64_t j = 0; j < tensor_numel(&now); j++) {
			CHECK((want[j] == 0) == (got[j] == 0), "%s[%lld]: zero pattern %g vs %g",
			      names[i], (long long)j, got[j], want[j]);
			maxdiff = fmax(maxdiff, fabs((double)got[j] - want[j]));
			maxref = fmax(maxref, fabs((double)want[j]));
		}
		printf("%s %s: max |diff| %.3g (max |w| %.3g), output error %.4f -> %.4f\n", model,
		       names[i], maxdiff, maxref, before, after);
		/* float32 activations and H accumulation against float64: 1e-4 of the scale */
		CHECK(maxdiff <= 1e-4 * maxref, "%s: max |diff| %g > 1e-4 * %g", names[i], maxdiff,
		      maxref);
		tensor_free(&now);
		tensor_free(&expect[i]);
		tensor_free(&views[i]);
		free(orig[i]);
	}
	json_decref(out);
	tensor_free(&x);
	onnx_free(m);
	return 0;
}

static int mlp_matches_numpy(const char *dir)
{
	static const char *const names[] = {"W1", "W2"};
	return matches_reference(dir, "recon_mlp", names, 2);
}

static int cnn_matches_numpy(const char *dir)
{
	static const char *const names[] = {"C1", "C2", "C3"};
	return matches_reference(dir, "recon_cnn", names, 3);
}

/* The whole step: magnitude 0.6 global with reconstruct keeps exactly the
 * zeros of the same step without it, and reports the reconstruction. */
static int step_keeps_mask_and_reports(const char *dir)
{
	char path[1024];
	struct onnx_model *a = NULL, *b = NULL;
	struct nn_err e = {0};
	struct tensor x;
	snprintf(path, sizeof path, "%s/recon_cnn.onnx", dir);
	CHECK(onnx_load_file(path, &a, &e) == NN_OK && onnx_load_file(path, &b, &e) == NN_OK,
	      "load");
	if (load_npy(dir, "recon_cnn_x", &x))
		return 1;
	json_t *spec = json_loads("{\"op\":\"prune\",\"sparsity\":0.6,\"reconstruct\":true}", 0,
				  NULL);
	struct prune_params p;
	CHECK(prune_params_parse(spec, 0, &p, &e) == NN_OK && p.reconstruct, "parse: %s",
	      e.message);
	struct eval_data cal = {&x, NULL};
	struct step_ctx ctx = {.calib = &cal, .threads = 2};
	json_t *ma = NULL, *mb = NULL;
	CHECK(prune_run(a, &p, &ctx, &ma, &e) == NN_OK, "prune reconstruct: %s", e.message);
	p.reconstruct = false;
	CHECK(prune_run(b, &p, &ctx, &mb, &e) == NN_OK, "prune: %s", e.message);
	CHECK(!json_object_get(mb, "reconstruction"), "plain prune reports a reconstruction");
	json_t *r = json_object_get(ma, "reconstruction");
	CHECK(r && json_array_size(json_object_get(r, "layers")) == 3, "reconstruction report");
	static const char *const names[] = {"C1", "C2", "C3"};
	for (size_t i = 0; i < 3; i++) {
		struct tensor ta, tb;
		CHECK(onnx_initializer_view(init_named(a, names[i]), &ta, &e) == NN_OK &&
			      onnx_initializer_view(init_named(b, names[i]), &tb, &e) == NN_OK,
		      "views");
		const float *fa = ta.data, *fb = tb.data;
		size_t changed = 0;
		for (int64_t j = 0; j < tensor_numel(&ta); j++) {
			CHECK((fa[j] == 0) == (fb[j] == 0), "%s[%lld] mask differs", names[i],
			      (long long)j);
			changed += fa[j] != fb[j];
		}
		CHECK(changed > 0, "%s: no kept weight changed", names[i]);
		tensor_free(&ta);
		tensor_free(&tb);
	}
	CHECK(json_real_value(json_object_get(ma, "sparsity")) ==
		      json_real_value(json_object_get(mb, "sparsity")),
	      "same sparsity");
	json_decref(spec);
	json_decref(ma);
	json_decref(mb);
	tensor_free(&x);
	onnx_free(a);
	onnx_free(b);
	return 0;
}

/* Without calibration data the step fails with a message naming the need;
 * a dataset without reconstruct is refused at parse time. */
static int needs_data(const char *dir)
{
	char path[1024];
	struct onnx_model *m = NULL;
	struct nn_err e = {0};
	snprintf(path, sizeof path, "%s/recon_mlp.onnx", dir);
	CHECK(onnx_load_file(path, &m, &e) == NN_OK, "load");
	json_t *spec = json_loads("{\"op\":\"prune\",\"sparsity\":0.5,\"reconstruct\":true}", 0,
				  NULL);
	struct prune_params p;
	json_t *metrics = NULL;
	CHECK(prune_params_parse(spec, 0, &p, &e) == NN_OK, "parse");
	CHECK(prune_run(m, &p, NULL, &metrics, &e) == NN_EINVAL && strstr(e.message, "dataset"),
	      "no data: %s", e.message);
	json_decref(spec);
	spec = json_loads("{\"op\":\"prune\",\"sparsity\":0.5,\"dataset\":\"ds_x\"}", 0, NULL);
	CHECK(prune_params_parse(spec, 2, &p, &e) == NN_EINVAL &&
		      !strcmp(e.field, "steps[2].dataset"),
	      "dataset without reconstruct: %s %s", e.field, e.message);
	json_decref(spec);
	onnx_free(m);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s CASE DATA_DIR\n", argv[0]);
		return 2;
	}
	const char *c = argv[1], *dir = argv[2];
	if (!strcmp(c, "mlp"))
		return mlp_matches_numpy(dir);
	if (!strcmp(c, "cnn"))
		return cnn_matches_numpy(dir);
	if (!strcmp(c, "step"))
		return step_keeps_mask_and_reports(dir);
	if (!strcmp(c, "needs_data"))
		return needs_data(dir);
	fprintf(stderr, "unknown case %s\n", c);
	return 2;
}
