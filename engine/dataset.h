/* dataset: turns stored dataset arrays (standalone .npy files) into what the
 * executor eats: a float32 input tensor shaped like the model's input and
 * int64 labels, plus the rules that decide which array is which and whether a
 * dataset fits a model.
 *
 * Array roles: labels are the array named y, label, labels, target or
 * targets; the input is the array named after the model's input, else "x",
 * else the only other array. Inputs of any real dtype are converted to
 * float32 and multiplied by `scale` (uint8 images with scale 1/255 give
 * [0,1] pixels); an input whose per-sample element count equals the model
 * input's is reshaped to it ([N,784] feeds [N,1,28,28]).
 * Pure functions on the caller's fds and buffers; thread-safe. */
#ifndef NNCD_DATASET_H
#define NNCD_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "npy.h"
#include "tensor.h"

/* Whether an array of this name holds labels. */
bool dataset_is_label_name(const char *name);

/* Picks the input and label arrays among `names` (n of them) for a model
 * input called model_input (may be NULL). *label_index is -1 when there is no
 * label array. NN_EINVAL ("invalid_dataset") when no input array can be
 * chosen, naming the arrays there are. */
enum nn_status dataset_pick_arrays(const char *const *names, size_t n, const char *model_input,
				   size_t *input_index, long *label_index, struct nn_err *e);

/* Checks a dataset described as the store and the API show it
 * ({"<name>": {"dtype", "shape"}, ...}) against a model summary's first
 * input ({"name","dtype","shape"} with a symbolic or -1 batch dimension):
 * an input array exists, and its per-sample element count matches the
 * model's. `field` names the spec field for the error ("eval.dataset").
 * Writes the picked array names to input_out / labels_out ("" when none). */
enum nn_status dataset_check_fit(const json_t *arrays, const json_t *model_input,
				 const char *field, char input_out[64], char labels_out[64],
				 struct nn_err *e);

/* Every check one stored array must pass on its own, by its role (labels by
 * name, see dataset_is_label_name): header against the file size, a sample
 * dimension with N >= 1, inputs of a real numeric dtype with no NaN/Inf (the
 * message names the flat index and sample), labels integer [N] or [N,1] and
 * >= 0. *h gets the header. NN_EINVAL "invalid_dataset" naming the array. */
enum nn_status dataset_check_array(int fd, const char *name, struct npy_header *h,
				   struct nn_err *e);

/* Reads the .npy in fd into a float32 tensor [N, sample_dims...]: converts
 * the dtype, multiplies by scale, reshapes when the element counts match.
 * sample_dims are the model input's dimensions after the batch one. */
enum nn_status dataset_load_inputs(int fd, const int64_t *sample_dims, int n_sample_dims,
				   double scale, struct tensor *out, struct nn_err *e);

/* Reads integer labels ([N] or [N,1], values >= 0) from the .npy in fd into
 * a malloc'd int64 array of *n entries. */
enum nn_status dataset_load_labels(int fd, int64_t **labels, int64_t *n, struct nn_err *e);

/* A deterministic split of n samples: a permutation of 0..n-1 from `seed`
 * (the same on every machine), whose last round(n * holdout) entries (at
 * least 1 and at most n - 1 when n >= 2) are the held-out part.
 * *perm is malloc'd; *n_kept gets the size of the first part. */
enum nn_status dataset_holdout(int64_t n, double holdout, uint64_t seed, int64_t **perm,
			       int64_t *n_kept, struct nn_err *e);

/* New tensor / labels made of the rows idx[0..count) of src. */
enum nn_status dataset_take_rows(const struct tensor *src, const int64_t *idx, int64_t count,
				 struct tensor *out, struct nn_err *e);
enum nn_status dataset_take_labels(const int64_t *src, const int64_t *idx, int64_t count,
				   int64_t **out, struct nn_err *e);

#endif
