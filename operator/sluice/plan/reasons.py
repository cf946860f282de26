"""Condition and event reasons, in one place so the CLI, tests and dashboards agree on them."""

# Conditions (kstatus): Ready, Reconciling, Stalled.
READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"

ROLLED_OUT = "RolledOut"
PROGRESSING = "Progressing"
PAUSED = "Paused"
WAITING_FOR_PROMOTE = "WaitingForPromote"
ANALYSIS_INCONCLUSIVE = "AnalysisInconclusive"
ANALYSIS_FAILED = "AnalysisFailed"
PROGRESS_DEADLINE = "ProgressDeadlineExceeded"
ABORTED = "Aborted"
ROLLED_BACK = "RolledBack"
FAILED = "Failed"
POLICY_NOT_FOUND = "PolicyNotFound"
INVALID_SPEC = "InvalidSpec"
REQUIREMENT_NOT_MET = "RequirementNotMet"
STRATEGY_UNSUPPORTED = "StrategyUnsupported"
NAME_CONFLICT = "NameConflict"
REFUSED_BY_API = "RefusedByAPIServer"

# Events.
ROLLOUT_STARTED = "RolloutStarted"
STEP_COMPLETED = "StepCompleted"
PROMOTED = "Promoted"
SUPERSEDED = "Superseded"
NOTIFICATION_REFUSED = "NotificationRefused"  # a notify target Sluice may not use (sluice.notify)
NOTIFICATION_FAILED = "NotificationFailed"  # a notify target that did not take a notification
FAST_ROLLBACK = "StableReapplied"
REQUEST_REFUSED = "RequestRefused"
REQUEST_APPLIED = "RequestApplied"
ROLLOUT_PAUSED = "RolloutPaused"
POLICY_CHANGED = "PolicyChanged"
TRAFFIC_WITHDRAWN = "TrafficWithdrawn"
ADOPTED = "Adopted"
