"""DICOM films through multimix_jax/datasets/image_io.py: tests write their own files with
pydicom (little-endian explicit VR) and compare with renderings computed here by hand."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

from multimix_jax import sources
from multimix_jax.datasets import image_io, layouts
from multimix_jax.errors import DataError


def write_dicom(path, pixels: np.ndarray, *, photometric="MONOCHROME2", bits_stored=12,
                **elements):
    """A single-frame grayscale DICOM of ``pixels`` (uint16 stored values) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "DX", "anon"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    for name, value in elements.items():
        setattr(ds, name, value)
    ds.PixelData = np.ascontiguousarray(pixels, np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def film(seed: int = 0, shape=(24, 20), top: int = 4095) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, top + 1, shape).astype(np.uint16)


def test_monochrome1_and_monochrome2_encodings_of_one_film_give_the_same_array(tmp_path):
    values = film()
    m2 = image_io.load_grayscale(write_dicom(tmp_path / "m2.dcm", values))
    m1 = image_io.load_grayscale(write_dicom(tmp_path / "m1.dcm", 4095 - values,
                                             photometric="MONOCHROME1"))
    assert m2.dtype == np.uint8 and m2.shape == values.shape
    np.testing.assert_array_equal(m1, m2)
    # No window in the file: the 0.5-99.5 % window, computed here by hand.
    lo, hi = np.percentile(values.astype(float), [0.5, 99.5])
    expected = np.rint(np.clip((values - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(m2, expected)


def test_a_12_bit_windowed_film_matches_its_8_bit_rendering(tmp_path):
    values = film(1)
    slope, intercept, centre, width = 2.0, -1024.0, 1500.0, 3000.0
    path = write_dicom(tmp_path / "w.dcm", values | np.uint16(0xF000),  # bits above BitsStored
                       RescaleSlope=slope, RescaleIntercept=intercept,
                       WindowCenter=centre, WindowWidth=width)
    hu = values * slope + intercept
    # DICOM PS3.3 C.11.2.1.2 linear window, to 0..255.
    expected = np.clip((hu - (centre - 0.5)) / (width - 1) + 0.5, 0, 1) * 255
    np.testing.assert_array_equal(image_io.load_grayscale(path), np.rint(expected).astype(np.uint8))


def test_padding_pixels_are_black_and_left_out_of_the_window(tmp_path):
    values = film(2, top=1000) + 1000
    values[:, :5] = 0  # the collimator border, padding
    path = write_dicom(tmp_path / "p.dcm", values, PixelPaddingValue=0,
                       photometric="MONOCHROME1")
    out = image_io.load_grayscale(path)
    assert np.all(out[:, :5] == 0)
    inside = values[:, 5:].astype(float)
    lo, hi = np.percentile(inside, [0.5, 99.5])
    expected = 255 * (1 - np.clip((inside - lo) / (hi - lo), 0, 1))
    np.testing.assert_array_equal(out[:, 5:], np.rint(expected).astype(np.uint8))


def test_a_broken_dicom_names_itself(tmp_path):
    good = write_dicom(tmp_path / "good.dcm", film())
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(good.read_bytes()[:-300])  # pixel data cut short
    with pytest.raises(DataError, match=r"broken.dcm: cannot decode the DICOM pixels"):
        image_io.load_grayscale(broken)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a dicom at all")
    with pytest.raises(DataError, match=r"junk.dcm: cannot read the DICOM"):
        image_io.load_grayscale(junk)


def test_a_compressed_film_without_a_decoder_says_what_to_install(tmp_path):
    pytest.importorskip("pydicom")
    try:
        import pylibjpeg  # noqa: F401
        pytest.skip("a JPEG decoder is installed")
    except ImportError:
        pass
    path = write_dicom(tmp_path / "c.dcm", film(top=255), bits_stored=8)
    from pydicom import dcmread
    from pydicom.encaps import encapsulate
    ds = dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated = 8
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])  # any frame: decoding is not reached
    ds.save_as(path)
    with pytest.raises(DataError, match=r"c.dcm: .*pip install 'multimix_jax\[dicom\]'"):
        image_io.load_grayscale(path)


def test_dicoms_found_by_extension_and_preamble_lateral_and_multi_frame_skipped(tmp_path):
    root = tmp_path / "NORMAL"
    write_dicom(root / "frontal.dcm", film(3), ViewPosition="PA")
    write_dicom(root / "no_extension", film(4))  # found by its DICM preamble
    write_dicom(root / "side.dicom", film(5), ViewPosition="LL")
    multi = write_dicom(root / "cine.dcm", np.concatenate([film(6), film(7)]), NumberOfFrames=2)
    from pydicom import dcmread
    ds = dcmread(multi)
    ds.Rows = 24
    ds.save_as(multi)
    report = write_dicom(root / "report.dcm", film(8))
    ds = dcmread(report)
    del ds.PixelData
    ds.save_as(report)
    (tmp_path / "PNEUMONIA").mkdir()
    write_dicom(tmp_path / "PNEUMONIA" / "p.DCM", film(9))
    records, summary = layouts.read_classification_folder(tmp_path)
    assert [r.key for r in records] == ["NORMAL/frontal.dcm", "NORMAL/no_extension",
                                          "PNEUMONIA/p.DCM"]
    assert summary["dicom_lateral_view"] == 1 and summary["dicom_multi_frame"] == 1
    assert summary["dicom_no_pixel_data"] == 1
    source = sources.load_source({"kind": "folder", "path": str(tmp_path)},
                                        "classification", 16)
    assert len(source) == 3 and source[0]["image"].shape == (16, 16)
    with pytest.raises(DataError, match="side.dicom: is not a frontal film"):
        image_io.load_grayscale(root / "side.dicom")
