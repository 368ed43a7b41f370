"""multimix_jax: MultiMix (Haque et al., ISBI 2021) in JAX/Flax.

Sparingly supervised multitask learning of pneumonia classification and lung
segmentation from chest X-rays. The method as implemented: ``docs/multimix.md``.
"""

__version__ = "0.1.0"
