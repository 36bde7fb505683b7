#!/usr/bin/python3
"""Writes tests/golden/safetensors_golden.safetensors with Python's struct and json only.

The file is made independently of strata's writer, so tests/test_safetensors.cpp can check that
load_safetensors reads what another implementation wrote. It holds one tensor per safetensors dtype
(F32 F64 F16 BF16 I32 I64 U8 BOOL), a 0-dim tensor and an empty one, with values the test lists as
literals, plus __metadata__. The JSON keys are sorted (as json.dumps(sort_keys=True) gives), which
differs from the data order, and the header is not padded: both are legal and must load.

    /usr/bin/python3 tools/make_safetensors_golden.py [OUT]
"""
import json
import os
import struct
import sys


def bf16_bits(x):
    """bfloat16 bits of x (values here are exact in bfloat16: the top half of float32)."""
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    assert bits & 0xFFFF == 0, x
    return bits >> 16


# name, dtype, shape, little-endian bytes (listed in data order)
TENSORS = [
    ("weight.f32", "F32", [2, 3], struct.pack("<6f", 0.5, -1.25, 3.0, 0.001, -0.0, 65504.0)),
    ("f64", "F64", [3], struct.pack("<3d", 1.0 / 3.0, -2.5e300, 3.141592653589793)),
    ("f16", "F16", [4], struct.pack("<4e", 1.0, -2.0, 0.5, 65504.0)),
    ("bf16", "BF16", [2, 2], struct.pack("<4H", *[bf16_bits(v) for v in (1.0, -3.5, 0.15625, 256.0)])),
    ("i32", "I32", [2], struct.pack("<2i", -7, 2147483647)),
    ("i64", "I64", [2, 1], struct.pack("<2q", -(2**62), 123456789012)),
    ("u8", "U8", [5], bytes([0, 1, 127, 200, 255])),
    ("mask", "BOOL", [3], bytes([1, 0, 1])),
    ("scalar", "F32", [], struct.pack("<f", 42.0)),
    ("empty", "F32", [0, 4], b""),
]
METADATA = {"format": "pt", "source": "make_safetensors_golden.py", "note": "caf\u00e9 \"quoted\""}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "golden",
                                                            "safetensors_golden.safetensors")
    header, data, offset = {"__metadata__": METADATA}, b"", 0
    for name, dtype, shape, raw in TENSORS:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    text = json.dumps(header, sort_keys=True).encode("utf-8")  # non-ASCII as \uXXXX escapes
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)
    print(f"wrote {out}: {len(TENSORS)} tensors, {len(data)} data bytes, header {len(text)} bytes")


if __name__ == "__main__":
    main()
