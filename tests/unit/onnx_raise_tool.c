/* onnx_raise_tool IN OUT VERSION: loads IN, raises its default opset to
 * VERSION with onnx_raise_opset, saves OUT. Exit 0 on success, 3 when the
 * conversion is refused, 1 on other errors. Driven by onnx_opset_ort_check.js,
 * which compares ONNX Runtime's outputs on IN and OUT. */
#include <stdio.h>
#include <stdlib.h>

#include "onnx_io.h"

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s IN OUT VERSION\n", argv[0]);
		return 2;
	}
	struct nn_err e = { 0 };
	struct onnx_model *m = NULL;
	if (onnx_load_file(argv[1], &m, &e) != NN_OK) {
		fprintf(stderr, "load: %s\n", e.message);
		return 1;
	}
	enum nn_status st = onnx_raise_opset(m, atoll(argv[3]), &e);
	if (st == NN_OK)
		st = onnx_save_file(m, argv[2], &e);
	onnx_free(m);
	if (st != NN_OK) {
		fprintf(stderr, "%s\n", e.message);
		return st == NN_EUNSUPPORTED ? 3 : 1;
	}
	return 0;
}
