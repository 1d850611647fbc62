"""Shared fixtures: the real Sentinel-2 data folder and small synthetic products."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REALDATA = Path(os.environ.get("NIMBUS_REALDATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata")).resolve()


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The folder of real Sentinel-2 pieces (``../shared/realdata``); skips when it is absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real data folder not found at {REALDATA} (set NIMBUS_REALDATA)")
    return REALDATA


@pytest.fixture(scope="session")
def synthetic_l1c(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic L1C product (SAFE folder, baseline 05.10, 240x240 at 10 m)."""
    from nimbus.synthetic import make_product

    return make_product(tmp_path_factory.mktemp("syn_l1c"), size=240, level="L1C", baseline="05.10", seed=1)


@pytest.fixture(scope="session")
def synthetic_l2a_zip(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic L2A product (zipped SAFE, baseline 02.12, 240x240 at 10 m)."""
    from nimbus.synthetic import make_product

    return make_product(tmp_path_factory.mktemp("syn_l2a"), size=240, level="L2A", baseline="02.12", zipped=True, seed=2)
