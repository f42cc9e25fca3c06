from __future__ import annotations

import platform
import sys
from importlib import metadata

import pytest

from engine.manifest import _PACKAGES, _platform, package_versions


def test_package_versions_read_from_dist_info_names_equal_what_importlib_metadata_parses():
    expected = {}
    for name in _PACKAGES:
        try:
            expected[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            expected[name] = None
    assert package_versions() == expected
    assert expected["mtpa-engine"] is not None and expected["polars"] is not None  # the check compared real versions


@pytest.mark.skipif(sys.platform != "linux", reason="platform.platform()'s form differs by OS; the manifest matches it on Linux")
def test_the_manifest_platform_equals_platform_platform_without_its_subprocess(monkeypatch):
    expected = platform.platform()

    def no_subprocess(*args, **kwargs):
        raise AssertionError("_platform started a subprocess")

    monkeypatch.setattr(platform, "_uname_cache", None)  # a fresh uname(): its processor not yet looked up
    monkeypatch.setattr(platform, "_platform_cache", {})
    monkeypatch.setattr("subprocess.check_output", no_subprocess)
    assert _platform() == expected
