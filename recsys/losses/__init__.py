"""Ranking losses, one per module. Each takes plain tensors (no config objects) and returns a scalar,
and declares itself once with ``SPEC = register(LossSpec(...))`` (``recsys.losses.registry``): its
name, options, the model kinds it fits and the inputs it consumes.

| name            | model kinds                       | inputs      | options      |
|-----------------|-----------------------------------|-------------|--------------|
| infonce         | bi_encoder                        | Contrastive | temperature  |
| bce             | cross_encoder                     | Pointwise   | pos_weight   |
| mse             | cross_encoder                     | Pointwise   |              |
| bpr             | bi_encoder, cross_encoder, sequential | Pairwise |             |
| margin          | bi_encoder, cross_encoder         | Pairwise    | margin       |
| listwise        | cross_encoder                     | Pointwise   | list_size    |
| distil_mse      | cross_encoder                     | Distillation |             |
| margin_mse      | cross_encoder                     | Distillation |             |
| full_softmax    | sequential                        | NextItem    |              |
| sampled_softmax | sequential                        | NextItem    |              |

``graded`` maps behaviour (view < click < cart < buy) to relevance labels where no human labels exist.
"""
