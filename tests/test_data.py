"""Quality checks of the stand-in corpus, benchmark, calibration set and control data, and of the audit instrument."""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from cqa_utils.method import audit
from cqa_utils.method.audit import bench_text
from cqa_utils.method.config import STANDIN_DIR
from cqa_utils.method.data import Records, coverage_counts, find_leaks, load, load_all, shingle_index, shingles

TRAIN = load(STANDIN_DIR / "train.jsonl", "train")
PAIRS = load(STANDIN_DIR / "benchmark" / "pairs.jsonl", "pairs")
CONTS = load(STANDIN_DIR / "benchmark" / "continuations.jsonl", "continuations")
CAL = load(STANDIN_DIR / "calibration" / "pairs.jsonl", "pairs")
COT = load(STANDIN_DIR / "calibration" / "cot_judgments.jsonl", "train")
NEUTRAL = load(STANDIN_DIR / "controls" / "neutral.jsonl", "continuations")
NO_CONTS = Records(Path("no-continuations"), [], [])
NO_PAIRS = Records(Path("no-pairs"), [], [])
words = lambda s: len(s.split())  # noqa: E731


def test_counts_and_schema():
    assert len(TRAIN) == 105
    assert Counter(r["domain"] for r in PAIRS.rows) == {"literary": 20, "factual": 20}
    assert Counter(r["domain"] for r in CONTS.rows) == {"literary": 20, "news": 10, "popsci": 10}
    for r in TRAIN.rows:
        d = r["decision"]
        assert 2 <= len(d["candidates"]) <= 4 and 0 <= d["expert_choice"] < len(d["candidates"])
        assert r["input"].startswith(d["context"]) and all(c in r["input"] for c in d["candidates"])
        assert r["genre"] in {"literary", "crime", "children", "romance", "science fiction", "historical",
                              "stage and screen", "game dialogue"}
    load_all(TRAIN.path, PAIRS.path, CONTS.path)  # validates ids, types, domains and leakage


def test_unique_ids_across_files():
    ids = [r["id"] for rec in (TRAIN, PAIRS, CONTS, CAL, COT, NEUTRAL) for r in rec.rows]
    assert len(ids) == len(set(ids))


def test_length_ranges():
    for r in TRAIN.rows:
        assert 120 <= words(r["output"]) <= 300, r["id"]
    for r in CONTS.rows:
        assert 60 <= words(r["context"]) <= 200 and 60 <= words(r["passage"]) <= 150, r["id"]


def test_genres_kinds_and_coverage_all_present():
    assert len({r["genre"] for r in TRAIN.rows}) == 8
    assert {r["decision_kind"] for r in TRAIN.rows} == {"plot turn", "character response", "disclosure", "scene design", "ending"}
    cov = coverage_counts(TRAIN.rows)
    assert all(v > 0 for v in cov["by_kind"].values())  # all three kinds appear in the corpus (§1.3)
    assert Counter(r["decision"]["expert_choice"] for r in TRAIN.rows).most_common(1)[0][1] < 50  # no answer-position bias


@pytest.fixture(scope="module")
def smol_tokenizer():
    from transformers import AutoTokenizer

    from cqa_utils.method.config import get_profile
    from cqa_utils.method.models import gguf_path

    g = gguf_path(get_profile("cpu"))
    return AutoTokenizer.from_pretrained(str(g.parent), gguf_file=g.name)


def test_pair_token_ratio(smol_tokenizer):
    for r in PAIRS.rows + CAL.rows:
        g = len(smol_tokenizer(" " + r["good"]).input_ids)
        b = len(smol_tokenizer(" " + r["bad"]).input_ids)
        assert 0.8 <= g / b <= 1.25, (r["id"], g, b)


def test_no_near_duplicate_training_outputs():
    sh = [shingles(r["output"], 5) for r in TRAIN.rows]
    worst = max((len(a & b) / len(a | b), i, j) for (i, a), (j, b) in combinations(enumerate(sh), 2))
    assert worst[0] <= 0.3, worst


def test_no_8_word_span_shared_with_training():
    assert find_leaks(TRAIN, PAIRS, CONTS, 8) == []
    assert find_leaks(TRAIN, CAL, NO_CONTS, 8) == []


def test_no_8_word_span_shared_between_calibration_and_benchmark():
    bench = set().union(*(shingles(audit.bench_text(r), 8) for r in PAIRS.rows + CONTS.rows))
    assert [r["id"] for r in CAL.rows if shingles(audit.bench_text(r), 8) & bench] == []


CALENDAR = {"January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
            "November", "December", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
GENERIC = {"He", "She", "How", "You", "I'd", "I'm", "I've", "I'll", "It's", "Hill", "Lane", "Street", "Road", "House", "Hotel",
           "Hall", "College", "Deep", "English", "Mr", "Mrs", "Miss", "Dr"} | CALENDAR


def _names(text: str) -> set[str]:
    """Capitalised words that do not open a sentence or a line: names of people and places.

    With the corpus's straight single quotes, a sentence also ends at a closing quote after its
    punctuation (``.' He``) and a new one starts at an opening quote (``said, 'There``)."""
    out = set()
    for sent in re.split(r'(?<=[.!?…:;"“”])\s+|(?<=[.!?,…]\')\s+|\s+(?=\')|\n', text):
        out.update(t for t in re.findall(r"[A-Za-z][a-z'’]+", sent)[1:] if t[0].isupper())
    return out


def _item_names(rows: list[dict]) -> set[str]:
    return set().union(*(_names("\n".join(r[f] for f in ("context", "good", "bad", "passage") if f in r)) for r in rows))


def test_no_character_or_place_shared_with_training():
    train = set().union(*(_names(r["input"] + "\n" + r["output"]) for r in TRAIN.rows))
    for rows in (PAIRS.rows + CONTS.rows, CAL.rows):
        shared = train & _item_names(rows)
        assert shared <= GENERIC, sorted(shared - GENERIC)


def test_names_split_after_a_closing_straight_quote():
    assert _names("'Well,' he said. 'Well.' Then Nuala left.") == {"Nuala"}
    assert _names("She said, 'There.' Quintus nodded.") == set()
    assert _names("She met Quintus at the door.") == {"Quintus"}


# ---------------------------------------------------------------- benchmark v2 and the calibration set

PAIR_SETS = {"benchmark": PAIRS, "calibration": CAL}
EDITORIAL = re.compile(r"\b(readers?|audience|the author|writer|the (novel|story|book|play|chapter|narrator|scene)|genre|"
                       r"written for|aimed at|must never|must not|decision:|options?:|from an? [\w -]*(novel|novella|story|play|"
                       r"screenplay|book|script))", re.I)
MAX_COSINE_TO_TRAINING = 0.10  # v1's four shared premises sat at 0.104-0.114 (see data/DATASHEET.md, Benchmark v2)
MAX_COSINE_CAL_TO_BENCHMARK = 0.16  # clear same-topic items removed while writing sat at 0.17-0.36; reading caught the rest


def test_v2_ids_version_and_calibration_ids():
    ids = [r["id"] for r in PAIRS.rows]
    assert ids == [f"pair-lit-{i:02d}" for i in range(1, 21)] + [f"pair-fact-{i:02d}" for i in range(1, 21)]
    assert all(r["version"] == 2 for r in PAIRS.rows)
    assert [r["id"] for r in CAL.rows] == [f"cal-lit-{i:02d}" for i in range(1, 21)] + [f"cal-fact-{i:02d}" for i in range(1, 21)]
    assert Counter(r["domain"] for r in CAL.rows) == {"literary": 20, "factual": 20}


@pytest.mark.parametrize("name", PAIR_SETS)
def test_contexts_carry_no_editorial_framing(name):
    hits = {r["id"]: m.group(0) for r in PAIR_SETS[name].rows if (m := EDITORIAL.search(r["context"]))}
    assert hits == {}


def test_editorial_pattern_catches_v1_style_framing():
    assert EDITORIAL.search("From a one-act stage play for a general adult audience; the playwright never lets a character")
    assert EDITORIAL.search("A picture-book text for four-year-olds, read aloud; the book never frightens its reader")
    assert EDITORIAL.search("From a screenplay for an adult spy thriller whose villain is a soft-spoken accountant")
    assert not EDITORIAL.search("Wilma was seven and knew the rule about the top shelf.")


@pytest.mark.parametrize("name", PAIR_SETS)
def test_vocabulary_model_cannot_pick_the_good_option(name):
    picks = audit.vocab_picks(PAIR_SETS[name].rows, audit.fit_vocab_logodds(TRAIN.rows))
    per_domain = picks.groupby("domain")["picks_good"].sum()
    assert (per_domain <= 13).all(), per_domain.to_dict()


@pytest.mark.parametrize("name", PAIR_SETS)
def test_surface_balance_per_domain(name):
    s = audit.balance_summary(PAIR_SETS[name].rows).set_index("domain")
    assert (s.n_pairs == 20).all()
    for col in ("good_longer", "good_longer_words", "good_higher_ttr"):
        assert s[col].between(7, 13).all(), (col, s[col].to_dict())
    assert ((s.good_with_emotive - s.bad_with_emotive).abs() <= 2).all(), s[["good_with_emotive", "bad_with_emotive"]]


def test_dialogue_quotes_match_the_training_corpus():
    train_style = audit.quote_style(" ".join(r["input"] for r in TRAIN.rows))
    assert train_style == "straight single"
    for rows in (PAIRS.rows, CAL.rows):
        styles = set(audit.balance_table(rows).quote_style)
        assert styles <= {"none", train_style}, styles
    assert {audit.quote_style(audit.bench_text(r)) for r in CONTS.rows} <= {"none", train_style}


def test_no_known_motif_shared_with_training():
    assert audit.shared_motifs(PAIRS.rows + CONTS.rows, TRAIN.rows).empty
    assert audit.shared_motifs(CAL.rows, TRAIN.rows).empty


@pytest.mark.parametrize("motif", audit.KNOWN_MOTIFS)
def test_each_known_motif_is_found_when_present(motif):
    probe = {"id": "probe", "domain": "literary", "context": " ".join(s + "s" for s in motif), "good": "a", "bad": "b"}
    hits = audit.shared_motifs([probe], TRAIN.rows, [motif])
    assert list(hits.id) == ["probe"] and hits.train_ids[0], motif


def test_no_item_close_to_a_training_row():
    for rows in (PAIRS.rows + CONTS.rows, CAL.rows):
        nn = audit.nearest_training_neighbours(rows, TRAIN.rows)
        worst = nn.loc[nn.cosine.idxmax()]
        assert worst.cosine < MAX_COSINE_TO_TRAINING, worst.to_dict()


def test_calibration_not_close_to_the_benchmark():
    nn = audit.nearest_training_neighbours(CAL.rows, PAIRS.rows + CONTS.rows)
    worst = nn.loc[nn.cosine.idxmax()]
    assert worst.cosine < MAX_COSINE_CAL_TO_BENCHMARK, worst.to_dict()


def test_continuation_sources_are_honest():
    for r in CONTS.rows:
        assert r["source"].startswith("written for this replication") and "never published" in r["source"], r["id"]
        assert "published" not in r, r["id"]


# ---------------------------------------------------------------- control data v2.1: CoT judgments and neutral text

CAL_BY_ID = {r["id"]: r for r in CAL.rows}
FACTUAL_INSTRUCTION = ("Read the passage and the decision at stake. Reason through it as an experienced science and news editor "
                       "would, then say which option the article should take and why.")
GOOD_FIRST_SEED = 19  # good shown as A for 10 pairs per domain drawn by random.Random(19) (calibration/README.md)
# words that would name the flaw or the rule in a `Decision:` line (the line names the decision, never the rule)
RULE_WORDS = re.compile(r"\b(wrong|correct|right|error|mistake|accura\w*|anachronis\w*|continuity|period|on the nose|"
                        r"show(s|ing)?|reveal\w*|over-?explain\w*|voice|tone|register|rule|lesson|moral|mechanism is|true|false)\b", re.I)


def _decision_line(r: dict) -> str:
    return r["input"].split("\n\nDecision: ", 1)[1].split("\n\nOptions:", 1)[0]


def _good_first_draw() -> dict[str, set[int]]:
    rng = random.Random(GOOD_FIRST_SEED)
    return {"literary": set(rng.sample(range(1, 21), 10)), "factual": set(rng.sample(range(1, 21), 10))}


def test_control_ids_and_counts():
    assert [r["id"] for r in COT.rows] == [f"calcot-lit-{i:02d}" for i in range(1, 21)] + [f"calcot-fact-{i:02d}" for i in range(1, 21)]
    assert Counter(r["domain"] for r in COT.rows) == {"literary": 20, "factual": 20}
    assert sorted(r["pair_id"] for r in COT.rows) == sorted(CAL_BY_ID)  # every calibration pair has exactly one judgment
    assert [r["id"] for r in NEUTRAL.rows] == ([f"neutral-lit-{i:02d}" for i in range(1, 21)]
                                               + [f"neutral-news-{i:02d}" for i in range(1, 11)]
                                               + [f"neutral-popsci-{i:02d}" for i in range(1, 11)])
    assert Counter(r["domain"] for r in NEUTRAL.rows) == {"literary": 20, "news": 10, "popsci": 10}


def test_cot_judgments_are_in_the_training_form_of_their_pair():
    (train_instruction,) = {r["instruction"] for r in TRAIN.rows}
    for r in COT.rows:
        p = CAL_BY_ID[r["pair_id"]]
        d = r["decision"]
        assert r["domain"] == p["domain"] and r["id"] == r["pair_id"].replace("cal-", "calcot-"), r["id"]
        assert r["instruction"] == (train_instruction if p["domain"] == "literary" else FACTUAL_INSTRUCTION), r["id"]
        assert d["context"] == p["context"] and sorted(d["candidates"]) == sorted([p["good"], p["bad"]]), r["id"]
        assert d["candidates"][d["expert_choice"]] == p["good"], r["id"]
        line = _decision_line(r)
        assert "\n" not in line and 4 <= len(line.split()) <= 25, (r["id"], line)
        assert r["input"] == f"{p['context']}\n\nDecision: {line}\n\nOptions:\nA. {d['candidates'][0]}\nB. {d['candidates'][1]}", r["id"]
        assert not RULE_WORDS.search(line), (r["id"], line)


def test_cot_good_first_balance_follows_the_documented_draw():
    shown_first = {dom: {int(r["pair_id"][-2:]) for r in COT.rows if r["domain"] == dom and r["decision"]["expert_choice"] == 0}
                   for dom in ("literary", "factual")}
    assert {dom: len(v) for dom, v in shown_first.items()} == {"literary": 10, "factual": 10}
    assert shown_first == _good_first_draw()


def test_cot_outputs_length_and_named_choice():
    for r in COT.rows:
        out = r["output"].strip()
        assert 120 <= words(out) <= 300, (r["id"], words(out))
        m = re.search(r"\b([AB])\.$", out)
        assert m and "AB".index(m.group(1)) == r["decision"]["expert_choice"], (r["id"], out[-60:])
        assert re.search(r"\bA\b", out) and re.search(r"\bB\b", out), r["id"]  # both options are weighed by name


def _span_index() -> dict:
    """Every 8-word span of the training corpus, the benchmark and the calibration set (all text fields, `note` included)."""
    texts = [(r["id"], " ".join([r["input"], r["output"], r["decision"]["context"]])) for r in TRAIN.rows]
    texts += [(r["id"], " ".join(str(r.get(f, "")) for f in ("context", "good", "bad", "passage", "flaw", "note")))
              for r in PAIRS.rows + CONTS.rows + CAL.rows]
    return shingle_index(texts, 8)


def test_cot_judgments_share_no_8_word_span():
    index = _span_index()
    leaks = [(r["id"], " ".join(s), index[s]) for r in COT.rows for s in shingles(r["output"] + " \n " + _decision_line(r), 8)
             if s in index]
    assert leaks == []  # judgments paraphrase their own pair too: no span of the options, context or note is copied
    own = [shingles(r["output"], 8) for r in COT.rows] + [shingles(bench_text(r), 8) for r in NEUTRAL.rows]
    shared = [(i, j) for i, j in combinations(range(len(own)), 2) if own[i] & own[j]]
    assert shared == []


def test_each_cot_judgment_is_about_its_own_pair():
    nn = audit.nearest_training_neighbours([{"id": r["pair_id"], "context": r["output"]} for r in COT.rows], CAL.rows)
    assert list(nn.id[nn.id != nn.train_id]) == []  # TF-IDF: every judgment's nearest calibration pair is the one it judges


def test_cot_judgments_are_not_near_duplicates():
    cot = [(r["id"], shingles(r["output"], 5)) for r in COT.rows]
    ref = cot + [(r["id"], shingles(r["output"], 5)) for r in TRAIN.rows]
    worst = max((len(a & b) / len(a | b), i, j) for i, a in cot for j, b in ref if i != j)
    assert worst[0] <= 0.3, worst


def test_cot_judgments_bring_no_benchmark_or_training_names():
    letters = {"A's", "B's"}
    cot = set().union(*(_names(r["output"]) for r in COT.rows)) - letters
    cal = _item_names(CAL.rows)
    assert sorted((cot & _item_names(PAIRS.rows + CONTS.rows)) - GENERIC - cal) == []
    assert sorted((cot & set().union(*(_names(r["input"] + "\n" + r["output"]) for r in TRAIN.rows))) - GENERIC - cal) == []


def test_neutral_text_shares_no_8_word_span():
    assert find_leaks(TRAIN, NO_PAIRS, NEUTRAL, 8) == []
    index = _span_index()
    assert [(r["id"], " ".join(s), index[s]) for r in NEUTRAL.rows for s in shingles(bench_text(r), 8) if s in index] == []


def test_neutral_text_not_close_to_benchmark_training_or_calibration():
    for ref, bound in ((TRAIN.rows, MAX_COSINE_TO_TRAINING), (PAIRS.rows + CONTS.rows, MAX_COSINE_CAL_TO_BENCHMARK),
                       (CAL.rows, MAX_COSINE_CAL_TO_BENCHMARK)):
        nn = audit.nearest_training_neighbours(NEUTRAL.rows, ref)
        worst = nn.loc[nn.cosine.idxmax()]
        assert worst.cosine < bound, worst.to_dict()
    assert audit.shared_motifs(NEUTRAL.rows, TRAIN.rows).empty


def test_neutral_names_are_new_and_start_n_to_z():
    names = _item_names(NEUTRAL.rows) - GENERIC
    taken = _item_names(PAIRS.rows + CONTS.rows + CAL.rows) | set().union(*(_names(r["input"] + "\n" + r["output"]) for r in TRAIN.rows))
    assert sorted(names & taken) == []
    assert sorted(n for n in names if not "N" <= n[0] <= "Z") == []


def test_neutral_lengths_match_the_calibration_pairs():
    for doms, cal_dom in ((("literary",), "literary"), (("news", "popsci"), "factual")):
        rows = [r for r in NEUTRAL.rows if r["domain"] in doms]
        cal = [r for r in CAL.rows if r["domain"] == cal_dom]
        ctx, opt = np.mean([words(r["context"]) for r in cal]), np.mean([words(r[k]) for r in cal for k in ("good", "bad")])
        assert abs(np.mean([words(r["context"]) for r in rows]) / ctx - 1) <= 0.15, doms
        assert abs(np.mean([words(r["passage"]) for r in rows]) / opt - 1) <= 0.15, doms


def test_neutral_text_is_plain_and_honest():
    for r in NEUTRAL.rows:
        assert not EDITORIAL.search(r["context"]) and not EDITORIAL.search(r["passage"]), r["id"]
        assert audit.quote_style(bench_text(r)) in {"none", "straight single"}, r["id"]
        assert r["source"].startswith("written for this replication") and "never published" in r["source"], r["id"]
        assert "published" not in r, r["id"]


# ---------------------------------------------------------------- the audit instrument on hand-made inputs

def _decision(cands: list[str], choice: int, rid: str = "t") -> dict:
    return {"id": rid, "decision": {"context": "c", "candidates": cands, "expert_choice": choice}}


TINY = [_decision(["red cat", "blue dog"], 0), _decision(["red dog", "green cat", "blue cat"], 0),
        _decision(["blue bird", "red bird"], 1)]
# chosen: red cat, red dog, red bird (N_c = 3); rejected: blue dog, green cat, blue cat, blue bird (N_r = 4)
TINY_LOGODDS = {"red": math.log(20), "blue": math.log(1 / 8), "cat": math.log(2 / 3), "dog": math.log(4 / 3),
                "green": math.log(1 / 2), "bird": math.log(4 / 3)}


def test_vocab_logodds_by_hand():
    m = audit.fit_vocab_logodds(TINY)
    assert (m.n_chosen, m.n_rejected) == (3, 4)
    assert m.logodds == pytest.approx(TINY_LOGODDS)
    # alpha = 0.5: red is in 3 of 3 chosen and 0 of 4 rejected: log(3.5 / 0.5) - log(0.5 / 4.5) = log 63
    assert audit.fit_vocab_logodds(TINY, alpha=0.5).logodds["red"] == pytest.approx(math.log(63))


def test_vocab_picks_by_hand():
    m = audit.fit_vocab_logodds(TINY)
    pairs = [{"id": "p1", "domain": "literary", "good": "Red cat.", "bad": "Blue cat."},
             {"id": "p2", "domain": "factual", "good": "unseen words", "bad": "also unseen"}]
    got = audit.vocab_picks(pairs, m).set_index("id")
    assert got.loc["p1", "score_good"] == pytest.approx((math.log(20) + math.log(2 / 3)) / 2)
    assert got.loc["p1", "score_bad"] == pytest.approx((math.log(1 / 8) + math.log(2 / 3)) / 2)
    assert bool(got.loc["p1", "picks_good"]) and not bool(got.loc["p2", "picks_good"])  # a tie is not a pick
    assert got.loc["p2", "score_good"] == 0.0


CALM = ["quiet", "held", "stone", "bread", "slow", "thumb", "rope", "dust", "pencil", "gate"]
LOUD = ["sudden", "tears", "scream", "anguish", "forever", "shattered", "sobbing", "soul", "despair", "destiny"]
CUE_TRAIN = [_decision([f"the {c} one", f"the {w} one"] if i % 2 else [f"the {w} one", f"the {c} one"], 0 if i % 2 else 1, f"t{i}")
             for i, (c, w) in enumerate(zip(CALM, LOUD))]  # the expert always chooses the calm word, in either position


def _cue_pairs(flip: set[int]) -> list[dict]:
    """One pair per word couple; the good option carries the chosen word unless its index is in ``flip``."""
    out = []
    for i, (c, w) in enumerate(zip(CALM, LOUD)):
        good, bad = (f"a {c} thing", f"a {w} thing") if i not in flip else (f"a {w} thing", f"a {c} thing")
        out.append({"id": f"q{i}", "domain": "literary", "context": "x", "good": good, "bad": bad})
    return out


def test_shuffle_test_flags_a_give_away_benchmark():
    assert [d["decision"]["candidates"][d["decision"]["expert_choice"]].split()[1] for d in CUE_TRAIN] == CALM
    res = audit.vocab_shuffle_test(CUE_TRAIN, _cue_pairs(set()), n=200, seed=1).iloc[0]
    assert res.observed == 10 and res.n_pairs == 10  # picks good in 100 % of pairs
    assert 3 < res.shuffled_mean < 7  # each refit flips a fair coin per pair
    assert res.p_one_sided < 0.02


def test_shuffle_test_passes_a_balanced_benchmark():
    res = audit.vocab_shuffle_test(CUE_TRAIN, _cue_pairs({5, 6, 7, 8, 9}), n=200, seed=1).iloc[0]
    assert res.observed == 5 and res.p_one_sided > 0.3


def test_balance_table_by_hand():
    pair = {"id": "p", "domain": "literary", "context": "'Go,' she said.", "good": "Tears fell.", "bad": "He sat and sat."}
    row = audit.balance_table([pair]).iloc[0]
    assert (row.chars_good, row.chars_bad) == (11, 15)
    assert row.wordlen_good == pytest.approx(4.5) and row.wordlen_bad == pytest.approx(11 / 4)
    assert row.ttr_good == pytest.approx(1.0) and row.ttr_bad == pytest.approx(0.75)
    assert (row.emotive_good, row.emotive_bad) == (1, 0)
    assert row.quote_style == "straight single"


def test_quote_style_and_emotive_hits():
    assert audit.quote_style("It's the dog's bone.") == "none"
    assert audit.quote_style("'Hello,' she said.") == "straight single"
    assert audit.quote_style("“Hi,” he said.") == "curly double"
    assert audit.quote_style('"Hi," he said.') == "straight double"
    assert audit.emotive_hits("She knelt on the hearthstone, sober.") == 0
    assert audit.emotive_hits("She sobbed; her heart was heavy.") == 2
    assert audit.emotive_hits("A wave of relief washed over her.") == 2


def test_nearest_neighbour_cosine_by_hand():
    bench = [{"id": "b", "context": "apple pie"}]
    train = [{"id": "t1", "input": "apple apple", "output": ""}, {"id": "t2", "input": "pear", "output": ""}]
    got = audit.nearest_training_neighbours(bench, train, k=2)
    # three documents: df(apple) = 2, df(pie) = df(pear) = 1; idf = ln(4 / (1 + df)) + 1
    a, b = math.log(4 / 3) + 1, math.log(2) + 1
    assert list(got.train_id) == ["t1", "t2"]
    assert got.cosine.tolist() == pytest.approx([a / math.hypot(a, b), 0.0])


def test_nearest_neighbour_matches_scikit_learn():
    sk = pytest.importorskip("sklearn.feature_extraction.text")
    bench, train = PAIRS.rows[:6], TRAIN.rows[:15]
    docs = [audit.bench_text(r) for r in bench] + [audit.train_text(r) for r in train]
    vec = sk.TfidfVectorizer(tokenizer=lambda d: [w for w in audit.words(d) if w not in audit.STOPWORDS],
                             lowercase=False, token_pattern=None, sublinear_tf=True, smooth_idf=True, norm="l2")
    x = vec.fit_transform(docs).toarray()
    sims = x[:6] @ x[6:].T
    got = audit.nearest_training_neighbours(bench, train)
    assert list(got.train_id) == [train[j]["id"] for j in sims.argmax(axis=1)]
    assert got.cosine.to_numpy() == pytest.approx(sims.max(axis=1))


def test_shared_motifs_needs_every_stem():
    train = [{"id": "t", "input": "The lighthouse keeper wrote a letter.", "output": ""}]
    both = {"id": "b1", "context": "Two lighthouses, many letters.", "good": "a", "bad": "b"}
    one = {"id": "b2", "context": "A lighthouse at dusk.", "good": "a", "bad": "b"}
    got = audit.shared_motifs([both, one], train, [("lighthouse", "letter")])
    assert got.to_dict("records") == [{"motif": "lighthouse + letter", "id": "b1", "train_ids": ["t"]}]
    assert audit.shared_motifs([one], train, [("lighthouse", "letter")]).empty


def test_words_tokeniser():
    assert audit.words("'Don't,' she said — it's 4 o'clock.") == ["don't", "she", "said", "it's", "o'clock"]
    assert np.isclose(audit.type_token_ratio("a a b"), 2 / 3)
