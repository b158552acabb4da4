"""`-o` finds an option file from every working directory the README suggests: the working directory first, then
the tree's folder, its options/ folder and the repository root (samacore.options.option_file_dirs)."""
import os

import pytest

from helpers import REPO
from samacore.options import OptionError
from samaiqa.schema import load_iqa_options
from samavqa.schema import load_vqa_options

IQA_FILE = os.path.join(REPO, "IQA", "options", "fast-sama-iqa.yml")
VQA_FILE = os.path.join(REPO, "VQA", "options", "fast-SAMA-test.yml")
# the working directories: the repository root, inside each tree, and a folder outside the repository
PLACES = ["", "IQA", "VQA", os.path.join("IQA", "samaiqa"), None]
# how a user names the file: relative to the repository, to the tree, to the tree's options folder
IQA_NAMES = ["IQA/options/fast-sama-iqa.yml", "options/fast-sama-iqa.yml", "fast-sama-iqa.yml"]
VQA_NAMES = ["VQA/options/fast-SAMA-test.yml", "options/fast-SAMA-test.yml", "fast-SAMA-test.yml"]


def _chdir(monkeypatch, tmp_path, place):
    monkeypatch.chdir(tmp_path if place is None else os.path.join(REPO, place))


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("name", IQA_NAMES)
def test_iqa_option_file_found_from_any_working_directory(monkeypatch, tmp_path, place, name):
    _chdir(monkeypatch, tmp_path, place)
    assert load_iqa_options(name, train=True)["_options_path"] == IQA_FILE


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("name", VQA_NAMES)
def test_vqa_option_file_found_from_any_working_directory(monkeypatch, tmp_path, place, name):
    _chdir(monkeypatch, tmp_path, place)
    assert load_vqa_options(name, "test")["_options_path"] == VQA_FILE


def test_the_working_directory_comes_first(monkeypatch, tmp_path):
    """A file of the same name in the working directory wins over the repository's (a user's edited copy)."""
    own = tmp_path / "options" / "fast-sama-iqa.yml"
    own.parent.mkdir()
    own.write_text(open(IQA_FILE).read().replace("num_epochs:", "num_epochs: 3\n# was:", 1))
    monkeypatch.chdir(tmp_path)
    opt = load_iqa_options("options/fast-sama-iqa.yml", train=True)
    assert opt["_options_path"] == str(own) and opt["num_epochs"] == 3
    assert load_iqa_options("IQA/options/fast-sama-iqa.yml", train=True)["_options_path"] == IQA_FILE


def test_a_missing_file_names_every_folder_looked_in(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OptionError) as e:
        load_vqa_options("options/nope.yml", "test")
    msg = str(e.value)
    assert "'options/nope.yml' not found" in msg and "\n" not in msg
    for folder in (str(tmp_path), os.path.join(REPO, "VQA"), os.path.join(REPO, "VQA", "options"), REPO):
        assert folder in msg.split("looked in: ")[1].rstrip(")").split(", ")
