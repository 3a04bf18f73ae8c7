/* npy: NumPy .npy arrays read from untrusted bytes (dataset uploads).
 *
 * Parses the format-1.0/2.0/3.0 header (magic, version, little-endian length,
 * then a Python dict literal with 'descr', 'fortran_order' and 'shape'),
 * checks it against the file size (a truncated file is refused before any
 * data is read), and scans float data for NaN/Inf in bounded memory.
 * Only little-endian (or byte-sized) C-order arrays are accepted; anything
 * else is a clear NN_EINVAL. Pure functions on the caller's buffers or fd;
 * thread-safe. */
#ifndef NNCD_NPY_H
#define NNCD_NPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tensor.h"

#define NPY_MAX_HEADER_BYTES 65536 /* numpy itself writes a few hundred bytes */

struct npy_header {
	enum dtype dtype;
	int ndim;
	int64_t shape[TENSOR_MAX_DIMS];
	uint64_t numel;
	uint64_t data_offset; /* bytes from the start of the file to the data */
	uint64_t data_bytes;  /* numel * element size */
};

/* Parses the header from the first `len` bytes of a file of `file_size`
 * bytes. Needs the whole header in buf (NPY_MAX_HEADER_BYTES is always
 * enough). NN_EINVAL (code "invalid_dataset") with what is wrong: not an npy
 * file, unsupported version, malformed dict, big-endian or Fortran-order
 * data, unsupported dtype, too many dimensions, or a size that does not match
 * the file ("truncated: header promises N bytes of data, file has M"). */
enum nn_status npy_parse_header(const void *buf, size_t len, uint64_t file_size,
				struct npy_header *out, struct nn_err *e);

/* The same, reading the header from fd with pread (file offset untouched). */
enum nn_status npy_read_header_fd(int fd, struct npy_header *out, struct nn_err *e);

/* Scans a float16/float32/float64 array's data in fd for NaN or Inf, in
 * chunks. *bad_index gets the flat index of the first non-finite element, or
 * UINT64_MAX when all are finite. Integer dtypes are always finite. */
enum nn_status npy_find_nonfinite_fd(int fd, const struct npy_header *h, uint64_t *bad_index,
				     struct nn_err *e);

#endif
