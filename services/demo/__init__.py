"""The flywheel demo: a recorded workload replayed through the local stack while Interns
finds its tasks, trains interns and rolls them out, with a live view and a report."""
