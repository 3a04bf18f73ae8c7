/* train: the training loop of the distill and finetune steps (issue 6).
 *
 * train_run trains a compiled train graph (engine/train_graph.h) in place
 * with an optimizer (engine/optim.h) on a training set held in memory:
 *   for each epoch: a seeded shuffle of the sample indices (rng_shuffle on a
 *   stream seeded once with p->seed, so a seed gives the same order on every
 *   run; the index array starts as 0..n-1 and each epoch reshuffles the
 *   previous epoch's order in place: tests/e2e/train_torch_mlp.py replays
 *   it), mini-batches of p->batch_size rows in that order (the last one
 *   smaller), rows gathered into a batch buffer, forward in training mode,
 *   the loss and its gradient (engine/train_loss.h), backward, one optimizer
 *   step; the learning rate set from the schedule before every update
 *   (per epoch or per iteration as the schedule says).
 *   L-BFGS runs full batch: one optim_step_closure per epoch, the closure
 *   evaluating loss and gradients over the whole set in max-batch chunks
 *   (gradients summed with each chunk's weight, so they are those of the
 *   mean over the set).
 * Loss: with a teacher, loss_distill(student, teacher logits, labels, T,
 * alpha) = alpha * T^2 * KL + (1 - alpha) * CE; without one, cross-entropy
 * on the labels. The teacher's logits for the whole training set are computed
 * ONCE, before the first epoch, with the executor (exec_compile_threads at
 * ctx->threads): they do not change while the student trains. With
 * p->feature_student set, a weighted MSE between the student's tapped tensor
 * (the graph must have been compiled with that tap) and the teacher's tensor
 * of name p->feature_teacher is added; the teacher's features are computed
 * per batch by a train graph of the teacher run in inference mode (a set of
 * features for every sample would not fit memory for a CNN).
 * After every epoch: mean training loss over the epoch's samples, running
 * training accuracy (top-1 on the batches as they were trained), evaluation
 * accuracy on `eval` (inference mode) when it has labels, the lr, the
 * epoch's seconds -> one step_event(ctx, "epoch", row) and the same row
 * appended to *history:
 *   {"epoch": 1-based, "loss", "train_accuracy", "eval_accuracy" (only with
 *    eval labels), "lr", "seconds"}
 * Progress is reported per batch (fraction of all batches of all epochs); the
 * cancel flag is polled before every batch (NN_ECANCELED within one batch).
 * A non-finite loss stops training with NN_EINVAL code "training_diverged"
 * naming the epoch (lower the lr).
 *
 * Buffers (batch rows, labels, gradients, index order, teacher logits) are
 * allocated once per run; nothing is allocated per batch. Deterministic for
 * a seed: same seed, same data, same threads -> bit-identical weights
 * (the executor's teacher logits are per-sample identical at any thread
 * count, and the graph and optimizer use a fixed summation order).
 * Threading: runs on the caller's thread (the teacher's executor plan may run
 * ctx->threads slices); one graph / optimizer per run; no global state. */
#ifndef NNCD_TRAIN_H
#define NNCD_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "onnx_io.h"
#include "optim.h"
#include "step.h"
#include "train_graph.h"

struct train_params {
	int64_t epochs;           /* >= 0 (0: nothing is trained) */
	int64_t batch_size;       /* >= 1; the graph's max batch must be >= min(batch, n) */
	double temperature;       /* > 0: distillation temperature T */
	double alpha;             /* [0, 1]: weight of the soft (teacher) loss */
	struct optim_params optimizer; /* what opt was built with (lr = the base lr) */
	struct optim_schedule schedule;
	uint64_t seed;            /* shuffling stream */
	const char *feature_teacher; /* NULL: no feature loss */
	const char *feature_student;
	double feature_weight;    /* >= 0 */
	/* Called before every forward pass that reads the parameters (each batch,
	 * each L-BFGS closure, each evaluation), e.g. to project fake-quantized
	 * weights from their float shadows. May be NULL. */
	void (*before_forward)(void *ud);
	void *before_forward_ud;
};

/* Defaults of a spec step (epochs 10, batch 64, T 4, alpha 0.9, sgd defaults,
 * constant schedule, seed 0, no feature loss, no hook). */
void train_params_default(struct train_params *p);

/* Samples in memory (borrowed): x is n rows of sample_numel floats; labels is
 * n class indices or NULL. */
struct train_set {
	const float *x;
	const int64_t *labels;
	int64_t n;
	int64_t sample_numel;
};

/* Trains g in place with opt (built over g's parameters, or over float
 * shadows of them whose grads are g's). teacher (a model the executor runs,
 * read only) may be NULL when alpha == 0; labels may be NULL only when a
 * teacher is given and alpha == 1. eval may be NULL. *history (caller frees,
 * may be NULL to skip) receives the per-epoch rows. NN_EINVAL for
 * inconsistent inputs (sample sizes that do not match the graph's input or
 * the teacher's, widths that differ), "training_diverged"; NN_ECANCELED;
 * NN_ENOMEM. The parameters hold the last update's values on every return. */
enum nn_status train_run(struct tg_graph *g, struct optim *opt, const struct train_params *p,
			 const struct train_set *train, const struct onnx_model *teacher,
			 const struct train_set *eval, const struct step_ctx *ctx,
			 json_t **history, struct nn_err *e);

/* Top-1 accuracy of g in inference mode on set (labels required), in
 * max-batch chunks; *accuracy in [0, 1]. Calls p->before_forward if p. */
enum nn_status train_accuracy(struct tg_graph *g, const struct train_params *p,
			      const struct train_set *set, double *accuracy, struct nn_err *e);

#endif
