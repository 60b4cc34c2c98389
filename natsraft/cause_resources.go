package natsraft

import "fmt"

// CauseResources is a node at the limits of its memory, storage or CPU, or
// dropping slow consumers.
const CauseResources Cause = "resource exhaustion"

// HighUsage is the share of a limit from which usage counts as exhaustion
// (memory, storage, CPU).
const HighUsage = 0.9

var resourceExhaustion = rule{
	cause:    CauseResources,
	severity: SeverityWarning,
	check:    checkResources,
	explain: func(_ *analysis, f Finding) (string, []string) {
		return fmt.Sprintf("Resource exhaustion on %s: the numbers below are at their limits%s", f.nodeList(), f.withoutLeader()), []string{
			"Slow consumers are connections the server dropped because they did not read fast enough; on routes they cut Raft traffic. Check the node's CPU and network, the clients' subscriptions, write_deadline and max_pending.",
			"JetStream memory or storage at its limit: raise max_memory_store / max_file_store (and the pod's memory or volume), or give streams limits (max_bytes, max_age).",
			"Memory near GOMEMLIMIT or CPU saturated: raise the pod's limits (and GOMEMLIMIT with them); a starved server misses Raft heartbeats and its groups re-elect.",
		}
	},
}

// checkResources looks at every node's usage numbers; a node at a limit
// puts every group it is a member of at risk.
func checkResources(a *analysis) *draft {
	dr := newDraft()
	for _, n := range sortedNodes(a.v) {
		r := n.Resources
		if r == nil || !n.Reachable {
			continue
		}
		var ev []string
		if r.SlowConsumersLastMinute > 0 {
			k := r.SlowConsumerKinds
			ev = append(ev, fmt.Sprintf("%s dropped %d slow consumer(s) in the last minute (%d since start: clients %d, routes %d, gateways %d, leafs %d)",
				n.Name, r.SlowConsumersLastMinute, r.SlowConsumers, k.Clients, k.Routes, k.Gateways, k.Leafs))
		}
		if r.JetStreamMaxMemory > 0 && float64(r.JetStreamMemory) >= HighUsage*float64(r.JetStreamMaxMemory) {
			ev = append(ev, fmt.Sprintf("%s uses %s of JetStream memory, %.0f%% of its max_memory_store %s",
				n.Name, bytesText(int64(r.JetStreamMemory)), pct(float64(r.JetStreamMemory), float64(r.JetStreamMaxMemory)), bytesText(r.JetStreamMaxMemory)))
		}
		if r.JetStreamMaxStore > 0 && float64(r.JetStreamStore) >= HighUsage*float64(r.JetStreamMaxStore) {
			ev = append(ev, fmt.Sprintf("%s uses %s of JetStream file storage, %.0f%% of its max_file_store %s",
				n.Name, bytesText(int64(r.JetStreamStore)), pct(float64(r.JetStreamStore), float64(r.JetStreamMaxStore)), bytesText(r.JetStreamMaxStore)))
		}
		if r.MemLimit > 0 && float64(r.Mem) >= HighUsage*float64(r.MemLimit) {
			ev = append(ev, fmt.Sprintf("%s has %s resident, %.0f%% of its GOMEMLIMIT %s",
				n.Name, bytesText(r.Mem), pct(float64(r.Mem), float64(r.MemLimit)), bytesText(r.MemLimit)))
		}
		if r.Cores > 0 && r.CPU >= HighUsage*100*float64(r.Cores) {
			ev = append(ev, fmt.Sprintf("%s uses %.0f%% CPU of %d cores", n.Name, r.CPU, r.Cores))
		}
		if len(ev) == 0 {
			continue
		}
		dr.nodes[n.Name] = true
		dr.evidence = append(dr.evidence, ev...)
		a.groupsOn(dr, n.Name)
	}
	return dr
}

// groupsOn adds every group with a member on node to the draft: the
// unhealthy ones as they are, the healthy ones as at risk.
func (a *analysis) groupsOn(dr *draft, node string) {
	for i := range a.v.Groups {
		g := &a.v.Groups[i]
		if _, ok := peerOf(*g, node); !ok {
			continue
		}
		state := atRisk(g)
		if _, ok := dr.groups[keyOf(g)]; !ok {
			dr.groups[keyOf(g)] = a.affected(g, state)
		}
		if state.noWorkingLeader() {
			dr.critical = true
		}
	}
}
