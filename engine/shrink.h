/* shrink: graph surgery that removes output channels / neurons of layers and
 * fixes everything downstream, so the model gets smaller dense tensors with
 * all shapes consistent (structured pruning and dead-neuron removal use it).
 *
 * shrink_analyze partitions the graph into channel groups: a group is every
 * tensor that carries the same channel axis, found by walking from a
 * producing layer (Gemm, MatMul with an initializer weight, Conv with group 1)
 * through channel-wise operators (activations, BatchNormalization, pools, Pad
 * without channel padding, Flatten, depthwise Conv, element-wise ops with
 * scalar or per-channel constants) forward to the consuming layers' inputs and
 * backward through joins (a residual Add makes its operands' producers one
 * group, ranked and pruned together). A Concat on the channel axis starts a
 * derived group whose channels follow its inputs' groups by offset. A group is
 * prunable only when every tensor in it is understood: one that reaches a
 * graph output, a graph input, a Reshape/Transpose or any operator whose
 * channel mapping is not provably preserved is left alone, and `reason` says
 * why. The caller clears entries of a prunable group's `keep` and calls
 * shrink_apply, which slices every weight, bias, BatchNormalization entry,
 * per-channel constant and consumer input along the right axis (after a
 * Flatten, channel c maps to block consecutive inputs of the next layer),
 * adjusts depthwise Conv `group` attributes and drops stale value_info.
 *
 * The plan borrows the model's nodes and initializers: it is valid until the
 * model is freed; shrink_apply may run once. Not thread-safe per model/plan;
 * no global state. */
#ifndef NNCD_SHRINK_H
#define NNCD_SHRINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"

/* A producing layer of a group: its weight's `axis` holds the group's channels. */
struct shrink_layer {
	Onnx__NodeProto *node;
	Onnx__TensorProto *weight;
	Onnx__TensorProto *bias; /* sliced with it, or NULL */
	int axis;
};

/* A tensor where the group's channels enter a consumer (a layer's input or a
 * Concat input): the values that decide whether a channel matters downstream.
 * The channel axis is counted from the end (0 = last axis); along it, channel
 * c covers positions [c*block, (c+1)*block) (block > 1 after a Flatten). */
struct shrink_tap {
	const char *tensor;
	int from_end;
	int64_t block;
};

struct shrink_internal;

struct shrink_group {
	int64_t channels;
	bool prunable;
	bool derived;      /* a Concat output: keep follows its inputs' groups */
	char reason[256];  /* why not prunable ("" when prunable) */
	struct shrink_layer *layers;
	size_t n_layers;
	struct shrink_tap *taps;
	size_t n_taps;
	uint8_t *keep;     /* channels entries, 1 = keep (all 1 after analyze) */
	const long *inputs; /* derived: the group of each Concat input in order (-1
			     * when none), their channels laid end to end */
	size_t n_inputs;
	struct shrink_internal *in; /* private */
};

struct shrink_plan {
	struct shrink_group *groups;
	size_t n_groups;
	bool applied;
};

/* Builds the plan. Fails only for out-of-memory or a malformed graph
 * (NN_EINVAL); unsupported structures make groups non-prunable instead. */
enum nn_status shrink_analyze(const struct onnx_model *m, struct shrink_plan **out,
			      struct nn_err *e);
void shrink_plan_free(struct shrink_plan *p);

/* The group whose producing layers include the node that consumes `weight`,
 * or -1. */
long shrink_group_of_weight(const struct shrink_plan *p, const Onnx__TensorProto *weight);

/* Removes every channel with keep[c] == 0 from prunable, non-derived groups
 * (at least one channel must stay: NN_EINVAL otherwise). Derived groups'
 * keep are filled from their inputs. */
enum nn_status shrink_apply(struct onnx_model *m, struct shrink_plan *p, struct nn_err *e);

/* Kept channels of a group. */
int64_t shrink_kept(const struct shrink_group *g);

/* [{"layers": [weight names], "channels", "kept", "action": "pruned together" |
 * "pruned" | "left alone: <reason>" | "follows its inputs (Concat)"}], for
 * groups with more than one layer or that are derived, so reports say how
 * residual and concat structures were handled. NULL on out-of-memory. */
json_t *shrink_groups_json(const struct shrink_plan *p);

#endif
