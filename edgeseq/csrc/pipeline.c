/* pipeline.c: the firmware's classify loop without its serial link (front end + model), as
 * `edgeseq profile --target` builds and runs it in an emulator. Each beat's inputs and logits are
 * copied out so the host can check them; that copy (135 floats a beat) is the only work here that
 * a firmware would not do. */
#include "edgeseq_ecg.h"
#include "model.h"

/* the front end's beat is the model's window: a bundle's own config makes both */
typedef char es_window_matches_model[(ES_ECG_WINDOW == ES_WINDOW_LENGTH && ES_ECG_FEATURES == ES_RR_SIZE) ? 1 : -1];

static es_ecg_t es_fe;
static es_beat_t es_b;

int es_pipeline_init(void) {
  static const es_ecg_config_t cfg = ES_ECG_CONFIG_INIT;
  return es_ecg_init(&es_fe, &cfg);
}

static int es_emit(int k, int max, uint32_t *r, float *win, float *rr, float *logits) {
  if (k < max) {
    r[k] = es_b.r;
    for (int i = 0; i < ES_ECG_WINDOW; ++i) win[k * ES_ECG_WINDOW + i] = es_b.window[i];
    for (int i = 0; i < ES_ECG_FEATURES; ++i) rr[k * ES_ECG_FEATURES + i] = es_b.rr[i];
    es_window(es_b.window, es_b.rr, logits + k * ES_LOGITS_SIZE);
  }
  return k + 1;
}

/* n samples (mV) through the front end, each beat through the model; flush: end of the stream. */
int es_pipeline_feed(const float *x, int n, int flush, uint32_t *r, float *win, float *rr, float *logits, int max) {
  int k = 0;
  for (int i = 0; i < n; ++i)
    if (es_ecg_push(&es_fe, x[i], &es_b) == 1) k = es_emit(k, max, r, win, rr, logits);
  if (flush)
    while (es_ecg_flush(&es_fe, &es_b) == 1) k = es_emit(k, max, r, win, rr, logits);
  return k;
}

/* The model alone, one beat: what instructions_per_beat counts. */
int es_pipeline_beat(const float *win, const float *rr, float *logits) { return es_window(win, rr, logits); }
