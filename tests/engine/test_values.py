"""How argument checks show the value that was provided."""

from pathlib import Path

from smriflow.engine.values import shown


def test_yaml_spellings_of_null_and_booleans():
    assert (shown(None), shown(True), shown(False), shown(3)) == ("null", "true", "false", "3")


def test_a_long_file_name_is_shown_whole():
    path = "/a/deep/checkout/" + "x" * 120 + "/lh.tsv"
    assert shown(path) == repr(path)
    assert shown(Path(path)) == repr(Path(path))


def test_a_long_list_is_cut_to_80_characters():
    text = shown(list(range(100)))
    assert len(text) == 79 and text.startswith("[0, 1, 2") and text.endswith(" …]")
