package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/maintenance"
)

// now is the clock of the rendering tests.
var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// A view of a cluster where nats-2 is cut off and the stream lost its
// leader, with a finding as the server words it.
const sickRaft = `{
  "at": "2026-01-02T03:04:04Z", "ageSeconds": 1.2,
  "nodes": [
    {"name": "nats-0", "dc": "dc1", "reachable": true, "jetstream": true, "routes": ["nats-1"], "leads": 1},
    {"name": "nats-1", "dc": "dc1", "reachable": true, "jetstream": true, "recovering": true, "routes": ["nats-0"], "leads": 0},
    {"name": "nats-2", "dc": "dc1", "reachable": false, "jetstream": false, "routes": [], "leads": 0, "error": "connection refused"}
  ],
  "groups": [
    {"kind": "meta", "name": "_meta_", "leader": "nats-0", "term": 4, "commit": 9, "applied": 9,
     "peers": [{"name": "nats-0", "leader": true, "current": true, "active": 0},
               {"name": "nats-1", "current": false, "active": 3000000000, "lag": 12},
               {"name": "nats-2", "current": false, "offline": true, "active": 0}]},
    {"kind": "stream", "name": "demo", "account": "APP", "leaderlessSince": "2026-01-02T03:03:50Z", "term": 7,
     "peers": [{"name": "nats-0", "current": false, "active": 0}]}
  ],
  "findings": [
    {"cause": "network partition", "severity": "critical", "summary": "nats-2 is cut off from its dc",
     "nodes": ["nats-2"], "groups": [{"kind": "stream", "name": "demo", "state": "leaderless"}], "groupCount": 3,
     "evidence": ["nats-2 has no route to nats-0, nats-1", "demo leaderless for 15s"],
     "remedy": ["restore the network between nats-2 and its peers", "then check prober raft again"]}
  ]
}`

func TestRenderRaft(t *testing.T) {
	var raft raftAnswer
	require.NoError(t, json.Unmarshal([]byte(sickRaft), &raft))
	var b bytes.Buffer
	renderRaft(&b, &raft, now)
	want := `NODES (view 1.2s old)
NODE    DC   REACHABLE  JETSTREAM   ROUTES                  LEADS
nats-0  dc1  yes        yes         1                       1
nats-1  dc1  yes        recovering  1                       0
nats-2  dc1  no         no          0 (connection refused)  0

GROUPS (2)
GROUP   KIND    ACCOUNT  LEADER        TERM  COMMIT  APPLIED  PEERS
_meta_  meta    -        nats-0        4     9       9        nats-0* nats-1!(lag 12) nats-2~
demo    stream  APP      NONE for 15s  7     0       0        nats-0!
  peers: * leader, ! not current, ~ offline, (lag N) entries behind

FINDINGS (1)
1. [critical] network partition: nats-2 is cut off from its dc
   nodes:    nats-2
   groups:   demo (leaderless), +2 more
   evidence: nats-2 has no route to nats-0, nats-1
             demo leaderless for 15s
   remedy:   restore the network between nats-2 and its peers
             then check prober raft again
`
	assert.Equal(t, want, b.String())

	t.Run("no findings field, no findings section", func(t *testing.T) {
		raft.Findings = nil
		b.Reset()
		renderRaft(&b, &raft, now)
		assert.NotContains(t, b.String(), "FINDINGS")
	})
	t.Run("no findings", func(t *testing.T) {
		raft.Findings = &[]map[string]json.RawMessage{}
		b.Reset()
		renderRaft(&b, &raft, now)
		assert.Contains(t, b.String(), "\nFINDINGS: none\n")
	})
}

func TestRenderStatus(t *testing.T) {
	var raft raftAnswer
	require.NoError(t, json.Unmarshal([]byte(sickRaft), &raft))
	since := now.Add(-90 * time.Second)
	expires := now.Add(2*time.Hour + 30*time.Minute)
	expired := now.Add(-time.Second)
	pods := []maintenance.PodView{
		{Pod: "nats-0", DC: "dc1", Phase: maintenance.PhaseActive, Raft: maintenance.PodRaft{Leads: []string{"_meta_", "a", "b", "c", "d"}, Reachable: true}},
		{
			Pod: "nats-1", DC: "dc1", InMaintenance: true, Via: maintenance.SourceDC, Phase: maintenance.PhaseFailed,
			Message: "fence: permission denied", Reason: "rack move", Since: &since, ExpiresAt: &expires, Force: true,
			Raft: maintenance.PodRaft{Leads: []string{}, Reachable: true},
		},
		{Pod: "nats-2", DC: "dc1", InMaintenance: true, Via: maintenance.SourcePod, Phase: maintenance.PhaseRequested, Since: &since, ExpiresAt: &expired},
	}
	var b bytes.Buffer
	renderStatus(&b, &raft, pods, now)
	want := `CLUSTER:      3 pods in 1 dc (dc1), 2 Raft groups, meta leader nats-0, view 1.2s old
MAINTENANCE:  nats-1 (Failed), nats-2 (Requested)
FINDINGS:     1: [critical] network partition (details: prober raft)

POD     DC   ROLE         LEADS          PHASE      SINCE      REASON                       EXPIRES
nats-0  dc1  meta-leader  _meta_,a,b +2  Active     -          -                            -
nats-1  dc1  follower     -              Failed     1m30s ago  rack move (dc dc1) [forced]  in 2h30m
nats-2  dc1  unreachable  -              Requested  1m30s ago  -                            expired
nats-1: fence: permission denied
`
	assert.Equal(t, want, b.String())
}

func TestAge(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{400 * time.Millisecond, "0s"},
		{59 * time.Second, "59s"},
		{61 * time.Second, "1m1s"},
		{2*time.Hour + 5*time.Minute, "2h5m"},
		{76 * time.Hour, "3d4h"},
	} {
		assert.Equal(t, tc.want, age(tc.d), tc.d)
	}
}
