/* edgeseq_ecg.c: see edgeseq_ecg.h. Each function names the Python it mirrors; where the order of
 * floating-point operations matters for bit-equality it follows numpy's (pairwise sums, float32
 * medians), because a feature that differs in its last bit can still flip a float32 rounding. */
#include "edgeseq_ecg.h"

#define WIN_NONE 0u
#define WIN_CUT 1u
#define WIN_NOFIT 2u

/* ---- freestanding math ------------------------------------------------------------------ */

typedef union { double d; uint64_t u; } es_bits_t;
typedef union { float f; uint32_t u; } es_fbits_t;

static int fin(double x) {
    es_bits_t b;
    b.d = x;
    return ((b.u >> 52) & 0x7ffu) != 0x7ffu;
}

static int finf(float x) {
    es_fbits_t b;
    b.f = x;
    return ((b.u >> 23) & 0xffu) != 0xffu;
}

static double es_abs(double x) { /* numpy's abs: clears the sign bit, also of -0.0 */
    es_bits_t b;
    b.d = x;
    b.u &= ~((uint64_t)1 << 63);
    return b.d;
}

static double es_nan(void) {
    es_bits_t b;
    b.u = (uint64_t)0x7ff8 << 48;
    return b.d;
}

/* Digit-by-digit square root of the 53-bit mantissa: exact, so correctly rounded like the host's
 * sqrt; the MWI envelope goes through it every sample and its local maxima must be the same. */
double es_ecg_sqrt(double x) {
    es_bits_t b;
    uint64_t m, q = 0, r = 0, t, mant;
    int e, i, k;
    if (x != x || x == 0.0 || !fin(x)) {
        return x < 0.0 ? es_nan() : x;
    }
    if (x < 0.0) {
        return es_nan();
    }
    b.d = x;
    e = (int)((b.u >> 52) & 0x7ffu);
    m = b.u & (((uint64_t)1 << 52) - 1);
    if (e == 0) { /* subnormal */
        e = 1;
        while (!(m & ((uint64_t)1 << 52))) {
            m <<= 1;
            e--;
        }
    } else {
        m |= (uint64_t)1 << 52;
    }
    e -= 1075; /* x = m * 2^e */
    if (e % 2 != 0) {
        m <<= 1;
        e -= 1;
    }
    /* sqrt(m * 2^54) has 54 bits: the 53 of the result and one for rounding (never a tie). */
    for (i = 53; i >= 0; i--) {
        int sh = 2 * i - 54;
        r = (r << 2) | (sh >= 0 ? (m >> sh) & 3u : 0u);
        t = (q << 2) | 1u;
        if (r >= t) {
            r -= t;
            q = (q << 1) | 1u;
        } else {
            q <<= 1;
        }
    }
    mant = (q >> 1) + (q & 1u);
    k = (e - 54) / 2 + 1;
    if (mant >> 53) {
        mant >>= 1;
        k++;
    }
    b.u = ((uint64_t)(k + 1075) << 52) | (mant & (((uint64_t)1 << 52) - 1));
    return b.d;
}

/* log(x) = e ln2 + log(f), f in [sqrt(1/2), sqrt(2)), log(f) = 2 atanh(s) by its series. Only the
 * template gain uses it, once per beat, and keeps it to float32. */
double es_ecg_log(double x) {
    static const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    es_bits_t b;
    double f, s, s2, p, hfsq;
    int e, k;
    if (x != x || x < 0.0) {
        return es_nan();
    }
    if (x == 0.0) {
        b.u = (uint64_t)0xfff << 52;
        return b.d;
    }
    if (!fin(x)) {
        return x;
    }
    b.d = x;
    e = (int)((b.u >> 52) & 0x7ffu);
    if (e == 0) { /* subnormal: scale by 2^54 */
        b.d = x * 18014398509481984.0;
        e = (int)((b.u >> 52) & 0x7ffu) - 54;
    }
    e -= 1023;
    b.u = (b.u & (((uint64_t)1 << 52) - 1)) | ((uint64_t)1023 << 52);
    f = b.d;
    if (f > 1.4142135623730951) {
        f *= 0.5;
        e++;
    }
    /* fdlibm's arrangement: x = f - 1 is exact and carries the result; only the smaller
     * correction hfsq - s (hfsq + R) is rounded, which keeps the error under one ulp. */
    f -= 1.0;
    s = f / (2.0 + f);
    s2 = s * s;
    hfsq = 0.5 * f * f;
    p = 2.0 / 25.0;
    for (k = 11; k >= 1; k--) {
        p = p * s2 + 2.0 / (double)(2 * k + 1);
    }
    p *= s2; /* R = 2 (s^2/3 + s^4/5 + ...) */
    return (double)e * ln2_hi - ((hfsq - (s * (hfsq + p) + (double)e * ln2_lo)) - f);
}

/* numpy's pairwise summation (add.reduce over a contiguous row) of u[i] or u[i] * v[i]. */
static double pw_sum(const double *u, const double *v, int32_t n) {
    double r[8], res;
    int32_t i, j;
    if (n < 8) {
        res = 0.0;
        for (i = 0; i < n; i++) {
            res += v ? u[i] * v[i] : u[i];
        }
        return res;
    }
    if (n <= 128) {
        for (j = 0; j < 8; j++) {
            r[j] = v ? u[j] * v[j] : u[j];
        }
        for (i = 8; i < n - (n % 8); i += 8) {
            for (j = 0; j < 8; j++) {
                r[j] += v ? u[i + j] * v[i + j] : u[i + j];
            }
        }
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) {
            res += v ? u[i] * v[i] : u[i];
        }
        return res;
    }
    i = n / 2;
    i -= i % 8;
    return pw_sum(u, v, i) + pw_sum(u + i, v ? v + i : 0, n - i);
}

/* Medians over short buffers: insertion sort of a copy (at most n_avg, irregularity_beats or
 * template_beats values). */
static void sort_d(double *v, int32_t n) {
    int32_t i, j;
    for (i = 1; i < n; i++) {
        double t = v[i];
        for (j = i; j > 0 && v[j - 1] > t; j--) {
            v[j] = v[j - 1];
        }
        v[j] = t;
    }
}

/* k-th smallest of v[0..n) (reordered; afterwards v[0..k) holds the k smaller ones): Hoare's
 * selection, for the float template columns and the double seed values alike. */
#define ES_SELECT(name, T)                                                                          \
    static T name(T *v, int32_t n, int32_t k) {                                                     \
        int32_t lo = 0, hi = n - 1;                                                                 \
        while (hi > lo) {                                                                           \
            T piv = v[lo + (hi - lo) / 2], t;                                                       \
            int32_t i = lo, j = hi;                                                                 \
            while (i <= j) {                                                                        \
                while (v[i] < piv) i++;                                                             \
                while (v[j] > piv) j--;                                                             \
                if (i <= j) {                                                                       \
                    t = v[i];                                                                       \
                    v[i] = v[j];                                                                    \
                    v[j] = t;                                                                       \
                    i++;                                                                            \
                    j--;                                                                            \
                }                                                                                   \
            }                                                                                       \
            if (k <= j) {                                                                           \
                hi = j;                                                                             \
            } else if (k >= i) {                                                                    \
                lo = i;                                                                             \
            } else {                                                                                \
                break;                                                                              \
            }                                                                                       \
        }                                                                                           \
        return v[k];                                                                                \
    }
ES_SELECT(select_f, float)
ES_SELECT(select_d, double)

/* np.median of n doubles (destroys v). */
static double median_np(double *v, int32_t n) {
    int32_t h = n / 2;
    double hi = select_d(v, n, h), lo;
    int32_t i;
    if (n % 2) {
        return hi;
    }
    lo = v[0]; /* after selecting h, v[0..h) holds the h smallest: the largest of them is s[h-1] */
    for (i = 1; i < h; i++) {
        if (v[i] > lo) lo = v[i];
    }
    return (lo + hi) / 2.0;
}

/* ---- SOS cascade: transposed direct form II, as SOSFilter's state space ------------------- */

static double sos_step(es_ecg_sos_t *f, const double (*sos)[6], int32_t n, double x) {
    int32_t i;
    for (i = 0; i < n; i++) {
        const double *c = sos[i];
        double y = c[0] * x + f->z[i][0];
        f->z[i][0] = c[1] * x - c[4] * y + f->z[i][1];
        f->z[i][1] = c[2] * x - c[5] * y;
        x = y;
    }
    return x;
}

/* SOSFilter.reset(x0): the steady state for a constant input (zero where a pole sits at z = 1). */
static void sos_steady(es_ecg_sos_t *f, const double (*sos)[6], int32_t n, double u) {
    int32_t i;
    for (i = 0; i < n; i++) {
        const double *c = sos[i];
        double den = 1.0 + c[4] + c[5], y;
        if (den == 0.0) {
            f->z[i][0] = f->z[i][1] = 0.0;
            u = 0.0;
            continue;
        }
        y = (c[0] + c[1] + c[2]) / den * u;
        f->z[i][1] = c[2] * u - c[5] * y;
        f->z[i][0] = y - c[0] * u;
        u = y;
    }
}

static int sos_finite(const es_ecg_sos_t *f, int32_t n) {
    int32_t i;
    for (i = 0; i < n; i++) {
        if (!fin(f->z[i][0]) || !fin(f->z[i][1])) return 0;
    }
    return 1;
}

/* ---- QRS detector (QRSDetector) ------------------------------------------------------------ */

#define RING_AT(buf, cap, head, i) (buf)[((head) + (i)) % (cap)]

static int32_t hslot(const es_ecg_det_t *d, int32_t H, int64_t q) {
    int32_t i = d->hp - (int32_t)(d->n - 1 - q);
    return i < 0 ? i + H : i;
}

static void det_reset(es_ecg_det_t *d) {
    int32_t i;
    for (i = 0; i < ES_ECG_HIST; i++) {
        d->yh[i] = d->dh[i] = d->mh[i] = 0.0;
    }
    for (i = 0; i < ES_ECG_MWI; i++) {
        d->sqt[i] = 0.0;
    }
    for (i = 0; i < ES_ECG_MAX_SECTIONS; i++) {
        d->bp.z[i][0] = d->bp.z[i][1] = 0.0;
    }
    d->n = 0;
    d->fill = 0;
    d->hp = -1;
    d->started = 0;
    d->y_last = 0.0;
    d->c_head = d->c_n = d->rec_head = d->rec_n = d->out_head = d->out_n = 0;
    d->qrs_head = d->qrs_n = d->noise_head = d->noise_n = d->rr_head = d->rr_n = 0;
    d->have_last = 0;
    d->last_p = 0;
    d->last_r = -1;
    d->last_slope = 0.0;
}

/* deque(maxlen=cap).append on a ring of `size` slots (cap <= size: the bundle's length). */
static void push_d(double *buf, int32_t size, int32_t cap, int32_t *head, int32_t *n, double v) {
    if (*n == cap) {
        *head = (*head + 1) % size;
        (*n)--;
    }
    buf[(*head + *n) % size] = v;
    (*n)++;
}

static double median_levels(es_ecg_t *s, const double *buf, int32_t head, int32_t n) {
    double *v = s->scratch.small;
    int32_t i, h = n / 2;
    for (i = 0; i < n; i++) {
        v[i] = RING_AT(buf, ES_ECG_NAVG, head, i);
    }
    sort_d(v, n);
    return n % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

static int det_seed(es_ecg_t *s, int64_t p) {
    const es_ecg_config_t *c = &s->cfg;
    es_ecg_det_t *d = &s->det;
    int64_t a = p - c->refine > c->mwi ? p - c->refine : c->mwi;
    int64_t b = p + c->lookahead < d->n - 1 ? p + c->lookahead : d->n - 1;
    int32_t len = (int32_t)(b - a + 1), i, k = 0;
    double top, med;
    if (len <= 0 || len > ES_ECG_SEEDSEG) {
        return 0; /* cannot happen with the generated capacities */
    }
    for (i = 0; i < len; i++) {
        s->scratch.seg[i] = d->mh[hslot(d, c->history, a + i)];
        if (s->scratch.seg[i] > s->scratch.seg[k]) k = i;
    }
    top = s->scratch.seg[k];
    med = median_np(s->scratch.seg, len);
    if (!(top > c->seed_ratio * med) || k >= len - c->mwi / 2) {
        return 0;
    }
    push_d(d->qrs, ES_ECG_NAVG, c->n_avg, &d->qrs_head, &d->qrs_n, 0.5 * top);
    return 1;
}

static double det_threshold(es_ecg_t *s) {
    es_ecg_det_t *d = &s->det;
    double q = median_levels(s, d->qrs, d->qrs_head, d->qrs_n);
    double nz = d->noise_n ? median_levels(s, d->noise, d->noise_head, d->noise_n) : 0.0;
    return nz + s->cfg.th * (q - nz);
}

static double det_rr_mean(const es_ecg_t *s) {
    const es_ecg_det_t *d = &s->det;
    int64_t sum = 0;
    int32_t i;
    if (!d->rr_n) {
        return s->cfg.init_rr;
    }
    for (i = 0; i < d->rr_n; i++) {
        sum += RING_AT(d->rrs, ES_ECG_NAVG, d->rr_head, i);
    }
    return (double)sum / (double)d->rr_n;
}

static int det_gap_too_long(es_ecg_t *s, int64_t p, double amp, double thr, int64_t last_p) {
    const es_ecg_config_t *c = &s->cfg;
    es_ecg_det_t *d = &s->det;
    int64_t end = p + c->lookahead < d->n - 1 ? p + c->lookahead : d->n - 1;
    int32_t i;
    for (i = 0; i < d->c_n; i++) {
        const es_ecg_cand_t *q = &RING_AT(d->cands, ES_ECG_CANDS, d->c_head, i);
        if (q->p > p + c->lookahead) break;
        if (q->amp > thr && q->p - p >= c->refractory) {
            end = q->p;
            break;
        }
        if (q->amp > amp) return 0;
    }
    return (double)(end - last_p) > c->searchback_rr * det_rr_mean(s) && end - p >= c->refractory;
}

static void det_beat(es_ecg_t *s, int64_t p, int64_t r, double slope, double amp) {
    const es_ecg_config_t *c = &s->cfg;
    es_ecg_det_t *d = &s->det;
    if (d->have_last) {
        int64_t v = p - d->last_p;
        if (d->rr_n == c->n_avg) {
            d->rr_head = (d->rr_head + 1) % ES_ECG_NAVG;
            d->rr_n--;
        }
        d->rrs[(d->rr_head + d->rr_n) % ES_ECG_NAVG] = v;
        d->rr_n++;
    }
    push_d(d->qrs, ES_ECG_NAVG, c->n_avg, &d->qrs_head, &d->qrs_n, amp);
    d->have_last = 1;
    d->last_p = p;
    d->last_slope = slope;
    if (r < d->last_r + 1) r = d->last_r + 1; /* neighbouring refinement windows may touch */
    d->last_r = r;
    if (d->out_n < ES_ECG_OUT) {
        d->out[(d->out_head + d->out_n) % ES_ECG_OUT] = r;
        d->out_n++;
    }
}

/* QRSDetector._decide: candidates whose look-ahead is complete (all when final). */
static void det_decide(es_ecg_t *s, int final, int64_t horizon) {
    const es_ecg_config_t *c = &s->cfg;
    es_ecg_det_t *d = &s->det;
    while (d->c_n) {
        es_ecg_cand_t k = d->cands[d->c_head];
        int32_t i, bigger = 0, twave;
        int64_t dt = 0;
        double thr;
        if (!final && k.p + c->lookahead > horizon) break;
        d->c_head = (d->c_head + 1) % ES_ECG_CANDS;
        d->c_n--;
        /* A peak is the largest candidate within +-refractory; smaller ones belong to it. */
        while (d->rec_n && d->rec_p[d->rec_head] < k.p - c->refractory) {
            d->rec_head = (d->rec_head + 1) % ES_ECG_RECENT;
            d->rec_n--;
        }
        for (i = 0; i < d->rec_n; i++) {
            if (RING_AT(d->rec_a, ES_ECG_RECENT, d->rec_head, i) > k.amp) bigger = 1;
        }
        if (d->rec_n == ES_ECG_RECENT) { /* cannot happen: candidates are >= 2 samples apart */
            d->rec_head = (d->rec_head + 1) % ES_ECG_RECENT;
            d->rec_n--;
        }
        d->rec_p[(d->rec_head + d->rec_n) % ES_ECG_RECENT] = k.p;
        d->rec_a[(d->rec_head + d->rec_n) % ES_ECG_RECENT] = k.amp;
        d->rec_n++;
        if (bigger) continue;
        for (i = 0; i < d->c_n; i++) {
            const es_ecg_cand_t *q = &RING_AT(d->cands, ES_ECG_CANDS, d->c_head, i);
            if (q->p > k.p + c->refractory) break;
            if (q->amp > k.amp) bigger = 1;
        }
        if (bigger) continue;
        if (d->have_last) {
            dt = k.p - d->last_p;
            if (dt < c->refractory) continue;
            if (dt > c->relearn) { /* levels no longer fit the signal: learn them again */
                d->qrs_n = d->noise_n = 0;
                d->qrs_head = d->noise_head = 0;
            }
        }
        if (!d->qrs_n && !det_seed(s, k.p)) {
            push_d(d->noise, ES_ECG_NAVG, c->n_avg, &d->noise_head, &d->noise_n, k.amp);
            continue;
        }
        thr = det_threshold(s);
        twave = d->have_last && dt < c->twave && k.slope < c->twave_slope * d->last_slope;
        if (k.amp > thr && !twave) {
            det_beat(s, k.p, k.r, k.slope, k.amp);
            continue;
        }
        push_d(d->noise, ES_ECG_NAVG, c->n_avg, &d->noise_head, &d->noise_n, k.amp);
        if (!d->have_last || k.amp < c->searchback_frac * thr || (dt < c->twave && !twave)) continue;
        if (det_gap_too_long(s, k.p, k.amp, thr, d->last_p)) {
            d->noise_n--; /* deque.pop(): the newest goes, also when the oldest was just dropped */
            det_beat(s, k.p, k.r, k.slope, k.amp);
        }
    }
}

static void det_candidate(es_ecg_t *s, int64_t q) {
    const es_ecg_config_t *c = &s->cfg;
    es_ecg_det_t *d = &s->det;
    const int32_t H = c->history;
    int64_t lo = q - c->refine > c->mwi ? q - c->refine : c->mwi, j, r;
    double best = -1.0, slope = 0.0;
    int64_t k = 0;
    es_ecg_cand_t *e;
    for (j = lo; j <= q; j++) {
        double v = es_abs(d->yh[hslot(d, H, j)]);
        if (v > best || j == lo) {
            best = v;
            k = j - lo;
        }
    }
    for (j = q - c->mwi; j <= q; j++) {
        double v = d->dh[hslot(d, H, j)];
        if (v > slope || j == q - c->mwi) slope = v;
    }
    r = lo + k - c->group_delay;
    if (d->c_n == ES_ECG_CANDS) { /* cannot happen: the capacity covers look-ahead + a frame */
        d->c_head = (d->c_head + 1) % ES_ECG_CANDS;
        d->c_n--;
    }
    e = &d->cands[(d->c_head + d->c_n) % ES_ECG_CANDS];
    e->p = q;
    e->amp = d->mh[hslot(d, H, q)];
    e->r = r > 0 ? r : 0;
    e->slope = slope;
    d->c_n++;
}

/* QRSDetector._frame, one sample at a time: the cumulative sum still restarts at each frame
 * boundary from the squared slopes left in the MWI window, as the Python's does, so the
 * envelope's rounding follows it; decisions are taken at frame ends only, as there.
 * Returns 0 when a state went non-finite. */
static int det_sample(es_ecg_t *s, double x) {
    const es_ecg_config_t *c = &s->cfg;
    es_ecg_det_t *d = &s->det;
    const int32_t W = c->mwi, H = c->history, j = d->fill;
    double y, dd, sq, t, m, cj;
    int64_t pos = d->n;
    int32_t i;
    if (!d->started) { /* the record's DC offset must not ring through the band-pass like a step */
        sos_steady(&d->bp, c->det_sos, c->det_n_sections, x);
        d->y_last = 0.0;
        d->started = 1;
    }
    if (j == 0) {
        double acc = 0.0;
        for (i = 0; i < W - 1; i++) {
            acc += d->sqt[i];
            d->cs[i] = acc;
        }
    }
    y = sos_step(&d->bp, c->det_sos, c->det_n_sections, x);
    dd = (y - d->y_last) * c->fs;
    d->y_last = y;
    sq = dd * dd;
    d->sqf[j] = sq;
    cj = (W - 1 + j > 0 ? d->cs[W - 2 + j] : 0.0) + sq;
    d->cs[W - 1 + j] = cj;
    t = cj - (j > 0 ? d->cs[j - 1] : 0.0);
    if (t < 0.0) t = 0.0;
    m = es_ecg_sqrt(t / (double)W);
    d->hp = d->hp + 1 == H ? 0 : d->hp + 1;
    d->yh[d->hp] = y;
    d->dh[d->hp] = es_abs(dd);
    d->mh[d->hp] = m;
    d->n = pos + 1;
    if (!fin(y) || !fin(cj) || !sos_finite(&d->bp, c->det_n_sections)) {
        return 0;
    }
    /* An MWI local maximum at pos - 1 is known once m[pos] is. */
    if (pos - 1 >= W) {
        double mq = d->mh[hslot(d, H, pos - 1)];
        if (mq > d->mh[hslot(d, H, pos - 2)] && mq >= m) {
            det_candidate(s, pos - 1);
        }
    }
    if (j + 1 == c->frame) {
        /* the squared slopes still inside the window: the last mwi - 1 of (sqt, sqf) */
        for (i = 0; i < W - 1; i++) {
            int32_t src = i + c->frame;
            d->sqt[i] = src < W - 1 ? d->sqt[src] : d->sqf[src - (W - 1)];
        }
        d->fill = 0;
        det_decide(s, 0, d->n - 2);
    } else {
        d->fill = j + 1;
    }
    return 1;
}

/* ---- beats (EcgBeatStream) -------------------------------------------------------------- */

static void new_segment(es_ecg_t *s) {
    int32_t i;
    for (i = 0; i < ES_ECG_MAX_SECTIONS; i++) {
        s->bp.z[i][0] = s->bp.z[i][1] = 0.0;
    }
    s->rp = -1;
    s->n = 0;
    s->p_head = s->p_n = 0;
    s->have_last = 0;
    s->ending = 0;
    s->last_r = 0;
    s->csum[0] = 0.0;
    s->cs_head = 0;
    s->cs_n = 1;
    s->d_head = s->d_n = 0;
    s->have_pdiff = s->have_prev_iv = 0;
    s->pdiff = s->prev_iv = 0.0;
    s->t_head = s->t_n = 0;
}

int es_ecg_init(es_ecg_t *s, const es_ecg_config_t *cfg) {
    const es_ecg_config_t *c = cfg;
    if (!s || !c) return -1;
    if (c->n_sections < 1 || c->n_sections > ES_ECG_MAX_SECTIONS || c->det_n_sections < 1 ||
        c->det_n_sections > ES_ECG_MAX_SECTIONS) return -2;
    if (c->window < 1 || c->window > ES_ECG_WINDOW || c->decimate < 1 || c->pre < 0 ||
        c->last_offset != -c->pre + (c->window - 1) * c->decimate) return -3;
    if (c->mwi < 1 || c->mwi > ES_ECG_MWI || c->frame < 1 || c->frame > ES_ECG_FRAME ||
        c->history > ES_ECG_HIST || c->n_avg < 1 || c->n_avg > ES_ECG_NAVG ||
        c->refine + c->lookahead + 1 > ES_ECG_SEEDSEG || c->refractory < 1 || c->lookahead < 1 ||
        c->refine < 1 || c->history < (c->refine > c->mwi ? c->refine : c->mwi) + c->lookahead + c->frame + 4 ||
        c->delay != c->refine + c->group_delay + c->lookahead + c->frame) return -4;
    /* the bounds of edgeseq/export/c_frontend.py: see there why they hold */
    if ((c->lookahead + c->frame) / 2 + 4 > ES_ECG_CANDS || c->refractory / 2 + 3 > ES_ECG_RECENT ||
        (c->delay + c->lookahead + 2 * c->frame + c->refine) / c->refractory + 4 > ES_ECG_OUT ||
        4 + (c->last_offset >= c->delay ? (c->last_offset - c->delay + c->refine + 1) / c->refractory + 2 : 0) >
            ES_ECG_PENDING) return -8;
    if (c->local_beats < 1 || c->running_beats < 1 || c->running_beats > ES_ECG_RUNNING ||
        c->irregularity_beats < 1 || c->irregularity_beats > ES_ECG_IRREG || c->template_beats < 1 ||
        c->template_beats > ES_ECG_TEMPLATE) return -5;
    if (c->pre + (c->delay > c->last_offset + 1 ? c->delay : c->last_offset + 1) + 2 > ES_ECG_RING) return -6;
    if (!(c->fs > 0.0)) return -7;
    s->cfg = *c;
    s->samples = s->rejected = s->beats_detected = s->beats_unscored = s->dropped = s->resets = 0;
    s->origin = 0;
    det_reset(&s->det);
    new_segment(s);
    return 0;
}

static int32_t rslot(const es_ecg_t *s, int64_t seg_idx) {
    int32_t i = s->rp - (int32_t)(s->n - 1 - seg_idx);
    return i < 0 ? i + ES_ECG_RING : i;
}

static es_ecg_peak_t *pend_at(es_ecg_t *s, int32_t i) {
    return &s->pend[(s->p_head + i) % ES_ECG_PENDING];
}

static void pend_pop(es_ecg_t *s) {
    s->p_head = (s->p_head + 1) % ES_ECG_PENDING;
    s->p_n--;
}

static double median_diffs(es_ecg_t *s) {
    double *v = s->scratch.small;
    int32_t i, h = s->d_n / 2;
    for (i = 0; i < s->d_n; i++) {
        v[i] = RING_AT(s->diffs, ES_ECG_IRREG, s->d_head, i);
    }
    sort_d(v, s->d_n);
    return s->d_n % 2 ? v[h] : (v[h - 1] + v[h]) / 2.0;
}

static double csum_back(const es_ecg_t *s, int32_t back) { /* csum[-1 - back] */
    return RING_AT(s->csum, ES_ECG_RUNNING + 1, s->cs_head, s->cs_n - 1 - back);
}

/* EcgBeatStream._rr_features: the histories as they stand before the beat's post interval. */
static void rr_features(es_ecg_t *s, double pre, double post, double *f) {
    const es_ecg_config_t *c = &s->cfg;
    int32_t n = s->cs_n - 1;
    double local = pre, running = pre, irr = 0.0;
    if (n) {
        int32_t nl = n < c->local_beats ? n : c->local_beats;
        int32_t nr = n < c->running_beats ? n : c->running_beats;
        local = (csum_back(s, 0) - csum_back(s, nl)) / (double)nl;
        running = (csum_back(s, 0) - csum_back(s, nr)) / (double)nr;
    }
    if (s->d_n) {
        irr = median_diffs(s) / local;
    }
    f[0] = pre;
    f[1] = post;
    f[2] = local;
    f[3] = pre / running;
    f[4] = post / running;
    f[5] = local / running;
    f[6] = irr;
}

static void add_interval(es_ecg_t *s, double v) {
    const es_ecg_config_t *c = &s->cfg;
    if (s->have_pdiff) {
        push_d(s->diffs, ES_ECG_IRREG, c->irregularity_beats, &s->d_head, &s->d_n, s->pdiff);
    }
    s->have_pdiff = s->have_prev_iv;
    s->pdiff = s->have_prev_iv ? es_abs(v - s->prev_iv) : 0.0;
    s->prev_iv = v;
    s->have_prev_iv = 1;
    push_d(s->csum, ES_ECG_RUNNING + 1, c->running_beats + 1, &s->cs_head, &s->cs_n, csum_back(s, 0) + v);
}

/* EcgBeatStream._on_peak (no lost samples on the device: every interval is clean). */
static int on_peak(es_ecg_t *s, int64_t r) {
    const es_ecg_config_t *c = &s->cfg;
    es_ecg_peak_t *p;
    if (s->p_n == ES_ECG_PENDING) {
        return 0; /* cannot happen with the generated capacity; the caller restarts the segment */
    }
    s->beats_detected++;
    if (s->have_last) {
        double v = (double)(r - s->last_r) / c->fs;
        if (s->p_n) { /* the previous peak, if still pending, is the newest one */
            es_ecg_peak_t *prev = pend_at(s, s->p_n - 1);
            if (prev->has_pre) {
                rr_features(s, prev->pre, v, prev->feats);
            }
            prev->post = v;
            prev->has_post = 1;
        }
        p = pend_at(s, s->p_n);
        p->pre = v;
        p->has_pre = 1;
        add_interval(s, v);
    } else {
        p = pend_at(s, s->p_n);
        p->has_pre = 0;
    }
    p->r = r;
    p->has_post = 0;
    p->win_bad = 0;
    p->win_state = r - s->origin < c->pre ? WIN_NOFIT : WIN_NONE;
    s->have_last = 1;
    s->last_r = r;
    s->p_n++;
    return 1;
}

/* EcgBeatStream._template: correlation and log gain against the sample-wise median of the
 * template history, with numpy's operation order (float32 median once the history is full). */
static void template_shape(es_ecg_t *s, const float *x, double *shape) {
    const int32_t n = s->cfg.window, k = s->cfg.template_beats, cnt = s->t_n;
    double *a = s->scratch.t.a, *b = s->scratch.t.b, ma, mb, aa, bb, ab;
    int32_t i, j;
    for (i = 0; i < n; i++) {
        a[i] = (double)x[i];
    }
    if (!cnt) {
        for (i = 0; i < n; i++) b[i] = a[i];
    } else {
        /* Per sample position, the middle one or two of cnt values: a selection, not a sort (this
         * is most of a beat's work). Which of equal values lands where does not change them. */
        float *col = s->col, hi, lo;
        const float *rows[ES_ECG_TEMPLATE];
        int32_t h = cnt / 2, m;
        for (j = 0; j < cnt; j++) {
            rows[j] = s->tmpl[(s->t_head + j) % ES_ECG_TEMPLATE];
        }
        for (i = 0; i < n; i++) {
            for (j = 0; j < cnt; j++) {
                col[j] = rows[j][i];
            }
            hi = select_f(col, cnt, h);
            lo = hi;
            if (cnt % 2 == 0) { /* the largest of the h smaller ones */
                lo = col[0];
                for (m = 1; m < h; m++) {
                    if (col[m] > lo) lo = col[m];
                }
            }
            if (cnt < k) { /* np.median of float64 */
                b[i] = cnt % 2 ? (double)hi : ((double)lo + (double)hi) / 2.0;
            } else { /* 0.5 * (P[mid0] + P[mid1]) in float32 (both hi when k is odd) */
                b[i] = (double)(0.5f * (lo + hi));
            }
        }
    }
    ma = pw_sum(a, 0, n) / (double)n;
    mb = pw_sum(b, 0, n) / (double)n;
    for (i = 0; i < n; i++) {
        a[i] -= ma;
        b[i] -= mb;
    }
    aa = pw_sum(a, a, n);
    bb = pw_sum(b, b, n);
    ab = pw_sum(a, b, n);
    shape[0] = ab / es_ecg_sqrt(aa * bb + 1e-12);
    shape[1] = 0.5 * es_ecg_log((aa + 1e-12) / (bb + 1e-12));
}

static void cut_window(es_ecg_t *s, es_ecg_peak_t *p) {
    const es_ecg_config_t *c = &s->cfg;
    int64_t i0 = p->r - s->origin - c->pre;
    int32_t j, bad = 0;
    if (i0 < s->n - ES_ECG_RING) { /* cannot happen: the ring covers delay + pre */
        p->win_state = WIN_NOFIT;
        return;
    }
    for (j = 0; j < c->window; j++) {
        float v = s->ring[rslot(s, i0 + (int64_t)j * c->decimate)];
        p->win[j] = v;
        if (!finf(v)) bad = 1;
    }
    p->win_bad = (uint8_t)bad;
    if (!bad) { /* a non-finite window's beat is dropped: its shape is never used */
        template_shape(s, p->win, p->shape);
        if (s->t_n == c->template_beats) {
            s->t_head = (s->t_head + 1) % ES_ECG_TEMPLATE;
            s->t_n--;
        }
        for (j = 0; j < c->window; j++) {
            s->tmpl[(s->t_head + s->t_n) % ES_ECG_TEMPLATE][j] = p->win[j];
        }
        s->t_n++;
    }
    p->win_state = WIN_CUT;
}

/* EcgBeatStream._advance, finishing at most one beat: cuts the windows whose samples are all
 * there (at the end of a segment the others no longer fit), then finishes beats in order. */
static int advance(es_ecg_t *s, es_beat_t *beat) {
    const es_ecg_config_t *c = &s->cfg;
    int64_t end = s->origin + s->n;
    int32_t i, j;
    for (i = 0; i < s->p_n; i++) {
        es_ecg_peak_t *p = pend_at(s, i);
        if (p->win_state != WIN_NONE) continue;
        if (p->r + c->last_offset >= end) {
            if (!s->ending) break;
            p->win_state = WIN_NOFIT;
            continue;
        }
        cut_window(s, p);
    }
    while (s->p_n) {
        es_ecg_peak_t *p = pend_at(s, 0);
        float rr[ES_ECG_FEATURES];
        int bad;
        if (p->win_state == WIN_NONE) break;
        if (!p->has_pre || p->win_state == WIN_NOFIT) {
            pend_pop(s);
            s->beats_unscored++;
            continue;
        }
        if (!p->has_post) break;
        bad = p->win_bad;
        for (j = 0; j < 7; j++) rr[j] = (float)p->feats[j];
        rr[7] = (float)p->shape[0];
        rr[8] = (float)p->shape[1];
        for (j = 0; !bad && j < ES_ECG_FEATURES; j++) {
            if (!finf(rr[j])) bad = 1;
        }
        if (bad) { /* the Python returns it with ok=False: never a model input */
            pend_pop(s);
            s->dropped++;
            continue;
        }
        beat->r = (uint32_t)p->r;
        for (j = 0; j < ES_ECG_WINDOW; j++) beat->window[j] = j < c->window ? p->win[j] : 0.0f;
        for (j = 0; j < ES_ECG_FEATURES; j++) beat->rr[j] = rr[j];
        pend_pop(s);
        return 1;
    }
    return 0;
}

/* A state went non-finite (or a capacity was exceeded): what is being assembled is unscored and a
 * new segment starts after this sample, as EcgBeatStream._overflow. */
static void restart(es_ecg_t *s) {
    s->beats_unscored += (uint32_t)s->p_n;
    s->resets++;
    s->origin += s->n;
    det_reset(&s->det);
    new_segment(s);
}

int es_ecg_push(es_ecg_t *s, float x, es_beat_t *beat) {
    const es_ecg_config_t *c = &s->cfg;
    es_ecg_det_t *d = &s->det;
    double y;
    int ok;
    if (!finf(x)) {
        s->rejected++;
        return ES_ECG_REJECTED;
    }
    if (s->ending) { /* pushed before the flush finished: what it still held is given up */
        s->beats_unscored += (uint32_t)s->p_n;
        det_reset(d);
        new_segment(s);
        s->origin = 0;
    }
    y = sos_step(&s->bp, c->sos, c->n_sections, (double)x);
    s->rp = s->rp + 1 == ES_ECG_RING ? 0 : s->rp + 1;
    s->ring[s->rp] = (float)y;
    s->n++;
    ok = det_sample(s, (double)x) && fin(y) && sos_finite(&s->bp, c->n_sections);
    if (!ok) {
        s->n--; /* counted in origin by restart, as a lost sample */
        s->origin++;
        restart(s);
        return 0;
    }
    s->samples++;
    while (d->out_n && d->out[d->out_head] <= d->n - 1 - c->delay) {
        int64_t r = d->out[d->out_head];
        d->out_head = (d->out_head + 1) % ES_ECG_OUT;
        d->out_n--;
        if (!on_peak(s, s->origin + r)) {
            restart(s);
            return 0;
        }
    }
    return advance(s, beat);
}

int es_ecg_flush(es_ecg_t *s, es_beat_t *beat) {
    es_ecg_det_t *d = &s->det;
    if (!s->ending) {
        s->ending = 1;
        if (s->n) {
            if (d->fill) det_decide(s, 0, d->n - 2); /* the partial frame, as QRSDetector.flush */
            det_decide(s, 1, 0);
        } else {
            det_reset(d);
        }
    }
    for (;;) {
        if (advance(s, beat)) return 1;
        if (!d->out_n) break;
        if (!on_peak(s, s->origin + d->out[d->out_head])) break;
        d->out_head = (d->out_head + 1) % ES_ECG_OUT;
        d->out_n--;
    }
    s->beats_unscored += (uint32_t)s->p_n; /* they wait for a next beat that will never come */
    det_reset(d);
    new_segment(s);
    s->origin = 0;
    return 0;
}
