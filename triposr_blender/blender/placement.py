"""Where a TripoSR mesh goes in Blender: at a location, or in an image empty's picture (pure numpy).

The frames themselves (TripoSR's model space, turned upright and facing a front axis) are
``core.orientation``'s; this module places a mesh in Blender: at the 3D cursor, or in an image empty's
picture.
"""

from dataclasses import dataclass

import numpy as np

from ..core.orientation import (
    DEFAULT_FRONT_AXIS,
    model_to_blender_rotation,
    model_to_object_matrix,
    transform,
)
from ..options import TARGET_SIZE

# Meshes made together (a --one-blend file, images dropped at once) stand in a row along +X, this many
# target sizes apart, so they do not overlap.
ROW_SPACING = 1.5

# An image empty shows its picture in its local XY plane, seen from +Z with +Y up. The mesh, once turned
# to face −Y, has its photographed side towards −Y and up along +Z; this −90° turn about X takes that to
# the empty's frame: (x, y, z) ↦ (x, z, −y).
MESH_TO_IMAGE_EMPTY = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def image_empty_picture_size(display_size: float, image_width: int, image_height: int) -> np.ndarray:
    """Width and height, in the empty's local units, of the picture an image empty shows.

    Blender draws the picture's longer side ``empty_display_size`` long and keeps its aspect ratio.
    """
    longest = max(image_width, image_height, 1)
    return display_size * np.array([image_width / longest, image_height / longest])


@dataclass(frozen=True)
class PictureFrame:
    """Where an image empty's picture is in the world, for standing a generated mesh in it."""

    rotation: np.ndarray  # turns a mesh built facing −Y to face whoever looks at the picture
    centre: np.ndarray  # the picture's centre, world space
    size: float  # the picture's longer side, world units

    def object_matrix(self, mesh_height: float) -> np.ndarray:
        """World matrix centring a mesh (origin at its bottom centre, ``mesh_height`` tall) on the picture."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.rotation
        matrix[:3, 3] = self.centre - self.rotation @ np.array([0.0, 0.0, mesh_height / 2])
        return matrix


def image_empty_frame(
    empty_matrix: np.ndarray,
    display_size: float,
    image_offset: tuple[float, float],
    image_width: int,
    image_height: int,
) -> PictureFrame:
    """The picture frame of an image empty, from its world matrix and display settings."""
    empty_matrix = np.asarray(empty_matrix, dtype=np.float64)
    axes = empty_matrix[:3, :3]
    world_scale = np.linalg.norm(axes, axis=0)
    pure_rotation = axes / np.where(world_scale > 0, world_scale, 1.0)
    # Blender draws the picture from ``offset × size`` to ``(offset + 1) × size`` along local X and Y.
    picture_size = image_empty_picture_size(display_size, image_width, image_height)
    centre_local = np.array([*((np.asarray(image_offset, dtype=np.float64) + 0.5) * picture_size), 0.0, 1.0])
    return PictureFrame(
        rotation=pure_rotation @ MESH_TO_IMAGE_EMPTY,
        centre=(empty_matrix @ centre_local)[:3],
        size=float((picture_size * world_scale[:2]).max()),
    )


@dataclass(frozen=True)
class Destination:
    """Where a new object goes: at ``location``, longest side ``target_size``; or in an image empty's
    picture."""

    location: tuple[float, float, float] = (0.0, 0.0, 0.0)
    target_size: float = TARGET_SIZE.default
    front_axis: str = DEFAULT_FRONT_AXIS
    picture: PictureFrame | None = None


def fit(vertices: np.ndarray, where: Destination) -> tuple[np.ndarray, np.ndarray]:
    """The transform from model space to the new object's frame (origin at the mesh's bottom centre), and
    the object's world matrix."""
    if where.picture is not None:
        rotation = model_to_blender_rotation(DEFAULT_FRONT_AXIS)
        model_to_object = model_to_object_matrix(vertices, rotation, where.picture.size)
        height = float(transform(model_to_object, vertices)[:, 2].max(initial=0.0))
        return model_to_object, where.picture.object_matrix(mesh_height=height)
    rotation = model_to_blender_rotation(where.front_axis)
    world = np.eye(4)
    world[:3, 3] = where.location
    return model_to_object_matrix(vertices, rotation, where.target_size), world
