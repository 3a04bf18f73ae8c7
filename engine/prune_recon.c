/* prune_recon: layer-wise OBS reconstruction after pruning (see prune_recon.h). */
#include "prune_recon.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "conv.h"
#include "eval.h"
#include "exec.h"
#include "onnx_graph.h"
#include "tensor.h"

/* LAPACK from OpenBLAS (no LAPACKE header on Debian's openblas-dev). The
 * trailing size_t is gfortran's hidden length of the character argument. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info,
		    size_t uplo_len);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info,
		    size_t uplo_len);

#define PROBE_BATCH 64
#define ROW_CHUNK 128   /* rows converted to double per dsyrk */
#define ERR_BLOCK 64    /* weight rows per dsymm when measuring errors */
#define DAMPING 0.01    /* lambda as a fraction of H's mean diagonal */
#define RECON_STR(x) #x
#define RECON_XSTR(x) RECON_STR(x)

enum layout {
	ROWS_NK, /* weight [N, K]: Gemm transB=1 */
	ROWS_KN, /* weight [K, N]: Gemm transB=0, MatMul */
	CONV,    /* weight [M, C/group, k...]: rows of C/group * prod(k) per output channel */
};

struct layer {
	enum layout layout;
	const char *input; /* the tensor the node multiplies with the weight */
	bool trans_a;      /* Gemm: the input is [K, M] */
	int64_t rows;      /* output features (N or M) */
	int64_t k;         /* reduction length per group */
	int64_t groups;
	/* Conv */
	struct conv_window win;
	enum conv_auto_pad auto_pad;
	int64_t c_in;
	double *h;         /* groups * k * k, owned */
	uint64_t samples_rows; /* rows of X accumulated (per group) */
};

static enum nn_status oom(struct nn_err *e)
{
	return err_set(e, NN_ENOMEM, "out_of_memory", "", "no memory for pruning reconstruction");
}

static const char *str_or(const char *s, const char *fallback)
{
	return s && *s ? s : fallback;
}

static bool attr_ints(const Onnx__NodeProto *n, const char *name, int64_t *out, size_t cap,
		      size_t *count)
{
	Onnx__AttributeProto *a = onnx_find_attr(n, name, NULL);
	if (!a)
		return false;
	*count = a->n_ints < cap ? a->n_ints : cap;
	for (size_t i = 0; i < *count; i++)
		out[i] = a->ints[i];
	return true;
}

/* Fills l from the node and the weight's dims; returns a reason string when
 * the layer cannot be reconstructed, NULL when it can. */
static const char *layer_geometry(const Onnx__GraphProto *g, const struct recon_weight *w,
				  struct layer *l)
{
	const Onnx__NodeProto *n = w->node;
	const Onnx__TensorProto *t = w->init;
	const char *op = n->op_type ? n->op_type : "";
	memset(l, 0, sizeof *l);
	l->groups = 1;
	if (n->n_input < 2 || !n->input[1] || strcmp(n->input[1], t->name))
		return "the weight is not the node's second input";
	if (onnx_count_readers(g, t->name) != 1)
		return "the weight is read by more than one node";
	l->input = n->input[0];
	if (!strcmp(op, "Gemm") || !strcmp(op, "MatMul")) {
		if (t->n_dims != 2)
			return "the weight is not 2-D";
		bool gemm = !strcmp(op, "Gemm");
		bool trans_b = gemm && onnx_node_int_attr(n, "transB", 0);
		l->trans_a = gemm && onnx_node_int_attr(n, "transA", 0);
		l->layout = trans_b ? ROWS_NK : ROWS_KN;
		l->rows = trans_b ? t->dims[0] : t->dims[1];
		l->k = trans_b ? t->dims[1] : t->dims[0];
	} else if (!strcmp(op, "Conv")) {
		if (t->n_dims != 3 && t->n_dims != 4)
			return "only 1-D and 2-D convolutions are reconstructed";
		l->layout = CONV;
		l->groups = onnx_node_int_attr(n, "group", 1);
		l->rows = t->dims[0];
		l->k = 1;
		for (size_t d = 1; d < t->n_dims; d++)
			l->k *= t->dims[d];
		if (l->groups < 1 || l->rows % l->groups)
			return "invalid group";
		l->c_in = t->dims[1] * l->groups;
		struct conv_window *win = &l->win;
		win->nspatial = (int)t->n_dims - 2;
		for (int d = 0; d < win->nspatial; d++) {
			win->kernel[d] = t->dims[2 + d];
			win->strides[d] = win->dilations[d] = 1;
		}
		size_t cnt;
		attr_ints(n, "strides", win->strides, (size_t)win->nspatial, &cnt);
		attr_ints(n, "dilations", win->dilations, (size_t)win->nspatial, &cnt);
		attr_ints(n, "pads", win->pads, 2 * (size_t)win->nspatial, &cnt);
		Onnx__AttributeProto *ap = onnx_find_attr(n, "auto_pad", NULL);
		l->auto_pad = CONV_PAD_NOTSET;
		if (ap && ap->s.len) {
			static const char *const names[] = {"NOTSET", "VALID", "SAME_UPPER",
							    "SAME_LOWER"};
			bool known = false;
			for (int i = 0; i < 4; i++)
				if (ap->s.len == strlen(names[i]) &&
				    !memcmp(ap->s.data, names[i], ap->s.len)) {
					l->auto_pad = (enum conv_auto_pad)i;
					known = true;
				}
			if (!known)
				return "unknown auto_pad";
		}
	} else {
		return "not a Gemm, MatMul or Conv";
	}
	if (l->rows < 1 || l->k < 1)
		return "empty weight";
	if (l->k > RECON_MAX_K)
		return "reduction length above " RECON_XSTR(RECON_MAX_K) " (H would not fit in memory)";
	return NULL;
}

/* H += X^T X for `count` rows of X [count, k] (float, row stride k). */
static void add_rows(double *h, int64_t k, const float *x, int64_t count, double *buf)
{
	for (int64_t at = 0; at < count; at += ROW_CHUNK) {
		int64_t r = count - at < ROW_CHUNK ? count - at : ROW_CHUNK;
		for (int64_t i = 0; i < r * k; i++)
			buf[i] = x[at * k + i];
		cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)k, (int)r, 1.0, buf, (int)k,
			    1.0, h, (int)k);
	}
}

/* H += A A^T for A [k, m] (Gemm with transA: the samples are A's columns). */
static void add_columns(double *h, int64_t k, const float *a, int64_t m, double *buf)
{
	for (int64_t at = 0; at < m; at += ROW_CHUNK) {
		int64_t c = m - at < ROW_CHUNK ? m - at : ROW_CHUNK;
		for (int64_t i = 0; i < k; i++)
			for (int64_t j = 0; j < c; j++)
				buf[j * k + i] = a[i * m + at + j];
		cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)k, (int)c, 1.0, buf, (int)k,
			    1.0, h, (int)k);
	}
}

/* Conv: the im2col patch of every output position of every image, per
 * group, in the weight's (c, k...) order. x is [n, C, spatial...]. */
static void add_patches(struct layer *l, const float *x, int64_t n, double *buf)
{
	const struct conv_window *w = &l->win;
	int64_t ih = w->nspatial == 2 ? w->in[0] : 1, iw = w->in[w->nspatial - 1];
	int64_t oh = w->nspatial == 2 ? w->out[0] : 1, ow = w->out[w->nspatial - 1];
	int64_t kh = w->nspatial == 2 ? w->kernel[0] : 1, kw = w->kernel[w->nspatial - 1];
	int64_t sh = w->nspatial == 2 ? w->strides[0] : 1, sw = w->strides[w->nspatial - 1];
	int64_t dh = w->nspatial == 2 ? w->dilations[0] : 1, dw = w->dilations[w->nspatial - 1];
	int64_t pt = w->nspatial == 2 ? w->pads[0] : 0, pl = w->pads[w->nspatial - 1];
	int64_t cg = l->c_in / l->groups, k = l->k, positions = oh * ow;
	for (int64_t img = 0; img < n; img++) {
		for (int64_t g = 0; g < l->groups; g++) {
			const float *xg = x + (img * l->c_in + g * cg) * ih * iw;
			double *h = l->h + g * k * k;
			for (int64_t at = 0; at < positions; at += ROW_CHUNK) {
				int64_t r = positions - at < ROW_CHUNK ? positions - at : ROW_CHUNK;
				for (int64_t q = 0; q < r; q++) {
					int64_t oy = (at + q) / ow, ox = (at + q) % ow;
					double *row = buf + q * k;
					for (int64_t c = 0; c < cg; c++)
						for (int64_t i = 0; i < kh; i++) {
							int64_t y = oy * sh - pt + i * dh;
							for (int64_t j = 0; j < kw; j++) {
								int64_t xx = ox * sw - pl + j * dw;
								bool in = y >= 0 && y < ih && xx >= 0 &&
									  xx < iw;
								row[(c * kh + i) * kw + j] =
									in ? xg[(c * ih + y) * iw + xx]
									   : 0.0;
							}
						}
				}
				cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)k, (int)r,
					    1.0, buf, (int)k, 1.0, h, (int)k);
			}
		}
	}
	l->samples_rows += (uint64_t)(n * positions);
}

/* Accumulates one batch of the layer's input into H. */
static enum nn_status accumulate(struct layer *l, const struct tensor *t, double *buf,
				 struct nn_err *e)
{
	if (t->dtype != DT_FLOAT)
		return err_set(e, NN_EUNSUPPORTED, "unsupported_model", "",
			       "input '%s' is not float32", l->input);
	int64_t numel = tensor_numel(t);
	if (l->layout == CONV) {
		struct conv_window *w = &l->win;
		if (t->ndim != w->nspatial + 2 || t->shape[1] != l->c_in)
			return err_set(e, NN_EINVAL, "invalid_model", "",
				       "input '%s' does not have the convolution's shape", l->input);
		for (int d = 0; d < w->nspatial; d++)
			w->in[d] = t->shape[2 + d];
		if (l->auto_pad != CONV_PAD_NOTSET)
			memset(w->pads, 0, sizeof w->pads);
		enum nn_status st = conv_window_resolve(w, l->auto_pad, false, e);
		if (st != NN_OK)
			return st;
		add_patches(l, t->data, t->shape[0], buf);
		return NN_OK;
	}
	if (l->trans_a) {
		if (t->ndim != 2 || t->shape[0] != l->k)
			return err_set(e, NN_EINVAL, "invalid_model", "",
				       "input '%s' does not match the weight", l->input);
		add_columns(l->h, l->k, t->data, t->shape[1], buf);
		l->samples_rows += (uint64_t)t->shape[1];
		return NN_OK;
	}
	if (t->ndim < 1 || t->shape[t->ndim - 1] != l->k)
		return err_set(e, NN_EINVAL, "invalid_model", "",
			       "input '%s' does not match the weight", l->input);
	add_rows(l->h, l->k, t->data, numel / l->k, buf);
	l->samples_rows += (uint64_t)(numel / l->k);
	return NN_OK;
}

/* Runs m over the calibration rows, feeding the layer's input tensor to
 * accumulate() batch by batch: the tensor is exposed as an extra graph
 * output for the duration of the call. */
static enum nn_status probe(struct onnx_model *m, struct layer *l, const struct tensor *x,
			    int64_t samples, double *buf, const struct step_ctx *ctx,
			    struct nn_err *e)
{
	Onnx__GraphProto *g = m->proto->graph;
	int64_t per = x->shape[0] > 0 ? tensor_numel(x) / x->shape[0] : 0;
	if (onnx_is_graph_input(g, l->input)) {
		struct tensor t = *x;
		t.shape[0] = samples;
		t.owned = false;
		return accumulate(l, &t, buf, e);
	}
	enum nn_status st = onnx_add_graph_output(g, l->input, e);
	if (st != NN_OK)
		return st;
	struct exec_plan *plan = NULL;
	struct tensor *outs = NULL;
	size_t at_out = 0;
	int64_t b = 0;
	for (int64_t at = 0; at < samples; at += b) {
		int64_t want = samples - at < PROBE_BATCH ? samples - at : PROBE_BATCH;
		if (want != b) {
			exec_free(plan);
			plan = NULL;
			b = want;
			if ((st = exec_compile_threads(m, b, ctx ? ctx->threads : 1, &plan, e)) != NN_OK)
				goto fail;
			size_t no = exec_output_count(plan);
			free(outs);
			if (!(outs = calloc(no, sizeof *outs))) {
				st = oom(e);
				goto fail;
			}
			at_out = no - 1; /* the output appended last */
			const struct tensor *spec = exec_input_spec(plan, 0);
			if (exec_input_count(plan) != 1 || tensor_numel(spec) != b * per) {
				st = err_set(e, NN_EINVAL, "invalid_spec", "",
					     "reconstruction: calibration samples do not fit the "
					     "model's input");
				goto fail;
			}
		}
		if (step_canceled(ctx)) {
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled in reconstruction");
			goto fail;
		}
		const struct tensor *spec = exec_input_spec(plan, 0);
		struct tensor in;
		tensor_view(&in, DT_FLOAT, spec->ndim, spec->shape, (float *)x->data + at * per);
		if ((st = exec_run(plan, &in, 1, outs, exec_output_count(plan), e)) != NN_OK ||
		    (st = accumulate(l, &outs[at_out], buf, e)) != NN_OK)
			goto fail;
	}
fail:
	exec_free(plan);
	free(outs);
	g->n_output--;
	onnx__value_info_proto__free_unpacked(g->output[g->n_output], NULL);
	return st;
}

/* U, the upper Cholesky factor of (H + lambda I)^-1 (row-major, upper
 * triangle), from a copy of H; columns no sample touched get 1 on the
 * diagonal so they stay decoupled. lambda grows tenfold while H + lambda I is
 * not numerically positive definite. */
static enum nn_status inverse_factor(const double *h, int64_t k, double *u, double *lambda_out,
				     struct nn_err *e)
{
	double mean = 0;
	for (int64_t i = 0; i < k; i++)
		mean += h[i * k + i];
	mean /= (double)k;
	if (!(mean > 0))
		mean = 1;
	int n = (int)k, info = 0;
	for (double lambda = DAMPING * mean; lambda < 1e6 * mean; lambda *= 10) {
		memcpy(u, h, (size_t)(k * k) * sizeof *u);
		for (int64_t i = 0; i < k; i++)
			u[i * k + i] = h[i * k + i] > 0 ? h[i * k + i] + lambda : 1.0;
		/* Column-major lower = our row-major upper. */
		dpotrf_("L", &n, u, &n, &info, 1);
		if (info == 0)
			dpotri_("L", &n, u, &n, &info, 1);
		if (info == 0)
			dpotrf_("L", &n, u, &n, &info, 1);
		if (info == 0) {
			*lambda_out = lambda / mean;
			return NN_OK;
		}
	}
	return err_set(e, NN_EINTERNAL, "internal", "",
		       "reconstruction: the input covariance is not positive definite");
}

/* The OBS update of one row with the mask fixed (keep[j] false: pruned). */
static void update_row(double *w, const bool *keep, const double *u, int64_t k)
{
	for (int64_t j = 0; j < k; j++) {
		if (keep[j] || w[j] == 0)
			continue;
		const double *uj = u + j * k;
		double err = w[j] / uj[j];
		for (int64_t t = j + 1; t < k; t++)
			w[t] -= err * uj[t];
		w[j] = 0;
	}
}

/* q[i] = d_i^T H d_i for each row i of the block (H symmetric, upper set). */
static void quad_rows(const double *h, int64_t k, const double *d, int64_t rows, double *tmp,
		      double *q)
{
	cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, (int)rows, (int)k, 1.0, h, (int)k, d,
		    (int)k, 0.0, tmp, (int)k);
	for (int64_t i = 0; i < rows; i++) {
		double s = 0;
		for (int64_t t = 0; t < k; t++)
			s += d[i * k + t] * tmp[i * k + t];
		q[i] = s;
	}
}

struct row_access {
	float *w;
	int64_t rows, k, stride_row, stride_col;
};

/* Error sums of one layer: [0] ||X W^T||^2, [1] of the mask alone, [2] after. */
struct recon_sums {
	double base, masked, after;
	uint64_t reverted; /* rows the OBS steps left worse than the mask alone */
};

/* Reconstructs the rows of one group. The sequential OBS steps are not
 * guaranteed to beat the mask alone on the undamped error (each step is
 * optimal only for the damped H and the columns after it), so a row whose
 * error would grow keeps its masked original weights instead. */
static enum nn_status solve_group(const struct row_access *ra, int64_t first, int64_t count,
				  const double *h, const float *orig, double *u, double *lambda,
				  struct recon_sums *sums, const struct step_ctx *ctx,
				  struct nn_err *e)
{
	int64_t k = ra->k;
	enum nn_status st = inverse_factor(h, k, u, lambda, e);
	if (st != NN_OK)
		return st;
	size_t blk = (size_t)(ERR_BLOCK * k);
	double *wo = malloc(blk * sizeof *wo), *dp = malloc(blk * sizeof *dp);
	double *da = malloc(blk * sizeof *da), *tmp = malloc(blk * sizeof *tmp);
	bool *keep = malloc(blk * sizeof *keep);
	double q[3][ERR_BLOCK];
	if (!wo || !dp || !da || !tmp || !keep) {
		st = oom(e);
		goto fail;
	}
	for (int64_t at = 0; at < count; at += ERR_BLOCK) {
		int64_t r = count - at < ERR_BLOCK ? count - at : ERR_BLOCK;
		for (int64_t i = 0; i < r; i++) {
			int64_t row = first + at + i;
			double *o = wo + i * k, *p = dp + i * k, *a = da + i * k;
			bool *kp = keep + i * k;
			for (int64_t t = 0; t < k; t++) {
				size_t idx = (size_t)(row * ra->stride_row + t * ra->stride_col);
				kp[t] = ra->w[idx] != 0;
				o[t] = orig[idx];
				p[t] = kp[t] ? 0 : -o[t];
				a[t] = o[t];
			}
			update_row(a, kp, u, k);
			for (int64_t t = 0; t < k; t++)
				a[t] = kp[t] ? (double)(float)a[t] - o[t] : -o[t];
		}
		quad_rows(h, k, wo, r, tmp, q[0]);
		quad_rows(h, k, dp, r, tmp, q[1]);
		quad_rows(h, k, da, r, tmp, q[2]);
		for (int64_t i = 0; i < r; i++) {
			bool revert = q[2][i] > q[1][i];
			sums->base += q[0][i];
			sums->masked += q[1][i];
			sums->after += revert ? q[1][i] : q[2][i];
			sums->reverted += revert;
			if (revert)
				continue;
			int64_t row = first + at + i;
			for (int64_t t = 0; t < k; t++) {
				size_t idx = (size_t)(row * ra->stride_row + t * ra->stride_col);
				ra->w[idx] = keep[i * k + t] ? (float)(wo[i * k + t] + da[i * k + t])
							     : 0.0f;
			}
		}
		if (step_canceled(ctx)) {
			st = err_set(e, NN_ECANCELED, "canceled", "", "canceled in reconstruction");
			goto fail;
		}
	}
fail:
	free(wo);
	free(dp);
	free(da);
	free(tmp);
	free(keep);
	return st;
}

/* Measures H and rewrites one weight. */
static enum nn_status reconstruct_layer(struct onnx_model *m, const struct recon_weight *rw,
					struct layer *l, const struct tensor *x, int64_t samples,
					const struct step_ctx *ctx, json_t *lj, struct nn_err *e)
{
	enum nn_status st = NN_OK;
	struct tensor view = {0};
	double *buf = NULL, *u = NULL;
	int64_t k = l->k;
	size_t hsize = (size_t)(l->groups * k * k);
	l->h = calloc(hsize, sizeof *l->h);
	buf = malloc((size_t)(ROW_CHUNK * k) * sizeof *buf);
	u = malloc((size_t)(k * k) * sizeof *u);
	if (!l->h || !buf || !u) {
		st = oom(e);
		goto fail;
	}
	if ((st = probe(m, l, x, samples, buf, ctx, e)) != NN_OK)
		goto fail;
	if ((st = onnx_initializer_view(rw->init, &view, e)) != NN_OK)
		goto fail;
	struct row_access ra = {view.data, l->rows, k, k, 1};
	if (l->layout == ROWS_KN) {
		ra.stride_row = 1;
		ra.stride_col = l->rows;
	}
	struct recon_sums sums = {0};
	double lambda = 0;
	int64_t per_group = l->rows / l->groups;
	for (int64_t g = 0; g < l->groups; g++)
		if ((st = solve_group(&ra, g * per_group, per_group, l->h + (size_t)(g * k * k),
				      rw->original, u, &lambda, &sums, ctx, e)) != NN_OK)
			goto fail;
	if (view.owned && (st = onnx_initializer_set(rw->init, &view, e)) != NN_OK)
		goto fail;
	int bad = 0;
	bad |= step_json_set(lj, "status", json_string("reconstructed"));
	bad |= step_json_set(lj, "rows", json_integer((json_int_t)l->rows));
	bad |= step_json_set(lj, "inputs", json_integer((json_int_t)k));
	bad |= step_json_set(lj, "output_error_pruned",
			     step_json_real(sums.base > 0 ? sums.masked / sums.base : 0));
	bad |= step_json_set(lj, "output_error",
			     step_json_real(sums.base > 0 ? sums.after / sums.base : 0));
	bad |= step_json_set(lj, "rows_kept_masked", json_integer((json_int_t)sums.reverted));
	bad |= step_json_set(lj, "damping", step_json_real(lambda));
	if (bad)
		st = oom(e);
fail:
	tensor_free(&view);
	free(l->h);
	l->h = NULL;
	free(buf);
	free(u);
	return st;
}

enum nn_status recon_run(struct onnx_model *m, const struct recon_weight *w, size_t n,
			 const struct step_ctx *ctx, json_t **out, struct nn_err *e)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	*out = NULL;
	const struct eval_data *cal = ctx ? ctx->calib : NULL;
	if (!cal || !cal->inputs || cal->inputs->ndim < 1 || cal->inputs->shape[0] < 1)
		return err_set(e, NN_EINVAL, "invalid_spec", "",
			       "reconstruction needs calibration data: name a dataset (the step's "
			       "\"dataset\" or the spec's top-level one)");
	const struct tensor *x = cal->inputs;
	int64_t samples = x->shape[0] < RECON_MAX_SAMPLES ? x->shape[0] : RECON_MAX_SAMPLES;
	json_t *o = json_object(), *layers = json_array();
	enum nn_status st = NN_OK;
	if (!o || !layers) {
		st = oom(e);
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		struct layer l;
		json_t *lj = json_object();
		if (!lj || json_array_append_new(layers, lj)) {
			st = oom(e);
			goto fail;
		}
		int bad = 0;
		bad |= step_json_set(lj, "name", json_string(str_or(w[i].init->name, "")));
		bad |= step_json_set(lj, "node", json_string(str_or(w[i].node->name, "")));
		bad |= step_json_set(lj, "op", json_string(str_or(w[i].node->op_type, "")));
		const char *why = layer_geometry(m->proto->graph, &w[i], &l);
		if (why) {
			bad |= step_json_set(lj, "status", json_string("skipped"));
			bad |= step_json_set(lj, "reason", json_string(why));
		}
		if (bad) {
			st = oom(e);
			goto fail;
		}
		if (!why &&
		    (st = reconstruct_layer(m, &w[i], &l, x, samples, ctx, lj, e)) != NN_OK) {
			err_prefix(e, "reconstructing '%s'", str_or(w[i].init->name, "?"));
			goto fail;
		}
		step_progress(ctx, (double)(i + 1) / (double)n);
	}
	int bad = 0;
	bad |= step_json_set(o, "method", json_string("obs"));
	bad |= step_json_set(o, "samples", json_integer((json_int_t)samples));
	bad |= step_json_set(o, "damping", json_real(DAMPING));
	bad |= step_json_set(o, "layers", layers);
	layers = NULL;
	bad |= step_json_set(o, "seconds", json_real(step_seconds_since(&t0)));
	if (bad) {
		st = oom(e);
		goto fail;
	}
	*out = o;
	o = NULL;
fail:
	json_decref(layers);
	json_decref(o);
	return st;
}
