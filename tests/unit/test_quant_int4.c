/* Tests for the int4 block-wise quantize scheme (engine/quant_int4.c) and the
 * executor's blocked DequantizeLinear / MatMulNBits (engine/ops_quant.c):
 * the kernel against an independent scalar reference for every block size
 * with ragged last blocks and odd counts (acceptance 4), the artifacts'
 * layout, python3-onnx reading the same raw bytes, both formats decoding the
 * same weights, ONNX Runtime matching the executor to 1e-4 (acceptance 1) and
 * LeNet-300-100 at block 32 (acceptance 2), and the same bytes and metrics
 * for every thread count.
 * usage: test_quant_int4 CASE FIXTURES_DIR UNIT_DATA_DIR [NODE NODE_MODULES SCRIPT]
 *        (python cases take /usr/bin/python3 and SCRIPT = quant_int4_raw.py) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"
#include "exec.h"
#include "onnx_io.h"
#include "quant.h"
#include "quant_int4.h"
#include "step.h"
#include "eval.h"
#include "synthmodel.h"

static const char *fixtures, *unit_data;

static struct onnx_model *load(const char *dir, const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	struct onnx_model *m = NULL;
	struct nn_err e = {0};
	if (onnx_load_file(path, &m, &e) != NN_OK) {
		fprintf(stderr, "%s: %s\n", path, e.message);
		return NULL;
	}
	return m;
}

/* Runs an int4 step given as JSON on m; *metrics (may be NULL) gets its report. */
static int int4(struct onnx_model *m, const char *step_json, json_t **metrics)
{
	json_t *step = json_loads(step_json, 0, NULL);
	struct quant_params p;
	struct nn_err e = {0};
	json_t *mt = NULL;
	CHECK(step && quant_params_parse(step, 0, &p, &e) == NN_OK, "%s: %s", step_json,
	      e.message);
	CHECK(quant_run(m, &p, NULL, &mt, &e) == NN_OK, "%s: %s", step_json, e.message);
	json_decref(step);
	if (metrics)
		*metrics = mt;
	else
		json_decref(mt);
	return 0;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* Independent reference for one block: the values q (before the offset) and
 * scale/zero point, from the header's formulas. */
static void ref_block(const float *x, size_t n, size_t stride, bool sym, int *q, float *scale,
		      int *zp)
{
	float mn = INFINITY, mx = -INFINITY;
	for (size_t k = 0; k < n; k++) {
		mn = fminf(mn, x[k * stride]);
		mx = fmaxf(mx, x[k * stride]);
	}
	float s, z = 0;
	if (sym) {
		s = fmaxf(fabsf(mn), fabsf(mx)) / 7.0f;
	} else {
		float lo = fminf(mn, 0), hi = fmaxf(mx, 0);
		s = (hi - lo) / 15.0f;
		if (isnormal(s))
			z = fminf(fmaxf(rintf(-lo / s), 0), 15);
	}
	bool zero = !isnormal(s);
	if (zero)
		s = 1.0f, z = 0;
	float inv = zero ? 0.0f : 1.0f / s;
	for (size_t k = 0; k < n; k++) {
		float r = rintf(x[k * stride] * inv) + z;
		float lo = sym ? -7 : 0, hi = sym ? 7 : 15;
		q[k] = (int)fminf(fmaxf(r, lo), hi);
	}
	*scale = s;
	*zp = (int)z;
}

/* Acceptance 4: for block sizes 16..128, layouts [outer][len][inner] with a
 * ragged last block and odd element counts, symmetric and asymmetric, the
 * packed nibbles, scales and zero points equal the scalar reference, and
 * unpacking gives back exactly the values packed. */
static int test_pack_roundtrip(void)
{
	static const size_t bss[] = {16, 32, 64, 128};
	static const size_t shapes[][3] = {{1, 77, 5}, {3, 77, 1}, {1, 301, 3}, {5, 129, 1},
					   {2, 16, 1}, {1, 7, 1}, {3, 255, 1}};
	for (size_t b = 0; b < 4; b++)
		for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
			for (int sym = 0; sym < 2; sym++) {
				size_t outer = shapes[s][0], len = shapes[s][1],
				       inner = shapes[s][2], bs = bss[b];
				size_t n = outer * len * inner, nb = (len + bs - 1) / bs;
				size_t ns = outer * nb * inner;
				float *w = malloc(n * sizeof *w), *sc = malloc(ns * sizeof *sc);
				uint8_t *pk = calloc(n / 2 + 1, 1), *zp = calloc(ns, 1);
				int8_t *un = malloc(n);
				int *q = malloc(bs * sizeof *q);
				for (size_t i = 0; i < n; i++)
					w[i] = frand() * (sym ? 1.0f : 0.5f) + (sym ? 0 : 0.3f);
				/* one all-zero block: scale 1, q = zero point */
				for (size_t l = 0; l < (len < bs ? len : bs); l++)
					w[l * inner] = 0;
				struct quant_int4_stats st = {0, 0, INFINITY, 0};
				struct nn_err e = {0};
				CHECK(quant_int4_quantize(w, outer, len, inner, bs, sym, 0, len * inner,
							  pk, sc, sym ? NULL : zp, &st, NULL,
							  &e) == NN_OK,
				      "%s", e.message);
				quant_int4_unpack(pk, n, sym, un);
				for (size_t o = 0; o < outer; o++)
					for (size_t bl = 0; bl < nb; bl++)
						for (size_t i = 0; i < inner; i++) {
							size_t l0 = bl * bs;
							size_t cnt = len - l0 < bs ? len - l0 : bs;
							float rs;
							int rz;
							ref_block(w + (o * len + l0) * inner + i, cnt,
								  inner, sym, q, &rs, &rz);
							size_t si = (o * nb + bl) * inner + i;
							CHECK(sc[si] == rs,
							      "bs %zu shape %zu block %zu: scale %g vs %g",
							      bs, s, bl, sc[si], rs);
							CHECK(sym || zp[si] == rz, "zero point %d vs %d",
							      zp[si], rz);
							for (size_t k = 0; k < cnt; k++) {
								size_t at = (o * len + l0 + k) * inner + i;
								CHECK(un[at] == q[k],
								      "bs %zu shape %zu sym %d elem %zu: "
								      "%d vs %d",
								      bs, s, sym, at, un[at], q[k]);
							}
						}
				/* the odd count leaves the last high nibble 0 */
				if (n & 1)
					CHECK((pk[n / 2] >> 4) == 0, "padding nibble");
				/* pack(unpack) is the identity on the bytes */
				uint8_t *re = calloc(n / 2 + 1, 1), *nib = malloc(n);
				for (size_t i = 0; i < n; i++)
					nib[i] = (uint8_t)un[i] & 15u;
				quant_int4_pack(nib, n, re);
				CHECK(!memcmp(re, pk, (n + 1) / 2), "repack differs");
				free(re);
				free(nib);
				free(w);
				free(sc);
				free(pk);
				free(zp);
				free(un);
				free(q);
			}
	/* every nibble value round-trips, odd count */
	uint8_t v[17], p[9];
	int8_t u[17];
	for (int i = 0; i < 17; i++)
		v[i] = (uint8_t)(i & 15);
	quant_int4_pack(v, 17, p);
	CHECK(p[0] == 0x10 && p[8] == 0x00, "low nibble first: %02x %02x", p[0], p[8]);
	quant_int4_unpack(p, 17, false, u);
	for (int i = 0; i < 17; i++)
		CHECK(u[i] == (i & 15), "uint4 %d", i);
	quant_int4_unpack(p, 16, true, u);
	for (int i = 0; i < 16; i++)
		CHECK(u[i] == (i < 8 ? i : i - 16), "int4 %d -> %d", i, u[i]);
	/* NaN refused */
	float bad[3] = {1, NAN, 2};
	uint8_t bp[2] = {0};
	float bs1[1];
	struct quant_int4_stats st = {0, 0, INFINITY, 0};
	struct nn_err e = {0};
	CHECK(quant_int4_quantize(bad, 1, 3, 1, 16, true, 0, 3, bp, bs1, NULL, &st, NULL, &e) ==
		      NN_EINVAL,
	      "NaN accepted");
	return 0;
}

/* One random weight for the path comparison: mostly bell-ish values, with
 * some blocks all zero, some tiny (subnormal-range scales), some huge (near
 * FLT_MAX) and exact ties (k + 0.5) * scale, so every branch of the
 * parameters and the rounding is taken. */
static void fill_mixed(float *w, size_t n, int kind)
{
	for (size_t i = 0; i < n; i++) {
		float v = frand() + frand() + frand();
		switch (kind) {
		case 1:
			v = (i / 37) % 5 == 0 ? 0.0f : v; /* zero runs */
			break;
		case 2:
			v *= (i / 50) % 3 == 0 ? 1e-39f : 1.0f; /* subnormal ranges */
			break;
		case 3:
			v *= (i / 40) % 4 == 0 ? 1e38f : 1.0f; /* huge ranges */
			break;
		case 4:
			v = (float)((int)(v * 4.0f)) * 0.5f + 0.25f; /* ties */
			break;
		default:
			v += 0.4f;
			break;
		}
		w[i] = v;
	}
}

/* The kernel's instruction sets agree: nibbles, scales and zero points
 * identical on every path; AVX-512 and AVX2 error sums bit for bit (the
 * step's metrics do not depend on which one the CPU has), the scalar ones to
 * 1e-5 relative (plain summation order); max error and scale range exact.
 * Random layouts [outer][len][inner] with ragged last blocks, columns that
 * are not a multiple of 16 or 8, odd row starts (MatMulNBits strides),
 * block sizes 16..128 and ones the AVX-512 path leaves to AVX2 (8, 24),
 * offsets 0 and 8, symmetric and not. NaN and Inf are refused on every
 * path. Paths the CPU lacks fall back (quant_int4_isa_best says which). */
static int test_isa_paths_agree(void)
{
	static const size_t blocks[] = {16, 32, 64, 128, 8, 24};
	static const size_t inners[] = {1, 1, 1, 3, 8, 15, 16, 17, 24, 33, 40, 64, 100};
	enum quant_int4_isa best = quant_int4_isa_best();
	fprintf(stderr, "best instruction set: %d (3 = AVX-512)\n", (int)best);
	int cases = 0;
	for (int round = 0; round < 600; round++) {
		size_t bs = blocks[round % 6];
		size_t inner = inners[(round / 6) % 13];
		size_t outer = 1 + (size_t)(round % 3);
		size_t len = 1 + (size_t)((frand() + 1.0f) * 0.5f * (float)(bs * 5));
		if (round % 7 == 0)
			len = bs * (1 + (size_t)round % 4); /* no ragged block */
		bool sym = round % 2 == 0;
		unsigned offset = round % 4 == 1 ? 8 : 0;
		size_t nb = (len + bs - 1) / bs;
		/* ostride: the ONNX layout, or rows padded to whole blocks
		 * (MatMulNBits), odd when len and block allow it (odd row starts) */
		size_t ostride = len * inner;
		if (inner == 1 && round % 5 == 0)
			ostride = nb * bs + (round % 10 == 0 ? 1 : 0);
		size_t n = outer * len * inner, ns = outer * nb * inner;
		size_t pbytes = (outer * ostride + 1) / 2 + 1;
		float *w = malloc(n * sizeof *w);
		fill_mixed(w, n, round % 5);
		uint8_t *pk[3];
		float *sc[3];
		uint8_t *zp[3];
		struct quant_int4_stats st[3];
		for (int p = 0; p < 3; p++) {
			pk[p] = calloc(pbytes, 1);
			sc[p] = malloc(ns * sizeof(float));
			zp[p] = calloc(ns, 1);
			st[p] = (struct quant_int4_stats){0, 0, INFINITY, 0};
			struct nn_err e = {0};
			enum quant_int4_isa isa = (enum quant_int4_isa)(QUANT_INT4_ISA_SCALAR + p);
			CHECK(quant_int4_quantize_isa(w, outer, len, inner, bs, sym, offset, ostride,
						      pk[p], sc[p], sym ? NULL : zp[p], &st[p], isa,
						      &e) == NN_OK,
			      "isa %d: %s", (int)isa, e.message);
		}
		for (int p = 1; p < 3; p++) {
			const char *what = p == 1 ? "AVX2 vs scalar" : "AVX-512 vs scalar";
			CHECK(!memcmp(pk[p], pk[0], pbytes), "%s: nibbles differ (round %d: "
			      "outer %zu len %zu inner %zu block %zu sym %d)", what, round, outer,
			      len, inner, bs, sym);
			CHECK(!memcmp(sc[p], sc[0], ns * sizeof(float)), "%s: scales differ (round %d)",
			      what, round);
			CHECK(!memcmp(zp[p], zp[0], ns), "%s: zero points differ (round %d)", what,
			      round);
			CHECK(st[p].maxerr == st[0].maxerr && st[p].smin == st[0].smin &&
				      st[p].smax == st[0].smax,
			      "%s: max error / scale range differ (round %d)", what, round);
			CHECK(st[p].sq == st[0].sq || fabs(st[p].sq - st[0].sq) <= 1e-5 * fabs(st[0].sq),
			      "%s: squared errors %.17g vs %.17g (round %d)", what, st[p].sq,
			      st[0].sq, round);
		}
		CHECK(st[2].sq == st[1].sq, "AVX-512 vs AVX2: squared errors %.17g vs %.17g "
		      "(round %d: outer %zu len %zu inner %zu block %zu sym %d)", st[2].sq,
		      st[1].sq, round, outer, len, inner, bs, sym);
		/* a NaN or an Inf anywhere is refused by every path */
		w[(size_t)round * 7919 % n] = round % 2 ? NAN : -INFINITY;
		for (int p = 0; p < 3; p++) {
			struct quant_int4_stats s2 = {0, 0, INFINITY, 0};
			struct nn_err e = {0};
			CHECK(quant_int4_quantize_isa(w, outer, len, inner, bs, sym, offset, ostride,
						      pk[p], sc[p], sym ? NULL : zp[p], &s2,
						      (enum quant_int4_isa)(QUANT_INT4_ISA_SCALAR + p),
						      &e) == NN_EINVAL,
			      "non-finite accepted (path %d round %d)", p, round);
		}
		for (int p = 0; p < 3; p++) {
			free(pk[p]);
			free(sc[p]);
			free(zp[p]);
		}
		free(w);
		cases++;
	}
	fprintf(stderr, "%d layouts compared\n", cases);
	return 0;
}

static Onnx__TensorProto *init_of(struct onnx_model *m, const char *name);

/* The Gemm -> MatMul rewrite quantizes W [N, K] as W^T [K, N] from K-rows
 * (tiles of rows written transposed, whole 32-row groups in registers and
 * the rest nibble by nibble): its INT4 bytes, scales and zero points equal
 * the kernel run on the explicitly transposed floats, for N around the
 * 32/128-row tile edges, odd N (nibbles straddling bytes), K not a multiple
 * of 16 or of the block, every block size, symmetric and not; the step's
 * mse matches the kernel's to 1e-6 relative (partial sums grouped per 32
 * rows). */
static int test_transposed_gemm_matches_kernel(void)
{
	static const int64_t ns[] = {1, 31, 32, 33, 45, 127, 128, 129, 161, 300};
	static const int64_t ks[] = {16, 47, 100, 784, 33};
	int cases = 0;
	for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
		for (size_t c = 0; c < sizeof ks / sizeof ks[0]; c++) {
			int64_t n = ns[a], k = ks[c];
			size_t cnt = (size_t)(n * k);
			float *w = malloc(cnt * sizeof *w), *wt = malloc(cnt * sizeof *wt);
			CHECK(w && wt, "memory");
			synthmodel_fill(w, cnt, 77 + a * 13 + c, 0.1f);
			for (int64_t j = 0; j < n; j++)
				for (int64_t i = 0; i < k; i++)
					wt[i * n + j] = w[j * k + i];
			struct synthmodel sm = {.n_layers = 1, .dims = {k, n}, .gemm = {true},
						.weights = {w}};
			uint8_t *bytes = NULL;
			size_t len = 0;
			struct nn_err e = {0};
			CHECK(synthmodel_pack(&sm, &bytes, &len, &e) == NN_OK, "%s", e.message);
			for (int v = 0; v < 8; v++) {
				int bs = 16 << (v % 4);
				bool sym = v < 4;
				struct onnx_model *m = NULL;
				CHECK(onnx_load(bytes, len, &m, &e) == NN_OK, "%s", e.message);
				char spec[160];
				snprintf(spec, sizeof spec,
					 "{\"op\":\"quantize\",\"scheme\":\"int4\",\"block_size\":%d,"
					 "\"symmetric\":%s}",
					 bs, sym ? "true" : "false");
				json_t *mt = NULL;
				if (int4(m, spec, &mt))
					return 1;
				size_t nb = ((size_t)k + (size_t)bs - 1) / (size_t)bs, nsc = nb * (size_t)n;
				uint8_t *pk = calloc(cnt / 2 + 1, 1), *zp = calloc(nsc, 1);
				float *sc = malloc(nsc * sizeof *sc);
				struct quant_int4_stats st = {0, 0, INFINITY, 0};
				CHECK(pk && zp && sc, "memory");
				CHECK(quant_int4_quantize(wt, 1, (size_t)k, (size_t)n, (size_t)bs, sym, 0,
							  cnt, pk, sc, sym ? NULL : zp, &st, NULL,
							  &e) == NN_OK,
				      "%s", e.message);
				const Onnx__TensorProto *q = init_of(m, "W0_quantized");
				const Onnx__TensorProto *s = init_of(m, "W0_scale");
				const Onnx__TensorProto *z = init_of(m, "W0_zero_point");
				CHECK(q && s && z, "initializers of W0 (N %lld K %lld)", (long long)n,
				      (long long)k);
				CHECK(q->n_dims == 2 && q->dims[0] == k && q->dims[1] == n,
				      "W0 written as [K, N]");
				CHECK(q->raw_data.len == (cnt + 1) / 2 &&
					      !memcmp(q->raw_data.data, pk, (cnt + 1) / 2),
				      "N %lld K %lld block %d sym %d: nibbles differ from the kernel "
				      "on W^T",
				      (long long)n, (long long)k, bs, sym);
				CHECK(s->raw_data.len == nsc * 4 && !memcmp(s->raw_data.data, sc, nsc * 4),
				      "N %lld K %lld block %d: scales differ", (long long)n,
				      (long long)k, bs);
				if (!sym) {
					uint8_t *zk = calloc(nsc / 2 + 1, 1);
					quant_int4_pack(zp, nsc, zk);
					CHECK(z->raw_data.len == (nsc + 1) / 2 &&
						      !memcmp(z->raw_data.data, zk, (nsc + 1) / 2),
					      "N %lld K %lld block %d: zero points differ",
					      (long long)n, (long long)k, bs);
					free(zk);
				}
				json_t *l0 = json_array_get(json_object_get(mt, "layers"), 0);
				double mse = json_number_value(json_object_get(l0, "mse"));
				double want = st.sq / (double)cnt;
				CHECK(fabs(mse - want) <= 1e-6 * want, "mse %.17g vs %.17g", mse, want);
				CHECK(json_number_value(json_object_get(l0, "max_abs_error")) ==
					      (double)st.maxerr,
				      "max_abs_error");
				json_decref(mt);
				free(pk);
				free(zp);
				free(sc);
				onnx_free(m);
				cases++;
			}
			free(bytes);
			free(w);
			free(wt);
		}
	fprintf(stderr, "%d Gemm layers compared\n", cases);
	return 0;
}

static Onnx__TensorProto *init_of(struct onnx_model *m, const char *name)
{
	return onnx_find_initializer(m, name);
}

static const Onnx__NodeProto *node_of(const struct onnx_model *m, const char *op, size_t k)
{
	const Onnx__GraphProto *g = m->proto->graph;
	for (size_t i = 0; i < g->n_node; i++)
		if (!strcmp(g->node[i]->op_type, op) && k-- == 0)
			return g->node[i];
	return NULL;
}

/* Runs m on `batch` rows of a fixed pseudo-random input; *y malloc'd. */
static int run_exec(const struct onnx_model *m, int64_t batch, float **x_out, size_t *nx,
		    float **y, size_t *ny, char *dims, size_t dims_cap)
{
	struct exec_plan *p = NULL;
	struct nn_err e = {0};
	CHECK(exec_compile(m, batch, &p, &e) == NN_OK, "compile: %s", e.message);
	const struct tensor *spec = exec_input_spec(p, 0);
	struct tensor x = {0}, yt = {0};
	CHECK(tensor_alloc(&x, DT_FLOAT, spec->ndim, spec->shape, &e) == NN_OK, "alloc");
	size_t n = (size_t)tensor_numel(&x);
	uint64_t s = 12345;
	for (size_t i = 0; i < n; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		((float *)x.data)[i] = (float)((s >> 40) & 0xffff) / 65535.0f;
	}
	enum nn_status st = exec_run(p, &x, 1, &yt, 1, &e);
	if (st == NN_OK) {
		*ny = (size_t)tensor_numel(&yt);
		*y = malloc(*ny * sizeof **y);
		memcpy(*y, yt.data, *ny * sizeof **y);
		if (dims) {
			dims[0] = 0;
			for (int d = 0; d < spec->ndim; d++)
				snprintf(dims + strlen(dims), dims_cap - strlen(dims), "%s%lld",
					 d ? "x" : "", (long long)spec->shape[d]);
		}
	}
	exec_free(p);
	if (x_out && st == NN_OK) {
		*x_out = x.data;
		*nx = n;
		x.data = NULL;
		x.owned = false;
	}
	tensor_free(&x);
	CHECK(st == NN_OK, "run: %s", e.message);
	return 0;
}

static double max_diff(const float *a, const float *b, size_t n)
{
	double d = 0;
	for (size_t i = 0; i < n; i++)
		d = fmax(d, fabs((double)a[i] - (double)b[i]));
	return d;
}

/* format onnx on lenet300 (Gemm transB=1, K = 784: ragged last block of 16)
 * and steps_mlp (MatMul [16, 32]: one ragged block), symmetric and not: the
 * initializers are INT4/UINT4 with the weight's dims, packed to
 * ceil(n / 2) bytes; scale and zero point have the K axis divided by the
 * block size; DequantizeLinear carries axis and block_size; each Gemm is
 * written as MatMul (+ Add) with B^T, blocked along axis 0; opset 21, IR 10;
 * the executor runs it close to the float model; the report has the fields. */
static int test_model_onnx_layout(void)
{
	static const char *specs[2] = {
		"{\"op\":\"quantize\",\"scheme\":\"int4\",\"block_size\":32}",
		"{\"op\":\"quantize\",\"scheme\":\"int4\",\"block_size\":16,\"symmetric\":false}",
	};
	for (int s = 0; s < 2; s++) {
		struct onnx_model *ref = load(fixtures, "lenet300.onnx");
		struct onnx_model *m = load(fixtures, "lenet300.onnx");
		CHECK(ref && m, "load");
		json_t *mt = NULL;
		if (int4(m, specs[s], &mt))
			return 1;
		int bs = s == 0 ? 32 : 16;
		CHECK(onnx_opset(m) == 21 && m->proto->ir_version == 10, "opset %lld ir %lld",
		      (long long)onnx_opset(m), (long long)m->proto->ir_version);
		CHECK(json_integer_value(json_object_get(mt, "opset")) == 21 &&
			      json_integer_value(json_object_get(mt, "ir_version")) == 10 &&
			      json_array_size(json_object_get(mt, "contrib_ops")) == 0,
		      "report opset/ir/contrib");
		json_t *layers = json_object_get(mt, "layers");
		CHECK(json_array_size(layers) == 3, "3 layers");
		json_t *l0 = json_array_get(layers, 0);
		CHECK(json_integer_value(json_object_get(l0, "bits")) == 4 &&
			      json_integer_value(json_object_get(l0, "block_size")) == bs &&
			      json_real_value(json_object_get(l0, "mse")) > 0 &&
			      json_real_value(json_object_get(l0, "max_abs_error")) > 0 &&
			      json_real_value(json_object_get(l0, "scale_max")) >=
				      json_real_value(json_object_get(l0, "scale_min")),
		      "layer metrics");
		Onnx__TensorProto *q = init_of(m, "fc1.weight_quantized");
		Onnx__TensorProto *sc = init_of(m, "fc1.weight_scale");
		Onnx__TensorProto *zp = init_of(m, "fc1.weight_zero_point");
		CHECK(q && sc && zp && !init_of(m, "fc1.weight"), "initializers");
		int dt = s == 0 ? DT_INT4 : DT_UINT4;
		int64_t nb = (784 + bs - 1) / bs;
		/* the Gemm (transB=1) is written as MatMul with B^T [784, 300] */
		CHECK(q->data_type == dt && q->n_dims == 2 && q->dims[0] == 784 &&
			      q->dims[1] == 300 && q->raw_data.len == 300 * 784 / 2,
		      "weight tensor");
		CHECK(sc->data_type == DT_FLOAT && sc->n_dims == 2 && sc->dims[0] == nb &&
			      sc->dims[1] == 300,
		      "scale dims");
		CHECK(zp->data_type == dt && zp->n_dims == 2 && zp->dims[0] == nb &&
			      zp->raw_data.len == (size_t)(300 * nb + 1) / 2,
		      "zero point");
		CHECK(!node_of(m, "Gemm", 0) && node_of(m, "MatMul", 2) && node_of(m, "Add", 2),
		      "Gemm -> MatMul + Add");
		const Onnx__NodeProto *dq = node_of(m, "DequantizeLinear", 0);
		CHECK(dq && onnx_node_int_attr(dq, "block_size", 0) == bs, "block_size attr");
		for (size_t i = 0; i < 3; i++) {
			const Onnx__NodeProto *d = node_of(m, "DequantizeLinear", i);
			CHECK(d && onnx_node_int_attr(d, "axis", -1) == 0, "axis 0 (K)");
		}
		float *y0 = NULL, *y1 = NULL;
		size_t n0 = 0, n1 = 0;
		if (run_exec(ref, 64, NULL, NULL, &y0, &n0, NULL, 0) ||
		    run_exec(m, 64, NULL, NULL, &y1, &n1, NULL, 0))
			return 1;
		double d = max_diff(y0, y1, n0);
		CHECK(n0 == n1 && d > 0 && d < 1.5, "int4 vs float max diff %g", d);
		free(y0);
		free(y1);
		json_decref(mt);
		onnx_free(ref);
		onnx_free(m);
	}
	/* MatMul [16, 32]: K = 16 on axis 0, block 32 = one ragged block */
	struct onnx_model *m = load(unit_data, "steps_mlp.onnx");
	CHECK(m, "load steps_mlp");
	if (int4(m, "{\"op\":\"quantize\",\"scheme\":\"int4\"}", NULL))
		return 1;
	const Onnx__NodeProto *d = node_of(m, "DequantizeLinear", 0);
	const Onnx__NodeProto *d1 = node_of(m, "DequantizeLinear", 1);
	CHECK(d && d1, "two DequantizeLinear");
	int64_t ax0 = onnx_node_int_attr(d, "axis", -1), ax1 = onnx_node_int_attr(d1, "axis", -1);
	CHECK(ax0 == 0 && ax1 == 0, "blocks along K (axis 0) for MatMul and the Gemm");
	float *y = NULL;
	size_t ny = 0;
	if (run_exec(m, 4, NULL, NULL, &y, &ny, NULL, 0))
		return 1;
	free(y);
	onnx_free(m);

	/* exclude by op type: the Gemm's weight stays float and is listed */
	m = load(unit_data, "steps_mlp.onnx");
	json_t *mt = NULL;
	CHECK(m, "load steps_mlp");
	if (int4(m, "{\"op\":\"quantize\",\"scheme\":\"int4\",\"exclude\":[\"Gemm\"]}", &mt))
		return 1;
	CHECK(node_of(m, "DequantizeLinear", 0) && !node_of(m, "DequantizeLinear", 1) &&
		      node_of(m, "Gemm", 0),
	      "only the MatMul quantized");
	CHECK(json_array_size(json_object_get(mt, "layers")) == 1 &&
		      json_array_size(json_object_get(mt, "kept_float")) == 1,
	      "layers 1, kept_float 1");
	json_decref(mt);
	onnx_free(m);
	return 0;
}

/* Acceptance 4 (second half): the artifact written by nncd, read back by
 * python3-onnx, has the same 4-bit initializers with the same raw bytes. */
static int test_python_reads_same_bytes(const char *script)
{
	if (access("/usr/bin/python3", X_OK) != 0)
		return 77;
	for (int s = 0; s < 2; s++) {
		struct onnx_model *m = load(fixtures, "lenet300.onnx");
		CHECK(m, "load");
		if (int4(m, s ? "{\"op\":\"quantize\",\"scheme\":\"int4\",\"symmetric\":false}"
			      : "{\"op\":\"quantize\",\"scheme\":\"int4\",\"block_size\":128}",
			 NULL))
			return 1;
		char dir[] = "/tmp/nncd_int4_XXXXXX", path[128], cmd[1024];
		CHECK(mkdtemp(dir), "mkdtemp");
		snprintf(path, sizeof path, "%s/m.onnx", dir);
		struct nn_err e = {0};
		CHECK(onnx_save_file(m, path, &e) == NN_OK, "%s", e.message);
		snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s", script, path);
		FILE *f = popen(cmd, "r");
		CHECK(f, "popen");
		char line[512];
		size_t seen = 0;
		while (fgets(line, sizeof line, f)) {
			char name[256], dims[64], hex[65];
			int dt;
			size_t len;
			CHECK(sscanf(line, "%255s %d %63s %zu %64s", name, &dt, dims, &len, hex) == 5,
			      "line %s", line);
			Onnx__TensorProto *t = init_of(m, name);
			CHECK(t && t->data_type == dt && t->raw_data.len == len, "%s", name);
			/* compare the bytes: python's sha256 against ours via a dump */
			char p2[160], c2[400];
			snprintf(p2, sizeof p2, "%s/raw", dir);
			FILE *r = fopen(p2, "wb");
			CHECK(r && fwrite(t->raw_data.data, 1, len, r) == len, "dump");
			fclose(r);
			snprintf(c2, sizeof c2, "sha256sum %s", p2);
			FILE *h = popen(c2, "r");
			char ours[65] = {0};
			CHECK(h && fscanf(h, "%64s", ours) == 1, "sha256sum");
			pclose(h);
			CHECK(!strcmp(ours, hex), "%s: python sha %s, nncd %s", name, hex, ours);
			seen++;
		}
		CHECK(pclose(f) == 0, "python failed");
		CHECK(seen == 6, "4-bit initializers seen by python: %zu", seen);
		snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
		CHECK(system(cmd) == 0, "rm");
		onnx_free(m);
	}
	return 0;
}

/* format matmulnbits: lenet300's Gemms become MatMulNBits + Add (C), with
 * K, N, bits, block_size, accuracy_level; B uint8 [N, blocks, bs/2], scales
 * [N * blocks], zero points [N * ceil(blocks/2)] when asymmetric; the
 * com.microsoft import is added; the executor's outputs equal those of the
 * onnx-format artifact (the same weights decoded from the other layout). */
static int test_model_matmulnbits_layout(void)
{
	for (int sym = 0; sym < 2; sym++) {
		char s1[200], s2[200];
		snprintf(s1, sizeof s1,
			 "{\"op\":\"quantize\",\"scheme\":\"int4\",\"symmetric\":%s,"
			 "\"format\":\"matmulnbits\"}",
			 sym ? "true" : "false");
		snprintf(s2, sizeof s2, "{\"op\":\"quantize\",\"scheme\":\"int4\",\"symmetric\":%s}",
			 sym ? "true" : "false");
		struct onnx_model *a = load(fixtures, "lenet300.onnx");
		struct onnx_model *b = load(fixtures, "lenet300.onnx");
		CHECK(a && b, "load");
		json_t *mt = NULL;
		if (int4(a, s1, &mt) || int4(b, s2, NULL))
			return 1;
		CHECK(json_array_size(json_object_get(mt, "contrib_ops")) == 1, "contrib_ops");
		const Onnx__NodeProto *n = node_of(a, "MatMulNBits", 0);
		CHECK(n && !strcmp(n->domain, "com.microsoft") && !node_of(a, "Gemm", 0) &&
			      node_of(a, "MatMulNBits", 2) && node_of(a, "Add", 2),
		      "three MatMulNBits + Add");
		CHECK(onnx_node_int_attr(n, "K", 0) == 784 && onnx_node_int_attr(n, "N", 0) == 300 &&
			      onnx_node_int_attr(n, "bits", 0) == 4 &&
			      onnx_node_int_attr(n, "block_size", 0) == 32,
		      "attributes");
		CHECK(n->n_input == (sym ? 3u : 4u), "inputs %zu", n->n_input);
		Onnx__TensorProto *bq = init_of(a, n->input[1]);
		Onnx__TensorProto *sc = init_of(a, n->input[2]);
		CHECK(bq && bq->data_type == DT_UINT8 && bq->n_dims == 3 && bq->dims[0] == 300 &&
			      bq->dims[1] == 25 && bq->dims[2] == 16 &&
			      bq->raw_data.len == 300 * 25 * 16,
		      "B");
		CHECK(sc && sc->n_dims == 1 && sc->dims[0] == 300 * 25, "scales");
		if (!sym) {
			Onnx__TensorProto *z = init_of(a, n->input[3]);
			CHECK(z && z->data_type == DT_UINT8 && z->raw_data.len == 300 * 13, "zp");
		}
		bool ms = false;
		for (size_t i = 0; i < a->proto->n_opset_import; i++)
			ms |= a->proto->opset_import[i]->domain &&
			      !strcmp(a->proto->opset_import[i]->domain, "com.microsoft");
		CHECK(ms, "com.microsoft import");
		float *ya = NULL, *yb = NULL;
		size_t na = 0, nb = 0;
		if (run_exec(a, 32, NULL, NULL, &ya, &na, NULL, 0) ||
		    run_exec(b, 32, NULL, NULL, &yb, &nb, NULL, 0))
			return 1;
		double d = max_diff(ya, yb, na);
		CHECK(na == nb && d < 1e-4, "matmulnbits vs onnx format: %g", d);
		free(ya);
		free(yb);
		json_decref(mt);
		onnx_free(a);
		onnx_free(b);
	}
	return 0;
}

/* Acceptance 1: ORT loads and runs every artifact (lenet300 and the MatMul
 * model steps_mlp, both formats, symmetric and not) with outputs matching
 * the executor to 1e-4 at exact-numerics settings. */
static int test_ort_matches_executor(const char *node, const char *modules, const char *js)
{
	struct stat sb;
	if (!node || !*node || !modules || stat(modules, &sb) != 0)
		return 77;
	static const char *models[2][2] = {{"f", "lenet300.onnx"}, {"u", "steps_mlp.onnx"}};
	static const char *steps[4] = {
		"{\"op\":\"quantize\",\"scheme\":\"int4\"}",
		"{\"op\":\"quantize\",\"scheme\":\"int4\",\"symmetric\":false,\"block_size\":16}",
		"{\"op\":\"quantize\",\"scheme\":\"int4\",\"format\":\"matmulnbits\"}",
		"{\"op\":\"quantize\",\"scheme\":\"int4\",\"format\":\"matmulnbits\","
		"\"symmetric\":false,\"block_size\":64}",
	};
	char dir[] = "/tmp/nncd_int4_ort_XXXXXX";
	CHECK(mkdtemp(dir), "mkdtemp");
	size_t cap = 16384, used = 0;
	char *cmd = malloc(cap);
	used += (size_t)snprintf(cmd, cap, "%s %s %s", node, js, modules);
	for (int mi = 0; mi < 2; mi++)
		for (int s = 0; s < 4; s++) {
			struct onnx_model *m =
				load(models[mi][0][0] == 'f' ? fixtures : unit_data, models[mi][1]);
			CHECK(m, "load");
			if (int4(m, steps[s], NULL))
				return 1;
			char path[256], in[300], out[300], dims[64];
			snprintf(path, sizeof path, "%s/m%d_%d.onnx", dir, mi, s);
			snprintf(in, sizeof in, "%s.in", path);
			snprintf(out, sizeof out, "%s.out", path);
			struct nn_err e = {0};
			CHECK(onnx_save_file(m, path, &e) == NN_OK, "%s", e.message);
			float *x = NULL, *y = NULL;
			size_t nx = 0, ny = 0;
			if (run_exec(m, 16, &x, &nx, &y, &ny, dims, sizeof dims))
				return 1;
			FILE *f = fopen(in, "wb");
			CHECK(f && fwrite(x, 4, nx, f) == nx, "write in");
			fclose(f);
			f = fopen(out, "wb");
			CHECK(f && fwrite(y, 4, ny, f) == ny, "write out");
			fclose(f);
			used += (size_t)snprintf(cmd + used, cap - used, " %s:%s:%s:%s", path, in,
						 out, dims);
			free(x);
			free(y);
			onnx_free(m);
		}
	int rc = system(cmd);
	char rm[128];
	snprintf(rm, sizeof rm, "rm -rf %s", dir);
	if (system(rm) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	free(cmd);
	CHECK(rc != -1 && WIFEXITED(rc), "node did not run");
	if (WEXITSTATUS(rc) == 77)
		return 77;
	CHECK(WEXITSTATUS(rc) == 0, "ORT and nncd differ (see above)");
	return 0;
}

/* Acceptance 2: LeNet-300-100 int4 block 32 is >= 5x smaller, and its MNIST
 * accuracy measured by ONNX Runtime (tests/oracle/eval.js, 10,000 test
 * digits, exact numerics) drops by at most 0.5 point. */
static int test_lenet300_block32(const char *node, const char *evaljs)
{
	struct stat sb;
	if (!node || !*node || !evaljs || stat(evaljs, &sb) != 0)
		return 77;
	struct onnx_model *m = load(fixtures, "lenet300.onnx");
	CHECK(m, "load");
	size_t before = onnx_packed_size(m);
	if (int4(m, "{\"op\":\"quantize\",\"scheme\":\"int4\",\"block_size\":32}", NULL))
		return 1;
	size_t after = onnx_packed_size(m);
	double ratio = (double)before / (double)after;
	printf("lenet300 int4 block 32: %zu -> %zu bytes (%.2fx)\n", before, after, ratio);
	CHECK(ratio >= 5.0, "only %.2fx smaller", ratio);
	char dir[] = "/tmp/nncd_int4_acc_XXXXXX", path[128], cmd[1024];
	CHECK(mkdtemp(dir), "mkdtemp");
	snprintf(path, sizeof path, "%s/q.onnx", dir);
	struct nn_err e = {0};
	CHECK(onnx_save_file(m, path, &e) == NN_OK, "%s", e.message);
	double acc[2];
	const char *files[2];
	char ref[1024];
	snprintf(ref, sizeof ref, "%s/lenet300.onnx", fixtures);
	files[0] = ref, files[1] = path;
	for (int i = 0; i < 2; i++) {
		snprintf(cmd, sizeof cmd, "%s %s accuracy %s", node, evaljs, files[i]);
		FILE *f = popen(cmd, "r");
		CHECK(f, "popen");
		char buf[2048] = {0};
		size_t got = fread(buf, 1, sizeof buf - 1, f);
		int rc = pclose(f);
		CHECK(rc == 0 && got > 0, "eval.js failed on %s", files[i]);
		json_t *j = json_loads(buf, 0, NULL);
		CHECK(j, "eval.js output %s", buf);
		acc[i] = json_real_value(json_object_get(j, "accuracy"));
		printf("%s: accuracy %.4f (ORT default options %.4f)\n", files[i], acc[i],
		       json_real_value(json_object_get(j, "accuracy_default")));
		json_decref(j);
	}
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	onnx_free(m);
	printf("accuracy drop %.2f points\n", (acc[0] - acc[1]) * 100);
	CHECK(acc[0] > 0.9 && (acc[0] - acc[1]) * 100 <= 0.5, "drop %.2f points",
	      (acc[0] - acc[1]) * 100);
	return 0;
}

/* Bias correction (quant_bias.h) with int4: on a single Gemm (transB=1, no
 * bias: rewritten as MatMul + a new Add) and a single MatMul, the
 * per-output-channel mean error against the float layer on the calibration
 * inputs drops to ~0, and the report carries the shifts; with format
 * matmulnbits it is refused naming steps[i].bias_correction. */
static int test_bias_correction(void)
{
	static const char *models[2] = {"q8_gemm.onnx", "q8_matmul.onnx"};
	struct tensor x = {0};
	int64_t shape[2] = {256, 16};
	struct nn_err e = {0};
	CHECK(tensor_alloc(&x, DT_FLOAT, 2, shape, &e) == NN_OK, "alloc");
	for (int64_t i = 0; i < 256 * 16; i++)
		((float *)x.data)[i] = 0.5f + (frand() + 1.0f) * 0.5f;
	struct eval_data cal = {.inputs = &x, .labels = NULL};
	struct step_ctx ctx = {.calib = &cal};
	for (int mi = 0; mi < 2; mi++) {
		struct onnx_model *f = load(unit_data, models[mi]), *q = load(unit_data, models[mi]),
				  *c = load(unit_data, models[mi]);
		CHECK(f && q && c, "%s", models[mi]);
		const char *plain = "{\"op\":\"quantize\",\"scheme\":\"int4\",\"block_size\":16}";
		const char *corr = "{\"op\":\"quantize\",\"scheme\":\"int4\",\"block_size\":16,"
				   "\"bias_correction\":true}";
		json_t *jp = json_loads(plain, 0, NULL), *jc = json_loads(corr, 0, NULL), *mc = NULL,
		       *mq = NULL;
		struct quant_params pp, pc;
		CHECK(quant_params_parse(jp, 0, &pp, &e) == NN_OK &&
			      quant_params_parse(jc, 0, &pc, &e) == NN_OK,
		      "%s", e.message);
		CHECK(quant_run(q, &pp, &ctx, &mq, &e) == NN_OK, "%s", e.message);
		CHECK(quant_run(c, &pc, &ctx, &mc, &e) == NN_OK, "%s: %s", models[mi], e.message);
		float *yf = NULL, *yq = NULL, *yc = NULL;
		size_t nf = 0, nq = 0, nc = 0;
		/* all three on the calibration inputs x */
		const struct onnx_model *ms[3] = {f, q, c};
		float **ys[3] = {&yf, &yq, &yc};
		size_t *ns[3] = {&nf, &nq, &nc};
		for (int k = 0; k < 3; k++) {
			struct exec_plan *pl = NULL;
			struct tensor y = {0};
			CHECK(exec_compile(ms[k], 256, &pl, &e) == NN_OK, "%s", e.message);
			CHECK(exec_run(pl, &x, 1, &y, 1, &e) == NN_OK, "%s", e.message);
			*ns[k] = (size_t)tensor_numel(&y);
			*ys[k] = malloc(*ns[k] * sizeof(float));
			memcpy(*ys[k], y.data, *ns[k] * sizeof(float));
			exec_free(pl);
		}
		CHECK(nf == 256 * 8 && nq == nf && nc == nf, "output sizes");
		double mb = 0, ma = 0;
		for (int ch = 0; ch < 8; ch++) {
			double b = 0, a = 0;
			for (int r = 0; r < 256; r++) {
				b += (double)yq[r * 8 + ch] - yf[r * 8 + ch];
				a += (double)yc[r * 8 + ch] - yf[r * 8 + ch];
			}
			mb = fmax(mb, fabs(b / 256)), ma = fmax(ma, fabs(a / 256));
		}
		printf("%s int4: max |channel mean error| before %.3g after %.3g\n", models[mi], mb, ma);
		CHECK(mb > 1e-3 && ma < 1e-5 + 1e-3 * mb, "before %g after %g", mb, ma);
		const json_t *bl = json_object_get(json_object_get(mc, "bias_correction"), "layers");
		CHECK(json_array_size(bl) == 1, "one corrected layer");
		CHECK(json_is_number(json_object_get(json_array_get(json_object_get(mc, "layers"), 0),
						     "bias_mean_shift")),
		      "per-layer shift");
		free(yf);
		free(yq);
		free(yc);
		json_decref(jp);
		json_decref(jc);
		json_decref(mq);
		json_decref(mc);
		onnx_free(f);
		onnx_free(q);
		onnx_free(c);
	}
	struct onnx_model *m = load(unit_data, "q8_matmul.onnx");
	json_t *j = json_loads("{\"op\":\"quantize\",\"scheme\":\"int4\",\"format\":"
			       "\"matmulnbits\",\"bias_correction\":true}",
			       0, NULL);
	struct quant_params p;
	json_t *mt = NULL;
	CHECK(m && j && quant_params_parse(j, 2, &p, &e) == NN_OK, "%s", e.message);
	CHECK(quant_run(m, &p, &ctx, &mt, &e) == NN_EINVAL &&
		      !strcmp(e.field, "steps[2].bias_correction"),
	      "matmulnbits + bias_correction: %s (%s)", e.message, e.field);
	json_decref(j);
	onnx_free(m);
	tensor_free(&x);
	return 0;
}

/* ---- threads (ctx->threads / quant_int4_quantize_threads) ---- */

static const unsigned thread_counts[] = {1, 2, 3, 7};

/* The kernel on 1, 2, 3 and 7 threads gives the same nibbles, scales, zero
 * points and error statistics (sums bit for bit) as quant_int4_quantize, into
 * a separate buffer and in place over the floats (the step's way), on random
 * layouts big enough to be split (>= 64K values) and small ones: ragged last
 * blocks, odd block sizes, odd row strides, 3-D weights, offsets 0 and 8,
 * symmetric and not. A NaN in any unit and a cancellation are reported on
 * every thread count. */
static int test_threads_kernel_identical(void)
{
	static const size_t shapes[][4] = {
		/* outer, len, inner, block */
		{1, 1000, 300, 32},  {1, 1003, 301, 16},  {1, 777, 129, 128}, {3, 301, 257, 64},
		{2, 130, 333, 24},   {2000, 77, 1, 32},   {1999, 129, 1, 16}, {700, 301, 1, 128},
		{4001, 33, 1, 8},    {1, 50, 20, 16},     {1, 5000, 16, 32},  {1, 20000, 17, 64},
		{3, 9999, 3, 16},    {64, 4096, 1, 32},
	};
	int cases = 0;
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
		for (int v = 0; v < 4; v++) {
			size_t outer = shapes[s][0], len = shapes[s][1], inner = shapes[s][2];
			size_t bs = shapes[s][3], nb = (len + bs - 1) / bs;
			bool sym = v % 2 == 0;
			unsigned offset = v == 2 ? 8 : 0;
			size_t n = outer * len * inner, ns = outer * nb * inner;
			/* inner 1 and v 3: rows padded to whole blocks plus one (odd starts) */
			size_t ostride = inner == 1 && v == 3 ? nb * bs + 1 : len * inner;
			size_t pbytes = (outer * ostride + 1) / 2 + 1;
			float *w = malloc(n * sizeof *w), *wi = malloc(n * sizeof *wi);
			uint8_t *pk0 = calloc(pbytes, 1), *zp0 = calloc(ns, 1);
			float *sc0 = malloc(ns * sizeof *sc0);
			CHECK(w && wi && pk0 && zp0 && sc0, "memory");
			fill_mixed(w, n, (int)((s + (size_t)v) % 5));
			struct quant_int4_stats st0 = {0, 0, INFINITY, 0};
			struct nn_err e = {0};
			CHECK(quant_int4_quantize(w, outer, len, inner, bs, sym, offset, ostride, pk0,
						  sc0, sym ? NULL : zp0, &st0, NULL, &e) == NN_OK,
			      "%s", e.message);
			for (size_t t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
				unsigned th = thread_counts[t];
				uint8_t *pk = calloc(pbytes, 1), *zp = calloc(ns, 1);
				float *sc = malloc(ns * sizeof *sc);
				CHECK(pk && zp && sc, "memory");
				struct quant_int4_stats st = {0, 0, INFINITY, 0};
				CHECK(quant_int4_quantize_threads(w, outer, len, inner, bs, sym, offset,
								  ostride, pk, sc, sym ? NULL : zp, &st,
								  th, NULL, &e) == NN_OK,
				      "%s", e.message);
				CHECK(!memcmp(pk, pk0, pbytes) && !memcmp(sc, sc0, ns * sizeof *sc) &&
					      !memcmp(zp, zp0, ns),
				      "shape %zu v %d, %u threads: bytes, scales or zero points differ",
				      s, v, th);
				CHECK(st.sq == st0.sq && st.maxerr == st0.maxerr &&
					      st.smin == st0.smin && st.smax == st0.smax,
				      "shape %zu v %d, %u threads: stats differ (sq %.17g vs %.17g)", s,
				      v, th, st.sq, st0.sq);
				/* in place: the nibbles over the floats, as the step writes them */
				if (ostride == len * inner) {
					memcpy(wi, w, n * sizeof *wi);
					struct quant_int4_stats si = {0, 0, INFINITY, 0};
					CHECK(quant_int4_quantize_threads(wi, outer, len, inner, bs, sym,
									  offset, ostride, (uint8_t *)wi,
									  sc, sym ? NULL : zp, &si, th,
									  NULL, &e) == NN_OK,
					      "%s", e.message);
					CHECK(!memcmp(wi, pk0, (n + 1) / 2) && si.sq == st0.sq &&
						      si.maxerr == st0.maxerr,
					      "shape %zu v %d, %u threads in place: differs", s, v, th);
				}
				/* a non-finite value in the last unit, and a cancellation */
				float keep = w[n - 1 - n / 7];
				w[n - 1 - n / 7] = v % 2 ? NAN : INFINITY;
				struct quant_int4_stats sb = {0, 0, INFINITY, 0};
				CHECK(quant_int4_quantize_threads(w, outer, len, inner, bs, sym, offset,
								  ostride, pk, sc, sym ? NULL : zp, &sb,
								  th, NULL, &e) == NN_EINVAL,
				      "shape %zu, %u threads: non-finite accepted", s, th);
				w[n - 1 - n / 7] = keep;
				atomic_bool cancel = true;
				struct step_ctx ctx = {.cancel = &cancel};
				CHECK(quant_int4_quantize_threads(w, outer, len, inner, bs, sym, offset,
								  ostride, pk, sc, sym ? NULL : zp, &sb,
								  th, &ctx, &e) == NN_ECANCELED,
				      "shape %zu, %u threads: cancel not seen", s, th);
				free(pk);
				free(zp);
				free(sc);
				cases++;
			}
			free(w);
			free(wi);
			free(pk0);
			free(zp0);
			free(sc0);
		}
	fprintf(stderr, "%d layouts x thread counts compared\n", cases);
	return 0;
}

struct membuf {
	uint8_t *p;
	size_t len, cap;
};

static enum nn_status mem_write(void *ud, const void *data, size_t len, struct nn_err *e)
{
	struct membuf *b = ud;
	if (b->len + len > b->cap) {
		size_t cap = (b->len + len) * 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p)
			return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory");
		b->p = p, b->cap = cap;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
	return NN_OK;
}

/* The int4 step on `threads` threads: the model's serialized bytes and its
 * metrics as JSON text without "seconds" (caller frees both). */
static int step_on_threads(const uint8_t *bytes, size_t len, const char *spec, unsigned threads,
			   struct membuf *out, char **metrics)
{
	struct onnx_model *m = NULL;
	struct nn_err e = {0};
	CHECK(onnx_load(bytes, len, &m, &e) == NN_OK, "%s", e.message);
	json_t *step = json_loads(spec, 0, NULL);
	struct quant_params p;
	CHECK(step && quant_params_parse(step, 0, &p, &e) == NN_OK, "%s: %s", spec, e.message);
	struct step_ctx ctx = {.threads = threads};
	json_t *mt = NULL;
	CHECK(quant_run(m, &p, &ctx, &mt, &e) == NN_OK, "%s on %u threads: %s", spec, threads,
	      e.message);
	json_object_del(mt, "seconds");
	*metrics = json_dumps(mt, JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
	*out = (struct membuf){0};
	CHECK(*metrics && onnx_save(m, mem_write, out, &e) == NN_OK, "save: %s", e.message);
	json_decref(mt);
	json_decref(step);
	onnx_free(m);
	return 0;
}

/* The int4 step with ctx->threads 1, 2, 3 and 7 writes the same model bytes
 * and the same metrics (squared-error sums to the last bit) on the fixtures
 * and on a model whose layers are split across threads: Gemm rewritten
 * with even N (transposed tiles, in place), Gemm with odd N, MatMul (column
 * path, in place), ragged last blocks; both formats, every block size,
 * symmetric and not. */
static int test_threads_step_identical(void)
{
	static const char *names[] = {"lenet300.onnx", "cnn.onnx", "gelu_mlp.onnx", NULL};
	/* in -> out: Gemm 700 -> 1000, Gemm 1000 -> 999, MatMul 999 -> 610, Gemm 610 -> 130 */
	struct synthmodel sm = {.n_layers = 4, .dims = {700, 1000, 999, 610, 130},
				.gemm = {true, true, false, true}};
	float *ws[4] = {0};
	for (size_t l = 0; l < 4; l++) {
		size_t cnt = (size_t)(sm.dims[l] * sm.dims[l + 1]);
		CHECK((ws[l] = malloc(cnt * sizeof(float))) != NULL, "memory");
		synthmodel_fill(ws[l], cnt, 1000 + l, 0.08f);
		sm.weights[l] = ws[l];
	}
	uint8_t *big = NULL;
	size_t big_len = 0;
	struct nn_err e = {0};
	CHECK(synthmodel_pack(&sm, &big, &big_len, &e) == NN_OK, "%s", e.message);
	int cases = 0;
	for (int mi = 0; mi < 4; mi++) {
		uint8_t *bytes = big;
		size_t len = big_len;
		char path[1024];
		uint8_t *fb = NULL;
		if (names[mi]) {
			snprintf(path, sizeof path, "%s/%s", fixtures, names[mi]);
			FILE *f = fopen(path, "rb");
			CHECK(f, "%s", path);
			fseek(f, 0, SEEK_END);
			len = (size_t)ftell(f);
			fseek(f, 0, SEEK_SET);
			CHECK((fb = malloc(len)) && fread(fb, 1, len, f) == len, "read %s", path);
			fclose(f);
			bytes = fb;
		}
		for (int v = 0; v < 8; v++) {
			char spec[200];
			snprintf(spec, sizeof spec,
				 "{\"op\":\"quantize\",\"scheme\":\"int4\",\"block_size\":%d,"
				 "\"symmetric\":%s,\"format\":\"%s\"}",
				 16 << (v % 4), v % 3 ? "true" : "false",
				 v < 4 ? "onnx" : "matmulnbits");
			struct membuf m1;
			char *j1 = NULL;
			if (step_on_threads(bytes, len, spec, 1, &m1, &j1))
				return 1;
			for (size_t t = 1; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
				struct membuf mt;
				char *jt = NULL;
				if (step_on_threads(bytes, len, spec, thread_counts[t], &mt, &jt))
					return 1;
				CHECK(mt.len == m1.len && !memcmp(mt.p, m1.p, m1.len),
				      "%s %s: model bytes differ on %u threads",
				      names[mi] ? names[mi] : "synthetic", spec, thread_counts[t]);
				CHECK(!strcmp(jt, j1), "%s %s: metrics differ on %u threads:\n%s\n%s",
				      names[mi] ? names[mi] : "synthetic", spec, thread_counts[t], jt,
				      j1);
				free(mt.p);
				free(jt);
				cases++;
			}
			free(m1.p);
			free(j1);
		}
		free(fb);
	}
	/* a canceled step on threads stops with NN_ECANCELED */
	struct onnx_model *m = NULL;
	CHECK(onnx_load(big, big_len, &m, &e) == NN_OK, "%s", e.message);
	struct quant_params p = {.scheme = QUANT_INT4, .symmetric = true, .block_size = 32,
				 .ops = QUANT_OP_GEMM | QUANT_OP_MATMUL,
				 .format = QUANT_FORMAT_ONNX};
	atomic_bool cancel = true;
	struct step_ctx ctx = {.cancel = &cancel, .threads = 2};
	json_t *mt = NULL;
	CHECK(quant_run(m, &p, &ctx, &mt, &e) == NN_ECANCELED, "cancel on 2 threads not seen");
	onnx_free(m);
	free(big);
	for (size_t l = 0; l < 4; l++)
		free(ws[l]);
	fprintf(stderr, "%d model x spec x thread-count runs compared with 1 thread\n", cases);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: test_quant_int4 CASE FIXTURES UNIT_DATA [NODE MODULES SCRIPT]\n");
		return 2;
	}
	fixtures = argv[2];
	unit_data = argv[3];
	const char *a4 = argc > 4 ? argv[4] : NULL, *a5 = argc > 5 ? argv[5] : NULL,
		   *a6 = argc > 6 ? argv[6] : NULL;
	if (!strcmp(argv[1], "pack_roundtrip"))
		return test_pack_roundtrip();
	if (!strcmp(argv[1], "isa_paths_agree"))
		return test_isa_paths_agree();
	if (!strcmp(argv[1], "transposed_gemm_matches_kernel"))
		return test_transposed_gemm_matches_kernel();
	if (!strcmp(argv[1], "model_onnx_layout"))
		return test_model_onnx_layout();
	if (!strcmp(argv[1], "model_matmulnbits_layout"))
		return test_model_matmulnbits_layout();
	if (!strcmp(argv[1], "python_reads_same_bytes"))
		return test_python_reads_same_bytes(a4);
	if (!strcmp(argv[1], "ort_matches_executor"))
		return test_ort_matches_executor(a4, a5, a6);
	if (!strcmp(argv[1], "bias_correction"))
		return test_bias_correction();
	if (!strcmp(argv[1], "threads_kernel_identical"))
		return test_threads_kernel_identical();
	if (!strcmp(argv[1], "threads_step_identical"))
		return test_threads_step_identical();
	if (!strcmp(argv[1], "lenet300_block32"))
		return test_lenet300_block32(a4, a5);
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
