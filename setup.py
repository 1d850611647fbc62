"""Build script for Nimbus: the Python package plus the C++ kernels (pybind11, built through CMake).

``pip install .`` and ``pip install -e .`` both run :class:`CMakeBuild`, which configures
``CMakeLists.txt`` and places the compiled ``nimbus._kernels`` module where Python finds it.
No prebuilt binaries are fetched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    """An extension whose sources are built by CMake rather than by setuptools."""

    def __init__(self, name: str, source_dir: Path) -> None:
        super().__init__(name, sources=[])
        self.source_dir = str(source_dir)


class CMakeBuild(build_ext):
    """Configure and build a :class:`CMakeExtension` with CMake, in Release mode."""

    def build_extension(self, ext: Extension) -> None:
        if not isinstance(ext, CMakeExtension):
            super().build_extension(ext)
            return
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_temp = Path(self.build_temp).resolve() / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)
        cfg = "Debug" if self.debug else "Release"
        configure = [
            "cmake",
            ext.source_dir,
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_BUILD_TYPE={cfg}",
        ]
        jobs = str(os.cpu_count() or 2)
        subprocess.run(configure, cwd=build_temp, check=True)
        subprocess.run(["cmake", "--build", ".", "--config", cfg, "-j", jobs], cwd=build_temp, check=True)


README = (ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else ""

TRAIN = [
    "torch==2.13.0",
    "segmentation-models-pytorch>=0.3",
    "onnx>=1.15",
    "onnxscript>=0.1",
    "matplotlib>=3.7",
    "scipy>=1.10",  # nimbus.composite (training data on real backgrounds)
]
#: ``nimbus labels --s2cloudless``: the cloud detector and what it pulls (sentinelhub, lightgbm, opencv, scipy...).
LABELS = ["s2cloudless>=1.7"]
#: ``nimbus label``: the labelling web tool.
LABEL = ["flask>=2.3"]
#: ``nimbus.segment_xarray``: DataArrays in, DataArrays out, lazily on dask.
XARRAY = ["xarray>=2023.1", "rioxarray>=0.15", "dask[array]>=2024.1"]
TEST = [
    *LABELS,
    *LABEL,
    "pytest>=7",
    "pytest-xdist>=3",
    "playwright>=1.40",
    "opencv-python-headless>=4.8",
    "monai>=1.3",
    "hypothesis>=6",
    "pystac[validation]>=1.8",  # jsonschema: STAC Items are validated against the core schema in the tests
    "pystac-client>=0.7",
    "dask[distributed]>=2024.1",
    "xarray>=2023.1",
    "rioxarray>=0.15",
    "odc-stac>=0.3",
]

setup(
    name="nimbus-s2",
    version="0.1.0",
    description="Semantic segmentation of Sentinel-2 images into cloud, ground, snow and water",
    long_description=README,
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["nimbus", "nimbus.*"]) + ["nimbus.export"],
    package_dir={"nimbus.export": "export"},
    package_data={
        "nimbus.labeler": ["static/*"],
        "nimbus.export": ["*.onnx", "*.md", "*.json"],
    },
    ext_modules=[CMakeExtension("nimbus._kernels", ROOT)],
    cmdclass={"build_ext": CMakeBuild},
    install_requires=[
        "numpy>=1.24",
        "onnxruntime>=1.17",
        "rasterio>=1.3",
        "numba>=0.58",
        "fire>=0.5",
        "tqdm>=4.60",
        "pillow>=9",
    ],
    extras_require={
        "train": TRAIN,
        "gpu": ["onnxruntime-gpu>=1.17"],
        "stac": ["pystac>=1.8", "pystac-client>=0.7"],  # nimbus search on STAC APIs; + planetary-computer to sign PC hrefs
        "dask": ["dask[distributed]>=2024.1"],  # --scheduler / --workers: batches on Dask distributed
        "labels": LABELS,  # nimbus labels --s2cloudless
        "label": LABEL,  # nimbus label (the labelling web tool)
        "xarray": XARRAY,  # nimbus.segment_xarray
        "test": TEST,
    },
    entry_points={"console_scripts": ["nimbus=nimbus.cli:main"]},
    zip_safe=False,
)
