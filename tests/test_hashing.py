"""File identities: the remembered SHA-256 never outlives an edit of the file."""

from __future__ import annotations

import hashlib
import os

from simcrop_bench.util.hashing import _file_sha256, file_sha256


def test_sha256_is_read_once_per_content_and_follows_edits(tmp_path):
    path = tmp_path / "encoder.pth"
    path.write_bytes(b"a" * 3_000_000)
    _file_sha256.cache_clear()
    assert file_sha256(path) == hashlib.sha256(b"a" * 3_000_000).hexdigest()
    assert file_sha256(str(path)) == file_sha256(path)
    assert _file_sha256.cache_info().misses == 1  # read once, not three times
    stat = path.stat()
    path.write_bytes(b"b" * 3_000_000)  # same size; the new modification time tells the edit apart
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert file_sha256(path) == hashlib.sha256(b"b" * 3_000_000).hexdigest()
