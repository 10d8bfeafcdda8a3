/*
 * edgeseq device: one ECG lead from an AD8232 front end, 360 Hz, over the edgeseq serial protocol
 * (firmware_bridge/PROTOCOL.md). Install firmware_bridge/ as an Arduino library, flash, and run
 * `edgeseq serve` on the host; the host sends START, this sketch answers INFO and streams SAMPLES.
 *
 * Wiring (AD8232 breakout -> Arduino Uno/Nano; 3.3 V part, do not power it from 5 V):
 *   3.3V -> 3.3V, GND -> GND, OUTPUT -> A0, LO+ -> D10, LO- -> D11 (SDN unconnected or HIGH)
 *
 * Samples are raw ADC counts (int16); INFO tells the host how to turn them into mV at the
 * electrodes: mV = count * ADC_REF_MV / ADC_COUNTS / ECG_GAIN - ECG_MID_MV / ECG_GAIN.
 * Set the four constants below to your board.
 */
#include <Arduino.h>
#include <edgeseq_frame.h>

/* ---- settings ------------------------------------------------------------------------------ */
static const uint8_t ECG_PIN = A0;
static const uint8_t LO_PLUS_PIN = 10;
static const uint8_t LO_MINUS_PIN = 11;
static const uint8_t LED_PIN = LED_BUILTIN;
static const unsigned long BAUD = 115200;

/* ADC full scale in mV: 5000 on a 5 V Uno/Nano with the default reference (3300 if AREF is tied
 * to 3.3 V and analogReference(EXTERNAL) is called in setup(), which uses the ADC range better). */
static const float ADC_REF_MV = 5000.0f;
static const float ADC_COUNTS = 1024.0f; /* 10-bit ADC */
/* Gain from electrodes to OUTPUT. 100 is the AD8232 instrumentation amplifier's fixed gain; a
 * breakout whose output op-amp stage adds gain needs that factor multiplied in (see its schematic). */
static const float ECG_GAIN = 100.0f;
/* The output's zero: the AD8232 biases it at REFOUT, half its 3.3 V supply on common breakouts. */
static const float ECG_MID_MV = 1650.0f;

/* ---- protocol constants -------------------------------------------------------------------- */
static const float SAMPLE_RATE_HZ = 360.0f;
/* 1e6 / 360 = 2777 + 7/9 us: step 2777 us and add 1 us on 7 of every 9 samples, so the mean rate
 * is exactly 360 Hz with integer arithmetic only. */
static const uint32_t PERIOD_US = 2777;
static const uint8_t PERIOD_FRAC_NUM = 7, PERIOD_FRAC_DEN = 9;
static const uint8_t PER_FRAME = 10; /* 36 frames/s, 38 bytes each on the wire (PROTOCOL.md 6) */
static const uint32_t LATE_LIMIT_US = 4 * PERIOD_US; /* later than this: skip, report an overrun */
static const uint32_t HEARTBEAT_US = 1000000;
static const unsigned long BLINK_MS = 150;

static edgeseq_sender_t tx;     /* seq counter + 257-byte wire buffer */
static edgeseq_decoder_t rx;    /* 256-byte receive buffer */
static uint8_t payload[48];     /* INFO (30 bytes), SAMPLES (24), ERROR messages kept short */

static bool streaming = false;
static uint32_t sample_index = 0; /* samples since power-up, sent or not: START never resets it */
static uint32_t next_us;
static uint8_t frac_acc = 0;
static int16_t frame_buf[PER_FRAME];
static uint8_t frame_n = 0;
static uint32_t frame_first_index, frame_first_us;
static uint32_t last_heartbeat_us;
static bool leads_off = false;
static uint32_t leads_off_reported_us;
static unsigned long led_off_at_ms = 0;
static bool led_on = false;

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
    const float scale[1] = {ADC_REF_MV / ADC_COUNTS / ECG_GAIN};
    const float offset[1] = {-ECG_MID_MV / ECG_GAIN};
    send(EDGESEQ_INFO, micros(), 1, EDGESEQ_FMT_INT16,
         edgeseq_info_payload(payload, sizeof payload, SAMPLE_RATE_HZ, scale, offset, 1, "ecg-ad8232", "mV"));
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

/* Samples in one frame must have consecutive indices: send what is buffered (1..PER_FRAME). */
static void flush_samples(void)
{
    if (frame_n == 0)
        return;
    send(EDGESEQ_SAMPLES, frame_first_us, 1, EDGESEQ_FMT_INT16,
         edgeseq_samples_payload_i16(payload, sizeof payload, frame_first_index, frame_buf, frame_n));
    frame_n = 0;
    /* Heartbeats go out only between frames, so next_index is exactly the next index sent. */
    if ((uint32_t)(micros() - last_heartbeat_us) >= HEARTBEAT_US)
        send_heartbeat();
}

static void take_sample(uint32_t now)
{
    int16_t v = (int16_t)analogRead(ECG_PIN);
    uint32_t index = sample_index++; /* first, so a heartbeat sent by the flush sees the next one */
    if (streaming) {
        if (frame_n == 0) {
            frame_first_index = index;
            frame_first_us = now;
        }
        frame_buf[frame_n++] = v;
        if (frame_n == PER_FRAME)
            flush_samples();
    }
}

static void handle(const edgeseq_frame_t *f)
{
    edgeseq_prediction_t p;
    switch (f->type) {
    case EDGESEQ_START:
        /* also while streaming: a host that reconnected or lost INFO asks again */
        send_info();
        if (!streaming) {
            streaming = true;
            frame_n = 0;
            last_heartbeat_us = micros();
        }
        break;
    case EDGESEQ_STOP:
        if (streaming) {
            flush_samples();
            streaming = false;
            send_heartbeat(); /* lets the host count samples lost at the end */
        }
        break;
    case EDGESEQ_PREDICTION:
        if (edgeseq_parse_prediction(f, &p) != 0) {
            send_error(EDGESEQ_ERR_CODE_COMMAND, "bad prediction");
        } else if (strcmp(p.label, "V") == 0) {
            digitalWrite(LED_PIN, HIGH); /* a ventricular beat: blink */
            led_on = true;
            led_off_at_ms = millis() + BLINK_MS;
        }
        break;
    default:
        break; /* unknown types are ignored (PROTOCOL.md 3) */
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

static void check_leads(uint32_t now)
{
    bool off = digitalRead(LO_PLUS_PIN) == HIGH || digitalRead(LO_MINUS_PIN) == HIGH;
    /* on the transition, then once a second while an electrode stays off */
    if (off && streaming && (!leads_off || (uint32_t)(now - leads_off_reported_us) >= 1000000u)) {
        send_error(EDGESEQ_ERR_CODE_SENSOR, "leads off");
        leads_off_reported_us = now;
    }
    leads_off = off;
}

void setup(void)
{
    pinMode(LO_PLUS_PIN, INPUT);
    pinMode(LO_MINUS_PIN, INPUT);
    pinMode(LED_PIN, OUTPUT);
    digitalWrite(LED_PIN, LOW);
    Serial.begin(BAUD);
    edgeseq_sender_init(&tx);
    edgeseq_decoder_init(&rx);
    static const uint8_t idle = 0;
    Serial.write(&idle, 1); /* ends whatever the host's buffer held (PROTOCOL.md 1) */
    next_us = micros() + PERIOD_US;
}

void loop(void)
{
    poll_serial();
    uint32_t now = micros();
    if ((int32_t)(now - next_us) >= 0) {
        uint32_t late = now - next_us;
        if (late > LATE_LIMIT_US) {
            /* Fell behind (a long serial write?): the skipped samples are lost; say so, and keep
             * indices on the clock so the host sees the gap where it happened. */
            uint32_t missed = late / PERIOD_US;
            flush_samples();
            sample_index += missed;
            next_us = now;
            if (streaming)
                send_error(EDGESEQ_ERR_CODE_OVERRUN, "sampling late");
        }
        take_sample(now);
        next_us += PERIOD_US;
        if (++frac_acc >= PERIOD_FRAC_DEN)
            frac_acc = 0;
        if (frac_acc < PERIOD_FRAC_NUM)
            next_us += 1;
        check_leads(now);
    }
    if (led_on && (long)(millis() - led_off_at_ms) >= 0) {
        digitalWrite(LED_PIN, LOW);
        led_on = false;
    }
}
