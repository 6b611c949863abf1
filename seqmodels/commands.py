"""The stage-2 commands of `featx` (train-head, evaluate, predict), registered on the app in cli.py: each
parses its options, calls the seqmodels API and prints the report it returns (featx.console's conventions)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from featx.console import Progress, Quiet, head_options, notes, say, several_values, user_errors
from featx.errors import FeatxError


def train_head(
    store: Annotated[str, typer.Argument(help="A store written by `featx extract` (a directory or a pyarrow filesystem URI).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write (config.json, checkpoint.pt, metrics.json, plots).", rich_help_panel="Data")],
    labels: Annotated[Optional[Path], typer.Option(help="Classification: CSV with video_id,label[,split] (split: train / val). Several labels for a video (a `labels` cell separated by |, or one row per label) make it a multi-label run.", rich_help_panel="Data")] = None,
    annotations: Annotated[Optional[Path], typer.Option(help="Detection (or --task multilabel): ActivityNet or ActionFormer JSON, a THUMOS14 folder of <Class>_val.txt / _test.txt, Charades CSV, or CSV video_id,start,end,label (docs/formats.md). Its subsets split the videos: training / validation, or THUMOS's validation / test.", rich_help_panel="Data")] = None,
    train_subset: Annotated[Optional[str], typer.Option(help="Detection: the annotations' subset to train on (any case: training, validation, test). Default: training when the file has training and validation; validation for a THUMOS-shaped file (validation and test); else a random share of the non-test videos.", rich_help_panel="Data")] = None,
    eval_subset: Annotated[Optional[str], typer.Option(help="Detection: the subset to score (default: validation, or test for a THUMOS-shaped file; a random --val-fraction share when the file names neither pair). Test videos never reach training unless named.", rich_help_panel="Data")] = None,
    tiou: Annotated[Optional[str], typer.Option(help="Detection: tIoU thresholds reported: thumos (0.3:0.1:0.7), activitynet (0.5:0.05:0.95) or a list like 0.3,0.5. Default: thumos for a THUMOS-shaped file, else activitynet.", rich_help_panel="Data")] = None,
    task: Annotated[str, typer.Option(help="classification, detection or multilabel (per-step sigmoid heads, Charades mAP). Default: detection with --annotations; multilabel with --labels naming several classes for a video; else classification.", rich_help_panel="Data")] = "auto",
    head: Annotated[Optional[str], typer.Option(help="Classification: avgpool, maxpool, late-fusion, slow-fusion, lstm (default), skip-lstm, skip-gru or transformer. Detection: actionformer (default), montes-lstm, linear, skip-lstm or skip-gru (adaptive). Multilabel (per step): lstm (default), gru, skip-lstm or skip-gru.", rich_help_panel="Head")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs (default per head: 30 classification, 60 actionformer, 40 montes-lstm / linear).", rich_help_panel="Training")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Videos per batch (default per head: 32, actionformer 4, step detectors 8).", rich_help_panel="Training")] = None,
    lr: Annotated[Optional[float], typer.Option(help="AdamW peak learning rate (default per head: 1e-3, actionformer 2e-4).", rich_help_panel="Training")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="AdamW weight decay on weights only (default per head: 1e-2, actionformer 0.05).", rich_help_panel="Training")] = None,
    warmup_epochs: Annotated[Optional[float], typer.Option(help="Linear warm-up before the cosine decay (default per head: 2, actionformer 5).", rich_help_panel="Training")] = None,
    ema_decay: Annotated[float, typer.Option(help="The saved weights are this exponential moving average of the trained ones.", rich_help_panel="Training")] = 0.999,
    holdout: Annotated[float, typer.Option(help="Early stopping on this share of the training videos (0: train all epochs).", rich_help_panel="Training")] = 0.0,
    patience: Annotated[int, typer.Option(help="With --holdout: stop after this many epochs without a lower held-out loss.", rich_help_panel="Training")] = 10,
    budget: Annotated[float, typer.Option(help="Skip heads (classification, detection, multilabel): cost λ per updated step (budget loss λ·Σ u_t).", rich_help_panel="Skip heads")] = 0.0,
    gate_warmup: Annotated[float, typer.Option(help="Skip heads: share of the epochs, from the first, in which every step updates (the gates open) before the gates learn; 0: from the start. Without it a gate can close for good in the first epoch.", rich_help_panel="Skip heads")] = 0.25,
    max_steps: Annotated[Optional[int], typer.Option(help="Classification: sample at most this many steps per video, uniformly in time. Detection: training crop length (default 2304).", rich_help_panel="Training")] = None,
    val_fraction: Annotated[float, typer.Option(help="Validation share when the labels or annotations name no split.", rich_help_panel="Data")] = 0.2,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Random seed of the split, the initial weights and the batches.", rich_help_panel="Training")] = 0,
    option: Annotated[Optional[list[str]], typer.Option(help="A head option as key=value, repeatable (e.g. hidden=128, layers=2, bidirectional=true, window=9).", rich_help_panel="Head")] = None,
    ignore_missing: Annotated[bool, typer.Option("--ignore-missing", help="Leave out labelled videos missing from the store and store videos without a label, instead of failing.", rich_help_panel="Data")] = False,
    background_weight: Annotated[float, typer.Option(help="Step detectors: loss weight of background steps (Montes et al.: 0.3).", rich_help_panel="Step detectors")] = 0.3,
    smooth: Annotated[int, typer.Option(help="Step detectors: mean-filter window in steps before thresholding.", rich_help_panel="Step detectors")] = 5,
    threshold: Annotated[float, typer.Option(help="Step detectors: a step is active when 1 - P(background) reaches this.", rich_help_panel="Step detectors")] = 0.5,
    stream: Annotated[Optional[str], typer.Option(help="The features the head reads: rgb, flow or both. Default: the store's own (both for a store from `extract --stream both`; a store from --stream flow holds flow in `feature`, read as flow). A stream the store lacks is an error.", rich_help_panel="Data")] = None,
    fusion: Annotated[Optional[str], typer.Option(help="With --stream both: early (one head on each step's RGB and flow features side by side) or late (default: one head per stream, trained alike, their class probabilities averaged; Simonyan & Zisserman).", rich_help_panel="Data")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].", rich_help_panel="Training")] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier run in --out (only once the new one is complete).", rich_help_panel="Data")] = False,
    progress: Progress = True,
    quiet: Quiet = False,
) -> None:
    """Train a head on a store's features: a video classifier (--labels) or a temporal activity detector
    (--annotations), under one protocol (AdamW, warm-up + cosine, weight EMA; fixed epochs or --holdout);
    print a per-epoch table and the validation metrics."""
    from tqdm.auto import tqdm

    import seqmodels.api

    with user_errors():
        run = seqmodels.api.train(
            store, out, labels, annotations, task, head, head_options=head_options(option or []),
            overwrite=overwrite, ignore_missing=ignore_missing, progress=progress and not quiet,
            show=notes(True) if quiet else tqdm.write, epochs=epochs,
            batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, ema_decay=ema_decay,
            holdout=holdout, patience=patience, budget=budget, gate_warmup=gate_warmup, max_steps=max_steps,
            val_fraction=val_fraction, seed=seed, device=device, background_weight=background_weight, smooth=smooth,
            threshold=threshold, stream=stream, fusion=fusion, train_subset=train_subset, eval_subset=eval_subset,
            tiou=tiou,
        )
    say(run.report, quiet)


def _tiou(value: str | None) -> tuple[float, ...] | None:
    from seqmodels.detection.map import parse_tiou

    return None if value is None else parse_tiou(value)


def evaluate(
    run: Annotated[Path, typer.Argument(help="A run folder written by `featx train-head`.")],
    store: Annotated[str, typer.Argument(help="A store with the same extraction config as the run's (a directory or a URI).")],
    labels: Annotated[Optional[Path], typer.Option(help="Classification (and multilabel) runs: CSV with video_id,label[,split].", rich_help_panel="Targets")] = None,
    annotations: Annotated[Optional[Path], typer.Option(help="Detection (and multilabel) runs: ActivityNet JSON or CSV video_id,start,end,label.", rich_help_panel="Targets")] = None,
    subset: Annotated[Optional[str], typer.Option(help="Detection: the annotations' subset to score (validation, test, training, any case), or all. Default: the subset the run was scored on when trained (for a random split: the annotated videos it did not train on).", rich_help_panel="Targets")] = None,
    tiou: Annotated[Optional[str], typer.Option(help="Detection: activitynet (0.5:0.05:0.95), thumos (0.3:0.1:0.7) or a list like 0.3,0.5. Default: the run's own (thumos for a THUMOS-shaped file).", rich_help_panel="Scores")] = None,
    split: Annotated[str, typer.Option(help="val (the run's validation split), train, or all labelled videos.", rich_help_panel="Targets")] = "val",
    clip_steps: Annotated[Optional[int], typer.Option(min=1, help="Also score clips of this many steps: clip hit@1, and video hit@k from the mean of a video's clips.", rich_help_panel="Scores")] = None,
    clips: Annotated[int, typer.Option(min=1, help="Clips per video with --clip-steps (spread evenly).", rich_help_panel="Scores")] = 10,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write the metrics JSON. Default: RUN/evaluation.json.", rich_help_panel="Scores")] = None,
    ignore_missing: Annotated[bool, typer.Option("--ignore-missing", help="Leave out videos missing on either side.", rich_help_panel="Targets")] = False,
    quiet: Quiet = False,
) -> None:
    """Print and write a run's metrics: accuracy, macro-F1, hit@k, clip vs video hit@1 for a classifier; mAP per
    tIoU threshold and class (ActivityNet protocol) for a detector. The run reads the streams it was trained on."""
    from seqmodels.tasks import EvaluateOptions, Targets, task_of_run

    with user_errors():
        if out is not None:
            from featx.inputs import refuse_writing_over
            from featx.store import refuse_output_in_store
            from seqmodels.runs import refuse_output_in_run

            if out.suffix.lower() != ".json":
                raise FeatxError(f"--out {out}: the metrics are written as JSON: give a .json file")
            refuse_output_in_store(out)
            refuse_writing_over(out, [labels, annotations])
            refuse_output_in_run(out, run, allowed=("evaluation.json",))
        options = EvaluateOptions(split, clip_steps, clips, subset, _tiou(tiou), ignore_missing)
        lines = task_of_run(run).evaluate(run, store, Targets(labels, annotations), options, out or run / "evaluation.json")
    say(lines, quiet)


def predict(
    run: Annotated[Path, typer.Argument(help="A run folder written by `featx train-head`.")],
    sources: Annotated[list[str], typer.Argument(help="A store with the same extraction config as the run's, or video files, folders and list files: extracted first as the run's store was (into a temporary store), or read adaptively with --adaptive.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Classification: a .parquet or .csv file (video_id, label_1..k, score_1..k). Detection: a .json file in the ActivityNet results format. Multilabel: a .parquet or .csv file, one row per video, step and class (video_id, step, t_start, t_end, label, probability).", rich_help_panel="Output")],
    top_k: Annotated[int, typer.Option(min=1, help="How many labels per video.", rich_help_panel="Output")] = 5,
    adaptive: Annotated[bool, typer.Option("--adaptive", help="Skip heads on RGB only (classification skip-lstm / skip-gru, and the skip step detectors): decode the videos and run the backbone only on the frames whose step updates the state. Same predictions (or segments) as extracting every frame first.", rich_help_panel="Reading videos")] = False,
    device: Annotated[str, typer.Option(help="With --adaptive: the backbone's device (auto, cpu, cuda[:N]).", rich_help_panel="Reading videos")] = "auto",
    subset: Annotated[Optional[str], typer.Option(help="Detection with --annotations: only the videos of this subset (e.g. validation, test), so the official evaluator scores the file as `featx evaluate` does. Default with --annotations: the subset the run was scored on; without: every video of the store.", rich_help_panel="Detection")] = None,
    annotations: Annotated[Optional[Path], typer.Option(help="Detection: the annotations file that names the subsets (any format `train-head` reads).", rich_help_panel="Detection")] = None,
    progress: Progress = True,
    quiet: Quiet = False,
) -> None:
    """Predict the top-k labels of every video in a store, or straight from videos; with a detection run, the
    scored segments of every video as ActivityNet results JSON. The run reads the streams it was trained on."""
    from featx.store import refuse_output_in_store
    from seqmodels.tasks import PredictOptions, task_of_run

    with user_errors():
        from featx.inputs import refuse_writing_over
        from seqmodels.runs import refuse_output_in_run

        refuse_output_in_store(out)
        refuse_writing_over(out, [annotations, *sources])
        refuse_output_in_run(out, run)
        options = PredictOptions(top_k, adaptive, device, subset, annotations, progress and not quiet)
        lines = task_of_run(run).predict(run, sources, out, options)
    say(lines, quiet)


ZeroShotCommand = several_values("--classes")  # `--classes "a dog" "a cat"`, as the issue writes it


def zero_shot(
    store: Annotated[str, typer.Argument(help="A store extracted with an image-text backbone (--backbone clip:<org>/<name>).")],
    classes: Annotated[list[str], typer.Option(help="The class prompts: every value after --classes up to the next option, e.g. --classes \"a person jumping\" \"a dog running\" (the text tower embeds each as given).", rich_help_panel="Classes")],
    out: Annotated[Path, typer.Option("--out", "-o", help="A .parquet or .csv file: video_id, step (empty on the video's own rows), t_start, t_end, class, score (cosine similarity; a video's is the mean of its steps').", rich_help_panel="Output")],
    labels: Annotated[Optional[Path], typer.Option(help="CSV with video_id,label[,split] (as train-head reads): print top-1 accuracy over --classes, overall and per split. Every label must be one of --classes.", rich_help_panel="Classes")] = None,
    device: Annotated[str, typer.Option(help="Where the text tower runs: auto, cpu or cuda[:N].", rich_help_panel="Output")] = "auto",
    quiet: Quiet = False,
) -> None:
    """Zero-shot classification, no training: embed the class prompts with the text tower the store's config names
    (the one its image features came from), score every step and video by cosine similarity, write the scores
    and, with --labels, print top-1 accuracy."""
    from seqmodels.zero_shot import zero_shot as run_zero_shot

    with user_errors():
        _, report = run_zero_shot(store, classes, out, labels, device)
    say(report.lines(), quiet)
