/* train_loss: the training losses of distill / finetune, with their gradients
 * with respect to the logits (or features) they are given.
 *
 * Logits are row-major [n, k] float32; labels are int64 class indices as
 * engine/dataset loads them. Every loss is the MEAN over the batch (PyTorch's
 * reduction='mean' for cross-entropy and MSE, 'batchmean' for KL), and its
 * gradient is that of the mean, so a caller back-propagates it unscaled.
 * Softmaxes go through log-sum-exp in double: logits of any magnitude
 * (|x| ~ 1e3 and beyond) give finite losses and gradients. Non-finite logits
 * give a non-finite loss (the training loop checks isfinite and stops).
 *
 * Pure functions of their arguments: no state, no allocation, thread-safe.
 * Gradient outputs (NULL = value only) are overwritten, never accumulated. */
#ifndef NNCD_TRAIN_LOSS_H
#define NNCD_TRAIN_LOSS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Cross-entropy on hard labels: mean_i (logsumexp(x_i) - x_i[label_i]).
 * NN_EINVAL (code "invalid_dataset") when a label is outside [0, k), naming
 * the row; n >= 1 and k >= 1 or NN_EINVAL. */
enum nn_status loss_cross_entropy(const float *logits, const int64_t *labels, int64_t n,
				  int64_t k, float *dlogits, double *loss, struct nn_err *e);

/* Knowledge distillation (Hinton et al. 2015):
 *   alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, labels)
 * with KL averaged over the batch, i.e. PyTorch's
 *   F.kl_div(F.log_softmax(s/T, 1), F.softmax(t/T, 1), reduction='batchmean') * T*T.
 * The T^2 keeps the soft term's gradient on the scale of the hard term's as T
 * grows. student/teacher are [n, k]; labels may be NULL only when alpha == 1.
 * dstudent (may be NULL) receives the gradient w.r.t. the student's logits
 * (the teacher is a constant). NN_EINVAL for T <= 0 or non-finite, alpha
 * outside [0, 1], missing labels or a label outside [0, k). */
enum nn_status loss_distill(const float *student, const float *teacher, const int64_t *labels,
			    int64_t n, int64_t k, double temperature, double alpha,
			    float *dstudent, double *loss, struct nn_err *e);

/* Feature loss: weight * mean((a - b)^2) over count elements (F.mse_loss *
 * weight). da (may be NULL) receives d/da; b is the constant target (teacher
 * features). NN_EINVAL for count == 0 or a negative / non-finite weight. */
enum nn_status loss_mse(const float *a, const float *b, size_t count, double weight, float *da,
			double *loss, struct nn_err *e);

/* Rows whose arg-max (the first one on ties, as torch.argmax) equals the
 * label; NaN logits never win the arg-max, labels outside [0, k) never count. */
int64_t loss_top1_correct(const float *logits, const int64_t *labels, int64_t n, int64_t k);

#endif
