"""True linear regression on the flattened image, trained with squared error: the setting of the closed-form
("1/alpha") reconstruction and of "DLG on linear regression".

Model: ``y = W x + b`` with ``x`` the flattened image in [0, 1] and ``y`` one real value per class.

Target: the one-hot vector of the class (a real-valued target, ``t_j = 1`` for the image's class, 0 elsewhere).
Why one-hot: it keeps the registry's contract (a batch maps to B × classes outputs, labels are class indices, label
accuracy is the arg-max), and every output row ``j`` is then its own scalar regression ``y_j = w_j · x + b_j`` on the
target ``t_j``. Built with ``num_classes=1`` the model is the scalar regression ``y = w · x + b`` itself, and its
target is the class index as a real number (one output cannot hold a one-hot vector); ``thesis-linreg`` uses it,
because with many outputs the update has many more equations and a batch no longer hides its images.

Loss (:func:`fedleak.training.squared_error_loss`): ``Σ_j (y_j − t_j)²`` per image, mean over the batch. Its
gradient for one image is ``dL/dW_j = alpha_j x`` and ``dL/db_j = alpha_j`` with ``alpha_j = 2 (y_j − t_j)``, so
``x = (dL/dW_j) / (dL/db_j)`` for any row with ``alpha_j ≠ 0`` (the ``linear`` attack). Float targets (B × classes)
are used as they are, so an attacker that learns the target (DLG's soft labels) learns a real-valued target.

The model declares its loss by the class attribute ``client_loss_name``; every place that computes the client loss
reads it through :func:`fedleak.training.loss_of`: the one-batch gradient, the local-step and epoch updates, DP-SGD,
the round loss and held-out evaluation, and the attacks that simulate the client (gradient matching, the hybrid
attack's sub-network). Accuracy is the arg-max of the outputs against the label. ``linreg`` (same layer) is trained
with cross-entropy.
"""

from torch import nn

from fedleak.models.linreg import LinearRegression
from fedleak.models.registry import register_model


class LinearRegressionMSE(LinearRegression):
    """``linreg``'s layer, trained with squared error (see :data:`fedleak.training.LOSSES`)."""

    client_loss_name = "mse"


@register_model("linreg-mse")
def linreg_mse(in_channels: int, image_size: int, num_classes: int, activation: str | None = None) -> nn.Module:
    if activation not in (None, "identity"):
        raise ValueError("linreg-mse has no activation")
    return LinearRegressionMSE(in_channels, image_size, num_classes)
