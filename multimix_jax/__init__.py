"""multimix_jax: MultiMix (Haque et al., ISBI 2021) in JAX/Flax.

Sparingly supervised multitask learning of pneumonia classification and lung
segmentation from chest X-rays. The method as implemented: ``docs/multimix.md``.
"""

from multimix_jax import xla_cpu as _xla_cpu

_xla_cpu.apply_defaults()  # before any JAX backend starts: XLA reads its flags only then

__version__ = "0.1.0"
