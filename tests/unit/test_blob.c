/* Unit tests of storage/blob.c on a real directory (and, when the test may
 * create a private mount namespace, on a tiny tmpfs to hit ENOSPC).
 * One executable, one case per argument (meson runs each as its own test;
 * exit 77 = skipped). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "blob.h"

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

static const char SHA_ABC[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

static char tmpdir[256];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void make_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	snprintf(tmpdir, sizeof tmpdir, "%s/nncd-blob-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		exit(1);
	}
}

static void remove_tmpdir(void)
{
	/* blobs are 0444; remove() of a file only needs the directory writable */
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static struct blob_store *open_bs(const char *dir)
{
	struct nn_err e = {0};
	struct blob_store *bs = NULL;
	if (blob_store_open(dir, &bs, &e) != NN_OK) {
		fprintf(stderr, "blob_store_open(%s): %s\n", dir, e.message);
		exit(1);
	}
	return bs;
}

/* Files in DIR/sub (not counting . and ..); -1 if it cannot be read. */
static int count_entries(const char *dir, const char *sub)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, sub);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void count_cb(void *ud, const char *sha)
{
	(void)sha;
	(*(int *)ud)++;
}

static int count_blobs(struct blob_store *bs)
{
	struct nn_err e = {0};
	int n = 0;
	CHECK_ST(blob_foreach(bs, count_cb, &n, &e), NN_OK);
	return n;
}

static enum nn_status put(struct blob_store *bs, const void *data, size_t len, char sha[65],
			  struct nn_err *e)
{
	struct blob_writer *w = NULL;
	enum nn_status st = blob_writer_new(bs, &w, e);
	if (st)
		return st;
	if ((st = blob_writer_write(w, data, len, e))) {
		blob_writer_abort(w);
		return st;
	}
	int64_t size = -1;
	st = blob_writer_commit(w, sha, &size, e);
	if (!st && size != (int64_t)len)
		return NN_EINTERNAL;
	return st;
}

static void sha_hex_of(const void *data, size_t len, char out[65])
{
	unsigned char d[32];
	unsigned int n = 0;
	EVP_Digest(data, len, d, &n, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* ---- cases ---- */

static void test_known_hash(void)
{
	struct nn_err e = {0};
	struct blob_store *bs = open_bs(tmpdir);
	char sha[65] = "";
	CHECK_ST(put(bs, "abc", 3, sha, &e), NN_OK);
	CHECK(strcmp(sha, SHA_ABC) == 0);

	char path[512], want[512];
	blob_path(bs, sha, path, sizeof path);
	snprintf(want, sizeof want, "%s/blobs/sha256/ba/%s", tmpdir, SHA_ABC);
	CHECK(strcmp(path, want) == 0);
	struct stat sb;
	CHECK(stat(path, &sb) == 0 && sb.st_size == 3 && (sb.st_mode & 0222) == 0);

	int fd = -1;
	int64_t size = 0;
	CHECK_ST(blob_open(bs, sha, &fd, &size, &e), NN_OK);
	CHECK(size == 3);
	char buf[8] = "";
	CHECK(read(fd, buf, sizeof buf) == 3 && memcmp(buf, "abc", 3) == 0);
	CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	CHECK((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY);
	close(fd);

	/* Many 512 KiB chunks hash like the one-shot digest, and reading what
	 * was written so far works through blob_writer_fd before commit. */
	size_t chunk = 512 << 10, total = 6 * chunk + 12345;
	unsigned char *big = malloc(total);
	for (size_t i = 0; i < total; i++)
		big[i] = (unsigned char)(i * 2654435761u >> 13);
	struct blob_writer *w = NULL;
	CHECK_ST(blob_writer_new(bs, &w, &e), NN_OK);
	for (size_t off = 0; off < total; off += chunk)
		CHECK_ST(blob_writer_write(w, big + off, off + chunk > total ? total - off : chunk,
					   &e),
			 NN_OK);
	CHECK(blob_writer_size(w) == (int64_t)total);
	unsigned char head[16];
	CHECK(pread(blob_writer_fd(w), head, sizeof head, 0) == (ssize_t)sizeof head &&
	      memcmp(head, big, sizeof head) == 0);
	char want_sha[65];
	sha_hex_of(big, total, want_sha);
	CHECK_ST(blob_writer_commit(w, sha, &size, &e), NN_OK);
	CHECK(strcmp(sha, want_sha) == 0);
	CHECK(size == (int64_t)total);
	free(big);

	/* Empty content is a valid blob too. */
	CHECK_ST(put(bs, "", 0, sha, &e), NN_OK);
	CHECK(strcmp(sha, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
	CHECK(count_blobs(bs) == 3);
	CHECK(count_entries(tmpdir, "tmp") == 0);
	blob_store_close(bs);
}

struct dup_arg {
	struct blob_store *bs;
	char sha[65];
	enum nn_status st;
};

static void *dup_put(void *p)
{
	struct dup_arg *a = p;
	struct nn_err e = {0};
	static const char data[] = "the same bytes from every thread";
	a->st = put(a->bs, data, sizeof data, a->sha, &e);
	return NULL;
}

static void test_dedupe(void)
{
	struct nn_err e = {0};
	struct blob_store *bs = open_bs(tmpdir);
	char a[65], b[65];
	CHECK_ST(put(bs, "abc", 3, a, &e), NN_OK);
	CHECK_ST(put(bs, "abc", 3, b, &e), NN_OK);
	CHECK(strcmp(a, b) == 0);
	CHECK(count_blobs(bs) == 1);
	CHECK(count_entries(tmpdir, "blobs/sha256/ba") == 1);
	CHECK(count_entries(tmpdir, "tmp") == 0);

	/* Concurrent commits of identical content: one file, same answer. */
	struct dup_arg args[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct dup_arg){.bs = bs};
		pthread_create(&th[i], NULL, dup_put, &args[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK(args[i].st == NN_OK);
		CHECK(strcmp(args[i].sha, args[0].sha) == 0);
	}
	CHECK(count_blobs(bs) == 2);
	CHECK(count_entries(tmpdir, "tmp") == 0);

	/* remove, then absent; removing again is fine. */
	CHECK_ST(blob_remove(bs, a, &e), NN_OK);
	int fd = -1;
	CHECK_ST(blob_open(bs, a, &fd, NULL, &e), NN_ENOTFOUND);
	CHECK(fd == -1);
	CHECK_ST(blob_remove(bs, a, &e), NN_OK);
	CHECK(count_blobs(bs) == 1);
	CHECK_ST(blob_remove(bs, "../../etc/passwd", &e), NN_EINVAL);
	blob_store_close(bs);
}

static void test_abort_and_missing(void)
{
	struct nn_err e = {0};
	struct blob_store *bs = open_bs(tmpdir);
	struct blob_writer *w = NULL;
	CHECK_ST(blob_writer_new(bs, &w, &e), NN_OK);
	CHECK(count_entries(tmpdir, "tmp") == 1);
	CHECK_ST(blob_writer_write(w, "partial", 7, &e), NN_OK);
	blob_writer_abort(w);
	blob_writer_abort(NULL);
	CHECK(count_entries(tmpdir, "tmp") == 0);
	CHECK(count_entries(tmpdir, "blobs/sha256") == 0);
	CHECK(count_blobs(bs) == 0);

	int fd = 123;
	int64_t size = 77;
	CHECK_ST(blob_open(bs, SHA_ABC, &fd, &size, &e), NN_ENOTFOUND);
	CHECK(fd == -1);
	CHECK(strcmp(e.code, "not_found") == 0);
	CHECK_ST(blob_open(bs, "ba78", &fd, &size, &e), NN_EINVAL);
	CHECK_ST(blob_open(bs, "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
			   &fd, &size, &e),
		 NN_EINVAL);
	blob_store_close(bs);
}

static void test_tmp_emptied_at_open(void)
{
	struct blob_store *bs = open_bs(tmpdir);
	blob_store_close(bs);
	/* What a crash mid-upload leaves behind. */
	for (int i = 0; i < 3; i++) {
		char p[512];
		snprintf(p, sizeof p, "%s/tmp/upload-crash%d", tmpdir, i);
		FILE *f = fopen(p, "w");
		CHECK(f != NULL);
		if (f) {
			fputs("half an upload", f);
			fclose(f);
		}
	}
	/* A stray file in blobs/ that is not a blob is ignored by foreach. */
	char p[512];
	snprintf(p, sizeof p, "%s/blobs/sha256/README", tmpdir);
	FILE *f = fopen(p, "w");
	if (f)
		fclose(f);
	CHECK(count_entries(tmpdir, "tmp") == 3);
	bs = open_bs(tmpdir);
	CHECK(count_entries(tmpdir, "tmp") == 0);
	CHECK(count_blobs(bs) == 0);
	blob_store_close(bs);
}

/* RLIMIT_FSIZE makes write(2) fail with EFBIG (SIGXFSZ ignored): the writer
 * reports NN_ETOOBIG, commit refuses, and nothing is left behind. */
static void test_efbig(void)
{
	struct nn_err e = {0};
	struct blob_store *bs = open_bs(tmpdir);
	struct rlimit old;
	getrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, SIG_IGN);
	struct rlimit lim = {.rlim_cur = 64 << 10, .rlim_max = old.rlim_max};
	CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);

	size_t len = 512 << 10;
	char *buf = calloc(1, len);
	struct blob_writer *w = NULL;
	CHECK_ST(blob_writer_new(bs, &w, &e), NN_OK);
	if (w) {
		CHECK_ST(blob_writer_write(w, buf, len, &e), NN_ETOOBIG);
		CHECK(strcmp(e.code, "too_large") == 0);
		CHECK_ST(blob_writer_write(w, "x", 1, &e), NN_EIO); /* writer stays failed */
		char sha[65];
		CHECK_ST(blob_writer_commit(w, sha, NULL, &e), NN_EIO);
	}
	setrlimit(RLIMIT_FSIZE, &old);
	free(buf);
	CHECK(count_entries(tmpdir, "tmp") == 0);
	CHECK(count_blobs(bs) == 0);
	blob_store_close(bs);
}

/* A 256 KiB tmpfs in a private mount namespace: write(2) fails with ENOSPC.
 * Needs CAP_SYS_ADMIN (root in CI containers usually has it); skipped
 * otherwise. */
static int enospc_child(void)
{
	if (unshare(CLONE_NEWNS) != 0)
		return 77;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		return 77;
	if (mount("tmpfs", tmpdir, "tmpfs", 0, "size=256k") != 0)
		return 77;
	struct nn_err e = {0};
	struct blob_store *bs = open_bs(tmpdir);
	size_t len = 1 << 20;
	char *buf = calloc(1, len);
	struct blob_writer *w = NULL;
	CHECK_ST(blob_writer_new(bs, &w, &e), NN_OK);
	if (w) {
		enum nn_status st = NN_OK;
		for (int i = 0; i < 4 && st == NN_OK; i++)
			st = blob_writer_write(w, buf, len, &e);
		CHECK(st == NN_ENOSPC);
		CHECK(strcmp(e.code, "disk_full") == 0);
		CHECK(strstr(e.message, "disk full") != NULL);
		blob_writer_abort(w);
	}
	free(buf);
	CHECK(count_entries(tmpdir, "tmp") == 0);
	CHECK(count_blobs(bs) == 0);
	/* With the space back, the store works again. */
	char sha[65];
	CHECK_ST(put(bs, "abc", 3, sha, &e), NN_OK);
	blob_store_close(bs);
	umount2(tmpdir, MNT_DETACH);
	return failures ? 1 : 0;
}

static int test_enospc(void)
{
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0)
		_exit(enospc_child());
	int status = 0;
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status))
		return 1;
	return WEXITSTATUS(status);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} cases[] = {
		{"known_hash", test_known_hash},
		{"dedupe", test_dedupe},
		{"abort_missing", test_abort_and_missing},
		{"tmp_emptied", test_tmp_emptied_at_open},
		{"efbig", test_efbig},
	};
	if (argc > 1 && strcmp(argv[1], "enospc") == 0) {
		make_tmpdir();
		int rc = test_enospc();
		remove_tmpdir();
		if (rc == 77)
			fprintf(stderr, "skipped: cannot mount a private tmpfs here\n");
		return rc;
	}
	int ran = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
			continue;
		make_tmpdir();
		cases[i].fn();
		remove_tmpdir();
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
