//! Executes ORION actions through ops-worker and reports one outcome per action (orion.action.v1 → titan.ops.command.v1 → orion.outcome.v1).
