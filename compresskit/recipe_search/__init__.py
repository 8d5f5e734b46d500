"""Recipe search: the best compression for a latency budget on the user's own CPU.

A search space is a recipe with ranges or choices in place of values and a ``search:`` section naming the
objectives (:mod:`compresskit.recipe_search.space`). ``compresskit search SPACE.yaml`` (or :func:`search`) runs it as a
multi-objective Optuna study whose trials are ordinary recipe runs scored on the val split, with the recipe's
gates as constraints (:mod:`compresskit.recipe_search.study`), and writes the Pareto front: a table, a plot of latency
against each quality figure, each front member's recipe ready for ``compresskit run`` on eval, and ``compare``'s
HTML over them (:mod:`compresskit.recipe_search.front`).

    from compresskit.recipe_search import search, write_front, load_space

    space = load_space("recipes/search/edge-width.yaml")
    summary = search(space, trials=12, out="runs/search-edge")
    write_front(space, summary, "runs/search-edge")
"""

from .front import write_front
from .space import SearchSpace, load_space, parse_space
from .storage import SearchError
from .study import Summary, search

__all__ = ["SearchError", "SearchSpace", "Summary", "load_space", "parse_space", "search", "write_front"]
