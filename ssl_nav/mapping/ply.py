"""Point clouds with an ``instance`` label per point: PLY (ours and external) and PCD (external) I/O.

Our maps are written as binary little-endian PLY with vertex properties
``x y z`` (float32) and ``instance`` (int32). The reader also accepts ASCII and
big-endian PLY from other mappers, and PCD files (through open3d's tensor API,
which keeps custom fields). The label field may be called ``instance``,
``instance_id``, ``label`` or ``object_id``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ssl_nav.atomic import atomic_write_bytes
from ssl_nav.errors import FormatError

LABEL_FIELDS = ("instance", "instance_id", "label", "object_id", "segment", "objectid")

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def write_ply(path: str | os.PathLike, points: np.ndarray, labels: np.ndarray) -> None:
    """Atomically write (N, 3) points and (N,) int labels as a binary little-endian PLY."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    labels = np.asarray(labels, dtype=np.int32).reshape(-1)
    if len(points) != len(labels):
        raise FormatError(f"{path}: {len(points)} points but {len(labels)} labels")
    rec = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("instance", "<i4")])
    rec["x"], rec["y"], rec["z"], rec["instance"] = points[:, 0], points[:, 1], points[:, 2], labels
    header = ("ply\nformat binary_little_endian 1.0\ncomment ssl_nav instance map\n"
              f"element vertex {len(points)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property int instance\nend_header\n")
    atomic_write_bytes(path, header.encode("ascii") + rec.tobytes())


def read_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read (N, 3) float32 points and (N,) int32 labels from a PLY with an instance label vertex property."""
    p = Path(path)
    if not p.is_file():
        raise FormatError(f"{p}: file not found")
    data = p.read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise FormatError(f"{p}: not a PLY file (missing 'ply' magic or 'end_header')")
    body_start = data.index(b"\n", end) + 1
    header = data[:end].decode("ascii", errors="replace").splitlines()
    fmt, elements, current = None, [], None
    for n, line in enumerate(header, start=1):
        tok = line.split()
        if not tok or tok[0] in ("comment", "obj_info", "ply"):
            continue
        if tok[0] == "format":
            fmt = tok[1]
        elif tok[0] == "element":
            current = {"name": tok[1], "count": int(tok[2]), "props": []}
            elements.append(current)
        elif tok[0] == "property":
            if current is None:
                raise FormatError(f"{p}: header line {n}: property before any element")
            if tok[1] == "list":
                current["props"].append((tok[-1], None))
            else:
                if tok[1] not in _PLY_TYPES:
                    raise FormatError(f"{p}: header line {n}: unknown PLY type '{tok[1]}'")
                current["props"].append((tok[2], _PLY_TYPES[tok[1]]))
    if fmt not in ("binary_little_endian", "binary_big_endian", "ascii"):
        raise FormatError(f"{p}: unsupported PLY format {fmt!r}")
    if not elements or elements[0]["name"] != "vertex":
        raise FormatError(f"{p}: the first PLY element must be 'vertex'")
    vertex = elements[0]
    names = [name for name, _ in vertex["props"]]
    if any(t is None for _, t in vertex["props"]):
        raise FormatError(f"{p}: list properties in the vertex element are not supported")
    for axis in "xyz":
        if axis not in names:
            raise FormatError(f"{p}: vertex element has no '{axis}' property")
    label_name = next((f for f in LABEL_FIELDS if f in names), None)
    if label_name is None:
        raise FormatError(f"{p}: vertex element has no instance label property (one of {', '.join(LABEL_FIELDS)})")
    count = vertex["count"]
    if fmt == "ascii":
        text = data[body_start:].decode("ascii", errors="replace").split("\n")
        rows = [r for r in text[:count] if r.strip()]
        if len(rows) < count:
            raise FormatError(f"{p}: expected {count} vertices, found {len(rows)}")
        try:
            table = np.array([r.split()[:len(names)] for r in rows], dtype=np.float64)
        except ValueError as e:
            raise FormatError(f"{p}: malformed ASCII vertex data ({e})") from None
        cols = {name: table[:, i] for i, name in enumerate(names)}
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(name, order + t) for name, t in vertex["props"]])
        need = dtype.itemsize * count
        if len(data) - body_start < need:
            raise FormatError(f"{p}: truncated: {count} vertices need {need} bytes, have {len(data) - body_start}")
        rec = np.frombuffer(data, dtype=dtype, count=count, offset=body_start)
        cols = {name: rec[name] for name in names}
    points = np.stack([cols["x"], cols["y"], cols["z"]], axis=1).astype(np.float32)
    labels = np.asarray(cols[label_name]).astype(np.int32)
    return points, labels


def read_pcd(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read points and instance labels from a PCD file (open3d tensor API keeps custom fields)."""
    p = Path(path)
    if not p.is_file():
        raise FormatError(f"{p}: file not found")
    import open3d as o3d

    pc = o3d.t.io.read_point_cloud(str(p))
    keys = set(pc.point)
    if "positions" not in keys or len(pc.point["positions"]) == 0:
        raise FormatError(f"{p}: no points could be read")
    label_name = next((f for f in LABEL_FIELDS if f in keys), None)
    if label_name is None:
        raise FormatError(f"{p}: no instance label field (one of {', '.join(LABEL_FIELDS)}); fields: {sorted(keys)}")
    points = pc.point["positions"].numpy().astype(np.float32).reshape(-1, 3)
    labels = pc.point[label_name].numpy().reshape(-1).astype(np.int32)
    return points, labels


def read_labeled_cloud(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Points and labels from a ``.ply`` or ``.pcd`` file (by suffix)."""
    p = Path(path)
    if p.suffix.lower() == ".ply":
        return read_ply(p)
    if p.suffix.lower() == ".pcd":
        return read_pcd(p)
    raise FormatError(f"{p}: unsupported point cloud format (use .ply or .pcd)")
