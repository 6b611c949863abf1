"""`featx demo`: both stages of featx on synthetic data, at the defaults a new user gets.

Classification: 64 short videos whose classes come in pairs that differ only in temporal order, extracted with
the bundled ImageNet backbone; a temporal-pooling head (blind to order: near chance within a pair) against an
LSTM (reads the order). Detection: untrimmed videos with annotated actions at 2 fps; the default detector at
its defaults; ActivityNet mAP. Lines of the report go to `say`, so the CLI only prints.
Uses stage 2 (seqmodels), so its imports are inside the functions: featx itself never needs seqmodels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def run_demo(out: Path, videos: int = 64, untrimmed: int = 16, say: Callable[[str], None] = print,
             progress: bool = True) -> None:
    store = _classification(Path(out), videos, say, progress)
    _detection(Path(out), untrimmed, say, progress)
    say(
        "\nOpen the store in pandas:\n"
        "    import pandas as pd\n"
        f"    df = pd.read_parquet({str(store)!r})\n"
        "    print(df.groupby('video_id').size())\n"
        f"\nOr: featx info {store}; featx predict {Path(out) / 'runs' / 'lstm'} {store} --out predictions.csv"
    )


def _extract(folder: Path, store: Path, progress: bool, **config):
    from featx.config import ExtractConfig
    from featx.pipeline import RunOptions, extract
    from featx.inputs import collect_inputs

    return extract(collect_inputs([folder]), store, ExtractConfig(**config), RunOptions(progress=progress))


def _classification(out: Path, videos: int, say, progress: bool) -> Path:
    from featx import synth
    from featx.synth_draw import TRIMMED_CLASSES
    from seqmodels.classify import train_on_store
    from seqmodels.classifier import TrainConfig

    data = synth.make_trimmed(out / "videos", videos=videos, fps=4, val_fraction=0.5, progress=progress)
    say(f"1. synthetic videos: {len(data.videos)} in {data.folder} (labels: {data.labels})")
    store = out / "store"
    summary = _extract(data.folder, store, progress)
    say("2. extracted every frame with the bundled ImageNet EfficientNet-Lite0:")
    for line in summary.lines():
        say(line)
    say("3. heads trained on the store (validation accuracy, overall and within each order pair):")
    pairs = [TRIMMED_CLASSES[i : i + 2] for i in range(0, len(TRIMMED_CLASSES), 2)]
    for head in ("avgpool", "lstm"):
        run, metrics = train_on_store(store, data.labels, TrainConfig(head=head, epochs=40, batch_size=8),
                                      out / "runs" / head, progress=False)
        within = [f"{a} vs {b}: {_pair_accuracy(metrics['confusion'], run.classes, a, b):.2f}" for a, b in pairs]
        say(f"   {head:<8} accuracy {metrics['accuracy']:.2f} | " + " | ".join(within))
    say("   pooling is blind to order: near 0.5 within a pair is chance; the LSTM reads the order.")
    return store


def _pair_accuracy(confusion, classes: list[str], a: str, b: str) -> float:
    """Accuracy on the videos of classes a and b (a video of a taken for b counts as wrong)."""
    ia, ib = classes.index(a), classes.index(b)
    return (confusion[ia][ia] + confusion[ib][ib]) / (sum(confusion[ia]) + sum(confusion[ib]))


def _detection(out: Path, videos: int, say, progress: bool) -> None:
    from featx import synth
    from seqmodels.detection.map import map_table
    from seqmodels.detection.run import train_detection
    from seqmodels.runs import TrainConfig

    data = synth.make_untrimmed(out / "untrimmed", videos=videos, seconds=30, progress=progress)
    say(f"4. untrimmed videos: {len(data.videos)} in {data.folder} (ActivityNet annotations: {data.labels})")
    store = out / "untrimmed_store"
    for line in _extract(data.folder, store, progress, fps=2).lines():
        say(line)
    config = TrainConfig.with_defaults("detection")  # the default head (actionformer), at its defaults
    _, metrics = train_detection(store, data.labels, config, out / "runs" / config.head)
    say(f"5. {config.head} detector, validation mAP per tIoU ({metrics['videos']} videos; "
        f"see runs/{config.head}/timeline.png):")
    for line in map_table(metrics):
        say(line)
