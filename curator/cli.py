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


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="[curator] %(levelname)s %(name)s: %(message)s")


# --------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    from curator import pipeline as pl
    from curator.driver import execute
    from curator.progress import Progress
    from curator.runners import make_runner

    run_over: dict[str, Any] = {}
    if args.address:
        run_over["address"] = args.address
    if args.runner:
        run_over["runner"] = args.runner
    if args.only_failed:
        run_over["only_failed"] = True
    cfg = _load(args, input=args.input, output=args.output)
    if run_over:
        cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update=run_over)})
    _setup_logging(cfg.run.log_level)
    pipeline = pl.build(cfg)
    for name, reqs in pipeline.skipped:
        for r in reqs:
            print(f"[curator] skipping stage {name}: {r.describe()}", file=sys.stderr)
    runner = make_runner(cfg)
    summary = execute(pipeline, runner, force=args.force, progress=Progress(interval_s=cfg.run.progress_interval_s))
    print(summary.format())
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    cfg = PipelineConfig() if args.defaults else _load(args)
    if args.json:
        print(json.dumps(cfg.model_dump(mode="json"), indent=1))
    else:
        print(cfg.to_yaml(comments=args.defaults))
    return 0


def cmd_shard(args: argparse.Namespace) -> int:
    from curator import storage
    from curator.driver import shard
    from curator.runners import make_runner

    cfg = _load(args, output=args.run)
    cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"runner": args.runner or "local"})})
    storage.configure(cfg.storage)
    results = shard(storage.normalize(args.run), cfg, make_runner(cfg).map)
    print(f"{len(results)} shards, {sum(r['samples'] for r in results)} samples")
    return 0


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
def cmd_refilter(args: argparse.Namespace) -> int:
    from curator import filters
    from curator.runners import make_runner

    cfg, _ = filters.load_run_config(args.run, args.config, args.overrides)
    _setup_logging(cfg.run.log_level)
    runner = None
    if not args.no_shard:
        cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"runner": args.runner or "local"})})
        runner = make_runner(cfg)
    summary = filters.refilter(args.run, args.config, args.overrides, map_fn=runner.map if runner else None,
                               shard=not args.no_shard)
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
    from curator.report import write_report

    cfg = _load(args)
    _setup_logging(cfg.run.log_level)
    storage.configure(cfg.storage)
    uri = write_report(args.run, args.output, cfg.report, max_pixels=cfg.stages.ingest.max_pixels)
    print(f"report: {storage.display(uri)}")
    return 0


# ------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="curator", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="curate videos: input URI -> clips, manifest and shards at output URI")
    p.add_argument("--input", "-i", help="folder or bucket prefix of raw videos (file path, s3://, gs://, az://)")
    p.add_argument("--output", "-o", help="folder or bucket prefix for the results")
    p.add_argument("--address", help="Ray cluster address; without it an embedded Ray starts here")
    p.add_argument("--runner", choices=["ray", "local"], help="override run.runner")
    p.add_argument("--force", action="store_true", help="redo everything, ignoring finished work in the output")
    p.add_argument("--only-failed", action="store_true",
                   help="redo only the videos that ended with an error in an earlier run into this output")
    _config_args(p)
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("config", help="print the resolved config (or the defaults, with comments)")
    p.add_argument("--defaults", action="store_true", help="every key with its default and description")
    p.add_argument("--json", action="store_true", help="JSON instead of YAML")
    _config_args(p)
    p.set_defaults(fn=cmd_config)

    p = sub.add_parser("shard", help="(re)write the webdataset shards of a finished run from its manifest")
    p.add_argument("run", help="output URI of a run")
    p.add_argument("--runner", choices=["ray", "local"], help="default: local")
    _config_args(p)
    p.set_defaults(fn=cmd_shard)

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
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except ConfigError as exc:
        print(f"curator: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from curator.pipeline import PipelineError
        from curator.storage import StorageError

        if isinstance(exc, (PipelineError, StorageError)):
            print(f"curator: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
