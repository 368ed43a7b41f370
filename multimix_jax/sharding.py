"""Data parallelism over a 1-D device mesh: the mesh, the batch and replicated shardings, and
placing host batches on the devices (docs/multimix.md, Training loop and input pipeline).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """1-D data-parallel mesh over all (or the given) devices."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def shard_batch(batch, mesh: Mesh):
    """This process's rows of a batch -> global jax Arrays split along the batch axis (the
    processes' rows in process order, as ``input_pipeline.train_dataset`` deals them)."""
    sharding = data_sharding(mesh)
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def shard_global_batch(batch, mesh: Mesh):
    """A batch every process holds in full (evaluation) -> global jax Arrays split along the
    batch axis; each process places only the rows of its own devices."""
    sharding = data_sharding(mesh)

    def place(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree_util.tree_map(place, batch)
