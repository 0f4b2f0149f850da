"""A stand-in for `python -m seqmix.train.main` in the runner tests: logs each call, writes the outputs a real
command would (a fit's last.ckpt and final_metrics.json, an evaluate's or sweep's CSV), and on request kills the
runner that started it (once, marked by a file) to simulate a reproduction killed mid-step."""

import json
import os
import signal
import sys
from pathlib import Path


def option(argv, name):
    for i, arg in enumerate(argv):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name:
            return argv[i + 1]
    return None


def main():
    kind, argv = sys.argv[1], sys.argv[2:]
    log = Path(os.environ["STUB_LOG"])
    if kind == "fit":
        where = Path(option(argv, "--trainer.default_root_dir")) / option(argv, "--run_name") / "version_0"
    else:
        where = Path(option(argv, "--out"))
    step = where.parts[-3] if kind == "fit" else where.name
    with open(log, "a") as f:
        f.write(f"{step} {kind} {' '.join(argv)}\n")
    marker = Path(str(log) + f".killed-{step}")
    if os.environ.get("STUB_KILL_AT") == step and not marker.exists():
        marker.write_text("")
        os.kill(os.getppid(), signal.SIGKILL)
        sys.exit(1)
    if os.environ.get("STUB_FAIL_AT") == step:
        print("stub: failing as asked", file=sys.stderr)
        sys.exit(3)
    where.mkdir(parents=True, exist_ok=True)
    if kind == "fit":
        (where / "checkpoints").mkdir(exist_ok=True)
        (where / "checkpoints" / "last.ckpt").write_text("stub")
        (where / "final_metrics.json").write_text(json.dumps({"metrics": {"val/acc": 0.5}}))
    else:
        (where / "table.csv").write_text("model,length,accuracy\nm,8,0.25\nm,16,0.75\nn,8,1.0\n")


if __name__ == "__main__":
    main()
