"""Camera geometry in numpy: intrinsics, SE(3) poses, projection and back-projection.

Conventions (docs/design.md, "Conventions"): OpenCV camera frame, x right, y down, z forward.
``T_world_cam`` maps camera coordinates to world coordinates
(``p_world = T_world_cam @ p_cam``). The world frame is z-up for the embedded
simulator and for goals on a robot (REP 103: x forward, y left, z up).
"""

from __future__ import annotations

import math

import numpy as np

from ssl_nav.errors import FrameError


def intrinsics_from_fov(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """Pinhole K for square pixels, principal point at the image centre."""
    fx = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return np.array([[fx, 0.0, width / 2.0], [0.0, fx, height / 2.0], [0.0, 0.0, 1.0]])


def check_intrinsics(K: np.ndarray, where: str = "K") -> np.ndarray:
    """Return K as float64 3x3 or raise :class:`FrameError` (wrong shape, non-finite, singular)."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise FrameError(f"{where}: intrinsics must be 3x3, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise FrameError(f"{where}: intrinsics contain NaN or inf")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or abs(np.linalg.det(K)) < 1e-9:
        raise FrameError(f"{where}: intrinsics are singular (fx={K[0, 0]}, fy={K[1, 1]})")
    return K


def check_pose(T: np.ndarray, where: str = "T_world_cam", tol: float = 1e-3) -> np.ndarray:
    """Return T as float64 4x4 or raise :class:`FrameError` (wrong shape, NaN, not a rigid transform)."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise FrameError(f"{where}: pose must be 4x4, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise FrameError(f"{where}: pose contains NaN or inf")
    R = T[:3, :3]
    if np.abs(R @ R.T - np.eye(3)).max() > tol or abs(np.linalg.det(R) - 1.0) > tol or np.abs(T[3] - [0, 0, 0, 1]).max() > tol:
        raise FrameError(f"{where}: pose is not a rigid transform (rotation not orthonormal or bad last row)")
    return T


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform."""
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def transform(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to (N, 3) points."""
    return points @ T[:3, :3].T + T[:3, 3]


def project(K: np.ndarray, points_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, 3) camera-frame points; return (N, 2) pixel coordinates (u, v) and depths z.

    Points with z <= 0 get NaN pixels.
    """
    z = points_cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * points_cam[:, 0] / z + K[0, 2]
        v = K[1, 1] * points_cam[:, 1] / z + K[1, 2]
    uv = np.stack([u, v], axis=1)
    uv[z <= 0] = np.nan
    return uv, z


def backproject(K: np.ndarray, depth: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Back-project valid depth pixels to camera-frame points.

    Returns ((N, 3) points, (N, 2) integer pixel coordinates (row, col)). A pixel
    is valid when its depth is finite and > 0 (and ``mask`` is true there).
    """
    valid = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        valid &= mask
    rows, cols = np.nonzero(valid)
    z = depth[rows, cols].astype(np.float64)
    x = (cols + 0.5 - K[0, 2]) * z / K[0, 0]
    y = (rows + 0.5 - K[1, 2]) * z / K[1, 1]
    return np.stack([x, y, z], axis=1), np.stack([rows, cols], axis=1)


def pixel_to_ray(K: np.ndarray, u: float, v: float) -> np.ndarray:
    """Unit ray in the camera frame through pixel centre coordinates (u, v)."""
    d = np.array([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], 1.0])
    return d / np.linalg.norm(d)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """``T_world_cam`` of an OpenCV camera at ``eye`` looking at ``target`` (world z-up)."""
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:  # looking straight up or down
        x = np.cross(z, np.array([1.0, 0.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, eye
    return T


def camera_pose(position: np.ndarray, yaw: float, pitch: float = 0.0) -> np.ndarray:
    """``T_world_cam`` for a camera at ``position`` facing world heading ``yaw`` (rad, CCW from +x), tilted by ``pitch`` (rad, positive looks down)."""
    forward = np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch), -math.sin(pitch)])
    return look_at(np.asarray(position, dtype=np.float64), np.asarray(position) + forward)


def rotation_angle(R_a: np.ndarray, R_b: np.ndarray) -> float:
    """Angle (rad) of the relative rotation between two 3x3 rotations."""
    c = (np.trace(R_a.T @ R_b) - 1.0) / 2.0
    return float(math.acos(max(-1.0, min(1.0, c))))


def quaternion_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    """3x3 rotation of a unit quaternion (x, y, z, w)."""
    x, y, z, w = np.asarray(q_xyzw, dtype=np.float64) / np.linalg.norm(q_xyzw)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) of a 3x3 rotation (w >= 0)."""
    R = np.asarray(R, dtype=np.float64)
    t = np.trace(R)
    if t > 0:
        s = math.sqrt(t + 1.0) * 2
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = math.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2]) * 2
        q = [0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif R[1, 1] > R[2, 2]:
        s = math.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2]) * 2
        q = [(R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    else:
        s = math.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1]) * 2
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def yaw_to_quaternion(yaw: float) -> np.ndarray:
    """Quaternion (x, y, z, w) of a rotation by ``yaw`` about world z."""
    return np.array([0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)])
