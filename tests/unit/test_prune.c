/* Unit tests for engine/prune: the exact selection kernel against a sorting
 * reference, tie handling, sparsity edge cases, cancellation, graph-based
 * weight choice and the step's metrics; per-layer overrides and
 * keep_first_last; N:M against a sorting reference in every layout
 * (data/nm_layouts.onnx from data/make_nm_models.py).
 * Usage: test_prune CASE DATA_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_io.h"
#include "prune.h"
#include "spec.h"

#define CHECK(cond, ...)                                                              \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, \
				#cond);                                               \
			fprintf(stderr, __VA_ARGS__);                                 \
			fprintf(stderr, "\n");                                        \
			return 1;                                                     \
		}                                                                     \
	} while (0)

static const char *data_dir = ".";

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}
static float rnd_normalish(void)
{
	return ((float)(rnd() % 20001) - 10000.0f) / 3000.0f;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

/* k-th smallest |w| by sorting: the reference. */
static float ref_kth(float *const *arrays, const size_t *lens, size_t n_arrays, uint64_t k)
{
	size_t total = 0;
	for (size_t a = 0; a < n_arrays; a++)
		total += lens[a];
	float *all = malloc(total * sizeof *all);
	size_t at = 0;
	for (size_t a = 0; a < n_arrays; a++)
		for (size_t i = 0; i < lens[a]; i++)
			all[at++] = fabsf(arrays[a][i]);
	qsort(all, total, sizeof *all, cmp_float);
	float t = all[k - 1];
	free(all);
	return t;
}

static uint64_t zeros_of(float *const *arrays, const size_t *lens, size_t n_arrays)
{
	uint64_t z = 0;
	for (size_t a = 0; a < n_arrays; a++)
		for (size_t i = 0; i < lens[a]; i++)
			z += arrays[a][i] == 0.0f;
	return z;
}

static int test_kth_matches_sort(void)
{
	size_t lens[3] = {1000, 1, 4099};
	float *arrays[3];
	for (int a = 0; a < 3; a++) {
		arrays[a] = malloc(lens[a] * sizeof(float));
		for (size_t i = 0; i < lens[a]; i++) {
			float v = rnd_normalish();
			/* sprinkle zeros, negative zeros, tiny denormals and repeats */
			uint32_t r = rnd() % 50;
			if (r == 0)
				v = 0.0f;
			else if (r == 1)
				v = -0.0f;
			else if (r == 2)
				v = 1e-42f;
			else if (r < 6)
				v = (r & 1) ? 0.5f : -0.5f;
			arrays[a][i] = v;
		}
	}
	uint64_t total = lens[0] + lens[1] + lens[2];
	uint64_t ks[] = {1, 2, 7, 100, total / 3, total / 2, total - 1, total};
	for (size_t j = 0; j < sizeof ks / sizeof ks[0]; j++) {
		float got = -1;
		CHECK(prune_kth_abs((const float *const *)arrays, lens, 3, ks[j], &got) == NN_OK,
		      "k=%llu", (unsigned long long)ks[j]);
		float want = ref_kth(arrays, lens, 3, ks[j]);
		CHECK(got == want, "k=%llu got %g want %g", (unsigned long long)ks[j], got, want);
	}
	/* random k sweep on one array */
	for (int j = 0; j < 200; j++) {
		uint64_t k = 1 + rnd() % lens[2];
		float got;
		CHECK(prune_kth_abs((const float *const *)&arrays[2], &lens[2], 1, k, &got) == NN_OK,
		      "sweep");
		CHECK(got == ref_kth(&arrays[2], &lens[2], 1, k), "sweep k=%llu",
		      (unsigned long long)k);
	}
	float dummy;
	CHECK(prune_kth_abs((const float *const *)arrays, lens, 3, 0, &dummy) == NN_EINVAL,
	      "k=0 rejected");
	CHECK(prune_kth_abs((const float *const *)arrays, lens, 3, total + 1, &dummy) == NN_EINVAL,
	      "k>n rejected");
	for (int a = 0; a < 3; a++)
		free(arrays[a]);
	return 0;
}

/* Above STEP_POLL_ELEMS so the chunked passes and their seams are exercised. */
static int test_kth_large_chunked(void)
{
	size_t n = STEP_POLL_ELEMS * 2 + 12345;
	float *w = malloc(n * sizeof *w), *sorted = malloc(n * sizeof *w);
	for (size_t i = 0; i < n; i++) {
		w[i] = rnd_normalish();
		sorted[i] = fabsf(w[i]);
	}
	qsort(sorted, n, sizeof *sorted, cmp_float);
	float *arrays[1] = {w};
	uint64_t ks[] = {1, n / 5, STEP_POLL_ELEMS, n - 3, n};
	for (int j = 0; j < 5; j++) {
		float got;
		CHECK(prune_kth_abs((const float *const *)arrays, &n, 1, ks[j], &got) == NN_OK, "ok");
		CHECK(got == sorted[ks[j] - 1], "k=%llu", (unsigned long long)ks[j]);
	}
	uint64_t k = (uint64_t)(0.8 * (double)n);
	float t;
	CHECK(prune_arrays(arrays, &n, 1, k, NULL, &t, NULL) == NN_OK, "prune");
	CHECK(t == sorted[k - 1], "threshold");
	CHECK(zeros_of(arrays, &n, 1) == k, "exactly k zeros: %llu vs %llu",
	      (unsigned long long)zeros_of(arrays, &n, 1), (unsigned long long)k);
	free(w);
	free(sorted);
	return 0;
}

static int test_ties_deterministic(void)
{
	float a0[] = {3, -1, 1, 0};
	float a1[] = {1, -1, 2, 0.5f};
	float *arrays[2] = {a0, a1};
	size_t lens[2] = {4, 4};
	/* |w| sorted: 0, 0.5, 1, 1, 1, 1, 2, 3. k = 4 -> t = 1, below = 2, two of
	 * the four ties go, in order: a0[1], a0[2]. */
	struct prune_selection sel;
	CHECK(prune_select((const float *const *)arrays, lens, 2, 4, NULL, &sel, NULL) == NN_OK,
	      "select");
	CHECK(sel.threshold == 1.0f && sel.below == 2 && sel.ties == 4, "t=%g below=%llu ties=%llu",
	      sel.threshold, (unsigned long long)sel.below, (unsigned long long)sel.ties);
	float t;
	CHECK(prune_arrays(arrays, lens, 2, 4, NULL, &t, NULL) == NN_OK, "prune");
	float w0[] = {3, 0, 0, 0}, w1[] = {1, -1, 2, 0};
	CHECK(!memcmp(a0, w0, sizeof w0) && !memcmp(a1, w1, sizeof w1),
	      "got a0 = %g %g %g %g, a1 = %g %g %g %g", a0[0], a0[1], a0[2], a0[3], a1[0], a1[1],
	      a1[2], a1[3]);
	/* k = 6: all four ties go (t = 1, below = 2, need = 4). */
	float b0[] = {3, -1, 1, 0}, b1[] = {1, -1, 2, 0.5f};
	float *barr[2] = {b0, b1};
	CHECK(prune_arrays(barr, lens, 2, 6, NULL, &t, NULL) == NN_OK, "prune");
	CHECK(zeros_of(barr, lens, 2) == 6 && b0[0] == 3 && b1[2] == 2, "all ties pruned");
	return 0;
}

/* The reference pruning: order elements by (|w|, array, index) and zero the
 * first k. */
struct ref_el {
	float mag;
	size_t at;
};
static int cmp_ref(const void *a, const void *b)
{
	const struct ref_el *x = a, *y = b;
	if (x->mag != y->mag)
		return x->mag < y->mag ? -1 : 1;
	return x->at < y->at ? -1 : x->at > y->at;
}

/* prune_arrays zeroes while selecting when the threshold's bucket is small,
 * and falls back to a separate zeroing pass when it is huge (many equal
 * magnitudes): both must give exactly the reference result. */
static int test_fused_and_fallback_match_reference(void)
{
	for (int variant = 0; variant < 4; variant++) {
		size_t lens[2] = {6000, 7001};
		size_t total = lens[0] + lens[1];
		float *arrays[2], *ref = malloc(total * sizeof *ref);
		struct ref_el *els = malloc(total * sizeof *els);
		for (int a = 0; a < 2; a++) {
			arrays[a] = malloc(lens[a] * sizeof(float));
			for (size_t i = 0; i < lens[a]; i++) {
				float v = rnd_normalish();
				if (variant >= 2 && rnd() % 2) /* half the weights share |w| = 0.5 */
					v = (rnd() & 1) ? 0.5f : -0.5f;
				if (rnd() % 20 == 0)
					v = 0.0f;
				arrays[a][i] = v;
			}
		}
		memcpy(ref, arrays[0], lens[0] * sizeof *ref);
		memcpy(ref + lens[0], arrays[1], lens[1] * sizeof *ref);
		for (size_t i = 0; i < total; i++)
			els[i] = (struct ref_el){fabsf(ref[i]), i};
		qsort(els, total, sizeof *els, cmp_ref);
		uint64_t k = variant % 2 ? total / 2 : total - total / 10;
		for (uint64_t i = 0; i < k; i++)
			ref[els[i].at] = 0.0f;
		float t;
		CHECK(prune_arrays(arrays, lens, 2, k, NULL, &t, NULL) == NN_OK, "prune");
		CHECK(t == els[k - 1].mag, "variant %d: threshold %g want %g", variant, t,
		      els[k - 1].mag);
		for (size_t i = 0; i < total; i++) {
			float got = i < lens[0] ? arrays[0][i] : arrays[1][i - lens[0]];
			CHECK(got == ref[i] || (got == 0 && ref[i] == 0),
			      "variant %d: element %zu is %g, reference %g", variant, i, got, ref[i]);
		}
		free(arrays[0]);
		free(arrays[1]);
		free(ref);
		free(els);
	}
	return 0;
}

static int test_sparsity_edges(void)
{
	size_t n = 1000;
	float *w = malloc(n * sizeof *w), *orig = malloc(n * sizeof *w);
	for (size_t i = 0; i < n; i++)
		orig[i] = w[i] = rnd_normalish() + 0.001f * (float)i;
	float *arrays[1] = {w};
	float t = -1;
	/* sparsity 0: k = 0, nothing changes */
	CHECK(prune_arrays(arrays, &n, 1, 0, NULL, &t, NULL) == NN_OK && t == 0, "k=0");
	CHECK(!memcmp(w, orig, n * sizeof *w), "unchanged");
	/* sparsity 0.999: round(0.999 * 1000) = 999 -> one survivor, the largest |w| */
	CHECK(prune_arrays(arrays, &n, 1, 999, NULL, &t, NULL) == NN_OK, "k=999");
	CHECK(zeros_of(arrays, &n, 1) == 999, "999 zeros");
	float maxabs = 0;
	for (size_t i = 0; i < n; i++)
		maxabs = fabsf(orig[i]) > maxabs ? fabsf(orig[i]) : maxabs;
	for (size_t i = 0; i < n; i++)
		if (w[i] != 0)
			CHECK(fabsf(w[i]) == maxabs, "survivor is the largest");
	/* existing zeros count: fewer needed than present -> nothing else pruned */
	float z[] = {0, 0, 0, 5, -6};
	float *za[1] = {z};
	size_t zn = 5;
	CHECK(prune_arrays(za, &zn, 1, 2, NULL, &t, NULL) == NN_OK && t == 0, "zeros");
	CHECK(z[3] == 5 && z[4] == -6, "non-zeros kept");
	free(w);
	free(orig);
	return 0;
}

static int test_cancel(void)
{
	size_t n = 100;
	float w[100];
	for (size_t i = 0; i < n; i++)
		w[i] = (float)i;
	float *arrays[1] = {w};
	atomic_bool flag = true;
	struct step_ctx ctx = {.cancel = &flag};
	float t;
	struct nn_err e = {0};
	CHECK(prune_arrays(arrays, &n, 1, 50, &ctx, &t, &e) == NN_ECANCELED, "canceled");
	CHECK(e.status == NN_ECANCELED, "err filled");
	return 0;
}

static struct onnx_model *load(const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", data_dir, name);
	struct onnx_model *m = NULL;
	struct nn_err e = {0};
	if (onnx_load_file(path, &m, &e) != NN_OK) {
		fprintf(stderr, "load %s: %s\n", path, e.message);
		return NULL;
	}
	return m;
}

static uint64_t init_zeros(struct onnx_model *m, const char *name, uint64_t *n_out)
{
	struct tensor t;
	Onnx__TensorProto *init = onnx_find_initializer(m, name);
	if (!init || onnx_initializer_view(init, &t, NULL) != NN_OK)
		return UINT64_MAX;
	int64_t n = tensor_numel(&t);
	uint64_t z = 0;
	for (int64_t i = 0; i < n; i++)
		z += ((float *)t.data)[i] == 0.0f;
	*n_out = (uint64_t)n;
	tensor_free(&t);
	return z;
}

static int same_initializer(struct onnx_model *a, struct onnx_model *b, const char *name)
{
	struct tensor ta, tb;
	if (onnx_initializer_view(onnx_find_initializer(a, name), &ta, NULL) != NN_OK)
		return 0;
	if (onnx_initializer_view(onnx_find_initializer(b, name), &tb, NULL) != NN_OK) {
		tensor_free(&ta);
		return 0;
	}
	int64_t n = tensor_numel(&ta);
	int same = n == tensor_numel(&tb) && !memcmp(ta.data, tb.data, (size_t)n * sizeof(float));
	tensor_free(&ta);
	tensor_free(&tb);
	return same;
}

static int test_prunable_from_graph(void)
{
	struct onnx_model *m = load("steps_mlp.onnx"), *orig = load("steps_mlp.onnx");
	CHECK(m && orig, "load");
	struct prune_params p = {.scope = PRUNE_SCOPE_GLOBAL, .sparsity = 0.9};
	json_t *metrics = NULL;
	struct nn_err e = {0};
	CHECK(prune_run(m, &p, NULL, &metrics, &e) == NN_OK, "%s", e.message);
	/* "fc.weight" feeds an Add: untouched; "foo" feeds a MatMul: pruned. */
	CHECK(same_initializer(m, orig, "fc.weight"), "fc.weight must not be pruned");
	CHECK(same_initializer(m, orig, "g.b"), "Gemm bias must not be pruned");
	CHECK(!same_initializer(m, orig, "foo"), "foo must be pruned");
	json_t *layers = json_object_get(metrics, "layers");
	CHECK(json_array_size(layers) == 2, "two prunable weights, got %zu",
	      json_array_size(layers));
	const char *n0 = json_string_value(json_object_get(json_array_get(layers, 0), "name"));
	const char *n1 = json_string_value(json_object_get(json_array_get(layers, 1), "name"));
	CHECK(n0 && n1 &&
		      ((!strcmp(n0, "foo") && !strcmp(n1, "g.w")) ||
		       (!strcmp(n0, "g.w") && !strcmp(n1, "foo"))),
	      "names %s %s", n0, n1);
	json_decref(metrics);
	onnx_free(m);
	onnx_free(orig);
	return 0;
}

static int test_global_exact_k(void)
{
	double sparsities[] = {0.0, 0.3, 0.5, 0.8, 0.999};
	for (size_t j = 0; j < sizeof sparsities / sizeof sparsities[0]; j++) {
		struct onnx_model *m = load("steps_mlp.onnx");
		CHECK(m, "load");
		uint64_t nf = 0, ng = 0, zf0 = init_zeros(m, "foo", &nf), zg0 = init_zeros(m, "g.w", &ng);
		struct prune_params p = {.scope = PRUNE_SCOPE_GLOBAL, .sparsity = sparsities[j]};
		json_t *mt = NULL;
		struct nn_err e = {0};
		CHECK(prune_run(m, &p, NULL, &mt, &e) == NN_OK, "%s", e.message);
		uint64_t zf = init_zeros(m, "foo", &nf), zg = init_zeros(m, "g.w", &ng);
		uint64_t total = nf + ng;
		uint64_t k = (uint64_t)floor(sparsities[j] * (double)total + 0.5);
		uint64_t want = k > zf0 + zg0 ? k : zf0 + zg0;
		CHECK(zf + zg == want, "s=%g zeros %llu want %llu", sparsities[j],
		      (unsigned long long)(zf + zg), (unsigned long long)want);
		CHECK(json_integer_value(json_object_get(mt, "parameters")) == (json_int_t)total,
		      "parameters");
		CHECK(json_integer_value(json_object_get(mt, "nonzeros")) ==
			      (json_int_t)(total - want),
		      "nonzeros");
		CHECK(json_integer_value(json_object_get(mt, "nonzeros_before")) ==
			      (json_int_t)(total - zf0 - zg0),
		      "nonzeros_before");
		double achieved = json_real_value(json_object_get(mt, "sparsity"));
		CHECK(fabs(achieved - (double)want / (double)total) < 1e-12, "sparsity %g", achieved);
		/* model-wide figures cover every initializer: foo, fc.weight, g.w, g.b */
		CHECK(json_integer_value(json_object_get(mt, "model_parameters")) ==
			      (json_int_t)(total + 32 + 8),
		      "model_parameters");
		CHECK(json_integer_value(json_object_get(mt, "model_nonzeros")) ==
			      (json_int_t)(total - want + 32 + 8),
		      "model_nonzeros");
		CHECK(json_integer_value(json_object_get(mt, "bytes_before")) > 0 &&
			      json_integer_value(json_object_get(mt, "bytes_after")) > 0,
		      "bytes");
		CHECK(!strcmp(json_string_value(json_object_get(mt, "scope")), "global"), "scope");
		CHECK(json_is_real(json_object_get(mt, "seconds")), "seconds");
		json_t *l0 = json_array_get(json_object_get(mt, "layers"), 0);
		CHECK(json_is_array(json_object_get(l0, "shape")) &&
			      json_is_string(json_object_get(l0, "node")) &&
			      json_is_string(json_object_get(l0, "op")),
		      "layer fields");
		/* the global threshold separates survivors from pruned weights */
		if (k > zf0 + zg0) {
			double t = json_real_value(json_object_get(mt, "threshold"));
			struct tensor tv;
			onnx_initializer_view(onnx_find_initializer(m, "foo"), &tv, NULL);
			for (int64_t i = 0; i < tensor_numel(&tv); i++) {
				float v = ((float *)tv.data)[i];
				CHECK(v == 0 || fabsf(v) >= (float)t, "survivor below threshold");
			}
			tensor_free(&tv);
		}
		json_decref(mt);
		onnx_free(m);
	}
	return 0;
}

static int test_layer_exact_k(void)
{
	struct onnx_model *m = load("steps_mlp.onnx");
	CHECK(m, "load");
	uint64_t nf = 0, ng = 0, zf0 = init_zeros(m, "foo", &nf), zg0 = init_zeros(m, "g.w", &ng);
	struct prune_params p = {.scope = PRUNE_SCOPE_LAYER, .sparsity = 0.7};
	json_t *mt = NULL;
	struct nn_err e = {0};
	CHECK(prune_run(m, &p, NULL, &mt, &e) == NN_OK, "%s", e.message);
	uint64_t zf = init_zeros(m, "foo", &nf), zg = init_zeros(m, "g.w", &ng);
	uint64_t kf = (uint64_t)floor(0.7 * (double)nf + 0.5), kg = (uint64_t)floor(0.7 * (double)ng + 0.5);
	CHECK(zf == (kf > zf0 ? kf : zf0), "foo zeros %llu want %llu", (unsigned long long)zf,
	      (unsigned long long)kf);
	CHECK(zg == (kg > zg0 ? kg : zg0), "g.w zeros %llu want %llu", (unsigned long long)zg,
	      (unsigned long long)kg);
	CHECK(json_is_null(json_object_get(mt, "threshold")), "no single threshold for layer scope");
	json_t *layers = json_object_get(mt, "layers");
	for (size_t i = 0; i < json_array_size(layers); i++) {
		json_t *l = json_array_get(layers, i);
		double s = json_real_value(json_object_get(l, "sparsity"));
		json_int_t n = json_integer_value(json_object_get(l, "parameters"));
		json_int_t nz = json_integer_value(json_object_get(l, "nonzeros"));
		CHECK(fabs(s - (1.0 - (double)nz / (double)n)) < 1e-12, "layer sparsity");
		CHECK(fabs(s - 0.7) < 0.01, "layer sparsity near target: %g", s);
	}
	json_decref(mt);
	onnx_free(m);
	return 0;
}

static int test_params_parse(void)
{
	struct {
		const char *json, *field, *msg_part;
	} bad[] = {
		{"{\"op\":\"prune\",\"sparsity\":1.5}", "steps[3].sparsity",
		 "sparsity must be a number in [0, 1), got 1.5"},
		{"{\"op\":\"prune\",\"sparsity\":-0.1}", "steps[3].sparsity", "got -0.1"},
		{"{\"op\":\"prune\",\"sparsity\":\"0.5\"}", "steps[3].sparsity", "got \"0.5\""},
		{"{\"op\":\"prune\"}", "steps[3].sparsity", "missing required field 'sparsity'"},
		{"{\"op\":\"prune\",\"sparsity\":0.5,\"scope\":\"row\"}", "steps[3].scope",
		 "supported: layer, global"},
		{"{\"op\":\"prune\",\"sparsity\":0.5,\"method\":\"random\"}", "steps[3].method",
		 "supported: magnitude"},
		{"{\"op\":\"prune\",\"sparsity\":0.5,\"epochs\":3}", "steps[3].epochs",
		 "unknown field 'epochs'"},
		{"{\"op\":\"prune\",\"sparsity\":0.5,\"keep_first_last\":\"yes\"}",
		 "steps[3].keep_first_last", "must be true or false"},
		{"{\"op\":\"prune\",\"sparsity\":0.5,\"layers\":[]}", "steps[3].layers",
		 "non-empty object"},
		{"{\"op\":\"prune\",\"sparsity\":0.5,\"layers\":{}}", "steps[3].layers",
		 "non-empty object"},
		{"{\"op\":\"prune\",\"sparsity\":0.5,\"layers\":{\"fc1.weight\":1}}",
		 "steps[3].layers.fc1.weight", "in [0, 1), got 1"},
		{"{\"op\":\"prune\",\"layers\":{\"a\":\"half\"}}", "steps[3].layers.a",
		 "got \"half\""},
		{"{\"op\":\"prune\",\"method\":\"nm\",\"n\":4,\"m\":4}", "steps[3].n",
		 "n must be smaller than m"},
		{"{\"op\":\"prune\",\"method\":\"nm\",\"n\":1,\"m\":65}", "steps[3].m",
		 "integer in [2, 64], got 65"},
		{"{\"op\":\"prune\",\"method\":\"nm\",\"n\":1.5}", "steps[3].n", "got 1.5"},
		{"{\"op\":\"prune\",\"method\":\"nm\",\"n\":0}", "steps[3].n",
		 "integer in [1, 63]"},
		{"{\"op\":\"prune\",\"method\":\"nm\",\"sparsity\":0.5}", "steps[3].sparsity",
		 "unknown field 'sparsity' for op nm"},
		{"{\"op\":\"prune\",\"method\":\"nm\",\"layers\":{\"a\":0.5}}",
		 "steps[3].layers", "(method nm)"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_t *j = json_loads(bad[i].json, 0, NULL);
		struct prune_params p;
		struct nn_err e = {0};
		CHECK(prune_params_parse(j, 3, &p, &e) == NN_EINVAL, "%s accepted", bad[i].json);
		CHECK(!strcmp(e.field, bad[i].field), "%s: field '%s'", bad[i].json, e.field);
		CHECK(strstr(e.message, bad[i].msg_part), "%s: message '%s'", bad[i].json,
		      e.message);
		CHECK(!strcmp(e.code, "invalid_spec"), "code %s", e.code);
		json_decref(j);
	}
	json_t *j = json_loads("{\"op\":\"prune\",\"sparsity\":0}", 0, NULL);
	struct prune_params p;
	CHECK(prune_params_parse(j, 0, &p, NULL) == NN_OK && p.scope == PRUNE_SCOPE_GLOBAL &&
		      p.sparsity == 0,
	      "defaults");
	json_decref(j);
	j = json_loads("{\"op\":\"prune\",\"sparsity\":0.25,\"scope\":\"layer\",\"method\":"
		       "\"magnitude\"}",
		       0, NULL);
	CHECK(prune_params_parse(j, 0, &p, NULL) == NN_OK && p.scope == PRUNE_SCOPE_LAYER &&
		      p.sparsity == 0.25,
	      "layer");
	json_decref(j);
	/* layers without sparsity: the others stay dense (sparsity 0) */
	j = json_loads("{\"op\":\"prune\",\"layers\":{\"fc1.weight\":0.95},"
		       "\"keep_first_last\":true}",
		       0, NULL);
	CHECK(prune_params_parse(j, 6, &p, NULL) == NN_OK && p.sparsity == 0 && p.layers &&
		      json_real_value(json_object_get(p.layers, "fc1.weight")) == 0.95 &&
		      p.keep_first_last && p.index == 6 && p.method == PRUNE_MAGNITUDE,
	      "layers");
	json_decref(j);
	j = json_loads("{\"op\":\"prune\",\"method\":\"nm\"}", 0, NULL);
	CHECK(prune_params_parse(j, 1, &p, NULL) == NN_OK && p.method == PRUNE_NM && p.n == 2 &&
		      p.m == 4 && !p.keep_first_last && p.index == 1,
	      "nm defaults 2:4");
	json_decref(j);
	j = json_loads("{\"op\":\"prune\",\"method\":\"nm\",\"n\":1,\"m\":8,"
		       "\"keep_first_last\":true}",
		       0, NULL);
	CHECK(prune_params_parse(j, 1, &p, NULL) == NN_OK && p.n == 1 && p.m == 8 &&
		      p.keep_first_last,
	      "nm 1:8");
	json_decref(j);
	return 0;
}

/* ---- magnitude: per-layer overrides and keep_first_last ---- */

static json_t *parse_step(const char *text, size_t index, struct prune_params *p)
{
	json_t *j = json_loads(text, 0, NULL);
	struct nn_err e = {0};
	if (!j || prune_params_parse(j, index, p, &e) != NN_OK) {
		fprintf(stderr, "parse %s: %s\n", text, e.message);
		json_decref(j);
		return NULL;
	}
	return j; /* p->layers borrows from it */
}

static json_t *layer_named(json_t *metrics, const char *name)
{
	json_t *layers = json_object_get(metrics, "layers");
	for (size_t i = 0; i < json_array_size(layers); i++) {
		json_t *l = json_array_get(layers, i);
		if (!strcmp(json_string_value(json_object_get(l, "name")), name))
			return l;
	}
	return NULL;
}

static uint64_t round_k(double s, uint64_t n)
{
	return (uint64_t)floor(s * (double)n + 0.5);
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static int test_layer_overrides(void)
{
	static const char *const specs[] = {
		"{\"op\":\"prune\",\"sparsity\":0.5,\"layers\":{\"foo\":0.95}}",
		"{\"op\":\"prune\",\"sparsity\":0.5,\"scope\":\"layer\",\"layers\":{\"foo\":0.95}}",
	};
	for (size_t s = 0; s < 2; s++) {
		struct onnx_model *m = load("steps_mlp.onnx");
		CHECK(m, "load");
		uint64_t nf = 0, ng = 0, zf0 = init_zeros(m, "foo", &nf), zg0 = init_zeros(m, "g.w", &ng);
		struct prune_params p;
		json_t *spec = parse_step(specs[s], 2, &p);
		CHECK(spec && p.layers && p.index == 2, "parsed");
		json_t *mt = NULL;
		struct nn_err e = {0};
		CHECK(prune_run(m, &p, NULL, &mt, &e) == NN_OK, "%s", e.message);
		uint64_t zf = init_zeros(m, "foo", &nf), zg = init_zeros(m, "g.w", &ng);
		/* foo on its own at 0.95; g.w, the only other weight, at 0.5 either way */
		CHECK(zf == max_u64(round_k(0.95, nf), zf0), "foo zeros %llu",
		      (unsigned long long)zf);
		CHECK(zg == max_u64(round_k(0.5, ng), zg0), "g.w zeros %llu", (unsigned long long)zg);
		json_t *lf = layer_named(mt, "foo"), *lg = layer_named(mt, "g.w");
		CHECK(lf && lg, "layers reported");
		CHECK(!strcmp(json_string_value(json_object_get(lf, "rule")), "override") &&
			      json_real_value(json_object_get(lf, "sparsity_target")) == 0.95,
		      "foo rule/target");
		CHECK(!strcmp(json_string_value(json_object_get(lg, "rule")), s ? "layer" : "global") &&
			      json_real_value(json_object_get(lg, "sparsity_target")) == 0.5,
		      "g.w rule/target");
		double sf = json_real_value(json_object_get(lf, "sparsity"));
		CHECK(fabs(sf - (double)zf / (double)nf) < 1e-12, "per-layer sparsity shows the override: %g",
		      sf);
		/* the global threshold is g.w's alone */
		if (!s)
			CHECK(json_real_value(json_object_get(mt, "threshold")) ==
				      json_real_value(json_object_get(lg, "threshold")),
			      "global threshold is the rest's");
		CHECK(json_is_false(json_object_get(mt, "keep_first_last")), "keep_first_last");
		json_decref(mt);
		json_decref(spec);
		onnx_free(m);
	}

	/* No sparsity: the weights not listed stay dense. */
	struct onnx_model *m = load("steps_mlp.onnx"), *orig = load("steps_mlp.onnx");
	CHECK(m && orig, "load");
	uint64_t ng = 0, zg0 = init_zeros(m, "g.w", &ng);
	struct prune_params p;
	json_t *spec = parse_step("{\"op\":\"prune\",\"layers\":{\"g.w\":0.6}}", 0, &p);
	CHECK(spec, "parsed");
	json_t *mt = NULL;
	struct nn_err e = {0};
	CHECK(prune_run(m, &p, NULL, &mt, &e) == NN_OK, "%s", e.message);
	CHECK(same_initializer(m, orig, "foo"), "foo untouched without sparsity");
	CHECK(init_zeros(m, "g.w", &ng) == max_u64(round_k(0.6, ng), zg0), "g.w at 0.6");
	json_decref(mt);
	json_decref(spec);

	/* A name that is not a prunable weight: refused, naming the field and the
	 * prunable names, the model untouched. */
	spec = parse_step("{\"op\":\"prune\",\"sparsity\":0.5,\"layers\":{\"g.w\":0.6,"
			  "\"fc.weight\":0.5}}",
			  4, &p);
	CHECK(spec, "parsed");
	struct onnx_model *m2 = load("steps_mlp.onnx");
	CHECK(m2, "load");
	mt = NULL;
	CHECK(prune_run(m2, &p, NULL, &mt, &e) == NN_EINVAL && !mt, "unknown layer refused");
	CHECK(!strcmp(e.field, "steps[4].layers.fc.weight"), "field %s", e.field);
	CHECK(!strcmp(e.code, "invalid_spec"), "code %s", e.code);
	CHECK(strstr(e.message, "'fc.weight' is not a prunable weight") &&
		      strstr(e.message, "prunable: foo, g.w"),
	      "message: %s", e.message);
	CHECK(same_initializer(m2, orig, "foo") && same_initializer(m2, orig, "g.w"),
	      "nothing pruned before the check");
	json_decref(spec);
	onnx_free(m2);
	onnx_free(m);
	onnx_free(orig);
	return 0;
}

/* steps_cnn11: conv.w (first), w1, shared (last, two consumers). */
static int test_keep_first_last(void)
{
	static const struct {
		const char *spec;
		double w1_target;
	} cases[] = {
		{"{\"op\":\"prune\",\"sparsity\":0.8,\"keep_first_last\":true}", 0.8},
		{"{\"op\":\"prune\",\"sparsity\":0.7,\"scope\":\"layer\",\"keep_first_last\":true}", 0.7},
		{"{\"op\":\"prune\",\"sparsity\":0.9,\"keep_first_last\":true,\"layers\":{\"w1\":0.3}}",
		 0.3},
	};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		struct onnx_model *m = load("steps_cnn11.onnx"), *orig = load("steps_cnn11.onnx");
		CHECK(m && orig, "load");
		uint64_t n1 = 0, z0 = init_zeros(m, "w1", &n1);
		struct prune_params p;
		json_t *spec = parse_step(cases[c].spec, 0, &p);
		CHECK(spec && p.keep_first_last, "parsed");
		json_t *mt = NULL;
		struct nn_err e = {0};
		CHECK(prune_run(m, &p, NULL, &mt, &e) == NN_OK, "%s", e.message);
		CHECK(same_initializer(m, orig, "conv.w") && same_initializer(m, orig, "shared"),
		      "case %zu: first and last stay dense", c);
		/* global: k counted on w1 alone, so w1 gets exactly the target */
		uint64_t z1 = init_zeros(m, "w1", &n1);
		CHECK(z1 == max_u64(round_k(cases[c].w1_target, n1), z0), "case %zu: w1 zeros %llu",
		      c, (unsigned long long)z1);
		json_t *lc = layer_named(mt, "conv.w"), *ls = layer_named(mt, "shared");
		CHECK(!strcmp(json_string_value(json_object_get(lc, "rule")), "dense") &&
			      !strcmp(json_string_value(json_object_get(ls, "rule")), "dense") &&
			      json_is_null(json_object_get(lc, "threshold")),
		      "dense layers reported");
		CHECK(json_integer_value(json_object_get(lc, "nonzeros")) == 27,
		      "conv.w nonzeros (one all-zero channel of 9)");
		CHECK(json_is_true(json_object_get(mt, "keep_first_last")), "flag reported");
		if (c == 2)
			CHECK(json_is_null(json_object_get(mt, "threshold")),
			      "nothing left for a global threshold");
		json_decref(mt);
		json_decref(spec);
		onnx_free(m);
		onnx_free(orig);
	}
	/* An override of a layer keep_first_last keeps dense contradicts it. */
	struct onnx_model *m = load("steps_cnn11.onnx");
	CHECK(m, "load");
	struct prune_params p;
	json_t *spec = parse_step(
		"{\"op\":\"prune\",\"sparsity\":0.5,\"keep_first_last\":true,\"layers\":{\"shared\":0.5}}",
		1, &p);
	CHECK(spec, "parsed");
	json_t *mt = NULL;
	struct nn_err e = {0};
	CHECK(prune_run(m, &p, NULL, &mt, &e) == NN_EINVAL, "conflict refused");
	CHECK(!strcmp(e.field, "steps[1].layers.shared") && strstr(e.message, "last prunable"),
	      "field %s message %s", e.field, e.message);
	json_decref(spec);
	onnx_free(m);
	return 0;
}

/* The submit-time check against a summary's "prunable" list. */
static int test_check_layers_summary(void)
{
	json_t *summary = json_loads("{\"prunable\":[{\"name\":\"a\"},{\"name\":\"b\"},"
				     "{\"name\":\"c\"}]}",
				     0, NULL);
	static const struct {
		const char *spec, *field, *msg;
	} cases[] = {
		{"{\"op\":\"prune\",\"sparsity\":0.5,\"layers\":{\"b\":0.9}}", "", ""},
		{"{\"op\":\"prune\",\"sparsity\":0.5,\"layers\":{\"zz\":0.9}}", "steps[5].layers.zz",
		 "prunable: a, b, c"},
		{"{\"op\":\"prune\",\"sparsity\":0.5,\"keep_first_last\":true,\"layers\":{\"a\":0.9}}",
		 "steps[5].layers.a", "first prunable weight"},
		{"{\"op\":\"prune\",\"sparsity\":0.5,\"keep_first_last\":true,\"layers\":{\"b\":0.9}}",
		 "", ""},
		{"{\"op\":\"prune\",\"method\":\"nm\",\"keep_first_last\":true}", "", ""},
	};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		struct prune_params p;
		json_t *spec = parse_step(cases[c].spec, 5, &p);
		CHECK(spec, "parsed");
		struct nn_err e = {0};
		enum nn_status st = prune_check_layers(&p, summary, &e);
		if (!cases[c].field[0]) {
			CHECK(st == NN_OK, "case %zu refused: %s", c, e.message);
		} else {
			CHECK(st == NN_EINVAL && !strcmp(e.field, cases[c].field) &&
				      strstr(e.message, cases[c].msg),
			      "case %zu: field %s message %s", c, e.field, e.message);
		}
		json_decref(spec);
	}
	/* spec_validate makes the same check at submit. */
	json_t *job = json_loads("{\"model\":\"mdl_x\",\"steps\":[{\"op\":\"prune\",\"sparsity\":0.5,"
				 "\"layers\":{\"nope\":0.5}}]}",
				 0, NULL);
	struct nn_err e = {0};
	CHECK(spec_validate(job, summary, &e) == NN_EINVAL &&
		      !strcmp(e.field, "steps[0].layers.nope"),
	      "spec_validate: field %s (%s)", e.field, e.message);
	CHECK(spec_validate(job, NULL, &e) == NN_OK, "no summary: checked when the step runs");
	json_decref(job);
	json_decref(summary);
	return 0;
}

/* ---- N:M ---- */

static uint32_t abs_bits(float x)
{
	uint32_t u;
	memcpy(&u, &x, sizeof u);
	return u & 0x7fffffffu;
}

/* Reference N:M: each group's elements ordered by |w| (IEEE bits, NaN on top)
 * descending, then index ascending; the first min(n, group length) stay. */
static void ref_nm(float *w, size_t outer, size_t len, size_t inner, int n, int m)
{
	for (size_t o = 0; o < outer; o++) {
		for (size_t c = 0; c < inner; c++) {
			for (size_t r0 = 0; r0 < len; r0 += (size_t)m) {
				size_t glen = len - r0 < (size_t)m ? len - r0 : (size_t)m;
				size_t keep = glen < (size_t)n ? glen : (size_t)n;
				size_t idx[64];
				float *g = w + o * len * inner + r0 * inner + c;
				for (size_t i = 0; i < glen; i++)
					idx[i] = i;
				for (size_t i = 1; i < glen; i++) { /* insertion sort: stable */
					size_t x = idx[i], j = i;
					while (j > 0 && abs_bits(g[idx[j - 1] * inner]) <
							       abs_bits(g[x * inner])) {
						idx[j] = idx[j - 1];
						j--;
					}
					idx[j] = x;
				}
				for (size_t i = keep; i < glen; i++)
					g[idx[i] * inner] = 0.0f;
			}
		}
	}
}

static uint64_t nonzeros(const float *w, size_t n)
{
	uint64_t nz = 0;
	for (size_t i = 0; i < n; i++)
		nz += abs_bits(w[i]) != 0;
	return nz;
}

static void fill_mixed(float *w, size_t n, int mode)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t r = rnd() % 100;
		float v = mode == 0 ? rnd_normalish() : (float)((int)(rnd() % 9) - 4) / 4.0f;
		if (r == 0)
			v = 0.0f;
		else if (r == 1)
			v = -0.0f;
		else if (r == 2 && mode == 2)
			v = NAN;
		else if (r == 3 && mode == 2)
			v = -INFINITY;
		w[i] = v;
	}
}

static int test_nm_kernel_matches_reference(void)
{
	static const size_t shapes[][3] = {
		{3, 37, 1}, {1, 64, 1}, {5, 16, 1}, {1, 1000, 1}, {7, 67, 1}, {2, 11, 70},
		{1, 8, 130}, {4, 9, 3}, {1, 128, 64}, {2, 5, 1},
	};
	static const int nm[][2] = {{2, 4}, {1, 4}, {3, 4}, {1, 2}, {2, 8}, {4, 8}, {5, 16},
				    {8, 16}, {3, 9}, {16, 33}, {32, 64}, {63, 64}, {1, 64}};
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
		size_t numel = shapes[s][0] * shapes[s][1] * shapes[s][2];
		float *w = malloc(numel * sizeof *w), *ref = malloc(numel * sizeof *w);
		for (size_t c = 0; c < sizeof nm / sizeof nm[0]; c++) {
			for (int mode = 0; mode < 3; mode++) {
				fill_mixed(w, numel, mode);
				memcpy(ref, w, numel * sizeof *w);
				uint64_t nzb0 = nonzeros(w, numel), nzb = 0, nza = 0;
				struct nn_err e = {0};
				CHECK(prune_nm(w, shapes[s][0], shapes[s][1], shapes[s][2], nm[c][0],
					       nm[c][1], NULL, &nzb, &nza, &e) == NN_OK,
				      "%s", e.message);
				ref_nm(ref, shapes[s][0], shapes[s][1], shapes[s][2], nm[c][0],
				       nm[c][1]);
				CHECK(!memcmp(w, ref, numel * sizeof *w),
				      "[%zu,%zu,%zu] %d:%d mode %d differs from the reference",
				      shapes[s][0], shapes[s][1], shapes[s][2], nm[c][0], nm[c][1],
				      mode);
				CHECK(nzb == nzb0 && nza == nonzeros(w, numel),
				      "counts %llu/%llu", (unsigned long long)nzb,
				      (unsigned long long)nza);
			}
		}
		free(w);
		free(ref);
	}
	return 0;
}

static int test_nm_ties_and_nonfinite(void)
{
	static const struct {
		int n, m;
		float in[8], out[8];
	} cases[] = {
		{2, 4, {1, -1, 1, -1}, {1, -1, 0, 0}},          /* equal |w|: lower index stays */
		{2, 4, {0.5f, 2, -2, 2}, {0, 2, -2, 0}},
		{2, 4, {0, 0, 0, 0}, {0, 0, 0, 0}},
		{2, 4, {0, 0, 0, 3}, {0, 0, 0, 3}},             /* zeros stay zero */
		{1, 4, {NAN, 1, INFINITY, 2}, {NAN, 0, 0, 0}},  /* NaN above +Inf */
		{1, 4, {1, -INFINITY, 2, 3}, {0, -INFINITY, 0, 0}},
		{3, 8, {5, 5, 5, 5, 5, 5, 5, 5}, {5, 5, 5, 0, 0, 0, 0, 0}},
	};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		float w[8];
		size_t len = (size_t)cases[c].m;
		memcpy(w, cases[c].in, sizeof w);
		struct nn_err e = {0};
		CHECK(prune_nm(w, 1, len, 1, cases[c].n, cases[c].m, NULL, NULL, NULL, &e) == NN_OK,
		      "%s", e.message);
		for (size_t i = 0; i < len; i++) {
			float want = cases[c].out[i];
			CHECK(isnan(want) ? isnan(w[i]) : w[i] == want, "case %zu element %zu: %g want %g",
			      c, i, w[i], want);
		}
	}
	/* 16 equal magnitudes, 5:16 (the quickselect path): the first five stay,
	 * also down a column (inner 3). */
	float w[48];
	for (size_t i = 0; i < 48; i++)
		w[i] = i % 2 ? -1.5f : 1.5f;
	CHECK(prune_nm(w, 1, 16, 3, 5, 16, NULL, NULL, NULL, NULL) == NN_OK, "5:16");
	for (size_t r = 0; r < 16; r++)
		for (size_t c = 0; c < 3; c++)
			CHECK((w[r * 3 + c] != 0) == (r < 5), "row %zu column %zu", r, c);
	return 0;
}

static int test_nm_tail_groups(void)
{
	/* A tail of r = len % m elements keeps min(n, r) of them. */
	static const struct {
		size_t len;
		int n, m;
		size_t tail_kept;
	} cases[] = {{10, 2, 4, 2}, {11, 2, 4, 2}, {9, 2, 4, 1}, {7, 3, 4, 3}, {13, 1, 8, 1},
		     {3, 2, 4, 2}};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		for (size_t inner = 1; inner <= 66; inner += 65) { /* rows, then columns */
			size_t len = cases[c].len, numel = len * inner;
			float *w = malloc(numel * sizeof *w);
			for (size_t i = 0; i < numel; i++)
				w[i] = 1.0f + (float)(i % 7);
			CHECK(prune_nm(w, 1, len, inner, cases[c].n, cases[c].m, NULL, NULL, NULL,
				       NULL) == NN_OK,
			      "prune");
			size_t m = (size_t)cases[c].m, full = len / m;
			for (size_t col = 0; col < inner; col++) {
				for (size_t g = 0; g * m < len; g++) {
					size_t nz = 0, glen = g < full ? m : len - full * m;
					for (size_t i = 0; i < glen; i++)
						nz += w[(g * m + i) * inner + col] != 0;
					size_t want = g < full ? (size_t)cases[c].n : cases[c].tail_kept;
					CHECK(nz == want, "len %zu %d:%d inner %zu group %zu: %zu kept",
					      len, cases[c].n, cases[c].m, inner, g, nz);
				}
			}
			free(w);
		}
	}
	return 0;
}

static int test_nm_bad_arguments_and_cancel(void)
{
	float w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	struct nn_err e = {0};
	CHECK(prune_nm(w, 1, 8, 1, 4, 4, NULL, NULL, NULL, &e) == NN_EINVAL, "n == m refused");
	CHECK(prune_nm(w, 1, 8, 1, 0, 4, NULL, NULL, NULL, &e) == NN_EINVAL, "n 0 refused");
	CHECK(prune_nm(w, 1, 8, 1, 2, 65, NULL, NULL, NULL, &e) == NN_EINVAL, "m 65 refused");
	CHECK(prune_nm(w, SIZE_MAX / 2, 4, 4, 2, 4, NULL, NULL, NULL, &e) == NN_EINVAL,
	      "overflowing view refused");
	CHECK(w[0] == 1 && w[7] == 8, "untouched");
	/* Cancellation is polled every STEP_POLL_ELEMS elements, in every layout. */
	size_t n = STEP_POLL_ELEMS + 4096;
	float *big = malloc(n * sizeof *big);
	for (size_t i = 0; i < n; i++)
		big[i] = (float)(i % 13);
	atomic_bool flag = true;
	struct step_ctx ctx = {.cancel = &flag};
	static const size_t views[][3] = {{1, STEP_POLL_ELEMS + 4096, 1},
					  {(STEP_POLL_ELEMS + 4096) / 6, 6, 1},
					  {1, 16, (STEP_POLL_ELEMS + 4096) / 16}};
	for (size_t v = 0; v < 3; v++) {
		struct nn_err ce = {0};
		CHECK(prune_nm(big, views[v][0], views[v][1], views[v][2], 2, 4, &ctx, NULL, NULL,
			       &ce) == NN_ECANCELED && ce.status == NN_ECANCELED,
		      "view %zu: canceled", v);
	}
	free(big);
	return 0;
}

/* Each weight of nm_layouts.onnx with the view the test knows from its node
 * (make_nm_models.py), independent of prune_nm_layout. */
static const struct {
	const char *name;
	size_t outer, len, inner;
	int axis;
} nm_expect[] = {
	{"g0.w", 1, 10, 6, 0},  {"g1.w", 5, 10, 1, 1},  {"mm.b", 1, 11, 70, 0},
	{"mm.a", 3, 10, 1, 1},  {"bmm.b", 2, 9, 5, 1},  {"conv.w", 6, 27, 1, 1},
};
#define NM_WEIGHTS (sizeof nm_expect / sizeof nm_expect[0])

static float *weight_copy(struct onnx_model *m, const char *name, size_t *n)
{
	struct tensor t;
	if (onnx_initializer_view(onnx_find_initializer(m, name), &t, NULL) != NN_OK)
		return NULL;
	*n = (size_t)tensor_numel(&t);
	float *c = malloc(*n * sizeof *c);
	memcpy(c, t.data, *n * sizeof *c);
	tensor_free(&t);
	return c;
}

static int test_nm_layouts(void)
{
	static const int nm[][2] = {{2, 4}, {1, 4}, {3, 8}, {2, 3}};
	for (size_t c = 0; c < sizeof nm / sizeof nm[0]; c++) {
		for (int kfl = 0; kfl < 2; kfl++) {
			struct onnx_model *m = load("nm_layouts.onnx");
			CHECK(m, "load");
			float *orig[NM_WEIGHTS];
			size_t lens[NM_WEIGHTS];
			for (size_t i = 0; i < NM_WEIGHTS; i++)
				CHECK((orig[i] = weight_copy(m, nm_expect[i].name, &lens[i])), "copy");
			struct prune_params p = {.method = PRUNE_NM, .n = nm[c][0], .m = nm[c][1],
						 .keep_first_last = kfl};
			json_t *mt = NULL;
			struct nn_err e = {0};
			CHECK(prune_run(m, &p, NULL, &mt, &e) == NN_OK, "%s", e.message);
			uint64_t groups = 0;
			for (size_t i = 0; i < NM_WEIGHTS; i++) {
				size_t n = 0;
				float *got = weight_copy(m, nm_expect[i].name, &n);
				CHECK(got, "%s is still there", nm_expect[i].name);
				/* keep_first_last: g0.w (first node) and conv.w (last) stay */
				bool dense = kfl && (i == 0 || i == NM_WEIGHTS - 1);
				if (!dense)
					ref_nm(orig[i], nm_expect[i].outer, nm_expect[i].len,
					       nm_expect[i].inner, nm[c][0], nm[c][1]);
				CHECK(n == lens[i] && !memcmp(got, orig[i], n * sizeof *got),
				      "%d:%d kfl %d: %s differs from the reference", nm[c][0],
				      nm[c][1], kfl, nm_expect[i].name);
				json_t *l = layer_named(mt, nm_expect[i].name);
				size_t g = nm_expect[i].outer * nm_expect[i].inner *
					   ((nm_expect[i].len + (size_t)nm[c][1] - 1) / (size_t)nm[c][1]);
				groups += dense ? 0 : g;
				CHECK(l && json_integer_value(json_object_get(l, "axis")) ==
						   nm_expect[i].axis &&
					      json_integer_value(json_object_get(l, "group_length")) ==
						      (json_int_t)nm_expect[i].len &&
					      json_integer_value(json_object_get(l, "groups")) ==
						      (json_int_t)(dense ? 0 : g) &&
					      json_integer_value(json_object_get(l, "tail")) ==
						      (json_int_t)(nm_expect[i].len % (size_t)nm[c][1]) &&
					      !strcmp(json_string_value(json_object_get(l, "rule")),
						      dense ? "dense" : "nm") &&
					      json_integer_value(json_object_get(l, "nonzeros")) ==
						      (json_int_t)nonzeros(got, n),
				      "%s layer metrics", nm_expect[i].name);
				free(got);
				free(orig[i]);
			}
			char pattern[16];
			snprintf(pattern, sizeof pattern, "%d:%d", nm[c][0], nm[c][1]);
			CHECK(!strcmp(json_string_value(json_object_get(mt, "method")), "nm") &&
				      !strcmp(json_string_value(json_object_get(mt, "pattern")), pattern) &&
				      json_integer_value(json_object_get(mt, "n")) == nm[c][0] &&
				      json_integer_value(json_object_get(mt, "m")) == nm[c][1] &&
				      json_integer_value(json_object_get(mt, "groups")) ==
					      (json_int_t)groups &&
				      json_is_integer(json_object_get(mt, "nonzeros_before")) &&
				      json_is_real(json_object_get(mt, "sparsity")),
			      "step metrics");
			json_decref(mt);
			onnx_free(m);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_prune CASE [DATA_DIR]\n");
		return 2;
	}
	if (argc > 2)
		data_dir = argv[2];
	struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"kth_matches_sort", test_kth_matches_sort},
		{"kth_large_chunked", test_kth_large_chunked},
		{"ties_deterministic", test_ties_deterministic},
		{"fused_and_fallback_match_reference", test_fused_and_fallback_match_reference},
		{"sparsity_edges", test_sparsity_edges},
		{"cancel", test_cancel},
		{"prunable_from_graph", test_prunable_from_graph},
		{"global_exact_k", test_global_exact_k},
		{"layer_exact_k", test_layer_exact_k},
		{"params_parse", test_params_parse},
		{"layer_overrides", test_layer_overrides},
		{"keep_first_last", test_keep_first_last},
		{"check_layers_summary", test_check_layers_summary},
		{"nm_kernel_matches_reference", test_nm_kernel_matches_reference},
		{"nm_ties_and_nonfinite", test_nm_ties_and_nonfinite},
		{"nm_tail_groups", test_nm_tail_groups},
		{"nm_bad_arguments_and_cancel", test_nm_bad_arguments_and_cancel},
		{"nm_layouts", test_nm_layouts},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!strcmp(argv[1], cases[i].name))
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
