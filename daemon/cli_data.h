/* cli_data: a local .npz or .npy file as the arrays of a dataset, for the
 * offline commands (`nncd eval`, `nncd compress`).
 *
 * An .npz's members are extracted into anonymous memory files (memfd) so
 * they are read through the same fd-based loaders the daemon uses on its
 * blobs; an .npy is one array named "x" (the loader says what a file that is
 * neither is). Caps: 16 GiB per member, NPZ_MAX_MEMBERS members. No state. */
#ifndef NNCD_CLI_DATA_H
#define NNCD_CLI_DATA_H

#include "err.h"
#include "job_data.h"

enum nn_status cli_data_open(const char *path, struct job_arrays *out, struct nn_err *e);

#endif
