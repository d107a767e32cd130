"""Rendering for notebooks: frame pictures, hexdumps, conversation tables, sequence diagrams."""
