/*
 * edgeseq serial protocol, version 1 (see ../PROTOCOL.md): CRC-16/CCITT-FALSE, COBS, frames,
 * an incremental decoder and the message payloads.
 *
 * Portable C99, no malloc, no VLAs: every buffer is the caller's (with an explicit capacity) or a
 * fixed array inside a struct the caller owns, so the RAM cost is visible at link time on a
 * 2 KiB AVR. Multi-byte fields are (de)serialised byte by byte, so the code does not depend on the
 * MCU's endianness or alignment rules. The Python reference is edgeseq/bridge/protocol.py and
 * edgeseq/bridge/decoder.py; both are checked on the same vectors (../vectors/).
 */
#ifndef EDGESEQ_FRAME_H
#define EDGESEQ_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EDGESEQ_VERSION 1u
#define EDGESEQ_HEADER_SIZE 10u
#define EDGESEQ_CRC_SIZE 2u
#define EDGESEQ_MAX_FRAME 254u   /* unencoded: header + payload + CRC */
#define EDGESEQ_MAX_PAYLOAD (EDGESEQ_MAX_FRAME - EDGESEQ_HEADER_SIZE - EDGESEQ_CRC_SIZE) /* 242 */
#define EDGESEQ_MAX_ENCODED (EDGESEQ_MAX_FRAME + 2u) /* COBS of a maximal frame, no delimiter: 256 */
#define EDGESEQ_MAX_WIRE (EDGESEQ_MAX_FRAME + 3u)    /* ... plus the 0x00 delimiter: 257 */
#define EDGESEQ_MAX_LABEL 32u

/* COBS worst case for n input bytes, without the delimiter. */
#define EDGESEQ_COBS_MAX_ENCODED(n) ((n) + (n) / 254u + 1u)

/* Message types: device to host below 0x10, host to device from 0x10. */
enum {
    EDGESEQ_INFO = 0x01,
    EDGESEQ_SAMPLES = 0x02,
    EDGESEQ_HEARTBEAT = 0x03,
    EDGESEQ_ERROR = 0x04,
    EDGESEQ_START = 0x10,
    EDGESEQ_STOP = 0x11,
    EDGESEQ_PREDICTION = 0x12
};

/* sample_format codes */
enum {
    EDGESEQ_FMT_NONE = 0,
    EDGESEQ_FMT_INT16 = 1,
    EDGESEQ_FMT_INT32 = 2,
    EDGESEQ_FMT_FLOAT32 = 3
};

/* ERROR message codes */
enum {
    EDGESEQ_ERR_CODE_OVERRUN = 1,
    EDGESEQ_ERR_CODE_SENSOR = 2,
    EDGESEQ_ERR_CODE_COMMAND = 3,
    EDGESEQ_ERR_CODE_OTHER = 4
};

#define EDGESEQ_NO_LABEL 0xFFu

/* Negative return values of every function that returns a length. */
enum {
    EDGESEQ_E_CAPACITY = -1, /* the output does not fit the caller's buffer */
    EDGESEQ_E_COBS = -2,     /* zero byte inside a COBS frame, or a code running past its end */
    EDGESEQ_E_SHORT = -3,    /* shorter than header + CRC */
    EDGESEQ_E_LONG = -4,     /* longer than EDGESEQ_MAX_FRAME (or overflow without delimiter) */
    EDGESEQ_E_CRC = -5,
    EDGESEQ_E_VERSION = -6,
    EDGESEQ_E_ARG = -7,      /* an argument out of range (payload too long, string too long...) */
    EDGESEQ_E_PAYLOAD = -8   /* a payload that does not hold what its type says */
};

/* ---- CRC and COBS ------------------------------------------------------------------------- */

/* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final XOR (0x29B1 for
 * "123456789"). Pass 0xFFFF as crc to start; feed a message in pieces by passing the last result. */
uint16_t edgeseq_crc16_update(uint16_t crc, const uint8_t *data, size_t n);
uint16_t edgeseq_crc16_ccitt_false(const uint8_t *data, size_t n);

/* COBS encode n bytes of src into dst (no delimiter appended). Returns the encoded length or
 * EDGESEQ_E_CAPACITY; never writes dst[cap] or beyond. src and dst must not overlap. */
int edgeseq_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap);

/* COBS decode one frame (without its delimiter). Returns the decoded length, EDGESEQ_E_COBS or
 * EDGESEQ_E_CAPACITY; never writes dst[cap] or beyond. dst == src (in place) is allowed: the
 * output never gets ahead of the input. */
int edgeseq_cobs_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap);

/* ---- frames ------------------------------------------------------------------------------- */

typedef struct {
    uint8_t version;       /* EDGESEQ_VERSION for frames you build */
    uint8_t type;
    uint16_t seq;
    uint32_t timestamp_us;
    uint8_t channels;
    uint8_t sample_format;
    uint8_t payload_len;   /* 0 .. EDGESEQ_MAX_PAYLOAD */
    const uint8_t *payload; /* decoded frames: points into the decoder, valid until its next byte */
} edgeseq_frame_t;

/* A frame with version 1 and the given fields. */
edgeseq_frame_t edgeseq_frame_make(uint8_t type, uint16_t seq, uint32_t timestamp_us, uint8_t channels,
                                   uint8_t sample_format, const uint8_t *payload, size_t payload_len);

/* Header + payload + CRC (before COBS) into dst. Returns its length or a negative error. */
int edgeseq_frame_pack(const edgeseq_frame_t *f, uint8_t *dst, size_t cap);

/* COBS of the packed frame plus the 0x00 delimiter into dst: what goes on the wire. Needs no
 * buffer besides dst (cap >= EDGESEQ_MAX_WIRE always suffices). Returns the length or < 0. */
int edgeseq_frame_encode(const edgeseq_frame_t *f, uint8_t *dst, size_t cap);

/* Parse an unencoded frame (the inverse of edgeseq_frame_pack); f->payload points into raw.
 * Checks in the reference's order: length, CRC, version. Returns 0 or a negative error. */
int edgeseq_frame_unpack(const uint8_t *raw, size_t n, edgeseq_frame_t *f);

/* ---- sender side -------------------------------------------------------------------------- */

/* Every frame a side sends takes the next seq, whatever its type, wrapping 65535 -> 0. */
typedef struct {
    uint16_t next;
} edgeseq_seq_t;

void edgeseq_seq_init(edgeseq_seq_t *s);
uint16_t edgeseq_seq_take(edgeseq_seq_t *s);

/* A sequence counter and one wire buffer: build a frame, write s->wire[0 .. len) to the port.
 * The counter advances only when the frame was built. */
typedef struct {
    edgeseq_seq_t seq;
    uint8_t wire[EDGESEQ_MAX_WIRE];
} edgeseq_sender_t;

void edgeseq_sender_init(edgeseq_sender_t *s);
int edgeseq_sender_encode(edgeseq_sender_t *s, uint8_t type, uint32_t timestamp_us, uint8_t channels,
                          uint8_t sample_format, const uint8_t *payload, size_t payload_len);

/* ---- incremental decoder ------------------------------------------------------------------ */

/* Same classification and counters as Python's FrameDecoder: a chunk between two 0x00 that is
 * valid COBS of 12..254 bytes but fails its CRC is a crc_error; bad COBS, too short, too long,
 * an overflow (257 bytes without 0x00, counted once at the next delimiter) or a version other
 * than 1 is a framing_error; empty chunks are idle fill. */
typedef struct {
    uint8_t buf[EDGESEQ_MAX_ENCODED]; /* the COBS chunk, decoded in place when its 0x00 arrives */
    uint16_t len;      /* bytes of the current chunk (counted on while overflowing) */
    uint8_t overflow;  /* the current chunk passed EDGESEQ_MAX_WIRE bytes: drop it at the 0x00 */
    int8_t last_error; /* EDGESEQ_E_* of the latest rejected chunk, 0 if none yet */
    uint32_t frames;
    uint32_t crc_errors;
    uint32_t framing_errors;
    uint32_t bytes;
    uint32_t discarded_bytes;
} edgeseq_decoder_t;

typedef void (*edgeseq_frame_cb)(const edgeseq_frame_t *frame, void *user);

void edgeseq_decoder_init(edgeseq_decoder_t *d);
/* Forget a partial chunk (the port was reopened); its bytes count as discarded. */
void edgeseq_decoder_reset(edgeseq_decoder_t *d);
/* One byte in. Returns 1 and fills *out when the byte completed a good frame, else 0. */
int edgeseq_decoder_put(edgeseq_decoder_t *d, uint8_t byte, edgeseq_frame_t *out);
/* A buffer in; cb (may be NULL) sees every good frame in order. Returns how many there were. */
size_t edgeseq_decoder_feed(edgeseq_decoder_t *d, const uint8_t *data, size_t n, edgeseq_frame_cb cb,
                            void *user);
/* Poll style: consume data until a good frame completes (returns bytes consumed, *got = 1, *out
 * filled) or data ends (returns n, *got = 0). Call again with the rest. */
size_t edgeseq_decoder_poll(edgeseq_decoder_t *d, const uint8_t *data, size_t n, edgeseq_frame_t *out,
                            int *got);
/* Bytes of an unfinished chunk (0 right after a delimiter). */
size_t edgeseq_decoder_pending(const edgeseq_decoder_t *d);

/* ---- payloads ----------------------------------------------------------------------------- */

/* Each builder writes into dst (at most cap bytes) and returns the payload length or < 0.
 * Strings are NUL-terminated ASCII, at most 255 bytes. */

/* INFO: f32 rate, f32 scale[channels], f32 offset[channels], u8 len + id, u8 len + units. */
int edgeseq_info_payload(uint8_t *dst, size_t cap, float sample_rate_hz, const float *scale,
                         const float *offset, uint8_t channels, const char *device_id, const char *units);

/* SAMPLES: u32 first_index then count values (n samples x channels, interleaved by sample). */
int edgeseq_samples_payload_i16(uint8_t *dst, size_t cap, uint32_t first_index, const int16_t *values,
                                size_t count);
int edgeseq_samples_payload_i32(uint8_t *dst, size_t cap, uint32_t first_index, const int32_t *values,
                                size_t count);
int edgeseq_samples_payload_f32(uint8_t *dst, size_t cap, uint32_t first_index, const float *values,
                                size_t count);

/* HEARTBEAT: u32 next_index. */
int edgeseq_heartbeat_payload(uint8_t *dst, size_t cap, uint32_t next_index);

/* ERROR: u8 code, then the message; non-ASCII bytes become '?', the message is cut to fit
 * min(cap, EDGESEQ_MAX_PAYLOAD). */
int edgeseq_error_payload(uint8_t *dst, size_t cap, uint8_t code, const char *message);

/* PREDICTION (host to device; here for hosts written in C and for tests): u32 index, u8 label,
 * f32 score, u8 len + label (cut to EDGESEQ_MAX_LABEL bytes). */
int edgeseq_prediction_payload(uint8_t *dst, size_t cap, uint32_t sample_index, uint8_t label_index,
                               float score, const char *label);

typedef struct {
    uint32_t sample_index;
    uint8_t label_index;     /* EDGESEQ_NO_LABEL: a score only */
    float score;
    uint8_t label_len;       /* as announced; label[] holds at most EDGESEQ_MAX_LABEL of them */
    char label[EDGESEQ_MAX_LABEL + 1]; /* NUL-terminated */
} edgeseq_prediction_t;

/* Host-to-device parsers: 0 on success, EDGESEQ_E_PAYLOAD when the frame is of another type or
 * its payload is malformed. START and STOP ignore any payload bytes (room for later versions). */
int edgeseq_parse_start(const edgeseq_frame_t *f);
int edgeseq_parse_stop(const edgeseq_frame_t *f);
int edgeseq_parse_prediction(const edgeseq_frame_t *f, edgeseq_prediction_t *p);

/* Little-endian field access for payloads, usable on any MCU. */
void edgeseq_put_u16(uint8_t *p, uint16_t v);
void edgeseq_put_u32(uint8_t *p, uint32_t v);
void edgeseq_put_f32(uint8_t *p, float v);
uint16_t edgeseq_get_u16(const uint8_t *p);
uint32_t edgeseq_get_u32(const uint8_t *p);
float edgeseq_get_f32(const uint8_t *p);

#ifdef __cplusplus
}
#endif

#endif /* EDGESEQ_FRAME_H */
