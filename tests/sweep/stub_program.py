"""Stand-in for `seqmix fit` in sweep tests: reads `--key=value` args, may sleep or fail, writes final_metrics.json.

Knobs (all optional sweep parameters): `x` (metric val/score = 2*x), `sleep` (seconds), `fail` (True: exit 3 with a
message on stderr), `no_metrics` (True: exit 0 without writing metrics). Environment: STUB_LOG, a file that gets one
"start <run_id> <pid>" line per launch and "end <run_id>" per completion; STUB_FAIL_FILE, while that file exists the
runs whose x is listed in it (comma-separated) fail; STUB_ENV_DUMP, write the run's WANDB_*/SEQMIX_* environment to
<run dir>/env.json.
"""

import json
import os
import sys
import time
from pathlib import Path


def log(line: str) -> None:
    path = os.environ.get("STUB_LOG")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, (line + "\n").encode())
        os.close(fd)


def main() -> int:
    args = {}
    for a in sys.argv[1:]:
        key, _, value = a.partition("=")
        args[key.lstrip("-")] = value
    root = Path(args["trainer.default_root_dir"])
    run_id = os.environ.get("SEQMIX_RUN_ID", "?")
    log(f"start {run_id} {os.getpid()}")
    if os.environ.get("STUB_ENV_DUMP"):
        (root / "env.json").write_text(json.dumps({k: v for k, v in os.environ.items() if k.startswith(("WANDB", "SEQMIX"))}))
    fail_file = Path(os.environ.get("STUB_FAIL_FILE", "/nonexistent"))
    if args.get("fail") == "True" or (fail_file.exists() and args.get("x") in fail_file.read_text().split(",")):
        print("stub: working...", file=sys.stderr)
        print("stub: asked to fail", file=sys.stderr)
        return 3
    time.sleep(float(args.get("sleep", 0)))
    if args.get("no_metrics") != "True":
        out = root / "lightning_logs" / "version_0"
        out.mkdir(parents=True, exist_ok=True)
        x = float(args.get("x", 0))
        body = {"schema": 1, "stage": "fit", "metrics": {"val/score": 2 * x, "train/loss": 1.0 / (1.0 + abs(x))},
                "model": {"d_model": 8, "mixer_name": "stub"}}
        tmp = out / ".final_metrics.json.tmp"
        tmp.write_text(json.dumps(body))
        os.replace(tmp, out / "final_metrics.json")
        (out / "config.yaml").write_text("stub: true\n")
    log(f"end {run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
