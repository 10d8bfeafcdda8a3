"""Build C for a Cortex-M and run it in an emulator, counting executed instructions exactly.

Host side only: the compiler runs as a subprocess, unicorn and pyelftools are imported inside the
functions that need them (``pip install "edgeseq[mcu]"``).

    from edgeseq.profile import mcu
    elf = mcu.build(["model.c", "harness.c"], "out/model.elf", include_dirs=["gen/"])
    mcu.sizes(elf)                      # {"text", "rodata", "data", "bss", "flash_bytes", "ram_static"}
    m = mcu.Machine(elf)
    x = m.alloc(4 * n); m.write(x, samples.astype("<f4").tobytes())
    m.call("model_run", x, n); m.instructions; m.stack_high_water()

The toolchain is zig's clang (the ``ziglang`` wheel: one pip package, no system ARM toolchain) with
its compiler-rt for the soft-double and 64-bit division helpers, or ``arm-none-eabi-gcc`` with
libgcc where that is on PATH and zig is not. The count is of instructions issued (an instruction
skipped by an IT condition counts, as it takes its slot on the core), not cycles.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import EdgeseqError, install_hint

__all__ = ["TARGETS", "toolchain", "build", "sizes", "Machine"]


@dataclass(frozen=True)
class Target:
    """One MCU: compiler flags per toolchain, unicorn's CPU model and the memory map we link for.

    The map is deliberately larger than any real part (1 MiB flash, 256 KiB RAM) so that an
    over-budget model still links and can be measured; the budget is checked by the caller.
    """

    zig_flags: tuple[str, ...]
    gcc_flags: tuple[str, ...]
    uc_cpu: str  # name in unicorn.arm_const; looked up lazily so this module imports without unicorn
    flash: tuple[int, int] = (0x0800_0000, 1 << 20)
    ram: tuple[int, int] = (0x2000_0000, 256 << 10)
    stack_bytes: int = 64 << 10  # reserved at the top of RAM; the linker fails if .data+.bss reach it


TARGETS: dict[str, Target] = {
    # "+vfp4d16sp" is required: zig's plain cortex_m4 model has no FPU and, even with the eabihf
    # ABI, silently calls __aeabi_fmul for every float multiply.
    "cortex-m4": Target(
        zig_flags=("-target", "thumb-freestanding-eabihf", "-mcpu=cortex_m4+vfp4d16sp"),
        gcc_flags=("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
        uc_cpu="UC_CPU_ARM_CORTEX_M4",
    ),
}

# -ffp-contract=off: no fused multiply-add, so float32 results are bit-equal to numpy and to the
# host build (the M4 has VFMA; a caller measuring a production build can pass -ffp-contract=fast).
# -fno-math-errno: sqrtf becomes one vsqrt.f32 instead of a libm call that does not exist here.
_CFLAGS = ("-std=c99", "-O2", "-ffreestanding", "-fno-common", "-ffunction-sections", "-fdata-sections",
           "-fomit-frame-pointer", "-fno-unwind-tables", "-fno-asynchronous-unwind-tables",
           "-ffp-contract=off", "-fno-math-errno")

_STACK_FILL = 0x5AA5C33C  # an unlikely word; a function that stores exactly this reads as "unused"
_RET_PAGE = 0x0001_0000  # unmapped on a real part; returning here ends a call
_SCS = (0xE000_E000, 0x1000)  # plain memory, so the startup's CPACR store does not fault
_SCRATCH = (0x6000_0000, 16 << 20)  # where alloc() places argument buffers (see Machine)


# --------------------------------------------------------------------------------------- toolchain

def toolchain() -> list[str]:
    """The C compiler command: zig's clang when the ``ziglang`` wheel is installed (a pip install,
    the same on every host and CI), else ``arm-none-eabi-gcc`` from PATH."""
    import importlib.util

    if importlib.util.find_spec("ziglang") is not None:
        return [sys.executable, "-m", "ziglang", "cc"]
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc:
        return [gcc]
    raise EdgeseqError(f"no C compiler for the MCU: {install_hint('mcu')} (ziglang, unicorn, pyelftools), "
                       "or put arm-none-eabi-gcc on PATH")


def _is_zig(cc: Sequence[str]) -> bool:
    return "ziglang" in cc


def cache_dir() -> Path:
    """Where zig caches compiles (compiler-rt for a new target takes ~5 s once) and where the
    instruction counter's host library lives: edgeseq's cache (``runtime.c_backend.cache_root``)."""
    from ..runtime.c_backend import cache_root

    return cache_root()


def _env(cc: Sequence[str]) -> dict:
    env = dict(os.environ)
    if _is_zig(cc):
        # zig's default cache is ~/.cache/zig; pin it to ours unless the user chose one.
        zc = str(cache_dir() / "zig")
        env.setdefault("ZIG_GLOBAL_CACHE_DIR", zc)
        env.setdefault("ZIG_LOCAL_CACHE_DIR", zc)
    return env


def _run(cmd: list[str], env: dict, what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        # clang and gcc both print "file:line:col: error: ..."; lld prints "ld.lld: error: ..."
        fallback = lines[0] if lines else f"exit status {proc.returncode}"
        first = next((ln for ln in lines if re.search(r"\berror\b", ln)), fallback)
        raise EdgeseqError(f"{what} failed: {first}")


# ------------------------------------------------------------------------------------------- build

_STARTUP = r"""
/* Generated by edgeseq.profile.mcu: vector table and reset for a bare Cortex-M. */
#include <stdint.h>
extern uint32_t __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[], __stack_top[];
int main(void) __attribute__((weak));

/* Callable on its own (the emulator's loader does the same work itself). volatile: stops the
   compiler from turning the loops into memcpy/memset calls, which gcc's libgcc lacks. */
__attribute__((noinline)) void __edgeseq_init(void) {
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;          /* CPACR: CP10, CP11 full access */
    __asm volatile ("dsb\n isb" ::: "memory");
    volatile uint32_t *s = __data_load, *d = __data_start;
    while (d < (volatile uint32_t *)__data_end) *d++ = *s++;
    for (volatile uint32_t *b = __bss_start; b < (volatile uint32_t *)__bss_end; ) *b++ = 0;
}

void Reset_Handler(void) {
    __edgeseq_init();
    if (main) main();
    for (;;) __asm volatile ("wfi");
}

void Default_Handler(void) { for (;;) {} }

__attribute__((section(".isr_vector"), used))
void (*const __edgeseq_vectors[16])(void) = {
    (void (*)(void))__stack_top, Reset_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler, Default_Handler,
};

#ifdef EDGESEQ_MEMFUNCS
/* arm-none-eabi-gcc links no libc here; clang and gcc may still emit these for struct copies.
   zig's compiler-rt has its own. */
#include <stddef.h>
__attribute__((weak)) void *memcpy(void *d, const void *s, size_t n) {
    unsigned char *o = d; const unsigned char *i = s; while (n--) *o++ = *i++; return d; }
__attribute__((weak)) void *memmove(void *d, const void *s, size_t n) {
    unsigned char *o = d; const unsigned char *i = s;
    if (o < i) while (n--) *o++ = *i++; else while (n--) o[n] = i[n]; return d; }
__attribute__((weak)) void *memset(void *d, int c, size_t n) {
    unsigned char *o = d; while (n--) *o++ = (unsigned char)c; return d; }
#endif
"""

_LDSCRIPT = """\
/* Generated by edgeseq.profile.mcu. */
MEMORY {{
  FLASH (rx)  : ORIGIN = {flash0:#x}, LENGTH = {flashn:#x}
  RAM   (rwx) : ORIGIN = {ram0:#x}, LENGTH = {ramn:#x}
}}
ENTRY(Reset_Handler)
__stack_top = ORIGIN(RAM) + LENGTH(RAM);
__stack_limit = __stack_top - {stack:#x};
SECTIONS {{
  .text : ALIGN(4) {{ KEEP(*(.isr_vector)) *(.text .text.*) }} > FLASH
  .rodata : ALIGN(4) {{ *(.rodata .rodata.*) }} > FLASH
  .data : ALIGN(4) {{ __data_start = .; *(.data .data.*) . = ALIGN(4); __data_end = .; }} > RAM AT > FLASH
  __data_load = LOADADDR(.data);
  .bss (NOLOAD) : ALIGN(4) {{ __bss_start = .; *(.bss .bss.* COMMON) . = ALIGN(4); __bss_end = .; }} > RAM
  /* No C++ exceptions: unwind tables would only inflate flash. */
  /DISCARD/ : {{ *(.ARM.exidx*) *(.ARM.extab*) }}
}}
ASSERT(__bss_end <= __stack_limit, "static RAM (.data + .bss) runs into the reserved stack")
"""


def build(sources: Iterable[str | os.PathLike], out_elf: str | os.PathLike, *,
          include_dirs: Iterable[str | os.PathLike] = (), defines: Iterable[str] = (),
          target: str = "cortex-m4", keep: Iterable[str] | None = None,
          cflags: Iterable[str] = ()) -> Path:
    """Compile C99 ``sources`` with a generated startup and linker script into ``out_elf``.

    Sections are garbage-collected (the only way to keep the 200 KB of compiler-rt out of flash),
    so the roots are the vector table plus ``keep``; by default every global symbol the sources
    define, as a harness calls functions that nothing in the image references. ``defines`` are
    ``NAME`` or ``NAME=VALUE``; ``cflags`` go after ours (e.g. ``-Os``). No libc, no libm: zig
    links only its compiler-rt for a freestanding target (``-nostdlib`` would drop it and with it
    __aeabi_dmul and friends); gcc links ``-nostdlib -lgcc``.
    """
    if target not in TARGETS:
        raise EdgeseqError(f"unknown MCU target {target!r}: known {', '.join(sorted(TARGETS))}")
    tgt = TARGETS[target]
    srcs = [Path(s) for s in sources]
    if not srcs:
        raise EdgeseqError("build: no C sources given")
    for s in srcs:
        if not s.is_file():
            raise EdgeseqError(f"C source not found: {s}")
    cc = toolchain()
    zig = _is_zig(cc)
    env = _env(cc)
    out = Path(out_elf)
    out.parent.mkdir(parents=True, exist_ok=True)
    arch = list(tgt.zig_flags if zig else tgt.gcc_flags)
    flags = arch + list(_CFLAGS) + [f"-I{d}" for d in include_dirs] + [f"-D{d}" for d in defines] + list(cflags)
    with tempfile.TemporaryDirectory(prefix="edgeseq-mcu-") as tmp:
        tmp = Path(tmp)
        objs = []
        for i, src in enumerate(srcs):
            obj = tmp / f"{i}_{src.stem}.o"
            _run(cc + flags + ["-c", str(src), "-o", str(obj)], env, f"compiling {src.name}")
            objs.append(obj)
        roots = sorted(set(keep)) if keep is not None else _defined_globals(objs)
        start = tmp / "edgeseq_startup.c"
        start.write_text(_STARTUP)
        sobj = tmp / "edgeseq_startup.o"
        _run(cc + arch + list(_CFLAGS) + ([] if zig else ["-DEDGESEQ_MEMFUNCS"]) + ["-c", str(start), "-o", str(sobj)],
             env, "compiling the startup")
        ld = tmp / "link.ld"
        ld.write_text(_LDSCRIPT.format(flash0=tgt.flash[0], flashn=tgt.flash[1], ram0=tgt.ram[0], ramn=tgt.ram[1],
                                       stack=tgt.stack_bytes))
        link = cc + arch + ["-T", str(ld), "-Wl,--gc-sections", "-Wl,-e,Reset_Handler"]
        link += [f"-Wl,-u,{r}" for r in roots]
        link += [str(sobj)] + [str(o) for o in objs] + ["-o", str(out)]
        if not zig:
            link += ["-nostdlib", "-lgcc"]
        _run(link, env, f"linking {out.name}")
    return out


def _defined_globals(objs: Sequence[Path]) -> list[str]:
    """Global functions and objects the user's objects define: the default GC roots."""
    from elftools.elf.elffile import ELFFile

    names = set()
    for obj in objs:
        with open(obj, "rb") as fh:
            symtab = ELFFile(fh).get_section_by_name(".symtab")
            for s in symtab.iter_symbols() if symtab else ():
                if (s["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK") and s["st_shndx"] != "SHN_UNDEF"
                        and s["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT") and s.name):
                    names.add(s.name)
    return sorted(names)


# ------------------------------------------------------------------------------------------- sizes

def sizes(elf: str | os.PathLike) -> dict:
    """Section sizes by flags, so any toolchain's section names count: executable -> text,
    read-only data -> rodata, initialised writable -> data, NOBITS writable -> bss.
    ``flash_bytes`` = text + rodata + data (its load image); ``ram_static`` = data + bss."""
    from elftools.elf.elffile import ELFFile

    path = Path(elf)
    if not path.is_file():
        raise EdgeseqError(f"ELF not found: {path}")
    out = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    with open(path, "rb") as fh:
        for sec in ELFFile(fh).iter_sections():
            fl = sec["sh_flags"]
            if not fl & 0x2 or sec["sh_size"] == 0:  # SHF_ALLOC
                continue
            write, execute = fl & 0x1, fl & 0x4
            key = ("bss" if sec["sh_type"] == "SHT_NOBITS" else "data") if write else ("text" if execute else "rodata")
            out[key] += sec["sh_size"]
    out["flash_bytes"] = out["text"] + out["rodata"] + out["data"]
    out["ram_static"] = out["data"] + out["bss"]
    return out


# ------------------------------------------------------------------------------- native counter

# The block hook in C: unicorn calls it for every translated block executed; it decodes the Thumb
# instruction lengths straight from the host buffers that back the mapped memory. A Python hook
# costs a ctypes round trip per block (~12-24 M instr/s); this runs at the emulator's own speed.
_COUNTER_C = r"""
#include <stdint.h>
typedef struct { uint64_t base, size; const uint16_t *host; } region_t;
typedef struct {
    uint64_t count, blocks, missed, limit;  /* limit: stop once count reaches it (0: none) */
    int (*stop)(void *uc);                   /* uc_emu_stop */
    uint32_t nreg, stopped; region_t reg[4];
} counter_t;
void edgeseq_count_block(void *uc, uint64_t addr, uint32_t size, void *ud) {
    counter_t *c = (counter_t *)ud;
    c->blocks++;
    if (c->limit && c->count >= c->limit && !c->stopped) { c->stopped = 1; c->stop(uc); }
    for (uint32_t r = 0; r < c->nreg; r++) {
        const region_t *g = &c->reg[r];
        if (addr - g->base < g->size && addr - g->base + size <= g->size) {
            const uint16_t *p = g->host + ((addr - g->base) >> 1), *end = p + (size >> 1);
            uint64_t n = 0;
            /* top five bits 0b11101, 0b11110, 0b11111: first half of a 32-bit instruction */
            while (p < end) { p += ((*p >> 11) >= 0x1d) ? 2 : 1; n++; }
            c->count += n;
            return;
        }
    }
    c->missed++;
}
"""


class _Region(ctypes.Structure):
    _fields_ = [("base", ctypes.c_uint64), ("size", ctypes.c_uint64), ("host", ctypes.c_void_p)]


class _Counter(ctypes.Structure):
    _fields_ = [("count", ctypes.c_uint64), ("blocks", ctypes.c_uint64), ("missed", ctypes.c_uint64),
                ("limit", ctypes.c_uint64), ("stop", ctypes.c_void_p),
                ("nreg", ctypes.c_uint32), ("stopped", ctypes.c_uint32), ("reg", _Region * 4)]


_counter_lib = None


def _counter_library():
    """Build (once per cache) and load the counter as a host shared library, or return None if no
    host compiler works; the caller then counts with a Python block hook (same counts, slower)."""
    global _counter_lib
    if _counter_lib is not None:
        return _counter_lib or None
    import platform

    cands = []
    try:
        cc = toolchain()
        if _is_zig(cc):
            cands.append((cc, _env(cc)))  # no -target: zig builds for this host
    except EdgeseqError:
        pass
    if shutil.which("cc"):
        cands.append((["cc"], dict(os.environ)))
    key = hashlib.sha256((_COUNTER_C + platform.machine() + sys.platform).encode()).hexdigest()[:16]
    lib_path = None
    try:
        lib_path = cache_dir() / f"mcu-counter-{key}.so"
    except EdgeseqError:
        pass
    if lib_path is not None and not lib_path.is_file():
        for cmd, env in cands:
            with tempfile.TemporaryDirectory(prefix="edgeseq-counter-") as tmp:
                src, so = Path(tmp) / "counter.c", Path(tmp) / "counter.so"
                src.write_text(_COUNTER_C)
                # -nostdlib: the library calls nothing, and zig would otherwise build a host libc first.
                proc = subprocess.run(cmd + ["-shared", "-fPIC", "-O2", "-nostdlib", str(src), "-o", str(so)],
                                      capture_output=True, env=env)
                if proc.returncode == 0 and so.is_file():
                    tmp_dst = lib_path.with_suffix(f".{os.getpid()}.tmp")
                    shutil.copyfile(so, tmp_dst)
                    os.replace(tmp_dst, lib_path)  # atomic: concurrent test runs may race here
                    break
    try:
        _counter_lib = ctypes.CDLL(str(lib_path)) if lib_path is not None and lib_path.is_file() else False
    except OSError:
        _counter_lib = False
    return _counter_lib or None


# ----------------------------------------------------------------------------------------- Machine

class Machine:
    """One Cortex-M core in unicorn with the ELF loaded, for calling its functions and counting.

    The loader does the startup's work itself (copies .data to RAM, zeroes .bss; unicorn 2.1 resets
    an M-profile core with CP10/CP11 enabled, so VFP runs without the CPACR store), so no startup
    code is counted. ``alloc`` hands out buffers from a 16 MiB scratch region at 0x60000000 (where
    an STM32 maps external RAM) rather than from device RAM: a whole recording fits in one buffer
    and the RAM layout, and so the stack measurement, stays the linked one.

    ``counting``: "native" (a C block hook; the default when a host compiler works), "python" (a
    Python block hook, ~10x slower, same counts) or "instruction" (unicorn's per-instruction hook,
    ~100x slower; a cross-check). The block count includes instructions an IT block skips (their
    condition failed, but they take their issue slot on the core); the per-instruction hook does
    not fire for those, so it reads lower by exactly that number and equal where no IT skips.
    """

    def __init__(self, elf: str | os.PathLike, *, target: str = "cortex-m4", counting: str = "auto"):
        import unicorn as U
        import unicorn.arm_const as A
        from elftools.elf.elffile import ELFFile

        if target not in TARGETS:
            raise EdgeseqError(f"unknown MCU target {target!r}: known {', '.join(sorted(TARGETS))}")
        if counting not in ("auto", "native", "python", "instruction"):
            raise EdgeseqError(f"unknown counting {counting!r}: auto, native, python or instruction")
        path = Path(elf)
        if not path.is_file():
            raise EdgeseqError(f"ELF not found: {path}")
        self.target = TARGETS[target]
        self._A = A
        self._U = U
        uc = U.Uc(U.UC_ARCH_ARM, U.UC_MODE_THUMB | U.UC_MODE_MCLASS)
        cpu = getattr(A, self.target.uc_cpu, None)
        if cpu is not None:
            uc.ctl_set_cpu_model(cpu)  # before anything else: unicorn fixes the model on first use
        self.uc = uc

        # Memory backed by host buffers: the native counter reads instructions from them directly.
        self._bufs = []
        self._regions = []
        for base, size in (self.target.flash, self.target.ram, _SCRATCH):
            buf = ctypes.create_string_buffer(size)
            uc.mem_map_ptr(base, size, U.UC_PROT_ALL, ctypes.addressof(buf))
            self._bufs.append(buf)
            self._regions.append((base, size, ctypes.addressof(buf)))
        uc.mem_map(_RET_PAGE, 0x1000, U.UC_PROT_ALL)
        uc.mem_write(_RET_PAGE, b"\xfe\xe7")  # b . ; never executed: emu_start stops on reaching it
        uc.mem_map(*_SCS, U.UC_PROT_READ | U.UC_PROT_WRITE)

        from elftools.common.exceptions import ELFError

        with open(path, "rb") as fh:
            try:
                ef = ELFFile(fh)
            except ELFError as e:
                raise EdgeseqError(f"{path.name} is not an ELF file: {e}") from None
            if ef["e_machine"] != "EM_ARM":
                raise EdgeseqError(f"{path.name} is not an ARM ELF ({ef['e_machine']})")
            self._segments = []
            for seg in ef.iter_segments():
                if seg["p_type"] == "PT_LOAD" and seg["p_memsz"]:
                    self._segments.append((seg["p_paddr"], seg["p_vaddr"], seg.data(), seg["p_memsz"]))
            symtab = ef.get_section_by_name(".symtab")
            self._symbols = {s.name: s["st_value"] for s in (symtab.iter_symbols() if symtab else ())
                             if s.name and s["st_shndx"] != "SHN_UNDEF"}
        self._load()
        ram0, ramn = self.target.ram
        self._stack_top = self._symbols.get("__stack_top", ram0 + ramn)
        bss_end = self._symbols.get("__bss_end", max((v + m for _, v, _, m in self._segments
                                                       if ram0 <= v < ram0 + ramn), default=ram0))
        self._stack_floor = (bss_end + 7) & ~7  # all free RAM is watched, not just the reserve
        self._next_alloc = _SCRATCH[0]

        self._counter = None
        self._pycount = self._pylimit = 0
        mode = counting
        if mode in ("auto", "native"):
            lib = _counter_library()
            if lib is not None and self._hook_native(lib):
                mode = "native"
            elif mode == "native":
                raise EdgeseqError("native instruction counter unavailable: no host C compiler (zig or cc) worked")
            else:
                mode = "python"
        if mode == "python":
            self._hook_python()
        elif mode == "instruction":
            self._hook_instruction()
        self.counting = mode
        self.reset_counters()

    # -- loading and memory

    def _load(self) -> None:
        for paddr, vaddr, data, memsz in self._segments:
            self.uc.mem_write(paddr, data)  # flash image, including .data's load copy
            if vaddr != paddr:
                self.uc.mem_write(vaddr, data)  # what the startup's copy loop would do
            if memsz > len(data):
                self.uc.mem_write(vaddr + len(data), bytes(memsz - len(data)))  # .bss

    def reset(self) -> None:
        """Back to the loaded image (.data reloaded, .bss zeroed) with counters zeroed; buffers
        from alloc() keep their addresses and contents."""
        self._load()
        self.reset_counters()

    def alloc(self, nbytes: int, align: int = 8) -> int:
        """A buffer in the scratch region (not device RAM); freed only by a new Machine."""
        addr = (self._next_alloc + align - 1) & ~(align - 1)
        if nbytes < 0 or addr + nbytes > _SCRATCH[0] + _SCRATCH[1]:
            raise EdgeseqError(f"alloc({nbytes}): the {_SCRATCH[1] >> 20} MiB scratch region is full")
        self._next_alloc = addr + nbytes
        return addr

    def write(self, addr: int, data: bytes) -> None:
        self.uc.mem_write(addr, bytes(data))

    def read(self, addr: int, n: int) -> bytes:
        return bytes(self.uc.mem_read(addr, n))

    def symbol(self, name: str) -> int:
        """Address of a symbol (a function's without the Thumb bit)."""
        try:
            return self._symbols[name] & ~1
        except KeyError:
            raise EdgeseqError(f"symbol {name!r} not in the ELF (static, or dropped by --gc-sections?)") from None

    # -- calling

    def call(self, name: str, *int_args: int, max_instructions: int | None = 10**10,
             timeout_s: float | None = None) -> int:
        """Call ``name`` per AAPCS with integer/pointer arguments (r0-r3, then the stack) and return
        r0 as an unsigned 32-bit value (``ctypes.c_int32(v).value`` for a signed one). The stack
        pointer starts at the top of RAM on every call; the function returns to a magic address.

        A runaway call is stopped by ``max_instructions`` (checked by the counter at each block,
        free; 1e10 is ~100 s of emulation), not by a wall-clock timeout by default: unicorn's
        timeout starts a thread per call, which costs ~200 us against ~25 us for the whole call.
        """
        A = self._A
        fn = self.symbol(name)
        args = [int(a) & 0xFFFFFFFF for a in int_args]
        sp = self._stack_top
        extra = args[4:]
        if extra:
            sp -= 4 * len(extra)
            sp &= ~7  # AAPCS: 8-byte aligned at a public call
            self.uc.mem_write(sp, b"".join(a.to_bytes(4, "little") for a in extra))
        for i, a in enumerate(args[:4]):
            self.uc.reg_write(A.UC_ARM_REG_R0 + i, a)
        self.uc.reg_write(A.UC_ARM_REG_SP, sp)
        self.uc.reg_write(A.UC_ARM_REG_LR, _RET_PAGE | 1)
        limit = 0 if not max_instructions else self.instructions + int(max_instructions)
        if self._counter is not None:
            self._counter.limit, self._counter.stopped = limit, 0
        self._pylimit = limit
        try:
            self.uc.emu_start(fn | 1, _RET_PAGE, timeout=int(timeout_s * 1e6) if timeout_s else 0)
        except self._U.UcError as e:
            pc = self.uc.reg_read(A.UC_ARM_REG_PC)
            raise EdgeseqError(f"{name} faulted at pc={pc:#010x}: {e}") from None
        pc = self.uc.reg_read(A.UC_ARM_REG_PC)
        if pc & ~1 != _RET_PAGE:
            why = (f"{max_instructions} instructions" if limit and self.instructions >= limit
                   else f"{timeout_s:g} s")
            raise EdgeseqError(f"{name} did not return within {why} (pc={pc:#010x})")
        if self._counter is not None and self._counter.missed:
            raise EdgeseqError(f"{name} ran code outside flash, RAM and scratch: the instruction count is not exact")
        return self.uc.reg_read(A.UC_ARM_REG_R0) & 0xFFFFFFFF

    # -- counters

    @property
    def instructions(self) -> int:
        """Instructions executed since the last reset_counters(), exact."""
        return (self._counter.count if self._counter is not None else 0) + self._pycount

    def reset_counters(self) -> None:
        """Zero the instruction count and re-arm the stack watermark (memory is left as it is)."""
        if self._counter is not None:
            self._counter.count = self._counter.blocks = self._counter.missed = 0
        self._pycount = 0
        n = (self._stack_top - self._stack_floor) // 4
        self.uc.mem_write(self._stack_floor, _STACK_FILL.to_bytes(4, "little") * n)

    def stack_high_water(self) -> int:
        """Bytes of stack ever used since reset_counters(): the free RAM below the top was filled
        with a pattern, and the lowest overwritten word marks the deepest point."""
        import numpy as np

        ram0 = self.target.ram[0]
        buf = self._bufs[1]
        lo, hi = self._stack_floor - ram0, self._stack_top - ram0
        words = np.frombuffer(buf, dtype="<u4", count=(hi - lo) // 4, offset=lo)
        touched = np.flatnonzero(words != _STACK_FILL)
        return 0 if touched.size == 0 else int(hi - (lo + 4 * touched[0]))

    # -- hooks

    def _hook_native(self, lib) -> bool:
        U = self._U
        try:
            from unicorn.unicorn_py3 import unicorn as ucmod  # binding internals: guarded, with a fallback

            ctr = _Counter()
            ctr.nreg = len(self._regions)
            ctr.stop = ctypes.cast(ucmod.uclib.uc_emu_stop, ctypes.c_void_p).value
            for i, (base, size, host) in enumerate(self._regions):
                ctr.reg[i] = _Region(base, size, host)
            handle = ucmod.uc_hook_h()
            fn = ctypes.cast(lib.edgeseq_count_block, ctypes.c_void_p)
            status = ucmod.uclib.uc_hook_add(self.uc._uch, ctypes.byref(handle), U.UC_HOOK_BLOCK, fn,
                                             ctypes.cast(ctypes.pointer(ctr), ctypes.c_void_p),
                                             ctypes.c_uint64(1), ctypes.c_uint64(0))
        except (ImportError, AttributeError, TypeError, ctypes.ArgumentError):
            return False
        if status != 0:
            return False
        self._counter = ctr  # the C side holds a raw pointer: keep the struct alive with us
        return True

    def _hook_python(self) -> None:
        cache: dict[tuple[int, int], int] = {}

        def on_block(uc, addr, size, _):
            n = cache.get((addr, size))
            if n is None:
                b = bytes(uc.mem_read(addr, size))
                i = n = 0
                while i < size:
                    i += 4 if (b[i + 1] >> 3) >= 0x1D else 2
                    n += 1
                cache[(addr, size)] = n
            self._pycount += n
            if self._pylimit and self._pycount >= self._pylimit:
                uc.emu_stop()

        self.uc.hook_add(self._U.UC_HOOK_BLOCK, on_block)

    def _hook_instruction(self) -> None:
        def on_insn(uc, addr, size, _):
            self._pycount += 1
            if self._pylimit and self._pycount >= self._pylimit:
                uc.emu_stop()

        self.uc.hook_add(self._U.UC_HOOK_CODE, on_insn)
