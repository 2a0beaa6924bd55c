"""Tests of the capture engine."""
