"""Benchmarks behind `onair bench`; each module exposes register(app) and prints a JSON line last."""
