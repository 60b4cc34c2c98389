package natsraft

import "fmt"

// CausePartition is nodes that answer, with routes configured right, but
// that the network cuts off from the cluster traffic of their peers.
const CausePartition Cause = "network partition"

var networkPartition = rule{
	cause:    CausePartition,
	severity: SeverityWarning,
	check:    func(a *analysis) *draft { return a.cutOff(CausePartition) },
	explain: func(a *analysis, f Finding) (string, []string) {
		nodes := f.nodeList()
		return fmt.Sprintf("Network partition: %s cut off from the cluster traffic of their peers%s", nodes, f.withoutLeader()), []string{
			fmt.Sprintf("Check the cluster port (%d) between %s and their peers in both directions: NetworkPolicies, firewalls and security groups, the nodes' network; /routez on each side shows who routes to whom.", a.clusterPort, nodes),
			"Do not restart the cut-off nodes to fix it: they rejoin on their own once the network lets them.",
			"A cut-off node keeps campaigning and raising its term (NATS has no pre-vote); when it returns it makes healthy leaders step down. If the cut lasts, put it into maintenance (which switches its JetStream off) before the network heals.",
		}
	},
}
