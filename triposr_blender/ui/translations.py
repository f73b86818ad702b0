"""The add-on's UI in other languages, through Blender's own translation system (``bpy.app.translations``).

Blender shows these wherever it shows the English text: property and operator labels and tooltips, panel
titles, labels drawn as they are. Each language follows Blender's own translation of it, its terms included
(Spanish: Malla, Atributo de color, Vacío, Remallar, Diezmar, Umbral), and the same rules as the English: a
label without a final period, a tooltip of one sentence. tests/test_ui_text.py holds every language to
covering every label and tooltip the add-on registers.

Spanish comes first: Blender's own Spanish translation is among its most complete, so the add-on reads like
the rest of Blender there.
"""

import bpy

SPANISH = {
    "Input": "Entrada",
    "Where the image comes from": "De dónde viene la imagen",
    "File": "Archivo",
    "An image file on disk": "Un archivo de imagen en el disco",
    "Image": "Imagen",
    "An image already in Blender, such as one open in the Image Editor": (
        "Una imagen ya cargada en Blender, como la abierta en el editor de imágenes"
    ),
    "Reference": "Referencia",
    "The image of the selected image empty (a reference image)": (
        "La imagen del vacío de imagen seleccionado (una imagen de referencia)"
    ),
    "Image File": "Archivo de imagen",
    "The image to reconstruct": "La imagen a reconstruir",
    "Remove Background": "Quitar fondo",
    "Cut the object out of its background first; an image with a transparent background keeps its own": (
        "Recorta primero el objeto de su fondo; una imagen con fondo transparente conserva el suyo"
    ),
    "Foreground Ratio": "Proporción del primer plano",
    "How much of the framed square the object fills: lower it if parts get cut off": (
        "Cuánto del cuadro ocupa el objeto: bájala si se recortan partes"
    ),
    "Resolution": "Resolución",
    "Marching-cubes grid size per axis: finer detail, but time and memory grow with its cube": (
        "Tamaño de la rejilla de marching cubes por eje: más detalle, pero tiempo y memoria crecen con su "
        "cubo"
    ),
    "Threshold": "Umbral",
    "Density where the surface is drawn: lower for a fuller shape, higher if it is bloated or has blobs": (
        "Densidad donde se traza la superficie: más baja para una forma más llena, más alta si sale hinchada"
    ),
    "Smoothing": "Suavizado",
    "Width in the model's texels over which lumps are evened out, keeping the volume "
    "(0 keeps the raw surface)": (
        "Ancho en téxeles del modelo sobre el que se suavizan los bultos, conservando el volumen "
        "(0: sin suavizar)"
    ),
    "Remove Floaters": "Quitar flotantes",
    "Drop the small pieces of surface apart from the object: those with fewer faces than Floater Size of "
    "the largest piece": (
        "Descarta las piezas sueltas de superficie con menos caras que el tamaño de flotante de la mayor"
    ),
    "Floater Size": "Tamaño de flotante",
    "A piece of the mesh with fewer faces than this share of the largest piece's counts as a floater": (
        "Una pieza de la malla con menos caras que esta parte de las de la mayor cuenta como flotante"
    ),
    "Target Faces": "Caras objetivo",
    "Decimate to at most this many triangles before coloring, for a light asset (0 keeps every triangle)": (
        "Diezma a lo sumo a estos triángulos antes de colorear, para un recurso ligero (0 los conserva todos)"
    ),
    "Photo Texture": "Textura de foto",
    "Project the photo's own detail onto the side of the object it shows, where the outlines match": (
        "Proyecta el detalle de la foto en el lado del objeto que muestra, si los contornos coinciden"
    ),
    "Texture Size": "Tamaño de textura",
    "Width and height of the baked texture in pixels: finer detail, 4× the time and memory per doubling": (
        "Ancho y alto de la textura horneada en píxeles: más detalle, 4× el tiempo y la memoria al doblarlo"
    ),
    "Quad Remesh": "Remallar en cuadriláteros",
    "Remesh into about this many quads with QuadriFlow, keeping the Color Attribute "
    "(0 keeps the triangles)": (
        "Remalla en unos tantos cuadriláteros con QuadriFlow, conservando el atributo de color "
        "(0 conserva los triángulos)"
    ),
    "Shade Smooth": "Sombreado suave",
    "Smooth shading instead of flat facets": "Sombreado suave en lugar de caras planas",
    "Size": "Tamaño",
    "Length of the object's longest side, in Blender units (at the 3D cursor)": (
        "Longitud del lado más largo del objeto, en unidades de Blender (en el cursor 3D)"
    ),
    "Color": "Color",
    "How the mesh carries its colors": "Cómo lleva la malla sus colores",
    "Color Attribute": "Atributo de color",
    "A color per vertex: no extra step, but it needs a dense mesh to carry detail": (
        "Un color por vértice: sin paso extra, pero necesita una malla densa para llevar el detalle"
    ),
    "Baked Texture": "Textura horneada",
    "A UV layout and a texture baked from the model: detail however few the faces, for game-ready assets": (
        "Un mapa UV y una textura horneada del modelo: detalle con pocas caras, para recursos de videojuego"
    ),
    "Device": "Dispositivo",
    "Where the model runs": "Dónde se ejecuta el modelo",
    "Preferences": "Preferencias",
    "The default device set in the add-on's preferences": (
        "El dispositivo predeterminado de las preferencias del complemento"
    ),
    "Auto": "Automático",
    "A CUDA GPU if there is one, else Apple Metal (MPS), else the CPU": (
        "Una GPU CUDA si la hay; si no, Apple Metal (MPS); si no, la CPU"
    ),
    "CUDA": "CUDA",
    "An NVIDIA GPU": "Una GPU de NVIDIA",
    "Apple Metal": "Apple Metal",
    "The GPU of an Apple silicon Mac": "La GPU de un Mac con Apple silicon",
    "CPU": "CPU",
    "The processor: slow, but works everywhere": "El procesador: lento, pero funciona en todas partes",
    "Place At": "Colocar en",
    "Where the new object goes": "Dónde va el objeto nuevo",
    "3D Cursor": "Cursor 3D",
    "A new object standing on the 3D cursor, longest side Size long": (
        "Un objeto nuevo de pie sobre el cursor 3D, con su lado más largo del tamaño indicado"
    ),
    "Reference Image": "Imagen de referencia",
    "In the picture of the selected image empty (a reference image): facing its viewer, as large as it": (
        "En el cuadro del vacío de imagen seleccionado: mirando a quien lo ve, tan grande como él"
    ),
    "Backend": "Motor",
    "This Computer": "Este equipo",
    "The model runs here, on this computer's GPU or CPU (needs the dependencies)": (
        "El modelo se ejecuta aquí, en la GPU o la CPU de este equipo (necesita las dependencias)"
    ),
    "Server": "Servidor",
    "The model runs on a TripoSR server, e.g. the studio's GPU box: nothing to install here": (
        "El modelo se ejecuta en un servidor de TripoSR, p. ej. el del estudio: aquí no se instala nada"
    ),
    "Address of the TripoSR server, e.g. https://gpu-box.studio.lan:8700": (
        "Dirección del servidor de TripoSR, p. ej. https://gpu-box.studio.lan:8700"
    ),
    "Token": "Token",
    "The server's token, if it has one (kept in your preferences, never in a .blend file)": (
        "El token del servidor, si lo tiene (se guarda en tus preferencias, nunca en un archivo .blend)"
    ),
    "Model Source": "Origen del modelo",
    "Where the model comes from": "De dónde viene el modelo",
    "Hugging Face": "Hugging Face",
    "Download the model from a Hugging Face repository once, then use it offline": (
        "Descarga el modelo de un repositorio de Hugging Face una vez y úsalo después sin conexión"
    ),
    "Folder": "Carpeta",
    "A folder on this computer holding config.yaml and model.ckpt": (
        "Una carpeta de este equipo con config.yaml y model.ckpt"
    ),
    "Repository": "Repositorio",
    "Hugging Face repository id of the model": "Id. del repositorio de Hugging Face del modelo",
    "Folder holding the model's config.yaml and model.ckpt": (
        "Carpeta con config.yaml y model.ckpt del modelo"
    ),
    "Download Cache": "Caché de descargas",
    "Folder for downloaded models; empty: Hugging Face's shared cache (~/.cache/huggingface)": (
        "Carpeta para los modelos descargados; vacía: la caché compartida de Hugging Face "
        "(~/.cache/huggingface)"
    ),
    "Default Device": "Dispositivo predeterminado",
    "Where the model runs unless Generate says otherwise": (
        "Dónde se ejecuta el modelo si Generar no dice otro"
    ),
    "Chunk Size": "Tamaño de bloque",
    "Points evaluated at once: lower it if the GPU runs out of memory (0: all at once)": (
        "Puntos evaluados a la vez: bájalo si la GPU se queda sin memoria (0: todos a la vez)"
    ),
    "Faster CPU Encoding (int8)": "Codificación más rápida en CPU (int8)",
    "About 2× faster encoding on the CPU with int8 weights, about 3% off full precision; ignored on a GPU": (
        "Codificación unas 2× más rápida en la CPU con pesos int8, a un 3% de la precisión completa; sin "
        "efecto en una GPU"
    ),
    "Front Axis": "Eje frontal",
    "Which way the side seen in the image faces when the object is placed at the 3D cursor": (
        "Hacia dónde mira el lado visto en la imagen al colocar el objeto en el cursor 3D"
    ),
    "-Y (Front View)": "-Y (vista frontal)",
    "Numpad 1 shows the object as in the image": "Teclado numérico 1 muestra el objeto como en la imagen",
    "+Y (Back View)": "+Y (vista trasera)",
    "Ctrl Numpad 1 shows the object as in the image": (
        "Ctrl y teclado numérico 1 muestran el objeto como en la imagen"
    ),
    "+X (Right View)": "+X (vista derecha)",
    "Numpad 3 shows the object as in the image: TripoSR's own axes": (
        "Teclado numérico 3 muestra el objeto como en la imagen: los ejes propios de TripoSR"
    ),
    "-X (Left View)": "-X (vista izquierda)",
    "Ctrl Numpad 3 shows the object as in the image": (
        "Ctrl y teclado numérico 3 muestran el objeto como en la imagen"
    ),
    "Generate 3D Mesh": "Generar malla 3D",
    "Reconstruct a colored 3D mesh from one image with TripoSR; options not given come from the panel": (
        "Reconstruye una malla 3D con color a partir de una imagen con TripoSR; lo no indicado viene del "
        "panel"
    ),
    "Image file to reconstruct": "Archivo de imagen a reconstruir",
    "Name of an image in Blender to reconstruct": "Nombre de una imagen de Blender a reconstruir",
    "Reference Empty": "Vacío de referencia",
    "The image empty whose image is the input, and in whose picture the object is placed": (
        "El vacío de imagen cuya imagen es la entrada y en cuyo cuadro se coloca el objeto"
    ),
    "Location": "Posición",
    "Where the object's origin (its bottom center) goes instead of the 3D cursor": (
        "Dónde va el origen del objeto (el centro de su base) en lugar del cursor 3D"
    ),
    "Remesh": "Remallar",
    "Make the selected TripoSR objects' meshes again from their kept scene codes, without the image": (
        "Rehace las mallas de los objetos de TripoSR seleccionados a partir de sus códigos, sin la imagen"
    ),
    "Remove TripoSR Data": "Quitar datos de TripoSR",
    "Remove the scene codes the selected TripoSR objects keep for Remesh (some MB each)": (
        "Quita los códigos de escena que guardan los objetos de TripoSR seleccionados para Remallar "
        "(varios MB)"
    ),
    "Download and Load Model": "Descargar y cargar modelo",
    "Download the model if needed and load it, so the first generation starts at once": (
        "Descarga el modelo si hace falta y lo carga, para que la primera generación empiece enseguida"
    ),
    "Cancel": "Cancelar",
    "Stop the running generation": "Detiene la generación en curso",
    "Unload Model": "Descargar modelo de memoria",
    "Stop the model's worker process, freeing all the memory it used (the next Generate loads it again)": (
        "Detiene el proceso del modelo y libera toda su memoria (el siguiente Generar lo vuelve a cargar)"
    ),
    "Install Dependencies": "Instalar dependencias",
    "Download PyTorch and the other packages TripoSR needs, once, into a folder of its own": (
        "Descarga una vez PyTorch y los demás paquetes que necesita TripoSR, en una carpeta propia"
    ),
    "Retry": "Reintentar",
    "Run the dependency install again (already downloaded packages come from pip's cache)": (
        "Vuelve a instalar las dependencias (lo ya descargado sale de la caché de pip)"
    ),
    "Reinstall": "Reinstalar",
    "Install the dependencies again; the current set stays until the new one works": (
        "Instala de nuevo las dependencias; las actuales se quedan hasta que las nuevas funcionen"
    ),
    "Refresh": "Actualizar",
    "Import the dependencies in a separate process and show the device PyTorch finds": (
        "Importa las dependencias en un proceso aparte y muestra el dispositivo que encuentra PyTorch"
    ),
    "Stop the dependency install; the installed dependencies stay as they were": (
        "Detiene la instalación; las dependencias instaladas se quedan como estaban"
    ),
    "Remove": "Eliminar",
    "Delete the installed dependencies, and the downloaded models if you choose": (
        "Borra las dependencias instaladas y, si lo eliges, los modelos descargados"
    ),
    "Also Delete Downloaded Models": "Borrar también los modelos descargados",
    "Also delete the downloaded TripoSR and background-removal models": (
        "Borra también los modelos descargados de TripoSR y de quitar el fondo"
    ),
    "Generate from Selected References": "Generar desde las referencias seleccionadas",
    "Make a colored 3D mesh from the image of each selected image empty, placed and sized at the empty": (
        "Crea una malla 3D con color de la imagen de cada vacío seleccionado, colocada y a escala en él"
    ),
    "Image to 3D": "Imagen a 3D",
    "Options": "Opciones",
    "Model": "Modelo",
}

LANGUAGES = {"es": SPANISH}
classes = ()  # registers no class: what it registers is the dictionary
# Blender looks up property texts in the default context and operator labels in "Operator".
CONTEXTS = ("*", "Operator")


def translation_dictionary() -> dict:
    """The form bpy.app.translations.register takes: {locale: {(context, English): translated}}."""
    return {
        locale: {(context, english): text for english, text in strings.items() for context in CONTEXTS}
        for locale, strings in LANGUAGES.items()
    }


def register() -> None:
    bpy.app.translations.register(__package__, translation_dictionary())


def unregister() -> None:
    bpy.app.translations.unregister(__package__)
