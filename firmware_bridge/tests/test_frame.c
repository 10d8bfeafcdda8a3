/* Host tests of src/edgeseq_frame.c against the vectors written by the Python reference
 * (tools/make_vectors.py), plus a fuzz loop. Usage: test_frame [VECTORS_DIR] (default "vectors").
 * One line per check group, then "ALL OK"; exit status 1 on any failure. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeseq_frame.h"
#include "fuzz_stream.h"

#define MAX_BYTES 4096
#define MAX_LINE 16384
#define MAX_FRAMES 64
#define MAX_NAME 40

static int failures;
static int group_failures;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    printf("  FAIL: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    failures++;
    group_failures++;
}

#define CHECK(cond, ...)          \
    do {                          \
        if (!(cond))              \
            fail(__VA_ARGS__);    \
    } while (0)

static void group_done(const char *name, long count)
{
    printf("%-28s %s (%ld checked)\n", name, group_failures ? "FAILED" : "ok", count);
    group_failures = 0;
}

/* ---- vector files -------------------------------------------------------------------------- */

static const char *vec_dir = "vectors";

static FILE *open_vec(const char *name, const char *mode)
{
    char path[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", vec_dir, name);
    f = fopen(path, mode);
    if (f == NULL) {
        fail("cannot open %s", path);
    }
    return f;
}

/* Next data line split into tokens; returns the token count, 0 at EOF. Skips comments/blanks. */
static int next_row(FILE *f, char *line, char **tok, int max_tok)
{
    while (fgets(line, MAX_LINE, f) != NULL) {
        int n = 0;
        char *p;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            fail("line longer than %d characters", MAX_LINE);
            return 0;
        }
        if (line[0] == '#' || line[0] == '\n')
            continue;
        for (p = strtok(line, " \t\r\n"); p != NULL && n < max_tok; p = strtok(NULL, " \t\r\n"))
            tok[n++] = p;
        if (n > 0)
            return n;
    }
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* '-' is empty. Returns the byte count or -1. */
static int unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = strlen(s), i;
    if (strcmp(s, "-") == 0)
        return 0;
    if (n % 2 || n / 2 > cap)
        return -1;
    for (i = 0; i < n / 2; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi * 16 + lo);
    }
    return (int)(n / 2);
}

static int same(const uint8_t *a, int na, const uint8_t *b, int nb)
{
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na) == 0);
}

/* ---- CRC ----------------------------------------------------------------------------------- */

static void test_crc(void)
{
    static char line[MAX_LINE];
    static uint8_t data[MAX_BYTES];
    char *tok[4];
    long rows = 0;
    FILE *f = open_vec("crc.txt", "r");
    if (f == NULL)
        return;
    while (next_row(f, line, tok, 4) == 2) {
        int n = unhex(tok[0], data, sizeof data);
        unsigned long want = strtoul(tok[1], NULL, 16);
        uint16_t got, split;
        CHECK(n >= 0, "crc.txt: bad hex");
        if (n < 0)
            continue;
        got = edgeseq_crc16_ccitt_false(data, (size_t)n);
        CHECK(got == want, "crc of %d bytes: got %04x want %04lx", n, got, want);
        /* in two pieces, as the frame encoder computes it */
        split = edgeseq_crc16_update(edgeseq_crc16_update(0xFFFF, data, (size_t)n / 3), data + n / 3,
                                     (size_t)n - (size_t)n / 3);
        CHECK(split == want, "crc in pieces of %d bytes: got %04x want %04lx", n, split, want);
        rows++;
    }
    fclose(f);
    CHECK(rows >= 5, "crc.txt: only %ld rows", rows);
    CHECK(edgeseq_crc16_ccitt_false((const uint8_t *)"123456789", 9) == 0x29B1, "check value");
    group_done("crc16_ccitt_false", rows);
}

/* ---- COBS ---------------------------------------------------------------------------------- */

#define CANARY 0xA5

static void test_cobs(void)
{
    static char line[MAX_LINE];
    static uint8_t raw[MAX_BYTES], enc[MAX_BYTES], out[MAX_BYTES + 16];
    char *tok[4];
    long rows = 0;
    FILE *f = open_vec("cobs.txt", "r");
    if (f == NULL)
        return;
    while (next_row(f, line, tok, 4) == 2) {
        int nr = unhex(tok[0], raw, sizeof raw), ne = unhex(tok[1], enc, sizeof enc), got, i;
        CHECK(nr >= 0 && ne >= 0, "cobs.txt: bad hex");
        if (nr < 0 || ne < 0)
            continue;
        /* encode with exactly enough room, and with one byte less: the canary must survive */
        memset(out, CANARY, sizeof out);
        got = edgeseq_cobs_encode(raw, (size_t)nr, out, (size_t)ne);
        CHECK(same(out, got, enc, ne), "cobs encode of %d bytes differs (got %d, want %d)", nr, got, ne);
        CHECK(out[ne] == CANARY, "cobs encode wrote past capacity");
        CHECK(ne <= (int)EDGESEQ_COBS_MAX_ENCODED((size_t)nr), "worst-case bound");
        memset(out, CANARY, sizeof out);
        got = edgeseq_cobs_encode(raw, (size_t)nr, out, (size_t)ne - 1);
        CHECK(got == EDGESEQ_E_CAPACITY, "cobs encode into %d bytes: %d", ne - 1, got);
        CHECK(out[ne - 1] == CANARY, "cobs encode wrote past a short capacity");
        /* decode, into exact room, then one byte less, then in place */
        memset(out, CANARY, sizeof out);
        got = edgeseq_cobs_decode(enc, (size_t)ne, out, (size_t)nr);
        CHECK(same(out, got, raw, nr), "cobs decode of %d bytes differs (got %d)", ne, got);
        CHECK(out[nr] == CANARY, "cobs decode wrote past capacity");
        if (nr > 0) {
            memset(out, CANARY, sizeof out);
            got = edgeseq_cobs_decode(enc, (size_t)ne, out, (size_t)nr - 1);
            CHECK(got == EDGESEQ_E_CAPACITY, "cobs decode into %d bytes: %d", nr - 1, got);
            CHECK(out[nr - 1] == CANARY, "cobs decode wrote past a short capacity");
        }
        memcpy(out, enc, (size_t)ne);
        got = edgeseq_cobs_decode(out, (size_t)ne, out, (size_t)ne);
        CHECK(same(out, got, raw, nr), "cobs decode in place differs");
        /* a zero inside, or a code running past the end, is not COBS */
        for (i = 0; i < ne && i < 8; i++) {
            memcpy(out, enc, (size_t)ne);
            out[i] = 0;
            got = edgeseq_cobs_decode(out, (size_t)ne, out + MAX_BYTES / 2, MAX_BYTES / 2);
            CHECK(got == EDGESEQ_E_COBS, "zero at %d accepted (%d)", i, got);
        }
        if (ne > 1 && enc[0] >= 2 && enc[0] < 0xFF) {
            memcpy(out, enc, (size_t)ne);
            got = edgeseq_cobs_decode(out, (size_t)enc[0] - 1, out + MAX_BYTES / 2, MAX_BYTES / 2);
            CHECK(got == EDGESEQ_E_COBS, "truncated block accepted (%d)", got);
        }
        rows++;
    }
    fclose(f);
    CHECK(rows >= 15, "cobs.txt: only %ld rows", rows);
    group_done("cobs encode/decode", rows);
}

/* ---- frames -------------------------------------------------------------------------------- */

typedef struct {
    char name[MAX_NAME];
    edgeseq_frame_t f;
    uint8_t payload[EDGESEQ_MAX_PAYLOAD];
    uint8_t raw[EDGESEQ_MAX_FRAME];
    int nraw;
    uint8_t wire[EDGESEQ_MAX_WIRE];
    int nwire;
} vec_frame;

static vec_frame frames[MAX_FRAMES];
static int nframes;

static int frame_fields_equal(const edgeseq_frame_t *a, const edgeseq_frame_t *b)
{
    return a->version == b->version && a->type == b->type && a->seq == b->seq &&
           a->timestamp_us == b->timestamp_us && a->channels == b->channels &&
           a->sample_format == b->sample_format &&
           same(a->payload, a->payload_len, b->payload, b->payload_len);
}

static void test_frames(void)
{
    static char line[MAX_LINE];
    char *tok[12];
    uint8_t buf[EDGESEQ_MAX_WIRE + 8];
    FILE *f = open_vec("frames.txt", "r");
    int n;
    if (f == NULL)
        return;
    while ((n = next_row(f, line, tok, 12)) > 0) {
        vec_frame *v;
        int np, got, i;
        edgeseq_frame_t back;
        edgeseq_decoder_t d;
        CHECK(n == 9, "frames.txt: %d fields", n);
        if (n != 9 || nframes == MAX_FRAMES)
            continue;
        v = &frames[nframes];
        snprintf(v->name, sizeof v->name, "%s", tok[0]);
        np = unhex(tok[6], v->payload, sizeof v->payload);
        v->nraw = unhex(tok[7], v->raw, sizeof v->raw);
        v->nwire = unhex(tok[8], v->wire, sizeof v->wire);
        CHECK(np >= 0 && v->nraw >= 0 && v->nwire >= 0, "%s: bad hex", v->name);
        if (np < 0 || v->nraw < 0 || v->nwire < 0)
            continue;
        v->f = edgeseq_frame_make((uint8_t)atoi(tok[1]), (uint16_t)strtoul(tok[2], NULL, 10),
                                  (uint32_t)strtoul(tok[3], NULL, 10), (uint8_t)atoi(tok[4]),
                                  (uint8_t)atoi(tok[5]), v->payload, (size_t)np);
        nframes++;

        memset(buf, CANARY, sizeof buf);
        got = edgeseq_frame_pack(&v->f, buf, (size_t)v->nraw);
        CHECK(same(buf, got, v->raw, v->nraw), "%s: packed bytes differ", v->name);
        CHECK(buf[v->nraw] == CANARY, "%s: pack wrote past capacity", v->name);
        CHECK(edgeseq_frame_pack(&v->f, buf, (size_t)v->nraw - 1) == EDGESEQ_E_CAPACITY, "%s: pack cap",
              v->name);

        memset(buf, CANARY, sizeof buf);
        got = edgeseq_frame_encode(&v->f, buf, (size_t)v->nwire);
        CHECK(same(buf, got, v->wire, v->nwire), "%s: wire bytes differ", v->name);
        CHECK(buf[v->nwire] == CANARY, "%s: encode wrote past capacity", v->name);
        for (i = 0; i < v->nwire; i++) {
            memset(buf, CANARY, sizeof buf);
            got = edgeseq_frame_encode(&v->f, buf, (size_t)i);
            CHECK(got == EDGESEQ_E_CAPACITY && buf[i] == CANARY, "%s: encode into %d bytes", v->name, i);
        }

        CHECK(edgeseq_frame_unpack(v->raw, (size_t)v->nraw, &back) == 0 && frame_fields_equal(&back, &v->f),
              "%s: unpack", v->name);

        edgeseq_decoder_init(&d);
        got = 0;
        for (i = 0; i < v->nwire; i++) {
            int r = edgeseq_decoder_put(&d, v->wire[i], &back);
            CHECK(r == (i == v->nwire - 1), "%s: frame completed at byte %d of %d", v->name, i, v->nwire);
            got += r;
        }
        CHECK(got == 1 && frame_fields_equal(&back, &v->f), "%s: decoded fields or payload differ", v->name);
        CHECK(d.frames == 1 && d.crc_errors == 0 && d.framing_errors == 0, "%s: counters", v->name);
    }
    fclose(f);
    CHECK(nframes >= 13, "frames.txt: only %d frames", nframes);
    group_done("frames pack/encode/decode", nframes);
}

static const vec_frame *find_frame(const char *name)
{
    int i;
    for (i = 0; i < nframes; i++)
        if (strcmp(frames[i].name, name) == 0)
            return &frames[i];
    fail("no frame named %s in frames.txt", name);
    return NULL;
}

/* The builders must reproduce the reference's payloads of frames.txt byte for byte. */
static void check_payload(const char *name, const uint8_t *p, int n)
{
    const vec_frame *v = find_frame(name);
    if (v != NULL)
        CHECK(same(p, n, v->f.payload, v->f.payload_len), "%s: payload builder differs (len %d)", name, n);
}

static void test_payloads(void)
{
    uint8_t p[EDGESEQ_MAX_PAYLOAD + 8];
    static const int16_t ecg[10] = {-512, -1, 0, 1, 255, 256, 1023, -1024, 32767, -32768};
    static const int32_t cells[8] = {812345, 790001, -3, 0, 812400, 789950, 2, -1};
    static const float flt[4] = {0.5f, -1.25f, 3.0e-3f, 1.0e6f};
    static const float s1[1] = {0.005f}, o1[1] = {-5.12f};
    static const float s4[4] = {0.01f, 0.01f, 0.01f, 0.01f}, o4[4] = {0.0f, 0.5f, -0.5f, 0.0f};
    int16_t ramp[119], zeros[5] = {0, 0, 0, 0, 0};
    int i, n;
    edgeseq_prediction_t pr;
    const vec_frame *v;
    long checks = 0;

    for (i = 0; i < 119; i++)
        ramp[i] = (int16_t)(i + 1);
    check_payload("info_ecg", p, edgeseq_info_payload(p, sizeof p, 360.0f, s1, o1, 1, "ecg-ad8232", "mV"));
    check_payload("info_cells", p, edgeseq_info_payload(p, sizeof p, 100.0f, s4, o4, 4, "hx711x4", "N"));
    check_payload("samples_int16", p, edgeseq_samples_payload_i16(p, sizeof p, 0, ecg, 10));
    check_payload("samples_int32", p, edgeseq_samples_payload_i32(p, sizeof p, 4294967290u, cells, 8));
    check_payload("samples_float32", p, edgeseq_samples_payload_f32(p, sizeof p, 12, flt, 4));
    check_payload("samples_full", p, edgeseq_samples_payload_i16(p, sizeof p, 300, ramp, 119));
    check_payload("samples_zeros", p, edgeseq_samples_payload_i16(p, sizeof p, 0, zeros, 5));
    check_payload("heartbeat", p, edgeseq_heartbeat_payload(p, sizeof p, 360));
    check_payload("error", p, edgeseq_error_payload(p, sizeof p, 1, "adc overrun"));
    check_payload("prediction", p, edgeseq_prediction_payload(p, sizeof p, 6510, 2, 0.875f, "V"));
    check_payload("prediction_score", p,
                  edgeseq_prediction_payload(p, sizeof p, 100, EDGESEQ_NO_LABEL, 24.5f, ""));
    checks += 11;

    /* capacities: one byte short fails and writes nothing past it */
    memset(p, CANARY, sizeof p);
    CHECK(edgeseq_samples_payload_i16(p, 4 + 2 * 10 - 1, 0, ecg, 10) == EDGESEQ_E_CAPACITY && p[0] == CANARY,
          "i16 cap");
    CHECK(edgeseq_info_payload(p, 25, 360.0f, s1, o1, 1, "ecg-ad8232", "mV") == EDGESEQ_E_CAPACITY, "info cap");
    CHECK(edgeseq_heartbeat_payload(p, 3, 1) == EDGESEQ_E_CAPACITY, "heartbeat cap");
    CHECK(edgeseq_prediction_payload(p, 10, 1, 2, 1.0f, "V") == EDGESEQ_E_CAPACITY, "prediction cap");
    memset(p, CANARY, sizeof p);
    n = edgeseq_error_payload(p, 5, 4, "a long message");
    CHECK(n == 5 && memcmp(p, "\x04" "a lo", 5) == 0 && p[5] == CANARY, "error message cut to capacity");
    n = edgeseq_error_payload(p, sizeof p, 4, "caf\xc3\xa9");
    CHECK(n == 6 && memcmp(p + 1, "caf??", 5) == 0, "error message non-ASCII replaced");
    checks += 6;

    /* host-to-device parsers */
    v = find_frame("prediction");
    if (v != NULL) {
        CHECK(edgeseq_parse_prediction(&v->f, &pr) == 0 && pr.sample_index == 6510 && pr.label_index == 2 &&
                  pr.score == 0.875f && pr.label_len == 1 && strcmp(pr.label, "V") == 0,
              "parse prediction");
        CHECK(edgeseq_parse_start(&v->f) != 0 && edgeseq_parse_stop(&v->f) != 0, "start/stop of a prediction");
    }
    v = find_frame("prediction_score");
    if (v != NULL)
        CHECK(edgeseq_parse_prediction(&v->f, &pr) == 0 && pr.label_index == EDGESEQ_NO_LABEL &&
                  pr.score == 24.5f && pr.label_len == 0 && pr.label[0] == '\0',
              "parse prediction without label");
    v = find_frame("start");
    if (v != NULL)
        CHECK(edgeseq_parse_start(&v->f) == 0 && edgeseq_parse_prediction(&v->f, &pr) != 0, "parse start");
    v = find_frame("stop");
    if (v != NULL)
        CHECK(edgeseq_parse_stop(&v->f) == 0, "parse stop");
    checks += 5;
    {
        /* malformed predictions: too short, label running past the end, non-ASCII label */
        uint8_t q[64];
        edgeseq_frame_t f;
        n = edgeseq_prediction_payload(q, sizeof q, 1, 0, 1.0f, "N");
        f = edgeseq_frame_make(EDGESEQ_PREDICTION, 0, 0, 0, 0, q, 9);
        CHECK(edgeseq_parse_prediction(&f, &pr) == EDGESEQ_E_PAYLOAD, "short prediction");
        f = edgeseq_frame_make(EDGESEQ_PREDICTION, 0, 0, 0, 0, q, (size_t)n - 1);
        CHECK(edgeseq_parse_prediction(&f, &pr) == EDGESEQ_E_PAYLOAD, "label past the end");
        q[10] = 0xC3;
        f = edgeseq_frame_make(EDGESEQ_PREDICTION, 0, 0, 0, 0, q, (size_t)n);
        CHECK(edgeseq_parse_prediction(&f, &pr) == EDGESEQ_E_PAYLOAD, "non-ASCII label");
        /* a label longer than the device keeps: cut, length as announced */
        n = edgeseq_prediction_payload(q, sizeof q, 1, 0, 1.0f, "0123456789012345678901234567890123456789");
        CHECK(n == 10 + 32, "prediction label cut to 32 (%d)", n);
        q[9] = 40;
        memset(q + 42, 'x', 8);
        f = edgeseq_frame_make(EDGESEQ_PREDICTION, 0, 0, 0, 0, q, 50);
        CHECK(edgeseq_parse_prediction(&f, &pr) == 0 && pr.label_len == 40 && strlen(pr.label) == 32,
              "long label kept to 32");
        checks += 5;
    }
    {
        /* sequence counter: +1 per frame, wraps, and does not advance on a failed build */
        edgeseq_sender_t s;
        edgeseq_frame_t f;
        edgeseq_decoder_t d;
        uint8_t big[EDGESEQ_MAX_PAYLOAD + 1];
        memset(big, 1, sizeof big);
        edgeseq_sender_init(&s);
        CHECK(edgeseq_seq_take(&s.seq) == 0 && edgeseq_seq_take(&s.seq) == 1, "seq counts from 0");
        s.seq.next = 65535;
        n = edgeseq_sender_encode(&s, EDGESEQ_HEARTBEAT, 7, 0, 0, big, 4);
        CHECK(n > 0 && s.seq.next == 0, "seq wraps 65535 -> 0");
        edgeseq_decoder_init(&d);
        CHECK(edgeseq_decoder_feed(&d, s.wire, (size_t)n, NULL, NULL) == 1, "sender frame decodes");
        CHECK(edgeseq_sender_encode(&s, EDGESEQ_SAMPLES, 0, 1, 1, big, sizeof big) == EDGESEQ_E_ARG &&
                  s.seq.next == 0,
              "oversized payload refused without taking a seq");
        n = edgeseq_sender_encode(&s, EDGESEQ_SAMPLES, 0, 1, 1, big, EDGESEQ_MAX_PAYLOAD);
        CHECK(n == (int)EDGESEQ_MAX_WIRE - 1 || n == (int)EDGESEQ_MAX_WIRE, "maximal frame: %d bytes", n);
        f = edgeseq_frame_make(EDGESEQ_SAMPLES, 0, 0, 1, 1, big, sizeof big);
        CHECK(edgeseq_frame_pack(&f, p, sizeof p) == EDGESEQ_E_ARG, "pack of an oversized payload");
        checks += 6;
    }
    {
        /* the worst case of section 1: 254 non-zero bytes give a 257-byte wire frame */
        uint8_t pl[EDGESEQ_MAX_PAYLOAD], wire[EDGESEQ_MAX_WIRE];
        edgeseq_frame_t f, back;
        edgeseq_decoder_t d;
        int tries, found = 0;
        memset(pl, 0x55, sizeof pl);
        for (tries = 0; tries < 65536 && !found; tries++) {
            f = edgeseq_frame_make(EDGESEQ_SAMPLES, (uint16_t)(0x0101u + (unsigned)tries % 254u), 0x01010101u,
                                   1, 1, pl, sizeof pl);
            pl[0] = (uint8_t)(1 + tries / 254);
            n = edgeseq_frame_encode(&f, wire, sizeof wire);
            found = (n == (int)EDGESEQ_MAX_WIRE);
        }
        CHECK(found, "no 257-byte frame found");
        edgeseq_decoder_init(&d);
        n = (int)edgeseq_decoder_poll(&d, wire, sizeof wire, &back, &i);
        CHECK(found && i == 1 && n == (int)EDGESEQ_MAX_WIRE && frame_fields_equal(&back, &f),
              "257-byte frame decodes");
        checks += 2;
    }
    group_done("payload builders/parsers", checks);
}

/* ---- stream -------------------------------------------------------------------------------- */

typedef struct {
    char names[64][MAX_NAME];
    int n;
} name_list;

static void note_frame(const edgeseq_frame_t *f, void *user)
{
    name_list *l = (name_list *)user;
    uint8_t raw[EDGESEQ_MAX_FRAME];
    int n = edgeseq_frame_pack(f, raw, sizeof raw), i;
    const char *name = "?";
    for (i = 0; i < nframes; i++)
        if (same(raw, n, frames[i].raw, frames[i].nraw))
            name = frames[i].name;
    if (l->n < 64)
        snprintf(l->names[l->n++], MAX_NAME, "%s", name);
}

static int names_equal(const name_list *a, const name_list *b)
{
    int i;
    if (a->n != b->n)
        return 0;
    for (i = 0; i < a->n; i++)
        if (strcmp(a->names[i], b->names[i]) != 0)
            return 0;
    return 1;
}

static void test_stream(void)
{
    static uint8_t stream[8192];
    static char line[MAX_LINE];
    char *tok[64];
    name_list want, one, bytewise, chunked;
    unsigned long want_crc = 0, want_framing = 0, want_pending = 0;
    size_t len, i;
    int n;
    edgeseq_decoder_t d;
    edgeseq_frame_t f;
    fuzz_rng rng = {12345};
    FILE *fb = open_vec("stream.bin", "rb"), *ft = open_vec("stream.txt", "r");
    if (fb == NULL || ft == NULL) {
        if (fb)
            fclose(fb);
        if (ft)
            fclose(ft);
        return;
    }
    len = fread(stream, 1, sizeof stream, fb);
    fclose(fb);
    memset(&want, 0, sizeof want);
    while ((n = next_row(ft, line, tok, 64)) > 0) {
        if (strcmp(tok[0], "frames") == 0) {
            int k;
            for (k = 1; k < n && want.n < 64; k++)
                snprintf(want.names[want.n++], MAX_NAME, "%s", tok[k]);
        } else if (n == 2 && strcmp(tok[0], "crc_errors") == 0) {
            want_crc = strtoul(tok[1], NULL, 10);
        } else if (n == 2 && strcmp(tok[0], "framing_errors") == 0) {
            want_framing = strtoul(tok[1], NULL, 10);
        } else if (n == 2 && strcmp(tok[0], "pending_bytes") == 0) {
            want_pending = strtoul(tok[1], NULL, 10);
        }
    }
    fclose(ft);
    CHECK(want.n > 0 && len > 0, "stream vectors empty");

    /* one call, callback API */
    memset(&one, 0, sizeof one);
    edgeseq_decoder_init(&d);
    CHECK(edgeseq_decoder_feed(&d, stream, len, note_frame, &one) == (size_t)want.n, "feed return value");
    CHECK(names_equal(&one, &want), "one call: frame sequence differs (%d frames)", one.n);
    CHECK(d.crc_errors == want_crc && d.framing_errors == want_framing,
          "one call: crc %lu framing %lu, want %lu %lu", (unsigned long)d.crc_errors,
          (unsigned long)d.framing_errors, want_crc, want_framing);
    CHECK(edgeseq_decoder_pending(&d) == want_pending, "one call: pending %lu want %lu",
          (unsigned long)edgeseq_decoder_pending(&d), want_pending);
    CHECK(d.frames == (uint32_t)want.n && d.bytes == len, "one call: frames/bytes counters");

    /* byte by byte, put API */
    memset(&bytewise, 0, sizeof bytewise);
    edgeseq_decoder_init(&d);
    for (i = 0; i < len; i++)
        if (edgeseq_decoder_put(&d, stream[i], &f))
            note_frame(&f, &bytewise);
    CHECK(names_equal(&bytewise, &want), "byte by byte: frame sequence differs");
    CHECK(d.crc_errors == want_crc && d.framing_errors == want_framing, "byte by byte: counters");
    CHECK(edgeseq_decoder_pending(&d) == want_pending, "byte by byte: pending");

    /* random slices, poll API */
    memset(&chunked, 0, sizeof chunked);
    edgeseq_decoder_init(&d);
    i = 0;
    while (i < len) {
        size_t take = 1 + fuzz_below(&rng, 64), used;
        int got;
        if (take > len - i)
            take = len - i;
        while (take > 0) {
            used = edgeseq_decoder_poll(&d, stream + i, take, &f, &got);
            if (got)
                note_frame(&f, &chunked);
            i += used;
            take -= used;
        }
    }
    CHECK(names_equal(&chunked, &want), "poll: frame sequence differs");
    CHECK(d.crc_errors == want_crc && d.framing_errors == want_framing, "poll: counters");
    CHECK(edgeseq_decoder_pending(&d) == want_pending, "poll: pending");

    /* the pending tail is the info_cells frame without its delimiter: one 0x00 completes it */
    CHECK(edgeseq_decoder_put(&d, 0, &f) == 1 && f.type == EDGESEQ_INFO && f.channels == 4,
          "pending frame completed by its delimiter");
    edgeseq_decoder_reset(&d);
    CHECK(edgeseq_decoder_pending(&d) == 0, "reset");
    group_done("stream.bin", (long)want.n);
}

/* ---- fuzz ---------------------------------------------------------------------------------- */

/* An independent model of the reference decoder's classification, run on the same bytes: split at
 * 0x00, drop runs of EDGESEQ_MAX_WIRE or more, otherwise COBS-decode into a large buffer and
 * check length, CRC and version in the reference's order. */
typedef struct {
    uint8_t chunk[2048];
    size_t len;
    unsigned long frames, crc, framing;
} model;

static void model_put(model *m, uint8_t b)
{
    uint8_t raw[2048];
    int n;
    if (b != 0) {
        if (m->len < sizeof m->chunk)
            m->chunk[m->len] = b;
        m->len++;
        return;
    }
    if (m->len == 0)
        return;
    if (m->len >= EDGESEQ_MAX_WIRE) {
        m->framing++;
    } else {
        n = edgeseq_cobs_decode(m->chunk, m->len, raw, sizeof raw);
        if (n < 12 || n > 254)
            m->framing++;
        else if (edgeseq_crc16_ccitt_false(raw, (size_t)n - 2) != (uint16_t)(raw[n - 2] | (raw[n - 1] << 8)))
            m->crc++;
        else if (raw[0] != 1)
            m->framing++;
        else
            m->frames++;
    }
    m->len = 0;
}

static void test_fuzz(long chunks)
{
    static uint8_t buf[2048];
    static model m;
    edgeseq_decoder_t d;
    edgeseq_frame_t f;
    fuzz_rng rng = {20261123};
    long c;
    unsigned long total = 0, accepted = 0;
    edgeseq_decoder_init(&d);
    memset(&m, 0, sizeof m);
    for (c = 0; c < chunks; c++) {
        size_t n = fuzz_chunk(&rng, buf), i = 0;
        total += n;
        while (i < n) {
            int got;
            size_t used = edgeseq_decoder_poll(&d, buf + i, n - i, &f, &got);
            size_t k;
            for (k = i; k < i + used; k++)
                model_put(&m, buf[k]);
            i += used;
            if (got) {
                /* whatever the damage, an accepted frame is whole: its CRC holds over what the
                 * decoder kept, and the fields describe those bytes */
                size_t body = EDGESEQ_HEADER_SIZE + f.payload_len;
                accepted++;
                CHECK(f.version == 1 && f.payload == d.buf + EDGESEQ_HEADER_SIZE, "accepted frame layout");
                CHECK(edgeseq_crc16_ccitt_false(d.buf, body) == edgeseq_get_u16(d.buf + body),
                      "accepted frame with a bad CRC");
                if (group_failures > 10)
                    break;
            }
        }
        CHECK(d.len <= EDGESEQ_MAX_WIRE, "pending beyond the buffer");
        if (group_failures > 10)
            break;
    }
    model_put(&m, 0);
    edgeseq_decoder_put(&d, 0, &f);
    CHECK(d.frames == m.frames && d.crc_errors == m.crc && d.framing_errors == m.framing,
          "decoder %lu/%lu/%lu vs model %lu/%lu/%lu (frames/crc/framing)", (unsigned long)d.frames,
          (unsigned long)d.crc_errors, (unsigned long)d.framing_errors, m.frames, m.crc, m.framing);
    CHECK(d.frames == accepted || d.frames == accepted + 1, "frames counter vs frames returned");
    CHECK(d.crc_errors > 0 && d.framing_errors > 0 && d.frames > 0, "fuzz reached every outcome");
    printf("  fuzz: %ld chunks, %lu bytes: %lu frames, %lu crc errors, %lu framing errors\n", c, total,
           (unsigned long)d.frames, (unsigned long)d.crc_errors, (unsigned long)d.framing_errors);
    group_done("fuzz", c);
}

int main(int argc, char **argv)
{
    long chunks = 200000;
    if (argc > 1)
        vec_dir = argv[1];
    if (argc > 2)
        chunks = atol(argv[2]);
    test_crc();
    test_cobs();
    test_frames();
    test_payloads();
    test_stream();
    test_fuzz(chunks);
    if (failures) {
        printf("FAILED: %d check(s)\n", failures);
        return 1;
    }
    printf("ALL OK\n");
    return 0;
}
