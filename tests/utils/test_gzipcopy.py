"""copy_gzip_anonymous: the data unchanged, a header without name or time, and no second compression;
write_nifti_anonymous: niworkflows' rewrite of an image at level 1."""

from __future__ import annotations

import gzip
import zlib

import nibabel as nb
import numpy as np
import pytest
from niworkflows.utils.images import unsafe_write_nifti_header_and_data

from smriflow.interfaces.bids import copy_unchanged
from smriflow.utils.gzipcopy import copy_gzip_anonymous, deflate_offset, write_nifti_anonymous

DATA = np.random.default_rng(0).integers(0, 50, 300_000, dtype=np.int16).tobytes()


def _named(path, data=DATA, level=1, mtime=1_700_000_000):
    """A gzip file as nibabel writes one: with the file's name and a time stamp in its header."""
    with open(path, "wb") as raw, gzip.GzipFile(path.name, "wb", level, raw, mtime) as out:
        out.write(data)
    return path


def test_the_copy_holds_the_same_data_without_name_or_time(tmp_path):
    src = _named(tmp_path / "sub-01_T1w.nii.gz")
    assert b"sub-01_T1w.nii" in src.read_bytes()[:40]  # the name is in the source's header
    assert copy_gzip_anonymous(src, tmp_path / "out.nii.gz")
    copied = (tmp_path / "out.nii.gz").read_bytes()
    assert gzip.decompress(copied) == DATA
    assert copied[:4] == b"\x1f\x8b\x08\x00" and copied[4:8] == b"\0\0\0\0"  # no flags, time 0
    assert copied[8] == src.read_bytes()[8] and copied[9] == 255  # level byte kept, OS unknown
    # the compressed stream is the source's (not compressed again): the copy is the source less its name
    assert copied[10:] == src.read_bytes()[deflate_offset(src.read_bytes()) :]
    assert len(copied) == len(src.read_bytes()) - len(b"sub-01_T1w.nii\0")


def test_two_sources_differing_only_in_name_and_time_give_the_same_bytes(tmp_path):
    a = _named(tmp_path / "a.nii.gz", mtime=1)
    b = _named(tmp_path / "bbbbbb.nii.gz", mtime=2)
    copy_gzip_anonymous(a, tmp_path / "a_out.gz")
    copy_gzip_anonymous(b, tmp_path / "b_out.gz")
    assert (tmp_path / "a_out.gz").read_bytes() == (tmp_path / "b_out.gz").read_bytes()


@pytest.mark.parametrize("kind", ["two members", "not gzip", "truncated"])
def test_anything_but_one_member_is_left_to_the_caller(tmp_path, kind):
    src = tmp_path / "in.gz"
    if kind == "two members":
        src.write_bytes(gzip.compress(b"first") + gzip.compress(b"second"))
    elif kind == "not gzip":
        src.write_bytes(b"plain text, not gzip")
    else:
        src.write_bytes(gzip.compress(DATA)[:-20])
    assert not copy_gzip_anonymous(src, tmp_path / "out.gz")
    assert not (tmp_path / "out.gz").exists()


def test_the_sink_copy_falls_back_to_niworkflows_for_two_members(tmp_path):
    src = tmp_path / "in.nii.gz"
    src.write_bytes(gzip.compress(b"first") + gzip.compress(b"second"))
    copy_unchanged(str(src), str(tmp_path / "out.nii.gz"))
    assert gzip.decompress((tmp_path / "out.nii.gz").read_bytes()) == b"firstsecond"
    (tmp_path / "plain.txt").write_text("x")
    copy_unchanged(str(tmp_path / "plain.txt"), str(tmp_path / "plain_copy.txt"))
    assert (tmp_path / "plain_copy.txt").read_text() == "x"


def test_deflate_offset_reads_every_optional_field():
    body = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS).compress(b"x")
    header = b"\x1f\x8b\x08" + bytes([4 | 8 | 16 | 2]) + b"\0" * 6
    header += (3).to_bytes(2, "little") + b"abc" + b"name\0" + b"comment\0" + b"\0\0"
    assert deflate_offset(header + body) == len(header)
    assert deflate_offset(b"\x1f\x8b\x07" + b"\0" * 20) is None  # not deflate


def test_the_rewrite_is_niworkflows_own_at_level_1(tmp_path):
    image = nb.Nifti1Image(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) % 7, np.diag([2, 2, 2, 1]))
    header = image.header.copy()
    header.set_qform(image.affine, 2)
    ours, theirs = tmp_path / "ours.nii.gz", tmp_path / "theirs.nii.gz"
    write_nifti_anonymous(ours, header, image.dataobj)
    unsafe_write_nifti_header_and_data(theirs, header, image.dataobj)
    assert gzip.decompress(ours.read_bytes()) == gzip.decompress(theirs.read_bytes())
    assert ours.read_bytes()[:8] == theirs.read_bytes()[:8]  # anonymous header: no name, time 0
    assert (ours.read_bytes()[8], theirs.read_bytes()[8]) == (4, 2)  # extra flags: fastest vs best
    plain = tmp_path / "plain.nii"
    write_nifti_anonymous(plain, header, image.dataobj)
    assert plain.read_bytes() == gzip.decompress(ours.read_bytes())
