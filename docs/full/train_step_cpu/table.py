"""The markdown table of a `before_after.sh` run: median ms a step, before / after, each round.

    python docs/full/train_step_cpu/table.py docs/full/train_step_cpu/run_1_dec_d

Columns per backend: "before r1, r2 / after r1, r2"; then after's JAX / TF and PyTorch / TF
in each round, and TensorFlow's fraction of the matmul peak after.
"""

import json
import pathlib
import sys

BACKENDS = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}
COMPARED = ("jax", "torch")  # each against TensorFlow, round by round


def read(folder):
    """{(tree, backend, round): {preset: record}} of every JSON file of the run."""
    runs = {}
    for path in sorted(pathlib.Path(folder).glob("*_r*.json")):
        tree, backend, round_ = path.stem.split("_")
        runs[tree, backend, int(round_[1:])] = {r["preset"]: r for r in json.loads(path.read_text())}
    return runs


def main(folder):
    runs = read(folder)
    rounds = sorted({r for _, _, r in runs})
    presets = list(next(iter(runs.values())))

    def ms(tree, backend, preset):
        return [runs[tree, backend, r][preset]["step_s"] * 1000 for r in rounds if (tree, backend, r) in runs]

    def cell(values):
        return ", ".join(f"{v:.0f}" for v in values) or "-"

    ratio_headers = [f"after: {BACKENDS[b]} / TF" for b in COMPARED]
    headers = [f"{label} before / after" for label in BACKENDS.values()] + ratio_headers + ["TF % of peak"]
    print("| preset | " + " | ".join(headers) + " |")
    print("|---" * (len(headers) + 1) + "|")
    for preset in presets:
        cells = [f"{cell(ms('before', b, preset))} / {cell(ms('after', b, preset))}" for b in BACKENDS]
        tf = ms("after", "tensorflow", preset)
        for backend in COMPARED:
            other = ms("after", backend, preset)
            cells.append(" / ".join(f"{o / t:.2f}" for o, t in zip(other, tf)) or "-")
        peaks = [runs["after", "tensorflow", r][preset]["fraction_of_peak"]
                 for r in rounds if ("after", "tensorflow", r) in runs]
        cells.append(" / ".join(f"{p:.0%}" for p in peaks) or "-")
        print(f"| {preset} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
