package natsraft

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
)

// Connectivity: which nodes of a dc route to each other, and why a node
// that answers has no route to its peers. Three rules read it, one per
// reason: DNS (route hosts that do not resolve), wrong routes (routes that
// do not lead to the peers) and network partition (the network drops the
// cluster traffic).

// cutOff drafts the finding of c, one of the reasons a node is cut off:
// the nodes cut off for it and the routes missing inside a main part for
// it, the groups it keeps unhealthy, and the members cut off for it that
// campaign alone.
func (a *analysis) cutOff(c Cause) *draft {
	dr := newDraft()
	for _, n := range sortedNodes(a.v) {
		if st := a.nodes[n.Name]; st.cond == condCutOff && st.cause == c {
			dr.nodes[n.Name] = true
			dr.evidence = append(dr.evidence, st.evidence...)
		}
	}
	for _, gap := range a.gaps {
		if gap.cause == c {
			dr.nodes[gap.a], dr.nodes[gap.b] = true, true
			dr.evidence = append(dr.evidence, gap.evidence...)
		}
	}
	a.attachBlamed(dr, c)
	for i := range a.v.Groups {
		g := &a.v.Groups[i]
		for _, name := range a.campaigning(g) {
			if st := a.nodes[name]; st != nil && st.cond == condCutOff && st.cause == c {
				dr.groupNotes = append(dr.groupNotes, fmt.Sprintf(
					"%s campaigns alone in %s %s: its term is %d, the group's %d; when its routes return it makes the leader step down",
					name, g.Kind, g.Name, g.MemberTerms[name], g.Term))
			}
		}
	}
	return dr
}

// findMainParts splits each dc's reachable nodes into parts that route to
// each other and keeps the largest (ties: the one with the meta leader,
// then the first by name).
func (a *analysis) findMainParts() {
	metaLeader := ""
	for i := range a.v.Groups {
		if a.v.Groups[i].Kind == KindMeta {
			metaLeader = a.v.Groups[i].Leader
		}
	}
	byDC := map[string][]string{}
	for _, n := range sortedNodes(a.v) {
		if n.Reachable {
			byDC[n.DC] = append(byDC[n.DC], n.Name)
		}
	}
	for dc, names := range byDC {
		seen := map[string]bool{}
		var best []string
		bestMeta := false
		for _, start := range names {
			if seen[start] {
				continue
			}
			part := []string{start}
			seen[start] = true
			for i := 0; i < len(part); i++ {
				for _, other := range names {
					if !seen[other] && a.v.routed(part[i], other) {
						seen[other] = true
						part = append(part, other)
					}
				}
			}
			hasMeta := slices.Contains(part, metaLeader)
			if len(part) > len(best) || (len(part) == len(best) && hasMeta && !bestMeta) {
				best, bestMeta = part, hasMeta
			}
		}
		a.main[dc] = map[string]bool{}
		for _, n := range best {
			a.main[dc][n] = true
		}
	}
}

// connectivityCause tells why a reachable node has no routes to the main
// part of its dc: route hosts that do not resolve (DNS), routes that do
// not lead to its peers (wrong routes), or else the network (partition).
func (a *analysis) connectivityCause(name string) (Cause, []string) {
	n := a.nodes[name].node
	missing := a.missing[name]
	base := fmt.Sprintf("%s is reachable but has no route to %s (routes it has: %s)",
		name, strings.Join(missing, ", "), listOrNone(n.Routes))
	if len(n.RouteErrors) > 0 {
		ev := []string{base}
		for _, re := range n.RouteErrors {
			ev = append(ev, fmt.Sprintf("route %s of %s does not resolve: %s", re.Route, name, re.Error))
		}
		return CauseDNS, ev
	}
	if wrong, ev := a.misconfiguredRoutes(name); wrong {
		return CauseWrongRoutes, append([]string{base}, ev...)
	}
	return CausePartition, []string{base, fmt.Sprintf(
		"its configured routes (%s) match those of its peers and resolve: the network between them drops the cluster traffic",
		listOrNone(n.ConfiguredRoutes))}
}

// pairCause is connectivityCause for two nodes of the main part that have
// no route with each other.
func (a *analysis) pairCause(one, other string) (Cause, []string) {
	base := fmt.Sprintf("%s and %s have no route with each other, though both route to the rest of %s",
		one, other, a.nodes[one].node.DC)
	for _, x := range []string{one, other} {
		if errs := a.nodes[x].node.RouteErrors; len(errs) > 0 {
			ev := []string{base}
			for _, re := range errs {
				ev = append(ev, fmt.Sprintf("route %s of %s does not resolve: %s", re.Route, x, re.Error))
			}
			return CauseDNS, ev
		}
	}
	return CausePartition, []string{base}
}

// misconfiguredRoutes tells whether a node's configured routes cannot
// lead to its peers: none configured, some pointing at a client port, or
// none among the routes that the connected nodes of its dc use.
func (a *analysis) misconfiguredRoutes(name string) (bool, []string) {
	n := a.nodes[name].node
	if len(n.ConfiguredRoutes) == 0 {
		return true, []string{fmt.Sprintf("%s has no routes configured: it can only wait to be dialed", name)}
	}
	known := map[string]bool{}
	clientPorts := map[string][]string{}
	for _, p := range a.v.Nodes {
		if p.DC != n.DC || p.Name == name {
			continue
		}
		if a.main[n.DC][p.Name] {
			for _, r := range p.ConfiguredRoutes {
				known[r] = true
			}
		}
		if p.ClientPort > 0 {
			port := fmt.Sprint(p.ClientPort)
			clientPorts[port] = append(clientPorts[port], p.Name)
		}
	}
	var ev []string
	overlap := false
	for _, r := range n.ConfiguredRoutes {
		if known[r] {
			overlap = true
		}
		if _, port, err := net.SplitHostPort(r); err == nil && len(clientPorts[port]) > 0 {
			ev = append(ev, fmt.Sprintf("route %s of %s points at a client port (that of %s), not a cluster port",
				r, name, strings.Join(clientPorts[port], ", ")))
		}
	}
	if len(known) > 0 && !overlap {
		ev = append(ev, fmt.Sprintf("%s routes to %s; the connected nodes of %s route to %s: not one in common",
			name, strings.Join(n.ConfiguredRoutes, ", "), n.DC, strings.Join(slices.Sorted(maps.Keys(known)), ", ")))
	}
	return len(ev) > 0, ev
}
