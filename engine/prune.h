/* prune: magnitude and N:M pruning of a model's Gemm/MatMul/Conv weights.
 *
 * Owns the `prune` pipeline step: which weights are prunable comes from
 * onnx_prunable_weights (the graph, never names); the threshold is found by an
 * exact linear-time selection, never a sort: on 2^22 elements or more a
 * bracket from a fixed-seed sample, one counting pass and a radix selection
 * among the candidates, checked, with the two-pass radix histogram on the
 * IEEE bits of |w| as fallback and for smaller inputs (see
 * docs/internals/prune.md); then exactly k = round(sparsity * n) weights end
 * up zero: those with |w| < t plus, in weight-list then element order, enough
 * of the ties |w| == t. Weights that are already zero count as pruned.
 * Per-layer overrides ("layers") prune a weight to its own fraction;
 * keep_first_last leaves the first and last prunable weight (graph order)
 * dense, the global threshold then being chosen over the others.
 *
 * N:M (prune_nm): in every group of m consecutive weights along a weight's
 * input (reduction) dimension, the n largest |w| stay; one pass, the only
 * ordering work inside each m-element group (docs/internals/prune.md).
 *
 * Kernels work on caller-owned float arrays and allocate only scratch (the
 * histograms, the sample and the candidates: at most a few percent of the
 * input). Nothing here is shared between calls: distinct models may be
 * pruned on distinct threads; one model must not be touched by two threads. */
#ifndef NNCD_PRUNE_H
#define NNCD_PRUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"
#include "step.h"

enum prune_scope {
	PRUNE_SCOPE_GLOBAL, /* one threshold over all prunable weights */
	PRUNE_SCOPE_LAYER,  /* each prunable weight gets the target sparsity */
};

enum prune_method {
	PRUNE_MAGNITUDE,  /* zero the smallest |w| (unstructured) */
	PRUNE_NM,         /* N:M semi-structured along each weight's input dimension */
	PRUNE_STRUCTURED, /* remove whole neurons / output channels (structured.h) */
	PRUNE_DEAD,       /* remove neurons dead on calibration data (dead.h) */
};

enum prune_criterion {
	PRUNE_L1,
	PRUNE_L2,
};

/* A prune step's parameters. Only the fields of `method` are meaningful;
 * the parser refuses keys that belong to another method. */
struct prune_params {
	enum prune_method method;
	/* magnitude */
	enum prune_scope scope;
	double sparsity;           /* [0, 1) */
	const json_t *layers;      /* {"<initializer name>": sparsity or ratio}: per-layer
				    * overrides (magnitude, structured), borrowed from the
				    * spec, NULL when absent */
	bool reconstruct;          /* magnitude, nm: re-fit the kept weights of each layer on
				    * calibration data (prune_recon.h) */
	bool keep_first_last;      /* magnitude, nm, structured: leave the first and the
				    * last prunable layer (graph order) untouched */
	/* nm */
	int n, m;                  /* at most n non-zeros in each group of m (2:4) */
	/* structured */
	double ratio;              /* (0, 1): fraction of neurons/channels removed */
	enum prune_criterion criterion;
	/* dead */
	double threshold;          /* a channel is dead if |activation| <= threshold on
				    * every calibration sample (default exactly 0) */
	bool has_dataset;          /* dead, reconstruct: the step names its own "dataset" (the pipeline
				    * resolves it into ctx->calib) */
	size_t index;              /* the step's place in "steps", for error fields
				    * ("steps[2].layers.fc1.weight"); set by
				    * prune_params_parse, 0 in hand-built params */
};

/* Parses and checks one spec step object whose "op" is "prune", filling
 * defaults (method "magnitude", scope "global", n:m 2:4, criterion "l1",
 * threshold 0). `index` is the step's place in "steps", used for error
 * fields ("steps[0].sparsity"). NN_EINVAL with code "invalid_spec" on any
 * unknown key or bad value (a "layers" override naming no weight is caught
 * when the step runs, or at submit against the model summary). Shared by
 * spec_validate and pipeline_run so both reject the same specs the same
 * way. */
enum nn_status prune_params_parse(const json_t *step, size_t index, struct prune_params *out,
				  struct nn_err *e);

/* Result of a selection over |w|. */
struct prune_selection {
	float threshold;   /* t: the k-th smallest |w| (k counted from 1) */
	uint64_t below;    /* elements with |w| < t */
	uint64_t ties;     /* elements with |w| == t (bitwise, after clearing the sign) */
};

/* Exact k-th smallest |w| (k from 1) over the concatenation of n_arrays
 * arrays, in linear time (a sample and one counting pass on large inputs,
 * two histogram passes otherwise). NaN magnitudes order above +Inf. Returns NN_EINVAL if k is 0 or larger than the element count,
 * NN_ENOMEM if the histograms cannot be allocated; *out is set on NN_OK.
 * This is the kernel bench/ times. */
enum nn_status prune_kth_abs(const float *const *arrays, const size_t *lens, size_t n_arrays,
			     uint64_t k, float *out);

/* The same selection, polling ctx for cancellation every STEP_POLL_ELEMS
 * elements (NN_ECANCELED) and reporting the counts around t. */
enum nn_status prune_select(const float *const *arrays, const size_t *lens, size_t n_arrays,
			    uint64_t k, const struct step_ctx *ctx, struct prune_selection *sel,
			    struct nn_err *e);

/* The two selection methods prune_select chooses between, for tests and
 * benchmarks. prune_select_radix: the two-pass radix histogram, always
 * exact. prune_select_sampled: on inputs of at least 2^22 elements, a bracket
 * around t from a fixed-seed sample, one counting pass and the radix
 * selection over the candidates in the bracket; *hit false (sel untouched)
 * when the input is smaller or the bracket missed, in which case prune_select
 * falls back to the radix method. Both give identical selections. */
enum nn_status prune_select_radix(const float *const *arrays, const size_t *lens,
				  size_t n_arrays, uint64_t k, struct prune_selection *sel,
				  struct nn_err *e);
enum nn_status prune_select_sampled(const float *const *arrays, const size_t *lens,
				    size_t n_arrays, uint64_t k, struct prune_selection *sel,
				    bool *hit, struct nn_err *e);
/* The exact step of the sampled method with a given bracket of magnitudes
 * [|lo|, |hi|]: *hit false when the k-th smallest |w| lies outside it. */
enum nn_status prune_select_in_bracket(const float *const *arrays, const size_t *lens,
				       size_t n_arrays, uint64_t k, float lo, float hi,
				       struct prune_selection *sel, bool *hit, struct nn_err *e);

/* Zeroes every element with |w| < sel->threshold and then the first
 * k - sel->below elements with |w| == threshold, scanning arrays in order.
 * Requires sel->below <= k <= sel->below + sel->ties (what prune_select gives
 * for the same k). Polls ctx like prune_select. */
enum nn_status prune_zero(float *const *arrays, const size_t *lens, size_t n_arrays,
			  const struct prune_selection *sel, uint64_t k,
			  const struct step_ctx *ctx, struct nn_err *e);

/* Selection + zeroing: leaves exactly k zeros among the arrays' elements if
 * fewer were zero before (otherwise changes nothing). *threshold gets t (0
 * when k is 0). */
enum nn_status prune_arrays(float *const *arrays, const size_t *lens, size_t n_arrays, uint64_t k,
			    const struct step_ctx *ctx, float *threshold, struct nn_err *e);

/* Parameters (elements of every initializer) and non-zeros of a whole model.
 * A weight read by DequantizeLinear counts the elements that differ from
 * their zero point, so a pruned-then-quantized model keeps its sparsity. */
void prune_model_counts(const struct onnx_model *m, uint64_t *parameters, uint64_t *nonzeros);

/* N:M kernel. w is viewed as [outer, len, inner] (row-major); the groups are
 * m consecutive elements along the middle axis, for every outer and inner
 * index (inner == 1: consecutive in memory; inner > 1: down a column). In
 * each group the n largest |w| stay and the others become +0; ties keep the
 * lower index; NaN magnitudes order above +Inf. A tail group (len % m
 * elements r) keeps min(n, r): the group as a kernel sees it with zero
 * padding. nz_before / nz_after (may be NULL) get the non-zero counts. One
 * pass, no allocation; polls ctx every ~STEP_POLL_ELEMS elements
 * (NN_ECANCELED). NN_EINVAL unless 1 <= n < m <= 64 and outer * len * inner
 * fits in size_t. */
enum nn_status prune_nm(float *w, size_t outer, size_t len, size_t inner, int n, int m,
			const struct step_ctx *ctx, uint64_t *nz_before, uint64_t *nz_after,
			struct nn_err *e);

/* The [outer, len, inner] view in which a prunable weight's middle axis is its
 * input (reduction) dimension, as prune_nm wants it: Gemm B [K,N] (transB=0)
 * -> [1, K, N], [N,K] (transB=1) -> [N, K, 1]; MatMul B [..,K,N] ->
 * [prod(..), K, N], A [..,M,K] -> [prod(..)*M, K, 1]; Conv W [M,C/g,k..] ->
 * [M, C/g*prod(k..), 1]. *axis gets the axis of the shape the groups run
 * along (Conv: 1, the start of the flattened C*k.. span). NN_EINVAL for a
 * shape that does not fit its node. */
enum nn_status prune_nm_layout(const struct onnx_weight_ref *r, const struct tensor *w,
			       size_t *outer, size_t *len, size_t *inner, int *axis,
			       struct nn_err *e);

/* Submit-time check of a step's "layers" against a model summary
 * (onnx_summarize's JSON): every name must be one of its "prunable" weights
 * and, for magnitude with keep_first_last, not the first or last of them.
 * NN_EINVAL "invalid_spec", field "steps[i].layers.<name>", listing the
 * prunable names. A summary without prunable weights passes (the caller
 * refuses the step for that reason). prune_run makes the same check. */
enum nn_status prune_check_layers(const struct prune_params *p, const json_t *summary,
				  struct nn_err *e);

/* Runs the prune step on m in place. On NN_OK *metrics is a new JSON object
 * the caller owns (see docs/internals/prune.md for its fields). */
enum nn_status prune_run(struct onnx_model *m, const struct prune_params *p,
			 const struct step_ctx *ctx, json_t **metrics, struct nn_err *e);

#endif
