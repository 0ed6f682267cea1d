"""The ``rmtzoo`` command. User errors print one line on stderr and exit with status 2."""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from importlib import resources
from pathlib import Path

from rmtzoo._errors import RmtzooError

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


def _number(kind, low, high, *, open_low=False):
    """An argparse type: ``kind`` within [low, high] (``(low, high]`` with ``open_low``), else one line."""
    where = f"{'(' if open_low else '['}{low}, {high}]" if high is not None else f">= {low}"
    name = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name} {where}, got {text!r}") from None
        if not (value > low if open_low else value >= low) or (high is not None and value > high) or value != value:
            raise argparse.ArgumentTypeError(f"expected {name} {where}, got {text!r}")
        return value

    return parse


def _plugin_options(parser: argparse.ArgumentParser, *, sub: bool) -> None:
    """The plugin switches, accepted before and after the command (``rmtzoo plugins --block X``)."""
    default = (lambda value: argparse.SUPPRESS) if sub else (lambda value: value)
    parser.add_argument("--plugins-dir", action="append", default=default([]), metavar="DIR",
                        help="load plugins from the .py files and packages in DIR (repeatable; also RMTZOO_PLUGINS_DIR)")
    parser.add_argument("--no-entry-points", action="store_true", default=default(False),
                        help="do not load installed plugins (also RMTZOO_DISABLE_PLUGIN_AUTOLOAD=1)")
    parser.add_argument("--block", action="append", default=default([]), metavar="NAME",
                        help="do not load the plugin NAME (repeatable; also RMTZOO_BLOCK_PLUGINS=a,b)")


def _runtime_options(parser: argparse.ArgumentParser) -> None:
    """Where a command runs: the same two options on train, eval, generate and demo."""
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help="auto (CUDA, else Apple MPS, else CPU; the default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--threads", type=_number(int, 1, None), default=None, metavar="N",
                        help="CPU threads for PyTorch (default: OMP_NUM_THREADS, else the CPUs this process may "
                        "use that other processes do not keep busy)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rmtzoo", description="Recurrent Memory Transformer components, composed from configs.")
    _plugin_options(parser, sub=False)
    common = argparse.ArgumentParser(add_help=False)
    _plugin_options(common, sub=True)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add = sub.add_parser
    sub.add_parser = lambda name, **kw: _add(name, parents=[common], **kw)

    p = sub.add_parser("list", help="list registered components")
    p.add_argument("axis", nargs="?", help="backbones, memory_placements, recurrences, attention_backends, tasks, benchmarks")
    p.add_argument("pattern", nargs="?", default="*", help="glob on component names, e.g. 'transformer*'")

    sub.add_parser("plugins", help="list loaded plugins with version, source and hooks")
    sub.add_parser("schema", help="print the JSON Schema of the experiment config over every registered component")

    p = sub.add_parser("config", help="validate a config and print it as JSON (its content hash on stderr)")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4")

    p = sub.add_parser("train", help="train a config (resumes from the run folder's latest checkpoint)")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4")
    p.add_argument("--run-dir", help="run folder (default: runs/TASK-HASH)")
    p.add_argument("--no-resume", action="store_true", help="start over even if the run folder has checkpoints")
    p.add_argument("--continue", dest="continue_run", action="store_true",
                   help="train a finished run further (to a higher train.steps, or past train.stop_at)")
    _runtime_options(p)

    p = sub.add_parser("eval", help="evaluate a checkpoint (a run folder or a checkpoint folder)")
    p.add_argument("checkpoint")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--which", default="best", choices=["best", "latest"], help="which checkpoint of a run folder")
    p.add_argument("--max-batches", type=int, default=None,
                   help="evaluate at most N batches (default: the config's eval.max_batches; 0: the whole split)")
    _runtime_options(p)

    p = sub.add_parser("generate", help="stream tokens from a checkpoint, carrying memory across segments")
    p.add_argument("checkpoint")
    p.add_argument("--prompt", action="append", help="text, encoded with the task's vocabulary (text tasks); "
                   "repeat for a batch, one output line each")
    p.add_argument("--ids", action="append", help="comma-separated token ids instead of --prompt (repeatable)")
    p.add_argument("--max-tokens", type=_number(int, 1, None), default=100, help="new tokens per prompt (>= 1)")
    p.add_argument("--temperature", type=_number(float, 0, None), default=0.0, help="0: greedy (>= 0)")
    p.add_argument("--top-k", type=_number(int, 1, None), default=None, help="sample from the K most likely tokens")
    p.add_argument("--top-p", type=_number(float, 0, 1, open_low=True), default=None,
                   help="sample from the smallest set of tokens whose probability reaches P, in (0, 1]")
    p.add_argument("--stop", metavar="IDS", help="comma-separated token ids that end a prompt's generation "
                   "('eos': the task's end-of-text token)")
    p.add_argument("--seed", type=int, default=0)
    _runtime_options(p)

    for name, what, target in (("export", "write a run's model as a pretrained folder (Hugging Face layout)", "DIR"),
                               ("push", "upload a run's model to the Hugging Face Hub (huggingface_hub)", "REPO_ID")):
        p = sub.add_parser(name, help=what)
        p.add_argument("source", help="a run, checkpoint or pretrained folder")
        p.add_argument("target", metavar=target)
        p.add_argument("--which", default="best", choices=["best", "latest"], help="which checkpoint of a run folder")
        if name == "push":
            p.add_argument("--private", action="store_true", help="create the repository private")

    p = sub.add_parser("demo", help="train a small RMT on an in-memory copy task (embedded default config)")
    p.add_argument("config", nargs="?", help="a config file (default: the embedded demo config)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=100")
    _runtime_options(p)

    p = sub.add_parser("bench", help="run benchmark grids and report them against the paper (rmtzoo bench run --help)")
    bench = p.add_subparsers(dest="bench_command", required=True, parser_class=_Parser)
    bench.add_parser("list", parents=[common], help="list registered benchmarks with their presets and cell counts")
    for name, what in (("run", "train every cell x seed without a result (resumes)"), ("report", "write markdown and figures"),
                       ("summary", "write <reports>/<preset>/README.md: a row per claim of the paper, how to regenerate")):
        b = bench.add_parser(name, parents=[common], help=what)
        b.add_argument("names", nargs="*", metavar="NAME", help="benchmarks (rmtzoo bench list)")
        b.add_argument("--all", action="store_true", help="every registered benchmark")
        b.add_argument("--preset", default="smoke", help="paper, small or smoke (default: smoke)")
        b.add_argument("--results", default="results", metavar="DIR", help="results folder (default: results)")
        b.add_argument("--backbone", metavar="NAME", help="swap every cell's backbone for NAME, keeping the "
                       "fields both backbones have (vocab_size, d_model, n_layer, ...) and NAME's defaults otherwise")
        if name == "run":
            b.add_argument("--filter", metavar="EXPR", help="only cells whose labels match, e.g. model=RMT,segments=3")
            b.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds 0..N-1 per cell (default 1)")
            b.add_argument("--workers", type=int, default=1, metavar="N", help="cells in parallel (spawned processes)")
            b.add_argument("--shard", metavar="I/N", help="run only the I-th of every N cells (sorted by hash)")
            b.add_argument("--executor", default="processes", choices=["processes", "slurm", "submitit-local"],
                           help="processes: this machine (--workers); slurm: one SLURM job per cell through "
                           "submitit; submitit-local: the same jobs as local subprocesses")
            b.add_argument("--cells-per-job", type=_number(int, 1, None), default=1, metavar="N",
                           help="cells one submitted job trains, one after another (default 1)")
            b.add_argument("--slurm-partition", metavar="NAME", help="SLURM partition (default: the cluster's)")
            b.add_argument("--slurm-time", type=_number(int, 1, None), default=240, metavar="MIN",
                           help="time limit per job in minutes (default 240)")
            b.add_argument("--slurm-gpus", type=_number(int, 0, None), default=0, metavar="N", help="GPUs per job")
            b.add_argument("--slurm-cpus", type=_number(int, 1, None), default=4, metavar="N",
                           help="CPUs per job, also its thread count (default 4)")
        else:
            b.add_argument("--reports", default="reports", metavar="DIR", help="reports folder (default: reports)")
            if name == "summary":
                b.add_argument("--seeds", type=int, default=2, metavar="N", help="seeds in the regeneration commands")
            b.add_argument("--reference", metavar="CSV", help="paper numbers (default: the table packaged with rmtzoo-benchmarks)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except RmtzooError as exc:
        print(f"rmtzoo: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:  # a full disk, a read-only folder: one line, as for a bad input
        print(f"rmtzoo: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("rmtzoo: interrupted", file=sys.stderr)
        return 130


def _registry(args):
    from rmtzoo._registry import Registry

    return Registry(
        entry_points=False if args.no_entry_points else None,
        plugins_dirs=args.plugins_dir,
        block=args.block,
    )


def _cmd_list(args) -> int:
    from rmtzoo._registry import AXIS_ALIASES, HOOK_OF_AXIS, canonical_axis

    registry = _registry(args)
    axis, pattern = args.axis, args.pattern
    as_pattern = axis is not None and axis not in HOOK_OF_AXIS and axis not in AXIS_ALIASES and args.pattern == "*"
    if as_pattern:
        axis, pattern = None, axis  # `rmtzoo list 'transformer*'`: a pattern over every axis
    axes = [canonical_axis(axis)] if axis else list(HOOK_OF_AXIS)
    matched = {name: [s for s in registry.specs(name) if fnmatch.fnmatch(s.name, pattern)] for name in axes}
    if as_pattern and not any(matched.values()):
        canonical_axis(args.axis)  # matches no component either: report it as an unknown axis
    for name in axes:
        specs = matched[name]
        if not specs and axis is None:
            continue
        print(f"{name}:")
        for spec in specs:
            print(f"  {spec.name:<24} {spec.summary}  [{registry.provider(name, spec.name)}]")
        if not specs:
            print("  (none)")
    return 0


def _cmd_plugins(args) -> int:
    registry = _registry(args)
    infos = registry.plugins()
    width = max((len(i.name) for i in infos), default=0) + 2
    for info in infos:
        print(f"{info.name:<{width}} {info.version:<10} {info.source:<12} {info.location}")
        print(f"{'':<{width}} hooks: {', '.join(info.hooks) or '-'}")
    sys.stdout.flush()
    registry.check()  # loaded is not working: a registration hook that raises is reported (exit 2)
    return 0


def _cmd_schema(args) -> int:
    from rmtzoo._config import config_json_schema

    print(json.dumps(config_json_schema(_registry(args)), indent=2))
    return 0


def _cmd_config(args) -> int:
    from rmtzoo._config import load_config

    config = load_config(args.config, args.overrides, registry=_registry(args))
    print(json.dumps(config.model_dump(mode="json"), indent=2))  # stdout stays JSON: `| python -m json.tool`
    print(f"content hash: {config.content_hash()}", file=sys.stderr)
    return 0


def _cmd_demo(args) -> int:
    from rmtzoo._config import load_config
    from rmtzoo._demo import run_demo

    overrides = list(args.overrides)
    if args.config and "=" in args.config and not Path(args.config).exists():
        overrides.insert(0, args.config)  # `rmtzoo demo train.steps=100`: overrides of the default
        args.config = None
    source = args.config or resources.files("rmtzoo").joinpath("configs/demo.toml")
    registry = _registry(args)
    config = load_config(str(source), overrides, registry=registry)
    run_demo(config, registry=registry, device=_runtime(args))
    return 0


def _runtime(args):
    """Set the thread count and resolve ``--device`` (a bad device is one line, before any work)."""
    from rmtzoo._runtime import resolve_device, set_threads

    set_threads(args.threads)
    return resolve_device(args.device)


def _cmd_train(args) -> int:
    from rmtzoo._config import load_config
    from rmtzoo.train import train

    registry = _registry(args)
    config = load_config(args.config, args.overrides, registry=registry)
    device = _runtime(args)
    run_dir = args.run_dir or f"runs/{config.task.kind if config.task else 'model'}-{config.content_hash()}"
    print(f"run folder: {run_dir}")
    train(config, run_dir, registry=registry, resume=not args.no_resume, device=str(device),
          continue_run=args.continue_run)
    return 0


def _load_run(args, which, device):
    from rmtzoo._pretrained import load_run
    from rmtzoo.train import find_checkpoint

    folder = find_checkpoint(args.checkpoint, which=which) or find_checkpoint(args.checkpoint)
    if folder is None:
        raise RmtzooError(f"no checkpoint in {args.checkpoint!r} (expected a run folder or a checkpoint folder)")
    loaded = load_run(folder, device=device, registry=_registry(args))
    return folder, loaded.config, loaded.task, loaded.model


def _cmd_export(args) -> int:
    import rmtzoo

    loaded = rmtzoo.load(args.source, which=args.which, registry=_registry(args))
    if args.command == "push":
        info = loaded.push_to_hub(args.target, private=args.private or None)
        print(getattr(info, "commit_url", None) or info)
    else:
        print(loaded.save_pretrained(args.target))
    return 0


def _cmd_eval(args) -> int:
    from rmtzoo.train import make_autocast
    from rmtzoo.train._eval import evaluate_task

    device = _runtime(args)
    folder, config, task, model = _load_run(args, args.which, device)
    max_batches = config.eval.max_batches if args.max_batches is None else (args.max_batches or None)
    if max_batches is not None and max_batches < 0:
        raise RmtzooError(f"--max-batches: expected 0 (whole split) or a positive count, got {args.max_batches}")
    metrics = evaluate_task(model, task, args.split, batch_size=config.eval.batch_size, max_batches=max_batches,
                            autocast=make_autocast(config.train.precision, next(model.parameters()).device))
    print(json.dumps({"checkpoint": str(folder), "split": args.split, "device": str(device), **metrics}, indent=2))
    return 0


def _cmd_generate(args) -> int:
    import torch

    from rmtzoo.train import generate, generate_batch

    if (args.prompt is None) == (args.ids is None):
        raise RmtzooError("generate: give exactly one of --prompt TEXT or --ids 1,2,3 (either may be repeated for a batch)")
    device = _runtime(args)
    _, _, task, model = _load_run(args, "best", device)
    if args.prompt is not None:
        if not hasattr(task, "encode"):
            raise RmtzooError(f"generate: task {task.name!r} has no text vocabulary; use --ids")
        encode = getattr(task, "prompt_ids", task.encode)  # a prompt/answer task lays prompts out as it trained
        prompts = [encode(text) for text in args.prompt]
    else:
        prompts = [_id_list("--ids", text) for text in args.ids]
    stop = []
    for item in (args.stop or "").split(","):
        if item.strip() == "eos":
            if getattr(task, "eos_id", None) is None:
                raise RmtzooError(f"--stop: task {task.name!r} has no end-of-text token; give token ids")
            stop.append(task.eos_id)
        elif item.strip():
            stop += _id_list("--stop", item)
    for ids in (*prompts, stop):
        bad = [i for i in ids if not 0 <= i < model.vocab_size]
        if bad:
            flag = "--stop" if ids is stop else "--ids"
            raise RmtzooError(f"{flag}: token id {bad[0]} is outside the vocabulary [0, {model.vocab_size})")
    options = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "stop_tokens": stop,
               "generator": torch.Generator().manual_seed(args.seed)}
    if len(prompts) > 1:
        for tokens in generate_batch(model, prompts, args.max_tokens, **options):
            sys.stdout.write(_text(task, tokens) + "\n")
        return 0
    shown, tokens = "", []
    for token in generate(model, prompts[0], args.max_tokens, **options):
        tokens.append(token)
        text = _text(task, tokens)
        if hasattr(task, "decode"):  # only the new part; an unfinished UTF-8 character waits for the next token
            text = text.rstrip("\ufffd")
        if text.startswith(shown):
            sys.stdout.write(text[len(shown):])
            sys.stdout.flush()
            shown = text
    sys.stdout.write(_text(task, tokens)[len(shown):] + "\n")
    return 0


def _text(task, tokens) -> str:
    """Generated tokens as the task's text, or as space-separated ids for a task without a vocabulary."""
    return task.decode(tokens) if hasattr(task, "decode") else "".join(f"{t} " for t in tokens)


def _id_list(flag: str, text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RmtzooError(f"{flag}: expected comma-separated integers, got {text!r}") from None


def _cmd_bench(args) -> int:
    from rmtzoo import bench

    registry = _registry(args)
    if args.bench_command == "list":
        for name in registry.names("benchmarks"):
            b = bench._runner.get_benchmark(registry, name)
            counts = ", ".join(f"{p} {len(b.cells(p))}" for p in b.presets)
            print(f"{name:<10} {b.artefact:<5} {registry.get('benchmarks', name).summary}")
            print(f"{'':<16} cells per preset: {counts}  [{registry.provider('benchmarks', name)}]")
        if not registry.names("benchmarks"):
            print("(no benchmarks registered; pip install -e benchmarks)")
        return 0
    names = bench.resolve_names(registry, args.names, args.all)
    if args.bench_command == "run":
        options = {"entry_points": False if args.no_entry_points else None,
                   "plugins_dirs": list(args.plugins_dir), "block": list(args.block)}
        summary = bench.run_benchmark(registry, names, preset=args.preset, seeds=args.seeds, filter_expr=args.filter,
                                      shard=args.shard, workers=args.workers, results_dir=args.results,
                                      registry_options=options, executor=args.executor, backbone=args.backbone,
                                      submitit_options={"cells_per_job": args.cells_per_job,
                                                        "partition": args.slurm_partition, "time_min": args.slurm_time,
                                                        "gpus": args.slurm_gpus, "cpus": args.slurm_cpus})
        print(f"{summary['total']} cells: {summary['done']} run, {summary['skipped']} already done, "
              f"{summary['reused']} reused from another benchmark, {summary['failed']} failed; "
              f"results in {Path(args.results)}")
        if not summary["done"] and not summary["failed"]:
            print("nothing was trained: every cell already had a result")
        for failure in summary["failures"]:
            print(f"failed: {failure['cell']}: {failure['error']}", file=sys.stderr)
        return 1 if summary["failed"] else 0
    kwargs = {"reference": args.reference} if args.reference else {}
    if args.bench_command == "summary":
        from rmtzoo.bench._summary import summary

        print(summary(registry, names, preset=args.preset, results_dir=args.results, reports_dir=args.reports,
                      seeds=args.seeds, **kwargs))
        return 0
    for path in bench.report(registry, names, preset=args.preset, results_dir=args.results,
                             reports_dir=args.reports, backbone=args.backbone, **kwargs):
        print(path)
    return 0


_COMMANDS = {
    "bench": _cmd_bench,
    "list": _cmd_list,
    "plugins": _cmd_plugins,
    "schema": _cmd_schema,
    "config": _cmd_config,
    "demo": _cmd_demo,
    "train": _cmd_train,
    "eval": _cmd_eval,
    "export": _cmd_export,
    "push": _cmd_export,
    "generate": _cmd_generate,
}

if __name__ == "__main__":
    raise SystemExit(main())
