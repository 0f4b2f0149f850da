"""Join the recall_vs_state.csv of several `seqmix evaluate --recall-vs-state` calls into one CSV and one plot."""

import csv
import sys
from pathlib import Path

from seqmix.train.tools.evaluate import plot_recall_vs_state, write_csv

out, parts = Path(sys.argv[1]), sys.argv[2:]
rows = [r for p in parts for r in csv.DictReader(open(Path(p) / "recall_vs_state.csv"))]
for r in rows:
    r["length"], r["state_bytes"], r["accuracy"] = int(r["length"]), int(r["state_bytes"]), float(r["accuracy"])
out.mkdir(parents=True, exist_ok=True)
write_csv(rows, out / "recall_vs_state.csv")
plot_recall_vs_state(rows, out / "recall_vs_state.png", "passkey (needle, 16 values): recall against decode-state bytes",
                     1 / 16)
print(f"{len(rows)} rows -> {out}")
