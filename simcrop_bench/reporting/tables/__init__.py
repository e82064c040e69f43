"""Paper tables: the grid, its cells and statistics, layouts, renderers, reference rows."""
