package natsraft

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestNodeReady(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(v *View)
		ready  bool
		why    string
	}{
		{name: "healthy", ready: true},
		{name: "a leader is ready", mutate: func(v *View) {
			setPeer(v.group("s"), "n0", func(p *Peer) { p.Current = false })
		}, ready: true},
		{name: "a small lag heard recently over a route", mutate: func(v *View) {
			setPeer(v.group("s"), "n2", func(p *Peer) { p.Current, p.Lag = false, ReadyLag })
		}, ready: true},
		{name: "behind", mutate: func(v *View) {
			setPeer(v.group("s"), "n2", func(p *Peer) { p.Current, p.Lag = false, ReadyLag+1 })
		}, why: "stream s: not current (lag 17"},
		{name: "small lag but no route to the leader", mutate: func(v *View) {
			cut(v, "n0", "n2")
			setPeer(v.group("s"), "n2", func(p *Peer) { p.Current, p.Lag = false, 1 })
		}, why: "stream s: not current"},
		{name: "small lag but silent", mutate: func(v *View) {
			setPeer(v.group("s"), "n2", func(p *Peer) { p.Current, p.Lag, p.Active = false, 1, ActiveThreshold+time.Second })
		}, why: "stream s: not current"},
		{name: "a group without leader", mutate: func(v *View) { leaderless(v.group("s/c"), diagAt.Add(-ElectionGrace)) },
			why: "consumer s/c: no leader"},
		{name: "a group in an election of unknown age", mutate: func(v *View) {
			leaderless(v.group("s/c"), diagAt)
			v.group("s/c").LeaderlessSince = nil
		}, why: "consumer s/c: no leader"},
		// A hand-off leaves a group leaderless for a moment: a member whose
		// own log is as far as any member's stays ready through it.
		{name: "a young election, as far as any member", mutate: func(v *View) {
			g := v.group("s")
			leaderless(g, diagAt.Add(-time.Second))
			setPeer(g, "n0", func(p *Peer) { p.Own.Committed, p.Own.Applied, p.Own.LastSeq = 100, 100, 50 })
			setPeer(g, "n2", func(p *Peer) { p.Own.Committed, p.Own.Applied, p.Own.LastSeq = 100-ReadyLag, 100-ReadyLag, 50 })
		}, ready: true},
		{name: "a young election, behind another member", mutate: func(v *View) {
			g := v.group("s")
			leaderless(g, diagAt.Add(-time.Second))
			setPeer(g, "n1", func(p *Peer) { p.Own.Committed, p.Own.Applied = 100, 100 })
		}, why: "stream s: no leader for 1s, and committed 0 of the 100 another member has"},
		{name: "a young election, stream shorter than another member's", mutate: func(v *View) {
			g := v.group("s")
			leaderless(g, diagAt.Add(-time.Second))
			setPeer(g, "n1", func(p *Peer) { p.Own.LastSeq = 50 })
		}, why: "stream s: no leader for 1s, and stream at sequence 0 of the 50"},
		{name: "a young election, applying behind", mutate: func(v *View) {
			g := v.group("s")
			leaderless(g, diagAt.Add(-time.Second))
			setPeer(g, "n2", func(p *Peer) { p.Own.Committed = 100 })
		}, why: "stream s: no leader for 1s, and applied 0 of 100 committed"},
		{name: "a young election, catching up", mutate: func(v *View) {
			g := v.group("s")
			leaderless(g, diagAt.Add(-time.Second))
			setPeer(g, "n2", func(p *Peer) { p.Own.CatchingUp = true })
		}, why: "stream s: no leader for 1s, and catching up"},
		{name: "a young election, no leader heard from since it started", mutate: func(v *View) {
			g := v.group("s")
			leaderless(g, diagAt.Add(-time.Second))
			setPeer(g, "n2", func(p *Peer) { p.Own.NoLeaderYet = true })
		}, why: "stream s: no leader for 1s, and none heard from since its JetStream started"},
		{name: "a young election, no own report", mutate: func(v *View) {
			g := v.group("s")
			leaderless(g, diagAt.Add(-time.Second))
			setPeer(g, "n2", func(p *Peer) { p.Own = nil })
		}, why: "stream s: no leader, and no Raft state of its own"},
		{name: "not in the meta group yet", mutate: func(v *View) {
			g := v.group(MetaGroupName)
			g.Peers = g.Peers[:2]
		}, why: "n2 is not a peer of the meta group"},
		{name: "JetStream off", mutate: func(v *View) { v.node("n2").JetStream = false }, why: "n2 has JetStream off"},
		{name: "unreachable", mutate: func(v *View) { down(v, "n2") }, why: "n2 is unreachable: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := diagCluster()
			if tt.mutate != nil {
				tt.mutate(v)
			}
			node := "n2"
			if strings.HasPrefix(tt.name, "a leader") {
				node = "n0"
			}
			ready, why := v.NodeReady(node)
			assert.Equal(t, tt.ready, ready, why)
			assert.Contains(t, why, tt.why)
		})
	}
	_, why := (&View{}).NodeReady("x")
	assert.Equal(t, "x is not in the view", why)
}
