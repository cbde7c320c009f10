"""Which of nnpk's instruction-set levels this CPU runs (an extension compiled for the baseline)."""

def levels() -> tuple[str, ...]:
    """The x86-64 instruction-set levels this CPU and OS run, lowest first."""
