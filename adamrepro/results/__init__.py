"""A results folder: its stored runs, lock and owner (store.py), its tidy tables made from the
runs and read back checked (tables.py), which grid point of each method is selected
(select.py), what the report's rules and the figures read from the tables (measures.py:
best curves, final and mean costs, grid cells), and one folder's selected runs judged against
another's (compare.py)."""
