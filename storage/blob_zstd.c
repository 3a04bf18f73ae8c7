/* blob_zstd: streamed zstd compression of a file into a blob writer (see
 * blob_zstd.h). One ZSTD_CCtx per call: contexts at high levels hold tens of
 * MiB, and a call per finished job is rare enough that reusing one is not
 * worth a shared, locked cache. */
#include "blob_zstd.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

/* Source chunk: big enough that pread and the writer see few calls, small
 * enough to keep memory flat (the output buffer is ZSTD_CStreamOutSize). */
#define CHUNK (1u << 20)

static enum nn_status zfail(struct nn_err *e, size_t rc, const char *what)
{
	return err_set(e, NN_EINTERNAL, "internal", NULL, "zstd %s: %s", what,
		       ZSTD_getErrorName(rc));
}

static enum nn_status set_param(ZSTD_CCtx *cc, ZSTD_cParameter p, int v, const char *what,
				struct nn_err *e)
{
	size_t rc = ZSTD_CCtx_setParameter(cc, p, v);
	return ZSTD_isError(rc) ? zfail(e, rc, what) : NN_OK;
}

enum nn_status blob_zstd_compress_fd(int src_fd, int64_t src_size, struct blob_writer *dst,
				     const struct blob_zstd_opts *opts, const atomic_bool *cancel,
				     int64_t *out_size, struct nn_err *e)
{
	*out_size = 0;
	if (src_size < 0)
		return err_set(e, NN_EINVAL, "invalid", NULL, "negative source size");
	int level = opts && opts->level ? opts->level : BLOB_ZSTD_LEVEL;
	int workers = opts ? opts->workers : 0;
	if (level < 1 || level > ZSTD_maxCLevel())
		return err_set(e, NN_EINVAL, "invalid", "level", "zstd level %d is not in [1, %d]",
			       level, ZSTD_maxCLevel());
	if (workers < 0)
		return err_set(e, NN_EINVAL, "invalid", "workers", "negative zstd worker count");
	enum nn_status st = NN_OK;
	size_t out_cap = ZSTD_CStreamOutSize();
	unsigned char *in = malloc(CHUNK), *out = malloc(out_cap);
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	int64_t total = 0;
	if (!in || !out || !cc) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", NULL, "zstd compression buffers");
		goto out;
	}
	if ((st = set_param(cc, ZSTD_c_compressionLevel, level, "level", e)) ||
	    (st = set_param(cc, ZSTD_c_checksumFlag, 1, "checksum", e)))
		goto out;
	/* A libzstd built without threads refuses nbWorkers > 0: then the
	 * caller's thread does the work, which is only slower. */
	if (workers > 0 && ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_nbWorkers, workers)))
		ZSTD_CCtx_setParameter(cc, ZSTD_c_nbWorkers, 0);
	/* The size goes in the frame header, and lets zstd size its tables to
	 * the input (small artifacts then need far less memory). */
	size_t rc = ZSTD_CCtx_setPledgedSrcSize(cc, (unsigned long long)src_size);
	if (ZSTD_isError(rc)) {
		st = zfail(e, rc, "source size");
		goto out;
	}
	int64_t off = 0;
	for (;;) {
		if (cancel && atomic_load(cancel)) {
			st = err_set(e, NN_ECANCELED, "canceled", NULL, "canceled");
			goto out;
		}
		size_t want = src_size - off < (int64_t)CHUNK ? (size_t)(src_size - off) : CHUNK;
		size_t got = 0;
		while (got < want) {
			ssize_t r = pread(src_fd, in + got, want - got, (off_t)(off + (int64_t)got));
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				st = err_set(e, NN_EIO, "io_error", NULL, "reading the source: %s",
					     strerror(errno));
				goto out;
			}
			if (r == 0) {
				st = err_set(e, NN_EIO, "io_error", NULL,
					     "source ended at %lld of %lld bytes",
					     (long long)(off + (int64_t)got), (long long)src_size);
				goto out;
			}
			got += (size_t)r;
		}
		off += (int64_t)got;
		bool last = off == src_size;
		ZSTD_inBuffer ib = {in, got, 0};
		ZSTD_EndDirective mode = last ? ZSTD_e_end : ZSTD_e_continue;
		bool done;
		do {
			ZSTD_outBuffer ob = {out, out_cap, 0};
			size_t left = ZSTD_compressStream2(cc, &ob, &ib, mode);
			if (ZSTD_isError(left)) {
				st = zfail(e, left, "compression");
				goto out;
			}
			if (ob.pos && (st = blob_writer_write(dst, out, ob.pos, e)))
				goto out;
			total += (int64_t)ob.pos;
			/* e_end: done when the frame is flushed; e_continue: when
			 * this chunk is consumed (zstd keeps the rest buffered). */
			done = last ? left == 0 : ib.pos == ib.size;
		} while (!done);
		if (last)
			break;
	}
	*out_size = total;
out:
	ZSTD_freeCCtx(cc);
	free(in);
	free(out);
	return st;
}
