"""Crime harm (docs/harm.md): recorded crime in, harm weights, choosing hot spots by harm,
and judging an operation by the harm before and during it. Core: no edge imports."""
