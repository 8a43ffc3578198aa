"""The invasive-species search task (``mgrpo/InvasiveSpecies-v0``): knowledge base, ranking,
scoring and the hierarchical env."""
