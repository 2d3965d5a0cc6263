"""Test and benchmark tooling (loop-mounted filesystems, extent maps, test safetensors files);
never used at run time."""
