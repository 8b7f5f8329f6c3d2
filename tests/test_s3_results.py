"""--results-dir as an S3 URI, against a local S3-compatible server (moto, bound to 127.0.0.1)
started by the test: the store, checkpoints and a whole bench.run land in the bucket; an
upload is invisible until complete, so a reader never sees half a file; a bad URI or an
unreachable bucket is one line and exit 2 before Ray starts."""
from __future__ import annotations

import logging
import os

import pytest

pytest.importorskip("moto")


@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def bucket_uri(s3_server, request):
    import pyarrow.fs as pafs

    name = f"b{abs(hash(request.node.name)) % 10 ** 8}"
    query = f"endpoint_override={s3_server}&scheme=http"
    fs, _ = pafs.FileSystem.from_uri(f"s3://{name}?{query}&allow_bucket_creation=true")
    fs.create_dir(name)
    return f"s3://{name}/results?{query}"


def _row(i: int):
    from tests.test_write_failures import _run_row

    return _run_row(i)


def test_store_round_trip_on_s3(bucket_uri):
    from results import ResultStore

    store = ResultStore(bucket_uri)
    assert str(store.root).startswith("s3://") and "?" not in str(store.root)  # endpoint settings not shown
    assert not store.exists()
    store.check_writable()
    for i in range(3):
        store.write_run(*_row(i))
    assert store.exists()
    assert store.finished_run_ids() == {"r0000", "r0001", "r0002"}
    assert sorted(store.load_runs()["run_id"]) == ["r0000", "r0001", "r0002"]
    assert len(store.load_evals()) == 600
    store.write_run(*_row(1))  # a re-write replaces the run's rows
    assert len(store.load_runs()) == 3 and store.finished_run_ids() == {"r0000", "r0001", "r0002"}
    assert not [n for n in store.storage.list("runs") if n.startswith(".tmp-")]


def test_an_upload_is_invisible_until_it_completes(bucket_uri):
    from results import ResultStore

    store = ResultStore(bucket_uri)
    fs, rel = store.storage.fs, store.storage.path("runs/half.parquet")
    out = fs.open_output_stream(rel)
    out.write(b"PAR1" + b"\0" * 100_000)  # a writer killed here leaves no object at all
    assert fs.get_file_info(rel).type.name == "NotFound"
    assert store.finished_run_ids() == set() and store.load_runs().empty
    out.close()
    assert fs.get_file_info(rel).type.name == "File"


def test_checkpoints_on_s3_resume_exactly(bucket_uri):
    import pytest as _pytest

    from bench.checkpoint import RunCheckpoints
    from bench.config import RunConfig, RunEnv
    from bench.engine import train_run
    from tests.test_resume import Stop, StopAt

    cfg = RunConfig.from_dict(dict(dataset="two_circles", algorithm="pseudo_label", network="mlp", n_labels=50,
                                   steps=30, eval_every=10, batch_labeled=16, batch_unlabeled=32)).resolved()
    ref = train_run(cfg, RunEnv(bucket_uri.replace("/results?", "/ref?")))
    env = RunEnv(bucket_uri, checkpoint_every_min=0)
    with _pytest.raises(Stop):
        train_run(cfg, env, reporter=StopAt(20))
    assert RunCheckpoints(bucket_uri, cfg.run_id).manifest()["step"] == 19
    out = train_run(cfg, env)
    assert out.run_row["resumed_from_step"] == 19
    assert [(r["error"], r["loss"]) for r in out.eval_rows] == [(r["error"], r["loss"]) for r in ref.eval_rows]
    assert RunCheckpoints(bucket_uri, cfg.run_id).manifest() is None  # spent


@pytest.mark.ray
def test_bench_run_with_an_s3_results_dir(bucket_uri, capsys):
    from bench.run import main
    from results import ResultStore

    args = ["--suite", "smoke", "--datasets", "two_circles", "--algorithms", "supervised,meta_semi",
            "--results-dir", bucket_uri, "--num-cpus", "2", "--checkpoint-every-min", "0"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 to run" in out and "results in s3://" in out
    store = ResultStore(bucket_uri)
    runs = store.load_runs()
    assert len(runs) == 2 and set(runs["status"]) == {"ok"} and set(runs["resumed_from_step"]) == {0}
    assert len(store.load_evals()) > 0
    import pyarrow.fs as pafs

    files = [i.path[len(store.storage.base) + 1:] for i in
             store.storage.fs.get_file_info(pafs.FileSelector(store.storage.base, recursive=True))
             if i.type == pafs.FileType.File]
    assert sorted(f.split("/")[0] for f in files) == ["evals"] * 2 + ["runs"] * 2, files  # Ray's state, checkpoints gone
    assert main(args) == 0 and "2 already finished, 0 to run" in capsys.readouterr().out


@pytest.mark.parametrize("uri, needle", [("hdfs://namenode:9000/x", "scheme hdfs:// is not supported"),
                                         ("s3://no-such-bucket-here/r", "not writable")])
def test_bad_uri_is_one_line_exit_2_before_ray(uri, needle, s3_server, capsys):
    import ray

    from bench.run import main

    if uri.startswith("s3://"):
        uri += f"?endpoint_override={s3_server}&scheme=http"
    with pytest.raises(SystemExit) as e:
        main(["--suite", "smoke", "--datasets", "two_circles", "--algorithms", "supervised", "--results-dir", uri])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
    assert not ray.is_initialized()
