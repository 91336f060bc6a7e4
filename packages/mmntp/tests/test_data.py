"""Offline digits: the split, the attribute thresholds and the shift augmentation."""

import numpy as np
import pytest
from repro_mmntp.config import ConfigError, load_run_config
from repro_mmntp.data import augment_shifts, fit_thresholds, load_data, shift_images


def test_digits_read_from_the_wheel_equal_sklearn_load_digits():
    from repro_mmntp.data import load_digits_images
    from sklearn.datasets import load_digits

    images, labels = load_digits_images()
    d = load_digits()
    assert np.array_equal(labels, d.target)
    np.testing.assert_allclose(images, d.images / 16.0, rtol=0, atol=1e-7)


def test_split_is_fixed_by_its_seed_disjoint_and_complete():
    a, b = load_data("digits", 0.2, 0), load_data("digits", 0.2, 0)
    assert np.array_equal(a.test.images, b.test.images)
    c = load_data("digits", 0.2, 1)
    assert not np.array_equal(a.test.labels, c.test.labels)
    assert len(a.train.labels) + len(a.test.labels) == 1797 and len(a.test.labels) == 359
    train = {x.tobytes() for x in a.train.images}
    assert (
        sum(x.tobytes() in train for x in a.test.images) <= 2
    )  # sklearn digits hold a few duplicates


def test_attribute_thresholds_come_from_the_training_split_and_split_each_class():
    d = load_data("digits", 0.2, 0)
    again = fit_thresholds(d.train.images, d.train.labels)
    for k in again:
        assert np.array_equal(again[k], d.thresholds[k])
    for c in range(10):
        frac = d.train.attributes[d.train.labels == c, 0].mean()  # thickness: per-class median
        assert 0.3 < frac <= 0.5


def test_shifts_move_pixels_and_augmentation_is_five_fold():
    x = np.zeros((1, 8, 8), np.float32)
    x[0, 3, 4] = 1.0
    assert shift_images(x, 1, 0)[0, 4, 4] == 1.0 and shift_images(x, 0, -1)[0, 3, 3] == 1.0
    d = load_data("digits", 0.2, 0)
    aug = augment_shifts(d.train, True)
    assert len(aug.images) == 5 * len(d.train.images)
    assert np.array_equal(aug.labels[: len(d.train.labels)], d.train.labels)


def test_bad_config_values_fail_with_the_key_named():
    with pytest.raises(ConfigError, match="tokenizer.kind"):
        load_run_config("debug", ["tokenizer.kind=lfq"])
    with pytest.raises(ConfigError, match="data.dataset"):
        load_run_config("debug", ["data.dataset=mnist"])
    with pytest.raises(ConfigError, match="rvq"):
        load_run_config("debug", ["tokenizer.kind=rvq", "model.generation_target=latents"])
    with pytest.raises(ConfigError, match="model.resampler_queries"):
        load_run_config("debug", ["model.resampler_queries=8"])
    with pytest.raises(ConfigError, match="image_input='encoder'"):
        load_run_config("debug", ["tokenizer.kind=kmeans", "model.image_input=encoder"])
