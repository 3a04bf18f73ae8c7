/* conv: the convolution-family kernels of the executor (Conv, MaxPool,
 * AveragePool, GlobalAveragePool, GlobalMaxPool, BatchNormalization in
 * inference form) on dense float32 NCHW data (N, C, then 1 to 6 spatial dims).
 *
 * No ONNX types here: parameters come in plain structs, checked once by
 * conv_window_resolve / conv_check / conv_pool_check (which also report the
 * scratch a kernel needs); the kernels then run on caller-owned arrays and
 * caller-provided scratch and never allocate. conv_run is im2col + OpenBLAS
 * sgemm per image and group (1-D/2-D: in bands of output rows of at most
 * 128 KiB of im2col columns, so scratch stays small and in cache), with a 1x1
 * stride-1 unpadded path that feeds the input to sgemm directly; padded or
 * strided 1-D/2-D convolutions read zero-bordered phase planes instead, on
 * an AVX-512 implicit-GEMM kernel when the CPU has it (no im2col at all), and
 * 2-D ones with multiples of 16 output channels, stride 1 or 2 and >= 32
 * taps run a channel-vectorised AVX-512 kernel on weights packed once
 * (conv_pack_weights);
 * conv_reference is the plain direct-loop version the tests hold it to.
 *
 * Threading: the kernels keep no state; distinct calls may run on distinct
 * threads given distinct output and scratch buffers. sgemm may use OpenBLAS's
 * own threads (set by whoever owns the process). */
#ifndef NNCD_CONV_H
#define NNCD_CONV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tensor.h"

#define CONV_MAX_SPATIAL (TENSOR_MAX_DIMS - 2)

/* ONNX auto_pad. */
enum conv_auto_pad {
	CONV_PAD_NOTSET,
	CONV_PAD_VALID,
	CONV_PAD_SAME_UPPER,
	CONV_PAD_SAME_LOWER,
};

/* The sliding window shared by Conv and the pools. Callers fill nspatial,
 * in, kernel, strides, dilations and (for CONV_PAD_NOTSET) pads;
 * conv_window_resolve fills out and, for the other auto_pad modes, pads. */
struct conv_window {
	int nspatial;                        /* 1 .. CONV_MAX_SPATIAL */
	int64_t in[CONV_MAX_SPATIAL];        /* input spatial dims */
	int64_t kernel[CONV_MAX_SPATIAL];
	int64_t strides[CONV_MAX_SPATIAL];
	int64_t dilations[CONV_MAX_SPATIAL];
	int64_t pads[2 * CONV_MAX_SPATIAL];  /* ONNX order: every begin, then every end */
	int64_t out[CONV_MAX_SPATIAL];       /* output spatial dims */
};

/* Output shape and pads exactly as the ONNX Conv / MaxPool / AveragePool
 * specs give them, with dk = (kernel - 1) * dilation + 1:
 *   NOTSET: out = floor((in + pad_b + pad_e - dk) / s) + 1 (ceil with
 *           ceil_mode, dropping a last window that would start inside the end
 *           padding, as ONNX Runtime and PyTorch do);
 *   VALID:  pads 0, out = floor((in - dk) / s) + 1 (ceil with ceil_mode);
 *   SAME_*: out = ceil(in / s), total pad = max(0, (out - 1) * s + dk - in)
 *           split evenly, the odd one at the end (UPPER) or begin (LOWER).
 * NN_EINVAL (naming the attribute) for a non-positive kernel, stride or
 * dilation, a negative pad, an out-of-range rank, overflow, or an output
 * dimension below 1. */
enum nn_status conv_window_resolve(struct conv_window *w, enum conv_auto_pad auto_pad,
				   bool ceil_mode, struct nn_err *e);

/* Conv: x [batch, in_channels, in...], w [out_channels, in_channels/group,
 * kernel...], optional bias [out_channels], y [batch, out_channels, out...].
 * batch may be 0 (nothing is computed). */
struct conv_params {
	int64_t batch, in_channels, out_channels, group;
	struct conv_window win; /* resolved */
	bool portable;          /* tests: never take the AVX-512 kernel (zero = use it
				 * when the CPU has it) */
	bool relu;              /* y = max(y, 0) (NaN -> 0), as ONNX Relu: a Relu the
				 * executor fused into the Conv at compile time */
	const float *wpack;     /* optional: w as conv_pack_weights lays it out for
				 * these params (constant weights packed once); NULL:
				 * conv_run packs per call into its scratch when needed */
};

/* Floats conv_pack_weights writes for p (0: conv_run's path for p reads w as
 * it is, so there is nothing to pack). */
size_t conv_pack_floats(const struct conv_params *p);
/* w [out_channels, in_channels/group, kernel...] into out (conv_pack_floats). */
void conv_pack_weights(const struct conv_params *p, const float *w, float *out);

/* Checks channel/group consistency and that every size fits; *scratch_bytes
 * is what conv_run needs (0 when every group takes the 1x1 path). */
enum nn_status conv_check(const struct conv_params *p, size_t *scratch_bytes, struct nn_err *e);
/* bias may be NULL. scratch: at least conv_check's scratch_bytes, float-aligned.
 * y must not overlap x. */
void conv_run(const struct conv_params *p, const float *x, const float *w, const float *bias,
	      float *y, float *scratch);
/* Direct loops with double accumulation: the reference conv_run is tested
 * against. No scratch. */
void conv_reference(const struct conv_params *p, const float *x, const float *w,
		    const float *bias, float *y);

/* MaxPool / AveragePool over x [batch, channels, in...] into
 * y [batch, channels, out...]. */
struct conv_pool_params {
	int64_t batch, channels;
	struct conv_window win;  /* resolved */
	bool count_include_pad;  /* AveragePool: divide by the window size counting
				  * pad positions (but not what ceil_mode adds past
				  * the end padding), else by the in-range count */
	bool column_major;       /* MaxPool storage_order 1: Indices column-major */
};

enum nn_status conv_pool_check(const struct conv_pool_params *p, struct nn_err *e);
/* indices (optional): int64 per output element, the flat index of the max in
 * x (including the batch and channel offsets, as the ONNX spec says), row- or
 * column-major over the spatial dims. NaN inputs never win; a window with no
 * in-range (or only NaN) element gives -inf and index -1. */
void conv_maxpool(const struct conv_pool_params *p, const float *x, float *y, int64_t *indices);
void conv_avgpool(const struct conv_pool_params *p, const float *x, float *y);

/* Global pools: x is nc planes of `spatial` elements each, y gets one value
 * per plane. spatial >= 1. */
void conv_global_avgpool(int64_t nc, int64_t spatial, const float *x, float *y);
void conv_global_maxpool(int64_t nc, int64_t spatial, const float *x, float *y);

/* BatchNormalization (inference): y = (x - mean) / sqrt(var + epsilon) * scale + bias
 * per channel over x [batch, channels, spatial]; computed as x * a + b with
 * a = scale / sqrt(var + epsilon), b = bias - mean * a (as ONNX Runtime does).
 * y may equal x. */
void conv_batchnorm(int64_t batch, int64_t channels, int64_t spatial, const float *x,
		    const float *scale, const float *bias, const float *mean, const float *var,
		    float epsilon, float *y);

#endif
