"""One run over many databases and schema tenants.

:mod:`.config` says what the targets are and which ones a run selects,
:mod:`.schema` makes a process work on one schema tenant, :mod:`.fanout`
runs one command per target with bounded parallelism, and :mod:`.report`
turns the outcomes into the one report (text lines, JSON, the drift matrix).
"""
