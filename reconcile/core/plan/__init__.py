"""The plan: typed actions, the DAG, its rendering, target selection."""
