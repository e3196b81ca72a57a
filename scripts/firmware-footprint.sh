#!/usr/bin/env bash
# What zmqrpc's DeviceServer costs a microcontroller: examples/firmware built for a Cortex-M3
# (thumbv7m-none-eabi, release profile: opt-level "z", LTO, one codegen unit, panic abort),
# twice: with its server and three commands (the default), and as the `--no-default-features`
# baseline that only deframes and echoes frames (and sends the same samples). The difference
# is the server's own cost.
#
#   bash scripts/firmware-footprint.sh
#
# With ZMQRPC_REQUIRE_QEMU set (CI sets it), a peak stack that could not be measured fails
# the script instead of leaving the RAM target unchecked.
#
# - flash: .vector_table + .text + .rodata + .data, the image written to flash (.data's
#   initial values are stored there and copied to RAM at boot).
# - static RAM: .data + .bss + .uninit.
# - peak stack: the firmware is booted under qemu-system-arm (mps2-an385) with its stack
#   painted at boot (cortex-m-rt's `paint-stack`) and sent every kind of input (each command,
#   a failing one, an unknown one, a body that does not decode, garbage, a heartbeat, a frame
#   too large, broken COBS) while it sends samples; then qemu saves its RAM, and the deepest
#   word no longer holding the paint is the high-water mark. It counts main's locals: the
#   three frame buffers (answer, deframer, writer) and, with the server, the server, its
#   handlers and their state. It varies by up to 40 B between runs: a SysTick interrupt
#   (its 32-byte exception frame and handler) lands at the deepest point or not. Skipped
#   where qemu-system-arm or python3 is missing.
#
# Installs the thumbv7m-none-eabi target and llvm-tools (for llvm-size, llvm-nm) with rustup
# if they are missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../examples/firmware"

target=thumbv7m-none-eabi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
bin="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
if [ ! -x "$bin/llvm-size" ] || [ ! -x "$bin/llvm-nm" ]; then rustup component add llvm-tools; fi

# The baseline builds in a target directory of its own, so the usual release binary stays
# the server build (tests boot it).
out=target/footprint
mkdir -p "$out"
cargo build -q --locked --release
cp "target/$target/release/zmqrpc-firmware" "$out/server.elf"
cargo build -q --locked --release --no-default-features --target-dir "$out/echo"
cp "$out/echo/$target/release/zmqrpc-firmware" "$out/echo.elf"

# Size of section $2 of ELF $1 (0 if absent).
section() {
    "$bin/llvm-size" -A "$1" | awk -v s="$2" '$1 == s { n = $2 } END { print n + 0 }'
}

# Address of symbol $2 of ELF $1, in decimal.
symbol() {
    printf '%d' "0x$("$bin/llvm-nm" "$1" | awk -v s="$2" '$3 == s { print $1 }')"
}

# Peak stack of ELF $1 in bytes, measured under qemu; empty if it cannot be.
peak_stack() {
    command -v qemu-system-arm >/dev/null && command -v python3 >/dev/null || return 0
    # A failed measurement says why on stderr and leaves the figure out.
    python3 - "$1" "$(symbol "$1" _stack_end)" "$(symbol "$1" _stack_start)" <<'PY' || true
import os, socket, struct, subprocess, sys, tempfile, time

elf, stack_end, stack_start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
RAM, RAM_SIZE, PAINT = 0x2000_0000, 4 << 20, 0xCCCC_CCCC

def fnv1a64(name):
    h = 0xCBF2_9CE4_8422_2325
    for b in name.encode():
        h = ((h ^ b) * 0x100_0000_01B3) % 2**64
    return h

def frame(kind, seq, name, body=b""):
    key = fnv1a64(name) if name else 0
    return bytes([1, kind]) + struct.pack("<IQ", seq, key) + body

def cobs(data):
    """`data` COBS-encoded, then the delimiter."""
    out, block = bytearray(), bytearray()
    for b in data:
        if b:
            block.append(b)
        if not b or len(block) == 254:
            out += bytes([len(block) + 1]) + block
            block = bytearray()
    return bytes(out + bytes([len(block) + 1]) + block + b"\0")

def uncobs(data):
    out, i = bytearray(), 0
    while i < len(data):
        code = data[i]
        out += data[i + 1 : i + code]
        i += code
        if code < 255 and i < len(data):
            out.append(0)
    return bytes(out)

frames = [
    frame(0, 1, "device.ping", b"\xac\x02"),                 # Ping { n: 300 }
    frame(0, 2, "led.set", b"\x03\x01"),                     # SetLed { led: 3, on: true }
    frame(0, 3, "led.set", b"\x08\x01"),                     # no such LED: fails
    frame(0, 4, "device.stats"),                             # ReadStats
    frame(0, 5, "no.such.command"),                          # unknown
    frame(0, 6, "led.set", b"\x03"),                         # body does not decode
    b"\x07garbage",                                          # not a frame
    frame(4, 0, None),                                       # heartbeat
]
wire = b"".join(cobs(f) for f in frames)
wire += cobs(frame(0, 7, "device.ping", b"\x01" * 200))      # too large: lost on the link
wire += b"\x09\x01\x02\0"                                    # broken COBS: lost on the link

with tempfile.TemporaryDirectory() as tmp:
    uart, monitor, dump = (os.path.join(tmp, n) for n in ("uart", "monitor", "ram"))
    qemu = subprocess.Popen(
        ["qemu-system-arm", "-machine", "mps2-an385", "-nographic", "-kernel", elf,
         "-chardev", f"socket,id=uart,path={uart},server=on,wait=off", "-serial", "chardev:uart",
         "-monitor", f"unix:{monitor},server=on,wait=off"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def connect(path):
            for _ in range(100):
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(path)
                    return s
                except OSError:
                    time.sleep(0.05)
            raise OSError(f"qemu did not open {path}")

        def until(s, done, seconds):
            """Reads from `s` until `done(everything read)`."""
            got, deadline = b"", time.time() + seconds
            while not done(got):
                s.settimeout(max(0.01, deadline - time.time()))
                chunk = s.recv(4096)
                if not chunk:
                    raise OSError("qemu closed the connection")
                got += chunk
            return got

        def answered(got):
            """Every whole frame sent answered (or echoed), and two samples (notifications)."""
            kinds = [uncobs(f)[1:2] for f in got.split(b"\0")[:-1]]
            samples = kinds.count(b"\x01")
            return len(kinds) - samples >= len(frames) and samples >= 2

        link, mon = connect(uart), connect(monitor)
        link.sendall(wire)
        until(link, answered, 10)
        prompt = lambda got: got.endswith(b"(qemu) ")
        until(mon, prompt, 10)
        mon.sendall(f'pmemsave {RAM} {RAM_SIZE} "{dump}"\n'.encode())
        until(mon, prompt, 10)
        ram = open(dump, "rb").read()
    except (OSError, SystemExit) as e:
        sys.exit(f"peak stack of {elf} not measured: {e}")
    finally:
        qemu.kill()
        qemu.wait()

# The stack grows down from _stack_start: the paint left at its bottom was never reached.
stack = ram[stack_end - RAM : stack_start - RAM]
untouched = len(stack) - len(stack.lstrip(PAINT.to_bytes(4, "little")[:1]))
print(len(stack) - untouched // 4 * 4)
PY
}

declare -A flash ram stack
for variant in server echo; do
    elf=$out/$variant.elf
    flash[$variant]=$(($(section "$elf" .vector_table) + $(section "$elf" .text) \
        + $(section "$elf" .rodata) + $(section "$elf" .data)))
    ram[$variant]=$(($(section "$elf" .data) + $(section "$elf" .bss) + $(section "$elf" .uninit)))
    stack[$variant]=$(peak_stack "$elf")
done

row() { printf '%-34s %8s %12s %12s\n' "$@"; }
bytes() { [ -n "$1" ] && echo "$1 B" || echo "n/a"; }
echo "zmqrpc-firmware, $target, release (opt-level z, LTO)"
row "" flash "static RAM" "peak stack"
row "with the server (3 commands)" "$(bytes "${flash[server]}")" "$(bytes "${ram[server]}")" \
    "$(bytes "${stack[server]}")"
row "echo baseline (no server)" "$(bytes "${flash[echo]}")" "$(bytes "${ram[echo]}")" \
    "$(bytes "${stack[echo]}")"
diff_stack=""
if [ -n "${stack[server]}" ] && [ -n "${stack[echo]}" ]; then
    diff_stack=$((stack[server] - stack[echo]))
fi
row "the server itself" "$(bytes $((flash[server] - flash[echo])))" \
    "$(bytes $((ram[server] - ram[echo])))" "$(bytes "$diff_stack")"
echo
echo "flash = .vector_table + .text + .rodata + .data; static RAM = .data + .bss + .uninit;"
echo "peak stack: high-water mark under qemu after every kind of input (frame buffers included;"
echo "it varies by up to 40 B between runs, as a SysTick interrupt lands at the deepest point or not)."
echo "the server itself, flash: $((flash[server] - flash[echo])) B (target: at most 16384 B)"
if [ -n "$diff_stack" ]; then
    echo "the server itself, RAM beyond the frame buffers (static + stack difference):" \
        "$((ram[server] - ram[echo] + diff_stack)) B (target: at most 2048 B)"
else
    echo "peak stack not measured: needs qemu-system-arm and python3 (and a run that worked)."
    # Where the measurement is required (CI), a RAM target that cannot be checked fails.
    if [ -n "${ZMQRPC_REQUIRE_QEMU:-}" ]; then
        echo "OVER?: ZMQRPC_REQUIRE_QEMU is set and the peak stack was not measured" >&2
        exit 1
    fi
fi

# The targets are the issue's promise: going over them fails (CI runs this script).
over=0
if ((flash[server] - flash[echo] > 16384)); then
    echo "OVER: the server's flash exceeds 16 KiB" >&2
    over=1
fi
if [ -n "$diff_stack" ] && ((ram[server] - ram[echo] + diff_stack > 2048)); then
    echo "OVER: the server's RAM beyond the frame buffers exceeds 2 KiB" >&2
    over=1
fi
exit "$over"
