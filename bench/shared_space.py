"""The shared text-poster space on movielens-small: label bridge vs contrastively trained heads.

1,000 movies with a poster and text are held out; heads train on the rest (their early stopping and
the choice among a few head shapes use a validation share of the training movies only); the held-out
movies are read once, for the chosen heads and for the bridge. Prints a table and writes
bench/results/shared_space.json.

    python bench/shared_space.py [--config configs/movielens_shared_space.yaml]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from crossrec.align import LabelBridge, SharedSpace, imagenet_label_names, paired_recall, precision_at_k
from crossrec.config import load_config
from crossrec.data.loaders import load_dataset
from crossrec.encoders.modalities import build_encoder
from crossrec.experiment import encode_items
from crossrec.io import write_json_atomic

GENRE_QUERIES = {
    "Action": "an explosive action film",
    "Adventure": "a thrilling adventure film",
    "Animation": "an animated cartoon film",
    "Children": "a film for young children",
    "Comedy": "a funny comedy film",
    "Crime": "a gritty crime film about gangsters",
    "Documentary": "a documentary film",
    "Drama": "a moving drama film",
    "Fantasy": "a magical fantasy film",
    "Film-Noir": "a dark film noir",
    "Horror": "a frightening horror film",
    "Musical": "a musical film with songs",
    "Mystery": "a puzzling mystery film",
    "Romance": "a romantic love story film",
    "Sci-Fi": "a science fiction film set in space",
    "Thriller": "a suspenseful thriller film",
    "War": "a war film about soldiers",
    "Western": "a western film with cowboys",
}
# Head shapes tried; the one with the best validation recall@10 is tested.
CANDIDATES = {
    "linear, into text space": dict(anchor="text", hidden=0),
    "mlp, into text space": dict(anchor="text", hidden=512),
    "mlp, both heads 256-d": dict(anchor=None, hidden=512, dim=256),
}
HELD_OUT = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/movielens_shared_space.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/results/shared_space.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    console = Console(width=140)

    config = load_config(args.config)
    dataset = load_dataset(config.dataset.format, config.dataset.path, **config.dataset.options)
    encoded = encode_items(config, dataset, quiet=True)
    text, image, labels = (encoded.vectors[k] for k in ("text", "image", "image_labels"))
    both = np.flatnonzero(encoded.present["text"] & encoded.present["image"])
    rng = np.random.default_rng(args.seed)
    test = rng.choice(both, HELD_OUT, replace=False)
    train = np.setdiff1d(both, test)
    image_in = np.hstack([image, labels])
    console.print(
        f"{len(both):,} movies with poster and text: {len(train):,} for training, {HELD_OUT} held out"
    )

    chosen, best_valid, fits = None, -1.0, {}
    for name, params in CANDIDATES.items():
        start = time.perf_counter()
        space = SharedSpace(epochs=300, patience=20, lr=1e-3, seed=args.seed, **params)
        space.fit({"image": image_in[train], "text": text[train]}, pairs=[("image", "text")])
        valid = max(row["valid_recall@10"] for row in space.history)
        fits[name] = {
            "valid_recall@10": valid,
            "epochs": len(space.history),
            "seconds": time.perf_counter() - start,
        }
        console.print(f"  {name}: validation recall@10 {valid:.3f} ({len(space.history)} epochs)")
        if valid > best_valid:
            chosen, best_valid, best_space = name, valid, space

    text_encoder = build_encoder("text", config.encode.models.text)
    label_vectors = text_encoder.encode([f"a photo of a {name}" for name in imagenet_label_names()])
    bridge = LabelBridge(label_vectors, top_k=10)
    genre_table = pd.Series(dataset.content.text["genres"]).fillna("").str.get_dummies(", ")
    genre_names = [g for g in GENRE_QUERIES if g in genre_table.columns]
    query_vectors = text_encoder.encode([GENRE_QUERIES[g] for g in genre_names])
    genres = genre_table[genre_names].to_numpy()[test] > 0

    spaces = {
        "label bridge (no training)": (text[test], bridge.transform(labels[test]), query_vectors),
        f"trained heads: {chosen}": (
            best_space.transform("text", text[test]),
            best_space.transform("image", image_in[test]),
            best_space.transform("text", query_vectors),
        ),
    }
    rows = []
    for name, (t, p, q) in spaces.items():
        t2p = paired_recall(t, p, ks=(1, 10))
        p2t = paired_recall(p, t, ks=(1, 10))
        precision = precision_at_k(q, p, genres.T, k=20)
        base = genres.mean(0)
        rows.append(
            {
                "space": name,
                "text->poster R@1": t2p["recall@1"],
                "text->poster R@10": t2p["recall@10"],
                "poster->text R@1": p2t["recall@1"],
                "poster->text R@10": p2t["recall@10"],
                "genre P@20": float(precision.mean()),
                "genre base rate": float(base.mean()),
                "genre lift": float((precision / np.maximum(base, 1e-9)).mean()),
                "per_genre": {
                    g: {"P@20": float(pr), "base": float(b)}
                    for g, pr, b in zip(genre_names, precision, base, strict=True)
                },
            }
        )

    table = Table(title=f"Shared space, {HELD_OUT} held-out movies (chance R@1 0.001, R@10 0.010)")
    cols = [
        "text->poster R@1",
        "text->poster R@10",
        "poster->text R@1",
        "poster->text R@10",
        "genre P@20",
        "genre base rate",
        "genre lift",
    ]
    table.add_column("space")
    for c in cols:
        table.add_column(c, justify="right")
    table.add_column("R@10 / chance", justify="right")
    for row in rows:
        ratio = row["text->poster R@10"] / 0.01
        table.add_row(row["space"], *(f"{row[c]:.3f}" for c in cols), f"{ratio:.1f}x")
    console.print(table)
    write_json_atomic(
        args.out,
        {
            "held_out": HELD_OUT,
            "train_pairs": len(train),
            "seed": args.seed,
            "chosen": chosen,
            "candidates": fits,
            "rows": rows,
            "command": "python bench/shared_space.py",
        },
    )
    console.print(f"written {args.out}")


if __name__ == "__main__":
    main()
