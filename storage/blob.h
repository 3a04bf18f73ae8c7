/* blob: the content-addressed blob store under DATA_DIR/blobs/sha256/xx/<hex>.
 *
 * Writers stream into DATA_DIR/tmp/ while hashing (sha256, libcrypto); commit
 * fsyncs the file, renames it into place and fsyncs the directory, so a crash
 * never leaves a partial blob under blobs/. Identical content is stored once
 * (commit of an existing hash discards the temp file). Opening the store
 * empties tmp/ (leftovers of a crash). Thread-safe: writers are independent;
 * the store handle is read-only after open. */
#ifndef NNCD_BLOB_H
#define NNCD_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct blob_store;
struct blob_writer;

enum nn_status blob_store_open(const char *data_dir, struct blob_store **out, struct nn_err *e);
void blob_store_close(struct blob_store *bs);

enum nn_status blob_writer_new(struct blob_store *bs, struct blob_writer **out, struct nn_err *e);
/* NN_ENOSPC when the disk is full, NN_EIO otherwise. */
enum nn_status blob_writer_write(struct blob_writer *w, const void *data, size_t len,
				 struct nn_err *e);
int64_t blob_writer_size(const struct blob_writer *w);
/* Read-only access to what was written so far (for validation before commit). */
int blob_writer_fd(const struct blob_writer *w);
/* sha256 of what was written so far, without committing (w stays usable):
 * for an upload whose hash is reported but whose bytes are not kept. */
enum nn_status blob_writer_sha256(const struct blob_writer *w, char sha_hex[65],
				  struct nn_err *e);
/* Makes the blob visible and frees w (also on failure). sha_hex gets 64 hex chars + NUL. */
enum nn_status blob_writer_commit(struct blob_writer *w, char sha_hex[65], int64_t *size,
				  struct nn_err *e);
/* Discards the temp file and frees w. NULL is fine. */
void blob_writer_abort(struct blob_writer *w);

/* Path of a blob (whether or not it exists). */
void blob_path(const struct blob_store *bs, const char *sha_hex, char *buf, size_t cap);
/* Opens a blob read-only. NN_ENOTFOUND if absent. */
enum nn_status blob_open(const struct blob_store *bs, const char *sha_hex, int *fd, int64_t *size,
			 struct nn_err *e);
/* Removes a blob; absent is not an error. */
enum nn_status blob_remove(struct blob_store *bs, const char *sha_hex, struct nn_err *e);
/* Serialises "commit a blob + insert the row that refers to it" against
 * "check that no row refers to a blob + remove it", so a dedupe never lands
 * on a blob that is being removed. Hold it only around those short steps. */
void blob_gc_lock(struct blob_store *bs);
void blob_gc_unlock(struct blob_store *bs);

/* Calls fn for every committed blob (for garbage collection at start-up). */
enum nn_status blob_foreach(const struct blob_store *bs, void (*fn)(void *ud, const char *sha_hex),
			    void *ud, struct nn_err *e);

#endif
