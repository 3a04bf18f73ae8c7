/* train_loss: cross-entropy, distillation, MSE and top-1 (see train_loss.h). */
#include "train_loss.h"

#include <math.h>
#include <stdbool.h>

static enum nn_status check_shape(int64_t n, int64_t k, struct nn_err *e)
{
	int64_t nk;
	if (n < 1 || k < 1 || __builtin_mul_overflow(n, k, &nk) || nk > (int64_t)(SIZE_MAX / 8))
		return err_set(e, NN_EINVAL, "invalid_argument", "",
			       "loss over %lld rows of %lld logits: need n >= 1 and k >= 1",
			       (long long)n, (long long)k);
	return NN_OK;
}

static enum nn_status check_labels(const int64_t *labels, int64_t n, int64_t k,
				   struct nn_err *e)
{
	for (int64_t i = 0; i < n; i++)
		if (labels[i] < 0 || labels[i] >= k)
			return err_set(e, NN_EINVAL, "invalid_dataset", "",
				       "label %lld of sample %lld of the batch is outside [0, %lld): "
				       "the model has %lld outputs",
				       (long long)labels[i], (long long)i, (long long)k, (long long)k);
	return NN_OK;
}

/* Log-softmax pieces of one row of scale * x, in double: the max m and
 * log(sum_j exp(scale * x_j - m)), so log p_j = (scale * x_j - m) - logsum.
 * Subtracting m before adding logsum keeps logits of any magnitude exact
 * (with m = -1e30, m + log(4) would round back to m). */
struct lsm {
	double m, logsum;
};

static struct lsm row_lsm(const float *x, int64_t k, double scale)
{
	struct lsm r = {-INFINITY, 0};
	for (int64_t j = 0; j < k; j++) {
		double v = scale * x[j];
		if (v > r.m || isnan(v))
			r.m = v;
	}
	if (!isfinite(r.m))
		return r; /* NaN / inf logits: the loss comes out non-finite */
	double s = 0;
	for (int64_t j = 0; j < k; j++)
		s += exp(scale * x[j] - r.m);
	r.logsum = log(s);
	return r;
}

static double log_p(struct lsm r, double scale, float x)
{
	return (scale * x - r.m) - r.logsum;
}

enum nn_status loss_cross_entropy(const float *logits, const int64_t *labels, int64_t n,
				  int64_t k, float *dlogits, double *loss, struct nn_err *e)
{
	enum nn_status st = check_shape(n, k, e);
	if (st != NN_OK)
		return st;
	if (!labels)
		return err_set(e, NN_EINVAL, "invalid_argument", "", "cross-entropy needs labels");
	if ((st = check_labels(labels, n, k, e)) != NN_OK)
		return st;
	double total = 0, inv_n = 1.0 / (double)n;
	for (int64_t i = 0; i < n; i++) {
		const float *x = logits + i * k;
		struct lsm r = row_lsm(x, k, 1.0);
		total -= log_p(r, 1.0, x[labels[i]]);
		if (dlogits) {
			float *g = dlogits + i * k;
			for (int64_t j = 0; j < k; j++)
				g[j] = (float)((exp(log_p(r, 1.0, x[j])) - (j == labels[i])) * inv_n);
		}
	}
	*loss = total * inv_n;
	return NN_OK;
}

enum nn_status loss_distill(const float *student, const float *teacher, const int64_t *labels,
			    int64_t n, int64_t k, double temperature, double alpha,
			    float *dstudent, double *loss, struct nn_err *e)
{
	enum nn_status st = check_shape(n, k, e);
	if (st != NN_OK)
		return st;
	if (!(isfinite(temperature) && temperature > 0))
		return err_set(e, NN_EINVAL, "invalid_argument", "temperature",
			       "temperature must be a finite number > 0, got %g", temperature);
	if (!(alpha >= 0 && alpha <= 1))
		return err_set(e, NN_EINVAL, "invalid_argument", "alpha",
			       "alpha must be in [0, 1], got %g", alpha);
	bool hard = alpha < 1;
	if (hard && !labels)
		return err_set(e, NN_EINVAL, "invalid_argument", "alpha",
			       "alpha %g < 1 weighs in the labels, but there are none", alpha);
	if (hard && (st = check_labels(labels, n, k, e)) != NN_OK)
		return st;
	double inv_t = 1.0 / temperature, inv_n = 1.0 / (double)n;
	double kl_total = 0, ce_total = 0;
	/* d/ds of alpha*T^2*KL/n is alpha*T*(p_s - p_t)/n; of (1-alpha)*CE/n it
	 * is (1-alpha)*(softmax(s) - onehot)/n. */
	double soft_w = alpha * temperature * inv_n, hard_w = (1 - alpha) * inv_n;
	for (int64_t i = 0; i < n; i++) {
		const float *s = student + i * k, *t = teacher + i * k;
		struct lsm rs = row_lsm(s, k, inv_t), rt = row_lsm(t, k, inv_t);
		struct lsm rh = hard ? row_lsm(s, k, 1.0) : rs;
		double kl = 0;
		for (int64_t j = 0; j < k; j++) {
			double log_ps = log_p(rs, inv_t, s[j]), log_pt = log_p(rt, inv_t, t[j]);
			double pt = exp(log_pt);
			/* p_t = 0 (underflow) contributes 0, as xlogy does in kl_div. */
			if (pt > 0)
				kl += pt * (log_pt - log_ps);
			if (dstudent) {
				double g = soft_w * (exp(log_ps) - pt);
				if (hard)
					g += hard_w * (exp(log_p(rh, 1.0, s[j])) - (j == labels[i]));
				dstudent[i * k + j] = (float)g;
			}
		}
		kl_total += kl;
		if (hard)
			ce_total -= log_p(rh, 1.0, s[labels[i]]);
	}
	*loss = alpha * temperature * temperature * kl_total * inv_n +
		(hard ? (1 - alpha) * ce_total * inv_n : 0.0);
	return NN_OK;
}

enum nn_status loss_mse(const float *a, const float *b, size_t count, double weight, float *da,
			double *loss, struct nn_err *e)
{
	if (count == 0)
		return err_set(e, NN_EINVAL, "invalid_argument", "", "MSE over no elements");
	if (!(isfinite(weight) && weight >= 0))
		return err_set(e, NN_EINVAL, "invalid_argument", "weight",
			       "feature loss weight must be a finite number >= 0, got %g", weight);
	double total = 0, scale = 2.0 * weight / (double)count;
	for (size_t i = 0; i < count; i++) {
		double d = (double)a[i] - (double)b[i];
		total += d * d;
		if (da)
			da[i] = (float)(scale * d);
	}
	*loss = weight * total / (double)count;
	return NN_OK;
}

int64_t loss_top1_correct(const float *logits, const int64_t *labels, int64_t n, int64_t k)
{
	int64_t correct = 0;
	for (int64_t i = 0; i < n; i++) {
		const float *x = logits + i * k;
		int64_t best = -1;
		for (int64_t j = 0; j < k; j++)
			if (!isnan(x[j]) && (best < 0 || x[j] > x[best]))
				best = j;
		correct += best >= 0 && best == labels[i];
	}
	return correct;
}
