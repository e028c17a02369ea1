"""The report: every figure so far, the chosen runs, and a verdict on each claim of the paper.

    rules.py      the decision rules (thresholds are arguments, every rule describes itself)
    claims.py     the paper's claims as data: id, figure, text, experiment, rule
    judge.py      a claim's verdict: its rule under both selection rules, on the training
                  cost, with the seed spread and grid edges said beside it
    against_adam.py  every other method against Adam, by the same rules
    document.py   a tiny document model rendered to Markdown and to HTML
    build.py      reads a results folder and assembles the report

What a rule may look at (best curves, final and mean costs, grid cells) is
results/measures.py, which the figures read too.
"""
