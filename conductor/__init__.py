"""conductor: run a DAG of tasks on a repository through a file-based message bus."""

__version__ = "0.1.0"
