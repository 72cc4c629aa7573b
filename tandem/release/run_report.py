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
        for key in ("accuracy", "macro_f1", "gain"):
            lines.append(f"| {key} | {_metric(comparison.get(f'candidate_{key}'))} | "
                         f"{_metric(comparison.get(f'production_{key}'))} |")
        lines += ["", "| gate | passed | detail |", "|---|---|---|"]
        parity, update = gates.get("parity", {}), gates.get("update", {})
        rules = gates.get("rules", {})
        lines.append(f"| rules | {rules.get('passed')} | {'; '.join(rules.get('violations', [])) or 'Core ML update rules hold'} |")
        lines.append(f"| parity | {parity.get('passed')} | max abs diff {parity.get('max_abs_diff', float('nan')):.2e} "
                     f"on {parity.get('rows')} rows, labels identical: {parity.get('labels_identical')} |")
        lines.append(f"| update | {update.get('passed')} | accuracy {_metric(update.get('accuracy_before'))} → "
                     f"{_metric(update.get('accuracy_after'))}, loss fell for {update.get('loss_fell_for')}/"
                     f"{update.get('users')} users |")
        lines.append(f"| comparison | {comparison.get('passed')} | {'; '.join(comparison.get('failures', [])) or 'not worse than production'} |")
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
