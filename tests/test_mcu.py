"""edgeseq.profile.mcu: C built for a Cortex-M4 and run in unicorn gives the host's results, with an
exact, deterministic instruction count. Expected values come from numpy, evaluated in the C's
operation order (IEEE +, *, /, sqrt are correctly rounded on both sides, and we build with
-ffp-contract=off), so float results must be bit-equal, not merely close."""

import ctypes
import importlib.util

import numpy as np
import pytest

from edgeseq.errors import EdgeseqError

for _mod in ("unicorn", "elftools"):
    if importlib.util.find_spec(_mod) is None:
        pytest.skip(f"{_mod} not installed (pip install -e '.[mcu]')", allow_module_level=True)

from edgeseq.profile import mcu  # noqa: E402

try:
    mcu.toolchain()
except EdgeseqError as e:
    pytest.skip(str(e), allow_module_level=True)

SRC = r"""
#include <stdint.h>

int32_t g_scale = 3;          /* .data */
int32_t g_calls;              /* .bss  */
static const int16_t k_tab[4] = {1, -2, 3, -4};   /* .rodata */

int32_t dot_i8(const int8_t *a, const int8_t *b, int32_t n) {
    int32_t s = 0;
    for (int32_t i = 0; i < n; i++) s += (int32_t)a[i] * b[i];
    g_calls++;
    return s * g_scale;
}

/* int64 accumulation and a 64-bit division (__aeabi_ldivmod from compiler-rt) */
void dot_i8_64(const int8_t *a, const int8_t *b, int32_t n, int64_t *out) {
    int64_t s = 0;
    for (int32_t i = 0; i < n; i++) s += (int64_t)a[i] * b[i] * 1000003;
    out[0] = s;
    out[1] = s / 7;
}

/* float32 on the FPU (vmul/vadd/vdiv/vsqrt) */
void f32_map(const float *x, float *y, int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = v * 1.25f + __builtin_sqrtf(v * v + 1.0f) / (1.0f + v * v) - (float)k_tab[i & 3];
    }
}

/* double: software on the M4 (__aeabi_dmul, __aeabi_ddiv, __aeabi_dadd from compiler-rt) */
void f64_map(const double *x, double *y, int32_t n) {
    for (int32_t i = 0; i < n; i++) y[i] = x[i] * x[i] * 0.1 + x[i] / 3.0;
}

int32_t six(int32_t a, int32_t b, int32_t c, int32_t d, int32_t e, int32_t f) {
    return a - 2 * b + 3 * c - 4 * d + 5 * e - 6 * f;
}

void spin(volatile const int32_t *flag) { while (*flag == 0) {} }

/* recursion with a frame the compiler cannot drop: stack use grows with depth */
int32_t deep(int32_t n) {
    volatile int32_t frame[8];
    for (int32_t i = 0; i < 8; i++) frame[i] = n + i;
    if (n == 0) return frame[3];
    return frame[n & 7] + deep(n - 1);
}
"""

N = 1000


@pytest.fixture(scope="module")
def elf(tmp_path_factory):
    d = tmp_path_factory.mktemp("mcu")
    (d / "kernels.c").write_text(SRC)
    return mcu.build([d / "kernels.c"], d / "kernels.elf", defines=["UNUSED_FLAG=1"])


@pytest.fixture(scope="module")
def machine(elf):
    return mcu.Machine(elf)


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(15)
    a = rng.integers(-128, 128, N, dtype=np.int8)
    b = rng.integers(-128, 128, N, dtype=np.int8)
    x = rng.normal(0, 3, N).astype(np.float32)
    return a, b, x


def _put(m, arr):
    addr = m.alloc(arr.nbytes)
    m.write(addr, arr.tobytes())
    return addr


def test_sizes(elf):
    s = mcu.sizes(elf)
    assert s["text"] > 200 and s["rodata"] >= 8 and s["data"] >= 4 and s["bss"] >= 4
    assert s["flash_bytes"] == s["text"] + s["rodata"] + s["data"]
    assert s["ram_static"] == s["data"] + s["bss"]
    assert s["flash_bytes"] < 16 << 10  # compiler-rt was garbage-collected down to what is used


def test_int_results(machine, vectors):
    m = machine
    a, b, _ = vectors
    pa, pb = _put(m, a), _put(m, b)
    want = int(np.dot(a.astype(np.int64), b.astype(np.int64)))
    assert ctypes.c_int32(m.call("dot_i8", pa, pb, N)).value == 3 * want
    out = m.alloc(16)
    m.call("dot_i8_64", pa, pb, N, out)
    s, q = np.frombuffer(m.read(out, 16), "<i8")
    assert s == want * 1000003
    s, q = int(s), int(q)
    assert q == (abs(s) // 7) * (1 if s >= 0 else -1)  # C truncates toward zero
    assert ctypes.c_int32(m.call("six", 1, -2, 3, 40, 5, -600)).value == 1 + 4 + 9 - 160 + 25 + 3600


def test_float_results_bit_equal(machine, vectors):
    m = machine
    _, _, x = vectors
    px, py = _put(m, x), m.alloc(4 * N)
    m.call("f32_map", px, py, N)
    got = np.frombuffer(m.read(py, 4 * N), "<f4")
    v = x
    tab = np.array([1, -2, 3, -4], np.float32)[np.arange(N) & 3]
    want = v * np.float32(1.25) + np.sqrt(v * v + np.float32(1)) / (np.float32(1) + v * v) - tab
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))

    xd = x.astype(np.float64) / 7
    pxd, pyd = _put(m, xd), m.alloc(8 * N)
    m.call("f64_map", pxd, pyd, N)
    got = np.frombuffer(m.read(pyd, 8 * N), "<f8")
    assert np.array_equal(got.view(np.uint64), (xd * xd * 0.1 + xd / 3.0).view(np.uint64))


def _count(m, fn, *args):
    m.reset_counters()
    m.call(fn, *args)
    return m.instructions


def test_count_exact_deterministic_linear(elf, machine, vectors):
    m = machine
    a, b, x = vectors
    pa, pb, px, py = _put(m, a), _put(m, b), _put(m, x), m.alloc(4 * N)
    c1, c2, c3 = (_count(m, "dot_i8", pa, pb, n) for n in (200, 400, 600))
    assert c1 > 200 and c2 - c1 == c3 - c2  # linear in n (the loop is unrolled by 4; n % 4 == 0)
    assert _count(m, "dot_i8", pa, pb, 400) == c2  # deterministic on the same machine
    f = _count(m, "f32_map", px, py, 400)
    assert m.counting in ("native", "python")
    # The same counts from a fresh machine with the other block counter ...
    other = mcu.Machine(elf, counting="python" if m.counting == "native" else "native")
    qa, qb, qx, qy = _put(other, a), _put(other, b), _put(other, x), other.alloc(4 * N)
    assert _count(other, "dot_i8", qa, qb, 400) == c2
    assert _count(other, "f32_map", qx, qy, 400) == f
    # ... and from unicorn's per-instruction hook, which skips only instructions an IT block
    # skipped (f32_map's "it lt; bxlt lr" guard for n < 1 is one: condition false for n = 400).
    ref = mcu.Machine(elf, counting="instruction")
    ra, rb, rx, ry = _put(ref, a), _put(ref, b), _put(ref, x), ref.alloc(4 * N)
    assert _count(ref, "dot_i8", ra, rb, 400) == c2
    assert 0 <= f - _count(ref, "f32_map", rx, ry, 400) <= 2


def test_stack_high_water(machine):
    m = machine
    m.reset_counters()
    assert m.stack_high_water() == 0
    m.call("deep", 10)
    hw10 = m.stack_high_water()
    m.reset_counters()
    m.call("deep", 40)
    hw40 = m.stack_high_water()
    assert 10 * 32 <= hw10 < 10 * 256  # at least the 8-word frame per level, at most a generous one
    assert hw40 > 3 * hw10


def test_startup_copies_data(machine):
    m = machine
    addr = m.symbol("g_scale")
    m.write(addr, (99).to_bytes(4, "little"))
    m.call("__edgeseq_init")  # the generated startup restores .data from its flash image
    assert int.from_bytes(m.read(addr, 4), "little") == 3
    m.write(addr, (99).to_bytes(4, "little"))
    m.reset()  # ... and so does the loader
    assert int.from_bytes(m.read(addr, 4), "little") == 3 and m.instructions == 0
    assert m.symbol("Reset_Handler") >= 0x0800_0000


def test_bad_input_one_line(tmp_path, machine):
    bad = tmp_path / "bad.c"
    bad.write_text("int f(void) { return 1 }\n")
    with pytest.raises(EdgeseqError) as e:
        mcu.build([bad], tmp_path / "bad.elf")
    assert "\n" not in str(e.value) and "bad.c" in str(e.value) and "error" in str(e.value)
    ok = tmp_path / "ok.c"
    ok.write_text("int f(void) { return 1; }\n")
    with pytest.raises(EdgeseqError, match="unknown MCU target 'cortex-m99'") as e:
        mcu.build([ok], tmp_path / "ok.elf", target="cortex-m99")
    assert "\n" not in str(e.value)
    with pytest.raises(EdgeseqError, match="not in the ELF"):
        machine.call("no_such_function")
    with pytest.raises(EdgeseqError, match="dot_i8 faulted at pc=.*UNMAPPED"):
        machine.call("dot_i8", 0x4000_0000, 0x4000_0000, 4)  # peripheral space: not mapped
    flag = machine.alloc(4)
    machine.write(flag, bytes(4))
    with pytest.raises(EdgeseqError, match="spin did not return within 100000 instructions"):
        machine.call("spin", flag, max_instructions=100_000)
