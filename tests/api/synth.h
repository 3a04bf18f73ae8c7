/* synth: synthetic ONNX models for the API tests, built with the protobuf-c
 * types that engine/ generates from onnx.proto.
 *
 * A synthetic model is an MLP: input "x" [N, dims[0]] (N symbolic), then for
 * each layer i a Gemm with weight W_i [dims[i-1], dims[i]] and bias b_i
 * [dims[i]] in raw_data, a Relu between layers, output "y" [N, dims[last]].
 * Weights are pseudo-random floats in [-1, 1) drawn from `seed`, so two seeds
 * give two different blobs and the same seed gives identical bytes.
 * Memory: one buffer of the largest layer's weights, shared by every layer
 * (prefixes of it), so a 256 MB model costs the test ~64 MB to write.
 * Pure functions of their arguments; safe from any thread. */
#ifndef NNCD_TEST_SYNTH_H
#define NNCD_TEST_SYNTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SYNTH_MAX_LAYERS 16

struct synth_spec {
	int64_t dims[SYNTH_MAX_LAYERS + 1]; /* dims[0] = input width, then each layer's width */
	size_t n_layers;                     /* Gemm count: dims has n_layers + 1 entries */
	uint32_t seed;
	/* Marks the first weight as stored in an external file (its data is
	 * left out): a model that nncd must refuse with unsupported_external_data. */
	bool external_data;
};

/* Weights + biases of the whole model. */
int64_t synth_param_count(const struct synth_spec *s);

/* Serialized model in a new malloc'd buffer (caller frees). 0 on success,
 * -1 with a message in err. */
int synth_build(const struct synth_spec *s, uint8_t **out, size_t *len, char *err, size_t errcap);

/* Streams the serialized model into path (created or truncated); *len gets
 * its size. 0 on success, -1 with a message in err. */
int synth_write_file(const struct synth_spec *s, const char *path, size_t *len, char *err,
		     size_t errcap);

/* A serialized TensorProto: valid protobuf that is not a model. Caller frees. */
int synth_tensor_proto(uint8_t **out, size_t *len, char *err, size_t errcap);

#endif
