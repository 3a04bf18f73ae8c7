/* train_conv: forward and backward kernels of the convolution family for
 * training (issue 6): Conv, MaxPool, AveragePool, GlobalAveragePool,
 * BatchNormalization (training with batch statistics, and inference with
 * frozen statistics) and constant spatial Pad, on raw float32 NCHW arrays.
 *
 * Owns nothing: no graph knowledge, no ONNX types. The caller (train_graph)
 * owns every buffer: inputs, outputs, gradients, the argmax of MaxPool, the
 * saved BatchNormalization statistics and the scratch a Conv needs
 * (tc_conv_scratch_floats), all allocated once per (model, batch size).
 * The kernels never allocate.
 *
 * Layouts: x [n, c, h, w]; Conv weight [m, c/group, kh, kw], bias [m];
 * y [n, m, oh, ow]; pools y [n, c, oh, ow]; per-channel vectors [c].
 * Conv runs as im2col + cblas_sgemm per band of images and group (the
 * columns of a band, at most 128 KiB with the band's outputs: usually one
 * image, several when images are small, side by side in scratch); the weight
 * gradient accumulates over the batch in the GEMM (beta 1 after the first
 * band), the input gradient is a GEMM into columns followed by col2im. The
 * band depends on the shape only, so results repeat bit for bit.
 *
 * Threading: pure functions of their arguments; distinct calls may run on
 * distinct threads given distinct output and scratch buffers. cblas_sgemm
 * may use OpenBLAS's own threads (set by whoever owns the process; the daemon
 * runs it single-threaded). */
#ifndef NNCD_TRAIN_CONV_H
#define NNCD_TRAIN_CONV_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct tc_conv {       /* 2-D convolution, NCHW, weight [M, C/group, KH, KW] */
	int64_t n, c, h, w;          /* input */
	int64_t m, kh, kw;           /* output channels, kernel */
	int64_t stride_h, stride_w, dil_h, dil_w;
	int64_t pad_top, pad_left, pad_bottom, pad_right;
	int64_t group;
	int64_t oh, ow;              /* output; filled by tc_conv_init */
};
/* Validates and fills oh/ow; NN_EINVAL with a message for impossible shapes. */
enum nn_status tc_conv_init(struct tc_conv *s, struct nn_err *e);
/* Floats of scratch the conv needs (im2col of one image and group, etc.).
 * Never grows when s->n shrinks: the scratch sized for the compiled batch
 * serves a smaller last batch (same s with a smaller n, as train_graph runs it). */
size_t tc_conv_scratch_floats(const struct tc_conv *s);
/* y = conv(x, w) + b (b may be NULL). */
void tc_conv_forward(const struct tc_conv *s, const float *x, const float *w, const float *b,
		     float *y, float *scratch);
/* From dy: dx (may be NULL: not needed for the first layer), dw and db (db may be NULL)
 * are OVERWRITTEN (not accumulated). */
void tc_conv_backward(const struct tc_conv *s, const float *x, const float *w, const float *dy,
		      float *dx, float *dw, float *db, float *scratch);

struct tc_pool {       /* MaxPool / AveragePool, NCHW */
	int64_t n, c, h, w, kh, kw, stride_h, stride_w, dil_h, dil_w;
	int64_t pad_top, pad_left, pad_bottom, pad_right;
	int ceil_mode, count_include_pad;
	int64_t oh, ow;              /* filled by tc_pool_init */
};
/* Validates and fills oh/ow as ONNX and PyTorch do: floor (or ceil with
 * ceil_mode) of (in + pads - ((k - 1) * dil + 1)) / stride + 1, dropping a
 * last ceil_mode window that would start inside the end padding. NN_EINVAL
 * for non-positive sizes, negative pads, overflow or an output below 1.
 * A window that sees only padding (large pads, dilation) is allowed: MaxPool
 * gives -inf there with argmax -1 (no gradient), AveragePool gives 0 when it
 * divides by the in-range count. */
enum nn_status tc_pool_init(struct tc_pool *s, struct nn_err *e);
/* argmax: n*c*oh*ow int32 indices into the h*w plane, for backward.
 * Ties: the first maximum in scan order (rows, then columns), as PyTorch.
 * NaN propagates (a NaN in the window wins, as PyTorch). */
void tc_maxpool_forward(const struct tc_pool *s, const float *x, float *y, int32_t *argmax);
void tc_maxpool_backward(const struct tc_pool *s, const float *dy, const int32_t *argmax, float *dx); /* dx overwritten */
/* count_include_pad 1: divide by the window clipped to the padded input (the
 * positions ceil_mode adds past the end padding do not count), as PyTorch and
 * ONNX Runtime; 0: by the number of in-range elements. */
void tc_avgpool_forward(const struct tc_pool *s, const float *x, float *y);
void tc_avgpool_backward(const struct tc_pool *s, const float *dy, float *dx); /* dx overwritten */
void tc_gap_forward(int64_t n, int64_t c, int64_t hw, const float *x, float *y);
void tc_gap_backward(int64_t n, int64_t c, int64_t hw, const float *dy, float *dx);

/* BatchNormalization over (n, c, hw). Training: batch mean / biased variance normalise;
 * running_mean/var updated in place the ONNX / PyTorch way with momentum as ONNX defines it
 * (running = running * momentum + batch * (1 - momentum); ONNX default momentum 0.9 =
 * PyTorch momentum 0.1), the running variance from the UNBIASED batch variance as PyTorch does;
 * save_mean/save_invstd (c floats each) kept for backward. running_mean/var may both be
 * NULL (no update). With a single value per channel (n * hw == 1) the unbiased variance
 * is undefined; the biased one (0) is used for the update. Statistics accumulate in double. */
void tc_bn_train_forward(int64_t n, int64_t c, int64_t hw, const float *x, const float *scale,
			 const float *bias, float *running_mean, float *running_var, float momentum,
			 float epsilon, float *y, float *save_mean, float *save_invstd);
void tc_bn_infer_forward(int64_t n, int64_t c, int64_t hw, const float *x, const float *scale,
			 const float *bias, const float *mean, const float *var, float epsilon, float *y);
/* dx, dscale, dbias overwritten. */
void tc_bn_train_backward(int64_t n, int64_t c, int64_t hw, const float *x, const float *scale,
			  const float *save_mean, const float *save_invstd, const float *dy,
			  float *dx, float *dscale, float *dbias);
/* Backward of inference-mode BN (frozen statistics), for fine-tuning with BN in eval mode. */
void tc_bn_infer_backward(int64_t n, int64_t c, int64_t hw, const float *scale, const float *var,
			  float epsilon, const float *dy, float *dx);
/* Gradients of scale and bias of inference-mode BN (overwritten; either may be NULL):
 * dscale = sum(dy * (x - mean) / sqrt(var + epsilon)), dbias = sum(dy) per channel. */
void tc_bn_infer_backward_params(int64_t n, int64_t c, int64_t hw, const float *x,
				 const float *mean, const float *var, float epsilon,
				 const float *dy, float *dscale, float *dbias);

/* Constant Pad on the two spatial dims of NCHW (ONNX Pad mode "constant" with
 * zero pads on N and C), e.g. the Pad PyTorch exports before
 * AveragePool(count_include_pad=0) for AvgPool2d(padding=...). Pads may be
 * negative (cropping), as ONNX allows. */
struct tc_pad {
	int64_t n, c, h, w;
	int64_t pad_top, pad_left, pad_bottom, pad_right;
	int64_t oh, ow;              /* filled by tc_pad_init */
};
/* Validates and fills oh/ow; NN_EINVAL for an output dim below 1 or overflow. */
enum nn_status tc_pad_init(struct tc_pad *s, struct nn_err *e);
/* y [n, c, oh, ow] = x placed at (pad_top, pad_left), `value` elsewhere. */
void tc_pad_forward(const struct tc_pad *s, const float *x, float value, float *y);
/* dx [n, c, h, w] overwritten: the slice of dy over x (0 where a negative pad cropped x). */
void tc_pad_backward(const struct tc_pad *s, const float *dy, float *dx);

#endif
