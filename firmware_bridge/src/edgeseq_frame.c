/* edgeseq serial protocol, version 1: see edgeseq_frame.h and ../PROTOCOL.md. */
#include "edgeseq_frame.h"

#include <string.h>

/* float32 goes on the wire as its IEEE 754 bit pattern; a toolchain whose float is not 32 bits
 * must fail here rather than send garbage. (AVR's float and double are both 32 bits.) */
typedef char edgeseq_float_must_be_32_bits[(sizeof(float) == 4 && sizeof(uint32_t) == 4) ? 1 : -1];

/* ---- little-endian fields ---------------------------------------------------------------- */

void edgeseq_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

void edgeseq_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

void edgeseq_put_f32(uint8_t *p, float v)
{
    uint32_t u;
    /* memcpy, not a pointer cast: no aliasing or alignment trouble, and compilers turn it into a move. */
    memcpy(&u, &v, sizeof u);
    edgeseq_put_u32(p, u);
}

uint16_t edgeseq_get_u16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] | ((uint16_t)p[1] << 8));
}

uint32_t edgeseq_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

float edgeseq_get_f32(const uint8_t *p)
{
    uint32_t u = edgeseq_get_u32(p);
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* ---- CRC ----------------------------------------------------------------------------------- */

/* Table-free on purpose: a 256-entry uint16 table costs 512 bytes, and on AVR a plain `const`
 * table is copied into RAM (a quarter of an Uno's 2 KiB) unless it is marked PROGMEM and read
 * with pgm_read_word, which is not portable C. This byte-at-a-time form of the 0x1021 polynomial
 * needs a few shifts and XORs per byte, far below what 115200 baud asks (~11.5 kB/s). */
uint16_t edgeseq_crc16_update(uint16_t crc, const uint8_t *data, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        crc = (uint16_t)((crc >> 8) | (crc << 8));
        crc ^= data[i];
        crc ^= (uint16_t)((crc & 0xFFu) >> 4);
        crc ^= (uint16_t)(crc << 12);
        crc ^= (uint16_t)((crc & 0xFFu) << 5);
    }
    return crc;
}

uint16_t edgeseq_crc16_ccitt_false(const uint8_t *data, size_t n)
{
    return edgeseq_crc16_update(0xFFFFu, data, n);
}

/* ---- COBS ---------------------------------------------------------------------------------- */

/* A COBS encoder that takes one byte at a time, so a frame can be encoded straight from its
 * header fields, payload and CRC into the wire buffer without packing it into a second buffer. */
typedef struct {
    uint8_t *dst;
    size_t cap;
    size_t out;      /* next free position */
    size_t code_at;  /* where the current block's code byte goes once the block is closed */
    uint8_t code;    /* 1 + data bytes in the current block */
    int failed;
} cobs_writer;

static void cobs_begin(cobs_writer *w, uint8_t *dst, size_t cap)
{
    w->dst = dst;
    w->cap = cap;
    w->code_at = 0;
    w->out = 1;
    w->code = 1;
    w->failed = (cap < 1);
}

/* Reserve the next position for a code byte. */
static void cobs_new_block(cobs_writer *w)
{
    if (w->out >= w->cap) {
        w->failed = 1;
        return;
    }
    w->code_at = w->out++;
    w->code = 1;
}

static void cobs_put(cobs_writer *w, uint8_t b)
{
    if (w->failed)
        return;
    if (b == 0) {
        w->dst[w->code_at] = w->code;
        cobs_new_block(w);
        return;
    }
    if (w->out >= w->cap) {
        w->failed = 1;
        return;
    }
    w->dst[w->out++] = b;
    if (++w->code == 0xFFu) {
        /* 254 data bytes: code 0xFF, which implies no zero, and a new block (as the reference:
         * data ending on a full block gets a final 0x01). */
        w->dst[w->code_at] = 0xFFu;
        cobs_new_block(w);
    }
}

static void cobs_put_n(cobs_writer *w, const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        cobs_put(w, p[i]);
}

static int cobs_end(cobs_writer *w)
{
    if (w->failed)
        return EDGESEQ_E_CAPACITY;
    w->dst[w->code_at] = w->code;
    return (int)w->out;
}

int edgeseq_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap)
{
    cobs_writer w;
    /* The length must fit the int result, even where int is 16 bits (AVR). */
    if (n > 32000u)
        return EDGESEQ_E_ARG;
    cobs_begin(&w, dst, cap > 32767u ? 32767u : cap);
    cobs_put_n(&w, src, n);
    return cobs_end(&w);
}

int edgeseq_cobs_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap)
{
    size_t i = 0, out = 0;
    if (n > 32767u)
        return EDGESEQ_E_ARG; /* the result must fit an int, even a 16-bit one */
    while (i < n) {
        size_t code = src[i], end, j;
        if (code == 0)
            return EDGESEQ_E_COBS;
        end = i + code;
        if (end > n)
            return EDGESEQ_E_COBS;
        /* Read before write: out <= i here, so decoding in place never overwrites unread input. */
        for (j = i + 1; j < end; j++) {
            uint8_t b = src[j];
            if (b == 0)
                return EDGESEQ_E_COBS;
            if (out >= cap)
                return EDGESEQ_E_CAPACITY;
            dst[out++] = b;
        }
        i = end;
        if (code != 0xFFu && i < n) {
            if (out >= cap)
                return EDGESEQ_E_CAPACITY;
            dst[out++] = 0;
        }
    }
    return (int)out;
}

/* ---- frames -------------------------------------------------------------------------------- */

edgeseq_frame_t edgeseq_frame_make(uint8_t type, uint16_t seq, uint32_t timestamp_us, uint8_t channels,
                                   uint8_t sample_format, const uint8_t *payload, size_t payload_len)
{
    edgeseq_frame_t f;
    f.version = EDGESEQ_VERSION;
    f.type = type;
    f.seq = seq;
    f.timestamp_us = timestamp_us;
    f.channels = channels;
    f.sample_format = sample_format;
    /* An oversized length is kept visible (saturated) so pack/encode reject it instead of
     * silently sending a shorter payload. */
    f.payload_len = (uint8_t)(payload_len > 255u ? 255u : payload_len);
    f.payload = payload;
    return f;
}

static void header_bytes(const edgeseq_frame_t *f, uint8_t h[EDGESEQ_HEADER_SIZE])
{
    h[0] = f->version;
    h[1] = f->type;
    edgeseq_put_u16(h + 2, f->seq);
    edgeseq_put_u32(h + 4, f->timestamp_us);
    h[8] = f->channels;
    h[9] = f->sample_format;
}

static int frame_check(const edgeseq_frame_t *f)
{
    if (f->payload_len > EDGESEQ_MAX_PAYLOAD || (f->payload_len > 0 && f->payload == NULL))
        return EDGESEQ_E_ARG;
    return 0;
}

int edgeseq_frame_pack(const edgeseq_frame_t *f, uint8_t *dst, size_t cap)
{
    size_t n;
    uint16_t crc;
    int rc = frame_check(f);
    if (rc < 0)
        return rc;
    n = EDGESEQ_HEADER_SIZE + f->payload_len;
    if (n + EDGESEQ_CRC_SIZE > cap)
        return EDGESEQ_E_CAPACITY;
    header_bytes(f, dst);
    if (f->payload_len > 0)
        memcpy(dst + EDGESEQ_HEADER_SIZE, f->payload, f->payload_len);
    crc = edgeseq_crc16_ccitt_false(dst, n);
    edgeseq_put_u16(dst + n, crc);
    return (int)(n + EDGESEQ_CRC_SIZE);
}

int edgeseq_frame_encode(const edgeseq_frame_t *f, uint8_t *dst, size_t cap)
{
    uint8_t h[EDGESEQ_HEADER_SIZE], c[EDGESEQ_CRC_SIZE];
    uint16_t crc;
    cobs_writer w;
    int n, rc = frame_check(f);
    if (rc < 0)
        return rc;
    header_bytes(f, h);
    crc = edgeseq_crc16_update(0xFFFFu, h, sizeof h);
    if (f->payload_len > 0)
        crc = edgeseq_crc16_update(crc, f->payload, f->payload_len);
    edgeseq_put_u16(c, crc);
    cobs_begin(&w, dst, cap);
    cobs_put_n(&w, h, sizeof h);
    if (f->payload_len > 0)
        cobs_put_n(&w, f->payload, f->payload_len);
    cobs_put_n(&w, c, sizeof c);
    n = cobs_end(&w);
    if (n < 0)
        return n;
    if ((size_t)n >= cap)
        return EDGESEQ_E_CAPACITY;
    dst[n] = 0x00;
    return n + 1;
}

int edgeseq_frame_unpack(const uint8_t *raw, size_t n, edgeseq_frame_t *f)
{
    size_t body;
    /* Same order as the reference's unpack_frame: length, then CRC, then version, so a foreign
     * version with a bad CRC counts as a CRC error on both sides. */
    if (n < EDGESEQ_HEADER_SIZE + EDGESEQ_CRC_SIZE)
        return EDGESEQ_E_SHORT;
    if (n > EDGESEQ_MAX_FRAME)
        return EDGESEQ_E_LONG;
    body = n - EDGESEQ_CRC_SIZE;
    if (edgeseq_crc16_ccitt_false(raw, body) != edgeseq_get_u16(raw + body))
        return EDGESEQ_E_CRC;
    if (raw[0] != EDGESEQ_VERSION)
        return EDGESEQ_E_VERSION;
    f->version = raw[0];
    f->type = raw[1];
    f->seq = edgeseq_get_u16(raw + 2);
    f->timestamp_us = edgeseq_get_u32(raw + 4);
    f->channels = raw[8];
    f->sample_format = raw[9];
    f->payload_len = (uint8_t)(body - EDGESEQ_HEADER_SIZE);
    f->payload = raw + EDGESEQ_HEADER_SIZE;
    return 0;
}

/* ---- sender -------------------------------------------------------------------------------- */

void edgeseq_seq_init(edgeseq_seq_t *s)
{
    s->next = 0;
}

uint16_t edgeseq_seq_take(edgeseq_seq_t *s)
{
    uint16_t v = s->next;
    s->next = (uint16_t)(v + 1u); /* wraps 65535 -> 0 as the protocol asks */
    return v;
}

void edgeseq_sender_init(edgeseq_sender_t *s)
{
    edgeseq_seq_init(&s->seq);
}

int edgeseq_sender_encode(edgeseq_sender_t *s, uint8_t type, uint32_t timestamp_us, uint8_t channels,
                          uint8_t sample_format, const uint8_t *payload, size_t payload_len)
{
    edgeseq_frame_t f;
    int n;
    if (payload_len > EDGESEQ_MAX_PAYLOAD)
        return EDGESEQ_E_ARG;
    f = edgeseq_frame_make(type, s->seq.next, timestamp_us, channels, sample_format, payload, payload_len);
    n = edgeseq_frame_encode(&f, s->wire, sizeof s->wire);
    if (n > 0)
        (void)edgeseq_seq_take(&s->seq); /* a frame never built must not leave a seq gap */
    return n;
}

/* ---- decoder ------------------------------------------------------------------------------- */

void edgeseq_decoder_init(edgeseq_decoder_t *d)
{
    memset(d, 0, sizeof *d);
}

void edgeseq_decoder_reset(edgeseq_decoder_t *d)
{
    d->discarded_bytes += d->len;
    d->len = 0;
    d->overflow = 0;
}

size_t edgeseq_decoder_pending(const edgeseq_decoder_t *d)
{
    return d->len;
}

static void reject(edgeseq_decoder_t *d, int err, size_t n)
{
    if (err == EDGESEQ_E_CRC)
        d->crc_errors++;
    else
        d->framing_errors++;
    d->discarded_bytes += (uint32_t)n;
    d->last_error = (int8_t)err;
}

int edgeseq_decoder_put(edgeseq_decoder_t *d, uint8_t byte, edgeseq_frame_t *out)
{
    size_t n;
    int r;
    d->bytes++;
    if (byte != 0) {
        if (d->overflow) {
            /* Count on like the reference, which drops its buffer each time it reaches
             * EDGESEQ_MAX_WIRE bytes, so discarded_bytes and pending agree with it. */
            if (++d->len >= EDGESEQ_MAX_WIRE) {
                d->discarded_bytes += d->len;
                d->len = 0;
            }
        } else if (d->len < sizeof d->buf) {
            d->buf[d->len++] = byte;
        } else {
            /* EDGESEQ_MAX_WIRE bytes without a delimiter: no frame is this long. */
            d->discarded_bytes += (uint32_t)d->len + 1u;
            d->len = 0;
            d->overflow = 1;
        }
        return 0;
    }
    n = d->len;
    d->len = 0;
    if (d->overflow) {
        d->overflow = 0;
        reject(d, EDGESEQ_E_LONG, n); /* one framing error per overflowed run, even if n == 0 */
        return 0;
    }
    if (n == 0)
        return 0; /* idle fill */
    r = edgeseq_cobs_decode(d->buf, n, d->buf, EDGESEQ_MAX_FRAME);
    if (r < 0) {
        reject(d, r == EDGESEQ_E_CAPACITY ? EDGESEQ_E_LONG : r, n);
        return 0;
    }
    r = edgeseq_frame_unpack(d->buf, (size_t)r, out);
    if (r < 0) {
        reject(d, r, n);
        return 0;
    }
    d->frames++;
    return 1;
}

size_t edgeseq_decoder_feed(edgeseq_decoder_t *d, const uint8_t *data, size_t n, edgeseq_frame_cb cb,
                            void *user)
{
    size_t i, got = 0;
    edgeseq_frame_t f;
    for (i = 0; i < n; i++) {
        if (edgeseq_decoder_put(d, data[i], &f)) {
            got++;
            if (cb != NULL)
                cb(&f, user);
        }
    }
    return got;
}

size_t edgeseq_decoder_poll(edgeseq_decoder_t *d, const uint8_t *data, size_t n, edgeseq_frame_t *out,
                            int *got)
{
    size_t i;
    *got = 0;
    for (i = 0; i < n; i++) {
        if (edgeseq_decoder_put(d, data[i], out)) {
            *got = 1;
            return i + 1;
        }
    }
    return n;
}

/* ---- payloads ------------------------------------------------------------------------------ */

/* Length of a short string (u8 length prefix), or -1 if longer than 255. */
static int short_len(const char *s)
{
    size_t n = (s == NULL) ? 0 : strlen(s);
    return n > 255u ? -1 : (int)n;
}

static size_t put_short_str(uint8_t *p, const char *s, size_t n)
{
    p[0] = (uint8_t)n;
    if (n > 0)
        memcpy(p + 1, s, n);
    return n + 1;
}

int edgeseq_info_payload(uint8_t *dst, size_t cap, float sample_rate_hz, const float *scale,
                         const float *offset, uint8_t channels, const char *device_id, const char *units)
{
    int nid = short_len(device_id), nun = short_len(units);
    size_t need, i, at;
    if (nid < 0 || nun < 0 || (channels > 0 && (scale == NULL || offset == NULL)))
        return EDGESEQ_E_ARG;
    need = 4u + 8u * (size_t)channels + 2u + (size_t)nid + (size_t)nun;
    if (need > cap)
        return EDGESEQ_E_CAPACITY;
    edgeseq_put_f32(dst, sample_rate_hz);
    at = 4;
    for (i = 0; i < channels; i++, at += 4)
        edgeseq_put_f32(dst + at, scale[i]);
    for (i = 0; i < channels; i++, at += 4)
        edgeseq_put_f32(dst + at, offset[i]);
    at += put_short_str(dst + at, device_id, (size_t)nid);
    at += put_short_str(dst + at, units, (size_t)nun);
    return (int)at;
}

static int samples_room(size_t cap, size_t count, size_t width)
{
    if (count > EDGESEQ_MAX_PAYLOAD) /* also keeps count * width from overflowing size_t */
        return EDGESEQ_E_ARG;
    return 4u + count * width > cap ? EDGESEQ_E_CAPACITY : 0;
}

int edgeseq_samples_payload_i16(uint8_t *dst, size_t cap, uint32_t first_index, const int16_t *values,
                                size_t count)
{
    size_t i;
    int rc = samples_room(cap, count, 2);
    if (rc < 0)
        return rc;
    edgeseq_put_u32(dst, first_index);
    for (i = 0; i < count; i++)
        edgeseq_put_u16(dst + 4 + 2 * i, (uint16_t)values[i]); /* two's complement bits */
    return (int)(4 + 2 * count);
}

int edgeseq_samples_payload_i32(uint8_t *dst, size_t cap, uint32_t first_index, const int32_t *values,
                                size_t count)
{
    size_t i;
    int rc = samples_room(cap, count, 4);
    if (rc < 0)
        return rc;
    edgeseq_put_u32(dst, first_index);
    for (i = 0; i < count; i++)
        edgeseq_put_u32(dst + 4 + 4 * i, (uint32_t)values[i]);
    return (int)(4 + 4 * count);
}

int edgeseq_samples_payload_f32(uint8_t *dst, size_t cap, uint32_t first_index, const float *values,
                                size_t count)
{
    size_t i;
    int rc = samples_room(cap, count, 4);
    if (rc < 0)
        return rc;
    edgeseq_put_u32(dst, first_index);
    for (i = 0; i < count; i++)
        edgeseq_put_f32(dst + 4 + 4 * i, values[i]);
    return (int)(4 + 4 * count);
}

int edgeseq_heartbeat_payload(uint8_t *dst, size_t cap, uint32_t next_index)
{
    if (cap < 4)
        return EDGESEQ_E_CAPACITY;
    edgeseq_put_u32(dst, next_index);
    return 4;
}

int edgeseq_error_payload(uint8_t *dst, size_t cap, uint8_t code, const char *message)
{
    size_t i, room;
    if (cap < 1)
        return EDGESEQ_E_CAPACITY;
    room = (cap < EDGESEQ_MAX_PAYLOAD ? cap : EDGESEQ_MAX_PAYLOAD) - 1u;
    dst[0] = code;
    for (i = 0; message != NULL && message[i] != '\0' && i < room; i++) {
        uint8_t c = (uint8_t)message[i];
        dst[1 + i] = c < 0x80u ? c : (uint8_t)'?';
    }
    return (int)(1 + i);
}

int edgeseq_prediction_payload(uint8_t *dst, size_t cap, uint32_t sample_index, uint8_t label_index,
                               float score, const char *label)
{
    size_t n = (label == NULL) ? 0 : strlen(label);
    if (n > EDGESEQ_MAX_LABEL)
        n = EDGESEQ_MAX_LABEL;
    if (10u + n > cap)
        return EDGESEQ_E_CAPACITY;
    edgeseq_put_u32(dst, sample_index);
    dst[4] = label_index;
    edgeseq_put_f32(dst + 5, score);
    return (int)(9u + put_short_str(dst + 9, label, n));
}

int edgeseq_parse_start(const edgeseq_frame_t *f)
{
    return f->type == EDGESEQ_START ? 0 : EDGESEQ_E_PAYLOAD;
}

int edgeseq_parse_stop(const edgeseq_frame_t *f)
{
    return f->type == EDGESEQ_STOP ? 0 : EDGESEQ_E_PAYLOAD;
}

int edgeseq_parse_prediction(const edgeseq_frame_t *f, edgeseq_prediction_t *p)
{
    const uint8_t *b = f->payload;
    size_t n, i, keep;
    if (f->type != EDGESEQ_PREDICTION || f->payload_len < 10u)
        return EDGESEQ_E_PAYLOAD;
    n = b[9];
    if (10u + n > f->payload_len)
        return EDGESEQ_E_PAYLOAD;
    for (i = 0; i < n; i++)
        if (b[10 + i] >= 0x80u)
            return EDGESEQ_E_PAYLOAD; /* the reference rejects a label that is not ASCII */
    p->sample_index = edgeseq_get_u32(b);
    p->label_index = b[4];
    p->score = edgeseq_get_f32(b + 5);
    p->label_len = (uint8_t)n;
    keep = n > EDGESEQ_MAX_LABEL ? EDGESEQ_MAX_LABEL : n;
    memcpy(p->label, b + 10, keep);
    p->label[keep] = '\0';
    return 0;
}
