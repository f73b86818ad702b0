"""TripoSR's model space, and turning a mesh in it upright for a Z-up viewer: which way the photographed side
faces, the origin at the bottom centre, the longest side a given size. Pure numpy.

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

import numpy as np

# Where the photographed side ends up, as the turn about +Z applied to TripoSR's +X (degrees).
FRONT_AXIS_TURNS = {
    "NEG_Y": -90.0,  # Blender's Front view (Numpad 1) shows the photo's view
    "POS_Y": 90.0,  # Back view (Ctrl Numpad 1) shows it
    "POS_X": 0.0,  # Right view (Numpad 3) shows it: TripoSR's own frame
    "NEG_X": 180.0,  # Left view (Ctrl Numpad 3) shows it
}
DEFAULT_FRONT_AXIS = "NEG_Y"


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
