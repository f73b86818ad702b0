"""A mesh's shading frame: smooth vertex normals as Blender computes them, and the tangents of a normal map
per face corner, the way MikkTSpace builds them. numpy only (Blender's own Python runs the GLB writer).

A tangent-space normal map stores each texel's normal in the frame (tangent, bitangent, normal) of the
surface under it; the renderer rebuilds that frame from the mesh and must get the one the map was baked in.
Blender's Normal Map node and glTF viewers build it with MikkTSpace, whose core is what this module does:
each face's direction of increasing u, made perpendicular to the vertex normal and unit length, averaged
over the faces around a vertex weighted by their angle there, separately for each UV of the vertex. The GLB
also carries these tangents (TANGENT), so a viewer need not rebuild them at all.

Convention (Blender's and glTF's): UVs with v up, bitangent = sign × cross(normal, tangent) pointing along
increasing v, the sign in the tangent's fourth component.
"""

from __future__ import annotations

import numpy as np


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Smooth normals as Blender computes them: the faces' normals around each vertex weighted by the face's
    angle at that vertex, unit length. Where they cancel out (or a vertex has no face), a face's own normal,
    else +Z: glTF allows no zero normal."""
    corners = vertices[faces].astype(np.float64)
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    face_normals /= np.maximum(np.linalg.norm(face_normals, axis=1, keepdims=True), 1e-30)
    normals = np.zeros((len(vertices), 3))
    angles = corner_angles(corners)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], face_normals * angles[:, corner, None])
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = normals / np.where(length > 0, length, 1.0)
    fallback = np.tile([0.0, 0.0, 1.0], (len(vertices), 1))
    for corner in range(3):
        fallback[faces[:, corner]] = np.where(
            np.linalg.norm(face_normals, axis=1, keepdims=True) > 0, face_normals, fallback[faces[:, corner]]
        )
    return np.where(length > 1e-12, normals, fallback).astype(np.float32)


def uv_vertices(faces: np.ndarray, corner_uvs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Face corners grouped by vertex and UV, as glTF splits vertices along UV seams -> (the group of each
    corner (F, 3), the first corner of each group)."""
    keys = np.concatenate([faces.reshape(-1, 1).astype(np.float64), corner_uvs.reshape(-1, 2)], axis=1)
    _, first, group = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return group.reshape(faces.shape), first


def corner_tangents(
    vertices: np.ndarray, faces: np.ndarray, corner_uvs: np.ndarray, normals: np.ndarray
) -> np.ndarray:
    """Unit tangents with the bitangent's sign, per face corner -> (F, 3, 4) float32; corners that share a
    vertex and a UV share a tangent. ``normals`` are the mesh's per-vertex shading normals."""
    corners = vertices[faces].astype(np.float64)
    uvs = corner_uvs.astype(np.float64)
    edge1, edge2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    duv1, duv2 = uvs[:, 1] - uvs[:, 0], uvs[:, 2] - uvs[:, 0]
    determinant = duv1[:, 0] * duv2[:, 1] - duv2[:, 0] * duv1[:, 1]
    mapped = np.abs(determinant) > 1e-20  # a face with no UV area has no direction of u
    orientation = np.where(determinant < 0, -1.0, 1.0)
    # d(position)/du and d(position)/dv, up to the determinant's positive scale (its sign is kept).
    along_u = (edge1 * duv2[:, 1:] - edge2 * duv1[:, 1:]) * orientation[:, None]
    along_v = (edge2 * duv1[:, :1] - edge1 * duv2[:, :1]) * orientation[:, None]

    corner_normals = normals[faces].astype(np.float64)
    weight = corner_angles(corners) * mapped[:, None]
    group, first = uv_vertices(faces, corner_uvs)
    tangent_sum = np.zeros((len(first), 3))
    bitangent_sum = np.zeros((len(first), 3))
    for corner in range(3):
        n = corner_normals[:, corner]
        np.add.at(tangent_sum, group[:, corner], weight[:, corner, None] * unit(perpendicular(along_u, n)))
        np.add.at(bitangent_sum, group[:, corner], weight[:, corner, None] * unit(perpendicular(along_v, n)))

    group_normals = corner_normals.reshape(-1, 3)[first]
    tangent = unit(perpendicular(tangent_sum, group_normals))
    tangent = np.where(
        np.linalg.norm(tangent, axis=1, keepdims=True) > 0.5, tangent, any_perpendicular(group_normals)
    )
    sign = np.where(np.einsum("ij,ij->i", np.cross(group_normals, tangent), bitangent_sum) < 0, -1.0, 1.0)
    frames = np.concatenate([tangent, sign[:, None]], axis=1).astype(np.float32)
    return frames[group]


def corner_angles(corners: np.ndarray) -> np.ndarray:
    """The angle of each triangle at each of its corners -> (F, 3)."""
    angles = np.empty(corners.shape[:2])
    for corner in range(3):
        towards_next = unit(corners[:, (corner + 1) % 3] - corners[:, corner])
        towards_previous = unit(corners[:, (corner + 2) % 3] - corners[:, corner])
        angles[:, corner] = np.arccos(np.clip(np.einsum("ij,ij->i", towards_next, towards_previous), -1, 1))
    return angles


def perpendicular(vectors: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """``vectors`` less their component along the unit ``normals``."""
    return vectors - normals * np.einsum("ij,ij->i", vectors, normals)[:, None]


def unit(vectors: np.ndarray) -> np.ndarray:
    """Unit length; zero vectors stay zero."""
    length = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(length > 1e-30, length, 1.0)


def any_perpendicular(normals: np.ndarray) -> np.ndarray:
    """Some unit vector perpendicular to each normal, for vertices no UV-mapped face gives a direction."""
    helper = np.where(np.abs(normals[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    return unit(np.cross(normals, helper))
