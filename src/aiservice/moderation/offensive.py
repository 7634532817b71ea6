"""alt-profanity-check's offensive-language model, evaluated without scikit-learn's per-call cost.

The wheel holds a TF-IDF vectoriser and a sigmoid-calibrated ensemble of linear SVMs, in
English. Its `predict_prob` costs about 3.6 ms for one short text on this machine, almost all
of it scikit-learn validating inputs and building sparse matrices; the arithmetic is a few
hundred multiplications. So `load` reads the fitted numbers out of the model once (one row
per vocabulary word: its idf and its weight in each SVM) and `probability` does that
arithmetic in plain Python: the same result to rounding, in tens of microseconds.

If the model is not the kind described (a future release changing its pipeline), the
scorer falls back to calling scikit-learn, slower but still right.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any


class OffensiveLanguageModel:
    """The probability that an English text is offensive, by alt-profanity-check's model."""

    def __init__(self) -> None:
        self._words: dict[str, tuple[float, tuple[float, ...]]] = {}
        self._intercepts: tuple[float, ...] = ()
        self._sigmoids: tuple[tuple[float, float], ...] = ()
        self._token_pattern = re.compile(r"(?u)\b\w\w+\b")
        self._fallback: Any = None

    def load(self) -> None:
        """Import the model from the wheel (about 1.5 s: joblib and scikit-learn) and keep
        its numbers."""
        from profanity_check import profanity_check as wheel

        if not _is_plain_pipeline(wheel.vectorizer, wheel.model):
            self._fallback = wheel.predict_prob
            return
        members = wheel.model.calibrated_classifiers_
        weights = [member.estimator.coef_[0] for member in members]
        idf = wheel.vectorizer.idf_
        self._words = {
            word: (float(idf[column]), tuple(float(row[column]) for row in weights))
            for word, column in wheel.vectorizer.vocabulary_.items()
        }
        self._intercepts = tuple(float(member.estimator.intercept_[0]) for member in members)
        self._sigmoids = tuple(
            (float(member.calibrators[0].a_), float(member.calibrators[0].b_)) for member in members
        )
        self._token_pattern = re.compile(wheel.vectorizer.token_pattern)

    def probability(self, text: str) -> float:
        """What `profanity_check.predict_prob([text])[0]` says, tokenising as its vectoriser
        does."""
        if self._fallback is not None:
            return float(self._fallback([text])[0])
        return self.probability_of_words(self._token_pattern.findall(text.lower()))

    def probability_of_words(self, words: Iterable[str]) -> float:
        """The same for a text already split into lower-case words."""
        if self._fallback is not None:
            return float(self._fallback([" ".join(words)])[0])
        counts = Counter(word for word in words if word in self._words)
        # TF-IDF with an L2 norm: each SVM's score is (sum of count*idf*weight) / norm.
        squares = 0.0
        sums = [0.0] * len(self._intercepts)
        for word, count in counts.items():
            idf, member_weights = self._words[word]
            tfidf = count * idf
            squares += tfidf * tfidf
            for index, weight in enumerate(member_weights):
                sums[index] += tfidf * weight
        norm = math.sqrt(squares) or 1.0
        probabilities = [
            1.0 / (1.0 + math.exp(a * (total / norm + intercept) + b))
            for total, intercept, (a, b) in zip(sums, self._intercepts, self._sigmoids, strict=True)
        ]
        return sum(probabilities) / len(probabilities)


def _is_plain_pipeline(vectorizer: Any, model: Any) -> bool:
    """Whether the wheel's model is what `probability_of_words` computes: word unigrams,
    raw counts times smoothed idf, L2 norm; sigmoid calibration of binary linear models."""
    try:
        return (
            vectorizer.analyzer == "word"
            and tuple(vectorizer.ngram_range) == (1, 1)
            and vectorizer.lowercase
            and vectorizer.use_idf
            and vectorizer.norm == "l2"
            and not vectorizer.sublinear_tf
            and not vectorizer.binary
            and vectorizer.strip_accents is None
            and model.method == "sigmoid"
            and list(model.classes_) == [0, 1]
            and all(
                member.estimator.coef_.shape[0] == 1 for member in model.calibrated_classifiers_
            )
        )
    except AttributeError:
        return False
