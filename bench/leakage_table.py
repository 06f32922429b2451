"""The leakage table quoted in docs/scenarios.md: per client (batch size), each attack's median PSNR and the worst case.

    .venv/bin/python bench/leakage_table.py runs/hospitals-<timestamp>

Every number is derived from the run's leakage.csv by the report layer's own rules (fedleak.metrics.headline): per
attack, the median over every image it attacked on that client over all rounds (an image it did not recover, or a
failed attempt's, counts as not recovered, −∞); the worst case is, per image, the best of the attacks on its update,
then the median over the client's images. Re-identification is the share of the client's attacked images some
attack re-identified in the rows' gallery.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from fedleak.metrics.headline import median_psnr
from fedleak.report.html import fmt
from fedleak.report.tables import image_psnrs, read_leakage
from fedleak.report.worst import client_leakage


def table(run_dir: Path) -> str:
    rows = read_leakage(run_dir / "leakage.csv").rows
    attacks = sorted({str(r["attack"]) for r in rows})
    per_attack: dict[tuple[int, str], list[float | None]] = defaultdict(list)
    for row in rows:
        per_attack[(int(row["client"]), str(row["attack"]))].extend(image_psnrs(row))
    lines = ["| batch size | " + " | ".join(attacks) + " | worst case | re-identified |",
             "| --- " * (len(attacks) + 3) + "|"]
    for client in sorted(client_leakage(rows), key=lambda c: (c.batch_sizes, c.client)):
        cells = []
        for attack in attacks:
            values = per_attack.get((client.client, attack))
            cells.append(_db(median_psnr(values)) if values else "–")
        batch = "/".join(map(str, client.batch_sizes))
        reid = "–" if client.reidentified is None else f"{100 * client.reidentified:.0f} %"
        lines.append(f"| {batch} | " + " | ".join(cells) + f" | {_db(client.worst_median_psnr)} | {reid} |")
    galleries = sorted({(str(r["gallery"]), r["gallery_size"]) for r in rows if r.get("gallery")})
    lines.append("")
    lines += [f"gallery: {name} ({size} images) plus each update's own" for name, size in galleries]
    return "\n".join(lines)


def _db(value: float | None) -> str:
    return "–" if value is None else f"{fmt(value, 1)} dB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    print(table(parser.parse_args().run_dir))


if __name__ == "__main__":
    main()
