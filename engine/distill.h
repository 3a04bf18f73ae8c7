/* distill: the `distill` and `finetune` pipeline steps (issue 6): student
 * builders, the job-level wiring of the training loop (engine/train.h), the
 * masks that keep pruned weights at zero, and fake quantization of int8
 * weights.
 *
 * distill: a student is trained against a teacher's softened outputs
 *   (loss alpha * T^2 * KL(teacher/T || student/T) + (1 - alpha) * CE).
 *   teacher  "input" (default): the job's model before step 0 (ctx->input_model)
 *            | {"model": "mdl_..."}: an uploaded model (ctx->models)
 *   student  absent: the CURRENT model (after the steps before this one, e.g.
 *              replace_activation or prune)
 *            | {"model": "mdl_..."}: an uploaded model
 *            | {"from": "structured", "ratio": r}: the TEACHER after
 *              structured pruning (engine/structured.h, scope global,
 *              criterion l1) of a fraction r in (0, 1)
 *            | {"hidden": [h1, ...]}: an MLP nncd builds: Flatten when the
 *              teacher's input has rank > 2, then per hidden size Gemm
 *              (transB=1) + Relu, then a Gemm to the teacher's output
 *              width. Weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))
 *              (PyTorch nn.Linear's default), drawn in layer order, weight
 *              row-major [out, in] then bias, by rng_uniform from one stream
 *              seeded with the step's seed: bound * (2u - 1). "epochs": 0
 *              returns that initial student, so a PyTorch reference can load
 *              nncd's initial weights.
 *   The trained student replaces the job's model (its proto is swapped in).
 * finetune: the current model trained further, on the labels (alpha 0) by
 *   default, or against a teacher ("teacher": "input" | {"model": id}, then
 *   alpha defaults to 0.9 like distill). Every weight that is exactly 0 when
 *   the step starts stays exactly 0 (optim_mask_zeros on every parameter
 *   with decay, i.e. Gemm/MatMul/Conv weights). int8 weights stored as
 *   DequantizeLinear(W_q int8, scale, zero_point) (quant.c's layout, per
 *   tensor or per channel) are trained as float shadows with fake
 *   quantization: the forward pass reads dequant(quant(W)) with the fixed
 *   scales / zero points, the gradient passes straight through (STE), and
 *   the shadows are requantized into W_q at the end: the artifact keeps its
 *   layout, scales, zero points and size. Other quantized forms (int4
 *   blocks, MatMulNBits, k-means palettes, static QDQ on activations,
 *   dynamic MatMulInteger) are refused (NN_EUNSUPPORTED).
 * Common parameters: dataset (the training data; labels required unless a
 *   teacher is used with alpha == 1), epochs (10), batch_size (64),
 *   temperature (4), alpha (0.9 with a teacher), optimizer (optim.h; sgd
 *   defaults), schedule (optim.h; constant), seed (0),
 *   feature_loss {"teacher": tensor name, "student": tensor name,
 *   "weight": 1.0}.
 * Metrics: {"teacher", "student", "epochs", "batch_size", "temperature",
 *   "alpha", "optimizer", "lr", "seed", "samples", "parameters_before",
 *   "parameters_after", "masked" (finetune), "fake_quantized" (finetune),
 *   "history": [epoch rows, see train.h], "final_loss",
 *   "train_accuracy", "eval_accuracy", "seconds"}.
 * Threading: one model, one thread (the teacher's executor may use
 * ctx->threads slices); no global state. */
#ifndef NNCD_DISTILL_H
#define NNCD_DISTILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"
#include "spec.h"
#include "step.h"
#include "train.h"

#define DISTILL_MAX_HIDDEN 16        /* entries of "hidden" */
#define DISTILL_MAX_WIDTH 1048576    /* a hidden size */

enum distill_teacher {
	DISTILL_TEACHER_NONE,  /* finetune on labels only */
	DISTILL_TEACHER_INPUT, /* the job's input model */
	DISTILL_TEACHER_MODEL, /* an uploaded model (teacher_id) */
};

enum distill_student {
	DISTILL_STUDENT_CURRENT,    /* the job's current model */
	DISTILL_STUDENT_MODEL,      /* an uploaded model (student_id) */
	DISTILL_STUDENT_STRUCTURED, /* the teacher structurally pruned by ratio */
	DISTILL_STUDENT_HIDDEN,     /* an MLP of hidden sizes */
};

struct distill_params {
	size_t index;   /* the step's position, for field paths */
	bool finetune;  /* op "finetune" */
	enum distill_teacher teacher;
	char teacher_id[SPEC_ID_CAP];
	enum distill_student student;
	char student_id[SPEC_ID_CAP];
	double ratio;   /* structured */
	int64_t hidden[DISTILL_MAX_HIDDEN];
	size_t n_hidden;
	bool has_dataset;   /* the step names its own "dataset" */
	/* Loop parameters; feature names are borrowed from the spec. */
	struct train_params train;
};

/* Parses {"op": "distill" | "finetune", ...} (finetune: no "student").
 * NN_EINVAL "invalid_spec" naming the field ("steps[2].student.hidden[1]")
 * for unknown keys, wrong types, out-of-range numbers, a hidden size < 1, a
 * ratio outside (0, 1), alpha != 0 without a teacher (finetune), a
 * feature_loss without both names. */
enum nn_status distill_params_parse(const json_t *step, size_t index, bool finetune,
				    struct distill_params *out, struct nn_err *e);

/* Submit-time checks against the job's model summary (onnx_summarize_fd's
 * JSON) and the data: labels are needed unless alpha == 1 with a teacher
 * (has_labels: the training dataset has them; pass true when unknown), a
 * student {"model"} / "hidden" must fit the teacher (hidden needs the
 * teacher's output width, known from the summary). `steps` is the spec's
 * steps array. NN_EINVAL with the field. */
enum nn_status distill_check(const struct distill_params *p, const json_t *summary,
			     bool has_labels, struct nn_err *e);

/* Checks that student and teacher agree on per-sample input and output
 * element counts (both compile for training / execution). field names the
 * student ("steps[1].student.model"). */
enum nn_status distill_check_pair(const struct onnx_model *teacher,
				  const struct onnx_model *student, const char *field,
				  struct nn_err *e);

/* Builds the "hidden" MLP student for teacher (see above), seeded. *out is
 * owned by the caller (onnx_free). */
enum nn_status distill_build_mlp(const struct onnx_model *teacher, const int64_t *hidden,
				 size_t n_hidden, uint64_t seed, struct onnx_model **out,
				 struct nn_err *e);

/* The distill step: m (the job's current model) is replaced by the trained
 * student. Training data: ctx->calib; evaluation: ctx->eval. *metrics: see
 * above (caller frees). */
enum nn_status distill_run(struct onnx_model *m, const struct distill_params *p,
			   const struct step_ctx *ctx, json_t **metrics, struct nn_err *e);

/* The finetune step: m trained in place (masks, fake quantization). */
enum nn_status finetune_run(struct onnx_model *m, const struct distill_params *p,
			    const struct step_ctx *ctx, json_t **metrics, struct nn_err *e);

#endif
