"""What a committee member is, as data: ``spec`` (MemberSpec, schedules, presets, search
spaces), ``architectures`` (the Keras builders, imported inside them), ``seeds`` and ``tta``
(the test-time augmentation views, pure NumPy).

Imports ``data`` and the base modules; builds models but never trains them.
"""
