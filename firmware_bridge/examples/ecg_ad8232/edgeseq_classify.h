/* edgeseq_classify.h as shipped: classify mode off, the sketch streams samples only.
 * To classify on the device, overwrite this file (with model.c and model.h beside it) by
 *     python -m edgeseq.bridge.sketch C_BUNDLE SKETCH_DIR
 * (firmware_bridge/README.md, "Classifying on the device"). */
#ifndef EDGESEQ_CLASSIFY_H
#define EDGESEQ_CLASSIFY_H

#ifndef EDGESEQ_CLASSIFY
#define EDGESEQ_CLASSIFY 0
#endif

#endif
