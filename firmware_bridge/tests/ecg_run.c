/* Host driver of the C ECG front end, for the parity checks against the Python stream
 * (tests/test_ecg_frontend_c.py, tools/bench/ecg_frontend_c.py).
 *
 *   ecg_run SAMPLES.f32 BEATS.bin
 *
 * SAMPLES.f32: little-endian float32 samples (mV), pushed one at a time, then flushed.
 * BEATS.bin: per beat, uint32 r, float window[ES_ECG_WINDOW], float rr[ES_ECG_FEATURES] (host order).
 * stdout: "key value" lines: the layout, the state size and the counters. */
#include <stdio.h>
#include <stdlib.h>

#include "edgeseq_ecg.h"

static es_ecg_t state; /* as on the device: a static, never on the stack */

static void write_beat(FILE *out, const es_beat_t *b, unsigned long *n) {
    if (fwrite(&b->r, sizeof b->r, 1, out) != 1 ||
        fwrite(b->window, sizeof(float), ES_ECG_WINDOW, out) != ES_ECG_WINDOW ||
        fwrite(b->rr, sizeof(float), ES_ECG_FEATURES, out) != ES_ECG_FEATURES) {
        fprintf(stderr, "ecg_run: write failed\n");
        exit(1);
    }
    (*n)++;
}

int main(int argc, char **argv) {
    static const es_ecg_config_t cfg = ES_ECG_CONFIG_INIT;
    static es_beat_t beat;
    FILE *in, *out;
    float buf[4096];
    size_t got, i;
    unsigned long beats = 0, rejected_calls = 0;
    int rc;
    if (argc != 3) {
        fprintf(stderr, "usage: ecg_run SAMPLES.f32 BEATS.bin\n");
        return 2;
    }
    rc = es_ecg_init(&state, &cfg);
    if (rc) {
        fprintf(stderr, "ecg_run: es_ecg_init refused the config (%d)\n", rc);
        return 1;
    }
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (!in || !out) {
        fprintf(stderr, "ecg_run: cannot open %s\n", in ? argv[2] : argv[1]);
        return 1;
    }
    while ((got = fread(buf, sizeof(float), sizeof buf / sizeof buf[0], in)) > 0) {
        for (i = 0; i < got; i++) {
            rc = es_ecg_push(&state, buf[i], &beat);
            if (rc == 1) write_beat(out, &beat, &beats);
            if (rc == ES_ECG_REJECTED) rejected_calls++;
        }
    }
    while (es_ecg_flush(&state, &beat)) write_beat(out, &beat, &beats);
    fclose(in);
    if (fclose(out)) {
        fprintf(stderr, "ecg_run: cannot write %s\n", argv[2]);
        return 1;
    }
    printf("window %d\nfeatures %d\nstate_bytes %lu\nbeats %lu\nrejected_calls %lu\n", ES_ECG_WINDOW,
           ES_ECG_FEATURES, (unsigned long)sizeof(es_ecg_t), beats, rejected_calls);
    printf("samples %lu\nrejected %lu\nbeats_detected %lu\nbeats_unscored %lu\ndropped %lu\nresets %lu\n",
           (unsigned long)state.samples, (unsigned long)state.rejected, (unsigned long)state.beats_detected,
           (unsigned long)state.beats_unscored, (unsigned long)state.dropped, (unsigned long)state.resets);
    return 0;
}
