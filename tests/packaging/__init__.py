"""Tests of packaging/build.py and bin/launcher.sh."""
