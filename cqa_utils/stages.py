"""The seven pipeline stages as functions: read upstream artifacts, compute (or reuse), write.

Each ``stageNN_*`` takes the notebook's :class:`~cqa_utils.notebook.Stage`; the notebook then
reads what was written and tells the story. Keys for reuse: see :func:`cqa_utils.notebook.cached`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from . import data as D
from .artifacts import file_hash, source_hash
from .config import PRIMARY_EPOCH, SWEEP_EPOCHS
from .notebook import Stage, cached, model_key, stage_key


def _data_hashes(st: Stage) -> dict[str, str]:
    return {k: file_hash(getattr(st.data, k)) for k in ("train", "pairs", "continuations")}


def load_corpus(st: Stage) -> D.Corpus:
    """Validate every data file (and train↔benchmark leakage) before any model is loaded."""
    return D.load_all(st.data.train, st.data.pairs, st.data.continuations)


# ------------------------------------------------------------------------------------------ 01
def stage01_data(st: Stage) -> bool:
    """Validate, split 94/11 the LLaMA-Factory way, count coverage and token lengths."""
    corpus = load_corpus(st)
    inputs = {"data": _data_hashes(st), "model": model_key(st.profile), "hparams": asdict(st.profile.hparams),
              "code": source_hash("data", "stages", "train")}

    def compute() -> None:
        from .models import load_tokenizer
        from .train import build_example

        hp = st.profile.hparams
        rows = corpus.train.rows
        tr_idx, va_idx = D.split_train_val(rows, hp.val_size, hp.seed)
        st.run.save("01_data", "split.json", {"train_index": tr_idx, "val_index": va_idx,
                                              "train_ids": [rows[i]["id"] for i in tr_idx],
                                              "val_ids": [rows[i]["id"] for i in va_idx]})
        st.run.save("01_data", "coverage.json", D.coverage_counts(rows))
        tok = load_tokenizer(st.profile)
        enc = lambda s: len(tok(s, add_special_tokens=False).input_ids)  # noqa: E731
        lens = []
        for r in rows:
            ex = build_example(tok, r, hp.template, hp.cutoff_len)
            lens.append({"file": "train", "id": r["id"], "part": "example", "n_tokens": len(ex["input_ids"]),
                         "n_label_tokens": sum(x != -100 for x in ex["labels"]), "truncated": ex["truncated"],
                         "genre": r.get("genre", "")})
        for r in corpus.pairs.rows:
            lens += [{"file": "pairs", "id": r["id"], "part": f, "domain": r["domain"], "n_tokens": enc(r[f])}
                     for f in ("context", "good", "bad")]
        for r in corpus.continuations.rows:
            lens += [{"file": "continuations", "id": r["id"], "part": f, "domain": r["domain"], "n_tokens": enc(r[f])}
                     for f in ("context", "passage")]
        st.run.save("01_data", "token_lengths.csv", pd.DataFrame(lens))
        st.run.save("01_data", "summary.json", {
            "n_train_rows": len(rows), "n_train": len(tr_idx), "n_val": len(va_idx),
            "n_pairs": dict(pd.Series([r["domain"] for r in corpus.pairs.rows]).value_counts()),
            "n_continuations": dict(pd.Series([r["domain"] for r in corpus.continuations.rows]).value_counts()),
            "n_with_decision": sum("decision" in r for r in rows), "files": {k: str(v) for k, v in asdict(st.data).items()},
            "standin": st.standin, "leaks": D.find_leaks(corpus.train, corpus.pairs, corpus.continuations)})

    return cached(st, inputs, compute)


# ------------------------------------------------------------------------------------------ 02
def stage02_prescreen(st: Stage, epsilon: float, top_k: int | None, rank_by: str = "kl_norm") -> bool:
    """§3.3.1 KL prescreen on the base model; records which decision points training keeps."""
    from . import prescreen as P

    corpus = load_corpus(st)
    stage_key(st, "01_data")  # the data stage must have run; it is not part of the key (benchmark edits don't matter here)
    inputs = {"train": _data_hashes(st)["train"], "epsilon": epsilon, "top_k": top_k, "rank_by": rank_by, "model": model_key(st.profile),
              "code": source_hash("prescreen", "scoring", "models")}

    def compute() -> None:
        from .models import load_model, load_tokenizer, prefix_token_id

        tok, model = load_tokenizer(st.profile), load_model(st.profile)
        ranking = P.prescreen(model, tok, corpus.train.rows, prefix_token_id(tok), epsilon, st.profile.score_batch_tokens, rank_by)
        st.run.save("02_kl_prescreen", "ranking.parquet", ranking)
        keep = P.keep_top_k(ranking, top_k) | {r["id"] for r in corpus.train.rows if "decision" not in r}
        st.run.save("02_kl_prescreen", "keep.json", {"top_k": top_k, "epsilon": epsilon, "keep_ids": sorted(keep)})

    return cached(st, inputs, compute)


# ------------------------------------------------------------------------------------------ 03
def stage03_train(st: Stage, fast: bool = True) -> bool:
    """LoRA SFT for the profile's epochs; resumes an interrupted run from its last complete epoch."""
    from . import train as T

    corpus = load_corpus(st)
    split = st.run.load("01_data", "split.json")
    keep = set(st.run.load("02_kl_prescreen", "keep.json")["keep_ids"])
    stage_key(st, "01_data")
    inputs = {"train": _data_hashes(st)["train"], "split": split, "keep": sorted(keep), "hparams": asdict(st.profile.hparams),
              "model": model_key(st.profile), "code": source_hash("train", "lora_fast", "models"), "fast": fast}
    from .artifacts import key_of, write_json

    key = key_of(inputs)
    ck_dir = st.run.checkpoints
    owner = ck_dir / "cqa_key.json"
    if ck_dir.exists() and any(ck_dir.iterdir()) and (not owner.exists() or owner.read_text().strip('"\n') != key):
        aside = ck_dir.with_name(f"checkpoints.stale-{time.strftime('%Y%m%d-%H%M%S')}")
        ck_dir.rename(aside)
        st.progress(f"inputs changed: kept the old checkpoints as {aside.name} (nothing deleted)")

    def compute() -> None:
        from .models import load_model, load_tokenizer

        ck_dir.mkdir(parents=True, exist_ok=True)
        write_json(owner, key)
        rows = corpus.train.rows
        tr = [rows[i] for i in split["train_index"] if rows[i]["id"] in keep]
        va = [rows[i] for i in split["val_index"]]
        tok, model = load_tokenizer(st.profile), load_model(st.profile)
        st.progress(f"training on {len(tr)} rows, validating on {len(va)}; {st.profile.hparams.num_train_epochs} epochs")
        summ = T.train(st.profile, model, tok, tr, va, ck_dir, resume=True, fast=fast, progress=st.progress)
        epochs = pd.DataFrame(summ.pop("epochs"))
        st.run.save("03_train", "epochs.csv", epochs)
        st.run.save("03_train", "log_history.json", summ.pop("log_history"))
        st.run.save("03_train", "summary.json", summ)

    return cached(st, inputs, compute)


# ------------------------------------------------------------------------------------------ 04
def stage04_sweep(st: Stage, epochs: Sequence[int] = SWEEP_EPOCHS) -> bool:
    """Score the base model and the checkpoints of ``epochs`` on the benchmark (one loaded base)."""
    from .sweep import run_sweep
    from .train import complete_checkpoints

    corpus = load_corpus(st)
    inputs = {"up": stage_key(st, "03_train"), "bench": [_data_hashes(st)[k] for k in ("pairs", "continuations")],
              "epochs": list(epochs), "code": source_hash("scoring", "sweep", "models")}

    def compute() -> None:
        from .models import load_model, load_tokenizer, model_identity, prefix_token_id

        tok, model = load_tokenizer(st.profile), load_model(st.profile)
        pairs, conts, times = run_sweep(model, tok, prefix_token_id(tok), corpus.pairs.rows, corpus.continuations.rows,
                                        complete_checkpoints(st.run.checkpoints), list(epochs), model_identity(model),
                                        st.profile.score_batch_tokens, st.progress)
        st.run.save("04_epoch_sweep", "pair_scores.parquet", pairs)
        st.run.save("04_epoch_sweep", "continuation_scores.parquet", conts)
        st.run.save("04_epoch_sweep", "timings.csv", times)

    return cached(st, inputs, compute)


# ------------------------------------------------------------------------------------------ 05
def stage05_ddi(st: Stage, unit: str = "bits") -> bool:
    """Table 1: per epoch and domain, Δ(ΔI) with Wilcoxon, paired t, d_z and d_av."""
    from .stats import delta_delta_i

    inputs = {"up": stage_key(st, "04_epoch_sweep"), "unit": unit, "code": source_hash("stats")}

    def compute() -> None:
        items, table = delta_delta_i(st.run.load("04_epoch_sweep", "pair_scores.parquet"), unit)
        st.run.save("05_delta_delta_i", "items.csv", items)
        st.run.save("05_delta_delta_i", "table1.csv", table.assign(unit=unit))

    return cached(st, inputs, compute)


# ------------------------------------------------------------------------------------------ 06
def stage06_dlogp(st: Stage, epoch: int = PRIMARY_EPOCH, unit: str = "bits") -> bool:
    """Table 2: per-token log P of the continuation passages, base vs the chosen checkpoint."""
    from .stats import delta_logp_table

    inputs = {"up": stage_key(st, "04_epoch_sweep"), "epoch": epoch, "unit": unit, "code": source_hash("stats")}

    def compute() -> None:
        c = st.run.load("04_epoch_sweep", "continuation_scores.parquet")
        if epoch not in set(c.epoch):
            raise ValueError(f"epoch {epoch} was not scored in 04_epoch_sweep (have {sorted(set(c.epoch) - {0})})")
        st.run.save("06_delta_logp", "table2.csv",
                    delta_logp_table(c[c.model == "base"], c[c.epoch == epoch], unit).assign(epoch=epoch, unit=unit))

    return cached(st, inputs, compute)


# ------------------------------------------------------------------------------------------ 07
def stage07_claims(st: Stage, primary_epoch: int = PRIMARY_EPOCH, d_col: str = "d_z") -> bool:
    """The claims table, computed from this run's Table 1, Table 2, losses and pair scores."""
    from .claims import build_claims

    inputs = {"up": [stage_key(st, s) for s in ("03_train", "05_delta_delta_i", "06_delta_logp")],
              "epoch": primary_epoch, "d": d_col, "code": source_hash("claims")}

    def compute() -> None:
        setting = ("stand-in data" if st.standin else "user data") + f", {st.profile.name} profile ({st.profile.model_id})"
        claims = build_claims(st.run.load("05_delta_delta_i", "table1.csv"), st.run.load("06_delta_logp", "table2.csv"),
                              st.run.load("03_train", "epochs.csv"), st.run.load("04_epoch_sweep", "pair_scores.parquet"),
                              primary_epoch, d_col, setting)
        st.run.save("07_figures", "claims.csv", claims)

    return cached(st, inputs, compute)


def stage_table(run_dir: Path) -> list[dict[str, Any]]:
    """Every stage's record (reused or computed, wall time) for the manifest and the book."""
    import json

    out = []
    for p in sorted((Path(run_dir) / "artifacts").glob("*/_stage.json")):
        rec = json.loads(p.read_text())
        out.append({"stage": p.parent.name, "reused": rec.get("reused"), "wall_s": rec.get("wall_s"),
                    "key": rec.get("key", "")[:12], "finished": rec.get("finished")})
    return out
