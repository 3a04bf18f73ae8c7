/* cli_compress: `nncd compress` — a job spec run offline on a model file,
 * the same pipeline a daemon job runs.
 *
 *   nncd compress IN.onnx --spec SPEC.json -o OUT.onnx
 *                 [--dataset ID=DATA.npz|X.npy]... [--model ID=MODEL.onnx]...
 *                 [--threads N]
 *
 * The spec is the one a job would take; the dataset and model ids it names
 * ("dataset", "eval.dataset", steps[i].dataset, "teacher"/"student"
 * {"model": id}) are mapped to local files by --dataset / --model, so static
 * quantization, dead-neuron removal, pruning with reconstruction,
 * distillation and evaluation work offline exactly as in the daemon. Prints
 * the report ({"input", "output", "steps", "artifact_runtime"} and, with
 * "eval", "metrics": {"input"}) as JSON on stdout; progress and epoch
 * events on stderr. Exit 0 ok, 1 error, 2 usage. */
#ifndef NNCD_CLI_COMPRESS_H
#define NNCD_CLI_COMPRESS_H

/* argv holds the arguments after "compress". */
int cli_compress_main(int argc, char **argv);

#endif
