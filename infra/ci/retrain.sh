#!/usr/bin/env bash
# Retrain from CI: start a run of the manual-retrain deployment, watch it, and exit non-zero unless it
# finished in state Completed.
#
#   PREFECT_API_URL=https://prefect.example/api infra/ci/retrain.sh params.train.epochs=30 params.force=true
#
# Arguments:
#   key=value          passed through as `--param key=value` (value parsed as JSON, else a string)
#   a.b.c=value        dotted keys are folded into one JSON parameter: `--param a={"b":{"c":value}}`;
#                      train-and-release has one parameter, `params` (RunParams), so e.g.
#                      params.train.epochs=30 params.train.hidden_sizes='[128,64]' params.channel=staging
#   --anything ...     passed to `prefect deployment run` as is (e.g. --tag ci; write --opt=value when the
#                      value contains "=")
# Environment:
#   PREFECT_API_URL    required: the Prefect server (without it the CLI would silently use a throwaway one)
#   RETRAIN_DEPLOYMENT default train-and-release/manual-retrain
#   RETRAIN_TIMEOUT    seconds to watch before giving up (default 7200; the run itself is not cancelled)
#   PREFECT            the prefect command (default: prefect on PATH, else the repo's .venv/bin/prefect)
#   PYTHON             a python for argument handling (default: the repo's .venv/bin/python, else python3)
#   RETRAIN_DEBUG=1    print the arguments given to prefect
# Exit status: 0 the run Completed; 1 it ended in any other state (Failed, Crashed, Cancelled, ...) or
# could not be created (e.g. a parameter rejected by the deployment's schema); 2 usage/configuration.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
deployment="${RETRAIN_DEPLOYMENT:-train-and-release/manual-retrain}"
timeout="${RETRAIN_TIMEOUT:-7200}"

die() { echo "retrain.sh: $*" >&2; exit 2; }

if [ -z "${PREFECT_API_URL:-}" ]; then
  die "PREFECT_API_URL is not set: export the Prefect server's API address, e.g. PREFECT_API_URL=http://127.0.0.1:4200/api (for the local stack: . \$TANDEM_HOME/stack.env)"
fi
export PREFECT_API_URL

pick() {  # first command that exists
  for c in "$@"; do if command -v "$c" >/dev/null 2>&1 || [ -x "$c" ]; then echo "$c"; return 0; fi; done
  return 1
}
PREFECT="${PREFECT:-$(pick prefect "$repo/.venv/bin/prefect")}" || die "no prefect command (set PREFECT=...)"
PYTHON="${PYTHON:-$(pick "$repo/.venv/bin/python" python3 python)}" || die "no python (set PYTHON=...)"

# key=value / dotted keys -> --param arguments (one per top-level key); other arguments pass through
log="$(mktemp)"; argfile="$(mktemp)"
trap 'rm -f "$log" "$argfile"' EXIT
"$PYTHON" - "$@" >"$argfile" <<'PY'
import json, sys
params, passthrough = {}, []
for arg in sys.argv[1:]:
    key, eq, raw = arg.partition("=")
    if arg.startswith("-") or not eq or not key:
        passthrough.append(arg)
        continue
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    *path, last = key.split(".")
    node = params
    for part in path:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            sys.exit(f"retrain.sh: {key} conflicts with an earlier non-object value")
    node[last] = value
out = []
for k, v in params.items():
    out += ["--param", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
sys.stdout.write("\0".join(out + passthrough) + ("\0" if out or passthrough else ""))
PY
[ $? -eq 0 ] || die "could not parse arguments"
mapfile -d '' args <"$argfile"
[ -z "${RETRAIN_DEBUG:-}" ] || printf "arg: %s\n" "${args[@]}"

# the server must answer, otherwise say so (instead of a stack trace from the CLI)
"$PYTHON" - <<'PY' || die "no Prefect server answers at $PREFECT_API_URL"
import os, sys, urllib.request
try:
    urllib.request.urlopen(os.environ["PREFECT_API_URL"].rstrip("/") + "/health", timeout=10)
except Exception as e:
    print(f"retrain.sh: {e}", file=sys.stderr); sys.exit(1)
PY

echo "retrain.sh: running $deployment ${args[*]:-} against $PREFECT_API_URL"
"$PREFECT" deployment run "$deployment" "${args[@]}" --watch --watch-timeout "$timeout" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

# Prefect 3.8.8 already exits 1 unless the run Completed; check the final state ourselves anyway so a
# CLI change can never turn a failed retrain into a green CI job.
run_id="$(grep -Eo 'UUID: [0-9a-f-]{36}' "$log" | head -1 | cut -d' ' -f2 || true)"
if [ -z "$run_id" ]; then
  echo "retrain.sh: no flow run was created (exit $rc)" >&2
  exit 1
fi
state="$("$PYTHON" - "$run_id" <<'PY'
import json, os, sys, urllib.request
with urllib.request.urlopen(f"{os.environ['PREFECT_API_URL'].rstrip('/')}/flow_runs/{sys.argv[1]}", timeout=30) as r:
    print(((json.load(r).get("state") or {}).get("type")) or "UNKNOWN")
PY
)" || state="UNKNOWN"
if [ "$rc" -eq 0 ] && [ "$state" = "COMPLETED" ]; then
  echo "retrain.sh: flow run $run_id completed"
  exit 0
fi
echo "retrain.sh: flow run $run_id ended in state $state (prefect exit $rc)" >&2
exit 1
