/* blob: content-addressed files under DATA_DIR/blobs/sha256/ab/abcdef…
 * (see blob.h for the contract, docs/internals/blob.md for the crash
 * guarantees).
 *
 * Owns: the blobs/ and tmp/ directories of a data dir, the temp files of
 * writers in flight, and the SHA-256 implementation fetched once at open.
 *
 * Threading: apart from gc_mu the blob_store is read-only after
 * blob_store_open, so any number of threads may use it at once; a blob_writer
 * belongs to one thread at a time. gc_mu only serializes callers' "commit +
 * insert row" against "check rows + remove" (blob_gc_lock); nothing in this
 * file takes it. Two writers committing the same content race harmlessly: both rename
 * identical bytes onto the same name, and rename is atomic. */
#include "blob.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

/* Start writeback every this many bytes, so commit's fsync finds little
 * left to flush and dirty pages do not pile up for a big upload. */
#define BLOB_WRITEBACK_CHUNK (8 << 20)

struct blob_store {
	char *blobs_dir; /* DATA_DIR/blobs/sha256 */
	char *tmp_dir;   /* DATA_DIR/tmp */
	int blobs_fd;    /* blobs_dir, O_DIRECTORY: base of every *at() call */
	EVP_MD *sha256;
	pthread_mutex_t gc_mu;
};

struct blob_writer {
	struct blob_store *bs;
	int fd;
	EVP_MD_CTX *md;
	int64_t size;
	int64_t flushed; /* bytes handed to writeback so far */
	bool failed;     /* a write failed: the content is incomplete */
	char tmp_path[];
};

static enum nn_status io_fail(struct nn_err *e, int err, const char *what, const char *path)
{
	if (err == ENOSPC || err == EDQUOT)
		return err_set(e, NN_ENOSPC, "disk_full", NULL, "disk full (%s %s)", what, path);
	if (err == EFBIG)
		return err_set(e, NN_ETOOBIG, "too_large", NULL,
			       "%s %s: file too large for the file system", what, path);
	if (err == ENOMEM)
		return err_set(e, NN_ENOMEM, "out_of_memory", NULL, "%s %s: %s", what, path,
			       strerror(err));
	return err_set(e, NN_EIO, "io_error", NULL, "%s %s: %s", what, path, strerror(err));
}

static bool is_sha_hex(const char *h)
{
	if (!h)
		return false;
	for (int i = 0; i < 64; i++) {
		char ch = h[i];
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
			return false;
	}
	return h[64] == '\0';
}

static enum nn_status bad_hash(struct nn_err *e, const char *sha_hex)
{
	return err_set(e, NN_EINVAL, "invalid", NULL, "'%.70s' is not a sha256 hex digest",
		       sha_hex ? sha_hex : "");
}

/* "ab/abcdef…" relative to blobs_fd. */
static void rel_path(const char *sha_hex, char out[68])
{
	snprintf(out, 68, "%.2s/%.64s", sha_hex, sha_hex);
}

static enum nn_status fsync_path(const char *dir, struct nn_err *e)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return io_fail(e, errno, "opening", dir);
	enum nn_status st = NN_OK;
	if (fsync(fd) != 0)
		st = io_fail(e, errno, "syncing", dir);
	close(fd);
	return st;
}

/* mkdir -p; each directory it creates is made durable by syncing its parent. */
static enum nn_status mkdir_p(const char *dir, struct nn_err *e)
{
	char path[4096];
	if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
		return err_set(e, NN_EINVAL, "invalid", NULL, "data directory path is too long");
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		path[--n] = '\0';
	for (char *p = path + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;
		*p = '\0';
		if (mkdir(path, 0755) == 0) {
			char *slash = strrchr(path, '/');
			char parent[4096];
			if (slash == path)
				snprintf(parent, sizeof parent, "/");
			else if (slash)
				snprintf(parent, sizeof parent, "%.*s", (int)(slash - path), path);
			else
				snprintf(parent, sizeof parent, ".");
			enum nn_status st = fsync_path(parent, e);
			if (st)
				return st;
		} else if (errno != EEXIST) {
			return io_fail(e, errno, "creating", path);
		}
		*p = saved;
		if (saved == '\0')
			break;
	}
	return NN_OK;
}

/* Removes what a crash left in tmp/: no writer of this process exists yet. */
static enum nn_status empty_tmp(const char *tmp_dir, struct nn_err *e)
{
	DIR *d = opendir(tmp_dir);
	if (!d)
		return io_fail(e, errno, "opening", tmp_dir);
	enum nn_status st = NN_OK;
	struct dirent *de;
	errno = 0;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) != 0 && errno != ENOENT && errno != EISDIR) {
			st = io_fail(e, errno, "removing leftover", de->d_name);
			break;
		}
		errno = 0;
	}
	if (!st && errno != 0)
		st = io_fail(e, errno, "reading", tmp_dir);
	closedir(d);
	return st;
}

static char *join(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 2;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", a, b);
	return p;
}

enum nn_status blob_store_open(const char *data_dir, struct blob_store **out, struct nn_err *e)
{
	*out = NULL;
	if (!data_dir || !*data_dir)
		return err_set(e, NN_EINVAL, "invalid", NULL, "no data directory given");
	enum nn_status st;
	struct blob_store *bs = calloc(1, sizeof *bs);
	if (!bs)
		return err_set(e, NN_ENOMEM, "out_of_memory", NULL, "blob store");
	bs->blobs_fd = -1;
	pthread_mutex_init(&bs->gc_mu, NULL);
	bs->blobs_dir = join(data_dir, "blobs/sha256");
	bs->tmp_dir = join(data_dir, "tmp");
	if (!bs->blobs_dir || !bs->tmp_dir) {
		st = err_set(e, NN_ENOMEM, "out_of_memory", NULL, "blob store");
		goto fail;
	}
	if ((st = mkdir_p(bs->blobs_dir, e)) || (st = mkdir_p(bs->tmp_dir, e)))
		goto fail;
	if ((st = empty_tmp(bs->tmp_dir, e)))
		goto fail;
	bs->blobs_fd = open(bs->blobs_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (bs->blobs_fd < 0) {
		st = io_fail(e, errno, "opening", bs->blobs_dir);
		goto fail;
	}
	bs->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!bs->sha256) {
		st = err_set(e, NN_EINTERNAL, "internal", NULL, "libcrypto has no SHA-256");
		goto fail;
	}
	*out = bs;
	return NN_OK;
fail:
	blob_store_close(bs);
	return st;
}

void blob_store_close(struct blob_store *bs)
{
	if (!bs)
		return;
	if (bs->blobs_fd >= 0)
		close(bs->blobs_fd);
	EVP_MD_free(bs->sha256);
	pthread_mutex_destroy(&bs->gc_mu);
	free(bs->blobs_dir);
	free(bs->tmp_dir);
	free(bs);
}

static void writer_free(struct blob_writer *w, bool unlink_tmp)
{
	if (w->fd >= 0)
		close(w->fd);
	if (unlink_tmp)
		unlink(w->tmp_path);
	EVP_MD_CTX_free(w->md);
	free(w);
}

enum nn_status blob_writer_new(struct blob_store *bs, struct blob_writer **out, struct nn_err *e)
{
	*out = NULL;
	size_t n = strlen(bs->tmp_dir) + sizeof "/upload-XXXXXX";
	struct blob_writer *w = calloc(1, sizeof *w + n);
	if (!w)
		return err_set(e, NN_ENOMEM, "out_of_memory", NULL, "blob writer");
	w->bs = bs;
	w->fd = -1;
	snprintf(w->tmp_path, n, "%s/upload-XXXXXX", bs->tmp_dir);
	w->md = EVP_MD_CTX_new();
	if (!w->md || !EVP_DigestInit_ex(w->md, bs->sha256, NULL)) {
		EVP_MD_CTX_free(w->md);
		free(w);
		return err_set(e, NN_ENOMEM, "out_of_memory", NULL, "sha256 context");
	}
	w->fd = mkostemp(w->tmp_path, O_CLOEXEC);
	if (w->fd < 0) {
		enum nn_status st = io_fail(e, errno, "creating a temp file in", bs->tmp_dir);
		w->fd = -1;
		EVP_MD_CTX_free(w->md);
		free(w);
		return st;
	}
	*out = w;
	return NN_OK;
}

enum nn_status blob_writer_write(struct blob_writer *w, const void *data, size_t len,
				 struct nn_err *e)
{
	if (w->failed)
		return err_set(e, NN_EIO, "io_error", NULL, "an earlier write to this blob failed");
	if (len > (uint64_t)(INT64_MAX - w->size)) {
		w->failed = true;
		return err_set(e, NN_ETOOBIG, "too_large", NULL, "blob size overflows");
	}
	/* Straight from the caller's buffer to the kernel and to the hash: no
	 * copy of our own. */
	const unsigned char *p = data;
	size_t done = 0;
	while (done < len) {
		size_t chunk = len - done;
		if (chunk > (1u << 30))
			chunk = 1u << 30;
		ssize_t n = write(w->fd, p + done, chunk);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			w->failed = true;
			return io_fail(e, errno, "writing", w->tmp_path);
		}
		done += (size_t)n;
	}
	if (len && !EVP_DigestUpdate(w->md, data, len)) {
		w->failed = true;
		return err_set(e, NN_EINTERNAL, "internal", NULL, "sha256 update failed");
	}
	w->size += (int64_t)len;
	if (w->size - w->flushed >= BLOB_WRITEBACK_CHUNK) {
		/* Asynchronous: starts writeback of the finished range and returns. */
		sync_file_range(w->fd, w->flushed, w->size - w->flushed, SYNC_FILE_RANGE_WRITE);
		w->flushed = w->size;
	}
	return NN_OK;
}

int64_t blob_writer_size(const struct blob_writer *w)
{
	return w->size;
}

int blob_writer_fd(const struct blob_writer *w)
{
	return w->fd;
}

enum nn_status blob_writer_sha256(const struct blob_writer *w, char sha_hex[65],
				  struct nn_err *e)
{
	/* Finalising a copy leaves the writer's own context open for more. */
	unsigned char dig[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *copy = EVP_MD_CTX_new();
	if (!copy)
		return err_set(e, NN_ENOMEM, "out_of_memory", NULL, "sha256 context");
	bool ok = EVP_MD_CTX_copy_ex(copy, w->md) && EVP_DigestFinal_ex(copy, dig, &dlen) &&
		  dlen == 32;
	EVP_MD_CTX_free(copy);
	if (!ok)
		return err_set(e, NN_EINTERNAL, "internal", NULL, "sha256 final failed");
	for (int i = 0; i < 32; i++)
		snprintf(sha_hex + 2 * i, 3, "%02x", dig[i]);
	return NN_OK;
}

void blob_writer_abort(struct blob_writer *w)
{
	if (w)
		writer_free(w, true);
}

enum nn_status blob_writer_commit(struct blob_writer *w, char sha_hex[65], int64_t *size,
				  struct nn_err *e)
{
	struct blob_store *bs = w->bs;
	enum nn_status st = NN_OK;
	unsigned char dig[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	char hex[65], rel[68];
	int shard_fd = -1;
	bool renamed = false; /* the temp name is free again: never unlink it */

	if (w->failed) {
		st = err_set(e, NN_EIO, "io_error", NULL, "an earlier write to this blob failed");
		goto fail;
	}
	if (!EVP_DigestFinal_ex(w->md, dig, &dlen) || dlen != 32) {
		st = err_set(e, NN_EINTERNAL, "internal", NULL, "sha256 final failed");
		goto fail;
	}
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", dig[i]);
	rel_path(hex, rel);

	/* Content is immutable from now on; the mode is made durable with it. */
	if (fchmod(w->fd, 0444) != 0) {
		st = io_fail(e, errno, "chmod", w->tmp_path);
		goto fail;
	}
	if (fsync(w->fd) != 0) {
		st = io_fail(e, errno, "syncing", w->tmp_path);
		goto fail;
	}
	close(w->fd);
	w->fd = -1;

	struct stat sb;
	if (fstatat(bs->blobs_fd, rel, &sb, 0) == 0 && S_ISREG(sb.st_mode) && sb.st_size == w->size)
		goto done; /* already stored: the temp copy goes */

	char shard[3] = {hex[0], hex[1], '\0'};
	bool created = mkdirat(bs->blobs_fd, shard, 0755) == 0;
	if (!created && errno != EEXIST) {
		st = io_fail(e, errno, "creating shard directory in", bs->blobs_dir);
		goto fail;
	}
	if (created && fsync(bs->blobs_fd) != 0) {
		st = io_fail(e, errno, "syncing", bs->blobs_dir);
		goto fail;
	}
	if (renameat(AT_FDCWD, w->tmp_path, bs->blobs_fd, rel) != 0) {
		st = io_fail(e, errno, "moving into place", w->tmp_path);
		goto fail;
	}
	renamed = true;
	shard_fd = openat(bs->blobs_fd, shard, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (shard_fd < 0 || fsync(shard_fd) != 0) {
		/* The rename may not be durable: report failure, but the file is
		 * complete and correct, so it stays where it is. */
		st = io_fail(e, errno, "syncing shard directory of", hex);
		if (shard_fd >= 0)
			close(shard_fd);
		writer_free(w, false);
		return st;
	}
	close(shard_fd);
done:
	memcpy(sha_hex, hex, sizeof hex);
	if (size)
		*size = w->size;
	/* After a rename another writer may already own that temp name. */
	writer_free(w, !renamed);
	return NN_OK;
fail:
	writer_free(w, true);
	return st;
}

void blob_path(const struct blob_store *bs, const char *sha_hex, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/%.2s/%.64s", bs->blobs_dir, sha_hex, sha_hex);
}

enum nn_status blob_open(const struct blob_store *bs, const char *sha_hex, int *fd, int64_t *size,
			 struct nn_err *e)
{
	*fd = -1;
	if (!is_sha_hex(sha_hex))
		return bad_hash(e, sha_hex);
	char rel[68];
	rel_path(sha_hex, rel);
	int f = openat(bs->blobs_fd, rel, O_RDONLY | O_CLOEXEC);
	if (f < 0) {
		if (errno == ENOENT)
			return err_set(e, NN_ENOTFOUND, "not_found", NULL, "blob %s not found",
				       sha_hex);
		return io_fail(e, errno, "opening blob", sha_hex);
	}
	struct stat sb;
	if (fstat(f, &sb) != 0) {
		enum nn_status st = io_fail(e, errno, "stat of blob", sha_hex);
		close(f);
		return st;
	}
	*fd = f;
	if (size)
		*size = (int64_t)sb.st_size;
	return NN_OK;
}

enum nn_status blob_remove(struct blob_store *bs, const char *sha_hex, struct nn_err *e)
{
	if (!is_sha_hex(sha_hex))
		return bad_hash(e, sha_hex);
	char rel[68];
	rel_path(sha_hex, rel);
	/* The shard directory stays: removing it would race a concurrent commit
	 * between its mkdirat and its renameat. */
	if (unlinkat(bs->blobs_fd, rel, 0) != 0 && errno != ENOENT)
		return io_fail(e, errno, "removing blob", sha_hex);
	return NN_OK;
}

void blob_gc_lock(struct blob_store *bs)
{
	pthread_mutex_lock(&bs->gc_mu);
}

void blob_gc_unlock(struct blob_store *bs)
{
	pthread_mutex_unlock(&bs->gc_mu);
}

static bool is_hex_digit(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
}

static bool is_shard_name(const char *n)
{
	return is_hex_digit(n[0]) && is_hex_digit(n[1]) && n[2] == '\0';
}

enum nn_status blob_foreach(const struct blob_store *bs, void (*fn)(void *ud, const char *sha_hex),
			    void *ud, struct nn_err *e)
{
	int top_fd = openat(bs->blobs_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (top_fd < 0)
		return io_fail(e, errno, "opening", bs->blobs_dir);
	DIR *top = fdopendir(top_fd);
	if (!top) {
		enum nn_status st = io_fail(e, errno, "opening", bs->blobs_dir);
		close(top_fd);
		return st;
	}
	enum nn_status st = NN_OK;
	struct dirent *de;
	while (!st && (errno = 0, de = readdir(top))) {
		if (!is_shard_name(de->d_name))
			continue;
		int sfd = openat(bs->blobs_fd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (sfd < 0) {
			if (errno == ENOENT || errno == ENOTDIR)
				continue;
			st = io_fail(e, errno, "opening shard", de->d_name);
			break;
		}
		DIR *sd = fdopendir(sfd);
		if (!sd) {
			st = io_fail(e, errno, "opening shard", de->d_name);
			close(sfd);
			break;
		}
		struct dirent *fe;
		while ((errno = 0, fe = readdir(sd))) {
			/* Only names that can be ours: "xx/xx…" with 64 hex digits. */
			if (is_sha_hex(fe->d_name) && fe->d_name[0] == de->d_name[0] &&
			    fe->d_name[1] == de->d_name[1])
				fn(ud, fe->d_name);
		}
		if (errno != 0)
			st = io_fail(e, errno, "reading shard", de->d_name);
		closedir(sd);
	}
	if (!st && errno != 0)
		st = io_fail(e, errno, "reading", bs->blobs_dir);
	closedir(top);
	return st;
}
