"""``bench.md``: the tables of a ``bench.json`` document."""

from __future__ import annotations

import math


def _fmt(value, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:,.{digits}f}"


def render_markdown(doc: dict) -> str:
    info = doc["environment"]
    versions = ", ".join(
        f"{k} {v}" for k, v in info["versions"].items() if k in ("jax", "jaxlib", "brax", "flax", "optax", "gymnax")
    )
    lines = [
        f"# discovery bench — preset `{doc['preset']}`",
        "",
        f"{doc['description']}. Device: {info['device_kind']} ({info['backend']}); {versions}; python "
        f"{info['python']}.",
        f"Command: `{info['command']}`. Each figure: median of {doc['repeats']} timed repetitions after a compile "
        "and a warm-up.",
        "",
        "## Throughput (env-steps/s) and ratios",
        "",
        "| env | envs × steps × rollouts | env steps | limit | learner | ceiling | ours | brax | ours/brax | paired "
        "/ CPU-time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in doc["cases"]:
        c, r = case["config"], case["ratios"]
        get = lambda name, key, case=case: case.get(name, {}).get(key)  # noqa: E731
        backend = case["env_options"].get("backend")
        lines.append(
            f"| {case['env']}{f' ({backend})' if backend else ''} | {c['num_envs']} × {c['num_steps']} × "
            f"{c['rollouts_per_update']} "
            f"| {case['env_steps']:,} | {_fmt(get('limit', 'env_steps_per_s'))} | "
            f"{_fmt(get('learner', 'env_steps_per_s'))} "
            f"| {_fmt(case.get('ceiling_env_steps_per_s'))} | {_fmt(get('ours', 'env_steps_per_s'))} "
            f"| {_fmt(get('brax', 'env_steps_per_s'))} | {_fmt(r.get('ours_over_brax'), 2)} "
            f"| {_fmt(r.get('ours_over_brax_paired'), 2)} / {_fmt(r.get('ours_over_brax_cpu'), 2)} |"
        )
    lines += [
        "",
        "| env | ours/ceiling | brax/ceiling | ours/limit | brax/limit | compile limit / learner / ours / brax (s) | "
        "peak RSS ours / brax (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in doc["cases"]:
        r = case["ratios"]
        get = lambda name, key, case=case: case.get(name, {}).get(key)  # noqa: E731
        lines.append(
            f"| {case['env']} | {_fmt(r.get('ours_over_ceiling'), 2)} | {_fmt(r.get('brax_over_ceiling'), 2)} "
            f"| {_fmt(r.get('ours_over_limit'), 2)} | {_fmt(r.get('brax_over_limit'), 2)} "
            f"| {' / '.join(_fmt(get(n, 'compile_s'), 1) for n in ('limit', 'learner', 'ours', 'brax'))} "
            f"| {_fmt(get('ours', 'peak_rss_mb'))} / {_fmt(get('brax', 'peak_rss_mb'))} |"
        )
    lines += [
        "",
        "*limit*: the simulator alone (random actions); *learner*: our SGD alone on a fixed batch (no env); "
        "*ceiling*: both back to back, `1 / (1/limit + 1/learner)`: the throughput left if the rollout's policy "
        "passes, GAE and all bookkeeping were free (approximate: the parts are separate programs, so on tiny envs "
        "such as CartPole, whose limit runs on more threads than the same steps inside a learner, ours/ceiling can "
        "exceed 1).",
    ]
    lines += [
        "",
        "*paired*: median over rounds of Brax's epoch time ÷ ours, each of ours timed right after a Brax epoch; "
        "*CPU-time*: Brax's median process CPU seconds ÷ ours (robust to other load on the host).",
    ]
    overheads = [(case["env"], case) for case in doc["cases"] if "ours_progress" in case]
    if overheads:
        lines += [
            "",
            "Progress callback (`jax.debug.callback` every `num_updates // 100` updates, at least 16,384 env steps "
            "apart):",
            "",
        ]
        for env_name, case in overheads:
            lines.append(
                f"- {env_name}: {_fmt(case['ours_progress']['env_steps_per_s'])} env-steps/s with it vs "
                f"{_fmt(case['ours']['env_steps_per_s'])} without: overhead "
                f"{100 * case['ratios']['progress_overhead']:.1f}% "
                f"({case['ours_progress']['callbacks']} callbacks over {doc['repeats'] + 1} runs)"
            )
    for pop in doc["populations"]:
        lines += [
            "",
            f"## Populations: {pop['env']}, {pop['drift']} members (σ {pop['sigma']}), "
            f"{pop['env_steps_per_member']:,} env steps each",
            "",
            "| P | vmapped agent-steps/s | sequential agent-steps/s | vmapped/sequential | compile vmapped (s) | "
            "peak RSS vmapped (MB) |",
            "|---|---|---|---|---|---|",
        ]
        for row in pop["sizes"]:
            note = (
                f" (from {row['sequential']['extrapolated_from']} runs)"
                if "extrapolated_from" in row["sequential"]
                else ""
            )
            lines.append(
                f"| {row['size']} | {_fmt(row['vmapped']['agent_steps_per_s'])} | "
                f"{_fmt(row['sequential']['agent_steps_per_s'])}{note} "
                f"| {_fmt(row['vmapped_over_sequential'], 2)} | {_fmt(row['vmapped']['compile_s'], 1)} | "
                f"{_fmt(row['vmapped']['peak_rss_mb'])} |"
            )
        meta = pop["meta_generation"]
        lines += [
            "",
            f"One meta-generation (P = {meta['size']}, one shared inner key, fitness included): "
            f"{meta['median_s']:.2f} s "
            f"({_fmt(meta['agent_steps_per_s'])} agent-steps/s), compile {meta['compile_s']:.1f} s, peak RSS "
            f"{_fmt(meta['peak_rss_mb'])} MB.",
        ]
    for cores in doc.get("cores", []):
        lines += [
            "",
            f"## One device vs all {cores['devices']}: {cores['env']}",
            "",
            "| run | 1 device env-steps/s | all devices env-steps/s | speed-up | devices | CPU s (1 / all) | "
            "bit-identical |",
            "|---|---|---|---|---|---|---|",
        ]
        for part, label in (
            ("train", f"train, {cores['seeds']} seeds × {cores['train_env_steps']:,} steps"),
            (
                "meta_generation",
                f"meta-generation, {cores['meta_size']} members × {cores['meta_env_steps_per_member']:,} steps",
            ),
        ):
            row = cores[part]
            one, every = row["one_device"], row["all_devices"]
            lines.append(
                f"| {label} | {_fmt(one['env_steps_per_s'])} | {_fmt(every['env_steps_per_s'])} | "
                f"×{_fmt(row['speedup'], 2)} "
                f"| {cores['devices']} | {_fmt(one.get('cpu_median_s'), 2)} / {_fmt(every.get('cpu_median_s'), 2)} "
                f"| {'yes' if row['bit_identical'] else 'NO'} |"
            )
    lines += ["", f"Total wall time {doc['wall_s']:.0f} s; process peak RSS {doc['process_peak_rss_mb']:,.0f} MB.", ""]
    return "\n".join(lines)
