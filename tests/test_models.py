"""One contract for every registered model, plus the registry's rules, DLG's LeNet spec, resnet18 and the CLI.

The contract test is parametrized over ``list_models()``, so a model file dropped into ``fedleak/models`` is
tested without touching this file.
"""

import pytest
import torch
from torch import nn

from fedleak.drivers.cli.main import main
from fedleak.errors import UserError
from fedleak.models import MODELS, get_model, list_models, register_model
from fedleak.training import client_loss

NUM_CLASSES = 10
BATCH = 2
SHAPES = [(1, 28), (3, 32), (3, 64)]  # (channels, image size): MNIST, CIFAR, DLG's 64×64 LFW/ImageNet crops
HEAVY_PARAMETERS = 1_000_000  # double backward through bigger models takes seconds on two CPU cores

CUDA = pytest.param(
    "cuda",
    marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")],
)


def _parameter_count(name: str) -> int:
    try:
        model = get_model(name, in_channels=3, image_size=32, num_classes=NUM_CLASSES)
    except ValueError:
        return 0
    return sum(p.numel() for p in model.parameters())


def _model_cases() -> list:
    cases = []
    for name in list_models():
        marks = [pytest.mark.slow] if _parameter_count(name) > HEAVY_PARAMETERS else []
        for channels, size in SHAPES:
            cases.append(pytest.param(name, channels, size, marks=marks, id=f"{name}-{channels}x{size}x{size}"))
    return cases


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize(("name", "channels", "size"), _model_cases())
def test_model_contract(name: str, channels: int, size: int, device: str):
    """Builds (or refuses the size clearly), maps a batch to (B, classes) logits, and has a usable 2nd derivative."""
    torch.manual_seed(0)
    try:
        model = get_model(name, in_channels=channels, image_size=size, num_classes=NUM_CLASSES)
    except ValueError as exc:
        # Refusing a size is allowed, at build time and with a message that names the size.
        assert str(size) in str(exc), f"{name} refuses {size}×{size} without saying which size: {exc}"
        return
    model = model.to(device)
    images = torch.rand(BATCH, channels, size, size, device=device, requires_grad=True)
    labels = torch.tensor([1, 7], device=device)

    logits = model(images)
    assert logits.shape == (BATCH, NUM_CLASSES), f"{name}: logits of shape {tuple(logits.shape)}"
    assert torch.isfinite(logits).all()

    # What every gradient-matching attack does: parameter gradients with create_graph=True, then a scalar of
    # them differentiated back to the (dummy) input. allow_unused is off: every parameter must get a gradient.
    named = [(key, p) for key, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(
        client_loss(logits, labels), [p for _, p in named], create_graph=True, allow_unused=True
    )
    unused = [key for (key, _), g in zip(named, grads, strict=True) if g is None]
    assert not unused, f"{name}: parameters outside the forward graph get no gradient: {unused}"
    assert all(torch.isfinite(g).all() for g in grads)
    scalar = sum((g**2).sum() for g in grads)
    (input_grad,) = torch.autograd.grad(scalar, images)
    assert torch.isfinite(input_grad).all()
    assert input_grad.abs().sum() > 0, f"{name}: the gradient of the gradient does not reach the input"


@pytest.mark.parametrize("name", list_models())
def test_model_rebuilds_from_its_spec_and_runs_in_float64(name: str):
    """The attacker rebuilds the global model from its name and the sent state_dict; analytic attacks use float64."""
    channels, size = next((c, s) for c, s in SHAPES if _builds(name, c, s))
    torch.manual_seed(0)
    sent = get_model(name, in_channels=channels, image_size=size, num_classes=NUM_CLASSES)
    torch.manual_seed(1)
    rebuilt = get_model(name, in_channels=channels, image_size=size, num_classes=NUM_CLASSES)
    rebuilt.load_state_dict(sent.state_dict())  # strict: same keys and shapes
    images = torch.rand(BATCH, channels, size, size)
    with torch.no_grad():
        assert torch.equal(rebuilt(images), sent(images))
        logits64 = rebuilt.double()(images.double())
    assert logits64.dtype == torch.float64 and logits64.shape == (BATCH, NUM_CLASSES)
    assert torch.isfinite(logits64).all()


def _builds(name: str, channels: int, size: int) -> bool:
    try:
        get_model(name, in_channels=channels, image_size=size, num_classes=NUM_CLASSES)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("name", list_models())
def test_every_model_supports_a_standard_shape(name: str):
    assert any(_builds(name, c, s) for c, s in SHAPES), f"{name} refuses every standard input shape {SHAPES}"


@pytest.mark.parametrize("name", list_models())
def test_activation_override_is_honoured_or_refused(name: str):
    """A scenario's ``activation`` must never be ignored silently."""
    channels, size = next((c, s) for c, s in SHAPES if _builds(name, c, s))
    try:
        model = get_model(name, in_channels=channels, image_size=size, num_classes=NUM_CLASSES, activation="tanh")
    except (ValueError, UserError) as exc:
        assert "activation" in str(exc), f"{name} refuses activation='tanh' without saying why: {exc}"
        return
    assert any(isinstance(m, nn.Tanh) for m in model.modules()), f"{name} ignored activation='tanh'"


# ---------------------------------------------------------------- registry rules


def test_duplicate_model_names_are_refused():
    original = MODELS.get("lenet")
    with pytest.raises(ValueError, match="already registered"):
        register_model("lenet")(lambda **kwargs: nn.Identity())
    assert MODELS.get("lenet") is original


def test_unknown_model_is_a_user_error_listing_the_choices():
    with pytest.raises(UserError) as info:
        get_model("no-such-model", in_channels=3, image_size=32, num_classes=10)
    message = str(info.value)
    assert "no-such-model" in message
    assert all(name in message for name in list_models())
    assert "\n" not in message


def test_builtin_models_are_registered():
    assert {"lenet", "lenet64", "linreg", "resnet18"} <= set(list_models())


# ---------------------------------------------------------------- DLG's LeNet


@pytest.mark.parametrize("name", ["lenet", "lenet64"])
@pytest.mark.parametrize(
    ("channels", "size", "fc_inputs"), [(1, 28, 12 * 7 * 7), (3, 32, 12 * 8 * 8), (3, 64, 12 * 16 * 16)]
)
def test_lenet_matches_the_dlg_spec(name: str, channels: int, size: int, fc_inputs: int):
    torch.manual_seed(0)
    model = get_model(name, in_channels=channels, image_size=size, num_classes=NUM_CLASSES)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(5, 5)] * 3
    assert [c.out_channels for c in convs] == [12] * 3
    assert [c.stride for c in convs] == [(2, 2), (2, 2), (1, 1)]
    assert convs[0].in_channels == channels
    assert sum(isinstance(m, nn.Sigmoid) for m in model.modules()) == 3
    assert not any(isinstance(m, nn.ReLU | nn.LeakyReLU | nn.Tanh) for m in model.modules())
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1 and linears[0].bias is not None
    assert (linears[0].in_features, linears[0].out_features) == (fc_inputs, NUM_CLASSES)
    values = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert values.min() >= -0.5 and values.max() <= 0.5
    # uniform(−0.5, 0.5), not PyTorch's default (±1/√fan_in ≈ ±0.06 for the convolutions)
    assert values.min() < -0.45 and values.max() > 0.45


def test_lenet_refuses_sizes_not_divisible_by_four():
    with pytest.raises(ValueError, match="30"):
        get_model("lenet", in_channels=3, image_size=30, num_classes=10)


# ---------------------------------------------------------------- resnet18


def test_resnet18_has_the_small_input_stem():
    model = get_model("resnet18", in_channels=1, image_size=28, num_classes=7)
    assert model.conv1.in_channels == 1
    assert (model.conv1.kernel_size, model.conv1.stride) == ((3, 3), (1, 1))
    assert isinstance(model.maxpool, nn.Identity)
    assert model.fc.out_features == 7
    assert not any(isinstance(m, nn.ReLU) and m.inplace for m in model.modules())


def test_resnet18_activation_is_replaceable():
    model = get_model("resnet18", in_channels=3, image_size=32, num_classes=10, activation="tanh")
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 9  # stem + one per basic block (8)
    with pytest.raises(UserError, match="unknown activation"):
        get_model("resnet18", in_channels=3, image_size=32, num_classes=10, activation="swishy")


def test_resnet18_refuses_tiny_images_clearly():
    with pytest.raises(ValueError, match="image_size=8"):
        get_model("resnet18", in_channels=3, image_size=8, num_classes=10)


# ---------------------------------------------------------------- CLI


def test_cli_lists_every_model_with_its_parameter_count(capsys):
    assert main(["models", "--channels", "1", "--size", "28", "--classes", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "1×28×28" in lines[0]
    for name in list_models():
        model = get_model(name, in_channels=1, image_size=28, num_classes=10)
        count = sum(p.numel() for p in model.parameters())
        assert any(line.split()[:1] == [name] and f"{count:,d}" in line for line in lines[1:]), name
