"""Training configs (flags or one JSON/YAML file) and the seeded, resumable batch schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hardneg.core.beir import DataError
from hardneg.core.negatives import MinedQuery, write_mined
from hardneg.trainers.config import TrainingConfig, config_from_mapping, load_config
from hardneg.trainers.data import PAD_ID, BatchSchedule, TrainExample, load_examples
from hardneg.trainers.launch import parse_overrides


def test_flat_and_sectioned_configs_agree(tmp_path: Path) -> None:
    flat = config_from_mapping({"learning_rate": 1e-5, "top_k": 50, "negatives": "n.jsonl"})
    sectioned = config_from_mapping(
        {"train": {"learning_rate": 1e-5}, "adore": {"top_k": 50}, "data": {"negatives": "n.jsonl"}}
    )
    assert flat == sectioned
    assert flat.train.learning_rate == 1e-5 and flat.adore.top_k == 50
    assert flat.data.negatives == Path("n.jsonl")
    assert flat.train.per_device_batch_size == TrainingConfig().train.per_device_batch_size


def test_config_file_json_and_yaml_with_overrides(tmp_path: Path) -> None:
    as_json = tmp_path / "run.json"
    as_json.write_text(json.dumps({"max_steps": 7, "eval": {"split": "dev"}}))
    as_yaml = tmp_path / "run.yaml"
    as_yaml.write_text("max_steps: 7\neval:\n  split: dev\n")
    assert load_config(as_json) == load_config(as_yaml)
    overridden = load_config(as_yaml, parse_overrides(["max_steps=9", "precision=bf16"]))
    assert overridden.train.max_steps == 9 and overridden.train.precision == "bf16"
    assert overridden.eval.split == "dev"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ({"learning_rat": 1e-5}, "learning_rat: Extra inputs are not permitted"),
        ({"train": {"top_k": 3}}, "train.top_k: Extra inputs are not permitted"),
        ({"max_steps": "ten"}, "train.max_steps: Input should be a valid integer"),
        ({"precision": "fp8"}, "train.precision: Input should be 'fp32', 'fp16' or 'bf16'"),
        ({"per_device_batch_size": 0}, "per_device_batch_size"),
    ],
)
def test_bad_config_names_file_and_key(
    tmp_path: Path, content: dict[str, object], fragment: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DataError) as error:
        load_config(path)
    assert str(path) in str(error.value) and fragment in str(error.value)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("max_steps: 3\nlearning_rate: [1\n")
    with pytest.raises(DataError, match=r"bad\.yaml:\d+: malformed YAML"):
        load_config(path)


def _examples(n: int) -> list[TrainExample]:
    return [
        TrainExample(
            f"q{i}",
            f"query {i}",
            (f"p{i}",),
            (f"positive {i}",),
            tuple(f"n{i}-{j}" for j in range(i % 4)),
            tuple(f"negative {i}-{j}" for j in range(i % 4)),
        )
        for i in range(n)
    ]


def test_schedule_is_seeded_covers_each_epoch_and_pads_negatives() -> None:
    schedule = BatchSchedule(_examples(10), global_batch_size=4, negatives_per_query=2, seed=3)
    again = BatchSchedule(_examples(10), global_batch_size=4, negatives_per_query=2, seed=3)
    other = BatchSchedule(_examples(10), global_batch_size=4, negatives_per_query=2, seed=4)
    assert schedule.batches_per_epoch == 2  # the incomplete last batch is dropped
    assert [schedule.batch(m) for m in range(5)] == [again.batch(m) for m in range(5)]
    assert schedule.batch(0) != other.batch(0)
    epoch = schedule.batch(0).query_ids + schedule.batch(1).query_ids
    assert len(set(epoch)) == 8
    assert schedule.batch(2).query_ids != schedule.batch(0).query_ids  # a new permutation
    for m in range(4):
        batch = schedule.batch(m)
        assert len(batch.negative_ids) == 2 * len(batch)
        for i, query_id in enumerate(batch.query_ids):
            ids = batch.negative_ids[2 * i : 2 * i + 2]
            owned = int(query_id[1:]) % 4
            assert sum(d != PAD_ID for d in ids) == min(2, owned)
            assert all(d == PAD_ID or d.startswith(f"n{query_id[1:]}-") for d in ids)


def test_shards_concatenate_to_the_global_batch() -> None:
    batch = BatchSchedule(_examples(12), 6, 2, seed=0).batch(1)
    shards = [batch.shard(rank, 3) for rank in range(3)]
    assert sum((s.query_ids for s in shards), ()) == batch.query_ids
    assert sum((s.negative_ids for s in shards), ()) == batch.negative_ids
    with pytest.raises(ValueError, match="does not split"):
        batch.shard(0, 4)


def test_load_examples_skips_queries_without_positive(tmp_path: Path) -> None:
    path = tmp_path / "mined.jsonl"
    rows = [
        MinedQuery("q1", "a", ("d1",), ("t1",), ("d2", "d3", "d4"), ("t2", "t3", "t4")),
        MinedQuery("q2", "b", (), (), ("d2",), ("t2",)),
    ]
    write_mined(path, rows, {})
    examples = load_examples(path, negative_depth=2)
    assert [e.query_id for e in examples] == ["q1"]
    assert examples[0].negative_ids == ("d2", "d3")
    write_mined(path, rows[1:], {})
    with pytest.raises(DataError, match="no query with a positive"):
        load_examples(path)
