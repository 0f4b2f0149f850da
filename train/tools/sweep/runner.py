"""Run a sweep's planned runs locally: one subprocess each, optional parallel workers, resumable, crash-safe table."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from ...io import atomic_write
from .plan import PlannedRun, render_command
from .results import FAILED, OK, ResultsTable
from .spec import SweepSpec, SweepSpecError

METRICS_FILE = "final_metrics.json"
STDERR_TAIL_LINES = 20
KILL_GRACE_S = 5.0


class SweepRunError(RuntimeError):
    """The sweep cannot start (output folder unusable, another runner active, …)."""


@dataclass
class RunnerOptions:
    """How to run: output folder, parallelism, retries of runs killed by a signal, per-run timeout, W&B mode."""

    out: Path
    workers: int = 1
    retries: int = 2
    timeout_s: float | None = None
    wandb: str = "disabled"
    cwd: Path = field(default_factory=Path.cwd)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise SweepSpecError(f"--workers must be >= 1, got {self.workers}")
        if self.retries < 0:
            raise SweepSpecError(f"--retries must be >= 0, got {self.retries}")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise SweepSpecError(f"--timeout must be > 0 seconds, got {self.timeout_s}")
        if self.wandb not in ("disabled", "offline"):
            raise SweepSpecError(f"--wandb must be 'offline' or 'disabled', got {self.wandb!r}")
        self.out = Path(self.out).absolute()


@dataclass
class Outcome:
    """What one attempt of a run produced."""

    status: str
    exit_code: int | None
    metrics: dict[str, Any]
    wall_time_s: float
    config_path: str = ""
    error: str = ""


NON_FINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def flatten_metrics(data: Any, prefix: str = "") -> dict[str, Any]:
    """Numeric leaves of a mapping (JSON's "nan"/"inf" strings included), nested keys joined with '/'."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(flatten_metrics(v, f"{prefix}{k}/" if isinstance(v, dict) else f"{prefix}{k}"))
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        out[prefix] = data
    elif isinstance(data, str) and data.lower() in NON_FINITE:
        out[prefix] = NON_FINITE[data.lower()]
    return out


def read_final_metrics(path: Path) -> dict[str, Any]:
    """Metrics from a run's final_metrics.json (train.callbacks.FinalMetrics: its `metrics`, plus the resolved model's
    numbers as `model/<field>`); a file without a `metrics` mapping contributes its top-level numbers."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds {type(data).__name__}, expected a mapping")
    if not isinstance(data.get("metrics"), dict):
        return flatten_metrics(data)
    out = flatten_metrics(data["metrics"])
    if isinstance(data.get("model"), dict):
        out.update(flatten_metrics(data["model"], "model/"))
    return out


def find_final_metrics(run_dir: Path) -> Path | None:
    """The newest final_metrics.json anywhere under a run's folder."""
    found = [p for p in run_dir.rglob(METRICS_FILE) if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _tail(path: Path, n: int) -> list[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [ln for ln in lines if ln.strip()][-n:]


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _pid_runs_in(pid: int, run_dir: Path) -> bool:
    """Whether process `pid` is alive and is a run of `run_dir` (its command line names the folder)."""
    try:
        return str(run_dir) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class SweepRunner:
    """Executes planned runs into OUT/runs/<run_id>/ and records each in OUT/results.csv."""

    def __init__(self, spec: SweepSpec, runs: list[PlannedRun], opts: RunnerOptions, echo: Callable[[str], None] | None = None):
        self.spec, self.runs, self.opts = spec, runs, opts
        self.echo = echo or (lambda msg: print(msg, flush=True))
        self.table: ResultsTable | None = None
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._lock_file: TextIO | None = None
        self._done = 0

    # -- output folder ---------------------------------------------------------------------------------------------
    def _check_same_sweep(self) -> None:
        saved = self.opts.out / "sweep.yaml"
        if not saved.exists():
            return
        try:
            old = yaml.safe_load(saved.read_text()) or {}
        except yaml.YAMLError:
            return
        for key in ("program", "command"):
            if old.get(key) != self.spec.raw.get(key):
                raise SweepRunError(
                    f"{self.opts.out} holds a sweep with a different {key!r} ({old.get(key)!r} vs {self.spec.raw.get(key)!r}); "
                    "its finished runs would not match this sweep's: pass a new --out"
                )

    def prepare_out(self) -> None:
        """Create OUT, prove it writable, take its lock, and save the sweep file; nothing is written before checks pass."""
        out = self.opts.out
        self._check_same_sweep()
        try:
            (out / "runs").mkdir(parents=True, exist_ok=True)
            self._lock_file = open(out / ".sweep.lock", "a+")
        except OSError as e:
            raise SweepRunError(f"--out {str(out)!r} is not writable: {e.strerror or e}") from None
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SweepRunError(f"another `seqmix sweep` is running on {out}; wait for it or pass another --out") from None
        try:
            atomic_write(out / "sweep.yaml", yaml.safe_dump(self.spec.raw, sort_keys=False))
        except OSError as e:
            raise SweepRunError(f"--out {str(out)!r} is not writable: {e.strerror or e}") from None
        for stale in out.glob(".results.csv.tmp-*"):
            stale.unlink(missing_ok=True)
        self._reap_orphans()
        self.table = ResultsTable(out / "results.csv")

    def _reap_orphans(self) -> None:
        """Kill runs left behind by a runner that was itself killed (they would race the reruns for their folders)."""
        for pid_file in (self.opts.out / "runs").glob("*/pid"):
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                continue
            if _pid_runs_in(pid, pid_file.parent):
                self.echo(f"killing leftover process {pid} of run {pid_file.parent.name} from an earlier sweep runner")
                _killpg(pid, signal.SIGKILL)

    def release(self) -> None:
        """Drop the output folder's lock."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- one run ---------------------------------------------------------------------------------------------------
    def _env(self, run: PlannedRun, run_dir: Path) -> dict[str, str]:
        env = dict(os.environ)
        # `seqmix` and other console scripts of this environment come first on PATH, as when it is activated.
        bin_dir = os.path.dirname(sys.executable)
        env["PATH"] = os.pathsep.join([bin_dir, *(p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir)])
        env.update(PYTHONUNBUFFERED="1", SEQMIX_RUN_ID=run.run_id, SEQMIX_RUN_DIR=str(run_dir),
                   SEQMIX_SWEEP_NAME=self.spec.name, WANDB_MODE=self.opts.wandb)
        if self.opts.wandb == "offline":
            env.update(WANDB_RUN_GROUP=self.spec.name, WANDB_NAME=run.run_id, WANDB_DIR=str(run_dir),
                       WANDB_PROJECT=env.get("WANDB_PROJECT") or self.spec.raw.get("project") or "seqmix")
        return env

    def _attempt(self, run: PlannedRun, attempt: int) -> Outcome | None:
        run_dir = self.opts.out / "runs" / run.run_id
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        argv = render_command(self.spec, run, run_dir)
        atomic_write(run_dir / "run.json", json.dumps(
            {"run_id": run.run_id, "params": run.args, "argv": argv, "command": shlex.join(argv), "attempt": attempt,
             "cwd": str(self.opts.cwd)}, indent=2))
        if "${args_json_file}" in self.spec.command:
            atomic_write(run_dir / "sweep_args.json", json.dumps(run.args))
        start = time.monotonic()
        with open(run_dir / "stdout.log", "wb") as out, open(run_dir / "stderr.log", "wb") as err:
            with self._lock:
                if self._stop.is_set():
                    return None
                try:
                    proc = subprocess.Popen(argv, cwd=self.opts.cwd, env=self._env(run, run_dir), stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
                except OSError as e:
                    return Outcome(FAILED, None, {}, 0.0, error=f"cannot start {argv[0]!r}: {e.strerror or e}")
                self._procs[run.run_id] = proc
            (run_dir / "pid").write_text(str(proc.pid))
            timed_out = False
            try:
                code = proc.wait(timeout=self.opts.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _killpg(proc.pid, signal.SIGTERM)
                try:
                    code = proc.wait(timeout=KILL_GRACE_S)
                except subprocess.TimeoutExpired:
                    _killpg(proc.pid, signal.SIGKILL)
                    code = proc.wait()
            finally:
                with self._lock:
                    self._procs.pop(run.run_id, None)
        (run_dir / "pid").unlink(missing_ok=True)
        wall = time.monotonic() - start
        if self._stop.is_set():
            return None
        return self._outcome(run_dir, code, wall, timed_out)

    def _outcome(self, run_dir: Path, code: int, wall: float, timed_out: bool) -> Outcome:
        rel = lambda p: os.path.relpath(p, self.opts.out)  # noqa: E731
        metrics_path = find_final_metrics(run_dir)
        metrics: dict[str, Any] = {}
        problem = ""
        if metrics_path is not None:
            try:
                metrics = read_final_metrics(metrics_path)
            except (OSError, ValueError) as e:
                problem = f"unreadable {rel(metrics_path)}: {e}"
        config = metrics_path.parent / "config.yaml" if metrics_path is not None else None
        config_path = rel(config) if config is not None and config.exists() else (rel(metrics_path) if metrics_path else "")
        if timed_out:
            error = f"timed out after {self.opts.timeout_s:g} s"
        elif code < 0:
            error = f"killed by {_signal_name(code)}"
        elif code > 0:
            error = f"exit code {code}"
        elif metrics_path is None:
            error = f"exit code 0 but no {METRICS_FILE} under {rel(run_dir)}"
        else:
            error = problem
        if not error:
            return Outcome(OK, code, metrics, wall, config_path)
        tail = _tail(run_dir / "stderr.log", STDERR_TAIL_LINES)
        if code != 0 and tail:
            error = f"{error}: {tail[-1][:300]}"
        return Outcome(FAILED, code, metrics, wall, config_path, error)

    def _log_failure(self, run: PlannedRun, outcome: Outcome) -> None:
        run_dir = self.opts.out / "runs" / run.run_id
        tail = _tail(run_dir / "stderr.log", STDERR_TAIL_LINES)
        stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        text = f"== {stamp} run {run.run_id} failed ({outcome.error}); last stderr lines:\n"
        text += "".join(f"  {ln}\n" for ln in tail)
        with self._lock, open(self.opts.out / "failures.log", "a") as f:
            f.write(text)

    def _run_one(self, run: PlannedRun, total: int) -> str | None:
        assert self.table is not None
        previous = self.table.rows.get(run.run_id, {})
        attempts_before = int(previous.get("attempts") or 0)
        outcome: Outcome | None = None
        for attempt in range(1, self.opts.retries + 2):
            outcome = self._attempt(run, attempt)
            if outcome is None:
                return None  # interrupted: no row, so the next invocation reruns it
            signalled = outcome.exit_code is not None and outcome.exit_code < 0 and not outcome.error.startswith("timed")
            if outcome.status == OK or not signalled or attempt > self.opts.retries:
                break
            self.echo(f"        {run.run_id} {outcome.error}; retrying ({attempt}/{self.opts.retries})")
        assert outcome is not None
        if outcome.status == FAILED:
            self._log_failure(run, outcome)
        self.table.record(
            run.run_id, outcome.status, run.flat, outcome.metrics, wall_time_s=round(outcome.wall_time_s, 3),
            exit_code=outcome.exit_code, attempts=attempts_before + attempt,
            finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), config_path=outcome.config_path,
            log_path=os.path.relpath(self.opts.out / "runs" / run.run_id / "stderr.log", self.opts.out), error=outcome.error,
        )
        with self._lock:
            self._done += 1
            done = self._done
        params = " ".join(f"{k}={v}" for k, v in run.flat.items())
        metric = self._metric_note(outcome.metrics)
        extra = f"  ({outcome.error})" if outcome.status == FAILED else ""
        self.echo(f"[{done:>{len(str(total))}}/{total}] {outcome.status:<6} {run.run_id} {outcome.wall_time_s:7.1f}s  "
                  f"{params}{metric}{extra}")
        return outcome.status

    def _metric_note(self, metrics: dict[str, Any]) -> str:
        name = (self.spec.metric or {}).get("name")
        if name and name in metrics:
            return f"  {name}={metrics[name]:.4g}"
        return ""

    # -- the sweep -------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop starting runs and kill the running ones (they get no row, so a rerun redoes them)."""
        self._stop.set()
        with self._lock:
            procs = list(self._procs.values())
        for p in procs:
            _killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_S
        for p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _killpg(p.pid, signal.SIGKILL)

    def run(self) -> dict[str, int]:
        """Run every planned run without a finished row; returns counts by outcome."""
        if self.table is None:
            self.prepare_out()
        assert self.table is not None
        todo = [r for r in self.runs if self.table.status(r.run_id) != OK]
        skipped = len(self.runs) - len(todo)
        rerun = sum(1 for r in todo if self.table.status(r.run_id) == FAILED)
        self.echo(f"sweep {self.spec.name!r} ({self.spec.method}): {len(self.runs)} runs, {skipped} already finished, "
                  f"{len(todo)} to run ({rerun} failed before) with {self.opts.workers} worker(s); results -> "
                  f"{self.opts.out / 'results.csv'}")
        counts = {OK: 0, FAILED: 0, "skipped": skipped, "interrupted": 0}
        self._done = skipped
        pool = ThreadPoolExecutor(max_workers=self.opts.workers, thread_name_prefix="sweep")
        futures = {pool.submit(self._run_one, r, len(self.runs)) for r in todo}
        try:
            pending = futures
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in finished:
                    status = f.result()
                    counts[status or "interrupted"] += 1
        except BaseException:
            self.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return counts


def install_signal_handlers() -> dict[int, Any]:
    """Make SIGTERM/SIGINT raise KeyboardInterrupt in the main thread (so the sweep stops cleanly); returns the old ones."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def restore_signal_handlers(previous: dict[int, Any]) -> None:
    """Put back handlers returned by install_signal_handlers."""
    for sig, h in previous.items():
        signal.signal(sig, h)
