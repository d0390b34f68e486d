"""SlowFast-TRT: SlowFast video networks from encoded video to FP16/INT8 engines."""
from setuptools import find_packages, setup

setup(
    name="slowfast-trt",
    version="0.2.0",
    description="SlowFast networks (Feichtenhofer et al., ICCV 2019): DALI pipelines, AMP training, ONNX/TensorRT export, benchmarks",
    python_requires=">=3.10",
    packages=find_packages(include=["slowfast_trt", "slowfast_trt.*"]),  # one import namespace, nothing else at the top level
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
        "test": ["pytest>=7", "ruff==0.17.6", "packaging>=21", "mypy>=1.10"],
        # The `bench pipeline` peers that install from the index alone (torchcodec needs a matching torch build and FFmpeg).
        "peers": ["decord>=0.6"],
        # GPU machines only. export/tensorrt.py and engines/trt_engine.py drive TensorRT 10.x and 11.x the same way.
        # NVIDIA's `tensorrt` metapackage brings the CUDA 13 libraries; `tensorrt-cu12` is for a torch built with CUDA 12
        # (scripts/env.sh picks the one matching torch.version.cuda).
        "tensorrt": ["tensorrt>=10,<12"],
        "tensorrt-cu12": ["tensorrt-cu12>=10,<12"],
    },
    entry_points={"console_scripts": ["slowfast=slowfast_trt.cli.main:main"]},
)
