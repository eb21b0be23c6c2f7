"""Code shared by the web node and the compute node: errors, settings, values, logging, protobuf."""
