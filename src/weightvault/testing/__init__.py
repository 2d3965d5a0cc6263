"""Test and benchmark tooling (loop-mounted filesystems, extent maps); never used at run time."""
