"""Test and benchmark tooling (loop-mounted filesystems, extent maps, test safetensors files,
throwaway PostgreSQL and weightvault servers); never used at run time."""
