"""A remote edge node (``splitedge edge``): the edge routes on Granian with no SQLite
store, serving the config snapshot it pulls from the control plane (docs/deploy.md)."""
