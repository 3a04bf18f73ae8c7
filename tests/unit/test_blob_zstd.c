/* Unit tests of storage/blob_zstd.c: a file compressed into a blob writer
 * decompresses (libzstd) to exactly the file's bytes, across several source
 * chunks, with worker threads, and for an empty file; the frame records the
 * content size; a short source and a cancel are errors that leave the
 * writer to the caller. One case per argument (meson runs each alone). */
#include <fcntl.h>
#include <ftw.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "blob.h"
#include "blob_zstd.h"

static int failures;

#define CHECK(cond)                                                                       \
	do {                                                                              \
		if (!(cond)) {                                                            \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			failures++;                                                       \
		}                                                                         \
	} while (0)
#define CHECK_ST(call, want)                                                              \
	do {                                                                              \
		err_clear(&e);                                                            \
		enum nn_status got_ = (call);                                             \
		if (got_ != (want)) {                                                     \
			fprintf(stderr, "%s:%d: %s -> %s (%s: %s), want %s\n", __FILE__,   \
				__LINE__, #call, err_status_name(got_), e.code, e.message,  \
				err_status_name(want));                                   \
			failures++;                                                       \
		}                                                                         \
	} while (0)

static char tmpdir[256];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* n bytes like a pruned float model's: long zero runs between runs of
 * pseudo-random bytes (xorshift, fixed seed), so the content is neither
 * trivial nor incompressible. */
static unsigned char *model_like_bytes(size_t n)
{
	unsigned char *p = malloc(n ? n : 1);
	if (!p) {
		perror("malloc");
		exit(1);
	}
	uint32_t x = 2463534242u;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (i / 4096) % 3 == 0 ? (unsigned char)x : 0;
	}
	return p;
}

/* Writes bytes to a blob writer (the source, as the worker's artifact). */
static struct blob_writer *source_writer(struct blob_store *bs, const unsigned char *p, size_t n)
{
	struct nn_err e = {0};
	struct blob_writer *w = NULL;
	CHECK_ST(blob_writer_new(bs, &w, &e), NN_OK);
	CHECK_ST(blob_writer_write(w, p, n, &e), NN_OK);
	return w;
}

/* Compresses n bytes with opts, commits the zstd blob, reads it back and
 * checks it decompresses to exactly the input. */
static void roundtrip(struct blob_store *bs, size_t n, const struct blob_zstd_opts *opts)
{
	struct nn_err e = {0};
	unsigned char *src = model_like_bytes(n);
	struct blob_writer *in = source_writer(bs, src, n), *out = NULL;
	int64_t zsize = -1, committed = -1;
	char sha[65];
	CHECK_ST(blob_writer_new(bs, &out, &e), NN_OK);
	CHECK_ST(blob_zstd_compress_fd(blob_writer_fd(in), (int64_t)n, out, opts, NULL, &zsize, &e),
		 NN_OK);
	CHECK(zsize > 0 && zsize == blob_writer_size(out));
	CHECK_ST(blob_writer_commit(out, sha, &committed, &e), NN_OK);
	CHECK(committed == zsize);
	blob_writer_abort(in);

	int fd = -1;
	int64_t size = 0;
	CHECK_ST(blob_open(bs, sha, &fd, &size, &e), NN_OK);
	CHECK(size == zsize);
	unsigned char *z = malloc((size_t)size);
	CHECK(z && read(fd, z, (size_t)size) == (ssize_t)size);
	close(fd);
	unsigned long long content = ZSTD_getFrameContentSize(z, (size_t)size);
	CHECK(content == (unsigned long long)n);
	unsigned char *back = malloc(n + 1);
	size_t got = ZSTD_decompress(back, n + 1, z, (size_t)size);
	CHECK(!ZSTD_isError(got) && got == n);
	CHECK(!ZSTD_isError(got) && memcmp(back, src, n) == 0);
	printf("%zu bytes -> %lld (level %d, %d workers)\n", n, (long long)zsize,
	       opts && opts->level ? opts->level : BLOB_ZSTD_LEVEL, opts ? opts->workers : 0);
	free(back);
	free(z);
	free(src);
}

static void test_roundtrip(struct blob_store *bs)
{
	roundtrip(bs, 5u << 20 | 12345, NULL); /* several 1 MiB source chunks + a tail */
	roundtrip(bs, 1, NULL);
	roundtrip(bs, 0, NULL);
	struct blob_zstd_opts fast = {.level = 1};
	roundtrip(bs, 3u << 20, &fast);
}

static void test_workers(struct blob_store *bs)
{
	struct blob_zstd_opts opts = {.level = BLOB_ZSTD_LEVEL, .workers = 2};
	roundtrip(bs, 9u << 20, &opts);
}

static void test_short_source_and_bad_opts(struct blob_store *bs)
{
	struct nn_err e = {0};
	unsigned char *src = model_like_bytes(1000);
	struct blob_writer *in = source_writer(bs, src, 1000), *out = NULL;
	int64_t zsize = 7;
	CHECK_ST(blob_writer_new(bs, &out, &e), NN_OK);
	/* The file holds 1000 bytes, the caller claims 5000. */
	CHECK_ST(blob_zstd_compress_fd(blob_writer_fd(in), 5000, out, NULL, NULL, &zsize, &e),
		 NN_EIO);
	CHECK(strstr(e.message, "1000 of 5000") != NULL);
	CHECK(zsize == 0);
	struct blob_zstd_opts bad = {.level = 99};
	CHECK_ST(blob_zstd_compress_fd(blob_writer_fd(in), 1000, out, &bad, NULL, &zsize, &e),
		 NN_EINVAL);
	CHECK_ST(blob_zstd_compress_fd(blob_writer_fd(in), -1, out, NULL, NULL, &zsize, &e),
		 NN_EINVAL);
	blob_writer_abort(out);
	blob_writer_abort(in);
	free(src);
}

static void test_cancel(struct blob_store *bs)
{
	struct nn_err e = {0};
	unsigned char *src = model_like_bytes(4u << 20);
	struct blob_writer *in = source_writer(bs, src, 4u << 20), *out = NULL;
	atomic_bool cancel = true;
	int64_t zsize = 7;
	CHECK_ST(blob_writer_new(bs, &out, &e), NN_OK);
	CHECK_ST(blob_zstd_compress_fd(blob_writer_fd(in), 4 << 20, out, NULL, &cancel, &zsize, &e),
		 NN_ECANCELED);
	CHECK(zsize == 0);
	blob_writer_abort(out);
	blob_writer_abort(in);
	free(src);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(struct blob_store *);
	} cases[] = {
		{"roundtrip", test_roundtrip},
		{"workers", test_workers},
		{"short_source", test_short_source_and_bad_opts},
		{"cancel", test_cancel},
	};
	int ran = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
			continue;
		const char *base = getenv("TMPDIR");
		snprintf(tmpdir, sizeof tmpdir, "%s/nncd-zstd-XXXXXX",
			 base && *base ? base : "/tmp");
		if (!mkdtemp(tmpdir)) {
			perror("mkdtemp");
			return 1;
		}
		struct nn_err e = {0};
		struct blob_store *bs = NULL;
		if (blob_store_open(tmpdir, &bs, &e) != NN_OK) {
			fprintf(stderr, "blob_store_open: %s\n", e.message);
			return 1;
		}
		cases[i].fn(bs);
		blob_store_close(bs);
		nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		ran++;
	}
	if (!ran) {
		fprintf(stderr, "unknown case %s\n", argv[1]);
		return 2;
	}
	if (failures)
		fprintf(stderr, "%d check(s) failed\n", failures);
	return failures ? 1 : 0;
}
