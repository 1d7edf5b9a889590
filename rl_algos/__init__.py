"""Learners that take a drift function as input."""
