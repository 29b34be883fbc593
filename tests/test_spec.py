import json

import pytest

from catmood.errors import SpecError
from catmood.spec import SPEC_VERSION, ModelSpec


def test_round_trip_through_json_is_exact():
    spec = ModelSpec(architecture="convnext_large", class_names=("alarmed", "angry", "calm"), input_size=288,
                     resize_size=320, interpolation="bicubic", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                     color_order="BGR")
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["class_names"] == ["alarmed", "angry", "calm"]
    assert data["version"] == SPEC_VERSION
    again = ModelSpec.from_dict(data)
    assert again == spec
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert again.num_classes == 3
    assert hash(again) == hash(spec)


def test_lists_from_yaml_become_tuples():
    spec = ModelSpec(architecture="resnet18", class_names=["a", "b"], mean=[0.1, 0.2, 0.3])
    assert spec.class_names == ("a", "b") and spec.mean == (0.1, 0.2, 0.3)


@pytest.mark.parametrize("changes, words", [
    (dict(class_names=("only",)), "at least 2 classes"),
    (dict(class_names=("a", "a")), "duplicate class names ['a']"),
    (dict(class_names=(" a", "b")), "surrounding spaces"),
    (dict(input_size=0), "input_size must be a positive integer"),
    (dict(resize_size=200), "smaller than input_size"),
    (dict(crop="none", resize_size=256), "must equal input_size"),
    (dict(interpolation="lanczos9"), "interpolation must be one of"),
    (dict(std=(0.2, 0.0, 0.2)), "std must be positive"),
    (dict(mean=(0.1, 0.2)), "mean must be 3 finite numbers"),
    (dict(color_order="RGBA"), "color_order"),
    (dict(input_dtype="uint8"), "goes with layout NHWC"),
    (dict(architecture=""), "architecture"),
])
def test_invalid_specs_say_what_is_wrong(changes, words):
    base = dict(architecture="resnet18", class_names=("a", "b"))
    with pytest.raises(SpecError) as err:
        ModelSpec(**{**base, **changes})
    assert words in str(err.value)


def test_newer_version_asks_for_an_upgrade_before_anything_else():
    data = ModelSpec(architecture="resnet18", class_names=("a", "b")).to_dict()
    data["version"] = SPEC_VERSION + 1
    data["some_future_field"] = 1
    with pytest.raises(SpecError, match=f"spec version {SPEC_VERSION + 1} is newer.*upgrade catmood"):
        ModelSpec.from_dict(data)


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.pop("version"), "no 'version' field"),
    (lambda d: d.pop("class_names"), "missing fields ['class_names']"),
    (lambda d: d.update(colour="x"), "unknown fields ['colour']"),
    (lambda d: d.update(version=0), "unknown spec version 0"),
])
def test_from_dict_rejects_malformed(mutate, words):
    data = ModelSpec(architecture="resnet18", class_names=("a", "b")).to_dict()
    mutate(data)
    with pytest.raises(SpecError, match=words.replace("[", r"\[").replace("]", r"\]")):
        ModelSpec.from_dict(data)


def test_from_json_rejects_garbage():
    with pytest.raises(SpecError, match="not JSON"):
        ModelSpec.from_json("{nope")
    with pytest.raises(SpecError, match="expected a mapping"):
        ModelSpec.from_dict(["a"])


def test_replace_validates_again():
    spec = ModelSpec(architecture="resnet18", class_names=("a", "b"))
    uint8 = spec.replace(input_dtype="uint8", input_layout="NHWC")
    assert uint8.input_dtype == "uint8" and spec.input_dtype == "float32"
    with pytest.raises(SpecError):
        spec.replace(input_size=-1)
