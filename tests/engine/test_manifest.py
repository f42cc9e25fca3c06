from __future__ import annotations

from importlib import metadata

from engine.manifest import _PACKAGES, package_versions


def test_package_versions_read_from_dist_info_names_equal_what_importlib_metadata_parses():
    expected = {}
    for name in _PACKAGES:
        try:
            expected[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            expected[name] = None
    assert package_versions() == expected
    assert expected["mtpa-engine"] is not None and expected["polars"] is not None  # the check compared real versions
