"""The sequence models, one file each, behind one interface: ``build(n_items, net, return_sequences)``.

Every model reads the same input (``item + 1`` ids, left-padded with 0, the latest item last; optionally the
ratings) and returns logits over the catalogue, at every step (``return_sequences``, the ``all_steps`` training
regime; the model is then named ``<name>_steps``) or at the last step (scoring, the ``paper`` regime). Training,
evaluation and serving do not know which model they hold: :mod:`seqrec.core.model` picks the builder and makes
the last-step scoring model.
"""
