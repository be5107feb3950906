"""The control loops: schedule, launch, reconcile, health, recurring tasks."""
