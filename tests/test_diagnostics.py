"""diagnostics.jsonl: one line per leakage.csv row with every diagnostic the attack returned; DP columns from the
reply's public metadata; the dataset reaches the scorer (baseline, re-identification), never the attack."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from fedleak import protocol
from fedleak.attacks import ATTACKS, Attack, register_attack
from fedleak.config.schema import DataConfig
from fedleak.data import load_images
from fedleak.drivers.scenarios import parse_scenario
from fedleak.report import RunWriter
from fedleak.report.tables import read_leakage
from fedleak.runtime.local import LocalExecutor
from fedleak.server.leakage import LeakageTap
from fedleak.types import ModelSpec, Observation, Reconstruction

pytestmark = pytest.mark.usefixtures("flower_task_identity")

SPEC = ModelSpec("lenet", in_channels=1, image_size=28, num_classes=10)
DATA = load_images(DataConfig(dataset="mnist", split="test"))
DIAGNOSTICS = {"mixture": True, "layers": [{"rank": 12, "method": "lstsq"}], "copa_index": 0.5,
               "label_rule": "row sums", "residual": float("nan"), "weights": torch.ones(3)}

if "test_diagnosed" not in ATTACKS:

    @register_attack("test_diagnosed")
    class DiagnosedAttack(Attack):
        """Answers with a blank batch and a full set of diagnostics; fails on odd clients."""

        def reconstruct(self, observation: Observation) -> Reconstruction:
            if observation.metadata["client"] % 2:
                return Reconstruction.failed("odd client", kernel="fixed")
            return Reconstruction(torch.zeros(observation.batch_size, *SPEC_SHAPE), diagnostics=dict(DIAGNOSTICS))

SPEC_SHAPE = (1, 28, 28)


def _reply(client: int, indices: list[int], public: dict) -> Message:
    weights = SPEC.build().state_dict()
    content = RecordDict({
        # Non-zero: a zero update fails before any attack runs (attacks/update_check.py).
        protocol.UPDATE: ArrayRecord(torch_state_dict={k: torch.full_like(v, 0.01) for k, v in weights.items()}),
        protocol.METRICS: MetricRecord({protocol.NUM_EXAMPLES: len(indices), protocol.TRAIN_LOSS: 1.0}),
        protocol.PUBLIC: ConfigRecord({"client": client, "round": 1, "update_kind": "gradient",
                                       "batch_size": len(indices), "local_steps": 1, "lr": 0.1, **public}),
        protocol.AUDIT: ConfigRecord({protocol.INDICES: indices}),
    })
    return Message(content=content, dst_node_id=client + 1, message_type=MessageType.TRAIN)


def test_one_diagnostics_line_per_row_with_the_rows_key_and_dp_columns(tmp_path):
    scenario = parse_scenario({"data": {"dataset": "mnist", "split": "test"}, "clients": {"count": 3},
                               "training": {"update": "gradient", "lr": 0.1},
                               "attacks": [{"name": "test_diagnosed"}]})
    tap = LeakageTap(scenario, SPEC, DATA.get, LocalExecutor(device="cpu"), writer=RunWriter(tmp_path),
                     dataset=DATA)
    sent = ArrayRecord(torch_state_dict=SPEC.build().state_dict())
    dp = {"dp_epsilon": 3.25, "dp_delta": 1e-5, "dp_unit": "update"}
    replies = [_reply(0, [0, 1], dp), _reply(1, [2], {}), _reply(2, [3, 4, 5], {"dp_epsilon": 1.5})]
    tap.on_train_replies(1, sent, replies)
    tap.drain()

    rows = read_leakage(tmp_path / "leakage.csv").rows
    lines = [json.loads(line) for line in (tmp_path / "diagnostics.jsonl").read_text().splitlines()]
    assert len(lines) == len(rows) == 3
    by_client = {line["client"]: line for line in lines}
    for row in rows:
        line = by_client[row["client"]]
        assert (line["round"], line["attack"], line["status"]) == (row["round"], row["attack"], row["status"])
        assert line["timestamp"] == pytest.approx(row["timestamp"])
    assert by_client[0]["diagnostics"] == {"mixture": True, "layers": [{"rank": 12, "method": "lstsq"}],
                                           "copa_index": 0.5, "label_rule": "row sums", "residual": "nan",
                                           "weights": [1.0, 1.0, 1.0]}
    assert by_client[1]["diagnostics"] == {"kernel": "fixed"} and by_client[1]["status"] == "failed"
    rows = {row["client"]: row for row in rows}
    assert (rows[0]["dp_epsilon"], rows[0]["dp_delta"], rows[0]["dp_unit"]) == (3.25, 1e-5, "update")
    assert rows[1]["dp_epsilon"] is None and rows[1]["dp_unit"] is None
    assert rows[2]["dp_epsilon"] == 1.5 and rows[2]["dp_delta"] is None
    # A blank answer: scored against the dataset, at or below the mean image's PSNR, and names nobody.
    assert rows[0]["reidentified"] == 0.0 and math.isfinite(rows[0]["baseline_psnr"])
    assert rows[0]["psnr"] < rows[0]["baseline_psnr"]


def test_json_safe_writes_what_json_cannot_hold(tmp_path):
    from fedleak.report.writer import json_safe

    value = json_safe({"big": torch.zeros(20, 20), "inf": math.inf, "np": np.float32(0.5), "set": {1},
                       "obj": object})
    assert value["big"] == "array of shape (20, 20)" and value["inf"] == "inf" and value["np"] == 0.5
    assert value["set"] == [1] and value["obj"].startswith("<class")
    json.dumps(value, allow_nan=False)
