"""The API's routes, one module per resource, each an ``APIRouter`` that ``app.create_app`` includes."""
