/* Unit tests for engine/prune: the exact selection kernel against a sorting
 * reference, tie handling, sparsity edge cases, cancellation, graph-based
 * weight choice and the step's metrics.
 * Usage: test_prune CASE DATA_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_io.h"
#include "prune.h"

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
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!strcmp(argv[1], cases[i].name))
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
