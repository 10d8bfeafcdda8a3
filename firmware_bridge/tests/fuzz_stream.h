/* A deterministic generator of damaged byte streams, shared by test_frame.c (which feeds it to the
 * C decoder) and emit_stream.c (which writes it to a file so the Python decoder can be compared
 * with the C one on exactly the same bytes). Test code only: static functions, no allocation. */
#ifndef EDGESEQ_FUZZ_STREAM_H
#define EDGESEQ_FUZZ_STREAM_H

#include <stdint.h>
#include <string.h>

#include "edgeseq_frame.h"

typedef struct {
    uint64_t s;
} fuzz_rng;

static uint32_t fuzz_next(fuzz_rng *r)
{
    /* splitmix64: good enough mixing, identical on every platform */
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

static uint32_t fuzz_below(fuzz_rng *r, uint32_t n)
{
    return n ? fuzz_next(r) % n : 0;
}

/* A random valid frame on the wire into out (>= EDGESEQ_MAX_WIRE bytes); returns its length. */
static int fuzz_valid_frame(fuzz_rng *r, uint8_t *out)
{
    uint8_t payload[EDGESEQ_MAX_PAYLOAD];
    size_t n = fuzz_below(r, 4) == 0 ? fuzz_below(r, EDGESEQ_MAX_PAYLOAD + 1) : fuzz_below(r, 40);
    size_t i;
    uint32_t zero_odds = 1 + fuzz_below(r, 8);
    edgeseq_frame_t f;
    for (i = 0; i < n; i++)
        payload[i] = fuzz_below(r, zero_odds) == 0 ? 0 : (uint8_t)(1 + fuzz_below(r, 255));
    f = edgeseq_frame_make((uint8_t)(1 + fuzz_below(r, 0x12)), (uint16_t)fuzz_next(r), fuzz_next(r),
                           (uint8_t)fuzz_below(r, 5), (uint8_t)fuzz_below(r, 4), payload, n);
    return edgeseq_frame_encode(&f, out, EDGESEQ_MAX_WIRE);
}

/* One chunk of the fuzz stream into out (capacity >= 1024); returns its length. A mix of valid
 * frames, frames with flipped bits, truncated frames, random bytes with and without zeros, long
 * runs without a delimiter, and idle zeros. */
static size_t fuzz_chunk(fuzz_rng *r, uint8_t *out)
{
    size_t n, i;
    int k;
    switch (fuzz_below(r, 8)) {
    case 0:
    case 1:
        return (size_t)fuzz_valid_frame(r, out);
    case 2: /* 1 to 3 flipped bits anywhere, the delimiter included */
        k = fuzz_valid_frame(r, out);
        for (i = 1 + fuzz_below(r, 3); i > 0; i--)
            out[fuzz_below(r, (uint32_t)k)] ^= (uint8_t)(1u << fuzz_below(r, 8));
        return (size_t)k;
    case 3: /* truncated: a device reset mid-frame */
        k = fuzz_valid_frame(r, out);
        return fuzz_below(r, (uint32_t)k);
    case 4: /* random bytes, sometimes with zeros */
        n = fuzz_below(r, 300);
        {
            uint32_t zero_odds = fuzz_below(r, 2) ? 20 : 100000;
            for (i = 0; i < n; i++)
                out[i] = fuzz_below(r, zero_odds) == 0 ? 0 : (uint8_t)(1 + fuzz_below(r, 255));
        }
        return n;
    case 5: /* a long run without a delimiter, around the overflow limit */
        n = 250 + fuzz_below(r, 600);
        for (i = 0; i < n; i++)
            out[i] = (uint8_t)(1 + fuzz_below(r, 255));
        return n;
    case 6: /* idle fill */
        n = 1 + fuzz_below(r, 3);
        memset(out, 0, n);
        return n;
    default: /* a valid frame with one byte dropped */
        k = fuzz_valid_frame(r, out);
        if (k < 2)
            return 0;
        n = (size_t)k;
        i = fuzz_below(r, (uint32_t)n);
        for (; i + 1 < n; i++)
            out[i] = out[i + 1];
        return n - 1;
    }
}

#endif
