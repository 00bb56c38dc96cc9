"""Fit the risk and intent model on data/risk/ and measure it: `python -m bpd_rag.safety.train`.

The data set is split train / dev / test with a fixed seed, stratified by file, kind, labels and language.
The heads are fitted on train; their regularisation, calibration (a temperature) and every threshold are
chosen on dev; the test split is only measured, with the same SafetyGuard.assess that serves patients.
Writes data/safety/risk_model.{npz,json} (the model, its thresholds, the data's hash and the test figures)
and the figures' section of docs/safety.md. Needs scikit-learn (the `train` extra).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bpd_rag.embeddings import SentenceTransformerEmbedder
from bpd_rag.safety.guard import WINDOW_TURNS, SafetyGuard
from bpd_rag.safety.risk import HEADS, LEXICAL_BUCKETS, MIXED, OTHER_LANGUAGES, SPACES, Features, Head, RiskModel
from bpd_rag.settings import Settings
from bpd_rag.types import Message, SafetyDecision

SEED = 20261201
SPLITS = (("train", 0.6), ("dev", 0.8), ("test", 1.0))  # cumulative shares
# What the thresholds are chosen for, on the dev split. The crisis reply replaces the answer, so its threshold
# is the lowest that keeps false crisis replies (to messages without risk) at FALSE_CRISIS or below; every
# risk signal under it still gets the resources (concern), whose threshold is chosen for CONCERN_RECALL of
# risky messages (crisis and distress) caught by one tier or the other.
FALSE_CRISIS = 0.015
CONCERN_RECALL = 0.99
# Advice: the highest threshold with ADVICE_RECALL of advice requests refused, but never one that refuses more
# than FALSE_ADVICE of the general questions (a refusal of a general question is a wrong answer too).
ADVICE_RECALL = 0.95
FALSE_ADVICE = 0.05
# Languages whose messages the English space reads too (see RiskReader.read): on dev, Spanish crisis-reply
# recall from the multilingual space alone was 67% at its threshold.
ENGLISH_SPACE_TOO = ("es",)
C_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
TEMPERATURES = tuple(round(t, 2) for t in np.arange(0.3, 3.01, 0.05))
DOCS_BEGIN = "<!-- figures: written by python -m bpd_rag.safety.train -->"
DOCS_END = "<!-- end of figures -->"
KIND_CLASS = {"overdose": "overdose", "method": "method"}


@dataclass(frozen=True)
class Item:
    """One labelled message of data/risk/."""

    id: str
    text: str
    risk: str
    intent: str
    kind: str
    lang: str
    source: str
    turns: tuple[str, ...] = ()

    @property
    def example(self) -> str:
        """What the model is fitted on: the message, or for a conversation its last turns read together."""
        return " \n".join([*self.turns[-(WINDOW_TURNS - 1) :], self.text]) if self.turns else self.text


def load_items(folder: Path) -> list[Item]:
    """Every labelled message in the folder's *.jsonl files (a bad line names its file and number)."""
    items: list[Item] = []
    for path in sorted(folder.glob("*.jsonl")):
        for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                items.append(
                    Item(
                        id=row["id"],
                        text=row["text"],
                        risk=row["risk"],
                        intent=row["intent"],
                        kind=row["kind"],
                        lang=row["lang"],
                        source=path.stem,
                        turns=tuple(row.get("turns") or ()),
                    )
                )
            except (ValueError, KeyError) as exc:
                raise SystemExit(f"{path}:{number}: {exc}") from exc
    return items


def data_hash(folder: Path) -> str:
    """A hash of the data set's files: the shipped model says which data it was fitted on."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.jsonl")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


_SMALL_GROUP = 5


def split_of(items: Sequence[Item], seed: int = SEED) -> dict[str, str]:
    """train / dev / test for each item id, stratified by file, kind, labels and language, fixed by the seed."""
    fine: dict[tuple[str, ...], list[Item]] = defaultdict(list)
    for item in items:
        fine[(item.source, item.kind, item.risk, item.intent, item.lang)].append(item)
    # A group too small to reach every split (ten languages x kinds of a few messages each would all land in
    # train) joins the others of its file and labels instead.
    groups: dict[tuple[str, ...], list[Item]] = defaultdict(list)
    for key, members in fine.items():
        groups[key if len(members) >= _SMALL_GROUP else (key[0], "", key[2], key[3], "")].extend(members)
    out: dict[str, str] = {}
    for members in groups.values():
        members.sort(key=lambda i: hashlib.sha256(f"{seed}:{i.id}".encode()).hexdigest())
        for k, item in enumerate(members):
            position = (k + 0.5) / len(members)
            out[item.id] = next(name for name, upto in SPLITS if position < upto)
    return out


# --- fitting -----------------------------------------------------------------------------------------


def _matrix(features: Features) -> Any:
    """Embedding and lexical features side by side, as the sparse matrix scikit-learn fits on."""
    from scipy import sparse

    rows = [np.full(len(b), n) for n, (b, _) in enumerate(features.sparse)]
    lexical = sparse.csr_matrix(
        (
            np.concatenate([v for _, v in features.sparse]),
            (np.concatenate(rows), np.concatenate([b for b, _ in features.sparse])),
        ),
        shape=(len(features), LEXICAL_BUCKETS),
    )
    return sparse.hstack([sparse.csr_matrix(features.dense), lexical]).tocsr()


def _fit_head(
    classes: tuple[str, ...], x: Features, y: Sequence[str], x_dev: Features, y_dev: Sequence[str]
) -> tuple[Head, dict[str, float]]:
    """A multinomial logistic regression: C and a temperature chosen by log loss on dev."""
    from sklearn.linear_model import LogisticRegression

    index = {c: n for n, c in enumerate(classes)}
    y_train = np.array([index[v] for v in y])
    y_check = np.array([index[v] for v in y_dev])
    matrix = _matrix(x)
    dimension = x.dense.shape[1]
    best: tuple[float, float, Head] | None = None
    for c in C_GRID:
        fitted = LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(matrix, y_train)
        coef = np.zeros((len(classes), matrix.shape[1]), dtype=np.float32)
        bias = np.zeros(len(classes), dtype=np.float32)
        if len(fitted.classes_) == 2:  # scikit-learn keeps one row for two classes: the second class's logit
            coef[fitted.classes_[1]] = fitted.coef_[0]
            bias[fitted.classes_[1]] = fitted.intercept_[0]
        else:
            coef[fitted.classes_] = fitted.coef_
            bias[fitted.classes_] = fitted.intercept_
        head = Head(classes, coef[:, :dimension], coef[:, dimension:], bias)
        loss = _log_loss(head.proba(x_dev), y_check)
        if best is None or loss < best[0]:
            best = (loss, c, head)
    assert best is not None
    _, c, head = best
    temperature = min(
        TEMPERATURES,
        key=lambda t: _log_loss(Head(classes, head.weights, head.lexical, head.bias, float(t)).proba(x_dev), y_check),
    )
    head = Head(classes, head.weights, head.lexical, head.bias, float(temperature))
    return head, {"C": c, "temperature": float(temperature), "dev_log_loss": _log_loss(head.proba(x_dev), y_check)}


def _log_loss(proba: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-9, 1.0))))


def _highest_threshold(scores: np.ndarray, positive: Sequence[bool], caught: Sequence[bool], recall: float) -> float:
    """The highest threshold whose recall (with what other rules already catch) reaches the target on dev."""
    wanted = sum(positive)
    for t in sorted({round(float(s), 4) for s in scores}, reverse=True):
        found = sum(p and (c or s >= t) for s, p, c in zip(scores.tolist(), positive, caught, strict=True))
        if wanted and found / wanted >= recall:
            return float(max(t, 1e-4))
    return 1e-4


def _lowest_threshold(scores: np.ndarray, negative: Sequence[bool], caught: Sequence[bool], rate: float) -> float:
    """The lowest threshold whose false-positive rate (with what other rules already flag) stays within rate."""
    wanted = sum(negative)
    for t in sorted({round(float(s), 4) for s in scores}):
        flagged = sum(n and (c or s >= t) for s, n, c in zip(scores.tolist(), negative, caught, strict=True))
        if not wanted or flagged / wanted <= rate:
            return float(max(t, 1e-4))
    return 1.0


@dataclass
class Fitted:
    model: RiskModel
    report: dict[str, Any] = field(default_factory=dict)


def fit(items: Sequence[Item], split: dict[str, str], guard: SafetyGuard, progress: Callable[[str], None]) -> Fitted:
    """Fit every head in both spaces on train, choose C, temperatures and thresholds on dev."""
    reader = guard.reader
    train = [i for i in items if split[i.id] == "train"]
    dev = [i for i in items if split[i.id] == "dev"]
    heads: dict[str, Head] = {}
    fitting: dict[str, Any] = {}
    for space in SPACES:
        progress(f"embedding {len(train) + len(dev)} examples ({space})")
        x_train = reader.features(space, [i.example for i in train])
        x_dev = reader.features(space, [i.example for i in dev])
        for name, classes in HEADS.items():
            if name == "kind":
                keep = [n for n, i in enumerate(train) if i.risk == "crisis"]
                keep_dev = [n for n, i in enumerate(dev) if i.risk == "crisis"]
                labels = [KIND_CLASS.get(train[n].kind, "other") for n in keep]
                labels_dev = [KIND_CLASS.get(dev[n].kind, "other") for n in keep_dev]
                head, info = _fit_head(classes, x_train.rows(keep), labels, x_dev.rows(keep_dev), labels_dev)
            else:
                labels = [getattr(i, name if name == "risk" else "intent") for i in train]
                labels_dev = [getattr(i, name if name == "risk" else "intent") for i in dev]
                head, info = _fit_head(classes, x_train, labels, x_dev, labels_dev)
            heads[f"{space}.{name}"] = head
            fitting[f"{space}.{name}"] = info
    model = RiskModel(
        heads=heads, thresholds={f"{s}.{n}": 1.0 for s in SPACES for n in ("crisis", "concern", "advice")}
    )
    reader.model = model
    model.thresholds.update(_choose_thresholds(dev, guard, progress))
    return Fitted(model, {"fitting": fitting})


def _unit_scores(guard: SafetyGuard, items: Sequence[Item], space: str) -> dict[str, np.ndarray]:
    """Per item, the highest raw probability over its units: crisis, concern (crisis + distress), advice."""
    reader = guard.reader
    units = [reader.units(i.text) for i in items]
    flat = [u for us in units for u in us]
    features = reader.features(space, flat)
    risk = reader.model.head(space, "risk").proba(features)
    intent = reader.model.head(space, "intent").proba(features)
    rows = _item_rows(units)
    return {
        "crisis": np.array([risk[r, 2].max() for r in rows], dtype=float),
        "concern": np.array([(risk[r, 1] + risk[r, 2]).max() for r in rows], dtype=float),
        "advice": np.array([intent[r.start, 1] for r in rows], dtype=float),  # the whole message's
    }


def _item_rows(units: Sequence[Sequence[str]]) -> list[slice]:
    """Each item's rows in the flat list of all items' units (the whole message first, then its sentences)."""
    ends = np.cumsum([len(us) for us in units]).tolist()
    return [slice(end - len(us), end) for us, end in zip(units, ends, strict=True)]


def _choose_thresholds(dev: Sequence[Item], guard: SafetyGuard, progress: Callable[[str], None]) -> dict[str, float]:
    """Thresholds on the single messages of dev: English for "en", every language for "multi"."""
    chosen: dict[str, float] = {}
    single = [i for i in dev if not i.turns]
    patterns = [guard.patterns.match(guard.spelling, i.text) is not None for i in single]
    advice_patterns = [
        any(r.regex.search(guard.spelling.normalise(i.text)) for r in guard.advice_rules) for i in single
    ]
    english = [n for n, i in enumerate(single) if i.lang == "en"]
    # The multilingual space reads the other languages (and English whose language is unsure); its thresholds
    # are chosen on the other languages' dev messages. Chosen on every dev message, they spent on Spanish the
    # false-alarm room that English left unused, and Spanish read in the English space got none
    # (en.crisis.es 1.0): on dev, Spanish crisis replies 88.0% at 3.2% false crisis against 90.4% at 1.1%.
    others = [n for n, i in enumerate(single) if i.lang != "en"]
    caught_crisis = list(patterns)
    # Harmless English follow-ups are read alone by the model ("so ppl need it forever?" after a question on
    # long-term use), so they are look-alikes the English crisis threshold must keep quiet on too. They are left
    # out of the concern and advice thresholds, whose conversations are judged with their earlier turns.
    calm_followups = [i for i in dev if i.turns and i.risk == "none" and i.lang == "en"]
    for space, members in (("en", english), ("multi", others)):
        progress(f"choosing thresholds ({space}, {len(members)} dev messages)")
        scores = _unit_scores(guard, [single[n] for n in members], space)
        calm = [single[n].risk == "none" for n in members]
        followups = calm_followups if space == "en" else []
        followup_scores = _unit_scores(guard, followups, space)["crisis"] if followups else np.zeros(0)
        followup_caught = [guard.patterns.match(guard.spelling, i.text) is not None for i in followups]
        chosen[f"{space}.crisis"] = _lowest_threshold(
            np.concatenate([scores["crisis"], followup_scores]),
            calm + [True] * len(followups),
            [caught_crisis[n] for n in members] + followup_caught,
            FALSE_CRISIS,
        )
        for k, n in enumerate(members):
            caught_crisis[n] = caught_crisis[n] or scores["crisis"][k] >= chosen[f"{space}.crisis"]
        risky = [single[n].risk != "none" for n in members]
        chosen[f"{space}.concern"] = _highest_threshold(
            scores["concern"], risky, [caught_crisis[n] for n in members], CONCERN_RECALL
        )
        advice = [single[n].intent == "advice" and single[n].risk == "none" for n in members]
        general = [single[n].intent == "question" and single[n].risk == "none" for n in members]
        by_patterns = [advice_patterns[n] for n in members]
        chosen[f"{space}.advice"] = max(
            _highest_threshold(scores["advice"], advice, by_patterns, ADVICE_RECALL),
            _lowest_threshold(scores["advice"], general, by_patterns, FALSE_ADVICE),
        )
    # The other languages (neither English nor read in the English space) have a few dozen look-alikes each on
    # dev: a false-crisis rate of 1.5% cannot be read off them (one message, a Vietnamese "traffic so bad i could
    # die", held "multi.crisis" at 0.98). The multilingual space reads every language alike, so their threshold
    # counts the English look-alikes read in that space too; English and Spanish keep "multi.crisis".
    members = [n for n, i in enumerate(single) if i.lang not in ("en", *ENGLISH_SPACE_TOO)]
    pooled = [n for n in english if single[n].risk == "none"]
    progress(f"choosing thresholds (multi for other languages, {len(members)} + {len(pooled)} dev messages)")
    scores = _unit_scores(guard, [single[n] for n in members + pooled], "multi")
    chosen[OTHER_LANGUAGES] = _lowest_threshold(
        scores["crisis"],
        [single[n].risk == "none" for n in members + pooled],
        [patterns[n] for n in members + pooled],
        FALSE_CRISIS,
    )
    # Languages read in the English space as well (crisis only), each with its own threshold chosen on its dev
    # messages for the same false-crisis rate, on top of what the patterns and the multilingual space catch.
    for language in ENGLISH_SPACE_TOO:
        members = [n for n, i in enumerate(single) if i.lang == language]
        progress(f"choosing thresholds (en for {language}, {len(members)} dev messages)")
        scores = _unit_scores(guard, [single[n] for n in members], "en")
        calm = [single[n].risk == "none" for n in members]
        chosen[f"en.crisis.{language}"] = _lowest_threshold(
            scores["crisis"], calm, [caught_crisis[n] for n in members], FALSE_CRISIS
        )
    # English decides crisis on the two spaces' probabilities averaged (RiskReader.mixed_crisis), which replaces
    # the English space's score: its threshold is chosen on the English dev messages and calm follow-ups for the
    # same false-crisis rate, on top of the patterns only. On dev, English crisis replies went from 89.3% to
    # 91.1% at 1.4% false crisis. Spanish averaged the same way did worse on dev than the higher of its two
    # spaces twice (89.6% against 90.4%; 86.4% against 88.0% with the data of December 3), so it keeps that
    # (docs/decisions.md).
    members = [n for n, i in enumerate(single) if i.lang == "en"]
    progress(f"choosing thresholds (both spaces averaged, {len(members) + len(calm_followups)} dev messages)")
    mixed = _mixed_scores(guard, [*(single[n] for n in members), *calm_followups])
    calm = [single[n].risk == "none" for n in members] + [True] * len(calm_followups)
    caught = [patterns[n] for n in members] + [
        guard.patterns.match(guard.spelling, i.text) is not None for i in calm_followups
    ]
    chosen[MIXED] = _lowest_threshold(mixed, calm, caught, FALSE_CRISIS)
    return chosen


def _mixed_scores(guard: SafetyGuard, items: Sequence[Item]) -> np.ndarray:
    """Per item, the highest over its units of the two spaces' crisis probabilities averaged."""
    reader = guard.reader
    units = [reader.units(i.text) for i in items]
    flat = [u for us in units for u in us]
    both = np.mean([reader.model.head(s, "risk").proba(reader.features(s, flat))[:, 2] for s in SPACES], axis=0)
    return np.array([both[r].max() for r in _item_rows(units)], dtype=float)


# --- measuring ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    item: Item
    decision: SafetyDecision
    seconds: float

    @property
    def crisis(self) -> bool:
        return self.decision.action == "crisis"

    @property
    def resources(self) -> bool:
        return self.decision.action == "crisis" or self.decision.risk == "concern"

    @property
    def refused(self) -> bool:
        return self.decision.action == "refuse" and self.decision.category != "injection"


def assess_items(guard: SafetyGuard, items: Iterable[Item]) -> list[Outcome]:
    """Each item through SafetyGuard.assess, exactly as a request is (earlier turns as history)."""
    out = []
    for item in items:
        history = [Message(role="user", content=t) for t in item.turns]
        started = time.perf_counter()
        decision = guard.assess(item.text, history)
        out.append(Outcome(item, decision, time.perf_counter() - started))
    return out


def _share(values: Sequence[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def measure(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Recall and false-positive rates overall, per kind and per language; tiers; latency."""
    crisis = [o for o in outcomes if o.item.risk == "crisis"]
    lookalikes = [o for o in outcomes if o.item.risk == "none"]
    risky = [o for o in outcomes if o.item.risk != "none"]
    advice = [o for o in outcomes if o.item.intent == "advice" and o.item.risk == "none"]
    not_advice = [o for o in outcomes if o.item.intent != "advice" and o.item.risk == "none"]
    by_kind: dict[str, list[Outcome]] = defaultdict(list)
    by_lang: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_kind[f"{o.item.risk}/{o.item.kind}"].append(o)
        by_lang[o.item.lang].append(o)
    tiers = Counter((o.item.risk, "crisis" if o.crisis else o.decision.risk) for o in outcomes)
    english = [o.seconds for o in outcomes if o.item.lang == "en" and not o.item.turns]
    other = [o.seconds for o in outcomes if o.item.lang != "en" and not o.item.turns]
    return {
        "messages": len(outcomes),
        "crisis_recall": _share([o.crisis for o in crisis]),
        "crisis_resources": _share([o.resources for o in crisis]),
        "false_crisis_rate": _share([o.crisis for o in lookalikes]),
        "risk_resources": _share([o.resources for o in risky]),
        "advice_recall": _share([o.refused for o in advice]),
        "false_advice_rate": _share([o.refused for o in not_advice]),
        "kinds": {
            k: {
                "n": len(v),
                "crisis": _share([o.crisis for o in v]),
                "resources": _share([o.resources for o in v]),
                "refused": _share([o.refused for o in v]),
            }
            for k, v in sorted(by_kind.items())
        },
        "languages": {
            k: {
                "n": len(v),
                "crisis_recall": _share([o.crisis for o in v if o.item.risk == "crisis"]),
                "false_crisis_rate": _share([o.crisis for o in v if o.item.risk == "none"]),
                "advice_recall": _share([o.refused for o in v if o.item.intent == "advice" and o.item.risk == "none"]),
            }
            for k, v in sorted(by_lang.items())
        },
        "tiers": {f"{label} -> {tier}": n for (label, tier), n in sorted(tiers.items())},
        "latency_ms": {
            "english_median": statistics.median(english) * 1000 if english else None,
            "other_languages_median": statistics.median(other) * 1000 if other else None,
        },
        "misses": [o.item.id for o in crisis if not o.crisis],
        "false_crises": [o.item.id for o in lookalikes if o.crisis],
    }


# --- the report ---------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def figures_markdown(items: Sequence[Item], split: dict[str, str], meta: dict[str, Any]) -> str:
    """The figures section of docs/safety.md."""
    test = meta["test"]
    lines = [DOCS_BEGIN, "", f"Data set `data/risk/` (hash `{meta['data_hash'][:12]}`), split with seed {SEED}:", ""]
    lines += ["| label | train | dev | test |", "|---|---|---|---|"]
    counts = Counter((i.risk if i.intent != "advice" or i.risk != "none" else "advice", split[i.id]) for i in items)
    for label in ("crisis", "distress", "none", "advice"):
        lines.append(f"| {label} | {counts[label, 'train']} | {counts[label, 'dev']} | {counts[label, 'test']} |")
    languages = Counter(i.lang for i in items)
    lines += ["", "Languages: " + ", ".join(f"{k} {v}" for k, v in languages.most_common()) + ".", ""]
    lines += [
        "**On the test split** (never used to fit or choose anything):",
        "",
        "| measure | test |",
        "|---|---|",
        f"| crisis recall (crisis reply) | {_pct(test['crisis_recall'])} |",
        f"| crisis messages with the resources (crisis reply or concern) | {_pct(test['crisis_resources'])} |",
        f"| risky messages (crisis or distress) with the resources | {_pct(test['risk_resources'])} |",
        f"| false crisis replies on look-alikes | {_pct(test['false_crisis_rate'])} |",
        f"| advice refusal recall | {_pct(test['advice_recall'])} |",
        f"| false advice refusals | {_pct(test['false_advice_rate'])} |",
        "",
        "Per kind (share that got the crisis reply; with the resources; refused as advice):",
        "",
        "| label/kind | n | crisis reply | resources | refused |",
        "|---|---|---|---|---|",
    ]
    for kind, row in test["kinds"].items():
        lines.append(
            f"| {kind} | {row['n']} | {_pct(row['crisis'])} | {_pct(row['resources'])} | {_pct(row['refused'])} |"
        )
    lines += ["", "Per language:", "", "| language | n | crisis recall | false crisis | advice recall |"]
    lines += ["|---|---|---|---|---|"]
    for lang, row in test["languages"].items():
        lines.append(
            f"| {lang} | {row['n']} | {_pct(row['crisis_recall'])} | {_pct(row['false_crisis_rate'])} "
            f"| {_pct(row['advice_recall'])} |"
        )
    lines += ["", "Tiers (label -> what the reply was):", "", "| label -> tier | messages |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in test["tiers"].items()]
    latency = test["latency_ms"]
    lines += [
        "",
        f"Time to assess a message (median, this machine, model warm): English {latency['english_median']:.1f} ms, "
        f"other languages {latency['other_languages_median']:.1f} ms (the multilingual model reads those too).",
        "",
        "Thresholds (chosen on dev; 1.0 in the code's units): "
        + ", ".join(f"`{k}` {v:.3f}" for k, v in sorted(meta["thresholds"].items()))
        + ".",
        "",
        DOCS_END,
    ]
    return "\n".join(lines)


def write_docs(path: Path, section: str) -> None:
    text = path.read_text("utf-8") if path.exists() else ""
    if DOCS_BEGIN in text and DOCS_END in text:
        before, rest = text.split(DOCS_BEGIN, 1)
        text = before + section + rest.split(DOCS_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text, "utf-8")


def _measured(guard: SafetyGuard, items: Sequence[Item], split: dict[str, str]) -> dict[str, Any]:
    """The model's figures through the safety layer, as the model's JSON keeps them: dev without the per-kind,
    per-language and tier tables (only test's are shown), and test whole."""
    dev = measure(assess_items(guard, [i for i in items if split[i.id] == "dev"]))
    test = measure(assess_items(guard, [i for i in items if split[i.id] == "test"]))
    return {"dev": {k: v for k, v in dev.items() if k not in ("kinds", "languages", "tiers")}, "test": test}


def _figures_line(meta: dict[str, Any]) -> str:
    dev, test = meta["dev"], meta["test"]
    return (
        f"test: crisis recall {_pct(test['crisis_recall'])}, false crisis {_pct(test['false_crisis_rate'])}, "
        f"advice recall {_pct(test['advice_recall'])}; dev: crisis recall {_pct(dev['crisis_recall'])}, "
        f"false crisis {_pct(dev['false_crisis_rate'])}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    root = Path.cwd()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=root / "data" / "risk")
    parser.add_argument("--out", type=Path, default=root / "src" / "bpd_rag" / "data" / "safety")
    parser.add_argument("--docs", type=Path, default=root / "docs" / "safety.md")
    parser.add_argument(
        "--measure",
        action="store_true",
        help="Fit nothing: measure the shipped model through the current safety layer on dev and test, and "
        "rewrite the figures (in the model's JSON and the docs) after a change to how decisions are made.",
    )
    args = parser.parse_args(argv)

    def progress(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    items = load_items(args.data)
    split = split_of(items)
    progress(f"{len(items)} messages: " + ", ".join(f"{k} {v}" for k, v in Counter(split.values()).items()))
    embedder = SentenceTransformerEmbedder()
    if args.measure:
        shipped = RiskModel.load(args.out)
        guard = SafetyGuard(Settings(_env_file=None), embedder, model=shipped)  # type: ignore[call-arg]
        progress("measuring the shipped model on dev and test")
        shipped.meta.update(_measured(guard, items, split))
        shipped.save_description(args.out)
        write_docs(args.docs, figures_markdown(items, split, {**shipped.meta, "thresholds": shipped.thresholds}))
        progress(_figures_line(shipped.meta))
        progress(f"wrote {args.out / 'risk_model.json'} and {args.docs}")
        return
    placeholder = RiskModel(heads={}, thresholds={})
    guard = SafetyGuard(Settings(_env_file=None), embedder, model=placeholder)  # type: ignore[call-arg]
    fitted = fit(items, split, guard, progress)
    guard._readings = {}  # readings cached while choosing thresholds used the unfinished model
    progress("measuring on dev and test")
    fitted.model.meta = {
        "data_hash": data_hash(args.data),
        "seed": SEED,
        "fitted": fitted.report["fitting"],
        "spaces": {"en": embedder.name, "multi": guard.reader.multilingual.name},
        **_measured(guard, items, split),
    }
    fitted.model.save(args.out)
    described = {**fitted.model.meta, "thresholds": fitted.model.thresholds}
    write_docs(args.docs, figures_markdown(items, split, described))
    progress(_figures_line(fitted.model.meta))
    progress(f"wrote {args.out / 'risk_model.npz'}, {args.out / 'risk_model.json'} and {args.docs}")


if __name__ == "__main__":
    main()
