"""A results folder: stored runs and tidy tables (store.py), which grid point of each method is
selected (select.py), what the report's rules and the figures read from the tables (measures.py:
best curves, final and mean costs, grid cells), and one folder's selected runs judged against
another's (compare.py)."""
