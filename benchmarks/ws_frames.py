"""Frame parse + unmask: lablib's FrameParser against the frame parser of ``websockets``.

What a server does with every frame a client sends (RFC 6455 §5.2, §5.3): read the header,
find the payload length and the masking key, XOR the payload back to the application data.

For each payload size we build one buffer of N masked binary frames (random payloads, a random
masking key per frame, seeded), then time how long each library needs to turn the whole buffer
into N unmasked payloads:

- lablib: ``FrameParser(mask_required=True).receive_data(buffer)`` — a fresh parser per run;
- websockets: a fresh ``websockets.streams.StreamReader`` fed the same buffer, then N times the
  generator ``websockets.frames.Frame.parse(reader.read_exact, mask=True)`` — exactly what
  ``websockets.protocol.Protocol`` runs for every incoming frame, minus the connection logic.

Both results are checked against the original payloads before anything is timed.

    python -m benchmarks.ws_frames [--repeats 7]
"""

from __future__ import annotations

import argparse
import random

from lablib.websocket.frames import FrameParser, Opcode, encode_frame

from . import compare, format_table, ratio

#: (label, payload size in bytes)
SIZES = [("10 B", 10), ("125 B", 125), ("1 KiB", 1024), ("64 KiB", 64 * 1024),
         ("1 MiB", 1024 * 1024)]

#: Each run parses ~4 MiB of payload, or 10,000 frames when the frames are small.
TOTAL_BYTES = 4 * 1024 * 1024
MAX_FRAMES = 10_000


def frame_count(size: int) -> int:
    return max(1, min(MAX_FRAMES, TOTAL_BYTES // size))


def build_stream(size: int, count: int, seed: int = 6455) -> tuple[bytes, list[bytes]]:
    """``count`` masked BINARY frames of ``size`` bytes each, concatenated; and their payloads."""
    rng = random.Random(seed + size)
    payloads = [rng.randbytes(size) for _ in range(count)]
    data = b"".join(encode_frame(Opcode.BINARY, p, masking_key=rng.randbytes(4)) for p in payloads)
    return data, payloads


# --- the two parsers -----------------------------------------------------------------------------

def parse_lablib(data: bytes) -> list[bytes]:
    return [frame.payload for frame in FrameParser(mask_required=True).receive_data(data)]


def websockets_parser():
    """Return ``parse(data, count) -> list[payload]`` built on websockets' own frame parser."""
    from websockets.frames import Frame
    from websockets.streams import StreamReader

    def parse(data: bytes, count: int) -> list[bytes]:
        reader = StreamReader()
        reader.feed_data(data)
        payloads = []
        for _ in range(count):
            # Frame.parse is a generator-based coroutine: it yields only when read_exact needs
            # more data, which cannot happen here (the whole buffer is fed), and returns the
            # frame through StopIteration.
            parser = Frame.parse(reader.read_exact, mask=True)
            try:
                next(parser)
            except StopIteration as done:
                payloads.append(done.value.data)
            else:
                raise RuntimeError("websockets' parser asked for more data")
        return payloads

    return parse


def speedups_status() -> str:
    """Whether websockets masks with its C extension (otherwise its pure-Python fallback)."""
    try:
        import websockets.speedups  # noqa: F401
    except ImportError as exc:
        return f"websockets.speedups NOT available ({exc}): websockets masks in pure Python"
    import types

    import websockets.frames
    in_c = isinstance(websockets.frames.apply_mask, types.BuiltinFunctionType)
    return ("websockets.speedups imported; websockets.frames.apply_mask is "
            + ("the C function from speedups" if in_c else "NOT the C one (pure Python)"))


def copy_floor(data: bytes, size: int, count: int):
    """Return ``copy() -> list[payload]`` that only copies each (still masked) payload out of the
    buffer into a new ``bytes``: no header parsing, no unmasking.

    This is the least work any parser that hands out each payload as its own ``bytes`` must do
    (one pass over the payload bytes, into freshly allocated memory), so ``websockets time /
    floor time`` is the best ratio a parser could reach, whatever its language.
    """
    header = 6 if size <= 125 else (8 if size <= 0xFFFF else 14)  # 2 + length + 4-byte key
    spans = [(i * (header + size) + header, (i + 1) * (header + size)) for i in range(count)]
    view = memoryview(data)

    def copy() -> list[bytes]:
        return [bytes(view[start:end]) for start, end in spans]

    return copy


# --- the benchmark -------------------------------------------------------------------------------

def run(repeats: int = 7) -> str:
    import websockets

    ws_parse = websockets_parser()
    headers = ["scenario", "frames", "lablib µs/frame", "websockets µs/frame",
               "lablib MB/s", "websockets MB/s", "ratio", "copy floor µs", "max ratio"]
    rows = []
    for label, size in SIZES:
        count = frame_count(size)
        data, payloads = build_stream(size, count)
        # Same bytes in, same payloads out — otherwise the timing means nothing.
        if parse_lablib(data) != payloads:
            raise AssertionError(f"lablib parsed the {label} frames wrong")
        if [bytes(p) for p in ws_parse(data, count)] != payloads:
            raise AssertionError(f"websockets parsed the {label} frames wrong")
        copy = copy_floor(data, size, count)
        if [len(p) for p in copy()] != [size] * count:
            raise AssertionError(f"the copy floor took the wrong {label} spans")
        t_lab, t_ref, t_floor = compare(lambda: parse_lablib(data), lambda: ws_parse(data, count),
                                        repeats, floor=copy)
        megabytes = size * count / 1e6
        rows.append([f"parse+unmask {label}", str(count),
                     f"{t_lab / count * 1e6:.3f}", f"{t_ref / count * 1e6:.3f}",
                     f"{megabytes / t_lab:.0f}", f"{megabytes / t_ref:.0f}", ratio(t_ref, t_lab),
                     f"{t_floor / count * 1e6:.3f}", ratio(t_ref, t_floor)])
    title = (f"WebSocket frame parse + unmask, masked BINARY frames, median of {repeats} runs "
             f"(websockets {websockets.__version__})\n{speedups_status()}\n"
             "ratio = websockets time / lablib time (>1: lablib faster); copy floor = only copying "
             "each payload into a new bytes;\nmax ratio = websockets time / copy floor time (no "
             "parser returning bytes payloads can beat it)")
    return title + "\n\n" + format_table(headers, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    print(run(args.repeats))


if __name__ == "__main__":
    main()
