"""The device models shipped with edgeface (package data); `models/recipe.py` obtains and pins them."""
