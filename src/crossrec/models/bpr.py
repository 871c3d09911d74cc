"""Matrix factorisation (Rendle et al. 2009): score = user vector . item vector."""

from __future__ import annotations

from crossrec.models.neural import NeuralRecommender


class BPRMF(NeuralRecommender):
    """The collaborative floor of the embedding zoo: ego embeddings are the final ones. Trained with
    BPR by default; `loss="mse"` makes it the classic explicit-rating factorisation."""

    name = "BPRMF"
