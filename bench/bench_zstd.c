/* bench_zstd: ratio and seconds of the artifacts' zstd copy (storage/blob_zstd)
 * per level and worker-thread count, on what jobs really produce: the MNIST
 * fixtures and a 100 MB model, each dense, magnitude-pruned 0.9 (global), and
 * pruned 0.8 + int8 per-channel, made by pipeline_run as a job would. The
 * figures behind BLOB_ZSTD_LEVEL and the worker's `workers = 0`
 * (docs/internals/blob.md). Not a test; prints a table.
 *
 * usage: bench_zstd [--quick] [TMPDIR]
 *   --quick: skip the 100 MB model (fixtures only).
 * Each (file, level, workers) is compressed `reps` times (3, or 1 for levels
 * >= 15 on files over 10 MB) through a blob writer, exactly as the worker
 * does; the median seconds is printed. The machines are noisy: compare
 * within one run. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "blob.h"
#include "blob_zstd.h"
#include "onnx_io.h"
#include "pipeline.h"
#include "synthmodel.h"

#ifndef NNCD_SOURCE_ROOT
#define NNCD_SOURCE_ROOT "."
#endif

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void die(const char *what, const struct nn_err *e)
{
	fprintf(stderr, "bench_zstd: %s: %s\n", what, e ? e->message : "failed");
	exit(1);
}

/* Runs spec_text's steps on src and saves the result to dst. */
static void make_variant(const char *src, const char *spec_text, const char *dst)
{
	struct nn_err e = {0};
	struct onnx_model *m = NULL;
	json_error_t jerr;
	json_t *spec = json_loads(spec_text, 0, &jerr);
	if (!spec)
		die("spec", NULL);
	if (onnx_load_file(src, &m, &e) != NN_OK)
		die(src, &e);
	struct pipeline_hooks hooks = {0};
	if (pipeline_run(m, spec, &hooks, &e) != NN_OK)
		die("pipeline_run", &e);
	if (onnx_save_file(m, dst, &e) != NN_OK)
		die(dst, &e);
	onnx_free(m);
	json_decref(spec);
}

static void bench_file(struct blob_store *bs, const char *label, const char *path)
{
	static const struct {
		int level, workers;
	} cfg[] = {{3, 0}, {6, 0}, {9, 0}, {9, 2}, {12, 0}, {15, 0}, {19, 0}, {19, 2}};
	struct nn_err e = {0};
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(path, NULL);
	off_t size = lseek(fd, 0, SEEK_END);
	for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
		struct blob_zstd_opts opts = {.level = cfg[c].level, .workers = cfg[c].workers};
		int reps = cfg[c].level >= 15 && size > (10 << 20) ? 1 : 3;
		double t[3];
		int64_t zsize = 0;
		for (int r = 0; r < reps; r++) {
			struct blob_writer *w = NULL;
			if (blob_writer_new(bs, &w, &e) != NN_OK)
				die("blob_writer_new", &e);
			double t0 = now();
			if (blob_zstd_compress_fd(fd, (int64_t)size, w, &opts, NULL, &zsize, &e) !=
			    NN_OK)
				die("blob_zstd_compress_fd", &e);
			t[r] = now() - t0;
			blob_writer_abort(w);
		}
		qsort(t, (size_t)reps, sizeof t[0], cmp_double);
		double sec = t[reps / 2];
		printf("%-16s %11lld  L%-2d W%d  %11lld  %6.3fx  %5.1f%%  %8.3f s  %7.1f MB/s\n",
		       label, (long long)size, cfg[c].level, cfg[c].workers, (long long)zsize,
		       (double)size / (double)zsize, 100.0 * (1.0 - (double)zsize / (double)size),
		       sec, (double)size / sec / 1e6);
		fflush(stdout);
	}
	close(fd);
}

int main(int argc, char **argv)
{
	bool quick = false;
	const char *tmp_base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0)
			quick = true;
		else
			tmp_base = argv[i];
	}
	char dir[512];
	snprintf(dir, sizeof dir, "%s/nncd-bench-zstd-XXXXXX", tmp_base);
	if (!mkdtemp(dir))
		die("mkdtemp", NULL);
	struct nn_err e = {0};
	struct blob_store *bs = NULL;
	if (blob_store_open(dir, &bs, &e) != NN_OK)
		die("blob_store_open", &e);

	static const char *const prune =
		"{\"steps\":[{\"op\":\"prune\",\"method\":\"magnitude\",\"sparsity\":0.9,"
		"\"scope\":\"global\"}]}";
	static const char *const pq =
		"{\"steps\":[{\"op\":\"prune\",\"method\":\"magnitude\",\"sparsity\":0.8,"
		"\"scope\":\"global\"},{\"op\":\"quantize\",\"scheme\":\"int8\","
		"\"granularity\":\"per_channel\"}]}";
	char src[1024], path[1024], label[64];
	const char *names[] = {"lenet300", "cnn", "big"};
	size_t n_names = quick ? 2 : 3;
	printf("%-16s %11s  %-6s  %11s  %7s  %6s  %10s  %12s\n", "artifact", "bytes", "level",
	       "zstd bytes", "ratio", "saved", "median", "speed");
	for (size_t i = 0; i < n_names; i++) {
		if (strcmp(names[i], "big") == 0) {
			/* 6 layers of 2048x2048 fp32 (25.2M parameters, ~100 MB). */
			static const size_t n = 2048 * 2048;
			struct synthmodel s = {.n_layers = 6};
			float *w[6];
			for (size_t l = 0; l < 6; l++) {
				/* Each layer its own values: repeats would flatter zstd. */
				if (!(w[l] = malloc(n * sizeof *w[l])))
					die("malloc", NULL);
				synthmodel_fill(w[l], n, 42 + l, 0.05f);
				s.dims[l] = 2048;
				s.gemm[l] = l % 2 == 0;
				s.weights[l] = w[l];
			}
			s.dims[6] = 2048;
			snprintf(src, sizeof src, "%s/big.onnx", dir);
			size_t len;
			if (synthmodel_write_file(&s, src, &len, &e) != NN_OK)
				die("synthmodel_write_file", &e);
			for (size_t l = 0; l < 6; l++)
				free(w[l]);
		} else {
			snprintf(src, sizeof src, "%s/tests/fixtures/%s.onnx", NNCD_SOURCE_ROOT,
				 names[i]);
		}
		snprintf(label, sizeof label, "%s dense", names[i]);
		bench_file(bs, label, src);
		snprintf(path, sizeof path, "%s/%s.prune.onnx", dir, names[i]);
		make_variant(src, prune, path);
		snprintf(label, sizeof label, "%s prune", names[i]);
		bench_file(bs, label, path);
		unlink(path);
		snprintf(path, sizeof path, "%s/%s.pq.onnx", dir, names[i]);
		make_variant(src, pq, path);
		snprintf(label, sizeof label, "%s p+q", names[i]);
		bench_file(bs, label, path);
		unlink(path);
		if (strcmp(names[i], "big") == 0)
			unlink(src);
	}
	blob_store_close(bs);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench_zstd: could not remove %s\n", dir);
	return 0;
}
