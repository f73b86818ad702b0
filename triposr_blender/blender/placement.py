"""Where a TripoSR mesh goes in Blender: orientation, origin and size, in pure numpy (no bpy, no torch).

TripoSR's model space
---------------------
TripoSR's renderer (``tsr.utils.get_spherical_cameras``) describes its frame as "x back, y right, z up":
the azimuth-0, elevation-0 camera sits on +X looking at the origin, with +Z as its up vector, so its
right vector is lookat × up = (−X) × (+Z) = +Y. The input photo is this view (rendering a scene at
azimuth 0 reproduces the input), and ``get_ray_directions`` maps pixel columns to the camera's right and
pixel rows, downwards, to its −up. So in model space:

* the side seen in the photo faces +X,
* the photo's right is +Y,
* the photo's up is +Z.

Blender
-------
Blender is Z-up too, and its Front view (Numpad 1) looks along +Y from −Y with +X to the right. Showing
the object as in the photo there needs photo side +X → −Y, photo right +Y → +X, up +Z → +Z:
(x, y, z) ↦ (y, −x, z), a −90° turn about Z (determinant +1, so face winding and outward normals are kept).

The gradio demo's ``to_gradio_3d_orientation`` (rotate −90° about X, scale Z by −1, rotate +90° about Y)
maps (x, y, z) ↦ (y, z, −x) for its Y-up viewer, which read in Blender's Z-up axes is (x, y, z) ↦ (y, x, z):
the same turn followed by a mirror through the XZ plane (determinant −1). The mirror is why that demo's
own notes say its preview is "flipped" and "darker" (mirrored winding turns the normals inwards), so only
the rotation is used here.
"""

from dataclasses import dataclass

import numpy as np

from ..options import TARGET_SIZE

# Where the photographed side ends up, as the turn about +Z applied to TripoSR's +X (degrees).
FRONT_AXIS_TURNS = {
    "NEG_Y": -90.0,  # Blender's Front view (Numpad 1) shows the photo's view
    "POS_Y": 90.0,  # Back view (Ctrl Numpad 1) shows it
    "POS_X": 0.0,  # Right view (Numpad 3) shows it: TripoSR's own frame
    "NEG_X": 180.0,  # Left view (Ctrl Numpad 3) shows it
}
DEFAULT_FRONT_AXIS = "NEG_Y"
# Meshes made together (a --one-blend file, images dropped at once) stand in a row along +X, this many
# target sizes apart, so they do not overlap.
ROW_SPACING = 1.5

# An image empty shows its picture in its local XY plane, seen from +Z with +Y up. The mesh, once turned
# to face −Y, has its photographed side towards −Y and up along +Z; this −90° turn about X takes that to
# the empty's frame: (x, y, z) ↦ (x, z, −y).
MESH_TO_IMAGE_EMPTY = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def rotation_about_z(degrees: float) -> np.ndarray:
    """3×3 rotation matrix, exact for the multiples of 90° used here."""
    turn = np.deg2rad(degrees)
    cos, sin = np.round(np.cos(turn), 12), np.round(np.sin(turn), 12)
    return np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])


def model_to_blender_rotation(front_axis: str = DEFAULT_FRONT_AXIS) -> np.ndarray:
    """Rotation from TripoSR's model space to Blender, photographed side towards ``front_axis``."""
    return rotation_about_z(FRONT_AXIS_TURNS[front_axis])


def place_vertices(vertices: np.ndarray, rotation: np.ndarray, target_size: float) -> np.ndarray:
    """Turn model-space vertices, put the origin at the bottom centre, make the longest side ``target_size``.

    Baking the size into the vertices leaves the object with unit scale, which modifiers, physics and
    exporters expect.
    """
    return transform(model_to_object_matrix(vertices, rotation, target_size), vertices)


def model_to_object_matrix(vertices: np.ndarray, rotation: np.ndarray, target_size: float) -> np.ndarray:
    """The 4×4 transform ``place_vertices`` applies to these vertices: a turn, a scale, an offset. Kept with
    the object, it puts a later mesh of the same scene codes exactly where this one is."""
    turned = vertices.astype(np.float64) @ rotation.T
    low, high = turned.min(axis=0), turned.max(axis=0)
    bottom_centre = np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]])
    largest_side = float((high - low).max())
    scale = target_size / largest_side if largest_side > 0 else 1.0
    matrix = np.eye(4)
    matrix[:3, :3] = scale * rotation
    matrix[:3, 3] = -scale * bottom_centre
    return matrix


def transform(matrix: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Vertices (N, 3) through a 4×4 affine ``matrix``, as float32."""
    return (vertices.astype(np.float64) @ matrix[:3, :3].T + matrix[:3, 3]).astype(np.float32)


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
