"""The ``rmtzoo`` command. User errors print one line on stderr and exit with status 2."""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from importlib import resources

from rmtzoo._errors import RmtzooError

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rmtzoo", description="Recurrent Memory Transformer components, composed from configs.")
    parser.add_argument("--plugins-dir", action="append", default=[], metavar="DIR",
                        help="load plugins from the .py files and packages in DIR (repeatable; also RMTZOO_PLUGINS_DIR)")
    parser.add_argument("--no-entry-points", action="store_true",
                        help="do not load installed plugins (also RMTZOO_DISABLE_PLUGIN_AUTOLOAD=1)")
    parser.add_argument("--block", action="append", default=[], metavar="NAME",
                        help="do not load the plugin NAME (repeatable; also RMTZOO_BLOCK_PLUGINS=a,b)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="list registered components")
    p.add_argument("axis", nargs="?", help="backbones, memory_placements, recurrences, attention_backends, tasks, benchmarks")
    p.add_argument("pattern", nargs="?", default="*", help="glob on component names, e.g. 'transformer*'")

    sub.add_parser("plugins", help="list loaded plugins with version, source and hooks")
    sub.add_parser("schema", help="print the JSON Schema of the experiment config over every registered component")

    p = sub.add_parser("config", help="validate a config and print it with its content hash")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4")

    p = sub.add_parser("demo", help="train a small RMT on an in-memory copy task (embedded default config)")
    p.add_argument("config", nargs="?", help="a config file (default: the embedded demo config)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.steps=100")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except RmtzooError as exc:
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
    if axis is not None and axis not in HOOK_OF_AXIS and axis not in AXIS_ALIASES and args.pattern == "*":
        axis, pattern = None, axis  # `rmtzoo list 'transformer*'`: a pattern over every axis
    axes = [canonical_axis(axis)] if axis else list(HOOK_OF_AXIS)
    for name in axes:
        specs = [s for s in registry.specs(name) if fnmatch.fnmatch(s.name, pattern)]
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
    for info in registry.plugins():
        print(f"{info.name:<22} {info.version:<10} {info.source:<12} {info.location}")
        print(f"{'':<22} hooks: {', '.join(info.hooks) or '-'}")
    return 0


def _cmd_schema(args) -> int:
    from rmtzoo._config import config_json_schema

    print(json.dumps(config_json_schema(_registry(args)), indent=2))
    return 0


def _cmd_config(args) -> int:
    from rmtzoo._config import load_config

    config = load_config(args.config, args.overrides, registry=_registry(args))
    print(json.dumps(config.model_dump(mode="json"), indent=2))
    print(f"# content hash: {config.content_hash()}")
    return 0


def _cmd_demo(args) -> int:
    from rmtzoo._config import load_config
    from rmtzoo._demo import run_demo

    source = args.config or resources.files("rmtzoo").joinpath("configs/demo.toml")
    registry = _registry(args)
    config = load_config(str(source), args.overrides, registry=registry)
    run_demo(config, registry=registry)
    return 0


_COMMANDS = {
    "list": _cmd_list,
    "plugins": _cmd_plugins,
    "schema": _cmd_schema,
    "config": _cmd_config,
    "demo": _cmd_demo,
}

if __name__ == "__main__":
    raise SystemExit(main())
