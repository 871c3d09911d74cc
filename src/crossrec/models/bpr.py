"""BPR matrix factorisation (Rendle et al. 2009): score = user vector . item vector."""

from __future__ import annotations

from crossrec.models.trainer import PairwiseModel


class BPRMF(PairwiseModel):
    """The collaborative floor of the embedding zoo: ego embeddings are the final ones."""

    name = "BPRMF"
