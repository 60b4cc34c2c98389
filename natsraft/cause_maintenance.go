package natsraft

import "fmt"

// CauseMaintenance is nodes out of service on purpose
// (DiagnoseOptions.Maintenance).
const CauseMaintenance Cause = "maintenance"

var plannedMaintenance = rule{
	cause:    CauseMaintenance,
	severity: SeverityInfo,
	check:    checkMaintenance,
	explain: func(_ *analysis, f Finding) (string, []string) {
		return fmt.Sprintf("Maintenance: %s out of service on purpose; the affected groups run with less redundancy", f.nodeList()), []string{
			"Nothing to do while the maintenance lasts; end it with DELETE /pods/<pod> and the node is ready again once caught up.",
		}
	},
}

// checkMaintenance reports the nodes in maintenance, how each stands, and
// the groups they leave with less redundancy.
func checkMaintenance(a *analysis) *draft {
	dr := newDraft()
	for _, n := range sortedNodes(a.v) {
		if a.nodes[n.Name].cond == condMaintenance {
			dr.nodes[n.Name] = true
			dr.evidence = append(dr.evidence, describeMaintenance(n))
		}
	}
	a.attachBlamed(dr, CauseMaintenance)
	return dr
}

// describeMaintenance says how a node in maintenance stands.
func describeMaintenance(n *Node) string {
	switch {
	case !n.Reachable:
		return fmt.Sprintf("%s is in maintenance and stopped", n.Name)
	case !n.JetStream:
		return fmt.Sprintf("%s is in maintenance: JetStream off, %d route(s)", n.Name, len(n.Routes))
	default:
		return fmt.Sprintf("%s is in maintenance: JetStream on, %d route(s)", n.Name, len(n.Routes))
	}
}
