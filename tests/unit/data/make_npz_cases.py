#!/usr/bin/python3
"""Writes the .npz archives tests/unit/test_npz.c reads: real np.savez and
np.savez_compressed output (ZIP64 local headers, stored and deflate), plus
broken and hostile archives. Deterministic: the ZIP timestamps are pinned."""
import io
import os
import struct
import time
import zipfile

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
FIXED = time.struct_time((2026, 1, 1, 0, 0, 0, 3, 1, 0))
time.localtime = lambda *_: FIXED  # numpy's savez stamps members with localtime()


def path(name):
    return os.path.join(here, "npz_" + name + ".npz")


x = (np.arange(6 * 784, dtype=np.float32) % 255 / 255).reshape(6, 784)
y = np.array([0, 1, 2, 3, 4, 5], dtype=np.int64)
np.savez(path("stored_xy"), x=x, y=y)
np.savez_compressed(path("deflate_xy"), x=x, y=y)


def npy_bytes(a):
    b = io.BytesIO()
    np.lib.format.write_array(b, a)
    return b.getvalue()


def write_zip(name, members, method=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path(name), "w", compression=method) as z:
        for member, data in members:
            info = zipfile.ZipInfo(member, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = method
            z.writestr(info, data)


# A bomb: 64 MiB of zeros deflates to ~64 KiB; the directory is then patched to
# declare 1 KiB, so only the inflate-past-declared check can catch it.
bomb = npy_bytes(np.zeros(16 << 20, dtype=np.float32))
write_zip("bomb_lies_about_size", [("x.npy", bomb)])
with open(path("bomb_lies_about_size"), "r+b") as f:
    data = bytearray(f.read())
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 24, 1024)
    f.seek(0)
    f.write(data)
# The same bytes declaring their true size: over a 1 MiB test limit.
write_zip("big_declared", [("x.npy", bomb)])
write_zip("not_npy_member", [("x.txt", b"hello")])
write_zip("too_many_members", [("a%d.npy" % i, npy_bytes(np.zeros(1, np.float32))) for i in range(65)],
          zipfile.ZIP_STORED)
write_zip("path_in_name", [("../x.npy", npy_bytes(y))], zipfile.ZIP_STORED)
write_zip("duplicate_names", [("x.npy", npy_bytes(y)), ("x.npy", npy_bytes(y))], zipfile.ZIP_STORED)
write_zip("bad_crc", [("y.npy", npy_bytes(y))], zipfile.ZIP_STORED)
with open(path("bad_crc"), "r+b") as f:
    data = bytearray(f.read())
    data[100] ^= 0xFF  # inside y.npy's stored bytes
    f.seek(0)
    f.write(data)
with open(path("stored_xy"), "rb") as f:
    whole = f.read()
with open(path("truncated"), "wb") as f:
    f.write(whole[: len(whole) // 2])
with open(path("not_zip"), "wb") as f:
    f.write(npy_bytes(y))
