/* Unit tests for the fast paths of engine/prune and engine/quant and the
 * ownership-taking initializer setters of engine/onnx_io: the sampled
 * selection gives exactly the radix selection (and falls back when its
 * bracket misses), large prunes equal select + zero, the quantize step writes
 * its int8 values in place and hands the buffer over without a copy, with
 * the values, scales and error metrics the scalar definitions give.
 * Usage: test_fastpaths CASE DATA_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_io.h"
#include "prune.h"
#include "quant.h"

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

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}
/* Bell-shaped (sum of four uniforms), like trained weights. */
static float rnd_bell(void)
{
	float s = 0;
	for (int i = 0; i < 4; i++)
		s += (float)(rnd() % 100001) / 100000.0f - 0.5f;
	return s * 0.1f;
}

/* Sizes above the sampled method's 2^22-element minimum, odd on purpose. */
#define N0 3000001u
#define N1 1300007u
#define N2 517u

static int same_sel(const struct prune_selection *a, const struct prune_selection *b)
{
	return !memcmp(&a->threshold, &b->threshold, sizeof a->threshold) &&
	       a->below == b->below && a->ties == b->ties;
}

/* kind 0: bell values with zeros, -0, Inf and NaN; 1: a few magnitudes only
 * (huge tie classes). */
static void fill(float *w, size_t n, int kind)
{
	for (size_t i = 0; i < n; i++) {
		if (kind == 0) {
			uint32_t r = rnd() % 1000;
			w[i] = r == 0 ? 0.0f : r == 1 ? -0.0f : rnd_bell();
		} else {
			static const float v[] = {0.0f, 0.5f, -0.5f, 1.0f, -2.0f, 0.25f};
			w[i] = v[rnd() % 6];
		}
	}
	if (kind == 0) {
		w[n / 3] = INFINITY;
		w[n / 2] = -INFINITY;
		w[n - 1] = NAN;
	}
}

static int test_sampled_equals_radix(void)
{
	float *a0 = malloc(N0 * sizeof(float)), *a1 = malloc(N1 * sizeof(float));
	float *a2 = malloc(N2 * sizeof(float));
	CHECK(a0 && a1 && a2, "memory");
	const float *arrays[3] = {a0, a1, a2};
	size_t lens[3] = {N0, N1, N2};
	uint64_t n = (uint64_t)N0 + N1 + N2;
	for (int kind = 0; kind < 2; kind++) {
		fill(a0, N0, kind);
		fill(a1, N1, kind);
		fill(a2, N2, kind);
		uint64_t ks[] = {1, 1000, n / 2, (uint64_t)floor(0.8 * (double)n + 0.5), n - 5, n};
		for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
			struct prune_selection r, s, p;
			struct nn_err e = {0};
			bool hit = false;
			CHECK(prune_select_radix(arrays, lens, 3, ks[i], &r, &e) == NN_OK, "%s",
			      e.message);
			CHECK(prune_select_sampled(arrays, lens, 3, ks[i], &s, &hit, &e) == NN_OK,
			      "%s", e.message);
			CHECK(prune_select(arrays, lens, 3, ks[i], NULL, &p, &e) == NN_OK, "%s",
			      e.message);
			CHECK(!hit || same_sel(&r, &s), "kind %d k %llu: sampled t %a below %llu "
			      "ties %llu, radix t %a below %llu ties %llu", kind,
			      (unsigned long long)ks[i], s.threshold, (unsigned long long)s.below,
			      (unsigned long long)s.ties, r.threshold, (unsigned long long)r.below,
			      (unsigned long long)r.ties);
			CHECK(same_sel(&r, &p), "prune_select equals radix (kind %d k %llu)", kind,
			      (unsigned long long)ks[i]);
			/* bell data, ranks inside: the sample's bracket holds t */
			if (kind == 0 && ks[i] == n / 2)
				CHECK(hit, "sampled path taken for the median");
		}
	}
	/* below the size limit the sampled method declines */
	struct prune_selection s;
	struct nn_err e = {0};
	bool hit = true;
	CHECK(prune_select_sampled(arrays, lens, 1, 10, &s, &hit, &e) == NN_OK && !hit,
	      "3M elements (below 2^22) declined");
	size_t small[1] = {N2};
	CHECK(prune_select_sampled(&arrays[2], small, 1, 10, &s, &hit, &e) == NN_OK && !hit,
	      "small input declined");
	CHECK(prune_select_sampled(arrays, lens, 3, 0, &s, &hit, &e) == NN_EINVAL, "k 0");
	CHECK(prune_select_sampled(arrays, lens, 3, n + 1, &s, &hit, &e) == NN_EINVAL, "k > n");
	free(a0);
	free(a1);
	free(a2);
	return 0;
}

static int test_bracket_hit_and_miss(void)
{
	enum { N = 1000 };
	float w[N];
	for (size_t i = 0; i < N; i++)
		w[i] = (float)(i % 250) * 0.01f * (i % 2 ? -1.0f : 1.0f); /* 4 copies of each */
	const float *arrays[1] = {w};
	size_t lens[1] = {N};
	struct nn_err e = {0};
	for (uint64_t k = 1; k <= N; k += 37) {
		struct prune_selection r, s;
		bool hit;
		CHECK(prune_select_radix(arrays, lens, 1, k, &r, &e) == NN_OK, "%s", e.message);
		/* a bracket around t (signs are ignored) */
		CHECK(prune_select_in_bracket(arrays, lens, 1, k, -(r.threshold * 0.9f),
					      r.threshold + 0.1f, &s, &hit, &e) == NN_OK,
		      "%s", e.message);
		CHECK(hit && same_sel(&r, &s), "bracket around t, k %llu", (unsigned long long)k);
		/* everything */
		CHECK(prune_select_in_bracket(arrays, lens, 1, k, 0.0f, NAN, &s, &hit, &e) == NN_OK &&
			      hit && same_sel(&r, &s),
		      "full bracket, k %llu", (unsigned long long)k);
		/* entirely above t, entirely below t: missed, nothing set */
		if (r.threshold < 2.49f)
			CHECK(prune_select_in_bracket(arrays, lens, 1, k, r.threshold + 0.005f, 3.0f,
						      &s, &hit, &e) == NN_OK &&
				      !hit,
			      "bracket above t, k %llu", (unsigned long long)k);
		if (r.threshold > 0.0f)
			CHECK(prune_select_in_bracket(arrays, lens, 1, k, 0.0f,
						      r.threshold - 0.005f, &s, &hit, &e) == NN_OK &&
				      !hit,
			      "bracket below t, k %llu", (unsigned long long)k);
	}
	struct prune_selection s;
	bool hit = true;
	CHECK(prune_select_in_bracket(arrays, lens, 1, 5, 2.0f, 1.0f, &s, &hit, &e) == NN_OK && !hit,
	      "empty bracket");
	return 0;
}

/* prune_arrays on a large input (the sampled path) zeroes exactly what
 * prune_select_radix + prune_zero zero, ties included. */
static int test_large_prune_equals_select_zero(void)
{
	for (int kind = 0; kind < 2; kind++) {
		float *a = malloc(N0 * sizeof(float)), *b = malloc(N1 * sizeof(float));
		float *c = malloc(N0 * sizeof(float)), *d = malloc(N1 * sizeof(float));
		CHECK(a && b && c && d, "memory");
		fill(a, N0, kind);
		fill(b, N1, kind);
		a[N0 - 1] = 0.3f; /* no NaN: prune down to the ranks that matter */
		memcpy(c, a, N0 * sizeof(float));
		memcpy(d, b, N1 * sizeof(float));
		float *x[2] = {a, b}, *y[2] = {c, d};
		size_t lens[2] = {N0, N1};
		uint64_t n = (uint64_t)N0 + N1;
		uint64_t k = (uint64_t)floor(0.7 * (double)n + 0.5);
		struct nn_err e = {0};
		float t = 0;
		CHECK(prune_arrays(x, lens, 2, k, NULL, &t, &e) == NN_OK, "%s", e.message);
		struct prune_selection r;
		CHECK(prune_select_radix((const float *const *)y, lens, 2, k, &r, &e) == NN_OK, "%s",
		      e.message);
		CHECK(prune_zero(y, lens, 2, &r, k, NULL, &e) == NN_OK, "%s", e.message);
		CHECK(!memcmp(&t, &r.threshold, sizeof t), "threshold");
		CHECK(!memcmp(a, c, N0 * sizeof(float)) && !memcmp(b, d, N1 * sizeof(float)),
		      "same elements zeroed (kind %d)", kind);
		uint64_t zeros = 0;
		for (size_t i = 0; i < N0; i++)
			zeros += a[i] == 0.0f;
		for (size_t i = 0; i < N1; i++)
			zeros += b[i] == 0.0f;
		CHECK(zeros == k, "exactly k zeros: %llu vs %llu", (unsigned long long)zeros,
		      (unsigned long long)k);
		free(a);
		free(b);
		free(c);
		free(d);
	}
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

static int test_initializer_take(void)
{
	struct onnx_model *m = load("steps_mlp.onnx");
	CHECK(m, "load");
	struct nn_err e = {0};
	struct tensor t;
	int64_t shape[2] = {2, 3};
	CHECK(tensor_alloc(&t, DT_INT8, 2, shape, &e) == NN_OK, "%s", e.message);
	memcpy(t.data, "\x01\x02\x03\xfd\xfe\xff", 6);
	void *data = t.data;
	CHECK(onnx_add_initializer_take(m, "taken", &t, &e) == NN_OK, "%s", e.message);
	CHECK(!t.data && !t.owned, "tensor emptied");
	Onnx__TensorProto *init = onnx_find_initializer(m, "taken");
	CHECK(init && init->raw_data.data == data && init->raw_data.len == 6 &&
		      init->data_type == DT_INT8 && init->n_dims == 2 && init->dims[1] == 3,
	      "buffer handed over, not copied");
	/* a duplicate name is refused and the tensor keeps its data */
	CHECK(tensor_alloc(&t, DT_INT8, 2, shape, &e) == NN_OK, "%s", e.message);
	CHECK(onnx_add_initializer_take(m, "taken", &t, &e) == NN_EINVAL && t.data && t.owned,
	      "duplicate refused");
	/* replacing an existing payload frees the old one (ASan checks) */
	data = t.data;
	CHECK(onnx_initializer_take(init, &t, &e) == NN_OK && init->raw_data.data == data,
	      "take over an existing initializer");
	/* a borrowed buffer cannot be handed to protobuf-c */
	int8_t local[6] = {0};
	tensor_view(&t, DT_INT8, 2, shape, local);
	CHECK(onnx_initializer_take(init, &t, &e) == NN_EINTERNAL, "unowned refused");
	CHECK(init->raw_data.data == data, "unchanged after a refusal");
	onnx_free(m);
	return 0;
}

/* The step's error sum in the order its loops add (see quant.c: 16 float
 * lanes flushed to double every 256 lane steps along a channel block; along
 * rows, one flush per row), for exact comparison. */
static double expected_sq(const float *w, const int8_t *q, const float *s, size_t outer,
			  size_t channels, size_t inner)
{
	double sq = 0;
	for (size_t o = 0; o < outer; o++) {
		const float *row = w + o * channels * inner;
		const int8_t *qr = q + o * channels * inner;
		if (inner == 1) {
			float lanes[16] = {0};
			size_t i = 0;
			for (; i + 16 <= channels; i += 16)
				for (size_t j = 0; j < 16; j++) {
					float d = (float)qr[i + j] * s[i + j] - row[i + j];
					lanes[j] += d * d;
				}
			for (; i < channels; i++) {
				float d = (float)qr[i] * s[i] - row[i];
				sq += (double)d * d;
			}
			for (size_t j = 0; j < 16; j++)
				sq += lanes[j];
			continue;
		}
		for (size_t c = 0; c < channels; c++) {
			const float *x = row + c * inner;
			const int8_t *y = qr + c * inner;
			float lanes[16] = {0};
			size_t i = 0, steps = 0;
			for (; i + 16 <= inner; i += 16) {
				for (size_t j = 0; j < 16; j++) {
					float d = (float)y[i + j] * s[c] - x[i + j];
					lanes[j] += d * d;
				}
				if (++steps == 256) {
					steps = 0;
					for (size_t j = 0; j < 16; j++) {
						sq += lanes[j];
						lanes[j] = 0;
					}
				}
			}
			for (; i < inner; i++) {
				float d = (float)y[i] * s[c] - x[i];
				sq += (double)d * d;
			}
			for (size_t j = 0; j < 16; j++)
				sq += lanes[j];
		}
	}
	return sq;
}

static float max_err(const float *w, const int8_t *q, const float *s, size_t outer,
		     size_t channels, size_t inner)
{
	float m = 0;
	for (size_t o = 0; o < outer; o++)
		for (size_t c = 0; c < channels; c++)
			for (size_t i = 0; i < inner; i++) {
				size_t at = (o * channels + c) * inner + i;
				float d = fabsf((float)q[at] * s[c] - w[at]);
				m = d > m ? d : m;
			}
	return m;
}

/* Weights big enough for the vector loops, their tails and the in-place
 * pieces (a Gemm channel of 40009 > 16384 elements), quantized by the step:
 * the int8 values and scales equal quant_ref_int8_symmetric's, the int8
 * buffer is the float buffer (no copy), and mse / max_abs_error equal the
 * scalar definitions bit for bit. Per channel and per tensor. */
static int test_quant_step_in_place(void)
{
	for (int per_tensor = 0; per_tensor < 2; per_tensor++) {
		struct onnx_model *m = load("steps_mlp.onnx");
		CHECK(m, "load");
		struct nn_err e = {0};
		/* foo: MatMul input 1 (axis 1, rows); g.w: Gemm B, transB -> axis 0 or 1 */
		const char *names[2] = {"foo", "g.w"};
		int64_t shapes[2][2] = {{37, 1003}, {11, 40009}};
		float *orig[2];
		void *storage[2];
		for (int i = 0; i < 2; i++) {
			struct tensor t;
			CHECK(tensor_alloc(&t, DT_FLOAT, 2, shapes[i], &e) == NN_OK, "%s", e.message);
			size_t n = (size_t)(shapes[i][0] * shapes[i][1]);
			float *f = t.data;
			for (size_t j = 0; j < n; j++)
				f[j] = rnd_bell() * (1.0f + (float)(j % 7));
			f[5] = 0.0f;
			orig[i] = malloc(n * sizeof(float));
			CHECK(orig[i], "memory");
			memcpy(orig[i], f, n * sizeof(float));
			Onnx__TensorProto *init = onnx_find_initializer(m, names[i]);
			CHECK(init, "initializer %s", names[i]);
			CHECK(onnx_initializer_take(init, &t, &e) == NN_OK, "%s", e.message);
			storage[i] = init->raw_data.data;
		}
		struct onnx_weight_ref *refs = NULL;
		size_t nref = 0;
		CHECK(onnx_prunable_weights(m, &refs, &nref, &e) == NN_OK && nref == 2, "refs");
		int axis[2];
		for (size_t r = 0; r < nref; r++)
			axis[strcmp(refs[r].init->name, "foo") ? 1 : 0] = refs[r].channel_axis;
		free(refs);
		struct quant_params p = {.granularity = per_tensor ? QUANT_PER_TENSOR : QUANT_PER_CHANNEL,
					 .symmetric = true};
		json_t *mt = NULL;
		CHECK(quant_run(m, &p, NULL, &mt, &e) == NN_OK, "%s", e.message);
		json_t *layers = json_object_get(mt, "layers");
		for (int i = 0; i < 2; i++) {
			size_t rows = (size_t)shapes[i][0], cols = (size_t)shapes[i][1], n = rows * cols;
			size_t outer = 1, channels = 1, inner = n;
			if (!per_tensor && axis[i] == 0) {
				channels = rows;
				inner = cols;
			} else if (!per_tensor) {
				outer = rows;
				channels = cols;
				inner = 1;
			}
			int8_t *qref = malloc(n);
			float *sref = malloc(channels * sizeof(float));
			CHECK(qref && sref, "memory");
			CHECK(quant_ref_int8_symmetric(orig[i], outer, channels, inner, qref, sref),
			      "reference");
			char qn[64], sn[64];
			snprintf(qn, sizeof qn, "%s_quantized", names[i]);
			snprintf(sn, sizeof sn, "%s_scale", names[i]);
			Onnx__TensorProto *qi = onnx_find_initializer(m, qn), *si = onnx_find_initializer(m, sn);
			CHECK(qi && si && qi->raw_data.len == n &&
				      si->raw_data.len == channels * sizeof(float),
			      "%s initializers", names[i]);
			CHECK(qi->raw_data.data == storage[i], "%s: int8 values in the float buffer",
			      names[i]);
			CHECK(!memcmp(qi->raw_data.data, qref, n), "%s: int8 values", names[i]);
			CHECK(!memcmp(si->raw_data.data, sref, channels * sizeof(float)), "%s: scales",
			      names[i]);
			json_t *l = NULL;
			for (size_t j = 0; j < json_array_size(layers); j++)
				if (!strcmp(json_string_value(json_object_get(json_array_get(layers, j),
									      "name")),
					    names[i]))
					l = json_array_get(layers, j);
			CHECK(l, "metrics for %s", names[i]);
			double mse = json_real_value(json_object_get(l, "mse"));
			double mae = json_real_value(json_object_get(l, "max_abs_error"));
			double want_mse = expected_sq(orig[i], qref, sref, outer, channels, inner) /
					  (double)n;
			double want_mae = max_err(orig[i], qref, sref, outer, channels, inner);
			CHECK(mse == want_mse, "%s mse %.17g, expected %.17g", names[i], mse, want_mse);
			CHECK(mae == want_mae, "%s max_abs_error %.17g, expected %.17g", names[i], mae,
			      want_mae);
			free(qref);
			free(sref);
			free(orig[i]);
		}
		json_decref(mt);
		onnx_free(m);
	}
	return 0;
}

/* Weights kept in float_data (not raw_data) are quantized in place too, and
 * the asymmetric path gives quant_ref_uint8_asymmetric's values. */
static int test_quant_step_float_data_and_asym(void)
{
	for (int sym = 0; sym < 2; sym++) {
		struct onnx_model *m = load("mlp_float_data.onnx");
		CHECK(m, "load");
		Onnx__TensorProto *w = onnx_find_initializer(m, "W2");
		CHECK(w && w->n_float_data == 32, "W2 in float_data");
		float orig[32];
		memcpy(orig, w->float_data, sizeof orig);
		struct quant_params p = {.granularity = QUANT_PER_TENSOR, .symmetric = sym != 0};
		json_t *mt = NULL;
		struct nn_err e = {0};
		CHECK(quant_run(m, &p, NULL, &mt, &e) == NN_OK, "%s", e.message);
		Onnx__TensorProto *q = onnx_find_initializer(m, "W2_quantized");
		CHECK(q && q->raw_data.len == 32, "W2_quantized");
		uint8_t qref[32];
		float sref;
		if (sym) {
			CHECK(quant_ref_int8_symmetric(orig, 1, 1, 32, (int8_t *)qref, &sref), "ref");
		} else {
			uint8_t zp;
			CHECK(quant_ref_uint8_asymmetric(orig, 1, 1, 32, qref, &sref, &zp), "ref");
		}
		CHECK(!memcmp(q->raw_data.data, qref, 32), "values (symmetric %d)", sym);
		json_decref(mt);
		onnx_free(m);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_fastpaths CASE [DATA_DIR]\n");
		return 2;
	}
	if (argc > 2)
		data_dir = argv[2];
	struct {
		const char *name;
		int (*fn)(void);
	} cases[] = {
		{"sampled_equals_radix", test_sampled_equals_radix},
		{"bracket_hit_and_miss", test_bracket_hit_and_miss},
		{"large_prune_equals_select_zero", test_large_prune_equals_select_zero},
		{"initializer_take", test_initializer_take},
		{"quant_step_in_place", test_quant_step_in_place},
		{"quant_step_float_data_and_asym", test_quant_step_float_data_and_asym},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!strcmp(argv[1], cases[i].name))
			return cases[i].fn();
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
