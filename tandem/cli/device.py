"""``tandem device``: run, personalize and check a published .mlmodel as the phone would.

A developer tool, so it may read parquet (pyarrow); the runtime modules themselves do not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import typer

from tandem import task as tasks
from tandem.contract import features
from tandem.device import knn
from tandem.device.rules import RULES, check
from tandem.device.runtime import BadInput, DeviceModel, ModelError, row_list
from tandem.device.update import UpdateDiverged, update
from tandem.settings import Settings

app = typer.Typer(help="Device runtime: predict, personalize and check updatable Core ML models.",
                  no_args_is_help=True)


def feature_names(model: DeviceModel) -> list[str]:
    """The model's input features in order: what its metadata names (`tandem.feature_names`, written at
    export), else the served task's (TANDEM_TASK; a model exported before it named them)."""
    named = model.spec.description.metadata.userDefined.get("tandem.feature_names")
    if named:
        return named.split(",")
    return list(features.of(tasks.resolve(Settings().task)).feature_names)


def _read(data: Path, model: DeviceModel) -> tuple[np.ndarray, np.ndarray | None]:
    """Feature matrix (in the model's feature order) and labels (None if the file has no label column).
    Feature columns must be stored as numbers: text is refused, never coerced."""
    names = feature_names(model)
    table = pq.read_table(data)
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise typer.BadParameter(f"{data}: missing feature columns {missing[:5]}{'...' if len(missing) > 5 else ''}")
    not_numbers = [n for n in names
                   if not (pa.types.is_floating(table.schema.field(n).type) or pa.types.is_integer(table.schema.field(n).type))]
    if not_numbers:
        raise typer.BadParameter(f"{data}: {len(not_numbers)} feature columns are not stored as numbers "
                                 f"({', '.join(not_numbers[:3])}{', ...' if len(not_numbers) > 3 else ''}: "
                                 f"{table.schema.field(not_numbers[0]).type}); write them as float64, as the shared-batch format does")
    X = np.column_stack([table.column(n).to_numpy(zero_copy_only=False) for n in names]).astype(np.float64)
    X = X.reshape(table.num_rows, len(names))
    if model.input_dim is not None and model.input_dim != X.shape[1]:
        raise typer.BadParameter(f"model expects {model.input_dim} features, data has {X.shape[1]}")
    y = None
    if "label" in table.column_names:  # class names, or a regressor's numeric targets
        y = np.asarray(table.column("label").to_pylist(), dtype=object if model.is_classifier else np.float64)
    return X, y


def _usable(model: DeviceModel, X, y, data: Path):
    """The rows a model may see, with a one-line count of the rest on stderr (NaN/inf features or
    targets, and finite features so large that the network overflows on them)."""
    non_finite, overflow = model.usable_rows(X)
    if y is not None and not model.is_classifier:
        non_finite |= ~np.isfinite(y.astype(np.float64))
    bad = non_finite | overflow
    if bad.any():
        typer.echo(f"skipped {int(bad.sum())} of {len(X)} rows of {data}: {int(non_finite.sum())} with NaN or infinite "
                   f"values, {int(overflow.sum())} that overflow the model (rows {row_list(bad)})", err=True)
    keep = ~bad
    return X[keep], (y[keep] if y is not None else None), int(bad.sum())


def _fail(message: str, code: int = 1):
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _accuracy(model: DeviceModel, X, y) -> float:
    return float(np.mean(model.predict(X).astype(str) == y.astype(str)))


def _mae(model: DeviceModel, X, y) -> float:
    return float(np.mean(np.abs(model.predict(X) - y)))


def _predict_regressor(m: DeviceModel, X, y, out: Path | None, show: int) -> None:
    pred = m.predict(X)
    typer.echo(f"{'row':>5}  {'predicted':>12}  {'target' if y is not None else ''}")
    for i in range(min(show, len(X))):
        typer.echo(f"{i:>5}  {pred[i]:12.6g}  {f'{y[i]:.6g}' if y is not None else ''}")
    if y is not None:
        err = pred - y
        typer.echo(f"mae: {np.mean(np.abs(err)):.4f}  rmse: {np.sqrt(np.mean(err ** 2)):.4f} on {len(X)} rows")  # usable rows only
    if out is not None:
        rows = [f"{p:.9g}" + (f",{t:.9g}" if y is not None else "") for p, t in zip(pred, y if y is not None else pred)]
        out.write_text("\n".join(["predicted" + (",target" if y is not None else ""), *rows]) + "\n")
        typer.echo(f"wrote {out}")


@app.command()
def predict(model: Path = typer.Argument(..., exists=True, help=".mlmodel file"),
            data: Path = typer.Argument(..., exists=True, help="parquet in the shared-batch format"),
            out: Path | None = typer.Option(None, "--out", help="write predictions as CSV"),
            show: int = typer.Option(10, help="rows to print")):
    """Predict every row; print accuracy (a regressor: MAE and RMSE) when the data has labels."""
    m = DeviceModel.load(model)
    X, y = _read(data, m)
    X, y, skipped = _usable(m, X, y, data)
    if not len(X):
        _fail(f"{data} has no usable rows ({f'all {skipped} skipped' if skipped else 'it is empty'}): nothing to predict")
    if not m.is_classifier:
        _predict_regressor(m, X, y, out, show)
        return
    probs = m.predict_proba(X)
    labels = np.asarray(m.class_labels, dtype=object)
    pred = np.asarray(m.predict(X), dtype=object)  # the model's own label (a k-NN breaks vote ties its way)
    typer.echo(f"{'row':>5}  {'predicted':<20} {'p':>6}  {'label' if y is not None else ''}")
    for i in range(min(show, len(X))):
        typer.echo(f"{i:>5}  {str(pred[i]):<20} {probs[i].max():6.3f}  {y[i] if y is not None else ''}")
    if y is not None:
        typer.echo(f"accuracy: {np.mean(pred.astype(str) == y.astype(str)):.4f} on {len(X)} rows"
                   + (f" ({skipped} skipped)" if skipped else ""))
    if out is not None:
        header = ["predicted", *[f"p_{c}" for c in labels]] + (["label"] if y is not None else [])
        lines = [",".join(header)]
        for i in range(len(X)):
            row = [str(pred[i]), *[f"{p:.6g}" for p in probs[i]]] + ([str(y[i])] if y is not None else [])
            lines.append(",".join(row))
        out.write_text("\n".join(lines) + "\n")
        typer.echo(f"wrote {out}")


@app.command()
def personalize(model: Path = typer.Argument(..., exists=True, help="base .mlmodel (updatable)"),
                data: Path = typer.Argument(..., exists=True, help="labelled parquet in the shared-batch format"),
                out: Path = typer.Option(..., "--out", help="where to write the personal .mlmodel"),
                epochs: int | None = typer.Option(None, help="override (must be allowed by the model)"),
                learning_rate: float | None = typer.Option(None, help="override (must be allowed by the model)"),
                mini_batch_size: int | None = typer.Option(None, help="override (must be allowed by the model)")):
    """Run the on-device update on DATA and write the personal model (a k-NN personal model: DATA's rows stored)."""
    base = DeviceModel.load(model)
    X, y = _read(data, base)
    if y is None:
        raise typer.BadParameter(f"{data} has no label column")
    X, y, skipped = _usable(base, X, y, data)
    if not len(X):
        _fail(f"{data} has no usable labelled rows ({f'all {skipped} skipped' if skipped else 'it is empty'}): "
              f"nothing to personalize, {out} not written")
    if knn.is_knn(base):
        _personalize_knn(base, X, y, out, given=[epochs, learning_rate, mini_batch_size])
        return
    try:
        result = update(base, X, y, epochs=epochs, learning_rate=learning_rate, mini_batch_size=mini_batch_size)
    except UpdateDiverged as e:
        _fail(f"{e}: {out} not written; lower --learning-rate")
    except BadInput as e:
        _fail(f"{e}; {out} not written")
    except ValueError as e:
        _fail(str(e), 2)
    p = result.params
    typer.echo(f"{p.optimizer} lr={p.learning_rate} batch={p.mini_batch_size} epochs={p.epochs}; "
               f"updating {', '.join(result.updated_layers)}")
    typer.echo(f"loss before: {result.loss_before:.4f}")
    for i, loss in enumerate(result.history, 1):
        typer.echo(f"epoch {i:>3}: loss {loss:.4f}")
    typer.echo(f"loss after: {result.loss_after:.4f}")
    if base.is_classifier:
        typer.echo(f"accuracy before: {_accuracy(base, X, y):.4f}  after: {_accuracy(result.model, X, y):.4f}")
    else:
        typer.echo(f"mae before: {_mae(base, X, y):.4f}  after: {_mae(result.model, X, y):.4f}")
    result.model.save(out)
    typer.echo(f"wrote {out}")


def _personalize_knn(base: DeviceModel, X, y, out: Path, given: list) -> None:
    if any(v is not None for v in given):
        _fail("a k-NN personal model has no epochs, learning rate or mini-batch: its update stores the rows", 2)
    try:
        personal = knn.knn_update(base, X, y)
    except ValueError as e:
        _fail(f"{e}; {out} not written", 2)
    stored = len(knn.stored_labels(personal))
    typer.echo(f"k-NN: stored {len(X)} rows ({stored} in the index)")
    typer.echo(f"accuracy before: {_accuracy(base, X, y):.4f}  after: {_accuracy(personal, X, y):.4f}")
    personal.save(out)
    typer.echo(f"wrote {out}")


@app.command(name="check")
def check_cmd(model: Path = typer.Argument(..., exists=True, help=".mlmodel file")):
    """Check Core ML's rules for updatable models; exit 1 naming the broken rule(s)."""
    try:
        violations = check(DeviceModel.load(model))
    except ModelError as e:  # e.g. no network the rules can look at
        _fail(f"{model}: {e}")
    broken = {v.rule for v in violations}
    for rule, text in RULES.items():
        typer.echo(f"{'FAIL' if rule in broken else 'ok  '}  {rule:<20} {text}")
    for v in violations:
        typer.echo(f"broken rule {v.rule}: {v.message}", err=True)
    if violations:
        raise typer.Exit(1)
