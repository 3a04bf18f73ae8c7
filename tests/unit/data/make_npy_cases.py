#!/usr/bin/python3
"""Writes the small .npy files tests/unit/test_npy.c reads, with numpy itself
(so the tests check nncd against the format numpy really writes).
Deterministic: run it again and the files are byte-identical."""
import os
import numpy as np

here = os.path.dirname(os.path.abspath(__file__))


def path(name):
    return os.path.join(here, "npy_" + name + ".npy")


x = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 8
np.save(path("f32_2x3x4"), x)
np.save(path("u8_images"), (np.arange(5 * 28 * 28) % 256).astype(np.uint8).reshape(5, 28, 28))
np.save(path("i64_labels"), np.array([3, 1, 4, 1, 5], dtype=np.int64))
np.save(path("f64_scalar"), np.float64(2.5))
np.save(path("f32_big_endian"), x.astype(">f4"))
np.save(path("f32_fortran"), np.asfortranarray(x.reshape(6, 4)))
nan = x.copy()
nan.flat[13] = np.nan
np.save(path("f32_nan_at_13"), nan)
inf = x.astype(np.float16)
inf.flat[7] = np.inf
np.save(path("f16_inf_at_7"), inf)
np.save(path("c64_complex"), np.zeros(3, dtype=np.complex64))
with open(path("f32_2x3x4"), "rb") as f:
    whole = f.read()
with open(path("f32_truncated"), "wb") as f:
    f.write(whole[:-10])
with open(path("f32_trailing"), "wb") as f:
    f.write(whole + b"\0\0\0\0")
with open(path("not_npy"), "wb") as f:
    f.write(b"PK\x03\x04 this is a zip, not an npy file")
