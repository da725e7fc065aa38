"""What a person reads after a run, drawn from its folder: ``render`` (report.md and every
figure, also for a search), ``figures`` (matplotlib, no pyplot state), ``tables`` (the
Parquet/CSV prediction tables).

No Keras, no Ray. Imports ``rundir`` and the layers below it.
"""
