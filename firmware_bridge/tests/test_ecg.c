/* Host tests of the C ECG front end that need no Python: a synthetic ECG gives beats where its
 * spikes are, non-finite samples are refused without a trace, a flush starts the stream again, a
 * diverging filter restarts the segment instead of producing a beat, and the freestanding math
 * agrees with the host's libm. Parity with the Python stream on real records is checked by
 * tests/test_ecg_frontend_c.py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeseq_ecg.h"

#define FS 360
#define PERIOD 288 /* 0.8 s */
#define N_SAMPLES (FS * 60)
#define MAX_BEATS 256

static es_ecg_t st;
static es_beat_t beats_a[MAX_BEATS], beats_b[MAX_BEATS];
static int failures;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            failures++;                                                                   \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            printf(__VA_ARGS__);                                                          \
            printf("\n");                                                                 \
        }                                                                                 \
    } while (0)

static uint32_t lcg = 12345u;
static float noise(void) {
    lcg = lcg * 1664525u + 1013904223u;
    return ((float)(lcg >> 8) / 16777216.0f - 0.5f) * 0.02f;
}

static float ecg(long i) {
    long k = i % PERIOD - PERIOD / 2;
    return 1.2f * (float)exp(-0.5 * (double)(k * k) / 16.0) + 0.1f * (float)sin(i * 0.01) + noise();
}

/* Pushes the synthetic record (with_nans: a NaN (1) or an infinity (2) before every 997th sample), flushes. */
static int run(const es_ecg_config_t *cfg, es_beat_t *out, int with_nans, int *rejected) {
    es_beat_t b;
    int n = 0, rc;
    long i;
    lcg = 12345u;
    *rejected = 0;
    CHECK(es_ecg_init(&st, cfg) == 0, "init");
    for (i = 0; i < N_SAMPLES; i++) {
        if (with_nans && i % 997 == 5) {
            float bad = with_nans == 1 ? (float)NAN : (float)INFINITY;
            rc = es_ecg_push(&st, bad, &b);
            CHECK(rc == ES_ECG_REJECTED, "non-finite sample accepted (%d)", rc);
            (*rejected)++;
        }
        rc = es_ecg_push(&st, ecg(i), &b);
        if (rc == 1 && n < MAX_BEATS) out[n++] = b;
    }
    while (es_ecg_flush(&st, &b)) {
        if (n < MAX_BEATS) out[n++] = b;
    }
    return n;
}

static int finite_beat(const es_beat_t *b) {
    int j;
    for (j = 0; j < ES_ECG_WINDOW; j++)
        if (!isfinite(b->window[j])) return 0;
    for (j = 0; j < ES_ECG_FEATURES; j++)
        if (!isfinite(b->rr[j])) return 0;
    return 1;
}

static void test_synthetic(const es_ecg_config_t *cfg) {
    int n, i, rej, bad = 0;
    n = run(cfg, beats_a, 0, &rej);
    /* every spike but the first and the last (no previous / next beat) and those in the
     * detector's learning phase */
    CHECK(n >= N_SAMPLES / PERIOD - 5 && n <= N_SAMPLES / PERIOD - 2, "%d beats", n);
    for (i = 0; i < n; i++) {
        long off = (long)beats_a[i].r % PERIOD - PERIOD / 2;
        if (off < -4 || off > 4 || !finite_beat(&beats_a[i])) bad++;
        if (i) CHECK(beats_a[i].r > beats_a[i - 1].r, "beats out of order");
        if (i && beats_a[i].r - beats_a[i - 1].r == PERIOD) {
            CHECK(fabsf(beats_a[i].rr[0] - (float)PERIOD / FS) < 1e-6f, "pre_rr %g", (double)beats_a[i].rr[0]);
        }
    }
    CHECK(bad == 0, "%d beats away from a spike or not finite", bad);
    CHECK(n > 10 && beats_a[n - 1].rr[7] > 0.95f, "template_corr %g", (double)beats_a[n - 1].rr[7]);
    CHECK(st.samples == N_SAMPLES && st.resets == 0 && st.rejected == 0, "counters");
    CHECK(st.beats_detected == (uint32_t)n + st.beats_unscored + st.dropped, "beats_detected %lu",
          (unsigned long)st.beats_detected);
    printf("%-24s ok (%d beats)\n", "ecg synthetic", n);
}

static void test_nonfinite_and_flush(const es_ecg_config_t *cfg) {
    int na, nb, nc, rej, i, same = 1;
    es_beat_t b;
    na = run(cfg, beats_a, 0, &rej);
    nb = run(cfg, beats_b, 1, &rej);
    CHECK(rej > 0 && st.rejected == (uint32_t)rej, "rejected %lu of %d", (unsigned long)st.rejected, rej);
    CHECK(na == nb && memcmp(beats_a, beats_b, sizeof(es_beat_t) * (size_t)na) == 0,
          "NaN samples left a trace (%d vs %d beats)", na, nb);
    nb = run(cfg, beats_b, 2, &rej);
    CHECK(na == nb && memcmp(beats_a, beats_b, sizeof(es_beat_t) * (size_t)na) == 0, "infinite samples left a trace");
    /* after a flush the stream starts again at index 0: the same record gives the same beats */
    nc = 0;
    lcg = 12345u;
    for (i = 0; i < N_SAMPLES; i++) {
        if (es_ecg_push(&st, ecg(i), &b) == 1 && nc < MAX_BEATS) beats_b[nc++] = b;
    }
    while (es_ecg_flush(&st, &b)) beats_b[nc++] = b;
    for (i = 0; i < na && i < nc; i++) same &= memcmp(&beats_a[i], &beats_b[i], sizeof b) == 0;
    CHECK(nc == na && same, "second stream after flush differs (%d vs %d beats)", nc, na);
    CHECK(es_ecg_flush(&st, &b) == 0, "flush of an empty stream gave a beat");
    printf("%-24s ok\n", "ecg non-finite, flush");
}

static void test_diverging_filter(const es_ecg_config_t *good) {
    es_ecg_config_t cfg = *good;
    int n, rej, i, fin = 1;
    /* poles at 1.05 and 0.5: the windows overflow float32 after about 5 s (those beats are
     * dropped), the filter state a double after about 40 s (the segment restarts) */
    cfg.sos[0][4] = -1.55;
    cfg.sos[0][5] = 0.525;
    n = run(&cfg, beats_a, 0, &rej);
    for (i = 0; i < n; i++) fin &= finite_beat(&beats_a[i]);
    CHECK(n > 0 && st.dropped > 0 && st.resets > 0, "%d beats, %lu dropped, %lu restarts", n,
          (unsigned long)st.dropped, (unsigned long)st.resets);
    CHECK(fin, "a beat with non-finite values came out");
    printf("%-24s ok (%d beats, %lu dropped, %lu restarts)\n", "ecg diverging state", n, (unsigned long)st.dropped,
           (unsigned long)st.resets);
}

static void test_config_checked(const es_ecg_config_t *good) {
    es_ecg_config_t cfg = *good;
    cfg.window = ES_ECG_WINDOW + 1;
    cfg.last_offset = -cfg.pre + (cfg.window - 1) * cfg.decimate;
    CHECK(es_ecg_init(&st, &cfg) < 0, "a window over the capacity was accepted");
    cfg = *good;
    cfg.lookahead += 10; /* the candidate store and the seed window would overflow */
    CHECK(es_ecg_init(&st, &cfg) < 0, "a look-ahead over the capacity was accepted");
    CHECK(es_ecg_init(&st, good) == 0, "the generated config was refused");
    printf("%-24s ok\n", "ecg config checked");
}

static double rnd(void) {
    lcg = lcg * 1664525u + 1013904223u;
    return (double)lcg / 4294967296.0;
}

static void test_math(void) {
    long i, sq_bad = 0, log_bad = 0;
    for (i = 0; i < 200000; i++) {
        double x = ldexp(0.5 + rnd(), (int)(rnd() * 400.0) - 200), l, e;
        if (i < 5) x = (double[]){4.0, 2.0, 1e-310, 1.0, 0.1}[i];
        if (es_ecg_sqrt(x) != sqrt(x)) sq_bad++;
        l = es_ecg_log(x);
        e = log(x);
        if (fabs(l - e) > fabs(nextafter(e, 2.0 * e) - e)) log_bad++; /* over one ulp */
    }
    CHECK(sq_bad == 0, "%ld sqrt values differ from libm", sq_bad);
    CHECK(log_bad == 0, "%ld log values off by more than about 1 ulp", log_bad);
    CHECK(isnan(es_ecg_sqrt(-1.0)) && es_ecg_sqrt(0.0) == 0.0 && isinf(es_ecg_sqrt(INFINITY)), "sqrt specials");
    CHECK(es_ecg_log(1.0) == 0.0 && isnan(es_ecg_log(-1.0)) && isinf(es_ecg_log(0.0)), "log specials");
    printf("%-24s ok\n", "ecg sqrt/log");
}

int main(void) {
    static const es_ecg_config_t cfg = ES_ECG_CONFIG_INIT;
    test_math();
    test_config_checked(&cfg);
    test_synthetic(&cfg);
    test_nonfinite_and_flush(&cfg);
    test_diverging_filter(&cfg);
    printf("%-24s %lu bytes\n", "ecg state", (unsigned long)sizeof(es_ecg_t));
    if (failures) {
        printf("ecg: %d FAILED\n", failures);
        return 1;
    }
    printf("ECG OK\n");
    return 0;
}
