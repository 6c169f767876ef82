"""The AIGCTask API shared by the operator and the worker (no kopf, no torch).

Lifecycle, all of it in the task's `status` (the API server is the only truth):

1. Pending: created; the operator queues it.
2. Scheduled: the operator writes `status.placement` for `attempt` N with a resourceVersion-guarded
   patch, so a task is placed at most once per attempt even across operator restarts.
3. Running: each placed worker claims its rank by adding `status.claims[]` {attempt, rank, node,
   holder, heartbeatTime} with a resourceVersion-guarded patch; a conflict means re-read and
   re-check, so no two workers hold the same (attempt, rank). A claim lives as long as its
   holder's worker Lease `aigc-worker-<node>` (aigc_api.lease) is fresh and names that holder,
   as Kubernetes does with node Leases: a worker renews one Lease per period, not every claim.
   Claims on a node with no known Lease fall back to their own heartbeatTime (see
   `status.claim_deadline`, the one place the rule lives).
4. Succeeded / Failed: rank 0 writes the result; any member may fail the attempt. The operator
   re-places (attempt N+1, claims cleared) when a claim expires or an attempt fails with a
   retryable reason, up to the configured maximum; then the task is Failed with a reason. A task
   no GPU class of the perf profile can run at all is Failed at once (Unschedulable).
"""

GROUP = "aigc.edge.io"
VERSION = "v1alpha1"
KIND = "AIGCTask"
PLURAL = "aigctasks"
SHORT_NAME = "aigct"
API_VERSION = f"{GROUP}/{VERSION}"
