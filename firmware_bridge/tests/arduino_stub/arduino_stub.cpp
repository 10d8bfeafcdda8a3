/* Host main for the example sketches: runs setup() and loop() on a simulated clock for a few
 * seconds, sends START, a PREDICTION "V" and STOP as the host would, and writes everything the
 * sketch sent to the file named by argv[1] (tests/test_firmware_c.py decodes it with Python).
 *
 * Simulated hardware: analogRead returns a slow sawtooth; with -DSTUB_HX711 every INPUT pin is an
 * HX711 DOUT (a conversion every 12.5 ms, 24 bits shifted out on the rising edges of any OUTPUT
 * pin other than LED_BUILTIN, which is the shared SCK); otherwise INPUT pins are AD8232 leads-off
 * outputs, HIGH (leads off) from 1.5 s to 1.7 s.
 *
 * A recorded stream instead (the ECG sketch; tests/test_firmware_classify.py): with the
 * environment variable STUB_ECG_MV naming a file of little-endian float32 samples in mV, each
 * analogRead after the sketch's INFO returns the next one as ADC counts, converted back with the
 * scale and offset that INFO announced (the stub decodes what the sketch sends), so the sketch's
 * own gain constants are the only ones; counts are rounded and clipped to the 10-bit range (the
 * clipped ones are reported). Leads stay on, and STOP is sent once the file is exhausted; the run
 * ends half a simulated second later. Before INFO, analogRead returns 512 (nothing is streamed). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "Arduino.h"
#include "edgeseq_frame.h"

StubSerial Serial;

static unsigned long long now_us;
static uint8_t pin_mode[64], pin_level[64];
static uint8_t rx[1024];
static size_t rx_len, rx_pos;
static FILE *tx;
static unsigned long tx_bytes;

/* STUB_ECG_MV: the recorded stream and what the sketch's INFO says about its counts. */
static float *ecg_mv;
static size_t ecg_n, ecg_pos;
static unsigned long ecg_clipped;
static int have_info;
static float info_scale, info_offset;
static edgeseq_decoder_t tx_dec; /* the sketch's own frames, read back for its INFO */

/* Every core call costs a little simulated time, so busy loops end. */
static void tick(unsigned us) { now_us += us; }

unsigned long micros(void) { tick(1); return (unsigned long)(uint32_t)now_us; }
unsigned long millis(void) { tick(1); return (unsigned long)(uint32_t)(now_us / 1000u); }
void delay(unsigned long ms) { now_us += 1000ull * ms; }
void delayMicroseconds(unsigned int us) { now_us += us; }
void noInterrupts(void) {}
void interrupts(void) {}
void pinMode(uint8_t pin, uint8_t mode) { pin_mode[pin & 63] = mode; }

static float le_f32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* INFO of one channel: f32 rate, f32 scale, f32 offset, then the strings (PROTOCOL.md 3). */
static void watch_tx(const uint8_t *buf, size_t n)
{
    edgeseq_frame_t f;
    for (size_t i = 0; i < n; i++)
        if (edgeseq_decoder_put(&tx_dec, buf[i], &f) && f.type == EDGESEQ_INFO && f.channels == 1 &&
            f.payload_len >= 12) {
            info_scale = le_f32(f.payload + 4);
            info_offset = le_f32(f.payload + 8);
            have_info = info_scale != 0.0f;
        }
}

int analogRead(uint8_t pin)
{
    (void)pin;
    tick(100); /* an AVR conversion takes about 100 us */
    if (ecg_mv == NULL)
        return (int)((now_us / 2000u) % 1024u);
    if (!have_info || ecg_pos >= ecg_n)
        return 512;
    /* the inverse of the host's mV = count * scale + offset */
    double c = floor(((double)ecg_mv[ecg_pos++] - (double)info_offset) / (double)info_scale + 0.5);
    if (c < 0.0 || c > 1023.0) {
        ecg_clipped++;
        c = c < 0.0 ? 0.0 : 1023.0;
    }
    return (int)c;
}

static void load_ecg(const char *path)
{
    FILE *f = fopen(path, "rb");
    long size;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        perror(path);
        exit(1);
    }
    ecg_n = (size_t)size / 4;
    ecg_mv = (float *)malloc(ecg_n ? ecg_n * sizeof(float) : 1);
    uint8_t b[4];
    for (size_t i = 0; ecg_mv != NULL && i < ecg_n; i++) {
        if (fread(b, 1, 4, f) != 4) {
            perror(path);
            exit(1);
        }
        ecg_mv[i] = le_f32(b);
    }
    fclose(f);
    if (ecg_mv == NULL || ecg_n == 0) {
        fprintf(stderr, "stub: %s holds no float32 samples\n", path);
        exit(1);
    }
}

#ifdef STUB_HX711
struct hx711 {
    unsigned long long ready_at;
    int bit; /* 0: idle; 1..24: bit shown; 25: done */
    int32_t value;
};
static hx711 cells[64];

static void sck_rising(void)
{
    for (int p = 0; p < 64; p++) {
        hx711 &c = cells[p];
        if (pin_mode[p] != INPUT)
            continue;
        if (c.bit == 0 && now_us < c.ready_at)
            continue;
        if (++c.bit >= 25) {
            c.bit = 0;
            c.ready_at = now_us + 12500u;
            c.value = (int32_t)((now_us / 1000u) % 20000u) * (p % 2 ? 1 : -1) + 8000 * p;
        }
    }
}

int digitalRead(uint8_t pin)
{
    hx711 &c = cells[pin & 63];
    tick(1);
    if (c.bit > 0)
        return (((uint32_t)c.value & 0xFFFFFFu) >> (24 - c.bit)) & 1u;
    return now_us >= c.ready_at ? LOW : HIGH;
}
#else
static void sck_rising(void) {}

int digitalRead(uint8_t pin)
{
    tick(1);
    if (pin_mode[pin & 63] == OUTPUT)
        return pin_level[pin & 63];
    if (ecg_mv != NULL)
        return LOW; /* a recording's leads are on */
    return (now_us >= 1500000u && now_us < 1700000u) ? HIGH : LOW;
}
#endif

void digitalWrite(uint8_t pin, uint8_t value)
{
    uint8_t was = pin_level[pin & 63];
    tick(1);
    pin_level[pin & 63] = value ? HIGH : LOW;
    if (!was && value && pin != LED_BUILTIN && pin_mode[pin & 63] == OUTPUT)
        sck_rising();
}

void StubSerial::begin(unsigned long baud) { (void)baud; }
int StubSerial::available(void) { tick(1); return (int)(rx_len - rx_pos); }
int StubSerial::read(void) { return rx_pos < rx_len ? rx[rx_pos++] : -1; }
size_t StubSerial::write(uint8_t b) { return write(&b, 1); }

size_t StubSerial::write(const uint8_t *buf, size_t n)
{
    tick((unsigned)(n * 87u)); /* 115200 baud, 10 bits a byte */
    tx_bytes += (unsigned long)n;
    if (ecg_mv != NULL)
        watch_tx(buf, n);
    return fwrite(buf, 1, n, tx);
}

/* What the host sends: a frame into the sketch's receive queue. */
static void host_send(uint8_t type, uint16_t seq, const uint8_t *payload, size_t n)
{
    edgeseq_frame_t f = edgeseq_frame_make(type, seq, 0, 0, 0, payload, n);
    int w = edgeseq_frame_encode(&f, rx + rx_len, sizeof rx - rx_len);
    if (w < 0) {
        fprintf(stderr, "stub: rx queue full\n");
        exit(1);
    }
    rx_len += (size_t)w;
}

int main(int argc, char **argv)
{
    uint8_t p[64];
    int stage = 0;
    unsigned long long end_us = 3000000u;
    const char *ecg_path = getenv("STUB_ECG_MV");
    if (argc < 2) {
        fprintf(stderr, "usage: %s TX_FILE\n", argv[0]);
        return 2;
    }
    tx = fopen(argv[1], "wb");
    if (tx == NULL) {
        perror(argv[1]);
        return 1;
    }
    if (ecg_path != NULL && *ecg_path) {
        load_ecg(ecg_path);
        edgeseq_decoder_init(&tx_dec);
        end_us = ~0ull; /* until STOP, below */
    }
    setup();
    while (now_us < end_us) {
        if (stage == 0 && now_us >= 100000u) {
            host_send(EDGESEQ_START, 0, NULL, 0);
            stage++;
        } else if (stage == 1 && now_us >= 1000000u) {
            int n = edgeseq_prediction_payload(p, sizeof p, 300, 2, 0.9f, "V");
            host_send(EDGESEQ_PREDICTION, 1, p, (size_t)n);
            host_send(0x7F, 2, NULL, 0); /* a type from a later version: ignored */
            stage++;
        } else if (stage == 2 && (ecg_mv != NULL ? ecg_pos >= ecg_n : now_us >= 2500000u)) {
            host_send(EDGESEQ_STOP, 3, NULL, 0);
            stage++;
            if (ecg_mv != NULL)
                end_us = now_us + 500000u;
        }
        if (ecg_mv != NULL && !have_info && now_us > 10000000u) {
            fprintf(stderr, "stub: no INFO from the sketch in 10 simulated seconds\n");
            return 1;
        }
        loop();
        tick(5);
    }
    fclose(tx);
    if (ecg_mv != NULL) {
        printf("%s: %zu samples of %s read, %lu clipped; %lu bytes sent in %.1f simulated seconds\n", argv[0],
               ecg_pos, ecg_path, ecg_clipped, tx_bytes, (double)now_us / 1e6);
        free(ecg_mv);
        return tx_bytes > 0 && ecg_pos == ecg_n ? 0 : 1;
    }
    printf("%s: %lu bytes sent in 3 simulated seconds\n", argv[0], tx_bytes);
    return tx_bytes > 0 ? 0 : 1;
}
