"""Device runtime (numpy, from the .mlmodel) against torch on the same model and rows: forward pass
and one on-device update epoch. Reports time ratios (runtime / torch) and peak memory."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import torch

from tandem import task as tasks
from tandem.contract import features
from tandem.device.runtime import DeviceModel
from tandem.device.update import update
from tandem.fleet import users as fleet
from tandem.release.params import RunParams
from tandem.training import model, pretrain


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    task = tasks.resolve("har")
    users = fleet.synthetic_fleet(task, 8, windows_per_class=40, seed=0)
    X = np.concatenate([u.features for u in users])
    labels = np.concatenate([u.labels for u in users])
    y = features.of(task).label_indices(labels)
    params = RunParams.for_task(task, {"train": {"epochs": 5}})
    result = model.train(X, y, params.train, n_classes=len(features.of(task).classes))
    device = DeviceModel.load(pretrain.convert(task, result, params, {}))

    forward_torch = best_of(lambda: model.predict_proba(result.model, X))
    forward_device = best_of(lambda: device.predict_proba(X))

    def torch_epoch():
        head = torch.nn.Linear(result.model.head.in_features, result.model.head.out_features)
        opt = torch.optim.SGD(head.parameters(), lr=1e-3)
        with torch.no_grad():
            z = torch.as_tensor((X - result.model.mean.numpy()) / result.model.std.numpy(), dtype=torch.float32)
            for layer in result.model.body:
                z = torch.relu(layer(z))
        for start in range(0, len(z), 8):
            loss = torch.nn.functional.cross_entropy(head(z[start:start + 8]), torch.as_tensor(y[start:start + 8]))
            opt.zero_grad()
            loss.backward()
            opt.step()

    update_torch = best_of(torch_epoch, 3)
    update_device = best_of(lambda: update(device, X, labels, epochs=1, shuffle=False), 3)

    tracemalloc.start()
    device.predict_proba(X)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"rows: {len(X)}")
    print(f"forward  runtime/torch time ratio: {forward_device / forward_torch:6.2f}  ({forward_device * 1e3:.1f} ms vs {forward_torch * 1e3:.1f} ms)")
    print(f"update   runtime/torch time ratio: {update_device / update_torch:6.2f}  (one epoch, mini-batch 8, head only)")
    print(f"forward  peak memory per row: {peak / len(X) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
