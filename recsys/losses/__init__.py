"""Ranking losses, one per module. Each takes plain tensors (no config objects) and returns a scalar.

| name            | module           | model kinds                  | batch columns                         |
|-----------------|------------------|------------------------------|---------------------------------------|
| infonce         | infonce          | bi_encoder                   | query, positive[, negative]           |
| bce             | bce              | cross_encoder                | left, right, label (0/1 or graded)    |
| mse             | mse              | cross_encoder                | left, right, label (graded relevance) |
| bpr             | bpr              | bi_encoder, cross_encoder    | query, positive, negative             |
| margin          | margin           | bi_encoder, cross_encoder    | query, positive, negative             |
| listwise        | listwise         | cross_encoder                | group of (left, right, label) rows    |
| full_softmax    | full_softmax     | sequential                   | items (history -> next item)          |
| sampled_softmax | sampled_softmax  | sequential                   | items (history -> next item)          |

``graded`` maps behaviour (view < click < cart < buy) to relevance labels where no human labels exist.
"""

LOSSES_BY_KIND: dict[str, tuple[str, ...]] = {
    "bi_encoder": ("infonce", "bpr", "margin"),
    "cross_encoder": ("bce", "mse", "listwise", "bpr", "margin"),
    "sequential": ("full_softmax", "sampled_softmax", "bpr"),
}
