/*
 * edgeseq device: four load cells (a balance board) through four HX711 amplifiers, 80 Hz, over
 * the edgeseq serial protocol (firmware_bridge/PROTOCOL.md). One SAMPLES frame per sample of
 * 4 int32 channels. Bit-banged HX711 interface, no external library.
 *
 * Wiring (HX711 breakouts -> Arduino Uno/Nano):
 *   VCC/VDD -> 5V, GND -> GND, SCK of all four -> D2 (shared clock: the four are read together),
 *   DOUT -> D3, D4, D5, D6 (channels 0..3), RATE -> VCC on each board (80 samples/s; many boards
 *   tie RATE to GND, 10 samples/s, with a solder jumper). Load cell on channel A (E+, E-, A+, A-).
 *
 * Calibration (INFO sends it; the sketch always sends raw counts): N = (count - TARE_COUNTS[c]) *
 * N_PER_COUNT[c]. With the board empty, note each channel's raw count (TARE_COUNTS); put a known
 * mass m (kg) on one cell, note the change d in counts: N_PER_COUNT = m * 9.81 / d.
 */
#include <Arduino.h>
#include <edgeseq_frame.h>

/* ---- settings ------------------------------------------------------------------------------ */
static const uint8_t SCK_PIN = 2;
static const uint8_t DOUT_PINS[4] = {3, 4, 5, 6};
static const unsigned long BAUD = 115200;
/* Placeholders until calibrated: the right values depend on the load cells and the board. */
static const float N_PER_COUNT[4] = {2.0e-4f, 2.0e-4f, 2.0e-4f, 2.0e-4f};
static const int32_t TARE_COUNTS[4] = {0, 0, 0, 0};
/* The HX711's conversion rate with RATE high and its internal oscillator (or an 11.0592 MHz
 * crystal); the sketch reads each conversion as it becomes ready, so this is the stream's rate. */
static const float SAMPLE_RATE_HZ = 80.0f;

/* ---- protocol constants -------------------------------------------------------------------- */
static const uint8_t CHANNELS = 4;
static const uint32_t PERIOD_US = 12500;            /* 1 / 80 Hz */
static const uint32_t NOT_READY_US = 100000;        /* no conversion for 8 periods: a sensor fault */
static const uint32_t HEARTBEAT_US = 1000000;

static edgeseq_sender_t tx;
static edgeseq_decoder_t rx;
static uint8_t payload[64];   /* INFO with 4 channels: 4 + 32 + 8 + 2 = 46 bytes */

static bool streaming = false;
static uint32_t sample_index = 0; /* conversions since power-up, sent or not */
static uint32_t last_read_us;
static bool have_read = false;
static uint32_t last_heartbeat_us;
static uint32_t last_fault_us;

static void send(uint8_t type, uint32_t ts, uint8_t channels, uint8_t fmt, int n)
{
    if (n < 0)
        return;
    int w = edgeseq_sender_encode(&tx, type, ts, channels, fmt, payload, (size_t)n);
    if (w > 0)
        Serial.write(tx.wire, (size_t)w);
}

static void send_info(void)
{
    float scale[4], offset[4];
    for (uint8_t c = 0; c < CHANNELS; c++) {
        scale[c] = N_PER_COUNT[c];
        offset[c] = (float)(-TARE_COUNTS[c]) * N_PER_COUNT[c];
    }
    send(EDGESEQ_INFO, micros(), CHANNELS, EDGESEQ_FMT_INT32,
         edgeseq_info_payload(payload, sizeof payload, SAMPLE_RATE_HZ, scale, offset, CHANNELS, "hx711x4", "N"));
}

static void send_error(uint8_t code, const char *msg)
{
    send(EDGESEQ_ERROR, micros(), 0, 0, edgeseq_error_payload(payload, sizeof payload, code, msg));
}

static void send_heartbeat(void)
{
    last_heartbeat_us = micros();
    send(EDGESEQ_HEARTBEAT, last_heartbeat_us, 0, 0, edgeseq_heartbeat_payload(payload, sizeof payload, sample_index));
}

static bool all_ready(void)
{
    for (uint8_t c = 0; c < CHANNELS; c++)
        if (digitalRead(DOUT_PINS[c]) != LOW) /* DOUT low = a conversion is waiting */
            return false;
    return true;
}

/* 24 bits from each HX711 at once (shared SCK), MSB first, then a 25th pulse that selects
 * channel A, gain 128 for the next conversion. SCK high for more than 60 us powers an HX711 down,
 * so interrupts are held off only across each short high phase; DOUT stays valid after the
 * falling edge, so it is read with interrupts on. */
static void read_all(int32_t out[4])
{
    uint32_t v[4] = {0, 0, 0, 0};
    for (uint8_t bit = 0; bit < 25; bit++) {
        noInterrupts();
        digitalWrite(SCK_PIN, HIGH);
        delayMicroseconds(1);
        digitalWrite(SCK_PIN, LOW);
        interrupts();
        if (bit < 24)
            for (uint8_t c = 0; c < CHANNELS; c++)
                v[c] = (v[c] << 1) | (uint32_t)(digitalRead(DOUT_PINS[c]) == HIGH);
    }
    for (uint8_t c = 0; c < CHANNELS; c++) {
        if (v[c] & 0x800000u)
            v[c] |= 0xFF000000u; /* 24-bit two's complement */
        out[c] = (int32_t)v[c];
    }
}

static void take_sample(void)
{
    int32_t values[4];
    uint32_t now = micros();
    read_all(values);
    if (have_read) {
        /* A conversion that was not read in time is overwritten by the next one: count the
         * periods that went by without a read as lost samples, so indices stay on the clock. */
        uint32_t periods = ((now - last_read_us) + PERIOD_US / 2) / PERIOD_US;
        if (periods > 1) {
            sample_index += periods - 1;
            if (streaming)
                send_error(EDGESEQ_ERR_CODE_OVERRUN, "conversions missed");
        }
    }
    have_read = true;
    last_read_us = now;
    if (streaming) {
        send(EDGESEQ_SAMPLES, now, CHANNELS, EDGESEQ_FMT_INT32,
             edgeseq_samples_payload_i32(payload, sizeof payload, sample_index, values, CHANNELS));
    }
    sample_index++;
    if (streaming && (uint32_t)(micros() - last_heartbeat_us) >= HEARTBEAT_US)
        send_heartbeat();
}

static void handle(const edgeseq_frame_t *f)
{
    switch (f->type) {
    case EDGESEQ_START:
        send_info(); /* also while streaming: the host asks again after a reconnect */
        if (!streaming) {
            streaming = true;
            last_heartbeat_us = micros();
        }
        break;
    case EDGESEQ_STOP:
        if (streaming) {
            streaming = false;
            send_heartbeat();
        }
        break;
    default:
        break; /* PREDICTION: nothing to show it on; unknown types: ignored (PROTOCOL.md 3) */
    }
}

static void poll_serial(void)
{
    edgeseq_frame_t f;
    while (Serial.available() > 0) {
        int c = Serial.read();
        if (c < 0)
            break;
        if (edgeseq_decoder_put(&rx, (uint8_t)c, &f))
            handle(&f);
    }
}

void setup(void)
{
    pinMode(SCK_PIN, OUTPUT);
    digitalWrite(SCK_PIN, LOW); /* SCK low powers the HX711s up */
    for (uint8_t c = 0; c < CHANNELS; c++)
        pinMode(DOUT_PINS[c], INPUT);
    Serial.begin(BAUD);
    edgeseq_sender_init(&tx);
    edgeseq_decoder_init(&rx);
    static const uint8_t idle = 0;
    Serial.write(&idle, 1);
    last_fault_us = micros();
}

void loop(void)
{
    poll_serial();
    uint32_t now = micros();
    if (all_ready()) {
        take_sample();
    } else if (have_read && (uint32_t)(now - last_read_us) >= NOT_READY_US &&
               (uint32_t)(now - last_fault_us) >= 1000000u) {
        last_fault_us = now;
        if (streaming)
            send_error(EDGESEQ_ERR_CODE_SENSOR, "hx711 not ready");
    }
}
