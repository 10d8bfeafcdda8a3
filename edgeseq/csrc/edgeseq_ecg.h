/* edgeseq_ecg: the device-side ECG front end, a C99 twin of edgeseq.preprocess.stream.EcgBeatStream.
 *
 * Samples (mV) go in one at a time; beats come out as the model input (window, rr) that the Python
 * stream computes from the same samples: the same R peaks, the windows and features to float32
 * rounding (tests/test_ecg_frontend_c.py states the tolerance and checks it on MIT-BIH records).
 *
 * Freestanding: no malloc, no libm, no libc call; the whole state is one es_ecg_t whose size is
 * fixed at compile time by edgeseq_ecg_config.h (generated from a bundle's manifest by
 * edgeseq.export.c_frontend, so a bundle's own filter coefficients and detector settings are
 * compiled in). The arithmetic that decides R-peak positions is double, as in the Python.
 *
 * Non-finite samples: a NaN or infinite sample is refused (ES_ECG_REJECTED) and nothing of it is
 * used, as EcgBeatStream.feed refuses a chunk holding one; the stream index does not advance, so
 * a caller that must stay aligned with time pushes a substitute. Should an internal state still go
 * non-finite (it cannot from finite float samples with a stable filter: doubles do not overflow
 * there), the segment restarts at the next sample as EcgBeatStream does after an overflow: beats
 * being assembled are counted unscored and no beat is ever made from a non-finite value.
 */
#ifndef EDGESEQ_ECG_H
#define EDGESEQ_ECG_H

#include <stdint.h>

/* The capacities (ES_ECG_WINDOW, ES_ECG_HIST, ...) and ES_ECG_CONFIG_INIT of one configuration.
 * A host build may point ES_ECG_CONFIG_FILE at another generated header. */
#ifdef ES_ECG_CONFIG_FILE
#include ES_ECG_CONFIG_FILE
#else
#include "edgeseq_ecg_config.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define ES_ECG_FEATURES 9 /* edgeseq.preprocess.ecg.RR_FEATURES, in that order */
#define ES_ECG_REJECTED (-1)

/* Numbers of one bundle, sample counts already converted from seconds by the generator (with the
 * Python's own rounding). Second-order sections are normalised (a0 = 1): b0 b1 b2 1 a1 a2. */
typedef struct {
    double fs;
    /* beat windows: EcgPreprocessing */
    int32_t n_sections;
    double sos[ES_ECG_MAX_SECTIONS][6];
    int32_t pre, decimate, window, last_offset;
    int32_t local_beats, running_beats, irregularity_beats, template_beats;
    /* R peaks: QRSDetector */
    int32_t det_n_sections;
    double det_sos[ES_ECG_MAX_SECTIONS][6];
    int32_t mwi, refractory, twave, lookahead, refine, relearn, frame, group_delay, history, delay, n_avg;
    double twave_slope, th, searchback_rr, searchback_frac, init_rr, seed_ratio;
} es_ecg_config_t;

typedef struct {
    uint32_t r;                    /* R-peak index in the stream (0 = first sample after init/flush), mod 2^32 */
    float window[ES_ECG_WINDOW];   /* band-passed, decimated samples around r */
    float rr[ES_ECG_FEATURES];     /* interval and template features */
} es_beat_t;

typedef struct {
    double z[ES_ECG_MAX_SECTIONS][2];
} es_ecg_sos_t;

typedef struct {
    int64_t p, r;
    double amp, slope;
} es_ecg_cand_t;

typedef struct {
    int64_t r;
    double pre, post;
    double feats[7];
    double shape[2];
    uint8_t has_pre, has_post, win_state, win_bad;
    float win[ES_ECG_WINDOW];
} es_ecg_peak_t;

/* The streaming QRS detector (QRSDetector): histories indexed by sample position. */
typedef struct {
    es_ecg_sos_t bp;
    int64_t n;                     /* samples through the detector since its reset */
    int32_t fill;                  /* samples of the current frame so far */
    int32_t hp;                    /* history slot of sample n - 1 */
    uint8_t started;
    double y_last;
    double sqt[ES_ECG_MWI];        /* squared slopes still inside the MWI window (mwi - 1 used) */
    double sqf[ES_ECG_FRAME];      /* squared slopes of the current frame */
    double cs[ES_ECG_MWI + ES_ECG_FRAME]; /* their cumulative sum, restarted each frame as in the Python */
    double yh[ES_ECG_HIST], dh[ES_ECG_HIST], mh[ES_ECG_HIST];
    es_ecg_cand_t cands[ES_ECG_CANDS];
    int32_t c_head, c_n;
    int64_t rec_p[ES_ECG_RECENT];
    double rec_a[ES_ECG_RECENT];
    int32_t rec_head, rec_n;
    int64_t out[ES_ECG_OUT];
    int32_t out_head, out_n;
    double qrs[ES_ECG_NAVG], noise[ES_ECG_NAVG];
    int64_t rrs[ES_ECG_NAVG];
    int32_t qrs_head, qrs_n, noise_head, noise_n, rr_head, rr_n;
    uint8_t have_last;
    int64_t last_p, last_r;
    double last_slope;
} es_ecg_det_t;

typedef struct {
    es_ecg_config_t cfg;
    es_ecg_det_t det;
    /* beat windows */
    es_ecg_sos_t bp;
    float ring[ES_ECG_RING];       /* band-passed samples; slot rp holds segment sample n - 1 */
    int32_t rp;
    int64_t n;                     /* samples in the segment */
    int64_t origin;                /* stream index of the segment's first sample */
    es_ecg_peak_t pend[ES_ECG_PENDING];
    int32_t p_head, p_n;
    uint8_t have_last, ending;
    int64_t last_r;
    /* interval and template histories */
    double csum[ES_ECG_RUNNING + 1];
    int32_t cs_head, cs_n;
    double diffs[ES_ECG_IRREG];
    int32_t d_head, d_n;
    uint8_t have_pdiff, have_prev_iv;
    double pdiff, prev_iv;
    float tmpl[ES_ECG_TEMPLATE][ES_ECG_WINDOW];
    int32_t t_head, t_n;
    /* scratch, kept here so that the stack stays small */
    union {
        struct { double a[ES_ECG_WINDOW], b[ES_ECG_WINDOW]; } t;
        double seg[ES_ECG_SEEDSEG];
        double small[ES_ECG_IRREG + ES_ECG_NAVG];
    } scratch;
    float col[ES_ECG_TEMPLATE];
    /* counters, as EcgBeatStream's */
    uint32_t samples, rejected, beats_detected, beats_unscored, dropped, resets;
} es_ecg_t;

/* 0, or a negative number when cfg does not fit the compiled capacities (then s is unusable). */
int es_ecg_init(es_ecg_t *s, const es_ecg_config_t *cfg);

/* One sample in mV. 1: *beat was filled; 0: no beat; ES_ECG_REJECTED: x was not finite (unused).
 * At most one beat per call: one that finishes while another waits comes with a later call. */
int es_ecg_push(es_ecg_t *s, float x, es_beat_t *beat);

/* End of stream: call until it returns 0; each 1 fills *beat with one of the beats still pending.
 * Then the stream starts again at index 0 (the counters keep counting). */
int es_ecg_flush(es_ecg_t *s, es_beat_t *beat);

/* Freestanding math used above: sqrt correctly rounded (as the host's), log to about 1 ulp. */
double es_ecg_sqrt(double x);
double es_ecg_log(double x);

#ifdef __cplusplus
}
#endif

#endif /* EDGESEQ_ECG_H */
