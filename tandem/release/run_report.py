"""The markdown report a person reads for one train-and-release run (in the Prefect UI)."""

from __future__ import annotations


def _metric(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "—"


def run_report(outcome: dict) -> str:
    lines = [f"# Tandem run: {outcome.get('status', 'unknown')}", ""]
    lines += [f"Batches: **{outcome['new_batches']} new**, {outcome['accepted']} accepted, "
              f"{outcome['quarantined']} quarantined.", ""]
    if outcome.get("quarantine_reasons"):
        lines += ["| quarantined batch | reason |", "|---|---|"]
        lines += [f"| `{b}` | {r.replace('|', '/')} |" for b, r in outcome["quarantine_reasons"].items()]
        lines.append("")
    status = outcome.get("status")
    if status in ("published", "blocked"):
        gates = outcome.get("gates", {})
        comparison = gates.get("comparison", {})
        prod = comparison.get("production_version")
        lines += [f"## Candidate (registered version {outcome.get('version')})", "",
                  f"| metric | candidate | production{f' v{prod}' if prod else ''} |", "|---|---|---|"]
        measured = [k.removeprefix("candidate_") for k in comparison if k.startswith("candidate_")]
        for key in measured or ("accuracy", "macro_f1", "gain"):  # the kind's metrics, as the gate scored them
            lines.append(f"| {key} | {_metric(comparison.get(f'candidate_{key}'))} | "
                         f"{_metric(comparison.get(f'production_{key}'))} |")
        lines += ["", "| gate | passed | detail |", "|---|---|---|"]
        parity, update = gates.get("parity", {}), gates.get("update", {})
        rules = gates.get("rules", {})
        lines.append(f"| rules | {rules.get('passed')} | {'; '.join(rules.get('violations', [])) or 'Core ML update rules hold'} |")
        lines.append(f"| parity | {parity.get('passed')} | max abs diff {parity.get('max_abs_diff', float('nan')):.2e} "
                     f"on {parity.get('rows')} rows, labels identical: {parity.get('labels_identical')} |")
        score = next((k.removesuffix("_before") for k in update if k.endswith("_before")), "accuracy")
        lines.append(f"| update | {update.get('passed')} | {score} {_metric(update.get(f'{score}_before'))} → "
                     f"{_metric(update.get(f'{score}_after'))}, loss fell for {update.get('loss_fell_for')}/"
                     f"{update.get('users')} users |")
        floor = (f"beats the baseline ({comparison['baseline_is']}: {_metric(comparison['baseline'])}; floor "
                 f"{_metric(comparison['floor'])}, {comparison['floor_set_by']})") if "floor" in comparison else ""
        lines.append(f"| comparison | {comparison.get('passed')} | "
                     f"{'; '.join(comparison.get('failures', [])) or ', '.join(filter(None, [floor, 'not worse than production']))} |")
        lines.append("")
    if status == "published":
        lines += [f"## Release `{outcome['release']}` → channel **{outcome['channel']}**", ""]
        lines += ["| file | sha256 | bytes |", "|---|---|---|"]
        lines += [f"| {n} | `{m['sha256'][:16]}…` | {m['size']} |" for n, m in outcome.get("files", {}).items()]
    elif status == "blocked":
        lines += ["## Not published", ""] + [f"- {r}" for r in outcome.get("reasons", [])]
    elif status == "up-to-date":
        lines += [f"Nothing new since snapshot `{outcome['snapshot']}`: nothing trained, nothing published."]
    elif status == "no-data":
        lines += ["No accepted data yet: nothing trained, nothing published."]
    if outcome.get("mlflow_url"):
        lines += ["", f"MLflow run: {outcome['mlflow_url']}"]
    return "\n".join(lines) + "\n"
