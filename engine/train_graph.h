/* train_graph: an ONNX model compiled into a trainable graph (reverse-mode
 * gradients) for a fixed maximum batch size.
 *
 * tg_compile reads the model once: topological order, shapes inferred at the
 * maximum batch (PyTorch's Shape/Gather/Unsqueeze/Concat shape subgraphs are
 * folded to constants), the trainable parameters (float initializers feeding
 * Gemm B/C, MatMul B, Conv W/B, BatchNormalization scale/B, and an Add/Sub
 * constant directly after a MatMul/Gemm/Conv: PyTorch's bias) copied into
 * graph-owned buffers, and every activation, saved value and gradient buffer
 * allocated once. tg_forward / tg_backward allocate nothing; any batch
 * 1..max_batch runs on the same buffers.
 * A student has exactly one float input and one float output; other models
 * are refused with NN_EUNSUPPORTED naming the reason.
 *
 * Ownership: the graph owns its parameters, gradients and activations; the
 * model passed to tg_compile is only read there (it need not outlive the
 * graph); tg_write_back copies trained values into a model's initializers.
 * Threading: a graph is used by one thread at a time; distinct graphs are
 * independent; no global state. GEMMs go through cblas_sgemm, whose thread
 * count the caller sets (the daemon runs OpenBLAS single-threaded). */
#ifndef NNCD_TRAIN_GRAPH_H
#define NNCD_TRAIN_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "onnx_io.h"

/* One trainable tensor (the train_graph <-> optim contract). */
struct tg_param {
	const char *name; /* initializer name */
	float *value;     /* n floats, owned by the train graph */
	float *grad;      /* n floats, written by tg_backward (overwritten each call) */
	size_t n;
	bool decay;       /* weight decay applies (weights: yes; biases, BN scale/bias: no) */
};

struct tg_options {
	int64_t max_batch;          /* >= 1: largest batch tg_forward will see */
	uint64_t seed;              /* Dropout masks' stream */
	const char *const *frozen;  /* initializer names kept constant (no gradient) */
	size_t n_frozen;
	const char *const *taps;    /* intermediate tensor names readable by tg_tap, */
	size_t n_taps;              /* with a gradient input through tg_tap_grad */
};

struct tg_graph;

/* Compiles m. NN_EUNSUPPORTED (code "unsupported_operator" or "unsupported_model")
 * naming the node / reason for anything outside the supported set; NN_EINVAL
 * for shape errors. */
enum nn_status tg_compile(const struct onnx_model *m, const struct tg_options *opt,
			  struct tg_graph **out, struct nn_err *e);
void tg_free(struct tg_graph *g);

/* Trainable parameters in a stable order (graph order of first use). The
 * pointer is owned by the graph and valid for its life. */
size_t tg_param_count(const struct tg_graph *g);
struct tg_param *tg_param(struct tg_graph *g, size_t i);

int64_t tg_max_batch(const struct tg_graph *g);
/* Graph input / output shapes at the max batch (dim 0 is the batch), and the
 * per-sample element counts (product of dims 1..). */
const struct tensor *tg_input_spec(const struct tg_graph *g);  /* data NULL */
const struct tensor *tg_output_spec(const struct tg_graph *g); /* data NULL */
int64_t tg_input_sample_numel(const struct tg_graph *g);
int64_t tg_output_sample_numel(const struct tg_graph *g);
const char *tg_input_name(const struct tg_graph *g);
const char *tg_output_name(const struct tg_graph *g);

/* Runs the graph on x (n rows of tg_input_sample_numel floats, 1 <= n <=
 * max batch). training: Dropout draws its seeded mask and BatchNormalization
 * uses batch statistics and updates its running statistics; otherwise both
 * act as at inference. *out points at n * tg_output_sample_numel floats owned
 * by the graph, valid until the next tg_forward. Zeroes every tap gradient. */
enum nn_status tg_forward(struct tg_graph *g, const float *x, int64_t n, bool training,
			  const float **out, struct nn_err *e);

/* A tapped tensor (named in tg_options.taps) after tg_forward: its values
 * (n * numel_per_sample floats), and the buffer of dLoss/dTap of the same size
 * that the caller fills before tg_backward (zeroed by tg_forward). NULL for a
 * name that was not tapped. *numel (if not NULL) = per-sample element count. */
const float *tg_tap(const struct tg_graph *g, const char *name, int64_t *numel);
float *tg_tap_grad(struct tg_graph *g, const char *name);

/* Back-propagates dout (dLoss/dOutput, n * tg_output_sample_numel floats for
 * the n of the last tg_forward) plus the tap gradients; every non-frozen
 * parameter's grad is overwritten. Backward of a forward run in inference
 * mode treats BN as the frozen affine transform and Dropout as identity. */
enum nn_status tg_backward(struct tg_graph *g, const float *dout, struct nn_err *e);

/* Bytes the graph holds (parameters, constants, activations, gradients,
 * saved statistics, masks, scratch), for memory reporting. Activations that
 * backward does not read share buffers by forward lifetime. */
size_t tg_graph_bytes(const struct tg_graph *g);

/* Copies trained parameter values and BatchNormalization running statistics
 * into m's initializers of the same names (same shapes, float32). m is
 * normally the model compiled (or a clone of it). */
enum nn_status tg_write_back(const struct tg_graph *g, struct onnx_model *m, struct nn_err *e);

#endif
