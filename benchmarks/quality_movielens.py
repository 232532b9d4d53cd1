"""Quality on MovieLens-100K (default target gender; any label column works).

Feature sets, all on the same held-out test users (the corpus split, seed 42), 5 stratified
folds on the train users, LightGBM and logistic regression:
- aggregates and bag of categories (TF-IDF of titles and genres): the classic baselines;
- frozen embeddings of the base model (--model, default the bundled SmolLM2; layers k..L, mean over tokens);
- LLM4ES fine-tuned: full and/or LoRA, on the plain (serialized) or enriched corpus, with next-token
  prediction (recipes/sft.py) or the contrastive objective (recipes/contrastive.py: two random slices
  of a viewer's ratings are positives, the other viewers of the batch negatives; every viewer, no label);
- bag + the frozen model and bag + each LLM4ES model (balanced concatenation).
Every row is compared with the frozen model, then each model with the aggregates and
each ensemble with the bag alone and with bag + frozen (paired bootstraps over the test and the
train users).
Prints the table; last line one JSON object, ratio = best fine-tuned over frozen (LightGBM, on
the test users), with the better-powered check of the same pair: the gain in out-of-fold
ROC-AUC over all the train users, its paired-bootstrap 95% CI and p.

    python benchmarks/quality_movielens.py [--variants full-serialized lora-serialized full-enriched lora-enriched]
        [--max-tokens 512 --train-steps 100 --target gender] [--embed-tokens 2048] [--model gemma3-270m]
        [--schema movielens]   # default: the compact layout ("title, stars" per rating)
        [--coles]   # CoLES (pytorch-lifestream) beside them, with coles+<model> and bag+coles+<model> ensembles
        [--variants contrastive-lora --slice-events 4 10 --slice-tokens 64 --contrastive-batch 24
         --contrastive-users 720 --contrastive-lr 5e-4]
        [--pool-tokens events] [--weight-field -1] [--echo]   # pooling levers, applied to every embedding
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import report  # noqa: E402

VARIANTS = (
    "full-serialized",
    "lora-serialized",
    "full-enriched",
    "lora-enriched",
    "contrastive-lora",
    "contrastive-full",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output-dir", default="outputs/quality-movielens")
    parser.add_argument("--target", default="gender")
    parser.add_argument(
        "--model",
        default="smollm2-135m",
        help="base model (frozen row and fine-tuning): bundled name, folder or Hub id; the corpus is always cut "
        "with SmolLM2's tokenizer, so every model sees the same texts",
    )
    parser.add_argument("--max-tokens", type=int, default=512, help="per viewer in training (the most recent kept)")
    parser.add_argument(
        "--embed-tokens",
        type=int,
        help="per viewer when embedding (default: --max-tokens); e.g. train at 256 and embed the whole history at 2048",
    )
    parser.add_argument("--train-steps", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--variants", nargs="*", default=["full-serialized"], choices=VARIANTS)
    parser.add_argument("--enrich-users", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--coles", action="store_true", help="add CoLES (recipes/movielens/coles.yaml) and ensembles")
    parser.add_argument(
        "--schema",
        default="movielens_compact",
        help="MovieLens EventSchema: the compact layout (default; ~2.5x more events per token, same fields kept for "
        "the baselines) or movielens (date, title, genres, rating): built-in names or a YAML file",
    )
    parser.add_argument("--slice-events", type=int, nargs=2, default=[4, 10], help="contrastive: slice length bounds")
    parser.add_argument("--slice-tokens", type=int, default=64, help="contrastive: token cap of a slice")
    parser.add_argument("--contrastive-batch", type=int, default=24, help="contrastive: viewers per batch")
    parser.add_argument("--contrastive-users", type=int, help="contrastive: train on the first N viewers only")
    parser.add_argument("--contrastive-rounds", type=int, default=1, help="contrastive: pairs per viewer")
    parser.add_argument("--contrastive-lr", type=float, default=5e-4, help="contrastive LoRA lr (full: a tenth)")
    parser.add_argument("--contrastive-scale", type=float, default=20.0, help="contrastive: 1 / temperature")
    parser.add_argument("--pool-tokens", default="all", choices=["all", "events"], help="pooling lever, every set")
    parser.add_argument("--weight-field", type=int, help="pooling lever: weight events by this field (-1: rating)")
    parser.add_argument("--echo", action="store_true", help="pooling lever: echo embeddings")
    args = parser.parse_args()
    embed_tokens = args.embed_tokens or args.max_tokens

    import datasets
    from trl import ModelConfig

    from llm4es_hf.artifacts import load_corpus_users, load_embeddings, load_labels, load_texts, save_embeddings
    from llm4es_hf.assets import recipes_dir, resolve_model
    from llm4es_hf.baselines import aggregate_features, bag_of_categories
    from llm4es_hf.config import parse_config
    from llm4es_hf.corpus import CorpusConfig, build_corpus
    from llm4es_hf.embedding import Embedder, embed_dataset, export_sentence_transformer
    from llm4es_hf.evaluation import concat_features, evaluate_features
    from llm4es_hf.training.contrastive import ContrastiveScriptArguments, LLM4ESContrastiveConfig, run_contrastive
    from llm4es_hf.training.sft import LLM4ESSFTConfig, SFTScriptArguments, run_sft

    out = Path(args.output_dir)
    corpus = out / "corpus"
    if not (corpus / "README.md").exists():
        build_corpus(
            CorpusConfig(
                output_dir=str(corpus),
                source="movielens",
                schema=args.schema,
                max_tokens=max(args.max_tokens, embed_tokens),
                split_label=args.target,
                enrich_variants=["free:0.2", "markdown:0.2", "analysis:0.2"],
                enrich_max_users=args.enrich_users,
                enrich_max_tokens=256,
                max_new_tokens=256,
                batch_size=8,
                keep_truncated=True,
            )
        )
    texts = load_texts(str(corpus), "serialized")

    def embed(name: str, model: str) -> Path:
        path = out / f"{name}.parquet"
        if not path.exists():
            embedder = Embedder(
                model,
                max_length=embed_tokens,
                pool_tokens=args.pool_tokens,
                weight_field=args.weight_field,
                echo=args.echo,
            )
            vectors = embed_dataset(embedder, texts, batch_size=args.batch_size)
            save_embeddings(path, texts["user_id"], vectors, extra={"split": texts["split"]})
        return path

    files = {"frozen": embed("frozen", resolve_model(args.model))}
    for variant in args.variants:
        kind, config = variant.split("-")
        model_dir = out / f"model-{variant}"
        if kind == "contrastive" and not (model_dir / "model.safetensors").exists():
            recipe = recipes_dir() / "movielens" / "contrastive_lora.yaml"
            lora = config == "lora"
            options = {
                "corpus": corpus,
                "output_dir": model_dir,
                "use_peft": str(lora).lower(),
                "learning_rate": args.contrastive_lr if lora else args.contrastive_lr / 10,
                "min_events": args.slice_events[0],
                "max_events": args.slice_events[1],
                "max_slice_tokens": args.slice_tokens,
                "per_device_train_batch_size": args.contrastive_batch,
                "rounds": args.contrastive_rounds,
                "scale": args.contrastive_scale,
                "embed_max_length": embed_tokens,
                "model_name_or_path": args.model,
            }
            if args.contrastive_users:
                options["max_users"] = args.contrastive_users
            flat = [item for key, value in options.items() for item in (f"--{key}", str(value))]
            parsed = parse_config(
                [ContrastiveScriptArguments, LLM4ESContrastiveConfig, ModelConfig],
                ["--config", str(recipe), *flat],
                prog="quality",
            )
            run_contrastive(*parsed)
        elif kind != "contrastive" and not (model_dir / "model.safetensors").exists():
            recipe = recipes_dir() / "movielens" / f"sft_{kind}.yaml"
            parsed = parse_config(
                [SFTScriptArguments, LLM4ESSFTConfig, ModelConfig],
                [
                    "--config",
                    str(recipe),
                    "--corpus",
                    str(corpus),
                    "--corpus_config",
                    config,
                    "--output_dir",
                    str(model_dir),
                    "--max_steps",
                    str(args.train_steps),
                    "--max_length",
                    str(args.max_tokens + 1),
                    "--learning_rate",
                    str(args.learning_rate if kind == "full" else 10 * args.learning_rate),
                    "--save_strategy",
                    "no",
                    "--model_name_or_path",
                    args.model,
                ],
                prog="quality",
            )
            run_sft(*parsed)
            export_sentence_transformer(model_dir, max_length=embed_tokens)
        files[f"llm4es-{variant}"] = embed(f"llm4es-{variant}", str(model_dir))

    labels = load_labels(str(corpus))
    users, schema = load_corpus_users(corpus)
    everyone = datasets.concatenate_datasets(list(users.values()))
    ids, matrix, _ = aggregate_features(everyone, schema)
    sets = {"aggregates": (ids, matrix)}
    ids, bag, _ = bag_of_categories(everyone, schema)
    sets["bag"] = (ids, bag)
    kinds = {"aggregates": "baseline", "bag": "baseline"}
    for name, path in files.items():
        sets[name], kinds[name] = load_embeddings(path), "embeddings"
    if args.coles:  # CoLES on every viewer's ratings (no labels), with pytorch-lifestream in its own environment
        from llm4es_hf.baselines.coles import coles_baseline

        ids, matrix, _ = coles_baseline(everyone, schema, output_dir=out)
        sets["coles"], kinds["coles"] = (ids, matrix), "baseline"
    for name in files:
        for parts in [("bag", name)] + ([("coles", name), ("bag", "coles", name)] if args.coles else []):
            ids, matrix, _ = concat_features({part: sets[part] for part in parts})
            sets["+".join(parts)], kinds["+".join(parts)] = (ids, matrix), "ensemble"
    result = evaluate_features(sets, labels, args.target, baseline="frozen/lightgbm", kinds=kinds)
    tuned_sets, models = [name for name in files if name != "frozen"], ("lightgbm", "logreg")
    pairs = [(f"{name}/lightgbm", "aggregates/lightgbm") for name in files]
    pairs += [(f"bag+{name}/{model}", f"bag/{model}") for name in files for model in models]
    pairs += [(f"bag+{name}/{model}", f"bag+frozen/{model}") for name in tuned_sets for model in models]
    if args.coles:
        pairs += [(f"{name}/lightgbm", "coles/lightgbm") for name in files]
        pairs += [(f"coles+{name}/lightgbm", "coles/lightgbm") for name in files]
    comparisons = [result.compare(first, second) for first, second in pairs]
    markdown = result.to_markdown() + result.comparisons_markdown(comparisons)
    print(markdown)
    (out / "report.md").write_text(markdown)
    (out / "report.json").write_text(result.to_json())
    result.plot(out / "report.png")

    scores = {row.name: round(row.test_mean, 4) for row in result.rows}
    frozen = scores["frozen/lightgbm"]
    tuned = {k: v for k, v in scores.items() if k.startswith("llm4es") and k.endswith("/lightgbm")}
    best: dict = {"ours": None, "ratio": None}
    if tuned:
        name = max(tuned, key=tuned.__getitem__)
        row = result.row(name)
        best = {
            "ours": tuned[name],
            "ours_is": name,
            "ratio": round(tuned[name] / frozen, 4),
            "out_of_fold_gain": round(row.pooled_delta, 4),
            "out_of_fold_gain_ci95": [round(v, 4) for v in row.pooled_delta_ci95],
            "out_of_fold_p": row.pooled_p,
            "test_users_p": row.test_users_p,
        }
    report(
        benchmark="quality_movielens",
        unit=result.metric,
        target=args.target,
        max_tokens=args.max_tokens,
        embed_tokens=embed_tokens,
        train_steps=args.train_steps,
        model=args.model,
        baseline=frozen,
        **best,
        scores=scores,
        out_of_fold={row.name: round(row.pooled_valid, 4) for row in result.rows},
        gains={
            f"{c.first} vs {c.second}": {"out_of_fold": round(c.out_of_fold.delta, 4), "p": c.out_of_fold.p_value}
            for c in comparisons
        },
    )


if __name__ == "__main__":
    main()
