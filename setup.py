"""SlowFast-TRT: SlowFast video networks from encoded video to FP16/INT8 engines."""
from setuptools import find_packages, setup

PACKAGES = ["common", "cli", "model", "dali_pipelines", "training", "export", "engines", "benchmarks", "serving"]

setup(
    name="slowfast-trt",
    version="0.1.0",
    description="SlowFast networks (Feichtenhofer et al., ICCV 2019): DALI pipelines, AMP training, ONNX/TensorRT export, benchmarks",
    python_requires=">=3.10",
    packages=find_packages(include=[p for name in PACKAGES for p in (name, name + ".*")]),
    install_requires=[
        # A range, so that GPU users get a CUDA build; scripts/env.sh installs the CPU build where no GPU is present.
        "torch>=2.1,<3",
        "click>=8.0",
        "numpy>=1.23",
        "tqdm>=4.60",
        "safetensors>=0.4",
        "matplotlib>=3.7",  # PNG plots of `slowfast report` (Agg backend, no display needed)
    ],
    extras_require={
        "data": ["av>=12", "nvidia-dali-cuda120>=1.40", "pillow>=9"],
        "export": ["onnx>=1.15", "onnxruntime>=1.17", "onnxconverter-common>=1.14"],
        "test": ["pytest>=7"],
    },
    entry_points={"console_scripts": ["slowfast=cli.main:main"]},
)
