"""The offline answerer: picks the retrieved sentences that answer the question and cites each one."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from bpd_rag.answering import make_citation
from bpd_rag.conflicts import Claim, find_disagreements
from bpd_rag.corpus import Erratum, in_errata
from bpd_rag.embeddings import Embedder, Vector, cosine
from bpd_rag.fitted import packaged, read_logistic
from bpd_rag.index import embedding_text
from bpd_rag.prompts import load_prompt
from bpd_rag.textutil import QUESTION_FILLER, one_edit, sentence_spans, stem, terms
from bpd_rag.types import EVIDENCE_RANK, Answer, Chunk, Citation, Passage, Question, Statement, source_display

_CACHE_LIMIT = 50_000
_STUDIES = ("randomized_trial", "uncontrolled_study")
_UNKNOWN_SHARE_VETO = 0.3
_NUMBER = r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|twelve|twenty|hundred|half|dozen)\b"

# What kind of answer a question asks for, and what a sentence needs to contain to be one.
_ANSWER_TYPES: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = (
    # price: "how much does it cost", "what is the price"
    (
        re.compile(r"\b(cost|costs|price|prices|pay|fee|fees|charge)\b", re.I),
        re.compile(r"[$€£]\s?\d|\b\d[\d,.]*\s?(dollars|usd|eur)\b", re.I),
    ),
    # dose: "what dose", "how much ketamine"
    (
        re.compile(r"\b(dose|doses|dosage|dosing|mg|milligrams?)\b", re.I),
        re.compile(r"\d[\d.]*\s?(mg|milligrams?|mcg|ml)\b", re.I),
    ),
    # count: "how many", "number of"
    (re.compile(r"\bhow many\b|\bnumber of\b", re.I), re.compile(_NUMBER, re.I)),
    # time: "when", "how long", "how soon", "how quickly"
    (
        re.compile(r"^\s*when\b|\bhow (long|soon|quickly|fast)\b", re.I),
        re.compile(_NUMBER + r"|\b(minutes?|hours?|days?|weeks?|months?|years?|quickly|rapid|immediately)\b", re.I),
    ),
)


@dataclass(frozen=True)
class _Sentence:
    """A quotable sentence of a chunk (with its list, if it introduces one), as scored."""

    start: int  # offsets within the chunk text
    end: int
    text: str
    in_context: str  # with the publisher and section heading, as the chunk was indexed
    terms: frozenset[str]  # of in_context


@dataclass
class _Candidate:
    passage_index: int
    start: int  # offsets within the passage's chunk text
    end: int
    text: str
    doc_id: str
    doc_offset: int
    in_context: str
    terms: frozenset[str]
    score: float = 0.0
    vector: Vector | None = None  # of the sentence alone
    evidence: str = "unknown"


def _asks_answer_type(question: str) -> bool:
    """Whether the question asks for a price, dose, count or time."""
    return any(asks.search(question) for asks, _ in _ANSWER_TYPES)


def _heuristic(features: dict[str, float]) -> float:
    """The score without a fitted model: meaning and shared words, halved when the kind of answer is missing."""
    score = 0.5 * 0.5 * (features["dense_context"] + features["dense_alone"]) + 0.5 * features["words"]
    if features["type_missing"]:
        score *= 0.5
    if features["unknown_share"] >= _UNKNOWN_SHARE_VETO:
        score *= 1.0 - features["unknown_share"]
    return score


def _answer_type_met(question: str, sentence: str) -> bool:
    """False when the question asks for a price, dose, count or time that the sentence does not give."""
    for asks, gives in _ANSWER_TYPES:
        if asks.search(question):
            return bool(gives.search(sentence))
    return True


_LIST_AFTER = re.compile(r"(?:\s*\n[ \t]*(?:[-*•]|\d+[.)])[ \t]+[^\n]+)+")


def _through_list(text: str, end: int) -> int:
    """A sentence that introduces a list ("These side effects may include:") ends after the list."""
    if not text[:end].rstrip().endswith(":"):
        return end
    match = _LIST_AFTER.match(text, end)
    return match.end() if match else end


def one_line(text: str) -> str:
    """A quoted sentence with its list folded into one line: "... include: Anxiety; Nightmares"."""
    lead, *items = [line.strip() for line in text.splitlines() if line.strip()]
    items = [re.sub(r"^(?:[-*•]|\d+[.)])\s+", "", item) for item in items]
    return f"{lead} {'; '.join(items)}" if items else lead


def source_name(passage: Passage) -> str:
    """How a source is named in an answer: publisher (or title) and the kind of source."""
    chunk = passage.chunk
    return source_display(chunk.publisher, chunk.title, chunk.doc_id, chunk.source_type)


# A sentence is shown when the fitted model gives it at least this probability of being part of an answer.
_SENTENCE_PROBABILITY = 0.5

ANSWERABILITY_FEATURES = (
    "dense_context",
    "dense_alone",
    "words",
    "type_missing",
    "unknown_share",
    "passage_rank",
    "passage_similarity",
    "neighbour",
)


@dataclass(frozen=True)
class AnswerabilityModel:
    """A logistic regression: the probability that a sentence answers the question (fitted on the dev split by
    `python -m bpd_rag.answering.fit`), and the probabilities above which a question is answered and a
    further sentence is quoted."""

    weights: dict[str, float]
    bias: float
    answer_threshold: float
    meta: dict[str, object]

    def probability(self, features: dict[str, float]) -> float:
        z = self.bias + sum(self.weights[f] * features[f] for f in ANSWERABILITY_FEATURES)
        return 1.0 / (1.0 + math.exp(-z))

    @classmethod
    def load(cls, path: Path | None = None) -> AnswerabilityModel:
        weights, bias, threshold, meta = read_logistic(
            path or packaged("answering", "answerability.json"),
            ANSWERABILITY_FEATURES,
            "answer_threshold",
            "answerability model",
        )
        return cls(weights=weights, bias=bias, answer_threshold=threshold, meta=meta)

    def save(self, path: Path) -> None:
        data = {"weights": self.weights, "bias": self.bias, "answer_threshold": self.answer_threshold}
        path.write_text(json.dumps({**data, "meta": self.meta}, indent=2) + "\n", "utf-8")


class Outcomes:
    """Which outcomes a sentence is about, and whether it claims a benefit or a harm (data/answering/outcomes.yaml)."""

    def __init__(self, outcomes: dict[str, re.Pattern[str]], claims: re.Pattern[str]) -> None:
        self._outcomes = outcomes
        self._claims = claims

    @classmethod
    def load(cls, path: Path | None = None) -> Outcomes:
        path = path or packaged("answering", "outcomes.yaml")
        data = yaml.safe_load(path.read_text("utf-8"))
        return cls({k: re.compile(v, re.I) for k, v in data["outcomes"].items()}, re.compile(data["claims"], re.I))

    def of(self, sentence: str) -> set[str]:
        return {name for name, regex in self._outcomes.items() if regex.search(sentence)}

    def claims(self, sentence: str) -> bool:
        return bool(self._claims.search(sentence))


class ExtractiveAnswerer:
    """Selects evidence sentences by meaning and term overlap; every sentence of the reply is a cited quote."""

    name = "extractive"

    def __init__(
        self,
        embedder: Embedder,
        prompts_dir: Path,
        max_sentences: int = 4,
        min_score: float = 0.34,
        known_term: Callable[[str], bool] | None = None,
        errata: Sequence[Erratum] = (),
        evidence_of: Callable[[str, int], str] | None = None,
        findings: Callable[[], Sequence[Passage]] | None = None,
        outcomes: Outcomes | None = None,
        model: AnswerabilityModel | None = None,
    ) -> None:
        self.model = model
        self.embedder = embedder
        self.evidence_of = evidence_of or (lambda doc_id, offset: "unknown")
        self.findings = findings or (lambda: ())
        self.outcomes = outcomes
        self.errata = tuple(errata)
        self.known_term = known_term
        self.max_sentences = max_sentences
        self.min_score = min_score
        self.no_answer_text = load_prompt(prompts_dir, "no_answer.txt")
        self.intro_text = load_prompt(prompts_dir, "answer_intro.txt")
        self._vectors: dict[str, Vector] = {}
        self._sentences: dict[tuple[str, str, str | None, str | None], tuple[_Sentence, ...]] = {}

    def _embed(self, texts: Sequence[str]) -> list[Vector]:
        # Sentence vectors are cached: the same corpus sentences come back question after question.
        # Requests run in threads: a full cache is replaced, never cleared in place, and this call reads
        # only its own reference, so a concurrent request cannot empty it between check and read.
        cache = self._vectors
        missing = list(dict.fromkeys(t for t in texts if t not in cache))
        if missing:
            fresh = dict(zip(missing, self.embedder.embed_documents(missing), strict=True))
            if len(cache) + len(fresh) > _CACHE_LIMIT:
                self._vectors = {}
            self._vectors.update(fresh)
            cache = {**cache, **fresh} if cache is not self._vectors else cache
        return [cache[t] for t in texts]

    def _quotable(self, chunk: Chunk) -> tuple[_Sentence, ...]:
        """The chunk's sentences worth quoting, kept per chunk: the same chunks come back question after question."""
        key = (chunk.chunk_id, chunk.text, chunk.publisher, chunk.heading)
        found = self._sentences.get(key)
        if found is not None:
            return found
        out = []
        for start, sentence_end in sentence_spans(chunk.text):
            end = _through_list(chunk.text, sentence_end)
            text = chunk.text[start:end]
            if len(terms(text)) < 3:  # fragments say nothing
                continue
            if in_errata(self.errata, chunk.doc_id, text):
                continue  # a known error of the source (corpus/errata.yaml) is never quoted
            in_context = embedding_text(chunk.model_copy(update={"text": text}))
            out.append(_Sentence(start, end, text, in_context, frozenset(terms(in_context))))
        if len(self._sentences) >= _CACHE_LIMIT:
            self._sentences = {}  # replaced, not cleared: see _embed
        self._sentences[key] = found = tuple(out)
        return found

    def _candidates(self, passages: Sequence[Passage]) -> list[_Candidate]:
        seen: set[tuple[str, int]] = set()
        out: list[_Candidate] = []
        for p_index, passage in enumerate(passages):
            chunk = passage.chunk
            for s in self._quotable(chunk):
                key = (chunk.doc_id, chunk.start + s.start)
                if key in seen:  # overlapping chunks repeat sentences
                    continue
                seen.add(key)
                evidence = self.evidence_of(chunk.doc_id, chunk.start + s.start)
                if evidence == "advertising":  # a clinic advertising its services is not information
                    continue
                out.append(
                    _Candidate(
                        p_index,
                        s.start,
                        s.end,
                        s.text,
                        chunk.doc_id,
                        chunk.start + s.start,
                        s.in_context,
                        s.terms,
                        evidence=evidence,
                    )
                )
        return out

    def score(self, question: str, passages: Sequence[Passage]) -> list[_Candidate]:
        """Candidates scored by the answerability model: the probability that the sentence answers the question.

        Without a fitted model (tests of logic), 0.5 * cosine + 0.5 * idf-weighted share of the question's terms.
        """
        candidates = self._candidates(passages)
        if not candidates:
            return []
        for cand, features in zip(candidates, self.features(question, candidates, passages), strict=True):
            cand.score = self.model.probability(features) if self.model is not None else _heuristic(features)
        return sorted(candidates, key=lambda c: -c.score)

    def features(
        self, question: str, candidates: Sequence[_Candidate], passages: Sequence[Passage]
    ) -> list[dict[str, float]]:
        """What the answerability model reads of each sentence: how close it is to the question (with its section
        and alone), the share of the question's words it has, whether it gives the kind of answer asked for
        (a number, a time, a dose), the share of the question's words the corpus never uses, and how well its
        passage ranked (is the passage about the question at all)."""
        # A sentence is compared with the context its chunk was indexed with (publisher, section heading) and
        # alone: within a section the shared heading makes every sentence look alike.
        vectors = self._embed([c.in_context for c in candidates])
        plain = self._embed([c.text for c in candidates])
        query_vector = self.embedder.embed_query(question)
        sentence_terms = [c.terms for c in candidates]
        df = Counter(t for ts in sentence_terms for t in ts)
        n = len(candidates)
        q_terms = set(terms(question))
        if self.known_term is not None:
            # A word the corpus lacks that stands beside its spelling correction ("pilot trail trial") is
            # no part of the question: it would only dilute the overlap and look like a new topic.
            q_terms -= {t for t in q_terms if not self.known_term(t) and (one_edit(t) - {t}) & q_terms}
        idf = {t: math.log(1 + n / (1 + df.get(t, 0))) for t in q_terms}
        total = sum(idf.values()) or 1.0
        filler = {stem(w) for w in QUESTION_FILLER}
        unknown = {
            t
            for t in q_terms
            if len(t) >= 4
            and "-" not in t
            and t not in filler
            and self.known_term is not None
            and not self.known_term(t)
        }
        unknown_share = sum(idf[t] for t in unknown) / total
        asks_type = _asks_answer_type(question)
        out = []
        for cand, vector, own, s_terms in zip(candidates, vectors, plain, sentence_terms, strict=True):
            cand.vector = own
            passage = passages[cand.passage_index]
            rank = passage.dense_rank or passage.bm25_rank or 50
            out.append(
                {
                    "dense_context": max(cosine(query_vector, vector), 0.0),
                    "dense_alone": max(cosine(query_vector, own), 0.0),
                    "words": sum(idf[t] for t in q_terms & s_terms) / total,
                    "type_missing": 1.0 if asks_type and not _answer_type_met(question, cand.text) else 0.0,
                    "unknown_share": unknown_share,
                    "passage_rank": 1.0 / rank,
                    "passage_similarity": passage.dense_similarity or 0.0,
                    "neighbour": 1.0 if passage.neighbour_of else 0.0,
                }
            )
        return out

    def no_answer(self) -> Answer:
        """The reply when nothing in the sources answers the question."""
        return Answer(
            kind="no_answer", statements=[Statement(kind="info", text=self.no_answer_text)], answerer=self.name
        )

    def answer(self, question: Question, passages: Sequence[Passage]) -> Answer:
        ranked = self.score(question.query, passages)
        threshold = self.model.answer_threshold if self.model is not None else self.min_score
        if not ranked or ranked[0].score < threshold:
            return self.no_answer()  # the question-level decision: does any sentence answer it?
        # Which sentences to show: with the fitted model, every sentence the sentence-level classifier calls
        # more likely part of an answer than not (0.5; the question-level threshold above is stricter).
        keep = min(threshold, _SENTENCE_PROBABILITY) if self.model is not None else threshold
        relevant = [c for c in ranked if c.score >= keep]

        chosen: list[_Candidate] = []
        for cand in relevant:
            if len(chosen) == self.max_sentences:
                break
            if any(cosine(cand.vector or [], c.vector or []) > 0.92 for c in chosen):
                continue  # a near-repeat adds nothing
            chosen.append(cand)

        passages = list(passages)
        chosen = self._with_findings(question.query, chosen, passages)
        # The strongest evidence first: the randomized trial, then the uncontrolled study, then the rest.
        chosen.sort(key=lambda c: (EVIDENCE_RANK.get(c.evidence, 5), -c.score))
        conflicts = self._conflicts(chosen, relevant, passages)
        return self._compose(chosen, conflicts, passages)

    def _with_findings(self, question: str, chosen: list[_Candidate], passages: list[Passage]) -> list[_Candidate]:
        """The chosen sentences plus, for each clinic's claim about an outcome, what the trials found on it.

        A claim ("ketamine has a low risk of side effects") never stands without the trial's finding on the
        same outcome when the corpus has one; the finding most like the claim (and the question) is added.
        """
        if self.outcomes is None:
            return chosen
        studied = {o for c in chosen if c.evidence in _STUDIES for o in self.outcomes.of(c.text)}
        wanted = {
            o
            for c in chosen
            if c.evidence not in _STUDIES and self.outcomes.claims(c.text)
            for o in self.outcomes.of(c.text)
        } - studied
        if not wanted:
            return chosen
        findings = [f for f in self.findings() if self.outcomes.of(f.chunk.text) & wanted]
        have = {(c.doc_id, c.doc_offset) for c in chosen}
        findings = [f for f in findings if (f.chunk.doc_id, f.chunk.start) not in have]
        if not findings:
            return chosen
        vectors = self._embed([f.chunk.text for f in findings])
        query = self.embedder.embed_query(question)
        claims = [c for c in chosen if c.evidence not in _STUDIES]
        added: list[_Candidate] = []
        for outcome in sorted(wanted):
            options = [n for n, f in enumerate(findings) if outcome in self.outcomes.of(f.chunk.text)]
            if not options or any(outcome in self.outcomes.of(a.text) for a in added):
                continue

            def closeness(n: int) -> float:
                like_claim = max(cosine(vectors[n], c.vector or []) for c in claims)
                return like_claim + cosine(vectors[n], query)

            best = max(options, key=closeness)
            finding = findings[best]
            passages.append(finding)
            chunk = finding.chunk
            added.append(
                _Candidate(
                    len(passages) - 1,
                    0,
                    len(chunk.text),
                    chunk.text,
                    chunk.doc_id,
                    chunk.start,
                    chunk.text,
                    frozenset(terms(chunk.text)),
                    score=closeness(best) / 2,
                    vector=vectors[best],
                    evidence=self.evidence_of(chunk.doc_id, chunk.start),
                )
            )
        return chosen + added

    def _conflicts(
        self, chosen: list[_Candidate], relevant: list[_Candidate], passages: Sequence[Passage]
    ) -> list[tuple[str, _Candidate, _Candidate]]:
        """Disagreements between chosen sentences, or between a chosen one and other relevant evidence."""
        pool = chosen + [c for c in relevant[: self.max_sentences * 3] if c not in chosen]
        claims = [Claim(c.text, c.doc_id, source_name(passages[c.passage_index])) for c in pool]
        # Whether two claims are about the same thing is judged on the sentences alone: the publisher in
        # front of a scored sentence would pull sentences of different sources apart.
        sims = [[cosine(a.vector or [], b.vector or []) for b in pool] for a in pool]
        out = []
        for d in find_disagreements(claims, sims):
            if pool[d.first] in chosen or pool[d.second] in chosen:
                out.append((d.summary, pool[d.first], pool[d.second]))
        return out

    def _compose(
        self,
        chosen: list[_Candidate],
        conflicts: list[tuple[str, _Candidate, _Candidate]],
        passages: Sequence[Passage],
    ) -> Answer:
        # Both sides of a disagreement are shown, even if one side did not make the cut.
        for _summary, a, b in conflicts:
            for cand in (a, b):
                if cand not in chosen:
                    chosen.append(cand)
        citations: list[Citation] = []
        ids: dict[int, int] = {}
        statements = [Statement(kind="info", text=self.intro_text)]
        for cand in chosen:
            passage = passages[cand.passage_index]
            ids[id(cand)] = len(citations) + 1
            citations.append(make_citation(len(citations) + 1, passage, cand.start, cand.end))
            statements.append(Statement(kind="quote", text=one_line(cand.text), citation_ids=[ids[id(cand)]]))
        # The same disagreement found between several pairs of sentences is one note citing them all.
        merged: dict[str, set[int]] = {}
        for summary, a, b in conflicts:
            merged.setdefault(summary, set()).update((ids[id(a)], ids[id(b)]))
        statements += [Statement(kind="conflict", text=s, citation_ids=sorted(c)) for s, c in merged.items()]
        return Answer(kind="answer", statements=statements, citations=citations, answerer=self.name)
