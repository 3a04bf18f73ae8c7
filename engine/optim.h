/* optim: the optimizers and learning-rate schedules of training (issue 6).
 *
 * Update rules are PyTorch 1.13's, step for step, so a recipe tuned in
 * PyTorch behaves the same here (tests/unit/test_optim.c replays PyTorch
 * trajectories to 1e-5):
 *   sgd    torch.optim.SGD:   d = g + wd*w; buf = momentum*buf + (1-dampening)*d
 *                             (buf = d on the first step); d = nesterov ? d +
 *                             momentum*buf : buf; w -= lr*d
 *   adam   torch.optim.Adam:  L2 decay added to the gradient (g + wd*w), then
 *                             m, v, bias corrections, w -= lr/bc1 * m/(sqrt(v)/sqrt(bc2)+eps)
 *   adamw  torch.optim.AdamW: decoupled decay w *= 1 - lr*wd, then Adam without decay
 *   lbfgs  torch.optim.LBFGS: full-batch, closure-based (max_iter iterations per
 *                             optim_step_closure, two-loop recursion over
 *                             history_size pairs, fixed step or strong Wolfe
 *                             line search), one flat vector over all parameters
 * Weight decay applies only to parameters with tg_param.decay (PyTorch users put
 * biases and BatchNorm parameters in a param group with weight_decay 0).
 *
 * Masks: optim_set_mask(o, i, keep) keeps parameter i's entries with keep[j] == 0
 * at exactly 0.0f: their gradient is zeroed before every update (in place, in
 * the parameter's grad array), their value is set to 0 after it, and their
 * momentum / Adam moments stay 0; for L-BFGS the direction is 0 there. This is
 * PyTorch's "grad *= mask before step, weight *= mask after".
 *
 * Ownership and threading: an optimizer borrows the parameters (values and
 * grads stay the train graph's and must outlive it), copies the array of
 * pointers and the masks, and owns its state, allocated in optim_new (L-BFGS's
 * history pairs as they first fill). One thread at a time; no global state;
 * fully deterministic (no threads, fixed summation order).
 *
 * Spec objects (optim_params_parse / optim_schedule_parse; unknown keys and bad
 * values are NN_EINVAL code "invalid_spec" naming the field path under the
 * prefix the caller gives, e.g. "steps[2].optimizer.lr"):
 *   "optimizer": {"name": "sgd" | "adam" | "adamw" | "lbfgs", ...}; defaults:
 *     sgd   lr 0.01, momentum 0, dampening 0, nesterov false, weight_decay 0
 *           (nesterov needs momentum > 0 and dampening 0, as in PyTorch)
 *     adam  lr 0.001, betas [0.9, 0.999], eps 1e-8, weight_decay 0
 *     adamw lr 0.001, betas [0.9, 0.999], eps 1e-8, weight_decay 0.01
 *     lbfgs lr 1, max_iter 20, max_eval max_iter*5/4, tolerance_grad 1e-7,
 *           tolerance_change 1e-9, history_size 100, line_search_fn null
 *           (or "strong_wolfe"); no weight_decay (torch.optim.LBFGS has none)
 *     A key that does not apply to the named optimizer ("momentum" for adam) is
 *     refused. A missing "optimizer" (NULL) means {"name": "sgd"}. Ranges: lr > 0,
 *     weight_decay >= 0, momentum and betas in [0, 1), dampening in [0, 1], eps > 0,
 *     adamw lr*weight_decay < 1, max_iter / max_eval in [1, 1e6], history_size in
 *     [1, 1000]. L-BFGS keeps (2*history_size + 5) floats per parameter (+4 with
 *     strong_wolfe): it is meant for small models, full batch.
 *   "schedule": {"name": "constant" | "step" | "cosine", "warmup_epochs": 0,
 *     "step_size": (epochs after warm-up)/3 rounded up, "gamma": 0.1,
 *     "eta_min": 0, "per_iteration": false}; missing (NULL) means constant. */
#ifndef NNCD_OPTIM_H
#define NNCD_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "train_graph.h"

enum optim_kind { OPTIM_SGD, OPTIM_ADAM, OPTIM_ADAMW, OPTIM_LBFGS };

struct optim_params {
	enum optim_kind kind;
	double lr;                 /* > 0: the base learning rate (schedules scale it) */
	double weight_decay;       /* >= 0; sgd/adam: L2 in the gradient; adamw: decoupled */
	/* sgd */
	double momentum;           /* [0, 1) */
	double dampening;          /* [0, 1] */
	bool nesterov;
	/* adam, adamw */
	double beta1, beta2;       /* [0, 1) each */
	double eps;                /* > 0 */
	/* lbfgs */
	int64_t max_iter;          /* >= 1: iterations per optim_step_closure */
	int64_t max_eval;          /* >= 1: closure calls per optim_step_closure (soft cap,
				    * as in PyTorch: checked after each iteration) */
	int64_t history_size;      /* >= 1 */
	double tolerance_grad;     /* >= 0: stop when max |g| <= it */
	double tolerance_change;   /* >= 0: stop when a step or loss change is below it */
	bool strong_wolfe;         /* line_search_fn "strong_wolfe" (else fixed step lr) */
};

/* PyTorch's defaults for `kind` (see the header comment). */
void optim_params_default(enum optim_kind kind, struct optim_params *p);
const char *optim_kind_name(enum optim_kind kind);

/* Checks hand-built or parsed params; errors name "<field>.lr" etc. (field may
 * be "" for bare names). */
enum nn_status optim_params_check(const struct optim_params *p, const char *field,
				  struct nn_err *e);

/* Parses the spec's "optimizer" object v (NULL: sgd defaults) into out, with
 * defaults, then optim_params_check. field is the object's own path
 * ("steps[1].optimizer"). */
enum nn_status optim_params_parse(const json_t *v, const char *field, struct optim_params *out,
				  struct nn_err *e);

/* --- learning-rate schedules ---------------------------------------------
 * A schedule is a pure function of the position in training. Epoch e and
 * iteration i within it are 0-based; E epochs of I iterations; W warm-up epochs.
 *   warm-up (e < W): lr = base * (e + 1) / (W + 1)            per epoch
 *                    lr = base * (g + 1) / (W*I + 1)           per iteration,
 *                    g = e*I + i: linear from base/(W+1) towards base, which
 *                    the first epoch after warm-up reaches (torch LinearLR with
 *                    start_factor 1/(W+1), end_factor W/(W+1), total_iters W-1)
 *   after warm-up, with t = e - W (per epoch) or t = (e - W)*I + i (per
 *   iteration) and T = E - W (or (E - W)*I):
 *     constant  base
 *     step      base * gamma^floor(t / S), S = step_size epochs (S*I iterations):
 *               torch StepLR(step_size, gamma)
 *     cosine    eta_min + (base - eta_min) * (1 + cos(pi * t / T)) / 2:
 *               torch CosineAnnealingLR(T_max = T, eta_min), stepped once per
 *               epoch (PyTorch's usual way, and ours by default) or once per
 *               iteration (per_iteration true: T_max counts iterations).
 * Per epoch, the lr is constant within an epoch; per iteration, it changes
 * every batch (warm-up and cosine; step decays still fall on epoch bounds). */
enum optim_sched_kind { OPTIM_SCHED_CONSTANT, OPTIM_SCHED_STEP, OPTIM_SCHED_COSINE };

struct optim_schedule {
	enum optim_sched_kind kind;
	int64_t warmup_epochs;   /* >= 0, < epochs */
	int64_t step_size;       /* step: epochs per decay, >= 1; 0 = ceil((E - W) / 3) */
	double gamma;            /* step: factor per decay, (0, 1] */
	double eta_min;          /* cosine: floor, >= 0 and at most the base lr */
	bool per_iteration;      /* advance every iteration instead of every epoch */
};

void optim_schedule_default(struct optim_schedule *s); /* constant, no warm-up */

/* Parses the spec's "schedule" object v (NULL: constant) into out. field is the
 * object's own path ("steps[1].schedule"). */
enum nn_status optim_schedule_parse(const json_t *v, const char *field,
				    struct optim_schedule *out, struct nn_err *e);

/* Checks s against a run of `epochs` epochs at base lr `base_lr` (warm-up
 * shorter than the run, eta_min below the base lr, ...); errors name
 * "<field>.warmup_epochs" etc. */
enum nn_status optim_schedule_check(const struct optim_schedule *s, double base_lr,
				    int64_t epochs, const char *field, struct nn_err *e);

/* The lr of iteration `iter` of epoch `epoch` (both 0-based) in a run of
 * `epochs` epochs of `iters_per_epoch` iterations (see above). Positions past
 * the run continue the formula. */
double optim_schedule_lr(const struct optim_schedule *s, double base_lr, int64_t epochs,
			 int64_t iters_per_epoch, int64_t epoch, int64_t iter);

/* --- optimizer ------------------------------------------------------------ */
struct optim;

/* An optimizer over params[0..n) (pointers copied, tensors borrowed), its lr
 * set to p->lr. NN_EINVAL for bad params (fields under "optimizer"),
 * NN_ENOMEM, NN_ETOOBIG when the state would not fit size_t. */
enum nn_status optim_new(const struct optim_params *p, struct tg_param *const *params, size_t n,
			 struct optim **out, struct nn_err *e);
void optim_free(struct optim *o);

const struct optim_params *optim_get_params(const struct optim *o);
/* The lr the next update uses (what a schedule sets every epoch / iteration). */
void optim_set_lr(struct optim *o, double lr);
double optim_get_lr(const struct optim *o);

/* Masks parameter i: keep[j] == 0 entries become and stay exactly 0.0f and
 * their optimizer state is cleared now. keep (n bytes of param i) is copied;
 * NULL removes the mask. NN_EINVAL for i out of range, NN_ENOMEM. */
enum nn_status optim_set_mask(struct optim *o, size_t i, const uint8_t *keep, struct nn_err *e);
/* Masks parameter i where its value is exactly 0 now (after pruning). Returns
 * the number of masked entries in *masked (may be NULL). */
enum nn_status optim_mask_zeros(struct optim *o, size_t i, size_t *masked, struct nn_err *e);

/* One update of sgd / adam / adamw from the gradients in params[i]->grad.
 * NN_EINVAL for lbfgs (it needs optim_step_closure). */
enum nn_status optim_step(struct optim *o, struct nn_err *e);

/* Evaluates the loss at the parameters' current values and writes every
 * parameter's grad (full batch for L-BFGS). A failure (NN_ECANCELED, ...)
 * aborts the step with the parameters at the last accepted point. */
typedef enum nn_status (*optim_closure_fn)(void *ud, double *loss, struct nn_err *e);

/* torch's optimizer.step(closure): the closure's first loss goes to *loss (may
 * be NULL). sgd/adam/adamw: one closure call, then optim_step. lbfgs: up to
 * max_iter iterations (and about max_eval closure calls); its state (history,
 * direction) carries over to the next call as in PyTorch. */
enum nn_status optim_step_closure(struct optim *o, optim_closure_fn fn, void *ud, double *loss,
				  struct nn_err *e);

/* Closure calls made so far (L-BFGS's state['func_evals']) and updates
 * applied (optim_step calls, or L-BFGS iterations: state['n_iter']). */
int64_t optim_func_evals(const struct optim *o);
int64_t optim_iterations(const struct optim *o);

#endif
