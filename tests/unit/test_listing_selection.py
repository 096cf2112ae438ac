"""Trial runs and input lists: deterministic sampling, limits, and the three list formats."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curator import storage
from curator.config import ConfigError, PipelineConfig
from curator.listing import (
    InputListError,
    input_list_columns,
    inputs_for,
    lowest_keys,
    read_input_list,
    sample_key,
    select_inputs,
)
from curator.records import new_video_row

pytestmark = pytest.mark.unit


def _rows(n):
    return [new_video_row(f"file:///in/v{i:04d}.mp4", f"v{i:04d}.mp4") for i in range(n)]


def test_sample_is_deterministic_seeded_and_nested():
    rows = _rows(2000)
    keys = lambda it: [r["source_key"] for r in it]  # noqa: E731
    a = keys(select_inputs(rows, sample=0.1, seed=0))
    assert a == keys(select_inputs(rows, sample=0.1, seed=0))  # same fraction, same videos
    assert 150 < len(a) < 250
    assert set(a) <= set(keys(select_inputs(rows, sample=0.3, seed=0)))  # a larger fraction: a superset
    assert a != keys(select_inputs(rows, sample=0.1, seed=1))  # another seed, another subset
    assert keys(select_inputs(rows, sample=1.0)) == keys(rows)
    assert a == sorted(a)  # listing order kept


def test_limit_takes_the_first_n_after_the_sample():
    rows = _rows(50)
    assert [r["source_key"] for r in select_inputs(rows, limit=3)] == ["v0000.mp4", "v0001.mp4", "v0002.mp4"]
    sampled = list(select_inputs(rows, sample=0.5, seed=3))
    assert list(select_inputs(rows, limit=2, sample=0.5, seed=3)) == sampled[:2]

    def endless():
        i = 0
        while True:
            yield new_video_row(f"file:///in/{i}.mp4", f"{i}.mp4")
            i += 1

    assert len(list(select_inputs(endless(), limit=4))) == 4  # lazy: stops reading the listing


def test_lowest_keys_is_the_start_of_the_sample_order():
    rows = _rows(300)
    low = lowest_keys(iter(rows), 5, seed=7)
    ranked = sorted(rows, key=lambda r: sample_key(r["source_key"], 7))[:5]
    assert low == ranked
    # the smallest fraction that keeps anything keeps exactly these first
    cut = sample_key(low[1]["source_key"], 7) + 1e-12
    assert {r["source_key"] for r in select_inputs(rows, sample=cut, seed=7)} == {r["source_key"] for r in low[:2]}


@pytest.mark.parametrize("value, needle", [("0", "0 < f <= 1"), ("1.5", "0 < f <= 1"), ("-0.1", "0 < f <= 1")])
def test_a_bad_fraction_is_a_config_error_naming_the_key(value, needle):
    with pytest.raises(ConfigError, match="run.sample") as err:
        PipelineConfig.load(None, [f"run.sample={value}"])
    assert needle in str(err.value)
    with pytest.raises(ConfigError, match="run.limit"):
        PipelineConfig.load(None, ["run.limit=0"])


def test_text_list_with_comments_relative_paths_and_uris(tmp_path):
    (tmp_path / "clips").mkdir()
    lst = tmp_path / "inputs.txt"
    lst.write_text("# my inputs\nclips/a.mp4\n\n/abs/b.mp4\ns3://bucket/raw/c.mp4\n")
    rows = list(read_input_list(str(lst)))
    assert [r["source_uri"] for r in rows] == [storage.normalize(str(tmp_path / "clips" / "a.mp4")),
                                               "file:///abs/b.mp4", "s3://bucket/raw/c.mp4"]
    assert rows[2]["source_key"] == "s3://bucket/raw/c.mp4"
    assert input_list_columns(str(lst)) == []
    # with --input, keys below it are relative, so video ids match a run over that folder
    under = list(read_input_list(str(lst), str(tmp_path)))
    assert under[0]["source_key"] == "clips/a.mp4"
    assert under[0]["video_id"] == new_video_row("x", "clips/a.mp4")["video_id"]


def test_csv_and_parquet_lists_carry_their_columns_as_strings(tmp_path):
    csv_file = tmp_path / "inputs.csv"
    csv_file.write_text("uri,source_caption,license,year\n/v/a.mp4,a dog,cc-by,2021\n/v/b.mp4,,cc0,\n")
    assert input_list_columns(str(csv_file)) == ["source_caption", "license", "year"]
    rows = list(read_input_list(str(csv_file)))
    assert [(r["source_uri"], r["source_caption"], r["license"], r["year"]) for r in rows] == [
        ("file:///v/a.mp4", "a dog", "cc-by", "2021"), ("file:///v/b.mp4", "", "cc0", "")]

    pq_file = tmp_path / "inputs.parquet"
    pq.write_table(pa.table({"license": ["cc0", None], "uri": ["/v/a.mp4", "/v/b.mp4"], "year": [2021, 2022]}),
                   pq_file)
    assert input_list_columns(str(pq_file)) == ["license", "year"]
    rows = list(read_input_list(str(pq_file)))
    assert [(r["license"], r["year"]) for r in rows] == [("cc0", "2021"), (None, "2022")]


def test_input_list_errors_are_one_clear_line(tmp_path):
    with pytest.raises(InputListError, match="input list not found: .*nope.csv"):
        input_list_columns(str(tmp_path / "nope.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("path,license\n/v/a.mp4,cc0\n")
    with pytest.raises(InputListError, match="no 'uri' column \\(columns: path, license\\)"):
        input_list_columns(str(bad))
    pq.write_table(pa.table({"url": ["/v/a.mp4"]}), tmp_path / "bad.parquet")
    with pytest.raises(InputListError, match="no 'uri' column \\(columns: url\\)"):
        input_list_columns(str(tmp_path / "bad.parquet"))
    empty_uri = tmp_path / "empty.csv"
    empty_uri.write_text("uri,license\n/v/a.mp4,cc0\n,cc0\n")
    with pytest.raises(InputListError, match="row 3: empty 'uri'"):
        list(read_input_list(str(empty_uri)))


def test_inputs_for_uses_the_list_then_sample_and_limit(tmp_path):
    lst = tmp_path / "inputs.txt"
    lst.write_text("".join(f"/v/{i}.mp4\n" for i in range(40)))
    cfg = PipelineConfig.load(None, ["run.limit=3"], input_list=str(lst))
    assert [r["source_uri"] for r in inputs_for(cfg)] == ["file:///v/0.mp4", "file:///v/1.mp4", "file:///v/2.mp4"]
    cfg = PipelineConfig.load(None, ["run.sample=0.25", "run.sample_seed=5"], input_list=str(lst))
    picked = [r["source_key"] for r in inputs_for(cfg)]
    assert picked == [r["source_key"] for r in select_inputs(read_input_list(str(lst)), sample=0.25, seed=5)]
    assert 0 < len(picked) < 40
