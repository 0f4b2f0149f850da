"""Run a reproduction's steps as `seqmix` subprocesses in OUT/steps/<id>/, record each finished one, skip it on rerun."""

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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ...io import atomic_write
from .spec import PLACEHOLDER, Reproduction, Step

STATE_FILE = "steps.json"
OK, FAILED = "ok", "failed"
SEQMIX = (sys.executable, "-m", "seqmix.train.main")


class ReproduceError(RuntimeError):
    """The reproduction cannot go on (a step failed, a checkpoint is missing, the folder is busy)."""


def newest_checkpoint(step_dir: Path) -> Path:
    """The newest last*.ckpt a fit step wrote (a resumed fit writes a new version folder)."""
    found = [p for p in step_dir.rglob("last*.ckpt") if p.is_file()]
    if not found:
        raise ReproduceError(f"fit step {step_dir.name!r} left no last*.ckpt under {step_dir}; did it run with "
                             "checkpointing off (--trainer.enable_checkpointing=false)?")
    return max(found, key=lambda p: p.stat().st_mtime_ns)


def references(step: Step) -> set[str]:
    """The ids of the earlier steps this step's arguments name ({step:ID}, {ckpt:ID})."""
    return {m.group(2) for arg in step.args for m in PLACEHOLDER.finditer(arg) if m.group(1) in ("step", "ckpt")}


def _alive_in(pid: int, step_dir: Path) -> bool:
    """Whether pid is a live process whose command line names step_dir (a child of a runner that was killed)."""
    try:
        return str(step_dir) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


class ReproductionRunner:
    """Runs one reproduction into `out`: steps in order, each recorded in OUT/steps.json once it finished ok."""

    def __init__(self, repro: Reproduction, out: Path, program: tuple[str, ...] = SEQMIX, cwd: Path | None = None,
                 echo: Callable[[str], None] | None = None):
        self.repro, self.out, self.program = repro, Path(out).absolute(), tuple(program)
        self.cwd = Path(cwd or Path.cwd())
        self.echo = echo or (lambda msg: print(msg, flush=True))
        self.state: dict[str, Any] = {}
        self._lock: TextIO | None = None

    # -- the folder and its record ---------------------------------------------------------------------------------
    def step_dir(self, step_id: str) -> Path:
        """Where a step runs."""
        return self.out / "steps" / step_id

    def load_state(self) -> dict[str, Any]:
        """OUT/steps.json: what ran, per step (empty for a new folder)."""
        path = self.out / STATE_FILE
        state = json.loads(path.read_text()) if path.is_file() else {}
        if state and (state.get("reproduction"), state.get("preset")) != (self.repro.name, self.repro.preset):
            raise ReproduceError(f"{self.out} holds reproduction {state.get('reproduction')!r} preset "
                                 f"{state.get('preset')!r}, not {self.repro.name!r} {self.repro.preset!r}; pass another --out")
        return {"reproduction": self.repro.name, "preset": self.repro.preset, "steps": {}, **state}

    def save_state(self) -> None:
        atomic_write(self.out / STATE_FILE, json.dumps(self.state, indent=2) + "\n")

    def acquire(self) -> None:
        """Create OUT and lock it against a second runner."""
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.out / ".reproduce.lock", "a+")
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ReproduceError(f"another `seqmix reproduce` is running in {self.out}") from None
        self.state = self.load_state()

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- commands --------------------------------------------------------------------------------------------------
    def render(self, step: Step, resolve_checkpoints: bool = True) -> list[str]:
        """The argv of a step: `seqmix KIND ARGS` with placeholders filled and its output folder appended."""
        def fill(match: Any) -> str:
            kind, ref = match.groups()
            if kind == "out":
                return str(self.out)
            if kind == "root":
                return str(self.repro.folder)
            if kind == "step":
                return str(self.step_dir(ref))
            return str(newest_checkpoint(self.step_dir(ref))) if resolve_checkpoints else f"<newest last.ckpt of {ref}>"

        args = [PLACEHOLDER.sub(fill, a) for a in step.args]
        where = self.step_dir(step.id)
        if step.kind == "fit":  # resumable: a killed fit continues from its last checkpoint
            return [*self.program, "fit", "--wandb=disabled", *args, f"--trainer.default_root_dir={where}",
                    f"--run_name={step.id}", "--ckpt_path=last"]
        return [*self.program, step.kind, *args, "--out", str(where)]

    def is_done(self, step: Step) -> bool:
        """Finished ok with the same arguments, after every step it reads last finished (a reader of a step that
        reran since, even in a run that was killed before the reader ran, is not done)."""
        records = self.state["steps"]
        record = records.get(step.id) or {}
        if record.get("status") != OK or record.get("args") != list(step.args):
            return False
        return all(records.get(ref, {}).get("seq", 0) < record.get("seq", 0) for ref in references(step))

    # -- running ---------------------------------------------------------------------------------------------------
    def _reap(self, where: Path) -> None:
        pid_file = where / "pid"
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            return
        if _alive_in(pid, where):
            self.echo(f"killing leftover process {pid} of step {where.name} from an earlier runner")
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass

    def _execute(self, step: Step, argv: list[str]) -> tuple[int, float]:
        where = self.step_dir(step.id)
        where.mkdir(parents=True, exist_ok=True)
        self._reap(where)
        start = time.perf_counter()
        with open(where / "log.txt", "a") as log:
            log.write(f"$ {shlex.join(argv)}\n")
            log.flush()
            proc = subprocess.Popen(argv, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            (where / "pid").write_text(str(proc.pid))
            try:
                code = proc.wait()
            except BaseException:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
                raise
        (where / "pid").unlink(missing_ok=True)
        return code, time.perf_counter() - start

    def run(self, force: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
        """Run every step not yet done; returns step id -> ran / skipped. Raises ReproduceError when a step fails."""
        outcome: dict[str, str] = {}
        total = len(self.repro.steps)
        for i, step in enumerate(self.repro.steps, 1):
            if step.id not in force and self.is_done(step):
                self.echo(f"[{i}/{total}] {step.id}: done earlier, skipped")
                outcome[step.id] = "skipped"
                continue
            record = self.state["steps"].get(step.id) or {}
            if record.get("args") not in (None, list(step.args)) or step.id in force or record.get("status") == OK:
                shutil.rmtree(self.step_dir(step.id), ignore_errors=True)  # its inputs changed: start it afresh
            argv = self.render(step)
            self.echo(f"[{i}/{total}] {step.id}: {shlex.join(argv)}")
            code, wall = self._execute(step, argv)
            # finish order: a step is stale when a step it reads finished after it (see is_done)
            seq = 1 + max((r.get("seq", 0) for r in self.state["steps"].values()), default=0)
            self.state["steps"][step.id] = {
                "seq": seq, "status": OK if code == 0 else FAILED, "kind": step.kind, "args": list(step.args), "command": argv,
                "shown": shlex.join(["seqmix", *argv[len(self.program):]]),
                "exit_code": code, "wall_time_s": round(wall, 2),
                "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            }
            self.save_state()
            outcome[step.id] = "ran"
            if code != 0:
                tail = (self.step_dir(step.id) / "log.txt").read_text(errors="replace").splitlines()[-15:]
                raise ReproduceError(f"step {step.id} failed with exit code {code}; its log "
                                     f"{self.step_dir(step.id) / 'log.txt'} ends:\n" + "\n".join(tail))
            self.echo(f"[{i}/{total}] {step.id}: ok in {wall:.1f}s")
        return outcome
