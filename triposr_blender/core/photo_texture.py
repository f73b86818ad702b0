"""Photo Texture: the input photo's own detail, projected onto the side of the mesh that it shows.

TripoSR's colours come from a coarse field (about 37 samples per unit of the object), while the photo holds
about ten times more on the side it shows. The camera that took it is the model's input camera
(``preview.Camera.orbit`` at azimuth 0: 40° vertical field of view, 1.9 from the origin on +X), up to what
the model guessed. So the camera is fitted first, to the outline: a zoom and a shift of the image (a field
of view other than 40° is exactly a zoom), an elevation and a distance (the perspective), chosen to
maximise the overlap (IoU) of the mesh's silhouette with the photo's alpha. Where the best overlap stays
below ``MIN_OVERLAP`` the mesh and the photo disagree too much to project, and the model's colours are kept.

Each texel's surface point then takes the photo's colour where the fitted camera sees it (a depth buffer),
weighted by how squarely the surface faces the camera, by the photo's alpha eroded (no halo of the removed
background) and by the distance from depth edges (where a small misfit would paint one surface with
another). The model's colours are first matched to the photo, per channel, where both are seen, so no seam
shows where the weight falls off. numpy and SciPy; no GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage, optimize

from .decimate import decimate
from .mesh import FramedPhoto, Mesh
from .preview import INPUT_DISTANCE, Camera, depth_buffer
from .raster import coverage
from .shading import vertex_normals

# Below this overlap of the mesh's outline with the photo's, the photo is not projected. On the benchmark
# (scripts/bench_photo_texture.py) every camera within the ranges fits to 0.98 or more, and photos from
# 30° above or below, outside them, reach only 0.82 to 0.89.
MIN_OVERLAP = 0.9
# The refinements after the first fit (elevation, distance, then elevation at FINE_FIT_SIZE) take 3 of its
# 3.3 s and gained 0.002-0.033 in overlap (the lumpy test shape from seven cameras; the fixture model's
# mesh, 0.761 -> 0.794): a first fit this far below MIN_OVERLAP is refused without them.
REFINE_MARGIN = 0.1
# The elevations tried (degrees) before the best one is refined: the model guesses the input camera's height
# within about ±10°.
ELEVATION_LIMITS = (-15.0, 15.0)
ELEVATION_STEP = 2.5
ELEVATION_TOLERANCE = 0.25
# The distances tried, then refined. Once the zoom is free, the distance changes only the perspective (and a
# field of view other than 40° only the zoom, which is fitted exactly).
DISTANCES = (1.5, 1.7, 1.9, 2.1, 2.3, 2.5)
DISTANCE_STEP = 0.2
DISTANCE_TOLERANCE = 0.02
# How many of the best guesses get a full search over zoom and shift.
FITTED_GUESSES = 2
# The side, in pixels, at which the outlines are compared while searching, and then for the last refinement
# (at 128 px the overlap cannot rank elevations half a degree apart); the silhouette is rendered zoomed out
# by SILHOUETTE_ZOOM, so that a mesh the fit shrinks still lies inside it.
FIT_SIZE = 128
FINE_FIT_SIZE = 256
SILHOUETTE_ZOOM = 0.6
SUPERSAMPLE = 2  # samples per pixel along each axis: an outline's pixels hold how much of them it covers
# The faces the outlines are drawn with: far more than FINE_FIT_SIZE's pixels can tell apart.
OUTLINE_FACES = 20_000
# The depth buffer's side in pixels, across the model's input frame (the photo's detail is sampled from
# the photo itself, at its own resolution).
DEPTH_SIZE = 1024
# A texel's point counts as seen when it is no deeper than the depth buffer there plus this (model units).
VISIBILITY_BIAS = 0.01
# Two neighbouring pixels whose depths differ by more than this (model units) lie on either side of an edge.
DEPTH_EDGE_STEP = 0.03
# The weight grows from 0 at a depth edge (or the outline) to 1 this far from it, in fractions of the frame.
EDGE_RAMP = 0.012
# The photo's alpha is eroded by this share of the canvas side: background removal's soft edge carries the
# background's colour.
ALPHA_EROSION = 0.006
# The weight grows from 0 where the surface is seen at this cosine to 1 where it faces the camera this much.
GRAZING_COSINE, FACING_COSINE = 0.15, 0.5
# Texels at least this well seen fit the per-channel match of the model's colours to the photo.
MATCH_WEIGHT = 0.5
MIN_MATCH_TEXELS = 64
GAIN_RANGE = (0.5, 2.0)


@dataclass(frozen=True)
class PhotoCamera:
    """The input camera as fitted to a photo: its elevation (degrees), the image's zoom and shift (the
    principal point's offset from the frame's centre, in fractions of the frame's side), and its distance
    from the origin."""

    elevation: float = 0.0
    zoom: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    distance: float = INPUT_DISTANCE

    def at(self, samples: int) -> Camera:
        """This camera rendering an image of ``samples`` pixels a side, across the model's input frame."""
        return Camera.orbit(
            0.0,
            self.elevation,
            self.distance,
            samples,
            zoom=self.zoom,
            shift=(self.shift[0] * samples, self.shift[1] * samples),
        )


@dataclass(frozen=True)
class CameraFit:
    camera: PhotoCamera
    overlap: float  # IoU of the mesh's silhouette and the photo's alpha, from ``camera``

    @property
    def usable(self) -> bool:
        return self.overlap >= MIN_OVERLAP

    def refusal(self) -> str:
        """Why the photo was not projected, for the panel, the log and the batch report."""
        return (
            f"Photo Texture was not applied: the mesh's outline overlaps the photo's by {self.overlap:.0%}, "
            f"below the {MIN_OVERLAP:.0%} it needs, so the model's colours are kept. A cleaner cut-out "
            "(or a higher Threshold, if the shape is bloated) brings them closer."
        )


def fit_camera(mesh: Mesh, photo: FramedPhoto) -> CameraFit:
    """The input camera that best overlays the mesh's silhouette on the photo's alpha (see the module's
    docstring): every elevation within ``ELEVATION_LIMITS`` guessed from the outlines' moments, the best few
    fitted and the best of those refined in elevation; then the same in distance, and the elevation once
    more. A first fit that no refinement brings to ``MIN_OVERLAP`` is refused as it is."""
    mesh = lighter(mesh)
    outline = Outline(mesh, input_alpha(photo, FIT_SIZE))
    guesses = sorted(
        (outline.guess(PhotoCamera(elevation)) for elevation in elevation_grid()), key=overlap_of
    )
    best = max((outline.fit(guess.camera) for guess in guesses[-FITTED_GUESSES:]), key=overlap_of)
    if best.overlap < MIN_OVERLAP - REFINE_MARGIN:
        return best
    best = refine(outline, best, "elevation", ELEVATION_LIMITS, ELEVATION_STEP, ELEVATION_TOLERANCE)
    others = (outline.fit(replace(best.camera, distance=distance)) for distance in DISTANCES)
    best = max(best, *others, key=overlap_of)
    best = refine(outline, best, "distance", (DISTANCES[0], DISTANCES[-1]), DISTANCE_STEP, DISTANCE_TOLERANCE)
    # a nearer camera sees the top from higher up: the elevation once more, at the distance found, finely
    fine = Outline(mesh, input_alpha(photo, FINE_FIT_SIZE))
    best = fine.fit(best.camera)
    return refine(fine, best, "elevation", ELEVATION_LIMITS, ELEVATION_STEP / 2, ELEVATION_TOLERANCE / 2)


def lighter(mesh: Mesh) -> Mesh:
    """The mesh decimated to ``OUTLINE_FACES``, if it has more: its outline at the fit's sizes is the
    same, and the fit draws it dozens of times."""
    if len(mesh.faces) <= OUTLINE_FACES:
        return mesh
    return decimate(mesh, OUTLINE_FACES, lambda vertices: np.zeros_like(vertices))


def overlap_of(fit: CameraFit) -> float:
    return fit.overlap


def refine(
    outline: Outline, best: CameraFit, name: str, limits: tuple[float, float], step: float, tolerance: float
) -> CameraFit:
    """``best`` with its camera's ``name`` (elevation or distance) refined within a ``step`` of it."""
    value = getattr(best.camera, name)
    refined = optimize.minimize_scalar(
        lambda tried: -outline.fit(replace(best.camera, **{name: tried})).overlap,
        bounds=(max(limits[0], value - step), min(limits[1], value + step)),
        method="bounded",
        options={"xatol": tolerance},
    )
    return max(best, outline.fit(replace(best.camera, **{name: float(refined.x)})), key=overlap_of)


def elevation_grid() -> list[float]:
    steps = round(ELEVATION_LIMITS[1] / ELEVATION_STEP)
    return [float(step * ELEVATION_STEP) for step in range(-steps, steps + 1)]


def input_alpha(photo: FramedPhoto, size: int) -> np.ndarray:
    """The photo's alpha across the model's input frame, ``size`` pixels a side: (size, size) in [0, 1]."""
    alpha = photo.pixels[..., 3].astype(np.float32) / 255
    factor = max(1, photo.canvas_side // size)  # average blocks first: a pixel holds how much it covers
    alpha = block_mean(alpha, factor)
    centres = (np.arange(size) + 0.5) / size
    columns, rows = np.meshgrid(centres, centres, indexing="xy")
    xy = photo.to_photo(np.stack([columns.ravel(), rows.ravel()], axis=1)) / factor
    return sample(alpha, xy).reshape(size, size)


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Each ``factor``² block's mean (edges padded with zeros, which is what lies outside a cut-out)."""
    if factor == 1:
        return image
    height, width = (-(-side // factor) * factor for side in image.shape[:2])
    padded = np.zeros((height, width, *image.shape[2:]), image.dtype)
    padded[: image.shape[0], : image.shape[1]] = image
    return padded.reshape(height // factor, factor, width // factor, factor, *image.shape[2:]).mean(
        axis=(1, 3)
    )


def sample(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image`` (H, W) or (H, W, C) at points ``xy`` (N, 2) in pixels (centres at
    +0.5); zero outside."""
    coordinates = [xy[:, 1] - 0.5, xy[:, 0] - 0.5]
    if image.ndim == 2:
        return ndimage.map_coordinates(image, coordinates, order=1, mode="constant", cval=0.0)
    return np.stack(
        [ndimage.map_coordinates(image[..., c], coordinates, order=1, mode="constant") for c in range(3)], 1
    )


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Soft intersection over union of two masks in [0, 1]."""
    union = float(np.maximum(a, b).sum())
    return float(np.minimum(a, b).sum()) / union if union else 0.0


class Outline:
    """The mesh's silhouette from the input camera compared with a target alpha: a zoom and a shift of the
    camera are the same zoom and shift of its image, so one render per elevation and distance serves every
    zoom and shift tried there."""

    def __init__(self, mesh: Mesh, target: np.ndarray):
        self.mesh, self.target, self.size = mesh, target, target.shape[0]
        self.target_area, self.target_centre = moments(target)
        self.masks: dict[tuple[float, float], np.ndarray] = {}
        self.render_size = round(self.size / SILHOUETTE_ZOOM)

    def mask(self, camera: PhotoCamera) -> np.ndarray:
        """The silhouette from ``camera``'s elevation and distance, unshifted and zoomed out by
        ``SILHOUETTE_ZOOM`` (rendered once)."""
        key = (camera.elevation, camera.distance)
        if key not in self.masks:
            unzoomed = PhotoCamera(camera.elevation, SILHOUETTE_ZOOM, distance=camera.distance)
            self.masks[key] = silhouette(self.mesh, unzoomed.at(self.render_size * SUPERSAMPLE))
        return self.masks[key]

    def guess(self, camera: PhotoCamera) -> CameraFit:
        """``camera`` with the zoom and shift that give the silhouette the target's area and centroid."""
        area, centre = moments(self.mask(camera))
        if area == 0:
            return CameraFit(camera, 0.0)
        # the render's fractions -> the unzoomed camera's: about the frame's centre, by 1 / SILHOUETTE_ZOOM
        area, centre = area / SILHOUETTE_ZOOM**2, 0.5 + (centre - 0.5) / SILHOUETTE_ZOOM
        zoom = float(np.sqrt(self.target_area / area))
        shift = self.target_centre - 0.5 - zoom * (centre - 0.5)
        guessed = replace(camera, zoom=zoom, shift=(float(shift[0]), float(shift[1])))
        return CameraFit(guessed, self.overlap(guessed))

    def fit(self, start: PhotoCamera) -> CameraFit:
        """The zoom and shift that maximise the overlap at ``start``'s elevation and distance, searched from
        the moments' guess there (or from ``start``'s own, if it overlaps more)."""
        camera = max(self.guess(start), CameraFit(start, self.overlap(start)), key=overlap_of).camera

        def with_parameters(parameters: np.ndarray) -> PhotoCamera:
            log_zoom, shift_x, shift_y = (float(value) for value in parameters)
            return replace(camera, zoom=float(np.exp(log_zoom)), shift=(shift_x, shift_y))

        initial = np.array([np.log(camera.zoom), *camera.shift])
        simplex = initial + np.array([[0, 0, 0], [0.02, 0, 0], [0, 0.01, 0], [0, 0, 0.01]])
        result = optimize.minimize(
            lambda parameters: 1.0 - self.overlap(with_parameters(parameters)),
            initial,
            method="Nelder-Mead",
            options={"initial_simplex": simplex, "xatol": 3e-4, "fatol": 3e-5},
        )
        return CameraFit(with_parameters(result.x), 1 - float(result.fun))

    def overlap(self, camera: PhotoCamera) -> float:
        return overlap(self.seen(camera), self.target)

    def seen(self, camera: PhotoCamera) -> np.ndarray:
        """The silhouette as ``camera`` sees it, across the input frame, as large as the target, in [0, 1]."""
        # An output pixel's centre o (index units) is the fraction q = (o + 0.5) / size of the frame; the
        # unzoomed camera sees it at 0.5 + (q - 0.5 - shift) / zoom, the render at SILHOUETTE_ZOOM times that
        # from the centre, whose index is that fraction times render_size, less 0.5: a scale and an offset
        scale = self.render_size * SILHOUETTE_ZOOM / (self.size * camera.zoom)
        offset = [
            self.render_size * (0.5 + SILHOUETTE_ZOOM * (0.5 / self.size - 0.5 - shift) / camera.zoom) - 0.5
            for shift in (camera.shift[1], camera.shift[0])  # rows, then columns
        ]
        return ndimage.affine_transform(
            self.mask(camera), [scale, scale], offset, self.target.shape, order=1, mode="constant"
        )


def moments(mask: np.ndarray) -> tuple[float, np.ndarray]:
    """A mask's area and centroid (column, row), in fractions of its side."""
    side = mask.shape[0]
    total = float(mask.sum())
    if total == 0:
        return 0.0, np.full(2, 0.5)
    rows, columns = np.indices(mask.shape)
    centre = np.array([(mask * (columns + 0.5)).sum(), (mask * (rows + 0.5)).sum()]) / total / side
    return total / side**2, centre


def silhouette(mesh: Mesh, camera: Camera, supersample: int = 2) -> np.ndarray:
    """How much of each pixel the mesh covers, from ``camera`` rendering ``supersample``² samples a pixel:
    (camera.samples / supersample)² float32 in [0, 1]. Only the faces turned towards the camera are drawn:
    a closed surface's outline is theirs alone, and they are half the work."""
    mask = np.zeros((camera.samples, camera.samples), np.float32)
    xy, _ = camera.project(mesh.vertices)
    corners = xy[mesh.faces]
    first, second = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    # wound counter-clockwise seen from outside: clockwise on an image whose rows run downwards
    towards = first[:, 0] * second[:, 1] - first[:, 1] * second[:, 0] < 0
    for _faces, rows, columns, _b1, _b2 in coverage(corners[towards], camera.samples, camera.samples):
        mask[rows, columns] = 1.0
    return block_mean(mask, supersample)


class PhotoProjection:
    """The photo as a fitted camera throws it onto ``mesh``: for surface points, its colour and how much to
    trust it there."""

    def __init__(self, mesh: Mesh, photo: FramedPhoto, camera: PhotoCamera, size: int = DEPTH_SIZE):
        self.camera = camera.at(size)
        self.size = size
        self.photo = photo
        self.colors = photo.pixels[..., :3].astype(np.float32) / 255
        erosion = 2 * max(1, round(ALPHA_EROSION * photo.canvas_side)) + 1
        self.alpha = ndimage.minimum_filter(photo.pixels[..., 3], size=erosion).astype(np.float32) / 255
        self.normals = vertex_normals(mesh.vertices, mesh.faces)
        self.faces = mesh.faces
        depth = depth_buffer(mesh, self.camera, np.arange(len(mesh.faces))).depth.reshape(size, size)
        self.depth = depth
        distance = ndimage.distance_transform_edt(~depth_edges(depth))
        self.edge_weight = np.clip(distance / (EDGE_RAMP * size), 0, 1)

    def sample(
        self, faces: np.ndarray, weights: np.ndarray, points: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """At surface points (N, 3) on ``faces`` (with barycentric ``weights`` (N, 3)): the photo's sRGB
        colours (N, 3) in [0, 1], and their weights (N,) in [0, 1], 0 where the camera does not see them."""
        xy, depth = self.camera.project(points)
        pixel = np.clip(np.rint(xy).astype(np.int64), 0, self.size - 1)
        inside = ((xy > -0.5) & (xy < self.size - 0.5)).all(axis=1)
        visible = inside & (depth <= self.depth[pixel[:, 1], pixel[:, 0]] + VISIBILITY_BIAS)
        normals = np.einsum("nk,nkj->nj", weights, self.normals[self.faces[faces]].astype(np.float64))
        towards = self.camera.eye - points
        cosine = (normals * towards).sum(axis=1) / np.maximum(
            np.linalg.norm(normals, axis=1) * np.linalg.norm(towards, axis=1), 1e-12
        )
        facing = np.clip((cosine - GRAZING_COSINE) / (FACING_COSINE - GRAZING_COSINE), 0, 1)
        on_photo = self.photo.to_photo((xy + 0.5) / self.size)
        weight = visible * facing * self.edge_weight[pixel[:, 1], pixel[:, 0]] * sample(self.alpha, on_photo)
        return sample(self.colors, on_photo).astype(np.float32), weight.astype(np.float32)


def onto_vertices(mesh: Mesh, projection: PhotoProjection) -> Mesh:
    """The mesh with the photo blended into its vertex colours as into texels: at resolution 256 a vertex is
    finer than the model's colour field, so the photo's detail shows there too."""
    faces, weights = vertex_corners(mesh)
    colors, weight = projection.sample(faces, weights, mesh.vertices.astype(np.float64))
    weight = np.where(weights.any(axis=1), weight, 0.0)  # a vertex no face uses keeps the model's colour
    return Mesh(mesh.vertices, mesh.faces, blend(mesh.vertex_colors, colors, weight.astype(np.float32)))


def vertex_corners(mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    """Each vertex as a corner of one of its faces: that face (V,), and one-hot barycentric weights (V, 3),
    all zero for a vertex no face uses."""
    faces = np.zeros(len(mesh.vertices), np.int64)
    for corner in range(3):
        faces[mesh.faces[:, corner]] = np.arange(len(mesh.faces))
    if not len(mesh.faces):
        return faces, np.zeros((len(mesh.vertices), 3))
    return faces, (mesh.faces[faces] == np.arange(len(mesh.vertices))[:, None]).astype(np.float64)


def depth_edges(depth: np.ndarray) -> np.ndarray:
    """Pixels beside a jump in depth, or on the outline (where the surface meets the empty background)."""
    filled = np.isfinite(depth)
    edges = np.zeros(depth.shape, bool)
    rows_apart = (np.s_[:-1, :], np.s_[1:, :])
    columns_apart = (np.s_[:, :-1], np.s_[:, 1:])
    for one, other in (rows_apart, columns_apart):
        # inf - inf is nan, so two empty pixels are no edge; a filled one beside an empty one is
        with np.errstate(invalid="ignore"):
            step = np.abs(depth[one] - depth[other])
        jump = (filled[one] | filled[other]) & ~(step <= DEPTH_EDGE_STEP)
        edges[one] |= jump
        edges[other] |= jump
    return edges


def blend(model: np.ndarray, photo: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The model's colours (N, 3), matched per channel to the photo's where it is well seen, then the photo's
    over them by ``weight``: (N, 3) float32 in [0, 1]."""
    matched = match_colors(model, photo, weight >= MATCH_WEIGHT)
    return (matched + weight[:, None] * (photo - matched)).astype(np.float32)


def match_colors(model: np.ndarray, photo: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """``model`` under the per-channel gain and offset that best fit it to ``photo`` on ``seen`` (least
    squares, the gain kept within ``GAIN_RANGE``): the parts the photo does not show take its exposure and
    white balance, so no seam shows between the two."""
    if seen.sum() < MIN_MATCH_TEXELS:
        return model
    matched = np.empty_like(model)
    for channel in range(3):
        x, y = model[seen, channel].astype(np.float64), photo[seen, channel].astype(np.float64)
        variance = x.var()
        covariance = ((x - x.mean()) * (y - y.mean())).mean()
        gain = np.clip(covariance / variance, *GAIN_RANGE) if variance > 1e-8 else 1.0
        matched[:, channel] = gain * (model[:, channel] - x.mean()) + y.mean()
    return np.clip(matched, 0.0, 1.0)
