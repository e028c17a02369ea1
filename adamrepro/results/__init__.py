"""A results folder: stored runs and tidy tables (store.py), which grid point of each method is
selected (select.py), and one folder's selected runs judged against another's (compare.py)."""
