"""Registry of model builders. A builder takes (in_channels, image_size, num_classes, activation)."""

from collections.abc import Callable

from torch import nn

from fedleak.errors import UserError
from fedleak.registry import Registry

ModelBuilder = Callable[..., nn.Module]

MODELS: Registry[ModelBuilder] = Registry("model")

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    return MODELS.register(name)


def list_models() -> list[str]:
    return MODELS.names()


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (relu, leaky_relu, sigmoid, tanh)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise UserError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}") from None


def get_model(
    name: str, *, in_channels: int, image_size: int, num_classes: int, activation: str | None = None
) -> nn.Module:
    """Build a registered model; ``activation=None`` keeps the model's paper default."""
    builder = MODELS.get(name)
    kwargs = {"in_channels": in_channels, "image_size": image_size, "num_classes": num_classes}
    if activation is not None:
        kwargs["activation"] = activation
    return builder(**kwargs)


def model_summary(
    in_channels: int = 3, image_size: int = 32, num_classes: int = 10
) -> list[tuple[str, int | None]]:
    """(name, parameter count) for every registered model at one input shape; None where it refuses the shape."""
    rows: list[tuple[str, int | None]] = []
    for name in list_models():
        try:
            model = get_model(name, in_channels=in_channels, image_size=image_size, num_classes=num_classes)
        except ValueError:
            rows.append((name, None))
            continue
        rows.append((name, sum(p.numel() for p in model.parameters())))
    return rows
