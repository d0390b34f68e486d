"""SlowFast-TRT: SlowFast video networks (Feichtenhofer et al., ICCV 2019) from encoded video to FP16/INT8 engines.

One import namespace; its subpackages are layers in the order the data flows, each importing only
those below it (docs/design.md): common -> model -> data -> dali_pipelines -> engines -> export ->
training -> benchmarks -> cli.
"""

__version__ = "0.2.0"
