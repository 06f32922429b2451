"""ResNet-18 ("Deep Residual Learning for Image Recognition", He, Zhang, Ren, Sun 2015, arXiv 1512.03385).

torchvision's ``resnet18`` (random init, ``weights=None``: nothing is downloaded) with the small-input stem used
for 32×32 images by Inverting Gradients (Geiping et al. 2020, arXiv 2003.14053) and most CIFAR code: the 7×7
stride-2 convolution becomes a 3×3 stride-1 convolution and the max-pool is removed, so a 32×32 image still has a
4×4 map in the last stage.

Assumptions worth knowing when attacking it:
- It contains BatchNorm. In train mode (the client's mode) the batch statistics enter the gradient and the
  running buffers change; what the attacker knows about them is a threat-model grant, not a model property.
- ``activation`` replaces every ReLU (default ``relu``). Gradient matching needs a non-zero second derivative to
  work well; ``sigmoid``/``tanh`` give one, ReLU's is zero almost everywhere (the gradient of the gradient with
  respect to the input still exists through the linear parts and the softmax).
- The stage-4 map is ``ceil(image_size / 8)`` pixels wide; below 16 px it is 1×1 and a train-mode BatchNorm on a
  single image fails, so sizes under 16 are refused.
"""

from torch import nn
from torchvision.models import resnet18 as torchvision_resnet18

from fedleak.models.registry import activation as make_activation
from fedleak.models.registry import register_model

MIN_IMAGE_SIZE = 16


def _replace_relus(module: nn.Module, activation: str) -> None:
    """Swap every ``nn.ReLU`` child (torchvision reuses one per block, applied twice) for a fresh activation."""
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, make_activation(activation))
        else:
            _replace_relus(child, activation)


def _disable_inplace(module: nn.Module) -> None:
    """In-place ReLU saves memory but overwrites tensors some double-backward hooks may want; keep it pure."""
    for child in module.modules():
        if isinstance(child, nn.ReLU):
            child.inplace = False


@register_model("resnet18")
def resnet18(in_channels: int, image_size: int, num_classes: int, activation: str = "relu") -> nn.Module:
    """torchvision's ResNet-18 (parameter names unchanged) with a 3×3 stride-1 stem and no max-pool."""
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(
            f"resnet18 needs image_size >= {MIN_IMAGE_SIZE} (its last stage would be 1×1 and train-mode "
            f"BatchNorm fails on one image); got image_size={image_size}"
        )
    net = torchvision_resnet18(weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    if activation == "relu":
        _disable_inplace(net)
    else:
        _replace_relus(net, activation)
    return net
