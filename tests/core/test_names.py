from __future__ import annotations

import pytest

from weightvault.core.errors import InvalidNameError, InvalidRevisionError, UnsafePathError
from weightvault.core.names import check_label, check_model_name, check_relative_path
from weightvault.core.revision import Ref, parse_ref


@pytest.mark.parametrize(
    "name", ["llama-7b", "meta-llama/Llama-2-7b-hf", "a", "x" * 96, "org/model.v2", "bert_base"]
)
def test_valid_model_names(name: str) -> None:
    assert check_model_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 97,
        "a..b",
        "a--b",
        "-lead",
        "trail-",
        ".lead",
        "trail.",
        "model.git",
        "a/b/c",
        "sp ace",
        "/abs",
        "a/",
        "../x",
        "a\\b",
        "na\x00me",
    ],
)
def test_invalid_model_names(name: str) -> None:
    with pytest.raises(InvalidNameError):
        check_model_name(name)


def test_labels() -> None:
    assert check_label("v1.0.0") == "v1.0.0"
    assert check_label("20261123142501-1") == "20261123142501-1"
    for bad in ["", "-x", "a/b", "a..b", "x" * 129, "a b"]:
        with pytest.raises(InvalidNameError):
            check_label(bad)


@pytest.mark.parametrize("path", ["a.bin", "sub/dir/file.safetensors", "ünïcode name.txt"])
def test_safe_relative_paths(path: str) -> None:
    assert check_relative_path(path) == path


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "C:evil", "c:\\x", "a\\b", "nul\x00", "", "a/\x01"],
)
def test_unsafe_relative_paths(path: str) -> None:
    with pytest.raises(UnsafePathError):
        check_relative_path(path)


def test_parse_ref() -> None:
    assert parse_ref("org/m") == Ref("org/m", None)
    assert parse_ref("org/m@v1") == Ref("org/m", "v1")
    assert str(parse_ref("m@abc123")) == "m@abc123"
    with pytest.raises(InvalidRevisionError):
        parse_ref("m@")
    with pytest.raises(InvalidNameError):
        parse_ref("m@../x")
