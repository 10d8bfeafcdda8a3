/* Writes byte streams made by the C encoder, for the Python side (tests/test_firmware_c.py) to
 * decode with edgeseq.bridge:
 *
 *   emit_stream samples OUT [N]   0x00, INFO, N SAMPLES frames (seq 0..N, 1 channel int16, 10
 *                                 samples each, sample i = (i % 1000) - 500, first_index 10k,
 *                                 timestamp_us = round(i * 1e6 / 360) truncated to u32), HEARTBEAT
 *   emit_stream fuzz OUT [CHUNKS [SEED]]
 *                                 the fuzz stream of fuzz_stream.h ending in 0x00; prints what the C
 *                                 decoder made of it: "frames F crc_errors C framing_errors G
 *                                 bytes B discarded_bytes D"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgeseq_frame.h"
#include "fuzz_stream.h"

#define PER_FRAME 10

static int write_all(FILE *f, const uint8_t *p, size_t n)
{
    return fwrite(p, 1, n, f) == n ? 0 : -1;
}

static int emit_samples(FILE *out, long n_frames)
{
    edgeseq_sender_t tx;
    uint8_t payload[EDGESEQ_MAX_PAYLOAD];
    int16_t v[PER_FRAME];
    static const float scale[1] = {0.0048828125f}, offset[1] = {0.0f};
    static const uint8_t idle[1] = {0};
    long k;
    int n, i;
    edgeseq_sender_init(&tx);
    if (write_all(out, idle, 1))
        return -1;
    n = edgeseq_info_payload(payload, sizeof payload, 360.0f, scale, offset, 1, "emit_stream", "mV");
    n = edgeseq_sender_encode(&tx, EDGESEQ_INFO, 0, 1, EDGESEQ_FMT_INT16, payload, (size_t)n);
    if (n < 0 || write_all(out, tx.wire, (size_t)n))
        return -1;
    for (k = 0; k < n_frames; k++) {
        uint32_t first = (uint32_t)(k * PER_FRAME);
        uint32_t ts = (uint32_t)((unsigned long long)first * 1000000ull / 360ull);
        for (i = 0; i < PER_FRAME; i++)
            v[i] = (int16_t)((long)(first + (uint32_t)i) % 1000 - 500);
        n = edgeseq_samples_payload_i16(payload, sizeof payload, first, v, PER_FRAME);
        n = n < 0 ? n : edgeseq_sender_encode(&tx, EDGESEQ_SAMPLES, ts, 1, EDGESEQ_FMT_INT16, payload, (size_t)n);
        if (n < 0 || write_all(out, tx.wire, (size_t)n))
            return -1;
    }
    n = edgeseq_heartbeat_payload(payload, sizeof payload, (uint32_t)(n_frames * PER_FRAME));
    n = edgeseq_sender_encode(&tx, EDGESEQ_HEARTBEAT, 0, 0, 0, payload, (size_t)n);
    return (n < 0 || write_all(out, tx.wire, (size_t)n)) ? -1 : 0;
}

static int emit_fuzz(FILE *out, long chunks, unsigned long seed)
{
    static uint8_t buf[2048];
    static const uint8_t zero[1] = {0};
    fuzz_rng rng;
    edgeseq_decoder_t d;
    long c;
    rng.s = seed;
    edgeseq_decoder_init(&d);
    for (c = 0; c < chunks; c++) {
        size_t n = fuzz_chunk(&rng, buf);
        edgeseq_decoder_feed(&d, buf, n, NULL, NULL);
        if (write_all(out, buf, n))
            return -1;
    }
    edgeseq_decoder_feed(&d, zero, 1, NULL, NULL);
    if (write_all(out, zero, 1))
        return -1;
    printf("frames %lu crc_errors %lu framing_errors %lu bytes %lu discarded_bytes %lu\n",
           (unsigned long)d.frames, (unsigned long)d.crc_errors, (unsigned long)d.framing_errors,
           (unsigned long)d.bytes, (unsigned long)d.discarded_bytes);
    return 0;
}

int main(int argc, char **argv)
{
    FILE *out;
    int rc;
    if (argc < 3 || (strcmp(argv[1], "samples") != 0 && strcmp(argv[1], "fuzz") != 0)) {
        fprintf(stderr, "usage: %s samples OUT [N] | fuzz OUT [CHUNKS [SEED]]\n", argv[0]);
        return 2;
    }
    out = fopen(argv[2], "wb");
    if (out == NULL) {
        perror(argv[2]);
        return 1;
    }
    if (strcmp(argv[1], "samples") == 0)
        rc = emit_samples(out, argc > 3 ? atol(argv[3]) : 300);
    else
        rc = emit_fuzz(out, argc > 3 ? atol(argv[3]) : 5000, argc > 4 ? strtoul(argv[4], NULL, 10) : 1);
    if (fclose(out) != 0)
        rc = -1;
    if (rc != 0) {
        fprintf(stderr, "emit_stream: failed\n");
        return 1;
    }
    return 0;
}
