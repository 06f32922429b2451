"""Model registry: ``get_model(name, in_channels=…, image_size=…, num_classes=…, activation=…)``.

Every model takes images in [0, 1]; any normalisation belongs inside the model, so metrics always see [0, 1].
"""

from fedleak.models.registry import MODELS, get_model, list_models, model_summary, register_model

# Importing the modules registers their models.
from fedleak.models import lenet as _lenet  # noqa: F401,E402  isort: skip
from fedleak.models import linreg as _linreg  # noqa: F401,E402  isort: skip

__all__ = ["MODELS", "get_model", "list_models", "model_summary", "register_model"]
