package natsraft

import "fmt"

// CauseWrongRoutes is nodes whose configured routes do not lead to their
// peers: none configured, a client port, or none of the routes their
// connected peers use.
const CauseWrongRoutes Cause = "wrong routes"

var wrongRoutes = rule{
	cause:    CauseWrongRoutes,
	severity: SeverityWarning,
	check:    func(a *analysis) *draft { return a.cutOff(CauseWrongRoutes) },
	explain: func(a *analysis, f Finding) (string, []string) {
		nodes := f.nodeList()
		return fmt.Sprintf("Wrong routes: %s configured with routes that do not lead to their peers%s", nodes, f.withoutLeader()), []string{
			fmt.Sprintf("Fix cluster.routes of %s: they must name the peers' cluster addresses, e.g. nats-route://<pod>.<headless service>:%d — compare with /varz cluster.urls of a connected node.", nodes, a.clusterPort),
			"A route on the client port (4222) is refused by the peer: use the cluster port.",
			"Make sure the node listens for routes where its peers dial it (cluster.port, cluster.advertise), then restart or reload it; its groups catch up on their own.",
		}
	},
}
