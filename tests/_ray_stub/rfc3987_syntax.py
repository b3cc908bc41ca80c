"""Absent on purpose for the test cluster's processes (see tests/_ray_cluster.py)."""

raise ImportError("rfc3987_syntax is left out of the Ray test cluster's processes")
