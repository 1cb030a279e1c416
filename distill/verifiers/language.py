"""R1's language-consistency reward: the share of the reasoning's words written in the target language.

reward = (words of the reasoning in the target script) / (all words of the reasoning), in [0, 1]; 1.0 when the
reasoning has no words. The reasoning is the text inside the think block (the whole completion if it has none).
A word is a maximal run of letters; digits and symbols are ignored. Script stands in for language, as a rule that
needs no model: `en` counts Latin-script words, `zh` counts CJK ideographs (each ideograph is a word, since Chinese
has no spaces). This catches the paper's failure -- reasoning that drifts between English and Chinese.
"""

from __future__ import annotations

import re
import unicodedata

from distill.verifiers.base import Verdict

_LATIN_WORD = re.compile(r"[^\W\d_]+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def _reasoning(completion: str) -> str:
    if "</think>" in completion:
        return completion.split("</think>", 1)[0].replace("<think>", "")
    return completion.replace("<think>", "")


def _is_latin(word: str) -> bool:
    return all("LATIN" in unicodedata.name(ch, "") for ch in word)


def language_consistency_reward(completion: str, *, language: str = "en", **_row_fields) -> Verdict:
    text = _reasoning(completion)
    cjk = _CJK.findall(text)
    others = _LATIN_WORD.findall(_CJK.sub(" ", text))
    latin = [w for w in others if _is_latin(w)]
    total = len(cjk) + len(others)
    if total == 0:
        return Verdict(1.0, "correct", "no words")
    if language == "en":
        target = len(latin)
    elif language == "zh":
        target = len(cjk)
    else:
        raise ValueError(f"language consistency supports 'en' and 'zh', got {language!r}")
    share = target / total
    return Verdict(share, "correct" if share == 1.0 else "wrong", f"{share:.0%} of {total} words in {language}")
