"""Dataset filters for rejection-sampled data: decontamination, deduplication and R1's readability filters.

A sample is a dict with at least `prompt_id`, `problem` and `completion`. `apply_filters` runs the filters in this
order and counts each removed sample once, under the first filter that removes it (keys of the returned counts):

1. decontamination (`contaminated:<benchmark>`): the sample's problem shares a word n-gram with a benchmark problem.
   Texts are normalized first (lower case, every run of punctuation or `_` becomes a space, whitespace collapsed),
   so casing and punctuation edits do not hide a copy. A problem shorter than n words is compared whole, by equality
   of the normalized strings, with the benchmark problems that are also shorter than n words.
2. exact duplicates (`exact_duplicate`): the completion, whitespace-normalized, equals an earlier kept completion for
   the same prompt. Across prompts the same text is kept: it answers a different problem.
3. near duplicates (`near_duplicate`): within a prompt, the Jaccard similarity of word-shingle sets
       J(a, b) = |S(a) & S(b)| / |S(a) | S(b)|,  S(t) = the set of `shingle` consecutive lower-cased words of t
   with an earlier kept completion is >= the threshold (a text shorter than `shingle` words is one shingle; two
   empty texts have J = 1). Near duplicates are not kept, so they are not compared against later samples. A one-word
   edit changes up to `shingle` shingles: J >= (m - s) / (m + s) for m shingles, e.g. 51/61 = 0.84 for 60 words but
   0.98 for a 500-word chain of thought at s = 5.
4. readability (R1's filters on its cold-start and SFT data), the first that applies:
   `readability:mixed_language` -- share of the reasoning's words in the target script (the language-consistency
       reward) < min_language_share;
   `readability:repetition` -- share of repeated word n-grams (as in the repetition penalty) > max_repeated_share;
       checked before paragraph length, as runaway repetition usually also makes a wall of text;
   `readability:long_paragraph` -- a paragraph (text between blank lines) longer than max_paragraph_chars.

Every filter takes the samples still kept and returns indices into that list, so they compose in any order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from distill.verifiers.language import language_consistency_reward
from distill.verifiers.repetition import repeated_ngram_share

_PUNCTUATION = re.compile(r"[\W_]+")
_BLANK_LINE = re.compile(r"\n\s*\n")


# --- deduplication -------------------------------------------------------------------------------------------------


def exact_duplicates(samples: Sequence[Mapping]) -> list[int]:
    """Indices of samples whose whitespace-normalized completion repeats an earlier one for the same prompt."""
    seen: set[tuple[str, str]] = set()
    duplicates = []
    for i, sample in enumerate(samples):
        key = (sample["prompt_id"], " ".join(sample["completion"].split()))
        if key in seen:
            duplicates.append(i)
        else:
            seen.add(key)
    return duplicates


def shingles(text: str, size: int = 5) -> set[tuple[str, ...]]:
    words = text.lower().split()
    if len(words) <= size:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def jaccard(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def near_duplicates(samples: Sequence[Mapping], threshold: float = 0.9, shingle: int = 5) -> list[int]:
    """Indices of samples with shingle Jaccard >= threshold to an earlier kept sample of the same prompt."""
    kept: dict[str, list[set]] = {}
    duplicates = []
    for i, sample in enumerate(samples):
        current = shingles(sample["completion"], shingle)
        earlier = kept.setdefault(sample["prompt_id"], [])
        if any(jaccard(current, other) >= threshold for other in earlier):
            duplicates.append(i)
        else:
            earlier.append(current)
    return duplicates


# --- decontamination -----------------------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """Lower case, punctuation to spaces, whitespace collapsed: the form decontamination compares."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


class Decontaminator:
    """Finds problems that share a word n-gram with a benchmark problem (one hash lookup per n-gram)."""

    def __init__(self, benchmarks: Mapping[str, Iterable[str]], n: int = 8):
        if n < 1:
            raise ValueError(f"decontamination n-gram size must be >= 1, got {n}")
        self.n = n
        self.benchmarks = list(benchmarks)
        # n-gram (or whole short text) -> the first benchmark that has it; benchmark order decides ties.
        self._ngrams: dict[str, str] = {}
        self._short: dict[str, str] = {}
        for name, problems in benchmarks.items():
            for problem in problems:
                words = normalize(problem).split()
                if len(words) < n:
                    self._short.setdefault(" ".join(words), name)
                else:
                    for gram in self._grams(words):
                        self._ngrams.setdefault(gram, name)
        self._rank = {name: i for i, name in enumerate(self.benchmarks)}

    def _grams(self, words: list[str]) -> Iterable[str]:
        return (" ".join(words[i : i + self.n]) for i in range(len(words) - self.n + 1))

    def match(self, problem: str) -> str | None:
        """The first benchmark (in the order given) that shares an n-gram with the problem, or None."""
        words = normalize(problem).split()
        if len(words) < self.n:
            return self._short.get(" ".join(words)) if words else None
        hits = {self._ngrams[g] for g in self._grams(words) if g in self._ngrams}
        return min(hits, key=self._rank.__getitem__) if hits else None


# --- readability ---------------------------------------------------------------------------------------------------


def _readability(
    completion: str,
    *,
    language: str = "en",
    min_language_share: float = 0.95,
    max_paragraph_chars: int = 4000,
    max_repeated_share: float = 0.3,
    repetition_ngram: int = 10,
) -> tuple[str, str] | None:
    """(count key, reason) of the first readability problem, or None."""
    share = language_consistency_reward(completion, language=language).reward
    if share < min_language_share:
        return "mixed_language", f"mixed languages: {share:.0%} {language}"
    repeated = repeated_ngram_share(completion, repetition_ngram)
    if repeated > max_repeated_share:
        return "repetition", f"runaway repetition: {repeated:.0%} of {repetition_ngram}-grams repeated"
    longest = max(len(p.strip()) for p in _BLANK_LINE.split(completion))
    if longest > max_paragraph_chars:
        return "long_paragraph", f"paragraph of {longest} chars"
    return None


def readability_problem(
    completion: str,
    *,
    language: str = "en",
    min_language_share: float = 0.95,
    max_paragraph_chars: int = 4000,
    max_repeated_share: float = 0.3,
    repetition_ngram: int = 10,
) -> str | None:
    """A short reason the completion is hard to read (mixed languages, runaway repetition, wall of text), or None."""
    found = _readability(
        completion,
        language=language,
        min_language_share=min_language_share,
        max_paragraph_chars=max_paragraph_chars,
        max_repeated_share=max_repeated_share,
        repetition_ngram=repetition_ngram,
    )
    return found[1] if found else None


# --- all together --------------------------------------------------------------------------------------------------


def apply_filters(
    samples: Sequence[dict],
    *,
    dedup: bool = True,
    near_dup_threshold: float | None = 0.9,
    decontaminator: Decontaminator | None = None,
    readability: Mapping | None = None,
) -> tuple[list[dict], dict[str, int]]:
    """The kept samples in their original order, and how many each filter removed (see the module docstring).

    dedup: exact and near duplicates (near ones only when near_dup_threshold is not None).
    readability: None to skip, else keyword arguments of `readability_problem` ({} for its defaults).
    Every enabled filter has a count, 0 included, so the data card shows what ran.
    """
    kept = list(samples)
    counts: dict[str, int] = {}
    if decontaminator is not None:
        # A prompt's samples share its problem: match each problem once.
        matches = {problem: decontaminator.match(problem) for problem in {s["problem"] for s in kept}}
        hits = [matches[s["problem"]] for s in kept]
        kept = _drop(kept, hits, counts, "contaminated:", decontaminator.benchmarks)
    if dedup:
        kept = _drop_indices(kept, exact_duplicates(kept), counts, "exact_duplicate")
        if near_dup_threshold is not None:
            kept = _drop_indices(kept, near_duplicates(kept, near_dup_threshold), counts, "near_duplicate")
    if readability is not None:
        found = [_readability(s["completion"], **readability) for s in kept]
        labels = [f[0] if f else None for f in found]
        kept = _drop(kept, labels, counts, "readability:", ("mixed_language", "repetition", "long_paragraph"))
    return kept, counts


def _drop(
    kept: list[dict], labels: list[str | None], counts: dict[str, int], prefix: str, names: Iterable[str]
) -> list[dict]:
    """The samples whose label is None; counts each label under prefix + label (every name, 0 included)."""
    for name in names:
        counts.setdefault(prefix + name, 0)
    for label in labels:
        if label is not None:
            counts[prefix + label] = counts.get(prefix + label, 0) + 1
    return [s for s, label in zip(kept, labels, strict=True) if label is None]


def _drop_indices(kept: list[dict], indices: list[int], counts: dict[str, int], key: str) -> list[dict]:
    removed = set(indices)
    labels = [key if i in removed else None for i in range(len(kept))]
    return _drop(kept, labels, counts, "", [key])
