"""CSLR data: the 86-point layout, the Isharah reader, transforms and the gloss vocabulary."""
