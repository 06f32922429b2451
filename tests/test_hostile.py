"""Hostile input: each case is one thing a careful adversary (or an unlucky user) did to fedleak, and what must hold:
one line naming the file and field, exit 2, nothing written outside the run folder, nothing mixed or lost.

The run folder as a fence (names, symbolic links), one run per folder (claims, --force), and bad values stopped at
validation. The slow cases (signals, dead clients) live in tests/test_signals.py; listening sockets in
tests/test_loopback.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fedleak.config.schema import Scenario
from fedleak.drivers.cli.main import main
from fedleak.errors import UserError
from fedleak.report import RunWriter
from fedleak.run_claim import CLAIM_FILE, claim, release_if_unused

ROOT = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((ROOT / "scenarios" / "smoke.yaml").read_text())


def one_error_line(capsys, command: str) -> str:
    """The single stderr line of a refused command (and no traceback)."""
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fedleak {command}: error: "), err
    return lines[0]


def write_scenario(folder: Path, **changes) -> Path:
    path = folder / "s.yaml"
    path.write_text(yaml.safe_dump({**SMOKE, **changes}))
    return path


# --- names that become paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../escape", "/tmp/fedleak-escape", "a/b", "..", ".hidden", "", "x" * 101])
def test_a_scenario_name_cannot_leave_the_runs_folder(tmp_path, capsys, monkeypatch, name) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_scenario(tmp_path, name=name)
    assert main(["simulate", str(path)]) == 2
    line = one_error_line(capsys, "simulate")
    assert "name:" in line and "names a folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]  # no runs/, nothing written anywhere


def test_arm_names_use_the_same_rule() -> None:
    base = {**SMOKE, "arms": [{"name": "../x", "defense": {"kind": "none"}}]}
    with pytest.raises(ValueError, match="names a folder"):
        Scenario.model_validate(base)


# --- symbolic links in a run folder -----------------------------------------------------------------------------


def _run_folder(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    writer = RunWriter(run)
    writer.write_scenario(Scenario.model_validate(SMOKE))
    writer.append_round({"round": 1, "loss": 1.0, "accuracy": 0.5, "seconds": 1.0})
    return run


@pytest.mark.parametrize("link", ["report.html", "figures", "images"])
def test_report_refuses_a_link_that_leads_out_of_the_run_folder(tmp_path, capsys, link) -> None:
    run = _run_folder(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "precious.txt"
    victim.write_text("keep me")
    (run / link).symlink_to(victim if link == "report.html" else outside)
    assert main(["report", str(run)]) == 2
    line = one_error_line(capsys, "report")
    assert f"{link} is a symbolic link" in line and "remove the link" in line
    assert victim.read_text() == "keep me" and sorted(p.name for p in outside.iterdir()) == ["precious.txt"]


def test_a_linked_image_is_never_read_into_the_report(tmp_path, capsys) -> None:
    run = _run_folder(tmp_path)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG not really")
    (run / "images").mkdir()
    (run / "images" / "r001_c0_idlg.png").symlink_to(secret)
    assert main(["report", str(run)]) == 2
    assert "images/r001_c0_idlg.png is a symbolic link" in one_error_line(capsys, "report")
    assert not (run / "report.html").exists()


def test_the_run_writer_never_writes_through_a_link(tmp_path) -> None:
    run = _run_folder(tmp_path)
    victim = tmp_path / "victim.yaml"
    victim.write_text("keep me")
    (run / "scenario.yaml").unlink()
    (run / "scenario.yaml").symlink_to(victim)
    with pytest.raises(UserError, match="scenario.yaml is a symbolic link"):
        RunWriter(run).write_scenario(Scenario.model_validate(SMOKE))
    assert victim.read_text() == "keep me"


# --- one run per folder -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("earlier", ["report.html", "scenario.yaml", "diagnostics.jsonl", "leakage.csv", "images"])
def test_a_folder_with_any_fedleak_output_is_refused(tmp_path, capsys, earlier) -> None:
    path = write_scenario(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / earlier).write_text("earlier run")
    assert main(["simulate", str(path), "--out", str(out)]) == 2
    assert f"already holds fedleak output ({earlier})" in one_error_line(capsys, "simulate")
    assert sorted(p.name for p in out.iterdir()) == [earlier] and (out / earlier).read_text() == "earlier run"


def test_force_moves_the_earlier_run_aside_and_never_mixes(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "leakage.csv").write_text("earlier rows")
    aside = claim(out, force=True)
    assert aside is not None and aside.parent == tmp_path and aside.name.startswith("out.old-")
    assert (aside / "leakage.csv").read_text() == "earlier rows"
    assert sorted(p.name for p in out.iterdir()) == [CLAIM_FILE]


def test_a_folder_held_by_a_live_run_is_refused_even_with_force(tmp_path) -> None:
    out = tmp_path / "out"
    claim(out)
    (out / "rounds.csv").write_text("round\n1\n")
    for force in (False, True):
        with pytest.raises(UserError, match="already holds fedleak output|a run in progress holds"):
            claim(out, force=force)
    assert (out / "rounds.csv").read_text() == "round\n1\n"


def test_two_runs_started_together_on_one_folder_one_wins(tmp_path) -> None:
    out = tmp_path / "out"
    program = ("import sys, time; from fedleak.run_claim import claim; from fedleak.errors import UserError\n"
               "time.sleep(max(0, float(sys.argv[2]) - time.time()))\n"
               "try:\n    claim(sys.argv[1]); print('won'); sys.stdout.flush(); time.sleep(1.5)\n"
               "except UserError as e:\n    print('lost', e)\n")
    import time

    start = str(time.time() + 1.0)
    racers = [subprocess.Popen([sys.executable, "-c", program, str(out), start], stdout=subprocess.PIPE, text=True)
              for _ in range(4)]
    outcomes = [racer.communicate(timeout=60)[0].strip() for racer in racers]
    assert sum(o == "won" for o in outcomes) == 1, outcomes
    assert all(o.startswith("lost") for o in outcomes if o != "won"), outcomes


def test_a_claim_without_output_is_undone_and_can_be_taken_over(tmp_path) -> None:
    out = tmp_path / "fresh"
    claim(out)
    release_if_unused(out)
    assert not out.exists()
    out.mkdir()
    (out / CLAIM_FILE).write_text("a run that stopped at a data error\n")
    claim(out)  # unlocked and alone: taken over
    release_if_unused(out)
    assert sorted(p.name for p in out.iterdir()) == []


def test_an_unwritable_out_is_one_line_before_any_work(tmp_path, capsys) -> None:
    path = write_scenario(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["simulate", str(path), "--out", str(blocker / "run")]) == 2
    assert "cannot write there" in one_error_line(capsys, "simulate")
    assert main(["simulate", str(path), "--out", str(blocker)]) == 2
    assert "is not a folder" in one_error_line(capsys, "simulate")


def test_attack_out_over_earlier_results_is_refused_before_the_attack(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text('{"psnr": 99}')
    argv = ["attack", "--attack", "idlg", "--model", "lenet", "--dataset", "mnist", "--index", "0", "--iters", "1",
            "--device", "cpu", "--out", str(out)]
    assert main(argv) == 2
    assert "already holds fedleak output (metrics.json)" in one_error_line(capsys, "attack")
    assert (out / "metrics.json").read_text() == '{"psnr": 99}'
    assert main([*argv, "--force"]) == 0
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("out.old-")]
    assert (aside / "metrics.json").read_text() == '{"psnr": 99}'
    assert (out / "metrics.json").read_text() != '{"psnr": 99}'


# --- bad values stop at validation ------------------------------------------------------------------------------

BOMB = 'a: &a ["x", "x"]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n'


@pytest.mark.parametrize("text, says", [
    (BOMB, "anchors (&a) are not accepted"),
    ("data: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested more than 64 levels"),
    ("seed: " + "9" * 20_000 + "\n", "an integer of 20000 digits"),
    ("name: caf\xe9\n", "is not UTF-8"),
    ("x: !!python/object/apply:os.system ['echo pwned']\n", "YAML syntax error"),
])
def test_hostile_yaml_is_one_line(tmp_path, capsys, text, says) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(text.encode("latin-1" if "\xe9" in text else "utf-8"))
    assert main(["validate", str(path)]) == 2
    line = one_error_line(capsys, "validate")
    assert str(path) in line and says in line


@pytest.mark.parametrize("section, field, value", [
    ("training", "lr", ".inf"), ("executor", "timeout_s", ".inf"), ("output", "success_psnr", ".nan"),
    ("training", "lr", "-.inf"),
])
def test_non_finite_numbers_stop_at_validation(tmp_path, capsys, section, field, value) -> None:
    raw = {**SMOKE, section: {**SMOKE.get(section, {}), field: "PLACEHOLDER"}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw).replace("PLACEHOLDER", value))
    assert main(["validate", str(path)]) == 2
    assert f"{section}.{field}: Input should be a finite number" in one_error_line(capsys, "validate")


def test_a_yaml_bomb_as_a_run_folders_scenario_is_refused_by_report(tmp_path, capsys) -> None:
    run = _run_folder(tmp_path)
    (run / "scenario.yaml").write_text(BOMB)
    assert main(["report", str(run)]) == 2
    line = one_error_line(capsys, "report")
    assert "scenario.yaml" in line and "anchors" in line


# --- data files and checkpoints ---------------------------------------------------------------------------------


def attack_argv(out: Path, *victim: str) -> list[str]:
    return ["attack", "--attack", "idlg", "--model", "lenet", "--dataset", "mnist", "--iters", "1", "--device",
            "cpu", *victim, "--out", str(out)]


def npz_argv(out: Path, npz: Path) -> list[str]:
    return attack_argv(out, "--source", "npz", "--path", str(npz), "--index", "0")


def _npz_members(path: Path, members: dict[str, bytes], compress: bool = False) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _npy(shape: tuple[int, ...], body: bytes, dtype: str = "|u1") -> bytes:
    import io

    import numpy as np

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    return header.getvalue() + body


def _lying_npz(path: Path) -> None:
    """x.npy's header declares 9 999 images of 28×28; the member holds one."""
    _npz_members(path, {"x.npy": _npy((9999, 28, 28), b"\0" * 784), "y.npy": _npy((1,), b"\0" * 8, "<i8")})


def _bomb_npz(path: Path) -> None:
    """A few kB compressed, 5 GiB declared."""
    _npz_members(path, {"x.npy": _npy((5 << 30, 1, 1), b"\0" * (1 << 20)), "y.npy": _npy((1,), b"\0" * 8, "<i8")},
                 compress=True)


@pytest.mark.parametrize("make, says", [
    (lambda p: p.write_bytes(b""), "not a readable .npz archive"),
    (lambda p: p.write_bytes(b"PK\x03\x04 truncated"), "not a readable .npz archive"),
    (lambda p: p.write_bytes(os.urandom(4096)), "not a readable .npz archive"),
    (_lying_npz, "holds only"),
    (_bomb_npz, "fedleak loads at most"),
])
def test_corrupt_or_lying_npz_is_one_line(tmp_path, capsys, make, says) -> None:
    npz = tmp_path / "data.npz"
    make(npz)
    assert main(npz_argv(tmp_path / "out", npz)) == 2
    line = one_error_line(capsys, "attack")
    assert str(npz) in line and says in line, line
    assert not (tmp_path / "out").exists()


def test_npz_with_pickled_objects_or_nan_pixels_is_named(tmp_path, capsys) -> None:
    import numpy as np

    npz = tmp_path / "objects.npz"
    np.savez(npz, x=np.array([object()] * 2, dtype=object), y=np.zeros(2, np.int64))
    assert main(npz_argv(tmp_path / "out", npz)) == 2
    assert "holds Python objects" in one_error_line(capsys, "attack")
    nan = tmp_path / "nan.npz"
    x = np.full((2, 28, 28), 0.5, np.float32)
    x[1, 3, 4] = np.nan
    np.savez(nan, x=x, y=np.zeros(2, np.int64))
    assert main(npz_argv(tmp_path / "out", nan)) == 2
    assert "x holds 1 NaN or infinite value(s), the first at index (1, 3, 4)" in one_error_line(capsys, "attack")


def test_non_square_npz_images_are_cropped_or_refused_never_stretched(tmp_path, capsys) -> None:
    import numpy as np

    from fedleak.data.files import load_npz

    x = np.zeros((1, 28, 40), np.uint8)
    x[:, :, 6:34] = 255  # the central 28×28 square is white, the six columns on each side black
    npz = tmp_path / "wide.npz"
    np.savez(npz, x=x, y=np.zeros(1, np.int64))
    cropped = load_npz("mnist", npz, None)
    assert cropped.images.shape == (1, 1, 28, 28) and bool((cropped.images == 255).all())
    assert "centre-cropped from 28×40" in cropped.source
    assert main([*npz_argv(tmp_path / "out", npz), "--non-square", "refuse"]) == 2
    assert "not square" in one_error_line(capsys, "attack")


def test_a_16_bit_png_is_scaled_by_its_bit_depth_not_clipped(tmp_path) -> None:
    import numpy as np
    from PIL import Image

    from fedleak.data.files import read_image

    ramp = (np.arange(28 * 28, dtype=np.uint32).reshape(28, 28) * 65535 // (28 * 28 - 1)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    pixels = read_image(path, 1)[0]
    assert pixels.dtype == np.uint8 and pixels.shape == (28, 28)
    assert int(pixels.max()) == 255 and int(pixels.min()) == 0
    assert (pixels == 255).mean() < 0.01  # clipping made 99.6 % white
    np.testing.assert_allclose(pixels.astype(float), ramp / 65535 * 255, atol=0.51)


def test_a_decompression_bomb_png_is_refused_before_decoding(tmp_path, capsys) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    side = 30_000  # 900 megapixels declared; a few bytes of data
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    assert main(attack_argv(tmp_path / "out", "--image", str(path), "--label", "1")) == 2
    line = one_error_line(capsys, "attack")
    assert str(path) in line and ("decompression bomb" in line or "not a readable image" in line)


@pytest.mark.parametrize("option, value, says", [
    ("--image-size", "1000000", "image_size"),
    ("--label", "100000000", "label"),
])
def test_absurd_sizes_stop_at_validation(tmp_path, capsys, option, value, says) -> None:
    from PIL import Image

    image = tmp_path / "one.png"
    Image.new("L", (28, 28)).save(image)
    victim = ["--image", str(image), "--label", "1"] if option == "--image-size" else ["--image", str(image)]
    assert main(attack_argv(tmp_path / "out", *victim, option, value)) == 2
    assert says in one_error_line(capsys, "attack")


def test_workers_beyond_the_machine_and_mistyped_params_stop_at_validation(tmp_path, capsys) -> None:
    path = write_scenario(tmp_path, executor={"workers": 1000})
    assert main(["validate", str(path)]) == 2
    assert "executor.workers: 1000 attacker processes" in one_error_line(capsys, "validate")
    path = write_scenario(tmp_path, attacks=[{"name": "idlg", "params": {"iterations": "many"}}])
    assert main(["validate", str(path)]) == 2
    assert "parameter 'iterations' of attack 'idlg': expected an integer, got 'many'" in one_error_line(
        capsys, "validate")


def _checkpoint(path: Path, kind: str) -> None:
    import pickle

    import torch

    from fedleak.models import MODELS  # noqa: F401
    from fedleak.types import ModelSpec

    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(os.urandom(2048))
    elif kind == "malicious":
        class Payload:
            def __reduce__(self):
                return (os.system, ("touch " + str(path.parent / "pwned"),))

        torch.save({"weights": Payload()}, path, pickle_module=pickle)
    elif kind == "nan":
        state = ModelSpec("lenet", 1, 28, 10, None).build().state_dict()
        first = next(iter(state))
        state[first] = state[first].clone().fill_(float("nan"))
        torch.save(state, path)
    elif kind == "not-a-state-dict":
        torch.save([1, 2, 3], path)


@pytest.mark.parametrize("kind, says", [
    ("empty", "is not a weights-only state_dict"), ("random", "is not a weights-only state_dict"),
    ("malicious", "is not a weights-only state_dict"), ("nan", "NaN or infinite"),
    ("not-a-state-dict", "not a state_dict"),
])
def test_bad_or_hostile_checkpoints_are_one_line_and_run_nothing(tmp_path, capsys, kind, says) -> None:
    path = tmp_path / "model.pt"
    _checkpoint(path, kind)
    assert main([*attack_argv(tmp_path / "out", "--index", "0"), "--checkpoint", str(path)]) == 2
    line = one_error_line(capsys, "attack")
    assert "--checkpoint" in line and str(path) in line and says in line, line
    assert "weights_only=False" not in line
    assert not (tmp_path / "pwned").exists()
