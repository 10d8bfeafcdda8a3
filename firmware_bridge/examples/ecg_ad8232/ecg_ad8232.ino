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
 *
 * Classify mode (EDGESEQ_CLASSIFY 1 in edgeseq_classify.h, written with model.c and model.h into
 * the sketch folder by `python -m edgeseq.bridge.sketch C_BUNDLE SKETCH_DIR`): the sketch also runs
 * the bundle's ECG front end and model on every streamed sample and sends a PREDICTION frame for
 * each beat beside the SAMPLES; `edgeseq serve` classifies the same samples and reports how often
 * the two labels agree. Needs a board with about 48 KB of free RAM and a 64-bit double (not an
 * Uno or Nano): firmware_bridge/README.md, "Classifying on the device".
 */
#include <Arduino.h>
#include <edgeseq_frame.h>

#include "edgeseq_classify.h" /* the shipped one says EDGESEQ_CLASSIFY 0 */
#if EDGESEQ_CLASSIFY
#ifndef ES_CLASSIFY_LABELS
#error "EDGESEQ_CLASSIFY needs the edgeseq_classify.h written by python -m edgeseq.bridge.sketch"
#endif
#include <math.h>
#include <edgeseq_ecg.h>
extern "C" {
#include "model.h" /* generated C has no extern "C" of its own */
}
#endif

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

/* mV = count * MV_PER_COUNT + MV_AT_ZERO: sent in INFO (the host scales the samples with it) and,
 * in classify mode, used for the device's own front end, so both sides see the same mV. */
static const float MV_PER_COUNT = ADC_REF_MV / ADC_COUNTS / ECG_GAIN;
static const float MV_AT_ZERO = -ECG_MID_MV / ECG_GAIN;

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
static uint8_t payload[48];     /* INFO (30 bytes), SAMPLES (24), PREDICTION (10 + label <= 42), short ERRORs */

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

#if EDGESEQ_CLASSIFY
/* The front end's R-peak arithmetic is double, as in the host's Python; AVR's double is 32 bits,
 * which would find other R peaks than the host (and an Uno has 2 KB of RAM, es_ecg_t ~40 KB). */
static_assert(sizeof(double) == 8, "classify mode needs a 64-bit double (ARM, ESP32, RP2040; not AVR)");
static_assert(ES_WINDOW_LENGTH == ES_CLASSIFY_WINDOW, "model.h and edgeseq_classify.h come from different bundles");
static_assert(ES_RR_SIZE == ES_ECG_FEATURES, "model.h takes other RR features than the front end makes");
static_assert(ES_LOGITS_SIZE == ES_CLASSIFY_N_LABELS, "model.h and edgeseq_classify.h come from different bundles");
static_assert(ES_CLASSIFY_FITS, "the library's src/edgeseq_ecg_config.h is too small for this bundle: "
              "python -m edgeseq.export.c_frontend BUNDLE -o LIBRARY/src/edgeseq_ecg_config.h");

static const char *const LABELS[ES_CLASSIFY_N_LABELS] = ES_CLASSIFY_LABELS;
static const es_ecg_config_t FE_CFG = ES_CLASSIFY_FRONTEND_INIT;
static es_ecg_t fe;          /* the whole front end state, fixed size (edgeseq_ecg_config.h) */
static es_beat_t beat;       /* static: a window of floats is too large for a small stack */
static bool fe_ok = false;   /* es_ecg_init accepted FE_CFG */
static bool fe_started = false;
static uint32_t fe_origin;   /* device index of the front end's sample 0: beat.r + fe_origin */
static uint32_t fe_next;     /* device index the front end expects next */
#endif

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
    const float scale[1] = {MV_PER_COUNT};
    const float offset[1] = {MV_AT_ZERO};
    send(EDGESEQ_INFO, micros(), 1, EDGESEQ_FMT_INT16,
         edgeseq_info_payload(payload, sizeof payload, SAMPLE_RATE_HZ, scale, offset, 1, "ecg-ad8232", "mV"));
}

static void send_error(uint8_t code, const char *msg)
{
    send(EDGESEQ_ERROR, micros(), 0, 0, edgeseq_error_payload(payload, sizeof payload, code, msg));
}

static void blink(void)
{
    digitalWrite(LED_PIN, HIGH);
    led_on = true;
    led_off_at_ms = millis() + BLINK_MS;
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

#if EDGESEQ_CLASSIFY
/* One beat through the model, sent as PREDICTION: sample_index is the R peak in the device's
 * sample numbering (the SAMPLES frames' first_index), score the softmax probability of the
 * winning label, as edgeseq serve reports its own. A beat whose logits are not finite is not
 * labelled (the host counts such beats, it never labels them). */
static void classify(const es_beat_t *b)
{
    float z[ES_LOGITS_SIZE];
    if (es_window(b->window, b->rr, z) != 0)
        return;
    int k = 0;
    for (int i = 1; i < ES_LOGITS_SIZE; i++)
        if (z[i] > z[k]) /* the first of equal maxima, as numpy's argmax */
            k = i;
    float sum = 0.0f;
    for (int i = 0; i < ES_LOGITS_SIZE; i++)
        sum += expf(z[i] - z[k]);
    if (!(z[k] - z[k] == 0.0f) || !(sum >= 1.0f))
        return; /* an infinite or NaN logit */
    send(EDGESEQ_PREDICTION, micros(), 0, 0,
         edgeseq_prediction_payload(payload, sizeof payload, fe_origin + b->r, (uint8_t)k, 1.0f / sum, LABELS[k]));
    if (strcmp(LABELS[k], "V") == 0)
        blink();
}

/* The front end sees exactly the streamed samples, numbered from the first one after START as the
 * host numbers them. A gap (samples skipped after sampling late) restarts it: the beats around the
 * gap are dropped (the host drops them too; it bridges gaps up to 2 s, so the next few beats may
 * differ until the device's detector has learnt again). */
static void fe_push(uint32_t index, int16_t v)
{
    if (!fe_ok)
        return;
    if (!fe_started || index != fe_next) {
        es_ecg_init(&fe, &FE_CFG);
        fe_origin = index;
        fe_started = true;
    }
    fe_next = index + 1;
    /* double, as the host scales (float64), then the front end's float */
    float mv = (float)((double)v * (double)MV_PER_COUNT + (double)MV_AT_ZERO);
    if (es_ecg_push(&fe, mv, &beat) == 1)
        classify(&beat);
}

static void fe_start(void)
{
    fe_ok = es_ecg_init(&fe, &FE_CFG) == 0;
    fe_started = false;
    if (!fe_ok)
        send_error(EDGESEQ_ERR_CODE_OTHER, "classify: front end config does not fit");
}

/* STOP: the beats still pending are classified now, as the host does at the end of its stream. */
static void fe_stop(void)
{
    if (fe_ok && fe_started)
        while (es_ecg_flush(&fe, &beat) == 1)
            classify(&beat);
    fe_started = false;
}
#endif

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
#if EDGESEQ_CLASSIFY
        /* before the flush: a beat's PREDICTION then precedes the samples that complete it, so
         * the host holds the device's label when it makes its own (serve's --out shows both) */
        fe_push(index, v);
#endif
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
#if EDGESEQ_CLASSIFY
            fe_start();
#endif
        }
        break;
    case EDGESEQ_STOP:
        if (streaming) {
            flush_samples();
#if EDGESEQ_CLASSIFY
            fe_stop();
#endif
            streaming = false;
            send_heartbeat(); /* lets the host count samples lost at the end */
        }
        break;
    case EDGESEQ_PREDICTION:
        if (edgeseq_parse_prediction(f, &p) != 0) {
            send_error(EDGESEQ_ERR_CODE_COMMAND, "bad prediction");
        } else if (strcmp(p.label, "V") == 0) {
            blink(); /* a ventricular beat */
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
