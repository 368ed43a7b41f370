"""summaries: a resumed run's metrics.jsonl keeps no row of a step after the restored one."""

import json

from multimix_jax import summaries


def test_rows_of_steps_after_the_restored_one_are_dropped(tmp_path):
    rows = [{"step": s, "train/loss": 1.0} for s in (1, 2, 3, 4)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    writer = summaries.MetricWriter(tmp_path, start_step=2)
    writer.write_scalars(3, {"train/loss": 0.5})
    writer.close()
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["train/loss"]) for r in logged] == [(1, 1.0), (2, 1.0), (3, 0.5)]
