"""The local sweep runner with a stub program: results table, failures, resume after kills, bad input, W&B env."""

import fcntl
import json
import os
import signal
import sys

import pytest

from seqmix.train.tools.sweep import run_cli
from seqmix.train.tools.sweep.plan import run_id
from seqmix.train.tools.sweep.results import TAIL, ResultsTable

from .helpers import STUB, launches, read_table, spawn_runner, stub_env, wait_for, write_sweep


@pytest.fixture
def log(tmp_path, monkeypatch):
    path = tmp_path / "stub.log"
    monkeypatch.setenv("STUB_LOG", str(path))
    return path


def test_a_sweep_writes_one_row_per_run_with_params_metrics_and_bookkeeping(tmp_path, log):
    sweep = write_sweep(tmp_path, {"x": {"values": [1, 2, 3]}, "mixer": {"values": ["attention", "mamba"]}})
    out = tmp_path / "out"
    assert run_cli([str(sweep), "--out", str(out), "--workers", "2"]) == 0
    header, rows = read_table(out)
    assert header == ["run_id", "status", "mixer", "x", "model/d_model", "train/loss", "val/score", *TAIL]
    assert TAIL == ("wall_time_s", "exit_code", "attempts", "finished_at", "config_path", "log_path", "error")
    assert len(rows) == 6
    for row in rows:
        assert row["run_id"] == run_id({"mixer": row["mixer"], "x": int(row["x"])})
        assert row["status"] == "ok" and row["exit_code"] == "0" and row["attempts"] == "1" and row["error"] == ""
        assert float(row["val/score"]) == 2 * int(row["x"]) and row["model/d_model"] == "8"
        assert float(row["wall_time_s"]) > 0
        assert (out / row["config_path"]).name == "config.yaml" and (out / row["config_path"]).exists()
        assert (out / row["log_path"]) == out / "runs" / row["run_id"] / "stderr.log"
        meta = json.loads((out / "runs" / row["run_id"] / "run.json").read_text())
        assert meta["argv"][1:] == [str(STUB), f"--mixer={row['mixer']}", f"--x={row['x']}",
                                    f"--trainer.default_root_dir={out / 'runs' / row['run_id']}"]
    assert sorted(launches(log)[0].values()) == [1] * 6

    # a rerun finds every run finished: nothing is launched and the table is unchanged
    before = (out / "results.csv").read_text()
    assert run_cli([str(sweep), "--out", str(out)]) == 0
    assert sum(launches(log)[0].values()) == 6
    assert (out / "results.csv").read_text() == before


def test_failed_runs_are_recorded_with_stderr_and_rerun_next_time(tmp_path, log, monkeypatch, capsys):
    fail_file = tmp_path / "fail"
    fail_file.write_text("2,3")
    monkeypatch.setenv("STUB_FAIL_FILE", str(fail_file))
    sweep = write_sweep(tmp_path, {"x": {"values": [1, 2, 3]}})
    out = tmp_path / "out"
    assert run_cli([str(sweep), "--out", str(out)]) == 1
    rows = {r["x"]: r for r in read_table(out)[1]}
    assert rows["1"]["status"] == "ok"
    for x in ("2", "3"):
        assert rows[x]["status"] == "failed" and rows[x]["exit_code"] == "3"
        assert rows[x]["error"] == "exit code 3: stub: asked to fail" and rows[x]["val/score"] == ""
        assert "stub: asked to fail" in (out / rows[x]["log_path"]).read_text()
    failures = (out / "failures.log").read_text()
    assert failures.count("failed (exit code 3") == 2 and "  stub: working..." in failures
    assert "exit code 3: stub: asked to fail" in capsys.readouterr().out

    fail_file.unlink()  # the cause is fixed: a rerun redoes the two failed runs only
    assert run_cli([str(sweep), "--out", str(out)]) == 0
    header, rows = read_table(out)
    assert [r["status"] for r in rows] == ["ok"] * 3 and len({r["run_id"] for r in rows}) == 3
    by_x = {r["x"]: r for r in rows}
    assert by_x["1"]["attempts"] == "1" and by_x["2"]["attempts"] == by_x["3"]["attempts"] == "2"
    starts = launches(log)[0]
    assert sorted(starts[by_x[x]["run_id"]] for x in "123") == [1, 2, 2]


def test_exit_zero_without_metrics_or_a_timeout_is_a_failure(tmp_path, log):
    sweep = write_sweep(tmp_path, {"no_metrics": {"values": [True]}, "sleep": {"values": [0, 30]}})
    out = tmp_path / "out"
    assert run_cli([str(sweep), "--out", str(out), "--timeout", "2", "--workers", "2"]) == 1
    rows = {r["sleep"]: r for r in read_table(out)[1]}
    assert rows["0"]["status"] == "failed" and rows["0"]["exit_code"] == "0"
    assert rows["0"]["error"].startswith("exit code 0 but no final_metrics.json under runs/")
    assert rows["30"]["status"] == "failed" and rows["30"]["error"].startswith("timed out after 2 s")
    assert float(rows["30"]["wall_time_s"]) < 10


def test_a_run_killed_mid_way_is_rerun_and_finished_runs_are_not(tmp_path, log):
    sweep = write_sweep(tmp_path, {"x": {"values": [1, 2, 3, 4]}, "sleep": {"value": 0.5}})
    out = tmp_path / "out"
    runner = spawn_runner(sweep, out, stub_env(log), "--workers", "2", "--retries", "0")
    wait_for(lambda: launches(log)[2])
    victim, pids = next(iter(launches(log)[2].items()))
    os.kill(pids[0], signal.SIGKILL)
    output, _ = runner.communicate(timeout=60)
    assert runner.returncode == 1, output
    rows = {r["run_id"]: r for r in read_table(out)[1]}
    assert rows[victim]["status"] == "failed" and rows[victim]["exit_code"] == "-9"
    assert rows[victim]["error"] == "killed by SIGKILL"
    assert sum(r["status"] == "ok" for r in rows.values()) == 3

    assert run_cli([str(sweep), "--out", str(out), "--workers", "2"]) == 0
    header, table = read_table(out)
    assert len(table) == 4 and len({r["run_id"] for r in table}) == 4 and all(r["status"] == "ok" for r in table)
    starts = launches(log)[0]
    assert starts[victim] == 2 and all(n == 1 for rid, n in starts.items() if rid != victim)


def test_a_run_killed_by_a_signal_is_retried_within_the_same_invocation(tmp_path, log):
    sweep = write_sweep(tmp_path, {"x": {"values": [1, 2]}, "sleep": {"value": 0.5}})
    out = tmp_path / "out"
    runner = spawn_runner(sweep, out, stub_env(log), "--retries", "1")
    wait_for(lambda: launches(log)[2])
    victim, pids = next(iter(launches(log)[2].items()))
    os.kill(pids[0], signal.SIGKILL)
    output, _ = runner.communicate(timeout=60)
    assert runner.returncode == 0, output
    assert "killed by SIGKILL; retrying (1/1)" in output
    rows = {r["run_id"]: r for r in read_table(out)[1]}
    assert rows[victim]["status"] == "ok" and rows[victim]["attempts"] == "2"


def test_killing_the_runner_itself_loses_no_finished_row_and_a_rerun_completes(tmp_path, log):
    sweep = write_sweep(tmp_path, {"x": {"values": list(range(6))}, "sleep": {"value": 0.4}})
    out = tmp_path / "out"
    runner = spawn_runner(sweep, out, stub_env(log), "--workers", "2")
    wait_for(lambda: (out / "results.csv").exists() and len(read_table(out)[1]) >= 2)
    runner.kill()
    runner.wait()
    finished = {r["run_id"] for r in read_table(out)[1]}
    assert 2 <= len(finished) < 6
    assert run_cli([str(sweep), "--out", str(out), "--workers", "2"]) == 0
    table = read_table(out)[1]
    assert len(table) == 6 and len({r["run_id"] for r in table}) == 6 and all(r["status"] == "ok" for r in table)
    starts = launches(log)[0]
    assert all(starts[rid] == 1 for rid in finished)  # finished before the kill: never run again


@pytest.mark.parametrize("content, needle", [
    ("method: grid\nparameters: {x: {values: [1, 2}\n", "not valid YAML at line"),
    ("method: grid\nparameters: {x: {values: [1]}}\nprogramm: stub.py\n", "unknown top-level key(s) 'programm'"),
    ("method: bayes\nprogram: stub.py\nparameters: {x: {min: 0.0, max: 1.0}}\n", "needs a W&B server"),
    ("method: random\nprogram: stub.py\nparameters: {x: {distribution: gaussian}}\n", "unknown distribution 'gaussian'"),
    ("method: grid\nprogram: stub.py\nparameters: {x: {values: [1], step: 2}}\n", "unknown key(s) 'step'"),
    ("method: grid\nprogram: stub.py\nparameters: {x: {values: [1]}}\ncommand: [python, '${progam}', '${args}']\n",
     "unknown macro '${progam}'"),
])
def test_bad_sweep_files_fail_before_anything_runs_or_is_written(tmp_path, log, capsys, content, needle):
    sweep = tmp_path / "bad.yaml"
    sweep.write_text(content)
    out = tmp_path / "out"
    assert run_cli([str(sweep), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqmix sweep: error: ") and needle in err
    assert not out.exists() and not log.exists()


def test_an_unwritable_out_fails_before_any_run(tmp_path, log, capsys):
    sweep = write_sweep(tmp_path, {"x": {"values": [1]}})
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert run_cli([str(sweep), "--out", str(blocker / "out")]) == 2
    assert "is not writable" in capsys.readouterr().err and not log.exists()


def test_a_second_runner_on_the_same_out_and_a_changed_command_are_refused(tmp_path, log, capsys):
    sweep = write_sweep(tmp_path, {"x": {"values": [1]}})
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".sweep.lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert run_cli([str(sweep), "--out", str(out)]) == 2
    assert "another `seqmix sweep` is running" in capsys.readouterr().err and not log.exists()
    assert run_cli([str(sweep), "--out", str(out)]) == 0
    other = write_sweep(tmp_path, {"x": {"values": [1]}}, command=["${interpreter}", "${program}", "--y=1", "${args}"])
    assert run_cli([str(other), "--out", str(out)]) == 2
    assert "different 'command'" in capsys.readouterr().err


def test_dry_run_prints_every_command_and_writes_nothing(tmp_path, log, capsys):
    sweep = write_sweep(tmp_path, {"x": {"values": [1, 2]}})
    out = tmp_path / "out"
    assert run_cli([str(sweep), "--out", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(" todo " in ln and "--trainer.default_root_dir=" in ln for ln in lines[1:])
    assert f"{sys.executable} " in lines[1] and "--x=1" in lines[1] and "--x=2" in lines[2]
    assert not out.exists() and not log.exists()


def test_random_sweeps_need_a_run_limit_and_are_reproducible(tmp_path, log, capsys):
    params = {"x": {"distribution": "q_uniform", "min": 0, "max": 100, "q": 1}}
    sweep = write_sweep(tmp_path, params, method="random")
    assert run_cli([str(sweep), "--out", str(tmp_path / "o0")]) == 2
    assert "--max-runs" in capsys.readouterr().err
    for out in ("o1", "o2"):
        assert run_cli([str(sweep), "--out", str(tmp_path / out), "--max-runs", "3", "--seed", "7"]) == 0
    assert [r["x"] for r in read_table(tmp_path / "o1")[1]] == [r["x"] for r in read_table(tmp_path / "o2")[1]]


@pytest.mark.parametrize("mode", ["offline", "disabled"])
def test_wandb_mode_and_group_reach_each_run(tmp_path, log, monkeypatch, mode):
    monkeypatch.setenv("STUB_ENV_DUMP", "1")
    sweep = write_sweep(tmp_path, {"x": {"values": [1]}}, name="grouped")
    out = tmp_path / "out"
    assert run_cli([str(sweep), "--out", str(out), "--wandb", mode]) == 0
    rid = read_table(out)[1][0]["run_id"]
    env = json.loads((out / "runs" / rid / "env.json").read_text())
    assert env["WANDB_MODE"] == mode and env["SEQMIX_RUN_ID"] == rid
    if mode == "offline":
        assert env["WANDB_RUN_GROUP"] == "grouped" and env["WANDB_DIR"] == str(out / "runs" / rid)


def test_the_table_is_replaced_atomically_and_keeps_rows_across_reloads(tmp_path, monkeypatch):
    path = tmp_path / "results.csv"
    table = ResultsTable(path)
    table.record("a", "ok", {"lr": 0.1}, {"val/acc": 0.5}, exit_code=0)
    table.record("b", "failed", {"lr": 0.2, "mixer": "mamba"}, {}, exit_code=3, error="boom, with a comma")
    before = path.read_text()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        table.record("c", "ok", {"lr": 0.3}, {"val/acc": 0.7})
    assert path.read_text() == before  # the crash left the previous table whole, and no temp file behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]
    monkeypatch.undo()

    again = ResultsTable(path)
    assert list(again.rows) == ["a", "b"] and again.rows["b"]["error"] == "boom, with a comma"
    again.record("b", "ok", {"lr": 0.2, "mixer": "mamba"}, {"val/acc": 0.9, "val/loss": 1.5}, exit_code=0)
    header, rows = read_table(tmp_path)
    assert header == ["run_id", "status", "lr", "mixer", "val/acc", "val/loss", *TAIL]
    assert [(r["run_id"], r["status"], r["val/acc"]) for r in rows] == [("a", "ok", "0.5"), ("b", "ok", "0.9")]


def test_a_rerun_kills_runs_orphaned_by_a_killed_runner_before_redoing_them(tmp_path, log, monkeypatch):
    psutil = pytest.importorskip("psutil")
    sweep = write_sweep(tmp_path, {"x": {"values": [1]}, "sleep": {"value": 30}})
    out = tmp_path / "out"
    runner = spawn_runner(sweep, out, stub_env(log))
    wait_for(lambda: launches(log)[2])
    runner.kill()
    runner.wait()
    (orphan,) = next(iter(launches(log)[2].values()))
    assert psutil.pid_exists(orphan) and psutil.Process(orphan).status() != psutil.STATUS_ZOMBIE

    fail_file = tmp_path / "fail"
    fail_file.write_text("1")  # the redo fails at once instead of sleeping 30 s
    monkeypatch.setenv("STUB_FAIL_FILE", str(fail_file))
    assert run_cli([str(sweep), "--out", str(out)]) == 1

    def gone() -> bool:
        try:
            return psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(gone, timeout=5)
    starts, ends, _ = launches(log)
    assert sum(starts.values()) == 2 and sum(ends.values()) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_runner_kills_its_runs_and_records_none_of_them(tmp_path, log, sig):
    psutil = pytest.importorskip("psutil")
    sweep = write_sweep(tmp_path, {"x": {"values": [1, 2]}, "sleep": {"value": 30}})
    out = tmp_path / "out"
    runner = spawn_runner(sweep, out, stub_env(log), "--workers", "2")
    wait_for(lambda: len(launches(log)[2]) == 2)
    runner.send_signal(sig)
    output, _ = runner.communicate(timeout=20)
    assert runner.returncode == 130, output
    assert "stopped; runs that did not finish have no row" in output
    assert not (out / "results.csv").exists() or read_table(out)[1] == []
    for pids in launches(log)[2].values():
        assert not psutil.pid_exists(pids[0]) or psutil.Process(pids[0]).status() == psutil.STATUS_ZOMBIE
