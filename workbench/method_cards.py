"""Method cards: what each SSL method does, when to use it, what to expect.

Shown by ``wb.describe_method``, the widgets and ``workbench methods``. The cards are kept apart
from the method modules, and this module imports nothing heavy, so ``workbench methods`` prints
them without importing torch (about 3 s on a 2-core machine). Each method class takes its card
from here (``info = CARDS[name]``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class MethodInfo:
    """Guidance shown by ``wb.describe_method`` and the widgets (what the reference tools say)."""

    summary: str  # two lines: what it does
    use_when: str  # when it is the right tool
    avoid_when: str  # when to pick something else
    batch_size: int  # recommended batch size (short runs on one GPU)
    epochs: int  # recommended epochs for a quick but meaningful run
    backbones: tuple[str, ...]  # backbones it suits
    paper: str  # citation
    note: str = ""  # anything the user will otherwise ask about (e.g. "loss does not go down")
    changed: str = ""  # which defaults differ from the paper for short runs, and the study why


def info_dict(info: MethodInfo) -> dict[str, Any]:
    """MethodInfo as a plain dict."""
    return asdict(info)


CARDS: dict[str, MethodInfo] = {
    "barlowtwins": MethodInfo(
        summary="Pushes the cross-correlation matrix between the embeddings of two views "
        "towards the identity: invariant to augmentations, with decorrelated features.",
        use_when="batches are small to medium (works at 128-256); you want no momentum "
        "encoder and no negatives",
        avoid_when="memory is tight: it wants a wide projector (thousands of dims)",
        batch_size=256,
        epochs=100,
        backbones=("resnet18-small", "resnet18", "resnet50"),
        paper="Barlow Twins, 2021, https://arxiv.org/abs/2103.03230",
        changed="LARS (the paper's optimizer; plain SGD stalled: 10-epoch digits kNN 0.25 vs "
        "0.50 with LARS) at a third of the shared rate (0.1 at batch 256); projector 2048 wide "
        "(paper: 8192); at <= 64 px crops of 50-100 % (paper: 8-100 %): with the paper's "
        "crops and the shared rate, 30-epoch digits kNN fell from 0.84 to 0.44, half the "
        "untrained backbone's (benchmarks/results/barlow_study.md)",
    ),
    "byol": MethodInfo(
        summary="An online network predicts what a slowly moving copy of itself (the target) "
        "outputs for another view. No negative pairs, so small batches work.",
        use_when="batches are small or medium; you want robust features with less sensitivity "
        "to the augmentation recipe than SimCLR",
        avoid_when="you need the fastest step (two networks); very short runs: the target "
        "needs time to become useful",
        batch_size=256,
        epochs=100,
        backbones=("resnet18-small", "resnet18", "resnet50"),
        paper="BYOL, 2020, https://arxiv.org/abs/2006.07733",
        changed="the predictor sees one view at a time, as SimSiam's; projector and predictor "
        "1024 wide (paper: 4096); the target's EMA starts at 0.99 (paper: 0.996); SGD at half "
        "the shared rate (0.06 at batch 256) and, at <= 64 px, crops of 50-100 % (paper: "
        "8-100 %): with the paper's crops and the shared rate, 30-epoch digits kNN peaked "
        "early and fell back towards random init",
    ),
    "dino": MethodInfo(
        summary="A student matches a momentum teacher's sharpened, centred output across "
        "global and small local crops (multi-crop). Strong frozen features, esp. with ViTs.",
        use_when="you want the best frozen (kNN / linear) features, attention maps with ViTs, "
        "or a teacher to distil into a smaller model later",
        avoid_when="compute is short: multi-crop costs several forward passes; it is unstable "
        "if the teacher temperature is off (keep it <= 0.07)",
        batch_size=256,
        epochs=100,
        backbones=("vit-tiny", "vit-small", "resnet18-small", "resnet18"),
        paper="DINO, 2021, https://arxiv.org/abs/2104.14294",
        note="The loss starts near log(output_dim) and falls slowly; watch kNN accuracy.",
        changed="no local crops at <= 64 px (paper: 6 local crops of 5-40 % at 96/224 of the "
        "global size): at 32 px they are 14 px views, 12 of the loss's 14 pairs, and 30-epoch "
        "digits runs with them ended at the untrained backbone's kNN (0.82 vs 0.81; Lightly's "
        "DINO loop 0.81), against 0.88-0.91 without (benchmarks/results/barlow_study.md, "
        "method_table.md). Ask for them with local_count=6",
    ),
    "distillation": MethodInfo(
        summary="A small student regresses a frozen teacher's spatial features (MSE at every "
        "location of the teacher's token grid), on one mixed-up view shown to both "
        "(LightlyTrain's distillationv2).",
        use_when="a good pretrained teacher exists for your images (DINOv2, or a run of your "
        "own); you want a small, fast model, for dense tasks too; little time for tuning",
        avoid_when="no teacher fits your domain: the student is bounded by its teacher",
        batch_size=128,
        epochs=100,
        backbones=("resnet18-small", "resnet18", "resnet50", "mobilenet_v3_small"),
        paper="LightlyTrain distillation v2, https://docs.lightly.ai/train/stable/methods/"
        "distillation.html; 'A Good Teacher is Patient and Consistent', 2021, "
        "https://arxiv.org/abs/2106.05237",
        note="Defaults: LARS (LightlyTrain's optimizer; for conv students, AdamW for ViTs), "
        "spatial=True (student map -> per-location Linear -> bilinear to the "
        "teacher's grid; spatial=False regresses pooled features), teacher_blocks=2 (a ViT "
        "teacher's last 2 blocks' patch tokens, concatenated; a CNN's final map), batch "
        "mixup with lambda ~ U(0, 1), gradient clipping at norm 1.0, teacher inputs "
        "re-normalised to its own statistics (ImageNet's for DINOv2/torchvision, the run's "
        "for run:). LightlyTrain recommends batch 128-2048 and 100-3000 epochs (up to 10,000 "
        "on < 100k images). The loss may barely move while kNN accuracy improves: that is "
        "normal. Its floor is the part of the teacher's features the student cannot yet "
        "predict, not zero, and mixup gives it new targets every step; watch kNN accuracy.",
    ),
    "distillationv1": MethodInfo(
        summary="The student matches the teacher's softmax similarity to a queue of teacher "
        "embeddings (a pseudo-classifier), both L2-normalised, T = 0.07 on both sides "
        "(LightlyTrain's distillationv1).",
        use_when="as distillation, for global tasks (classification, an embedding model): it "
        "matches relations between images rather than raw teacher features",
        avoid_when="the dataset is tiny: the queue then repeats the same images",
        batch_size=128,
        epochs=100,
        backbones=("resnet18-small", "resnet18", "resnet50", "mobilenet_v3_small"),
        paper="LightlyTrain distillation v1, https://docs.lightly.ai/train/stable/methods/"
        "distillation.html; SEED, 2021, https://arxiv.org/abs/2101.04731",
        note="Defaults: LARS (LightlyTrain's optimizer; for conv students, AdamW for ViTs), "
        "temperature=0.07, a queue that starts at zeros and takes each batch "
        "before its loss (so every image meets its own teacher embedding), queue_size from "
        "LightlyTrain's dataset-size buckets (512 for 1,000-1,999 images), one Linear student "
        "head, batch mixup with lambda ~ U(0, 1), "
        "gradient clipping at norm 1.0, teacher inputs re-normalised to its own statistics. "
        "LightlyTrain recommends batch 128-2048 and 100-3000 epochs (up to 10,000 on < 100k "
        "images). The loss may barely move while kNN accuracy improves: that is normal. A "
        "KL over a queue of similar embeddings at T = 0.07 starts small and its floor is not "
        "zero; watch kNN accuracy instead.",
    ),
    "moco": MethodInfo(
        summary="Contrastive like SimCLR, but negatives come from a queue of keys made by a "
        "slowly moving (momentum) copy of the network, so small batches still see many.",
        use_when="memory limits your batch size; you want contrastive features with batches "
        "of 32-256",
        avoid_when="the dataset is tiny (the queue then holds stale copies of the same images); "
        "you need the fastest step (two encoders run)",
        batch_size=256,
        epochs=100,
        backbones=("resnet18-small", "resnet18", "resnet50"),
        paper="MoCo v2, 2020, https://arxiv.org/abs/2003.04297",
        changed="the key encoder's momentum starts at 0.9 (paper: 0.999) and rises to 1 on a "
        "cosine: with ~10 steps per epoch on small data an EMA from 0.99 lags ~9 epochs "
        "behind, and 30-epoch digits runs peaked at epoch 7 and ended below the untrained "
        "backbone (benchmarks/results/barlow_study.md, method_table.md)",
    ),
    "simclr": MethodInfo(
        summary="Pulls two augmented views of an image together and pushes all other images in "
        "the batch apart (contrastive). Simple and well understood.",
        use_when="fine-grained differences matter; you can afford large batches; you want a "
        "baseline that every paper compares to",
        avoid_when="batches must be small (< 128): negatives get scarce; your augmentations "
        "are untuned: SimCLR is very sensitive to them",
        batch_size=256,
        epochs=100,
        backbones=("resnet18-small", "resnet18", "resnet50"),
        paper="SimCLR, 2020, https://arxiv.org/abs/2002.05709",
        changed="temperature 0.1 (the paper's best at 100 epochs; 0.5 only pays after long "
        "training), SGD base rate 0.06 per 256 images and the small-image recipe (no blur, "
        "colour strength 0.5 at <= 64 px): 30-epoch digits runs reach kNN 0.925 over 3 seeds "
        "against 0.774 with the paper's CIFAR recipe (benchmarks/results/simclr_study.md)",
    ),
    "simsiam": MethodInfo(
        summary="Two views through the same network; one side predicts the other, whose "
        "gradient is stopped. No negatives, no momentum encoder: the simplest non-contrastive "
        "method.",
        use_when="you want the cheapest non-contrastive baseline; teaching collapse (remove "
        "the predictor and watch the std fall)",
        avoid_when="short runs on tiny data can collapse; watch the representation std",
        batch_size=256,
        epochs=100,
        backbones=("resnet18-small", "resnet18", "resnet50"),
        paper="SimSiam, 2020, https://arxiv.org/abs/2011.10566",
        changed="the predictor sees one view at a time (its BatchNorm normalises each view's batch "
        "alone, as the paper's code does): 30-epoch digits kNN 0.865 over 3 seeds against "
        "0.827 with both views in one batch; narrower projector (512) and predictor (128)",
    ),
    "vicreg": MethodInfo(
        summary="Keeps each embedding dimension's variance up (no collapse), decorrelates "
        "dimensions and makes two views agree; every term is explicit and interpretable.",
        use_when="you want to see why a run collapses (each term is logged by the loss); "
        "no negatives or momentum encoder wanted",
        avoid_when="memory is tight (wide expander); loss weights need care when changed",
        batch_size=256,
        epochs=100,
        backbones=("resnet18-small", "resnet18", "resnet50"),
        paper="VICReg, 2022, https://arxiv.org/abs/2105.04906",
        changed="LARS (the paper's optimizer; plain SGD stalled on a loss summed over the "
        "expander's dimensions: 10-epoch digits kNN 0.83 vs 0.81 untrained); expander 2048 "
        "wide (paper: 8192) (benchmarks/results/barlow_study.md)",
    ),
}
