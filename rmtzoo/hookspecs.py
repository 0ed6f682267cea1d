"""Hook specifications: the whole contract between rmtzoo and its plugins.

Built-in components register through these same hooks (``rmtzoo._builtins``), then installed
distributions (entry-point group ``rmtzoo``), then plugin directories. A plugin implements any subset::

    from rmtzoo import hookimpl, BackboneSpec

    @hookimpl
    def rmtzoo_register_backbones(register):
        register(BackboneSpec(name="my_backbone", ...))

Registration hooks are called once per :class:`rmtzoo.Registry`, in plugin load order; each receives a
*registrar* callable ``register(spec, *, override=False)``. They must not build models, touch the network
or import heavy optional packages (defer those to ``spec.build``). Observer hooks are called by the trainer
and the benchmark runner; their return values are ignored and they must not mutate what they receive.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("rmtzoo")


@hookspec
def rmtzoo_register_backbones(register):
    """Register backbones: networks that map input embeddings and an attention mask to hidden states.

    :param register: call ``register(BackboneSpec(...), override=False)`` once per backbone. A name
        already registered by another plugin raises :class:`rmtzoo.DuplicateComponentError` naming both
        providers, unless ``override=True`` is passed by the later-loaded plugin.

    Called once while a :class:`rmtzoo.Registry` is built. Must not construct modules.
    """


@hookspec
def rmtzoo_register_memory_placements(register):
    """Register memory placements: where memory tokens sit around a segment and how the mask treats them.

    :param register: ``register(PlacementSpec(...), override=False)``.

    Called once while a :class:`rmtzoo.Registry` is built. Must not construct modules.
    """


@hookspec
def rmtzoo_register_recurrences(register):
    """Register recurrence modes: what is carried between segments (memory, cache, both, nothing).

    :param register: ``register(RecurrenceSpec(...), override=False)``.

    Called once while a :class:`rmtzoo.Registry` is built.
    """


@hookspec
def rmtzoo_register_attention_backends(register):
    """Register attention kernels that compute masked, biased softmax attention.

    :param register: ``register(AttentionSpec(...), override=False)``. A spec's ``available()`` must
        be cheap and must not raise: it returns ``None`` when the kernel can run here, else the reason.

    Called once while a :class:`rmtzoo.Registry` is built. Must not import the kernel's package at
    module import time.
    """


@hookspec
def rmtzoo_register_tasks(register):
    """Register tasks: data generators or loaders with their loss and metrics.

    :param register: ``register(TaskSpec(...), override=False)``.

    Called once while a :class:`rmtzoo.Registry` is built. Must not generate or download data.
    """


@hookspec
def rmtzoo_register_benchmarks(register):
    """Register benchmark specs: grids of configs that regenerate a comparison from the paper.

    :param register: ``register(BenchmarkSpec(...), override=False)``.

    Called once while a :class:`rmtzoo.Registry` is built. Must not run anything.
    """


@hookspec
def rmtzoo_run_started(run):
    """Observe the start of a training or evaluation run.

    :param run: a :class:`rmtzoo.RunInfo` (run directory, config, config hash).

    Called once, before the first step. Return value ignored; must not mutate ``run``.
    """


@hookspec
def rmtzoo_run_resumed(run, step):
    """Observe a run resuming from its checkpoint at ``step``, instead of ``rmtzoo_run_started``.

    :param run: the :class:`rmtzoo.RunInfo` of the run.
    :param step: the checkpoint's step; metrics logged for later steps before the resume are superseded
        (the steps are trained again), so a logger should drop or mark them.

    Called once, before the first resumed step. Return value ignored.
    """


@hookspec
def rmtzoo_metrics_logged(run, step, metrics):
    """Observe metrics as they are logged.

    :param run: the :class:`rmtzoo.RunInfo` of the run.
    :param step: the optimizer step the metrics belong to (int).
    :param metrics: a ``dict[str, float]``; keys are prefixed by split, e.g. ``"train/loss"``.

    Called whenever the trainer logs. Return value ignored; must not mutate ``metrics``.
    """


@hookspec
def rmtzoo_run_finished(run, status, metrics):
    """Observe the end of a run.

    :param run: the :class:`rmtzoo.RunInfo` of the run.
    :param status: ``"completed"``, ``"failed"`` or ``"interrupted"``.
    :param metrics: the test metrics of a completed run (``test/...`` and ``step``, as in ``results.json``);
        empty when the run failed or was interrupted.

    Called once, also when the run fails. Return value ignored.
    """
