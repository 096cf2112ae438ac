"""`curator` command line. Every option of the pipeline is a config key: pass a YAML file
with --config and/or `--set section.key=value`; `curator config --defaults` lists them all.

-o/--output is where a command writes its result, in every command that has one: the
run folder (run, submit), the HTML file (report), the clip index (index), the head file
(train-type-head). Commands that update a finished run in place (shard, dedup, refilter)
take the run folder as their argument; search, config, jobs and models print."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from curator.config import ConfigError, PipelineConfig


class _Deprecated(argparse.Action):
    """An old spelling of an option: it still works (hidden from --help), with a note."""

    def __init__(self, option_strings: list[str], dest: str, instead: str = "", **kw: Any):
        self.instead = instead
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"curator: {option_string} is deprecated, use {self.instead} (same meaning: -o/--output is where "
              "a command writes, in every command)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _output_arg(p: argparse.ArgumentParser, metavar: str, text: str, old: str | None = None,
                required: bool = False) -> None:
    """-o/--output, the same option in every command that writes a result (`old`: a former spelling)."""
    p.add_argument("--output", "-o", metavar=metavar, help=text, required=required and not old)
    if old:
        p.add_argument(old, dest="output", metavar=metavar, action=_Deprecated, instead="-o/--output")


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
    notify = lambda line: print(f"[curator] {line}", file=sys.stderr)  # noqa: E731
    if not runner.distributed:
        summary = execute(pipeline, runner, force=args.force, progress=Progress(interval_s=cfg.run.progress_interval_s),
                          notify=notify)
    else:
        from curator.rundir import RunDir
        from curator.runlog import ray_output_to_log

        # Ray's own output (its notices, the Ray Data plan, what the workers print) goes to
        # the run log; the console keeps curator's progress and summary
        with ray_output_to_log(RunDir.of(pipeline.ctx.output_uri, cfg.storage), pipeline.ctx.run_id) as runlog:
            print(f"[curator] Ray's output goes to the run log: {runlog.where()}", file=runlog.console)
            summary = execute(pipeline, runner, force=args.force,
                              progress=Progress(stream=runlog.console, interval_s=cfg.run.progress_interval_s),
                              notify=lambda line: print(f"[curator] {line}", file=runlog.console))
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
    target = storage.normalize(args.output) if args.output else index.index_uri_for(rundir.uri, cfg.index)
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
            vec = index.text_vector(meta, args.text, cfg.models.dir,
                                    trust_remote_code=cfg.stages.embed.trust_remote_code,
                                    endpoint=cfg.stages.embed.endpoint)
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


def cmd_catalog(args: argparse.Namespace) -> int:
    from curator import index, storage
    from curator.catalog import compact, core
    from curator.catalog import dedup as catalog_dedup

    cfg = _load(args)
    _setup_logging(cfg.run.log_level)
    storage.configure(cfg.storage)  # a catalog, not a run folder: this process is its only user
    try:
        if args.action == "show":
            res = compact.describe(args.catalog)
        elif args.action == "compact":
            res = compact.compact(args.catalog, cfg.index, target_rows=cfg.catalog.compact_target_rows,
                                  vacuum_after_s=cfg.catalog.vacuum_after_s)
        elif args.action == "vacuum":
            res = {"vacuumed": compact.vacuum(args.catalog, older_than_s=cfg.catalog.vacuum_after_s)}
        else:
            res = catalog_dedup.full(args.catalog, cfg.dedup)
            if not args.json:
                print(catalog_dedup.format_result(res))
                return 0
    except (core.CatalogError, index.SearchError) as exc:
        print(f"curator: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(res, indent=1, default=str))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from curator import storage
    from curator.catalog import watch

    run_over: dict[str, Any] = {}
    if args.runner:
        run_over["runner"] = args.runner
    cfg = _load(args, input=args.input, output=args.output)
    if run_over:
        cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update=run_over)})
    _setup_logging(cfg.run.log_level)
    storage.configure(cfg.storage)
    _stop_on_sigterm()

    def report(cyc: watch.Cycle) -> None:
        print(json.dumps(watch.as_dict(cyc), default=str) if args.json else cyc.format(), flush=True)

    watch.watch(args.input, args.output, cfg, interval_s=args.interval, once=args.once, report=report)
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from curator import index, storage
    from curator.catalog import core, feedback

    cfg = _load(args)
    storage.configure(cfg.storage)
    try:
        clips = feedback.read_clip_list(storage.normalize(args.clips)) if args.clips else None
        doc = feedback.build(args.catalog, clips=clips, query=args.query, k=args.k, weight=args.weight,
                             model_dir=cfg.models.dir, nprobe=cfg.index.nprobe)
    except (core.CatalogError, index.SearchError) as exc:
        print(f"curator: {exc}", file=sys.stderr)
        return 1
    except storage.NotFound as exc:
        print(f"curator: {exc}", file=sys.stderr)
        return 1
    storage.write_bytes(storage.normalize(args.output), json.dumps(doc, indent=1).encode())
    missing = f"; {len(doc['missing'])} flagged clips are not in the catalog" if doc.get("missing") else ""
    print(f"{len(doc['weights'])} clips re-weighted x{args.weight:g} ({len(doc['flagged'])} flagged, k={args.k})"
          f"{missing}: {storage.display(storage.normalize(args.output))}")
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
    if "embed" in st.order and st.embed.enabled and st.embed.model != "perceptual" \
            and not st.embed.model.startswith("endpoint:"):
        names.append(st.embed.model)
    if "caption" in st.order and st.caption.enabled and st.caption.backend != "endpoint":
        names.append(st.caption.model)
    if "aesthetic" in st.order and st.aesthetic.enabled:
        names.append(st.aesthetic.clip_model)
    if "latent" in cfg.shard.profile and cfg.shard.latent.model.startswith("cosmos-tokenizer:"):
        names.append(cfg.shard.latent.model)  # a registered tokenizer id (paths and factories are checked at shard time)
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
            if args.dry_run:
                print(registry.plan(name, model_dir).describe())
                continue
            registry.download(name, model_dir)
        except registry.ModelError as exc:
            print(f"curator: {exc}", file=sys.stderr)
            return 1
    return 0


def cmd_latents(args: argparse.Namespace) -> int:
    from curator import latents
    from curator.models.tokenizer import TokenizerError

    cfg = _load(args, output=args.run)
    _rundir(args, cfg)
    if not args.config:  # the run's own config.yaml (its shard.latent settings) is the base; --set overrides it
        cfg = _run_config(args, cfg) or cfg
    _setup_logging(cfg.run.log_level)
    try:
        rep = latents.verify(args.run, cfg, sample=args.sample, split=args.split, seed=args.seed)
    except (latents.VerifyError, TokenizerError) as exc:
        print(f"curator: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rep, indent=1) if args.json else latents.format_report(rep))
    if args.min_psnr is not None and rep["mean_psnr_db"] < args.min_psnr:
        print(f"curator: mean PSNR {rep['mean_psnr_db']:.2f} dB is below --min-psnr {args.min_psnr:g}", file=sys.stderr)
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
    report = video_type.train_head_cli(args.run, args.labels, cfg, out=args.output, epochs=args.epochs)
    print(report)
    return 0


def cmd_train_tag_head(args: argparse.Namespace) -> int:
    from curator.type_head import train_tag_head_cli

    cfg = _load(args)
    _setup_logging(cfg.run.log_level)
    _rundir(args, cfg)
    if not 0 <= args.holdout < 1:
        print("curator: --holdout must be within [0, 1)", file=sys.stderr)
        return 2
    print(train_tag_head_cli(args.run, args.labels, cfg, out=args.output, epochs=args.epochs, holdout=args.holdout))
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    from curator import storage
    from curator.tagging import retag_run

    cfg = _load(args, output=args.run)
    if not args.config:  # the run's own config (taxonomy, head, method) is the base; --set overrides it
        cfg = _run_config(args, cfg) or cfg
    _setup_logging(cfg.run.log_level)
    rundir = _rundir(args, cfg)
    try:
        res = retag_run(rundir.uri, cfg)
    except (ValueError, FileNotFoundError) as exc:
        print(f"curator: {exc}", file=sys.stderr)
        return 1
    by = ", ".join(f"{k} {v}" for k, v in sorted(res["by_source"].items()))
    print(f"{res['tagged']} of {res['clips']} clips tagged ({by or 'none'}) in {storage.display(rundir.manifest)}")
    return 0


def _places(args: argparse.Namespace, cfg: PipelineConfig) -> Any:
    """The place taxonomy: --config's, else the run's own (SOURCE a run folder that recorded one), else
    the default; --set applies."""
    from curator.rundir import RunDir
    from curator.taxonomy import load_places

    if not args.config:
        try:
            got = RunDir.of(args.source).read_config()
        except Exception:  # an index, or a folder without config.yaml: the config given here
            got = None
        if got is not None:
            cfg = PipelineConfig.load(None, args.overrides, base=got[0])
    return load_places(cfg.stages.place_tag.taxonomy)


def cmd_eval_tags(args: argparse.Namespace) -> int:
    from curator import storage, tag_eval
    from curator.coverage import CoverageError

    cfg = _load(args)
    storage.configure(cfg.storage)  # a run folder or an index: this process is its only reader
    fields = [f.strip() for f in args.fields.split(",") if f.strip()] if args.fields else None
    try:
        res = tag_eval.evaluate(args.source, args.labels, _places(args, cfg), fields)
    except CoverageError as exc:
        print(f"curator: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(tag_eval.to_json(res))
    else:
        print(tag_eval.format_text(res))
    return 0


def cmd_coverage(args: argparse.Namespace) -> int:
    from curator import coverage, storage, where
    from curator.report.heatmap import write_coverage_html

    cfg = _load(args)
    storage.configure(cfg.storage)  # a run folder or an index: this process is its only reader
    by = [c.strip() for c in args.by.split(",") if c.strip()]
    if not by:
        print("curator: --by needs at least one column, e.g. --by place,time_of_day", file=sys.stderr)
        return 2
    targets = coverage.load_targets(args.targets) if args.targets else []
    try:
        cov = coverage.measure(args.source, by, targets, where_text=args.where)
    except (coverage.CoverageError, where.WhereError) as exc:
        print(f"curator: {exc}", file=sys.stderr)
        return 1
    absent = [c for c in by if cov.columns and c not in cov.columns]
    if absent:
        print(f"curator: note: {storage.display(cov.source)} has no column {', '.join(absent)} "
              "(did the place_tag stage run? `curator tag RUN` adds tags to a finished run)", file=sys.stderr)
    print(coverage.format_text(cov))
    if args.json:
        storage.write_bytes(storage.normalize(args.json), coverage.to_json(cov).encode("utf-8"))
        print(f"json: {storage.display(storage.normalize(args.json))}")
    if args.html:
        out = write_coverage_html(cov, args.html, _places(args, cfg))
        print(f"html: {storage.display(out)}")
    return 5 if args.fail_on_gaps and coverage.gaps(cov) else 0


def cmd_generate(args: argparse.Namespace) -> int:
    from curator import coverage, storage
    from curator.generate import CommandGenerator, EndpointGenerator, Generator, Options, run

    cfg = _load(args)
    _setup_logging(cfg.run.log_level)
    storage.configure(cfg.storage)
    if args.index and args.run:
        print("curator: give --index or --run, not both", file=sys.stderr)
        return 2
    gen: Generator
    if args.generator == "command":
        if not (args.command or args.batch_command):
            print("curator: --generator command needs --command TEMPLATE (and/or --batch-command)", file=sys.stderr)
            return 2
        gen = CommandGenerator(args.command, args.batch_command, model=cfg.generate.model)
        if not args.command:  # batch only: single prompts go through the batch template too
            gen.supports_batch = True
    else:
        if not args.endpoint:
            print("curator: --generator endpoint needs --endpoint URL", file=sys.stderr)
            return 2
        gen = EndpointGenerator(args.endpoint, model=cfg.generate.model, params=cfg.generate.endpoint_params,
                                api_key_env=cfg.generate.api_key_env, retries=cfg.generate.retries)
    targets = coverage.load_targets(args.targets)
    opts = Options(targets=targets, output=args.output, config=cfg, generator=gen, source=args.index or args.run,
                   max_clips=args.max_clips, budget_s=args.budget_s, concurrency=args.concurrency,
                   runner=args.runner or "local")
    _stop_on_sigterm()
    res = run(opts, say=lambda text: print(f"[curator] {text}", file=sys.stderr, flush=True))
    if res.coverage is not None:
        print(coverage.format_text(res.coverage))
    print(f"generate: {res.rounds} rounds, {res.started} generations started ({res.done} done, {res.failed} failed, "
          f"{res.adopted} adopted), {res.calls} generator calls; stopped: {res.stop_reason}")
    if res.not_generatable:
        print(f"not generatable (no cell in their where): {'; '.join(res.not_generatable)}", file=sys.stderr)
    return 5 if args.fail_on_gaps and res.coverage is not None and coverage.gaps(res.coverage) else 0


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
    _output_arg(p, "URI", "the run folder: a folder or bucket prefix for the clips, manifest and shards")
    p.add_argument("--runner", choices=["ray", "local"], help="override run.runner")
    p.add_argument("--force", action="store_true", help="redo everything, ignoring finished work in the output")
    p.add_argument("--only-failed", action="store_true",
                   help="redo only the videos that ended with an error in an earlier run into this output")
    _config_args(p)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="curator", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("run", metavar="RUN", help="a run folder (what `curator run -o` wrote)")
    p.add_argument("--runner", choices=["ray", "local"], help="default: local")
    _config_args(p)
    p.set_defaults(fn=cmd_shard)

    p = sub.add_parser("dedup", help="find exact and near-duplicate clips of a finished run; mark them in its manifest")
    p.add_argument("run", metavar="RUN", help="a run folder (what `curator run -o` wrote)")
    p.add_argument("--runner", choices=["ray", "local"], help="default: local")
    _config_args(p)
    p.set_defaults(fn=cmd_dedup)

    p = sub.add_parser("index", help="add a run's clips to a clip index (incremental)")
    p.add_argument("run", metavar="RUN", help="a run folder (what `curator run -o` wrote)")
    _output_arg(p, "INDEX_URI", "the clip index to add to (default: index.uri, else <run>/index)", old="--index")
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

    p = sub.add_parser("watch", help="curate new and changed objects under an input prefix as they arrive, into a "
                                     "catalog (polling; docs/catalog.md)")
    p.add_argument("input", help="folder or bucket prefix to watch (file path, s3://, gs://, az://)")
    _output_arg(p, "URI", "where each cycle's run goes (<output>/runs/<id>); the catalog is <output>/catalog "
                          "unless index.uri is set", required=True)
    p.add_argument("--interval", type=float, metavar="S", help="seconds between polls (default "
                                                               "catalog.watch_interval_s)")
    p.add_argument("--once", action="store_true", help="one cycle, then exit (e.g. from an event notification)")
    p.add_argument("--runner", choices=["ray", "local"], help="override run.runner")
    p.add_argument("--json", action="store_true", help="one JSON line per cycle")
    _config_args(p)
    p.set_defaults(fn=cmd_watch)

    p = sub.add_parser("feedback", help="clips training flags -> a re-weighting file the loader reads: their k nearest "
                                        "neighbours in the catalog are sampled more (docs/catalog.md)")
    p.add_argument("catalog", help="catalog URI")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--clips", metavar="FILE", help="flagged clip ids: one per line, or a JSON list")
    src.add_argument("--query", metavar="TEXT", help="a text query instead (CLIP text tower of the catalog's model)")
    p.add_argument("--k", type=int, default=10, help="neighbours per flagged clip, itself included (default 10)")
    p.add_argument("--weight", type=float, default=2.0, help="their sampling weight (default 2)")
    _output_arg(p, "FILE", "the re-weighting file to write (any URI)", required=True)
    _config_args(p)
    p.set_defaults(fn=cmd_feedback)

    p = sub.add_parser("catalog", help="the clip catalog shared by runs and clouds: show | compact | vacuum | dedup "
                                       "(docs/catalog.md)")
    p.add_argument("action", choices=["show", "compact", "vacuum", "dedup"],
                   help="show: counts per site, commits, ledger; compact: merge small segments, apply tombstones; "
                        "vacuum: delete files no commit lists (older than catalog.vacuum_after_s); dedup: "
                        "near-duplicates across every run and cloud, from embeddings only")
    p.add_argument("catalog", help="catalog URI (an index.uri shared by runs)")
    p.add_argument("--json", action="store_true", help="dedup: print the result as JSON")
    _config_args(p)
    p.set_defaults(fn=cmd_catalog)

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
    p = sub.add_parser("latents", help="latent shards: verify decodes a sample and reports PSNR against the "
                                       "source windows")
    p.add_argument("action", choices=["verify"])
    p.add_argument("run", metavar="RUN", help="a run folder (what `curator run -o` wrote) with latent shards "
                                              "(shard.profile includes latent)")
    p.add_argument("--sample", type=int, default=8, metavar="N", help="samples to decode (default 8)")
    p.add_argument("--split", help="training split (default: the first of shard.splits)")
    p.add_argument("--seed", type=int, default=0, help="which samples (default 0)")
    p.add_argument("--min-psnr", type=float, metavar="DB", help="exit 1 when the mean PSNR is below this")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _config_args(p)
    p.set_defaults(fn=cmd_latents)

    p = sub.add_parser("refilter", help="re-apply filter thresholds to a finished run from its manifest "
                                        "(no decoding), then re-shard")
    p.add_argument("run", metavar="RUN", help="a run folder (what `curator run -o` wrote)")
    p.add_argument("--runner", choices=["ray", "local"], help="for re-sharding; default: local")
    p.add_argument("--no-shard", action="store_true", help="rewrite the manifest only")
    _config_args(p)
    p.set_defaults(fn=cmd_refilter)

    p = sub.add_parser("train-type-head", help="train the video-type MLP head from labelled clips of a run")
    p.add_argument("run", metavar="RUN", help="a run folder (what `curator run -o` wrote) whose manifest has clip embeddings")
    p.add_argument("--labels", required=True, help="CSV or Parquet with columns clip_id,label")
    _output_arg(p, "FILE", "where to write the head (default: models.dir/<stages.video_type.head>)", old="--out")
    p.add_argument("--epochs", type=int, default=200, help="training epochs")
    _config_args(p)
    p.set_defaults(fn=cmd_train_type_head)

    p = sub.add_parser("train-tag-head", help="train the place-tag head (all labelled fields at once) from "
                                              "labelled clips of a run")
    p.add_argument("run", metavar="RUN", help="a run folder (what `curator run -o` wrote) whose manifest has clip "
                                              "embeddings")
    p.add_argument("--labels", required=True, help="CSV or Parquet: clip_id (or clip_uri) and field columns, e.g. "
                                                   "place,time_of_day (empty cell: not labelled)")
    _output_arg(p, "FILE", "where to write the head (default: models.dir/<stages.place_tag.head>)", old="--out")
    p.add_argument("--epochs", type=int, default=200, help="training epochs")
    p.add_argument("--holdout", type=float, default=0.2, help="share of the clips held out to report accuracy "
                                                              "(default 0.2; 0: train on all)")
    _config_args(p)
    p.set_defaults(fn=cmd_train_tag_head)

    p = sub.add_parser("tag", help="(re)tag a finished run's clips from their embeddings (zero-shot or a trained "
                                   "head; recorded VLM answers kept), no decoding; rewrites its manifest")
    p.add_argument("run", metavar="RUN", help="a run folder (what `curator run -o` wrote)")
    _config_args(p)
    p.set_defaults(fn=cmd_tag)

    p = sub.add_parser("eval-tags", help="precision / recall of the place tags against labelled clips")
    p.add_argument("source", help="output URI of a run, or a clip index URI")
    p.add_argument("labels", help="CSV or Parquet: clip_id (or clip_uri) and field columns, e.g. place,time_of_day")
    p.add_argument("--fields", help="comma-separated fields to score (default: every field column of LABELS)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _config_args(p)
    p.set_defaults(fn=cmd_eval_tags)

    p = sub.add_parser("coverage", help="kept clips and hours per place / time / ... cell, against target quotas")
    p.add_argument("source", help="output URI of a run, or a clip index URI")
    p.add_argument("--by", default="place", help="comma-separated manifest columns, e.g. place,time_of_day "
                                                 "(default: place)")
    p.add_argument("--targets", metavar="FILE", help="YAML or JSON: targets: [{where: {place: zoo}, min_clips: 2}]")
    p.add_argument("--where", metavar="PREDICATE", help="count only clips matching it, e.g. \"place_conf >= 0.5\"")
    p.add_argument("--json", metavar="FILE", help="also write the cells, targets and gaps as JSON")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML heatmap")
    p.add_argument("--fail-on-gaps", action="store_true", help="exit 5 when a target is not met")
    _config_args(p)
    p.set_defaults(fn=cmd_coverage)

    p = sub.add_parser("generate", help="fill coverage gaps with generated footage: prompts for the gaps, a "
                                        "generator, curation with provenance, recount; until met or out of budget",
                       description="docs/generate.md. The output is a run folder (manifest, index, shards) with "
                                   "generate/ (ledger, videos). Rerunning resumes; nothing is generated twice.")
    p.add_argument("--targets", required=True, metavar="FILE", help="targets file (YAML or JSON; docs/places.md)")
    _output_arg(p, "URI", "the run folder of the generated footage", required=True)
    p.add_argument("--index", help="count what a clip index already holds (and take conditioning clips from it)")
    p.add_argument("--run", help="count what a finished run already holds (and take conditioning clips from it)")
    p.add_argument("--generator", choices=["command", "endpoint"], required=True)
    p.add_argument("--command", metavar="TEMPLATE", help="shell command with {prompt} {negative_prompt} {seed} "
                                                         "{output} {output_dir} {output_name} {condition} {id}")
    p.add_argument("--batch-command", metavar="TEMPLATE", help="shell command with {batch_jsonl} {output_dir}, "
                                                               "used when a round has several prompts")
    p.add_argument("--endpoint", action="append", metavar="URL", help="HTTP generation service (repeatable)")
    p.add_argument("--max-clips", type=int, metavar="N", help="generations for this output, ever (all reruns)")
    p.add_argument("--budget-s", type=float, metavar="S", help="generator wall seconds for this output, ever")
    p.add_argument("--concurrency", type=int, default=1, metavar="K", help="generations at once (default 1)")
    p.add_argument("--runner", choices=["ray", "local"], help="runner of the curation rounds (default: local)")
    p.add_argument("--fail-on-gaps", action="store_true", help="exit 5 when a target is still not met")
    _config_args(p)
    p.set_defaults(fn=cmd_generate)

    p = sub.add_parser("report", help="write a self-contained HTML report of a finished run")
    p.add_argument("run", metavar="RUN", help="a run folder (what `curator run -o` wrote)")
    _output_arg(p, "FILE.html", "where to write the report (default: RUN/report.html; a path or bucket URI)")
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
