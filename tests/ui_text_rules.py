"""What Blender's UI text says, and how: shared by the tests of registered and of drawn text."""

# British spellings, as stems, and the US ones Blender's UI uses.
BRITISH = {
    "colour": "color",
    "centre": "center",
    "grey": "gray",
    "behaviour": "behavior",
    "rasteris": "rasteriz",
    "normalis": "normaliz",
    "optimis": "optimiz",
    "visualis": "visualiz",
    "initialis": "initializ",
    "recognis": "recogniz",
    "analys": "analyz",
    "licence": "license",
    "cancelled": "canceled",
}
# What Blender calls the things the add-on names.
BLENDER_TERMS = {"Vertex Colors": "Color Attribute", "Re-mesh": "Remesh", "Re-Mesh": "Remesh"}
