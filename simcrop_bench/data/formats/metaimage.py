"""Small MetaImage (``.mhd`` + ``.raw`` / ``.zraw``) reader and writer (datasets.md §5.3).

nibabel cannot read MetaImage and the project does not depend on SimpleITK, so this module parses the
``Key = Value`` text header itself and reads the detached data file with numpy (``.zraw``: zlib).

Conventions: arrays are returned and accepted in (x, y, z) index order, i.e. the C-order (z, y, x) data
transposed, so that voxel (i, j, k) sits at ``Offset + Direction @ ((i, j, k) * ElementSpacing)`` in ITK's
LPS world (+x patient left, +y posterior, +z superior). :func:`mhd_to_nifti_affine` gives the nibabel (RAS)
affine of that mapping (datasets.md §1.1).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simcrop_bench.data.formats.nifti import lps_nifti_affine
from simcrop_bench.errors import DataError
from simcrop_bench.util.atomic import atomic_path

# MetaIO element types <-> numpy dtypes (byte order applied separately).
ELEMENT_TYPES: dict[str, np.dtype] = {
    "MET_CHAR": np.dtype(np.int8),
    "MET_UCHAR": np.dtype(np.uint8),
    "MET_SHORT": np.dtype(np.int16),
    "MET_USHORT": np.dtype(np.uint16),
    "MET_INT": np.dtype(np.int32),
    "MET_UINT": np.dtype(np.uint32),
    "MET_LONG": np.dtype(np.int32),
    "MET_ULONG": np.dtype(np.uint32),  # MetaIO "long" is 32 bit
    "MET_LONG_LONG": np.dtype(np.int64),
    "MET_ULONG_LONG": np.dtype(np.uint64),
    "MET_FLOAT": np.dtype(np.float32),
    "MET_DOUBLE": np.dtype(np.float64),
}
_DTYPE_TO_ELEMENT = {
    np.dtype(np.int8): "MET_CHAR",
    np.dtype(np.uint8): "MET_UCHAR",
    np.dtype(np.int16): "MET_SHORT",
    np.dtype(np.uint16): "MET_USHORT",
    np.dtype(np.int32): "MET_INT",
    np.dtype(np.uint32): "MET_UINT",
    np.dtype(np.int64): "MET_LONG_LONG",
    np.dtype(np.uint64): "MET_ULONG_LONG",
    np.dtype(np.float32): "MET_FLOAT",
    np.dtype(np.float64): "MET_DOUBLE",
}
# Header keys that MetaIO accepts under several names.
_ALIASES = {
    "Position": "Offset",
    "Origin": "Offset",
    "Rotation": "TransformMatrix",
    "Orientation": "TransformMatrix",
    "ElementByteOrderMSB": "BinaryDataByteOrderMSB",
}


@dataclass(frozen=True)
class MetaImage:
    array: np.ndarray  # (x, y, z) view of the stored (z, y, x) C-order data
    spacing: tuple[float, ...]  # ElementSpacing, mm
    offset: tuple[float, ...]  # Offset: LPS world mm of voxel (0, 0, 0)
    direction: np.ndarray  # 3x3; column i = world direction of index axis i
    element_type: str  # e.g. MET_SHORT
    header: dict[str, str]  # every header key as read (aliases normalised)


def read_mhd(path: str | os.PathLike) -> MetaImage:
    """Read a ``.mhd`` header and its detached ``.raw``/``.zraw`` data; :class:`DataError` names the bad file."""
    path = Path(path)
    header = read_mhd_header(path)
    ndims = _ints(path, header, "NDims", 1)[0]
    dims = _ints(path, header, "DimSize", ndims)
    if ndims != 3 or min(dims) < 1:
        raise DataError(f"{path}: expected a 3-D image, got NDims = {ndims}, DimSize = {header.get('DimSize')}")
    if header.get("ElementNumberOfChannels", "1").strip() != "1":
        raise DataError(f"{path}: multi-channel MetaImage (ElementNumberOfChannels) is not supported")
    element = header.get("ElementType", "")
    if element not in ELEMENT_TYPES:
        raise DataError(f"{path}: unknown ElementType '{element}' (known: {', '.join(ELEMENT_TYPES)})")
    dtype = ELEMENT_TYPES[element].newbyteorder(">" if _bool(path, header, "BinaryDataByteOrderMSB") else "<")
    spacing = tuple(_floats(path, header, "ElementSpacing", 3, default=(1.0, 1.0, 1.0)))
    offset = tuple(_floats(path, header, "Offset", 3, default=(0.0, 0.0, 0.0)))
    # MetaIO stores the direction matrix transposed: its first three numbers are the direction of index axis 0.
    direction = (
        np.asarray(_floats(path, header, "TransformMatrix", 9, default=np.eye(3).ravel()), float).reshape(3, 3).T
    )

    payload = _read_payload(path, header, n_bytes=int(np.prod(dims)) * dtype.itemsize)
    data = np.frombuffer(payload, dtype=dtype).reshape(dims[::-1])  # x fastest on disk -> C order (z, y, x)
    array = data.astype(dtype.newbyteorder("="), copy=False).transpose()
    return MetaImage(array, spacing, offset, direction, element, header)


def read_mhd_header(path: str | os.PathLike) -> dict[str, str]:
    """The ``Key = Value`` lines up to and including ``ElementDataFile`` (which MetaIO requires last)."""
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            text = stream.read(1 << 16).decode("latin-1")  # headers are tiny; never load a whole .mha payload
    except OSError as exc:
        raise DataError(f"{path}: cannot read MetaImage header ({exc.strerror or exc})") from None
    header: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or " " in key.strip():
            raise DataError(f"{path}: line {number} is not a 'Key = Value' MetaImage header line: {line[:60]!r}")
        key = _ALIASES.get(key.strip(), key.strip())
        header[key] = value.strip()
        if key == "ElementDataFile":
            break
    if "ElementDataFile" not in header:
        raise DataError(f"{path}: MetaImage header has no ElementDataFile line")
    return header


def write_mhd(
    path: str | os.PathLike,
    array_xyz: np.ndarray,
    spacing,
    offset,
    *,
    compressed: bool,
    element_type: str | None = None,
    direction: np.ndarray | None = None,
) -> None:
    """Write ``<stem>.mhd`` plus ``<stem>.raw`` (or zlib ``<stem>.zraw``) in the header style of LUNA16.

    ``element_type`` defaults to the array's dtype; a given one must represent the values exactly. Little-endian
    data; both files atomically, data first and header last, so a visible header always has its data.
    """
    path = Path(path)
    if not path.name.endswith(".mhd"):
        raise ValueError(f"{path}: MetaImage header names must end in .mhd")
    array_xyz = np.asarray(array_xyz)
    if array_xyz.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D (x, y, z) array, got shape {array_xyz.shape}")
    element_type = element_type or _DTYPE_TO_ELEMENT.get(array_xyz.dtype)
    if element_type not in ELEMENT_TYPES:
        raise ValueError(f"{path}: no MetaImage ElementType for {array_xyz.dtype} / {element_type!r}")
    stored = array_xyz.astype(ELEMENT_TYPES[element_type].newbyteorder("<"))
    if stored.dtype.newbyteorder("=") != array_xyz.dtype.newbyteorder("=") and not np.array_equal(stored, array_xyz):
        raise ValueError(f"{path}: values of {array_xyz.dtype} do not fit {element_type} exactly")
    direction = np.eye(3) if direction is None else np.asarray(direction, float)

    payload = stored.transpose().tobytes(order="C")  # (z, y, x) C order: x fastest
    if compressed:
        payload = zlib.compress(payload, 6)
    data_name = path.name[: -len(".mhd")] + (".zraw" if compressed else ".raw")
    lines = [
        ("ObjectType", "Image"),
        ("NDims", "3"),
        ("BinaryData", "True"),
        ("BinaryDataByteOrderMSB", "False"),
        ("CompressedData", "True" if compressed else "False"),
        *([("CompressedDataSize", str(len(payload)))] if compressed else []),
        ("TransformMatrix", _numbers(direction.T.ravel())),
        ("Offset", _numbers(offset)),
        ("CenterOfRotation", "0 0 0"),
        ("AnatomicalOrientation", _orientation_code(direction)),
        ("ElementSpacing", _numbers(spacing)),
        ("DimSize", " ".join(str(n) for n in array_xyz.shape)),
        ("ElementType", element_type),
        ("ElementDataFile", data_name),
    ]
    with atomic_path(path.with_name(data_name)) as tmp:
        tmp.write_bytes(payload)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{k} = {v}\n" for k, v in lines), encoding="ascii")


def mhd_to_nifti_affine(spacing, offset, direction: np.ndarray | None = None) -> np.ndarray:
    """nibabel (RAS) affine of an (x, y, z) MetaImage array: the LPS → RAS flip of datasets.md §1.1.

    Identity direction gives ``diag(−sx, −sy, sz)`` with translation ``(−ox, −oy, oz)``, axis codes (L, P, S).
    """
    if direction is None or np.allclose(direction, np.eye(3)):
        return lps_nifti_affine(spacing, offset)
    flip = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = flip @ np.asarray(direction, float) @ np.diag(np.asarray(spacing, float))
    affine[:3, 3] = flip @ np.asarray(offset, float)
    return affine


def data_file_path(path: str | os.PathLike, header: dict[str, str]) -> Path:
    """The detached data file of a header (relative names resolve against the header's folder)."""
    path = Path(path)
    name = header["ElementDataFile"]
    if name.upper() in ("LOCAL", "LIST") or "%" in name:
        raise DataError(f"{path}: ElementDataFile = {name} (inline, listed or patterned data) is not supported")
    return path.parent / name


def _read_payload(path: Path, header: dict[str, str], *, n_bytes: int) -> bytes:
    data_path = data_file_path(path, header)
    try:
        raw = data_path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"{data_path}: cannot read MetaImage data file named by {path.name} ({exc.strerror or exc})"
        ) from None
    skip = _ints(path, header, "HeaderSize", 1)[0] if "HeaderSize" in header else 0
    if _bool(path, header, "CompressedData"):
        if "CompressedDataSize" in header:
            size = _ints(path, header, "CompressedDataSize", 1)[0]
        else:  # optional in MetaIO: the rest of the file
            size = len(raw) - max(skip, 0)
        if len(raw) < max(skip, 0) + size:
            raise DataError(
                f"{data_path}: truncated: {len(raw)} bytes, header {path.name} says CompressedDataSize = {size}"
            )
        try:
            decoder = zlib.decompressobj()
            raw = decoder.decompress(raw[max(skip, 0) : max(skip, 0) + size], n_bytes + 1)
        except zlib.error as exc:
            raise DataError(f"{data_path}: corrupt zlib data ({exc})") from None
        if not decoder.eof and len(raw) == n_bytes:
            raise DataError(f"{data_path}: zlib stream is truncated")
        skip = 0
    if skip == -1:  # MetaIO: the data are the last bytes of the file
        skip = len(raw) - n_bytes
    if len(raw) - skip != n_bytes:
        raise DataError(
            f"{data_path}: holds {len(raw) - skip} data bytes, header {path.name} "
            f"(DimSize {header['DimSize']}, {header['ElementType']}) needs {n_bytes}"
        )
    return raw[skip:]


def _field(path: Path, header: dict[str, str], key: str, default) -> list[str]:
    if key not in header:
        if default is None:
            raise DataError(f"{path}: MetaImage header has no {key} line")
        return [str(v) for v in default]
    return header[key].split()


def _floats(path: Path, header: dict[str, str], key: str, n: int, *, default=None) -> list[float]:
    values = _field(path, header, key, default)
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        numbers = []
    if len(numbers) != n:
        raise DataError(f"{path}: {key} = {header.get(key)!r} is not {n} numbers")
    return numbers


def _ints(path: Path, header: dict[str, str], key: str, n: int) -> list[int]:
    values = _field(path, header, key, None)
    if len(values) != n or not all(v.lstrip("-").isdigit() for v in values):
        raise DataError(f"{path}: {key} = {header.get(key)!r} is not {n} integers")
    return [int(v) for v in values]


def _bool(path: Path, header: dict[str, str], key: str) -> bool:
    value = header.get(key, "False").strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise DataError(f"{path}: {key} = {header[key]!r} is neither True nor False")
    return value in ("true", "1")


def _numbers(values) -> str:
    """Shortest exact text of each number, integers without '.0' (ITK style: 'Offset = -195 -195 -378')."""
    out = []
    for v in np.asarray(values, float).ravel():
        text = repr(float(v) + 0.0)  # + 0.0 turns -0.0 into 0.0
        out.append(text[:-2] if text.endswith(".0") else text)
    return " ".join(out)


def _orientation_code(direction: np.ndarray) -> str:
    """ITK's three-letter code: the side each index axis starts from (identity direction in LPS → 'RAI')."""
    starts = {(0, 1): "R", (0, -1): "L", (1, 1): "A", (1, -1): "P", (2, 1): "I", (2, -1): "S"}
    code = ""
    for column in np.asarray(direction).T:
        axis = int(np.argmax(np.abs(column)))
        code += starts[(axis, 1 if column[axis] > 0 else -1)]
    return code
