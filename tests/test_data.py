"""Data sources: bundled real images, npz fixtures, folders, single images, torchvision files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fedleak.config.schema import DataConfig
from fedleak.data import DATASETS, ImageSet, load_images
from fedleak.errors import UserError

MNIST_TEST_FIRST_TEN = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def load(**fields) -> ImageSet:
    return load_images(DataConfig(**fields))


def assert_valid(images: ImageSet, dataset: str) -> None:
    info = DATASETS[dataset]
    x, y = images.get(np.arange(len(images)))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape == (len(images), info.channels, images.image_size, images.image_size)
    assert images.channels == info.channels
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert x.std() > 0.1  # real pictures, not a constant fill
    assert 0 <= y.min() and y.max() < images.num_classes


# --- bundled -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("dataset", "split", "count", "distinct_labels"),
    [
        ("mnist", "test", 20, 9),  # the first 20 test digits have no 8
        ("mnist", "train", 5000, 10),
        ("fashion_mnist", "test", 20, 10),
        ("cifar10", "test", 20, 8),  # no bird, no deer among the first 20
        ("cifar100", "test", 20, 18),  # 71 and 92 appear twice
        ("lfw", "test", 100, 100),
    ],
)
def test_bundled_sources_give_real_images(dataset, split, count, distinct_labels):
    images = load(dataset=dataset, split=split)
    assert len(images) == count
    assert images.image_size == DATASETS[dataset].native_size
    assert_valid(images, dataset)
    assert len(set(images.labels.tolist())) == distinct_labels
    assert images.source


def test_bundled_mnist_test_is_the_mnist_test_set_in_order():
    images = load(dataset="mnist", split="test")
    assert images.labels[:10].tolist() == MNIST_TEST_FIRST_TEN
    assert images.images.dtype == torch.uint8  # original pixels kept


def test_bundled_cifar10_is_the_cifar10_test_set_in_order():
    # cat ship ship airplane frog frog automobile frog cat automobile
    assert load(dataset="cifar10").labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


def test_bundled_cifar100_uses_fine_labels():
    assert load(dataset="cifar100").num_classes == 100
    assert load(dataset="cifar100").labels.max() >= 10


def test_bundled_mnist_train_labels_match_the_digits():
    images = load(dataset="mnist")  # split None → train when it exists
    assert len(images) == 5000
    assert np.bincount(images.labels.numpy()).tolist() == [500] * 10
    x, y = images.get(np.arange(len(images)))
    centre = x[:, 0, 12:16, 12:16].mean(dim=(1, 2))
    # A "1" is a stroke through the centre, a "0" is a ring around an empty centre.
    assert centre[y == 1].mean() > 3 * centre[y == 0].mean()


def test_bundled_split_that_does_not_exist_is_a_user_error():
    with pytest.raises(UserError, match="only the 'test' split"):
        load(dataset="fashion_mnist", split="train")


def test_bundled_lfw_is_rgb_with_one_class_per_face():
    images = load(dataset="lfw")
    assert images.channels == 3 and images.image_size == 32 and images.num_classes == 100
    x, _ = images.get([0, 1])
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grey faces repeated


def test_image_size_resizes_with_antialiasing():
    native = load(dataset="mnist", split="test")
    resized = load(dataset="mnist", split="test", image_size=32)
    assert resized.images.dtype == torch.float32 and resized.image_size == 32
    small, _ = native.get([0])
    large, _ = resized.get([0])
    assert 0 <= large.min() and large.max() <= 1
    assert abs(small.mean() - large.mean()) < 0.02  # resizing keeps the brightness


def test_image_sets_do_not_share_memory_with_the_loader_cache():
    first = load(dataset="mnist", split="test")
    first.images.zero_()
    assert load(dataset="mnist", split="test").images.sum() > 0


def test_get_returns_requested_order_and_copies():
    images = load(dataset="cifar10")
    x, y = images.get(torch.tensor([3, 1]))
    assert y.tolist() == [images.labels[3].item(), images.labels[1].item()]
    assert torch.equal(x[0], images.images[3].float() / 255)
    x.zero_()
    assert images.images[3].sum() > 0


# --- npz -----------------------------------------------------------------------------------------------------------

def test_npz_mnist_fixture(fixture_file):
    images = load(dataset="mnist", source="npz", path=str(fixture_file("mnist_test.npz")))
    assert len(images) == 10000
    assert images.labels[:10].tolist() == MNIST_TEST_FIRST_TEN
    assert_valid(images, "mnist")
    bundled = load(dataset="mnist", split="test")
    assert torch.equal(images.images[:20], bundled.images)  # foolbox's PNGs are the first 20 test images


@pytest.mark.parametrize(
    ("dataset", "name", "count"),
    [("fashion_mnist", "fashion_mnist_test.npz", 10000), ("cifar10", "cifar10_test_first1000.npz", 1000),
     ("cifar100", "cifar100_test_first20.npz", 20)],
)
def test_npz_fixtures(fixture_file, dataset, name, count):
    images = load(dataset=dataset, source="npz", path=str(fixture_file(name)))
    assert len(images) == count
    assert_valid(images, dataset)
    bundled = load(dataset=dataset, split="test")
    assert torch.equal(images.labels[:20], bundled.labels)


def test_npz_lfw_fixture_maps_names_to_classes(fixture_file):
    path = fixture_file("lfw_sample_80px.npz")
    images = load(dataset="lfw", source="npz", path=str(path))
    names = np.load(path)["names"]
    assert len(images) == len(names) and images.num_classes == len(set(names.tolist()))
    assert images.image_size == 32  # the LFW default size
    assert_valid(images, "lfw")
    assert load(dataset="lfw", source="npz", path=str(path), image_size=80).images.dtype == torch.uint8


def test_npz_relative_path_resolves_against_base_dir(tmp_path):
    np.savez(tmp_path / "tiny.npz", x=np.full((2, 28, 28), 200, np.uint8), y=np.array([3, 4]))
    images = load_images(DataConfig(dataset="mnist", source="npz", path="tiny.npz"), base_dir=tmp_path)
    assert images.labels.tolist() == [3, 4]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"images": np.zeros((2, 28, 28), np.uint8), "y": np.zeros(2, np.int64)}, "needs arrays 'x'"),
        ({"x": np.zeros((2, 28, 28, 3), np.uint8), "y": np.zeros(2, np.int64)}, "3 channel"),
        ({"x": np.zeros((2, 28, 28), np.uint8), "y": np.array([0, 10])}, "label 10 is out of range"),
        ({"x": np.zeros((2, 28, 28), np.uint8), "y": np.zeros(3, np.int64)}, "2 images but 3 labels"),
        ({"x": np.full((2, 28, 28), 255.0), "y": np.zeros(2, np.int64)}, r"must lie in \[0, 1\]"),
        ({"x": np.zeros((2, 5), np.uint8), "y": np.zeros(2, np.int64)}, "must be N×H×W"),
    ],
)
def test_npz_problems_are_one_line_user_errors(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(UserError, match=message) as info:
        load(dataset="mnist", source="npz", path=str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_npz_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load(dataset="mnist", source="npz", path=str(tmp_path / "absent.npz"))


# --- folder and single image ------------------------------------------------------------------------------------

def write_png(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(sum(colour))
    noise = rng.integers(0, 40, size=(size[1], size[0], 3))
    Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(path)


def test_folder_with_integer_class_names(tmp_path):
    write_png(tmp_path / "7" / "a.png", (32, 32), (200, 10, 10))
    write_png(tmp_path / "7" / "b.png", (32, 32), (10, 200, 10))
    write_png(tmp_path / "2" / "c.png", (32, 32), (10, 10, 200))
    images = load(dataset="cifar10", source="folder", path=str(tmp_path))
    assert images.labels.tolist() == [2, 7, 7]  # folder names are the classes, sorted folder order
    assert images.images.dtype == torch.uint8 and images.images.shape == (3, 3, 32, 32)
    assert images.images[0, 2].float().mean() > images.images[0, 0].float().mean()  # blue stays blue


def test_folder_with_named_classes_converts_and_resizes(tmp_path):
    write_png(tmp_path / "zebra" / "a.png", (40, 50), (250, 250, 250))
    write_png(tmp_path / "cat" / "b.jpg", (64, 64), (20, 20, 20))
    images = load(dataset="mnist", source="folder", path=str(tmp_path))
    assert images.labels.tolist() == [0, 1]  # cat, zebra
    assert images.num_classes == 10  # the dataset's label space, not the folder count
    assert images.images.shape == (2, 1, 28, 28) and images.images.dtype == torch.float32
    x, _ = images.get([0, 1])
    assert x[0].mean() < 0.25 < 0.9 < x[1].mean()


def test_folder_errors(tmp_path):
    with pytest.raises(UserError, match="no class sub-folders"):
        load(dataset="mnist", source="folder", path=str(tmp_path))
    (tmp_path / "0").mkdir()
    with pytest.raises(UserError, match="hold no images"):
        load(dataset="mnist", source="folder", path=str(tmp_path))
    write_png(tmp_path / "12" / "a.png", (28, 28), (0, 0, 0))
    with pytest.raises(UserError, match="label 12 is out of range"):
        load(dataset="mnist", source="folder", path=str(tmp_path))
    named = tmp_path / "named"
    for name in "abcdefghijk":
        write_png(named / name / "a.png", (28, 28), (0, 0, 0))
    with pytest.raises(UserError, match="11 class sub-folders but mnist has 10 classes"):
        load(dataset="mnist", source="folder", path=str(named))


def test_folder_lfw_counts_one_class_per_person(tmp_path):
    for person in ("Ada_Lovelace", "Alan_Turing", "Grace_Hopper"):
        write_png(tmp_path / person / f"{person}_0001.jpg", (250, 250), (120, 90, 60))
    images = load(dataset="lfw", source="folder", path=str(tmp_path))
    assert images.num_classes == 3 and images.labels.tolist() == [0, 1, 2]
    assert images.images.shape == (3, 3, 32, 32)


def test_single_image_is_converted_to_the_dataset(tmp_path):
    path = tmp_path / "photo.png"
    write_png(path, (60, 40), (240, 120, 0))
    grey = load(dataset="mnist", source="image", path=str(path), label=3)
    assert grey.images.shape == (1, 1, 28, 28) and grey.labels.tolist() == [3] and grey.num_classes == 10
    rgb = load(dataset="cifar10", source="image", path=str(path), label=9, image_size=16)
    x, _ = rgb.get([0])
    assert x.shape == (1, 3, 16, 16) and x[0, 0].mean() > x[0, 2].mean()  # orange: more red than blue
    face = load(dataset="lfw", source="image", path=str(path), label=4, num_classes=200)
    assert face.num_classes == 200 and face.image_size == 32
    with pytest.raises(UserError, match="no fixed label space"):  # one image cannot size LFW's head
        load(dataset="lfw", source="image", path=str(path), label=4)


def test_single_image_errors(tmp_path):
    path = tmp_path / "photo.png"
    write_png(path, (28, 28), (0, 0, 0))
    with pytest.raises(UserError, match="label 10 is out of range"):
        load(dataset="mnist", source="image", path=str(path), label=10)
    (tmp_path / "note.png").write_text("not an image")
    with pytest.raises(UserError, match="not a readable image"):
        load(dataset="mnist", source="image", path=str(tmp_path / "note.png"), label=1)


def test_single_lfw_photo_fixture(fixture_file):
    images = load(dataset="lfw", source="image", path=str(fixture_file("Anthony_Hopkins_0001.jpg")), label=0,
                  num_classes=10)
    assert images.images.shape == (1, 3, 32, 32)
    assert_valid(images, "lfw")


# --- torchvision ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("dataset", "first", "last"),
    [
        ("mnist", "MNIST/raw/train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        ("fashion_mnist", "FashionMNIST/raw/train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        ("cifar10", "cifar-10-batches-py/data_batch_1", "+3 more"),
        ("cifar100", "cifar-100-python/train", "cifar-100-python/meta"),
        ("lfw", "lfw-py/lfw-funneled.tgz", "+1 more"),
    ],
)
def test_torchvision_missing_files_say_what_to_put_where(tmp_path, dataset, first, last):
    with pytest.raises(UserError) as info:
        load(dataset=dataset, source="torchvision", path=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path / first) in message and last in message and "\n" not in message


def test_torchvision_lfw_download_is_refused_with_instructions(tmp_path):
    with pytest.raises(UserError, match="lfw-funneled.tgz"):
        load(dataset="lfw", source="torchvision", path=str(tmp_path), download=True)


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX format: magic (0, 0, uint8 type, ndim), big-endian dimensions, raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_torchvision_mnist_reads_idx_files(tmp_path):
    train, test = load(dataset="mnist", split="train"), load(dataset="mnist", split="test")
    raw = tmp_path / "MNIST" / "raw"
    for prefix, source in (("train", train), ("t10k", test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", source.images[:50, 0].numpy())
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", source.labels[:50].numpy())
    images = load(dataset="mnist", source="torchvision", path=str(tmp_path), split="test")
    assert images.labels[:10].tolist() == MNIST_TEST_FIRST_TEN
    assert torch.equal(images.images, test.images)
    default = load(dataset="mnist", source="torchvision", path=str(tmp_path))
    assert torch.equal(default.images, train.images[:50])  # split None → train
