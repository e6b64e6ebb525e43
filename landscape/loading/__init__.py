"""Reading what a user gives: checkpoints (one reader, one hash; :mod:`.checkpoint`), what
they record (:mod:`.checkpoint_info`), user model definitions (:mod:`.user_model`,
:mod:`.model_args`) and model cards (:mod:`.model_cards`)."""
