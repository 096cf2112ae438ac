"""`curator` command line. Every option of the pipeline is a config key: pass a YAML file
with --config and/or `--set section.key=value`; `curator config --defaults` lists them all."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from curator.config import ConfigError, PipelineConfig


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="YAML config file (see `curator config --defaults`)")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set stages.split.method=scenedetect (repeatable)")


def _load(args: argparse.Namespace, **top: Any) -> PipelineConfig:
    return PipelineConfig.load(getattr(args, "config", None), getattr(args, "overrides", []), **top)


#: libraries that log their own start-up details at INFO
QUIET_LOGGERS = ("faiss", "faiss.loader", "httpx", "urllib3", "filelock", "huggingface_hub")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="[curator] %(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


def _stop_on_sigterm() -> None:
    """SIGTERM (`curator jobs stop`, a pre-empted node) ends the run like Ctrl-C: finished
    videos stay finished, progress.json says `stopped`, nothing half-written looks complete."""
    import signal
    import threading

    from curator.driver import RunStopped

    def handler(signum: int, frame: Any) -> None:
        raise RunStopped(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


# --------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    from curator import pipeline as pl
    from curator.driver import execute
    from curator.progress import Progress
    from curator.runners import make_runner

    cfg = _run_config_of(args)
    _setup_logging(cfg.run.log_level)
    pipeline = pl.build(cfg)
    if pipeline.skipped:
        print("[curator] " + pipeline.skipped_table(), file=sys.stderr)
    runner = make_runner(cfg)
    _stop_on_sigterm()
    summary = execute(pipeline, runner, force=args.force, progress=Progress(interval_s=cfg.run.progress_interval_s),
                      notify=lambda line: print(f"[curator] {line}", file=sys.stderr))
    print(summary.format())
    return run_status(summary, cfg)


def _selection(args: argparse.Namespace) -> list[str]:
    """--limit / --sample / --seed as the config keys they set (validated with the config)."""
    out = []
    for flag, key in (("limit", "run.limit"), ("sample", "run.sample"), ("seed", "run.sample_seed")):
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"{key}={value}")
    return out


def _run_config_of(args: argparse.Namespace, **extra: Any) -> PipelineConfig:
    """The config of `curator run` / `plan`: file < --set < the run flags."""
    run_over: dict[str, Any] = {}
    if getattr(args, "address", None):
        run_over["address"] = args.address
    if args.runner:
        run_over["runner"] = args.runner
    if getattr(args, "only_failed", False):
        run_over["only_failed"] = True
    args.overrides = list(args.overrides) + _selection(args)
    cfg = _load(args, input=args.input, output=getattr(args, "output", None), input_list=args.input_list, **extra)
    if run_over:
        cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update=run_over)})
    return cfg


#: `curator run` exit statuses beyond 0 (done), 1 (error), 2 (bad config), 130 (Ctrl-C), 143 (stopped)
EXIT_NO_INPUT = 3
EXIT_TOO_MANY_ERRORS = 4


def run_status(summary: Any, cfg: PipelineConfig) -> int:
    """0 when the run did its work within run.max_error_rate; else a status and one line."""
    if summary.videos == 0:
        where = (f"in the input list {cfg.input_list}" if cfg.input_list else
                 f"under {cfg.input} (extensions: {', '.join(cfg.stages.ingest.extensions)})")
        trial = f"; run.sample={cfg.run.sample:g} kept none of them" if cfg.run.sample else ""
        print(f"curator: no input videos {where}{trial}; check the path or prefix", file=sys.stderr)
        return EXIT_NO_INPUT
    if summary.error_rate > cfg.run.max_error_rate:
        print(f"curator: {summary.videos_failed} of {summary.videos} videos failed ({summary.error_rate:.0%}), "
              f"more than run.max_error_rate={cfg.run.max_error_rate:g}; their reasons are in the manifest "
              "(`curator report OUTPUT`); rerun with --only-failed after fixing the cause", file=sys.stderr)
        return EXIT_TOO_MANY_ERRORS
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from curator import plan
    from curator.progress import Progress

    cfg = _run_config_of(args)
    # the trial's own INFO lines (its temporary output, its index) would only confuse
    _setup_logging("WARNING" if cfg.run.log_level.upper() == "INFO" else cfg.run.log_level)
    if args.sample_videos < 0 or args.probe_videos < 1:
        print("curator: --sample-videos must be >= 0 and --probe-videos >= 1", file=sys.stderr)
        return 2
    result = plan.make_plan(cfg, sample_videos=args.sample_videos, probe_videos=args.probe_videos,
                            progress=Progress(interval_s=cfg.run.progress_interval_s),
                            say=lambda line: print(f"[curator] {line}", file=sys.stderr))
    print(result.format())
    if args.json:
        plan.write_json(result, args.json)
        print(f"json:        {args.json}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from curator import jobs

    overrides = list(args.overrides) + _selection(args)
    cfg = jobs.load_checked(args.config, overrides, input=args.input, output=args.output, input_list=args.input_list)
    job_id = jobs.submit(args.address, cfg, config_file=args.config, overrides=overrides, force=args.force,
                         only_failed=args.only_failed, runner=args.runner, env_names=args.env,
                         upload_code=args.code == "upload", job_id=args.job_id)
    if not args.wait:
        print(job_id)
        return 0
    final = jobs.wait(jobs.client(args.address), job_id, timeout_s=args.timeout)
    print(f"[curator] job {job_id}: {final}")
    return 0 if final == "SUCCEEDED" else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    from curator import jobs

    jc = jobs.client(args.address)
    if args.action == "list":
        jobs.list_jobs(jc)
        return 0
    if not args.job_id:
        print(f"curator: jobs {args.action} needs a JOB_ID (see `curator jobs list`)", file=sys.stderr)
        return 2
    if args.action == "status":
        if args.json:
            import io

            report = jobs.status(jc, args.job_id, out=io.StringIO())
            print(jobs.to_json(report))
        else:
            jobs.status(jc, args.job_id)
        return 0
    if args.action == "logs":
        jobs.logs(jc, args.job_id, follow=args.follow)
        return 0
    jobs.stop(jc, args.job_id, wait_s=args.timeout or 60.0)  # JobError (exit 1) if it does not end in time
    return 0



def cmd_config(args: argparse.Namespace) -> int:
    cfg = PipelineConfig() if args.defaults else _load(args)
    if args.json:
        print(json.dumps(cfg.model_dump(mode="json"), indent=1))
    else:
        print(cfg.to_yaml(comments=args.defaults))
    return 0


def _rundir(args: argparse.Namespace, cfg: PipelineConfig) -> Any:
    """The run folder named on the command line, with this config's storage options (made
    the process's: the CLI is one run's driver)."""
    from curator.rundir import RunDir

    return RunDir.activated(args.run, cfg.storage)


def _local_runner(args: argparse.Namespace, cfg: PipelineConfig) -> PipelineConfig:
    """Run-level commands run in this process unless --runner asks for Ray."""
    return cfg.model_copy(update={"run": cfg.run.model_copy(update={"runner": args.runner or "local"})})


def cmd_shard(args: argparse.Namespace) -> int:
    from curator.phases import PhaseState
    from curator.phases import shard as shard_phase
    from curator.runners import make_runner

    cfg = _load(args, output=args.run)
    _rundir(args, cfg)
    if not args.config:  # the run's own config.yaml is the base; --set overrides it
        cfg = _run_config(args, cfg) or cfg
    cfg = _local_runner(args, cfg)
    results = shard_phase.run(PhaseState(_rundir(args, cfg), cfg, make_runner(cfg)))
    counts = ", ".join(f"{split}/{profile} {sum(r['samples'] for r in results if r['split'] == split and r['profile'] == profile)}"
                       for split in cfg.shard.splits for profile in cfg.shard.profile)
    print(f"{len(results)} shards, {sum(r['samples'] for r in results)} samples ({counts})")
    return 0


def cmd_dedup(args: argparse.Namespace) -> int:
    from curator import dedup, storage
    from curator.phases import PhaseError, PhaseState
    from curator.phases import dedup as dedup_phase
    from curator.runners import make_runner

    cfg = _local_runner(args, _load(args, output=args.run))
    _setup_logging(cfg.run.log_level)
    try:
        res = dedup_phase.run(PhaseState(_rundir(args, cfg), cfg, make_runner(cfg)), always=True)
    except PhaseError as exc:
        print(f"curator: {str(exc).removeprefix('dedup: ')}", file=sys.stderr)
        return 1
    print(dedup.format_stats(res.stats))
    print(f"report:           {storage.display(res.report_uri)}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from curator import index, storage
    from curator.phases import PhaseState
    from curator.phases import index as index_phase

    cfg = _load(args, output=args.run)
    rundir = _rundir(args, cfg)
    target = storage.normalize(args.index) if args.index else index.index_uri_for(rundir.uri, cfg.index)
    try:
        res = index_phase.run(PhaseState(rundir, cfg), index_uri=target)
    except index.SearchError as exc:
        print(f"curator: {exc}", file=sys.stderr)
        return 1
    assert res is not None  # an explicit target always indexes
    print(f"{res['added']} clips added ({res['skipped']} already indexed) to {storage.display(res['index'])}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from curator import index, storage, where

    cfg = _load(args)
    storage.configure(cfg.storage)  # an index, not a run folder: this process is its only reader
    if args.text and args.like:
        print("curator: give a text query or --like CLIP_ID, not both", file=sys.stderr)
        return 2
    try:
        meta = index.read_meta(args.index)
        vec = None
        if args.like:
            vec = index.like_vector(meta, args.like)
        elif args.text:
            vec = index.text_vector(meta, args.text, cfg.models.dir)
        hits = index.search(args.index, vector=vec, where_text=args.where, limit=args.limit,
                            nprobe=cfg.index.nprobe, exclude=args.like)
    except (index.SearchError, where.WhereError) as exc:
        print(f"curator: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([{"score": h.score, **h.row} for h in hits], default=str, indent=1))
    else:
        cols = args.columns.split(",") if args.columns else None
        print(index.format_table(hits, cols))
    return 0


def _run_config(args: argparse.Namespace, cfg: PipelineConfig) -> PipelineConfig | None:
    """The config a finished run recorded (config.yaml under its output), with --set applied."""
    from curator.rundir import RunDir

    got = RunDir.of(args.run).read_config()
    if got is None:
        return None
    return PipelineConfig.load(None, args.overrides, output=args.run, base=got[0])


def _model_dir(args: argparse.Namespace) -> str:
    import os

    if args.model_dir:
        return os.path.expanduser(args.model_dir)
    return os.path.expanduser(_load(args).models.dir)


def _config_models(cfg: PipelineConfig) -> list[str]:
    """Models the enabled stages of this config read from the model directory."""
    st = cfg.stages
    names = []
    if "embed" in st.order and st.embed.enabled and st.embed.model != "perceptual":
        names.append(st.embed.model)
    if "caption" in st.order and st.caption.enabled and st.caption.backend != "endpoint":
        names.append(st.caption.model)
    if "aesthetic" in st.order and st.aesthetic.enabled:
        names.append(st.aesthetic.clip_model)
    return names


def cmd_models(args: argparse.Namespace) -> int:
    from curator.models import registry

    model_dir = _model_dir(args)
    if args.action == "list":
        names = list(registry.KNOWN) + [n for n in registry.installed(model_dir) if n not in registry.KNOWN]
        print(f"model directory: {model_dir}")
        for name in names:
            st = registry.status(name, model_dir)
            size = f"~{st.size_mb:,.0f} MB" if st.size_mb else ""
            mark = "present" if st.present else "missing"
            print(f"  {mark:8s} {name:42s} {size:>10s}  {st.path}")
            if st.description:
                print(f"           {st.description}")
        return 0
    if args.action == "check":
        names = args.names or _config_models(_load(args))
        if not names:
            print("the configured stages need no model from the model directory")
            return 0
        bad = 0
        for name in names:
            try:
                st = registry.status(name, model_dir)
            except registry.ModelError as exc:
                print(f"INVALID  {exc}")
                bad += 1
                continue
            if st.present:
                print(f"ok       {name}: {st.path}")
            else:
                bad += 1
                print(f"MISSING  {name}: " + ", ".join(st.missing))
                print(f"         fix: {registry.download_command(name, args.model_dir)}")
        return 1 if bad else 0
    # download
    for name in args.names:
        try:
            dest = registry.model_path(name, model_dir)
            if args.dry_run:
                print(f"{name}: would download from {registry.spec_for(name).source} into {dest}")
                continue
            registry.download(name, model_dir)
        except registry.ModelError as exc:
            print(f"curator: {exc}", file=sys.stderr)
            return 1
    return 0


def cmd_refilter(args: argparse.Namespace) -> int:
    from curator.phases import refilter
    from curator.rundir import RunDir
    from curator.runners import make_runner

    cfg, _ = refilter.load_run_config(RunDir.of(args.run), args.config, args.overrides)
    _setup_logging(cfg.run.log_level)
    runner = None
    if not args.no_shard:
        runner = make_runner(_local_runner(args, cfg))
    summary = refilter.refilter(args.run, args.config, args.overrides, runner=runner, shard=not args.no_shard)
    print(summary.format())
    return 0


def cmd_train_type_head(args: argparse.Namespace) -> int:
    from stages import video_type

    cfg = _load(args)
    _setup_logging(cfg.run.log_level)
    report = video_type.train_head_cli(args.run, args.labels, cfg, out=args.out, epochs=args.epochs)
    print(report)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from curator import storage
    from curator.phases import PhaseState
    from curator.phases import report as report_phase

    cfg = _load(args)
    _setup_logging(cfg.run.log_level)
    uri = report_phase.run(PhaseState(_rundir(args, cfg), cfg), output=args.output)
    print(f"report: {storage.display(uri)}")
    return 0


# ------------------------------------------------------------------------ parser
def _input_args(p: argparse.ArgumentParser) -> None:
    """Which inputs: `curator run`, `submit` and `plan` take the same ones."""
    p.add_argument("--input", "-i", help="folder or bucket prefix of raw videos (file path, s3://, gs://, az://)")
    p.add_argument("--input-list", metavar="FILE",
                   help="the inputs from a file instead: text (one URI per line), or CSV / Parquet with a 'uri' "
                        "column whose other columns go into the manifest (sets input_list)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N inputs, in listing order (run.limit)")
    p.add_argument("--sample", type=float, metavar="FRACTION",
                   help="a deterministic fraction of the inputs, e.g. 0.05 (run.sample; same subset every time)")
    p.add_argument("--seed", type=int, help="seed of --sample's selection (run.sample_seed, default 0)")


def _run_args(p: argparse.ArgumentParser) -> None:
    """The options of a run: `curator run` and `curator submit` take the same ones."""
    _input_args(p)
    p.add_argument("--output", "-o", help="folder or bucket prefix for the results")
    p.add_argument("--runner", choices=["ray", "local"], help="override run.runner")
    p.add_argument("--force", action="store_true", help="redo everything, ignoring finished work in the output")
    p.add_argument("--only-failed", action="store_true",
                   help="redo only the videos that ended with an error in an earlier run into this output")
    _config_args(p)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="curator", description=__doc__)
    from curator import __version__

    ap.add_argument("--version", action="version", version=f"curator {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="curate videos: input URI -> clips, manifest and shards at output URI")
    p.add_argument("--address", help="Ray cluster address; without it an embedded Ray starts here")
    _run_args(p)
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("submit", help="submit a run to a Ray cluster as a job (Ray Jobs API)",
                       description="Runs `python -m curator run --address auto` with the same options on the "
                                   "cluster. Per-stage progress: `curator jobs status JOB_ID`.")
    p.add_argument("--address", help="the cluster's Ray dashboard, e.g. http://HEAD:8265 "
                                     "(default: env RAY_API_SERVER_ADDRESS or RAY_ADDRESS)")
    _run_args(p)
    p.add_argument("--wait", action="store_true", help="stream the job's logs until it ends; exit 0 only on success")
    p.add_argument("--timeout", type=float, metavar="S", help="with --wait: give up waiting after S seconds")
    p.add_argument("--env", action="append", default=[], metavar="NAME",
                   help="pass this environment variable (by name; its value is read here, never printed), "
                        "e.g. --env AWS_ACCESS_KEY_ID (repeatable)")
    p.add_argument("--code", choices=["upload", "installed"], default="upload",
                   help="upload this curator as py_modules (default), or use the one installed in the cluster image")
    p.add_argument("--job-id", help="submission id (default: chosen by Ray)")
    p.set_defaults(fn=cmd_submit)

    p = sub.add_parser("plan", help="before a run: count and probe the inputs, list the stages and where they run, "
                                    "then run a few videos and estimate wall time and CPU/GPU hours",
                       description="Runs the real pipeline (this config and runner) on --sample-videos inputs into a "
                                   "temporary folder and scales what it measured to the whole input by hours of "
                                   "footage. Takes the input and config options of `curator run`.")
    _input_args(p)
    p.add_argument("--runner", choices=["ray", "local"], help="override run.runner (the trial runs with it)")
    p.add_argument("--address", help="Ray cluster address; without it an embedded Ray starts here")
    p.add_argument("--sample-videos", type=int, default=2, metavar="K",
                   help="videos the trial runs (default 2; 0: no trial, no estimate)")
    p.add_argument("--probe-videos", type=int, default=32, metavar="P",
                   help="videos probed for hours of footage and resolutions (default 32)")
    p.add_argument("--json", metavar="FILE", help="also write the plan and estimate as JSON")
    _config_args(p)
    p.set_defaults(fn=cmd_plan)

    p = sub.add_parser("jobs", help="list, inspect, follow or stop submitted jobs")
    p.add_argument("action", choices=["list", "status", "logs", "stop"])
    p.add_argument("job_id", nargs="?", metavar="JOB_ID")
    p.add_argument("--address", help="the cluster's Ray dashboard, e.g. http://HEAD:8265")
    p.add_argument("--follow", "-f", action="store_true", help="logs: keep streaming until the job ends")
    p.add_argument("--json", action="store_true", help="status: print JSON (with the run's metrics)")
    p.add_argument("--timeout", type=float, metavar="S", help="stop: wait at most S seconds (default 60)")
    p.set_defaults(fn=cmd_jobs)

    p = sub.add_parser("config", help="print the resolved config (or the defaults, with comments)")
    p.add_argument("--defaults", action="store_true", help="every key with its default and description")
    p.add_argument("--json", action="store_true", help="JSON instead of YAML")
    _config_args(p)
    p.set_defaults(fn=cmd_config)

    p = sub.add_parser("shard", help="(re)write the webdataset shards of a finished run from its manifest "
                                     "(with the run's config.yaml unless --config is given; --set overrides)")
    p.add_argument("run", help="output URI of a run")
    p.add_argument("--runner", choices=["ray", "local"], help="default: local")
    _config_args(p)
    p.set_defaults(fn=cmd_shard)

    p = sub.add_parser("dedup", help="find exact and near-duplicate clips of a finished run; mark them in its manifest")
    p.add_argument("run", help="output URI of a run")
    p.add_argument("--runner", choices=["ray", "local"], help="default: local")
    _config_args(p)
    p.set_defaults(fn=cmd_dedup)

    p = sub.add_parser("index", help="add a run's clips to a clip index (incremental)")
    p.add_argument("run", help="output URI of a run")
    p.add_argument("--index", help="index URI (default: index.uri, else <run>/index)")
    _config_args(p)
    p.set_defaults(fn=cmd_index)

    p = sub.add_parser("search", help="search a clip index by text, by example clip, and by metadata")
    p.add_argument("index", help="index URI (e.g. <output>/index)")
    p.add_argument("text", nargs="?", help="text query (CLIP text tower; needs the index's CLIP model)")
    p.add_argument("--like", metavar="CLIP_ID", help="clips similar to this indexed clip")
    p.add_argument("--where", metavar="PREDICATE",
                   help="metadata filter, e.g. \"motion_tag = 'pan_left' AND clip_duration_s > 4\" (see docs/dedup.md)")
    p.add_argument("--limit", type=int, default=10, help="rows to show (default 10)")
    p.add_argument("--columns", help="comma-separated columns to show (default: clip_id,score,start_s,end_s,"
                                     "status,reason,clip_uri)")
    p.add_argument("--json", action="store_true", help="JSON rows instead of a table")
    _config_args(p)
    p.set_defaults(fn=cmd_search)

    p = sub.add_parser("models", help="the model directory: list | check | download NAME (the only command "
                                      "that contacts a model hub)")
    msub = p.add_subparsers(dest="action", required=True)
    helps = {
        "list": "known and installed models, present or missing, with their paths",
        "check": "exact missing paths of the named models (default: those the config's stages need); exit 1 if any",
        "download": "fetch models from their hub into the model directory and say where the files go",
    }
    for action, text in helps.items():
        mp = msub.add_parser(action, help=text)
        if action != "list":
            mp.add_argument("names", nargs="*" if action == "check" else "+", metavar="NAME",
                            help="e.g. open_clip:ViT-B-32/openai, hf:Qwen/Qwen2.5-VL-3B-Instruct")
        else:
            mp.set_defaults(names=[])
        if action == "download":
            mp.add_argument("--dry-run", action="store_true", help="only say where the files would go")
        mp.add_argument("--model-dir", help="override models.dir / CURATOR_MODEL_DIR")
        _config_args(mp)
        mp.set_defaults(fn=cmd_models)
    p = sub.add_parser("refilter", help="re-apply filter thresholds to a finished run from its manifest "
                                        "(no decoding), then re-shard")
    p.add_argument("run", help="output URI of a run")
    p.add_argument("--runner", choices=["ray", "local"], help="for re-sharding; default: local")
    p.add_argument("--no-shard", action="store_true", help="rewrite the manifest only")
    _config_args(p)
    p.set_defaults(fn=cmd_refilter)

    p = sub.add_parser("train-type-head", help="train the video-type MLP head from labelled clips of a run")
    p.add_argument("run", help="output URI of a run whose manifest has clip embeddings")
    p.add_argument("--labels", required=True, help="CSV or Parquet with columns clip_id,label")
    p.add_argument("--out", help="where to write the head (default: models.dir/<stages.video_type.head>)")
    p.add_argument("--epochs", type=int, default=200, help="training epochs")
    _config_args(p)
    p.set_defaults(fn=cmd_train_type_head)

    p = sub.add_parser("report", help="write a self-contained HTML report of a finished run")
    p.add_argument("run", help="output URI of a run")
    p.add_argument("--output", "-o", metavar="FILE.html", help="where to write it (default: RUN/report.html)")
    _config_args(p)
    p.set_defaults(fn=cmd_report)
    return ap


def main(argv: list[str] | None = None) -> int:
    from curator.driver import RunStopped

    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except RunStopped as exc:
        print(f"curator: stopped ({exc}); finished videos are kept, rerun to resume", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("\ncurator: interrupted; finished videos are kept, rerun the same command to resume",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `curator config --defaults | head`: the reader left, not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    except ConfigError as exc:
        print(f"curator: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from curator.jobs import JobError
        from curator.pipeline import PipelineError
        from curator.storage import StorageError

        if isinstance(exc, (PipelineError, StorageError, JobError)):
            print(f"curator: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
