"""``discovery bench``: throughput of our PPO vs the env-only limit vs Brax's PPO, and vmapped populations.

Writes ``bench.json`` (every timing, ratio, compile time and peak memory,
with the device, versions and command) and ``bench.md`` (the tables). See
:mod:`discovery.workflows.bench` for what each column measures.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from discovery.commands.arguments import add_run_arguments
from discovery.io.outputs import atomic_write_json, atomic_write_text, prepare_run_dir
from discovery.runtime.errors import UserError
from discovery.runtime.progress import status
from discovery.workflows.bench import PARTS, PRESETS, render_markdown, run_bench

EXAMPLE = "discovery bench --preset cpu --out runs/bench_cpu"


def register(subparsers) -> None:
    # What each preset measures; where its numbers were taken (`measured`) is a note for the docs and reports, not for
    # --help.
    presets = "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
    parser = subparsers.add_parser(
        "bench",
        help="benchmark our PPO against the env-only limit and Brax's PPO, and vmapped populations",
        description="Side-by-side throughput in one process; every figure is a median of --repeats timed runs after a "
        f"separate compile. Presets: {presets}. Example: {EXAMPLE}",
    )
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS), help="what to measure (default: cpu)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed repetitions per figure, >= 3 (default: the preset's)"
    )
    parser.add_argument("--envs", default=None, help="only these comma-separated envs of the preset (default: all)")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)} (default: all)"
    )
    add_run_arguments(parser, out_help="output directory (default: runs/bench_<preset>_<time>)", learners=False)
    parser.set_defaults(run=run)


def run(args, extra: list[str]) -> int:
    if extra:
        raise UserError(
            f"unexpected argument(s) {' '.join(extra)}; bench takes --preset, --out, --repeats, --envs, --parts"
        )
    if args.repeats is not None and args.repeats < 3:
        raise UserError(f"--repeats must be >= 3 (each figure is a median of timed repetitions), got {args.repeats}")
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise UserError(f"unknown --parts {', '.join(unknown)}; valid: {', '.join(PARTS)}")
    preset = PRESETS[args.preset]
    envs_filter = None
    if args.envs:
        envs_filter = tuple(e.strip() for e in args.envs.split(",") if e.strip())
        known = {c.env for c in preset.cases} | {p.env for p in preset.populations}
        missing = sorted(set(envs_filter) - known)
        if missing:
            raise UserError(
                f"--envs {', '.join(missing)} not in preset {preset.name}; it has: {', '.join(sorted(known))}"
            )
    out = prepare_run_dir(
        Path(args.out or f"runs/bench_{preset.name}_{datetime.now():%Y%m%d-%H%M%S}"), overwrite=args.overwrite
    )

    status(f"bench preset [bold]{preset.name}[/bold] ({preset.description}) → {out}")
    doc = run_bench(preset, args.repeats, envs_filter, parts)
    atomic_write_json(out / "bench.json", doc)
    markdown = render_markdown(doc)
    atomic_write_text(out / "bench.md", markdown)
    status(markdown)
    status(f"wrote {out}/bench.json and bench.md")
    return 0
