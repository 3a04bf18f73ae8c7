/* blob_zstd: the zstd-compressed copy of a file, streamed into a blob writer.
 *
 * Used for the transport representation of artifacts (issue 4): the worker
 * compresses the artifact it just wrote into a second blob. Streaming: the
 * source is read in fixed chunks with pread (its file offset is left alone)
 * and compressed output goes straight to the writer, so memory use is the
 * zstd context plus two ~1 MiB buffers, whatever the file's size. The frame
 * records the content size and a content checksum (`zstd -d` verifies it).
 *
 * Owns nothing beyond one call: no state between calls.
 * Threading: any thread; calls are independent. The cancel flag may be set
 * by another thread while a call runs (checked between chunks). */
#ifndef NNCD_BLOB_ZSTD_H
#define NNCD_BLOB_ZSTD_H

#include <stdatomic.h>
#include <stdint.h>

#include "blob.h"
#include "err.h"

/* Level chosen by measurement (bench/bench_zstd, docs/internals/blob.md,
 * "zstd copy of artifacts"): on a 100 MB pruned model level 19 is 8% smaller
 * than 9 but takes ~20x the seconds (35 s against 1.6 s) and ~5x the
 * memory; level 3 is 12% larger. */
#define BLOB_ZSTD_LEVEL 9

struct blob_zstd_opts {
	int level;   /* zstd level, 1..ZSTD_maxCLevel(); 0 = BLOB_ZSTD_LEVEL */
	int workers; /* zstd worker threads (ZSTD_c_nbWorkers); 0 = compress on the caller */
};

/* Compresses src_size bytes of src_fd (from offset 0) into dst, which the
 * caller still owns (commit or abort it after). *out_size gets the compressed
 * size. cancel (may be NULL) set -> NN_ECANCELED. A source shorter than
 * src_size is NN_EIO. */
enum nn_status blob_zstd_compress_fd(int src_fd, int64_t src_size, struct blob_writer *dst,
				     const struct blob_zstd_opts *opts, const atomic_bool *cancel,
				     int64_t *out_size, struct nn_err *e);

#endif
