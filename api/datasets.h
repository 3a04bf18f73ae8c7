/* api_datasets: the /v1/datasets endpoints (upload, list, get, delete).
 *
 * An upload arrives as a raw .npy or .npz body that api/server.c has already
 * streamed into rq->upload (a blob writer, as for models). Ingest validates
 * every array before anything is stored: an .npy is one array and its upload
 * blob becomes that array's blob; an .npz is unpacked member by member into
 * blobs of their own (standalone .npy files, bomb limits derived from
 * --max-upload) and the archive itself is not kept. A refused upload leaves
 * no row, no blob and nothing in tmp/.
 * Threading: called on MHD's request threads; a struct request belongs to the
 * one thread serving it. Blob commits and row inserts (and deletes and blob
 * removals) run under blob_gc_lock so a dedupe never lands on a blob being
 * removed. */
#ifndef NNCD_API_DATASETS_H
#define NNCD_API_DATASETS_H

#include <microhttpd.h>

#include "request.h"

/* POST /v1/datasets?name=NAME[&array=ARRAY][&model=mdl_...] (body in rq->upload). */
enum MHD_Result api_datasets_post(struct request *rq);
/* GET /v1/datasets?limit&after */
enum MHD_Result api_datasets_list(struct request *rq);
/* GET /v1/datasets/{id} (rq->id) */
enum MHD_Result api_datasets_get(struct request *rq);
/* DELETE /v1/datasets/{id}: 204, 404, or 409 while an unfinished job names it. */
enum MHD_Result api_datasets_delete(struct request *rq);

#endif
