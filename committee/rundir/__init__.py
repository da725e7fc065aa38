"""The run folder, the one place a run's files are written: ``door`` (every open of a run
folder's files: no link followed, nothing but regular files), ``folder`` (lifecycle, lock,
atomic writes, --overwrite, the tree's survey), ``identity`` (what a rerun must match to resume),
``member_files`` (a finished member's files), ``schema`` (results.json checked on read),
``finished_run`` (a finished run read back for prediction).

No Keras (Keras files are checked as zip archives), no Ray. Imports ``training``,
``ensemble``, ``members``, ``data`` and the base modules.
"""
