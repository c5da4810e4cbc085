"""Pure, vectorized physics and detection core: gas properties, dispersion, thresholds.

Functions take numpy arrays in SI units and return arrays; nothing here does I/O.
"""
