"""The only Ray code: ``cluster`` (connect, placement), ``address`` (the Ray address's form),
``worker`` (MemberJob and what runs in a Ray Train worker or task), ``driver`` (a run's
members trained, predicted and scored concurrently), ``checkpoints`` (repair of Ray Train
storage), ``tuning`` (Ray Tune search), ``batch_inference`` (Ray Data, committee predict).

Imports every layer below ``app`` except ``report``.
"""
