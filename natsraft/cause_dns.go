package natsraft

import "fmt"

// CauseDNS is nodes whose route host names do not resolve.
const CauseDNS Cause = "DNS"

var dnsFailure = rule{
	cause:    CauseDNS,
	severity: SeverityWarning,
	check:    func(a *analysis) *draft { return a.cutOff(CauseDNS) },
	explain: func(_ *analysis, f Finding) (string, []string) {
		return fmt.Sprintf("DNS: route host names of %s do not resolve, so they cannot route to their peers%s", f.nodeList(), f.withoutLeader()), []string{
			"Check the host names in cluster.routes: the headless service name and namespace (an empty template value leaves an empty label, as in 'nats-0.nats..svc').",
			"Resolve them from the pod: kubectl exec <pod> -c nats -- nslookup <host>; check that the cluster DNS (CoreDNS) answers.",
			"A headless service lists pods that are not ready only with publishNotReadyAddresses: true — NATS pods need it to find each other while they start.",
		}
	},
}
