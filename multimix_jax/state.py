"""The train state and its optimizer: Adam with the StepLR schedule, the EMA copy of the
parameters, the initial state of a config placed on the mesh (docs/multimix.md, Training),
and the shapes of the parameters an inference restore fills.
"""

from __future__ import annotations

import math
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from multimix_jax.models import MultiMix, build_model, init_params
from multimix_jax.sharding import replicated


@flax.struct.dataclass
class TrainState:
    """Everything a resumed run needs besides the data iterator."""

    step: jnp.ndarray
    params: Any
    opt_state: Any
    ema_params: Any  # equals params when optim.ema_decay == 0
    rng: jnp.ndarray  # raw uint32 key; per-step keys are fold_in(rng, step)


def inference_params(state: "TrainState", config):
    """The parameters evaluation and prediction use: the EMA average when the run keeps one."""
    return state.ema_params if config.optim.ema_decay > 0 else state.params


def total_steps(train_config, steps_per_epoch: int) -> int:
    """``train.num_steps``, or ``train.num_epochs`` epochs of ``steps_per_epoch`` steps."""
    if train_config.num_steps > 0:
        return int(train_config.num_steps)
    return max(1, int(math.ceil(train_config.num_epochs * steps_per_epoch)))


def learning_rate_schedule(optim_config, steps_per_epoch: int) -> optax.Schedule:
    """StepLR: lr x decay_factor every ``lr_decay_steps`` steps when set (the same for every
    variant of a config), else every ``lr_decay_epochs`` epochs of ``steps_per_epoch``
    (``input_pipeline.steps_per_epoch``: a single-task variant's epoch is another set's);
    neither set (<= 0): constant."""
    if optim_config.lr_decay_steps > 0:
        transition = int(optim_config.lr_decay_steps)
    elif optim_config.lr_decay_epochs > 0:
        transition = max(1, int(round(optim_config.lr_decay_epochs * steps_per_epoch)))
    else:
        return optax.constant_schedule(optim_config.learning_rate)
    return optax.exponential_decay(init_value=optim_config.learning_rate,
                                   transition_steps=transition,
                                   decay_rate=optim_config.lr_decay_factor, staircase=True)


def make_optimizer(optim_config, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Adam (default betas, no weight decay) on the combined loss."""
    return optax.adam(schedule, b1=optim_config.b1, b2=optim_config.b2)


def initial_model(config) -> tuple[MultiMix, Any, jax.Array]:
    """(model, its initial parameters, the training rng) of ``config.seed``: the parameters
    exist before any data is read, so a fine-tune's source can be checked against them."""
    model = build_model(config.model)
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    return model, init_params(model, init_rng, config.data.image_size), train_rng


def create_train_state(config, mesh: Mesh, steps_per_epoch: int, params,
                       rng: jax.Array) -> tuple[optax.Schedule, optax.GradientTransformation,
                                                TrainState]:
    """(learning-rate schedule, optimizer, step-0 state on ``params`` placed on the mesh)."""
    schedule = learning_rate_schedule(config.optim, steps_per_epoch)
    tx = make_optimizer(config.optim, schedule)
    params = jax.tree_util.tree_map(jnp.copy, params)  # own buffers: the state is donated
    ema_params = jax.tree_util.tree_map(jnp.copy, params)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                       ema_params=ema_params, rng=rng)
    return schedule, tx, jax.device_put(state, replicated(mesh))


def setup(config, mesh: Mesh, steps_per_epoch: int):
    """(model, optimizer, initial state placed on the mesh) for a config: both steps of the
    training loop's start in one call (tests, benchmarks)."""
    model, params, rng = initial_model(config)
    _, tx, state = create_train_state(config, mesh, steps_per_epoch, params, rng)
    return model, tx, state


def abstract_params(config, mesh: Mesh | None = None) -> tuple[MultiMix, Any]:
    """(model, ShapeDtypeStructs of its parameters, replicated over ``mesh`` when given): the
    tree an inference restore fills, shaped without running the init, an optimizer or an EMA
    copy."""
    model = build_model(config.model)
    shapes = jax.eval_shape(lambda: init_params(model, jax.random.PRNGKey(0),
                                                config.data.image_size))
    if mesh is None:
        return model, shapes
    placed = replicated(mesh)
    return model, jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=placed), shapes)
