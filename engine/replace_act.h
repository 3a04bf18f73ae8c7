/* replace_act: the `replace_activation` pipeline step. Swaps a costly
 * activation for a cheaper one in a model's graph, everywhere or only on the
 * nodes a spec names, usually before `distill` wins back the accuracy lost.
 *
 * Supported pairs (from -> to) and what is written:
 *   Gelu    -> Relu         Relu(x). Matches the opset-20 Gelu op (both
 *                           approximate modes), PyTorch's Erf pattern
 *                           x * 0.5 * (1 + Erf(x / sqrt 2)) (Div by sqrt 2 or
 *                           Mul by 1/sqrt 2, both Mul associations, operands
 *                           in either order: the rules of exec.c's GELU
 *                           fusion), and the tanh approximation PyTorch exports
 *                           for approximate="tanh".
 *   Sigmoid -> HardSigmoid  HardSigmoid(x, alpha=1/6, beta=0.5): PyTorch's
 *                           hardsigmoid (not ONNX's default alpha 0.2), since
 *                           students are trained to match PyTorch.
 *   Tanh    -> HardTanh     Clip(x, -1, 1) ("Clip" is accepted as the target's
 *                           name too); min/max are shared scalar initializers
 *                           of x's type from opset 11, attributes below it.
 *   Swish   -> HardSwish    x * Sigmoid(x) (how PyTorch exports SiLU; "SiLU"
 *                           is accepted as the source's name) becomes
 *                           HardSwish(x); the default opset is raised to 14
 *                           (onnx_raise_opset) when lower.
 *   Relu    -> LeakyRelu    LeakyRelu(x, alpha), alpha in (0, 1), default 0.01.
 * Gelu -> HardSwish is refused: HardSwish approximates x * sigmoid(x), which
 * is GELU only after scaling x by 1.702; unscaled it is further from GELU
 * than Relu is (max |error| 0.30 vs 0.17 on [-4, 4]).
 *
 * A pattern becomes one node: its last node is rewritten in place (so the
 * output name and topological order stay) and takes the name of the
 * pattern's activation node (Erf, Tanh or Sigmoid); the other nodes are
 * removed, and so are the constants (initializers, Constant nodes) and
 * value_info entries only they used. Intermediate values of a pattern must
 * be read by the pattern alone (not by another node, a subgraph or a graph
 * output) and its constants must be float32 scalars (rank 0, or rank <= x's
 * known rank with every dimension 1), so the rewrite changes no shape.
 * Only the main graph is searched (not If/Loop bodies).
 *
 * A model with nothing to replace is a step failure (a job that changes
 * nothing would surprise its author). Thread rules as for the other steps:
 * one model, one thread; no global state. */
#ifndef NNCD_REPLACE_ACT_H
#define NNCD_REPLACE_ACT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"
#include "step.h"

#define RACT_MAX_NODES 1024 /* entries of "nodes" */

enum ract_from {
	RACT_FROM_GELU,
	RACT_FROM_SIGMOID,
	RACT_FROM_TANH,
	RACT_FROM_SWISH,
	RACT_FROM_RELU,
};

enum ract_to {
	RACT_TO_RELU,
	RACT_TO_HARD_SIGMOID,
	RACT_TO_HARD_TANH,
	RACT_TO_HARD_SWISH,
	RACT_TO_LEAKY_RELU,
};

struct ract_params {
	size_t index;          /* the step's position, for field paths */
	enum ract_from from;
	enum ract_to to;
	double alpha;          /* LeakyRelu's slope */
	const json_t *nodes;   /* array of node names (borrowed from the spec), NULL = all */
};

/* Parses {"op": "replace_activation", "from", "to", "nodes": [...], "alpha"}.
 * An unknown pair is NN_EINVAL "invalid_spec" on steps[i].from or
 * steps[i].to listing the supported pairs; `alpha` only goes with
 * to = LeakyRelu. */
enum nn_status ract_params_parse(const json_t *step, size_t index, struct ract_params *out,
				 struct nn_err *e);

/* Submit-time check against the model summary (onnx_summarize_fd's JSON):
 * the model must hold an operator the source activation is made of (Gelu:
 * Gelu, Erf or Tanh; Swish: Sigmoid; ...), else NN_EINVAL on steps[i].from.
 * `steps` is the spec's steps array: when an earlier step may have changed
 * the graph in a way the summary does not show (a step other than prune,
 * quantize, sensitivity, or a replace_activation whose target is this one's
 * source), nothing is checked and ract_run reports a model without a match.
 * Node names are not in the summary: `nodes` is checked by ract_run. */
enum nn_status ract_check_model(const struct ract_params *p, const json_t *summary,
				const json_t *steps, struct nn_err *e);

/* Replaces the activations in place. NN_EINVAL naming steps[i].nodes[k] when
 * a listed node is not part of a matching activation, and on steps[i].from
 * when nothing matches. *metrics (caller frees): {"from", "to", "replaced",
 * "nodes": [{"name", "pattern": "Gelu op" | "Erf pattern" | "tanh pattern" |
 * "Sigmoid op" | "Tanh op" | "Swish pattern" | "Relu op"}], "parameters_before",
 * "parameters_after", "opset", plus "alpha"/"beta" of the written node when it
 * has them}. */
enum nn_status ract_run(struct onnx_model *m, const struct ract_params *p,
			const struct step_ctx *ctx, json_t **metrics, struct nn_err *e);

#endif
