/* The few Arduino core functions the example sketches use, for compiling and running them on the
 * host (make sketches). Not an emulator of any board: the pins and the clock are simulated just
 * enough to drive the sketches' code paths (arduino_stub.cpp). */
#ifndef EDGESEQ_ARDUINO_STUB_H
#define EDGESEQ_ARDUINO_STUB_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef uint8_t byte;
typedef bool boolean;

#define HIGH 0x1
#define LOW 0x0
#define INPUT 0x0
#define OUTPUT 0x1
#define INPUT_PULLUP 0x2
#define LED_BUILTIN 13
#define A0 14
#define A1 15
#define A2 16
#define A3 17

unsigned long micros(void);
unsigned long millis(void);
void delay(unsigned long ms);
void delayMicroseconds(unsigned int us);
void pinMode(uint8_t pin, uint8_t mode);
void digitalWrite(uint8_t pin, uint8_t value);
int digitalRead(uint8_t pin);
int analogRead(uint8_t pin);
void noInterrupts(void);
void interrupts(void);

class StubSerial {
public:
    void begin(unsigned long baud);
    int available(void);
    int read(void);
    size_t write(uint8_t b);
    size_t write(const uint8_t *buf, size_t n);
    void flush(void) {}
    operator bool() const { return true; }
};

extern StubSerial Serial;

void setup(void);
void loop(void);

#endif
