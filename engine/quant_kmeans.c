/* quant_kmeans: k-means weight sharing (see quant_kmeans.h). */
#include "quant_kmeans.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant_float.h"

/* Index of the centroid nearest to x among sorted c[0..k): the first whose
 * upper midpoint is >= x (ties go to the lower centroid). */
static inline int nearest(const float *mid, int k, float x)
{
	int lo = 0, hi = k - 1;
	while (lo < hi) {
		int m = (lo + hi) / 2;
		if (x <= mid[m])
			hi = m;
		else
			lo = m + 1;
	}
	return lo;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

enum nn_status quant_kmeans_cluster(const float *w, size_t n, int bits, float *codebook,
				    uint8_t *idx, struct quant_kmeans_stats *stats,
				    const struct step_ctx *ctx, struct nn_err *e)
{
	memset(stats, 0, sizeof *stats);
	if (bits < 1 || bits > 8)
		return err_set(e, NN_EINVAL, "invalid_spec", "bits", "bits must be in [1, 8]");
	int K = 1 << bits;
	float lo = INFINITY, hi = -INFINITY;
	size_t zeros = 0;
	for (size_t i = 0; i < n; i++) {
		float x = w[i];
		if (!isfinite(x))
			return err_set(e, NN_EINVAL, "invalid_model", "",
				       "weight holds a NaN or infinite value");
		if (x == 0.0f) {
			zeros++;
			continue;
		}
		lo = x < lo ? x : lo;
		hi = x > hi ? x : hi;
	}
	stats->zeros = zeros;
	stats->zero_centroid = zeros > 0;
	int base = zeros > 0; /* codebook[0] = 0 when there are zeros */
	int k = K - base;     /* free centroids */
	for (int j = 0; j < K; j++)
		codebook[j] = 0.0f;
	if (zeros == n) { /* nothing but zeros (or empty) */
		memset(idx, 0, n);
		stats->converged = true;
		return NN_OK;
	}
	float *c = codebook + base;
	float mid[256];
	double sum[256];
	size_t cnt[256];
	for (int j = 0; j < k; j++) /* linear over [lo, hi] (Deep Compression) */
		c[j] = k == 1 ? lo + (hi - lo) * 0.5f
			      : (float)((double)lo + ((double)hi - (double)lo) * j / (k - 1));
	size_t since = 0;
	bool moved = true;
	int it = 0;
	while (moved && it < QUANT_KMEANS_MAX_ITERS) {
		for (int j = 0; j + 1 < k; j++)
			mid[j] = (float)(((double)c[j] + (double)c[j + 1]) * 0.5);
		memset(sum, 0, sizeof sum);
		memset(cnt, 0, sizeof cnt);
		for (size_t i = 0; i < n; i++) {
			if (w[i] == 0.0f && base)
				continue;
			int j = nearest(mid, k, w[i]);
			sum[j] += w[i];
			cnt[j]++;
		}
		moved = false;
		for (int j = 0; j < k; j++) {
			if (!cnt[j])
				continue; /* an empty cluster keeps its centroid */
			float v = (float)(sum[j] / (double)cnt[j]);
			moved |= v != c[j];
			c[j] = v;
		}
		qsort(c, (size_t)k, sizeof *c, cmp_float);
		it++;
		since += n;
		if (since >= STEP_POLL_ELEMS) {
			since = 0;
			if (step_canceled(ctx))
				return err_set(e, NN_ECANCELED, "canceled", "",
					       "canceled while clustering");
		}
	}
	stats->iterations = it;
	stats->converged = !moved;
	/* Final assignment with the final centroids (the same as the last
	 * iteration's when converged). */
	for (int j = 0; j + 1 < k; j++)
		mid[j] = (float)(((double)c[j] + (double)c[j + 1]) * 0.5);
	double sq = 0, mx = 0;
	for (size_t i = 0; i < n; i++) {
		if (w[i] == 0.0f && base) {
			idx[i] = 0;
			continue;
		}
		int j = nearest(mid, k, w[i]);
		idx[i] = (uint8_t)(j + base);
		double d = fabs((double)c[j] - (double)w[i]);
		sq += d * d;
		mx = d > mx ? d : mx;
	}
	stats->mse = n ? sq / (double)n : 0.0;
	stats->max_abs_error = mx;
	return NN_OK;
}

static json_t *shape_json(const struct tensor *t)
{
	json_t *a = json_array();
	for (int d = 0; a && d < t->ndim; d++) {
		if (json_array_append_new(a, json_integer(t->shape[d]))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static enum nn_status share_one(struct onnx_model *m, const struct quant_wref *r, int bits,
				const struct step_ctx *ctx, json_t *layers, uint64_t *params,
				struct nn_err *e)
{
	enum nn_status st;
	struct tensor w = {0}, q = {0}, cb = {0};
	char *iname = NULL, *cname = NULL, *i32name = NULL, *castname = NULL, *gname = NULL;
	json_t *shape = NULL;
	Onnx__TensorProto *init = onnx_find_initializer(m, r->name);
	if (!init)
		return err_set(e, NN_EINTERNAL, "internal", "", "weight '%s' vanished", r->name);
	if ((st = onnx_initializer_view(init, &w, e)) != NN_OK) {
		err_prefix(e, "weight '%s'", r->name);
		return st;
	}
	int64_t n = tensor_numel(&w);
	int64_t K = (int64_t)1 << bits;
	if (n < 0) {
		st = err_set(e, NN_EINVAL, "invalid_model", "", "weight '%s' has an invalid shape",
			     r->name);
		goto fail;
	}
	if ((st = tensor_alloc(&q, DT_UINT8, w.ndim, w.shape, e)) != NN_OK ||
	    (st = tensor_alloc(&cb, DT_FLOAT, 1, &K, e)) != NN_OK)
		goto fail;
	struct quant_kmeans_stats ks;
	if ((st = quant_kmeans_cluster(w.data, (size_t)n, bits, cb.data, q.data, &ks, ctx, e)) !=
	    NN_OK) {
		err_prefix(e, "weight '%s'", r->name);
		goto fail;
	}
	iname = quant_float_name(m, r->name, "_indices");
	cname = quant_float_name(m, r->name, "_codebook");
	i32name = quant_float_name(m, r->name, "_indices_int32");
	castname = quant_float_name(m, r->name, "_indices_Cast");
	gname = quant_float_name(m, r->name, "_Gather");
	shape = shape_json(&w);
	if (!iname || !cname || !i32name || !castname || !gname || !shape) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for names");
		goto fail;
	}
	tensor_free(&w);
	if ((st = onnx_add_initializer_take(m, iname, &q, e)) != NN_OK ||
	    (st = onnx_add_initializer_take(m, cname, &cb, e)) != NN_OK)
		goto fail;
	/* Prepended in reverse: Cast ends up before the Gather that reads it. */
	const char *gins[2] = {cname, i32name}, *gouts[1] = {r->name};
	const char *cins[1] = {iname}, *couts[1] = {i32name};
	Onnx__NodeProto *gather = NULL, *cast = NULL;
	if ((st = onnx_prepend_node(m, "Gather", gname, gins, 2, gouts, 1, &gather, e)) != NN_OK ||
	    (st = onnx_node_set_int_attr(gather, "axis", 0, e)) != NN_OK ||
	    (st = onnx_prepend_node(m, "Cast", castname, cins, 1, couts, 1, &cast, e)) != NN_OK ||
	    (st = onnx_node_set_int_attr(cast, "to", DT_INT32, e)) != NN_OK)
		goto fail;
	onnx_remove_initializer(m, r->name);
	*params += (uint64_t)n;
	size_t packed = ((size_t)n * (size_t)bits + 7) / 8 + (size_t)K * 4;
	json_t *l = json_object();
	int bad = !l || json_array_append_new(layers, l);
	if (!bad) {
		bad |= step_json_set(l, "name", json_string(r->name));
		bad |= step_json_set(l, "op", json_string(r->op));
		bad |= step_json_set(l, "node", json_string(r->node));
		bad |= step_json_set(l, "shape", shape);
		shape = NULL;
		bad |= step_json_set(l, "scheme", json_string("kmeans"));
		bad |= step_json_set(l, "dtype", json_string("uint8"));
		bad |= step_json_set(l, "bits", json_integer(bits));
		/* a codebook, not a scale */
		bad |= step_json_set(l, "scale_min", json_null());
		bad |= step_json_set(l, "scale_max", json_null());
		bad |= step_json_set(l, "centroids", json_integer((json_int_t)K));
		bad |= step_json_set(l, "zero_centroid", json_boolean(ks.zero_centroid));
		bad |= step_json_set(l, "zeros", json_integer((json_int_t)ks.zeros));
		bad |= step_json_set(l, "iterations", json_integer(ks.iterations));
		bad |= step_json_set(l, "converged", json_boolean(ks.converged));
		bad |= step_json_set(l, "mse", step_json_real(ks.mse));
		bad |= step_json_set(l, "max_abs_error", step_json_real(ks.max_abs_error));
		bad |= step_json_set(l, "bytes", json_integer((json_int_t)n + K * 4));
		bad |= step_json_set(l, "packed_bytes", json_integer((json_int_t)packed));
	}
	if (bad)
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for quantize metrics");
fail:
	json_decref(shape);
	tensor_free(&w);
	tensor_free(&q);
	tensor_free(&cb);
	free(iname);
	free(cname);
	free(i32name);
	free(castname);
	free(gname);
	return st;
}

enum nn_status quant_kmeans_run(struct onnx_model *m, const struct quant_params *p,
				const struct step_ctx *ctx, json_t **metrics, struct nn_err *e)
{
	enum nn_status st;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct quant_wref *ws = NULL;
	size_t nw = 0;
	json_t *out = NULL, *layers = NULL, *kept = json_array();
	*metrics = NULL;
	if (!kept)
		return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for metrics");
	if (p->bits < 2 || p->bits > 8) {
		st = err_set(e, NN_EINVAL, "invalid_spec", "bits", "bits must be in [2, 8]");
		goto fail;
	}
	size_t bytes_before = onnx_packed_size(m);
	if ((st = quant_wrefs_new(m, p, kept, &ws, &nw, e)) != NN_OK)
		goto fail;
	layers = json_array();
	if (!layers) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for metrics");
		goto fail;
	}
	uint64_t params = 0;
	for (size_t i = 0; i < nw; i++) {
		if (step_canceled(ctx)) {
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled while quantizing");
			goto fail;
		}
		if ((st = share_one(m, &ws[i], p->bits, ctx, layers, &params, e)) != NN_OK)
			goto fail;
		step_progress(ctx, (double)(i + 1) / (double)nw);
	}
	out = json_object();
	int bad = !out;
	bad |= step_json_set(out, "scheme", json_string("kmeans"));
	bad |= step_json_set(out, "bits", json_integer(p->bits));
	bad |= step_json_set(out, "parameters", json_integer((json_int_t)params));
	bad |= step_json_set(out, "bytes_before", json_integer((json_int_t)bytes_before));
	bad |= step_json_set(out, "bytes_after", json_integer((json_int_t)onnx_packed_size(m)));
	bad |= step_json_set(out, "opset", json_integer((json_int_t)onnx_opset(m)));
	bad |= step_json_set(out, "layers", layers);
	layers = NULL;
	bad |= step_json_set(out, "kept_float", kept);
	kept = NULL;
	bad |= step_json_set(out, "seconds", json_real(step_seconds_since(&t0)));
	if (bad) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for quantize metrics");
		goto fail;
	}
	*metrics = out;
	out = NULL;
fail:
	json_decref(out);
	json_decref(layers);
	json_decref(kept);
	quant_wrefs_free(ws, nw);
	return st;
}
