"""The model: pure data of what a StatBus register is doing (State, Problem, Status, import
jobs and their progress, upgrades, estimates, today, a review that waits, check results, exit
codes). No I/O; imports only words."""
