"""Re-identification with a stated gallery (issue 19, item 4): fixed per data source, the same in every run, written
into every row and metrics.json; recall and precision over every reconstruction."""

from __future__ import annotations

import pytest
import torch

from fedleak.config.schema import DataConfig
from fedleak.data import load_images
from fedleak.metrics import ReferenceSet, score_batch
from fedleak.metrics.gallery import GALLERY_SIZE, Gallery, recall_and_precision


@pytest.fixture(scope="module")
def mnist():
    image_set = load_images(DataConfig(dataset="mnist", split="train"))
    return image_set, ReferenceSet.of(image_set)


def test_the_gallery_is_the_first_images_of_the_source_and_the_same_in_every_run(mnist):
    image_set, reference = mnist
    gallery = Gallery.for_reference(reference)
    assert gallery.size == GALLERY_SIZE == 1000
    assert torch.equal(gallery.images.images, image_set.images[:1000])
    assert gallery.description == f"first 1000 of 5000 images of {image_set.source}"
    again = Gallery.for_reference(ReferenceSet.of(load_images(DataConfig(dataset="mnist", split="train"))))
    assert again.description == gallery.description and torch.equal(again.images.images, gallery.images.images)


def test_a_small_source_is_its_own_gallery():
    image_set = load_images(DataConfig(dataset="mnist", split="test"))
    gallery = Gallery.for_reference(ReferenceSet.of(image_set))
    assert gallery.size == len(image_set) == 20 and gallery.description.startswith("first 20 of 20 images of ")


def test_every_scored_batch_states_its_gallery(mnist):
    image_set, reference = mnist
    true, labels = image_set.get([10, 11])
    score = score_batch(true.flip(0), labels.flip(0), true, labels, reference=reference)
    assert (score.gallery, score.gallery_size) == (Gallery.for_reference(reference).description, 1000)
    assert score.to_dict()["gallery_size"] == 1000


def test_a_true_image_outside_the_gallery_joins_it_for_its_own_update(mnist):
    image_set, reference = mnist
    true, labels = image_set.get([4321, 10])  # 4321 is not among the gallery's first 1000
    found = Gallery.for_reference(reference).identify(true, true)
    assert found == [0, 1]
    blank = Gallery.for_reference(reference).identify(torch.zeros_like(true[:1]), true)
    assert blank == [None]


def test_recall_counts_true_images_precision_counts_reconstructions():
    assert recall_and_precision([0, 0, None, None], batch_size=2) == (0.5, 0.5, [True, False])
    assert recall_and_precision([], batch_size=3) == (0.0, None, [False, False, False])


def test_two_copies_of_one_image_re_identify_one_true_image(mnist):
    image_set, reference = mnist
    true, labels = image_set.get([5, 6])
    score = score_batch(true[[0, 0]], None, true, labels, reference=reference)
    assert score.reidentified == 0.5 and score.reidentified_precision == 1.0
    assert [item.reidentified for item in score.per_image] == [True, False]


def test_gallery_refuses_images_of_another_shape(mnist):
    _, reference = mnist
    with pytest.raises(ValueError, match="gallery"):
        Gallery.for_reference(reference).identify(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))


def test_gallery_of_a_reference_built_by_hand_says_so():
    gallery = Gallery.of(ReferenceSet(torch.rand(3, 1, 12, 12)))
    assert gallery.description == "first 3 of 3 images of the run's data source"
