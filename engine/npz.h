/* npz: NumPy .npz archives (ZIP files of .npy members) from untrusted bytes.
 *
 * Reads the ZIP central directory (ZIP64 included: numpy always writes ZIP64
 * local headers), lists the members and streams a member's uncompressed
 * bytes (stored, or raw deflate through zlib) to a callback, checking its
 * CRC-32. Decompression bombs are refused by bounds, not hope: the number of
 * members, each member's declared size and the total declared size are
 * capped before anything is inflated, and inflating more bytes than a member
 * declared is an error. Thread-safety: an npz handle is used by one thread. */
#ifndef NNCD_NPZ_H
#define NNCD_NPZ_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define NPZ_MAX_MEMBERS 64
#define NPZ_NAME_CAP 128

struct npz_limits {
	uint64_t max_member_bytes; /* uncompressed, per member */
	uint64_t max_total_bytes;  /* uncompressed, all members */
};

struct npz_member {
	char name[NPZ_NAME_CAP]; /* "x" for "x.npy" */
	uint16_t method;         /* 0 stored, 8 deflate */
	uint64_t compressed_size;
	uint64_t size; /* uncompressed, as declared */
	uint32_t crc32;
	uint64_t local_header_offset;
};

struct npz;

/* Reads the directory of the archive in fd (the fd stays the caller's).
 * NN_EINVAL (code "invalid_dataset") for anything that is not a well-formed
 * archive of .npy members within the limits, saying which member and why. */
enum nn_status npz_open(int fd, const struct npz_limits *limits, struct npz **out,
			struct nn_err *e);
void npz_close(struct npz *z);

size_t npz_member_count(const struct npz *z);
const struct npz_member *npz_member_at(const struct npz *z, size_t i);

/* Streams member i's uncompressed bytes to write_fn in chunks, then checks
 * the size and CRC-32 against the directory. */
typedef enum nn_status (*npz_write_fn)(void *ud, const void *data, size_t len, struct nn_err *e);
enum nn_status npz_extract(struct npz *z, size_t i, npz_write_fn write_fn, void *ud,
			   struct nn_err *e);

#endif
