"""Read back what a run logged, from the files each logger left: TensorBoard event files, a W&B
offline run, MLflow's local file store. Each reader returns ``{name: {step: value}}``.

The W&B reader parses the offline run file itself (wandb no longer ships a Python reader): it is
a LevelDB-style log of protobuf ``Record`` messages, in 32 KiB blocks after a 7-byte header.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

Logged = dict[str, dict[int, float]]


def tensorboard_scalars(folder: Path) -> Logged:
    """Every scalar in the TensorBoard event files under ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: Logged = {}
    files = sorted(folder.rglob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event file under {folder}"
    for file in files:
        acc = EventAccumulator(str(file), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            for event in acc.Scalars(tag):
                out.setdefault(tag, {})[int(event.step)] = float(event.value)
    return out


_BLOCK = 32768
_HEADER = 7  # ":W&B", magic 0xBEE1, version
_RECORD_HEADER = 7  # crc32 (4), length (2), type (1)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _wandb_records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    records, pending, pos = [], b"", _HEADER
    while pos + _RECORD_HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _RECORD_HEADER:  # the rest of a block too small for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + _RECORD_HEADER])
        pos += _RECORD_HEADER
        chunk, pos = data[pos : pos + length], pos + length
        if kind == 0 and length == 0:
            pos += _BLOCK - pos % _BLOCK if pos % _BLOCK else 0
            continue
        if kind == _FULL:
            records.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            records.append(pending + chunk)
            pending = b""
    return records


def wandb_history(folder: Path) -> Logged:
    """Every history value of the W&B offline run(s) under ``folder``, by the run's ``_step``
    or, when the logger sent one, ``trainer/global_step`` / ``train/global_step``."""
    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(folder.rglob("offline-run-*/run-*.wandb"))
    assert files, f"no W&B offline run under {folder}"
    out: Logged = {}
    for file in files:
        for raw in _wandb_records(file):
            record = pb.Record()
            record.ParseFromString(raw)
            if record.WhichOneof("record_type") != "history":
                continue
            row = {
                item.key or "/".join(item.nested_key): json.loads(item.value_json)
                for item in record.history.item
            }
            step = row.get("trainer/global_step", row.get("train/global_step", row.get("_step")))
            for key, value in row.items():
                if isinstance(value, (int, float)):
                    out.setdefault(key, {})[int(step)] = float(value)
    return out


def mlflow_metrics(folder: Path) -> Logged:
    """Every metric of the MLflow file-store runs under ``folder``: each metric is a text file
    ``<run>/metrics/<name>`` of ``timestamp value step`` lines."""
    out: Logged = {}
    dirs = sorted(folder.rglob("metrics"))
    assert dirs, f"no MLflow run under {folder}"
    for metrics in dirs:
        for file in metrics.rglob("*"):
            if not file.is_file():
                continue
            name = str(file.relative_to(metrics))
            for line in file.read_text().splitlines():
                _, value, step = line.split()
                out.setdefault(name, {})[int(step)] = float(value)
    return out
