"""Tests of one backend (a package, so test modules of different backends may share names)."""
