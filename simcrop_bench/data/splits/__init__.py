"""Splits: training fractions, classification split tables, the SimCroP split files."""
