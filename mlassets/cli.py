"""The `mlassets` command: local stack control, dataset fetching and the main job."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlassets.datasets.fetch import DATASETS, FetchError, copy_local, fetch_official
from mlassets.environment_choice import environment_name
from mlassets.names import IMAGE_DATABASE, IMAGE_TOPIC, INFERENCE_GROUP
from mlassets.stack import LocalStack, StackError, StackSettings


def _stack(args: argparse.Namespace) -> int:
    stack = LocalStack(StackSettings.from_env())
    if args.action == "up":
        started = stack.up()
        print(f"started: {', '.join(started)}" if started else "already running")
    elif args.action == "down":
        stopped = stack.down()
        print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    for status in stack.status():
        state = f"running (pid {status.pid})" if status.running else "stopped"
        print(f"{status.name:9} {state:22} {status.address:28} log: {status.log_file}")
    if args.action == "status":
        return 0 if all(s.running for s in stack.status()) else 3
    return 0


def _data_fetch(args: argparse.Namespace) -> int:
    from mlassets.environments import load_environment

    dest = Path(args.dest or load_environment(args.env)["datasets"].data_dir).resolve()
    names = args.datasets or [n for n in DATASETS if n != "fruits360" or args.source]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        print(f"unknown dataset(s) {unknown}; choose from {sorted(DATASETS)}", file=sys.stderr)
        return 2
    dest.mkdir(parents=True, exist_ok=True)
    if args.source:
        source = Path(args.source).resolve()
        # by default copy whatever the folder has; named datasets must be there
        copy_local(source, names if args.datasets else [n for n in names if (source / n).is_dir()], dest)
    else:
        fetch_official(names, dest)
    print(f"datasets in {dest}")
    return 0


def _materialize(args: argparse.Namespace) -> int:
    """Start the stack and materialise every asset: one `dagster asset materialize` per partitions definition."""
    from mlassets.main_run import run_main

    return run_main(args.env, everything=args.all)


def _stream_produce(args: argparse.Namespace) -> int:
    """Publish CIFAR-10 images from simulated producers to Kafka."""
    from mlassets.datasets.cifar10 import read_cifar10
    from mlassets.environments import load_environment
    from mlassets.streaming.image_producer import produce_images

    resources = load_environment(args.env)
    images = read_cifar10(resources["datasets"].path("cifar10"))
    summary = produce_images(resources["kafka"], images, args.producers, args.images, args.rate, args.topic)
    print(f"run {summary.run_id}: {summary.messages} images in {summary.seconds:.1f}s "
          f"({summary.messages / max(summary.seconds, 1e-9):.0f} images/s, {summary.client}) to {args.topic}")
    return 0


def _stream_infer(args: argparse.Namespace) -> int:
    """Classify image messages as they arrive (or up to the current end with --drain), until SIGTERM/SIGINT."""
    import signal

    from mlassets.environments import load_environment
    from mlassets.models.store import ModelStoreError
    from mlassets.streaming.inference import classify_stream

    resources = load_environment(args.env)
    model_id = args.model_id
    if model_id is None:
        lake, asset = resources["lake"], "cifar_classifier"  # the asset that records the current model id
        if not lake.exists(asset):
            print(f"mlassets: no {asset} in the lake; materialise it or pass --model-id", file=sys.stderr)
            return 1
        model_id = str(lake.read_parquet(asset, columns=["model_id"])["model_id"].iloc[0])
    stop = {"now": False}

    def request_stop(signum: int, frame: object) -> None:
        stop["now"] = True

    def serve() -> None:  # once the model is loaded
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        print(f"classifying {args.topic} with {model_id} as group {args.group}", flush=True)

    try:
        summary = classify_stream(resources["kafka"], resources["mongo"], model_id, args.database, topic=args.topic,
                                  group=args.group, batch_size=args.batch_size, stop_at_end=args.drain,
                                  should_stop=lambda: stop["now"], on_loaded=serve)
    except ModelStoreError as exc:  # changed, incomplete, or failed a blocking check: say so, no traceback
        print(f"mlassets: {exc}", file=sys.stderr)
        return 1
    reasons = f" {summary.reasons}" if summary.reasons else ""
    n = summary.commits_not_taken
    not_taken = f", {n} commit{'s' * (n != 1)} not taken by the group (covered later or read again)" if n else ""
    print(f"{summary.stored} stored, {summary.dead_letters} dead letters{reasons} in {summary.seconds:.1f}s "
          f"({summary.client}){not_taken}", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="mlassets", description=__doc__)
    parser.add_argument("--env", default=environment_name(),
                        help="resources/<env>.yaml to bind (default: $MLASSETS_ENV or local)")
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="start, stop or report the local Kafka/FerretDB/S3 servers")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.set_defaults(func=_stack)

    data = sub.add_parser("data", help="datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="download the official files (sha256-verified) or copy a local folder")
    fetch.add_argument("datasets", nargs="*", help=f"any of {sorted(DATASETS)} (default: all but fruits360)")
    fetch.add_argument("--from", dest="source", help="copy and verify from this folder instead of downloading")
    fetch.add_argument("--dest", help="data directory (default: the environment's `datasets.data_dir`)")
    fetch.set_defaults(func=_data_fetch)

    stream = sub.add_parser("stream", help="long-running streaming producers and services")
    stream_sub = stream.add_subparsers(dest="stream_command", required=True)
    produce = stream_sub.add_parser("produce", help="simulated IoT producers sending CIFAR-10 images to Kafka")
    produce.add_argument("--producers", type=int, default=4, help="number of producer ids")
    produce.add_argument("--images", type=int, default=1000, help="images per producer")
    produce.add_argument("--rate", type=float, default=0.0, help="images/s per producer; 0 = as fast as possible")
    produce.add_argument("--topic", default=IMAGE_TOPIC)
    produce.set_defaults(func=_stream_produce)
    infer = stream_sub.add_parser("infer", help="the inference service: classify image messages into MongoDB")
    infer.add_argument("--model-id", help="model store id, e.g. cifar_classifier:v3 (default: the asset's current one)")
    infer.add_argument("--batch-size", type=int, default=256, help="messages classified and written per batch")
    infer.add_argument("--topic", default=IMAGE_TOPIC)
    infer.add_argument("--group", default=INFERENCE_GROUP, help="consumer group (share it to scale out)")
    infer.add_argument("--database", default=IMAGE_DATABASE, help="Mongo database of the inferences collection")
    infer.add_argument("--drain", action="store_true", help="stop at the end offsets seen at start")
    infer.set_defaults(func=_stream_infer)

    run = sub.add_parser("materialize", help="start the local stack and materialise every asset (the main run)")
    run.add_argument("--all", action="store_true",
                     help="run every asset, also those whose code version and inputs are unchanged since their "
                          "last materialisation (by default they are kept)")
    run.set_defaults(func=_materialize)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mlassets` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (StackError, FetchError, FileNotFoundError) as exc:
        print(f"mlassets: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
