/* calib: prints the range every method chooses for raw float32 sample files,
 * fed in chunks of 997 values (streamed as quant_static feeds it), for
 * tests/unit/data/calib_reference.py to compare with its numpy references.
 * Usage: test_calib FILE... ; one line per file and setting:
 *   FILE METHOD PERCENTILE INT8SYM LO HI SCALE ZP */
#include <stdio.h>
#include <stdlib.h>

#include "calib.h"

static const char *const names[] = {"minmax", "percentile", "entropy", "mse"};

static int run(const char *path, enum calib_method method, double pct, bool sym)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "cannot open %s\n", path);
		return 1;
	}
	float buf[997];
	struct calib_stats s;
	struct nn_err e = {0};
	calib_init(&s);
	size_t n;
	while ((n = fread(buf, sizeof *buf, 997, f)) > 0)
		calib_observe_minmax(&s, buf, n);
	bool absv;
	if (calib_needs_hist(method, sym, &absv)) {
		if (calib_hist_begin(&s, CALIB_BINS, absv, &e) != NN_OK) {
			fprintf(stderr, "%s\n", e.message);
			fclose(f);
			return 1;
		}
		rewind(f);
		while ((n = fread(buf, sizeof *buf, 997, f)) > 0)
			calib_observe_hist(&s, buf, n);
	}
	fclose(f);
	double lo, hi;
	if (calib_range(&s, method, pct, sym, &lo, &hi, &e) != NN_OK) {
		fprintf(stderr, "%s\n", e.message);
		calib_free(&s);
		return 1;
	}
	float sc;
	int32_t zp;
	calib_qparams(lo, hi, sym, &sc, &zp);
	printf("%s %s %.17g %d %.17g %.17g %.9g %d\n", path, names[method], pct, sym ? 1 : 0, lo, hi,
	       (double)sc, zp);
	calib_free(&s);
	return 0;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		for (int sym = 0; sym < 2; sym++) {
			if (run(argv[i], CALIB_MINMAX, 99.99, sym) ||
			    run(argv[i], CALIB_PERCENTILE, 99.99, sym) ||
			    run(argv[i], CALIB_PERCENTILE, 99.9, sym) ||
			    run(argv[i], CALIB_ENTROPY, 99.99, sym) || run(argv[i], CALIB_MSE, 99.99, sym))
				return 1;
		}
	}
	return 0;
}
