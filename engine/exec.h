/* exec: runs an ONNX graph on CPU tensors (float32, and the integer types the
 * quantized operators take), batched, with OpenBLAS for GEMM.
 *
 * exec_compile does the expensive work once per (model, batch size): topological
 * order, static shape inference (every shape is known once the batch is fixed;
 * shape-computing subgraphs such as PyTorch's Shape/Gather/Unsqueeze/Concat
 * flatten pattern are folded to constants), and a buffer plan (intermediate
 * tensors share a few arenas by lifetime; nothing is allocated per node per
 * run). exec_run then only executes kernels into the planned buffers.
 * A plan is used by one thread at a time; distinct plans are independent
 * (exec_compile_threads plans run their own worker threads inside exec_run).
 * The model must outlive the plan (initializers are borrowed, not copied). */
#ifndef NNCD_EXEC_H
#define NNCD_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "onnx_io.h"
#include "tensor.h"

struct exec_plan;

/* NN_EUNSUPPORTED (code "unsupported_operator") naming the first node whose
 * operator (or attribute value, or dtype) the executor cannot run, e.g.
 * "node '/conv/Conv' (Conv): auto_pad SAME_LOWER is not supported". Cheap:
 * no shapes, no allocation of tensors. Used at job submit time. */
enum nn_status exec_check_support(const struct onnx_model *m, struct nn_err *e);

/* Compiles m for inputs whose first (batch) dimension is `batch` wherever the
 * model leaves it symbolic. NN_EINVAL for shape errors (naming the node). */
enum nn_status exec_compile(const struct onnx_model *m, int64_t batch, struct exec_plan **out,
			    struct nn_err *e);
void exec_free(struct exec_plan *p);

/* exec_compile for up to `threads` threads by splitting the batch: the plan
 * holds min(threads, batch) sub-plans, one per slice of the batch (sizes as
 * equal as possible, each >= 1 row), and that many - 1 worker threads it owns
 * (created here, joined by exec_free; nothing global). exec_run hands each
 * slice its rows of the inputs (pointers, no copies), runs slice 0 on the
 * calling thread and the others on the workers, and gathers the outputs into
 * plan-owned full-batch buffers; it still allocates nothing. Per-sample
 * results are those of the 1-thread plan.
 * The batch is split only when every graph input and output has it as its
 * first dimension (checked on the inferred shapes at the full batch and at
 * each slice's size); otherwise, and for threads <= 1 or batch <= 1, this is
 * exec_compile (exec_threads tells which).
 * BLAS threads: OpenBLAS's thread count is process-global, so the engine
 * never sets it; the caller does. Slices each call sgemm, so a caller using
 * T slices normally runs OpenBLAS single-threaded (the daemon's rule: BLAS
 * threads x busy executor threads <= cores). */
enum nn_status exec_compile_threads(const struct onnx_model *m, int64_t batch, unsigned threads,
				    struct exec_plan **out, struct nn_err *e);
/* Threads a plan runs on: its slice count (1 for exec_compile plans). */
unsigned exec_threads(const struct exec_plan *p);

size_t exec_input_count(const struct exec_plan *p);
size_t exec_output_count(const struct exec_plan *p);
/* Name, dtype and full shape (batch substituted) of graph input / output i.
 * Pointers stay valid for the plan's life. */
const char *exec_input_name(const struct exec_plan *p, size_t i);
const struct tensor *exec_input_spec(const struct exec_plan *p, size_t i); /* data NULL */
const char *exec_output_name(const struct exec_plan *p, size_t i);
const struct tensor *exec_output_spec(const struct exec_plan *p, size_t i); /* data NULL */

/* Runs the graph. inputs[i] must match exec_input_spec(i) (dtype and shape);
 * their data is read, not kept. outputs[i] become views of plan-owned buffers,
 * valid until the next exec_run or exec_free. */
enum nn_status exec_run(struct exec_plan *p, const struct tensor *inputs, size_t n_inputs,
			struct tensor *outputs, size_t n_outputs, struct nn_err *e);

/* Bytes the plan holds (arenas + folded constants), for memory reporting. */
size_t exec_plan_bytes(const struct exec_plan *p);

#endif
