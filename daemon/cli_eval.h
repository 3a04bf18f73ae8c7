/* cli_eval: `nncd eval MODEL.onnx --data DATA.npz` — the daemon's job
 * evaluation (engine/eval.h), offline on local files.
 *
 *   nncd eval MODEL.onnx --data DATA.npz|X.npy [--labels Y.npy] [--scale S]
 *             [--holdout F] [--metrics accuracy,fidelity,size,latency]
 *             [--reference ORIGINAL.onnx] [--threads N]
 *
 * Prints one JSON object on stdout ({"model", "data", "metrics"} and, with
 * --reference, "reference_metrics"); exit 0 ok, 1 error (message on stderr),
 * 2 usage. The arrays are picked by the same rules as uploaded datasets
 * (dataset.h). Single-threaded apart from the executor's own slices. */
#ifndef NNCD_CLI_EVAL_H
#define NNCD_CLI_EVAL_H

/* argv holds the arguments after "eval". */
int cli_eval_main(int argc, char **argv);

#endif
