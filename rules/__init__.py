"""socd's shipped YAML rule packs (``socd.rules``).

The rule language and the shipped pack arrive with the rules engine; until then
classification is the severity mapping in :mod:`socd.engine.classify`.
"""
