"""Model registry: ``get_model(name, in_channels=…, image_size=…, num_classes=…, activation=…)``.

Every model takes images in [0, 1]; any normalisation belongs inside the model, so metrics always see [0, 1].
Every module in this package registers its models when imported; all are imported here.
"""

from fedleak.autoload import import_submodules
from fedleak.models.registry import MODELS, get_model, list_models, model_summary, register_model

import_submodules(__name__, __path__, skip={"registry"})

__all__ = ["MODELS", "get_model", "list_models", "model_summary", "register_model"]
