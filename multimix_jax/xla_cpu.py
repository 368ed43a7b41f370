"""XLA:CPU options that the package sets for itself (docs/speed.md, "The CPU path").

XLA reads ``XLA_FLAGS`` once, when JAX's first backend starts, so this module runs at
package import. By default XLA:CPU emits its own loops for convolutions and reductions; with
``--xla_cpu_experimental_ynn_fusion_type=dot,reduce`` it hands dots, convolutions and
reductions to YNNPACK's kernels instead: the same functions, a different summation order.
A flag the user already put in ``XLA_FLAGS`` wins; ``MULTIMIX_XLA_CPU_DEFAULTS=0`` sets none.
"""

from __future__ import annotations

import os
import platform

CPU_DEFAULTS = {"xla_cpu_experimental_ynn_fusion_type": "dot,reduce"}
OPT_OUT = "MULTIMIX_XLA_CPU_DEFAULTS"
# YNNPACK has kernels for these processors; elsewhere XLA's own emitters stay.
SUPPORTED_MACHINES = ("x86_64", "amd64", "aarch64", "arm64")


def flags_with_defaults(xla_flags: str, machine: str) -> str:
    """``xla_flags`` with each of ``CPU_DEFAULTS`` appended unless already set there."""
    if machine.lower() not in SUPPORTED_MACHINES:
        return xla_flags
    present = {part.lstrip("-").split("=", 1)[0] for part in xla_flags.split()}
    extra = [f"--{name}={value}" for name, value in CPU_DEFAULTS.items() if name not in present]
    return " ".join([xla_flags, *extra]).strip()


def apply_defaults() -> None:
    """Add the package's XLA:CPU defaults to ``os.environ['XLA_FLAGS']`` (before JAX starts
    a backend; later it has no effect)."""
    if os.environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return
    os.environ["XLA_FLAGS"] = flags_with_defaults(os.environ.get("XLA_FLAGS", ""),
                                                  platform.machine())
