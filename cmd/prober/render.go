package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

// maxLeadsShown bounds the group names a status row lists.
const maxLeadsShown = 3

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// renderStatus prints a summary of the cluster and one row per pod.
func renderStatus(w io.Writer, raft *raftAnswer, pods []maintenance.PodView, now time.Time) {
	nodes := map[string]natsraft.Node{}
	perDC := map[string]int{}
	var dcs []string
	for _, n := range raft.Nodes {
		nodes[n.Name] = n
		perDC[n.DC]++
		if n.DC != "" && !slices.Contains(dcs, n.DC) {
			dcs = append(dcs, n.DC)
		}
	}
	slices.Sort(dcs)
	meta := "none"
	for _, g := range raft.Groups {
		if g.Kind == natsraft.KindMeta && g.Leader != "" {
			meta = g.Leader
		}
	}
	var inMaint []string
	for _, pv := range pods {
		if pv.InMaintenance || pv.Phase != maintenance.PhaseActive {
			inMaint = append(inMaint, pv.Pod+" ("+string(pv.Phase)+")")
		}
	}

	tw := newTable(w)
	fmt.Fprintf(tw, "CLUSTER:\t%s in %s (%s), %s, meta leader %s, view %s old\n",
		plural(len(pods), "pod"), plural(len(dcs), "dc"), strings.Join(dcs, ", "),
		plural(len(raft.Groups), "Raft group"), meta, elapsed(time.Duration(raft.AgeSeconds*float64(time.Second))))
	if len(inMaint) == 0 {
		fmt.Fprintf(tw, "MAINTENANCE:\tnone\n")
	} else {
		fmt.Fprintf(tw, "MAINTENANCE:\t%s\n", strings.Join(inMaint, ", "))
	}
	if raft.Findings != nil {
		if n := len(*raft.Findings); n == 0 {
			fmt.Fprintf(tw, "FINDINGS:\tnone\n")
		} else {
			causes := make([]string, 0, n)
			for _, f := range *raft.Findings {
				c := text(f["cause"])
				if sev := text(f["severity"]); sev != "" {
					c = "[" + sev + "] " + c
				}
				causes = append(causes, c)
			}
			fmt.Fprintf(tw, "FINDINGS:\t%d: %s (details: prober raft)\n", n, strings.Join(causes, ", "))
		}
	}
	_ = tw.Flush()
	fmt.Fprintln(w)

	tw = newTable(w)
	fmt.Fprintln(tw, "POD\tDC\tROLE\tLEADS\tPHASE\tSINCE\tREASON\tEXPIRES")
	var notes []string
	for _, pv := range pods {
		since, expires := "-", "-"
		if pv.Since != nil {
			since = age(now.Sub(*pv.Since)) + " ago"
		}
		if pv.ExpiresAt != nil {
			if d := pv.ExpiresAt.Sub(now); d > 0 {
				expires = "in " + age(d)
			} else {
				expires = "expired"
			}
		}
		reason := orDash(pv.Reason)
		if pv.Via == maintenance.SourceDC {
			reason += " (dc " + pv.DC + ")"
		}
		if pv.Force {
			reason += " [forced]"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			pv.Pod, orDash(pv.DC), role(pv, nodes[pv.Pod], perDC[pv.DC]), leads(pv.Raft.Leads), pv.Phase, since, reason, expires)
		if pv.Message != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", pv.Pod, pv.Message))
		}
	}
	_ = tw.Flush()
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
}

// role names what a pod is in the cluster: unreachable, fenced (no route
// to any peer of its dc), quiesced (its JetStream is off), meta-leader, leader (of
// streams or consumers) or follower.
func role(pv maintenance.PodView, n natsraft.Node, dcSize int) string {
	switch {
	case !pv.Raft.Reachable:
		return "unreachable"
	case n.Name != "" && dcSize > 1 && len(n.Routes) == 0:
		return "fenced"
	case n.Name != "" && !n.JetStream:
		return "quiesced"
	case slices.Contains(pv.Raft.Leads, natsraft.MetaGroupName):
		return "meta-leader"
	case len(pv.Raft.Leads) > 0:
		return "leader"
	}
	return "follower"
}

// leads lists the groups a pod leads, the first few by name.
func leads(groups []string) string {
	if len(groups) == 0 {
		return "-"
	}
	if len(groups) <= maxLeadsShown {
		return strings.Join(groups, ",")
	}
	return fmt.Sprintf("%s +%d", strings.Join(groups[:maxLeadsShown], ","), len(groups)-maxLeadsShown)
}

// renderRaft prints the nodes, one row per Raft group and the findings.
func renderRaft(w io.Writer, raft *raftAnswer, now time.Time) {
	fmt.Fprintf(w, "NODES (view %s old)\n", elapsed(time.Duration(raft.AgeSeconds*float64(time.Second))))
	tw := newTable(w)
	fmt.Fprintln(tw, "NODE\tDC\tREACHABLE\tJETSTREAM\tROUTES\tLEADS")
	for _, n := range raft.Nodes {
		routes := fmt.Sprint(len(n.Routes))
		if n.Error != "" {
			routes += " (" + n.Error + ")"
		}
		js := yesNo(n.JetStream)
		switch {
		case n.Stopping:
			js += " (stopping)"
		case n.Recovering:
			js = "recovering"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", n.Name, orDash(n.DC), yesNo(n.Reachable), js, routes, n.Leads)
	}
	_ = tw.Flush()

	fmt.Fprintf(w, "\nGROUPS (%d)\n", len(raft.Groups))
	tw = newTable(w)
	fmt.Fprintln(tw, "GROUP\tKIND\tACCOUNT\tLEADER\tTERM\tCOMMIT\tAPPLIED\tPEERS")
	for _, g := range raft.Groups {
		leader := g.Leader
		if leader == "" {
			leader = "NONE"
			if g.LeaderlessSince != nil {
				leader += " for " + age(now.Sub(*g.LeaderlessSince))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n",
			g.Name, g.Kind, orDash(g.Account), leader, g.Term, g.Commit, g.Applied, peers(g.Peers))
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "  peers: * leader, ! not current, ~ offline, (lag N) entries behind")

	if raft.Findings == nil {
		return
	}
	if len(*raft.Findings) == 0 {
		fmt.Fprintln(w, "\nFINDINGS: none")
		return
	}
	fmt.Fprintf(w, "\nFINDINGS (%d)\n", len(*raft.Findings))
	for i, f := range *raft.Findings {
		head := text(f["cause"])
		if sev := text(f["severity"]); sev != "" {
			head = "[" + sev + "] " + head
		}
		if sum := text(f["summary"]); sum != "" {
			head += ": " + sum
		}
		fmt.Fprintf(w, "%d. %s\n", i+1, head)
		for _, k := range []string{"nodes", "groups"} {
			items := textLines(f[k])
			var n int
			if k == "groups" && json.Unmarshal(f["groupCount"], &n) == nil && n > len(items) {
				items = append(items, fmt.Sprintf("+%d more", n-len(items)))
			}
			if len(items) > 0 {
				fmt.Fprintf(w, "   %-9s %s\n", k+":", strings.Join(items, ", "))
			}
		}
		for _, k := range []string{"evidence", "remedy"} {
			for j, line := range textLines(f[k]) {
				label := ""
				if j == 0 {
					label = k + ":"
				}
				fmt.Fprintf(w, "   %-9s %s\n", label, line)
			}
		}
	}
}

// peers lists a group's members with marks for the leader and the
// unhealthy.
func peers(ps []natsraft.Peer) string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		s := p.Name
		switch {
		case p.Leader:
			s += "*"
		case p.Offline:
			s += "~"
		case !p.Current:
			s += "!"
		}
		if p.Lag > 0 {
			s += fmt.Sprintf("(lag %d)", p.Lag)
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

// text renders a loosely typed JSON value for a person: a string as is,
// anything else as textLines joined.
func text(raw json.RawMessage) string {
	return strings.Join(textLines(raw), ", ")
}

// textLines renders a loosely typed JSON value as lines: a string as one, a
// list one line per item (an object by its name and state), anything else
// as compact JSON.
func textLines(raw json.RawMessage) []string {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return []string{compact(raw)}
	}
	out := make([]string, 0, len(list))
	for _, item := range list {
		var str string
		var obj struct {
			Name  string `json:"name"`
			State string `json:"state"`
		}
		switch {
		case json.Unmarshal(item, &str) == nil:
			out = append(out, str)
		case json.Unmarshal(item, &obj) == nil && obj.Name != "":
			if obj.State != "" {
				obj.Name += " (" + obj.State + ")"
			}
			out = append(out, obj.Name)
		default:
			out = append(out, compact(item))
		}
	}
	return out
}

func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) == nil {
		return b.String()
	}
	return string(raw)
}

// renderDryRun prints the verdict of a dry run.
func renderDryRun(w io.Writer, t target, dr *prober.DryRunResponse) {
	if dr.Safe {
		change := "it would change the stored state"
		if !dr.Changed {
			change = "it is already requested: nothing would change"
		}
		fmt.Fprintf(w, "dry run: maintenance of %s is safe; %s\n", t, change)
		renderWarnings(w, dr.Warnings)
		return
	}
	fmt.Fprintf(w, "dry run: maintenance of %s is UNSAFE: %s would lose quorum\n", t, plural(len(dr.Violations), "Raft group"))
	renderViolations(w, dr.Violations)
}

// renderWarnings prints the groups that go down or move without costing
// the request its safety: ephemeral consumers, streams an evacuation moves.
func renderWarnings(w io.Writer, vs []maintenance.Violation) {
	for _, v := range vs {
		fmt.Fprintf(w, "  note: %s\n", v.Reason)
	}
}

// renderViolations prints one row per Raft group that would lose quorum.
func renderViolations(w io.Writer, vs []maintenance.Violation) {
	tw := newTable(w)
	fmt.Fprintln(tw, "GROUP\tKIND\tQUORUM\tREMAINING\tLOST")
	for _, v := range vs {
		lost := make([]string, len(v.Lost))
		for i, l := range v.Lost {
			lost[i] = l.Name + " (" + l.Why + ")"
		}
		remaining := "-"
		if len(v.Remaining) > 0 {
			remaining = strings.Join(v.Remaining, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d of %d\t%s\t%s\n", v.Group, v.Kind, v.Quorum, len(v.Peers), remaining, strings.Join(lost, ", "))
	}
	_ = tw.Flush()
}

// elapsed formats a short duration for progress lines: "0.4s", "12.3s", "2m05s".
func elapsed(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

// age formats a duration the way kubectl shows ages: "45s", "3m12s",
// "2h5m", "3d4h".
func age(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
