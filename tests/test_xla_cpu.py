"""The package's XLA:CPU defaults (multimix_jax/xla_cpu.py)."""

import os
import subprocess
import sys

from multimix_jax import xla_cpu


def test_defaults_are_added_to_the_users_flags():
    flags = xla_cpu.flags_with_defaults("--xla_force_host_platform_device_count=8", "x86_64")
    assert flags.split() == ["--xla_force_host_platform_device_count=8",
                             "--xla_cpu_experimental_ynn_fusion_type=dot,reduce"]


def test_a_flag_the_user_set_wins():
    mine = "--xla_cpu_experimental_ynn_fusion_type=dot"
    assert xla_cpu.flags_with_defaults(mine, "x86_64") == mine


def test_no_defaults_on_a_processor_without_the_kernels():
    assert xla_cpu.flags_with_defaults("", "riscv64") == ""


def test_import_sets_them_and_the_opt_out_does_not():
    code = "import os, multimix_jax; print(os.environ.get('XLA_FLAGS', ''))"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert "xla_cpu_experimental_ynn_fusion_type=dot,reduce" in out or \
        xla_cpu.flags_with_defaults("", os.uname().machine) == ""
    env[xla_cpu.OPT_OUT] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == ""
