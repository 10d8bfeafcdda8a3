/* Host main for the example sketches: runs setup() and loop() on a simulated clock for a few
 * seconds, sends START, a PREDICTION "V" and STOP as the host would, and writes everything the
 * sketch sent to the file named by argv[1] (tests/test_firmware_c.py decodes it with Python).
 *
 * Simulated hardware: analogRead returns a slow sawtooth; with -DSTUB_HX711 every INPUT pin is an
 * HX711 DOUT (a conversion every 12.5 ms, 24 bits shifted out on the rising edges of any OUTPUT
 * pin other than LED_BUILTIN, which is the shared SCK); otherwise INPUT pins are AD8232 leads-off
 * outputs, HIGH (leads off) from 1.5 s to 1.7 s. */
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

/* Every core call costs a little simulated time, so busy loops end. */
static void tick(unsigned us) { now_us += us; }

unsigned long micros(void) { tick(1); return (unsigned long)(uint32_t)now_us; }
unsigned long millis(void) { tick(1); return (unsigned long)(uint32_t)(now_us / 1000u); }
void delay(unsigned long ms) { now_us += 1000ull * ms; }
void delayMicroseconds(unsigned int us) { now_us += us; }
void noInterrupts(void) {}
void interrupts(void) {}
void pinMode(uint8_t pin, uint8_t mode) { pin_mode[pin & 63] = mode; }

int analogRead(uint8_t pin)
{
    (void)pin;
    tick(100); /* an AVR conversion takes about 100 us */
    return (int)((now_us / 2000u) % 1024u);
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
    if (argc < 2) {
        fprintf(stderr, "usage: %s TX_FILE\n", argv[0]);
        return 2;
    }
    tx = fopen(argv[1], "wb");
    if (tx == NULL) {
        perror(argv[1]);
        return 1;
    }
    setup();
    while (now_us < 3000000u) {
        if (stage == 0 && now_us >= 100000u) {
            host_send(EDGESEQ_START, 0, NULL, 0);
            stage++;
        } else if (stage == 1 && now_us >= 1000000u) {
            int n = edgeseq_prediction_payload(p, sizeof p, 300, 2, 0.9f, "V");
            host_send(EDGESEQ_PREDICTION, 1, p, (size_t)n);
            host_send(0x7F, 2, NULL, 0); /* a type from a later version: ignored */
            stage++;
        } else if (stage == 2 && now_us >= 2500000u) {
            host_send(EDGESEQ_STOP, 3, NULL, 0);
            stage++;
        }
        loop();
        tick(5);
    }
    fclose(tx);
    printf("%s: %lu bytes sent in 3 simulated seconds\n", argv[0], tx_bytes);
    return tx_bytes > 0 ? 0 : 1;
}
