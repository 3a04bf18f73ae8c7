/* onnx_summary: a JSON summary of a serialized ONNX model, read from a file
 * descriptor without decoding the weights (docs/internals/onnx_io.md).
 *
 * Owns the bounded-memory streaming scanner (pread through a 256 KiB window;
 * small submessages decoded whole, weight payloads skipped by length, every
 * other field validated against the schema by onnx_wire), the summary JSON,
 * and the weightless skeleton of the graph it builds for "opset_upgrade",
 * judged by onnx_opset's dry pass. Everything a call allocates is freed
 * before it returns, except *out.
 * Threading: no global state. fd is only read with pread (its offset never
 * moves), so concurrent calls are independent, even on one fd. */
#ifndef NNCD_ONNX_SUMMARY_H
#define NNCD_ONNX_SUMMARY_H

#include <jansson.h>

#include "err.h"

/* Summary of a serialized model read from fd without decoding the weights
 * (memory stays bounded whatever the model size). JSON object:
 * {"ir_version", "opset": {domain: version}, "producer": {"name","version"},
 *  "graph_name", "inputs": [{"name","dtype","shape"}], "outputs": [...],
 *  "nodes", "ops": {"Gemm": 3, ...}, "parameters", "initializers",
 *  "prunable": [{"name","op","node","shape","parameters"}], "external_data": bool,
 *  "opset_upgrade": {"13": null | {"node","op","message"}}}
 * Shapes use null for symbolic dims. NN_EINVAL for malformed models,
 * NN_EUNSUPPORTED for external data. (The default domain's opset key is "";
 * prunable entries also carry "channel_axis" and "input_index", as in
 * onnx_prunable_weights; see docs/internals/onnx_io.md.)
 * opset_upgrade maps each opset an engine step raises models to (quantize:
 * 13) to null when onnx_raise_opset(m, version) would succeed (the model is
 * already there, or can be converted), else to the node it would refuse:
 * "node" (its name, null if unnamed), "op", and "message" (why). It runs
 * onnx_raise_opset's own dry pass on a skeleton of the graph built during
 * the scan (no weights), so both always agree. */
enum nn_status onnx_summarize_fd(int fd, json_t **out, struct nn_err *e);

#endif
