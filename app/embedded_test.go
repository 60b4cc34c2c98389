package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/natsraft"
	"github.com/prober-dev/prober/prober"
)

// demoGroups are the Raft groups of the demo: meta, stream and consumer.
var demoGroups = []string{natsraft.MetaGroupName, natsraft.DemoStream, natsraft.DemoStream + "/" + natsraft.DemoConsumer}

// unsafeBody is the body of a 409 refusing an unsafe request.
type unsafeBody struct {
	Error struct {
		Code    string                  `json:"code"`
		Message string                  `json:"message"`
		Details []maintenance.Violation `json:"details"`
	} `json:"error"`
}

// violationsByGroup decodes a 409 and indexes its violations by group.
func violationsByGroup(t *testing.T, b []byte) map[string]maintenance.Violation {
	t.Helper()
	var body unsafeBody
	require.NoError(t, json.Unmarshal(b, &body), "%s", b)
	require.Equal(t, maintenance.EUnsafe, body.Error.Code, "%s", b)
	out := map[string]maintenance.Violation{}
	for _, v := range body.Error.Details {
		out[v.Group] = v
	}
	return out
}

// TestAppDefault runs the embedded default (one dc of three) once and walks
// through the API on it; the subtests share the app and each leaves it as
// it found it.
func TestAppDefault(t *testing.T) {
	running := startApp(t, t.TempDir(), nil)
	c := running.Cluster()
	require.Len(t, c.Nodes(), 3)

	t.Run("walkthrough", func(t *testing.T) { testWalkthrough(t, running, c) })
	t.Run("errors", func(t *testing.T) { testErrors(t, running) })
	t.Run("ttl", func(t *testing.T) { testTTL(t, running) })
	t.Run("publish load", func(t *testing.T) { testPublishLoad(t, running, c) })
}

func testWalkthrough(t *testing.T, running *liveApp, c *natsraft.Embedded) {
	const pod = "nats-1"
	running.requireClean()
	before := groupsFromLeaders(c)
	var led []string
	for name, g := range before {
		if g.Leader == pod {
			led = append(led, name)
		}
	}
	t.Logf("%s led %v before", pod, led)

	// Enter.
	begin := time.Now()
	var in prober.PodChange
	running.call(http.MethodPut, "/pods/"+pod+"?wait=30s", `{"reason":"kernel upgrade"}`, http.StatusOK, &in)
	t.Logf("PUT /pods/%s took %.2fs", pod, time.Since(begin).Seconds())
	assert.Equal(t, pod, in.Pod)
	assert.Equal(t, "dc1", in.DC)
	assert.True(t, in.InMaintenance)
	assert.True(t, in.Changed)
	assert.Equal(t, maintenance.PhaseInMaintenance, in.Phase)
	assert.Equal(t, "kernel upgrade", in.Reason)
	assert.Equal(t, prober.LoopbackUser, in.RequestedBy)

	// The node leads nothing, by the collector's view and by every leader's Jsz.
	col := natsraft.NewCollector(natsraft.CollectorOptions{Endpoints: c.Endpoints(), Logger: zerolog.Nop()})
	view, err := col.Sweep(context.Background())
	require.NoError(t, err)
	n, ok := view.Node(pod)
	require.True(t, ok)
	assert.Zero(t, n.Leads, "collector: %s leads", pod)
	assert.False(t, n.JetStream, "collector: %s JetStream", pod)
	for _, g := range view.Groups {
		assert.NotEqual(t, pod, g.Leader, "collector: group %s", g.Name)
	}
	after := groupsFromLeaders(c)
	for _, name := range demoGroups {
		g, ok := after[name]
		if assert.True(t, ok, "group %s has a leader", name) {
			assert.NotEqual(t, pod, g.Leader, "Jsz: group %s", name)
		}
	}
	requireFenced(t, c, pod)

	doc := running.config()
	require.Contains(t, doc.Pods, pod)
	assert.Equal(t, "kernel upgrade", doc.Pods[pod].Reason)
	require.Contains(t, doc.Status, pod)
	assert.Equal(t, maintenance.PhaseInMaintenance, doc.Status[pod].Phase)
	assert.Empty(t, doc.DCs)

	// A second pod would cost every group its quorum.
	code, _, b := running.do(http.MethodPut, "/pods/nats-2", "")
	require.Equal(t, http.StatusConflict, code, "%s", b)
	vs := violationsByGroup(t, b)
	assert.Equal(t, []string{"_meta_", "demo", "demo/demo-consumer"}, sortedKeys(vs))
	for name, v := range vs {
		assert.Equal(t, []string{"nats-0", "nats-1", "nats-2"}, v.Peers, name)
		assert.Equal(t, 2, v.Quorum, name)
		assert.Equal(t, []string{"nats-0"}, v.Remaining, name)
		assert.Equal(t, []maintenance.LostPeer{
			{Name: "nats-1", Why: maintenance.LostInMaintenance},
			{Name: "nats-2", Why: maintenance.LostRequested},
		}, v.Lost, name)
		assert.NotEmpty(t, v.Reason, name)
	}
	code, _, b = running.do(http.MethodPut, "/dcs/dc1", "")
	require.Equal(t, http.StatusConflict, code, "%s", b)
	assert.Equal(t, []string{"_meta_", "demo", "demo/demo-consumer"}, sortedKeys(violationsByGroup(t, b)))
	doc = running.config()
	assert.Equal(t, []string{pod}, sortedKeys(doc.Pods), "a refused request writes nothing")
	assert.Empty(t, doc.DCs, "a refused request writes nothing")

	// Idempotent.
	var again prober.PodChange
	running.call(http.MethodPut, "/pods/"+pod, "", http.StatusOK, &again)
	assert.False(t, again.Changed)
	assert.Equal(t, maintenance.PhaseInMaintenance, again.Phase)
	assert.Equal(t, "kernel upgrade", again.Reason, "an empty body keeps the reason")

	code, body := running.readyz()
	assert.Equal(t, http.StatusServiceUnavailable, code, body)
	assert.Contains(t, body, pod)

	// Leave.
	begin = time.Now()
	var out prober.PodChange
	running.call(http.MethodDelete, "/pods/"+pod+"?wait=60s", "", http.StatusOK, &out)
	t.Logf("DELETE /pods/%s took %.2fs", pod, time.Since(begin).Seconds())
	assert.True(t, out.Changed)
	assert.False(t, out.InMaintenance)
	assert.Equal(t, maintenance.PhaseActive, out.Phase)
	ok, detail := currentEverywhere(c, pod, demoGroups...)
	assert.True(t, ok, "after DELETE answered 200: %s", detail)
	requireLinked(t, c, pod)
	assert.False(t, c.Node(pod).Quiesced(), "JetStream back on")
	doc = running.config()
	assert.NotContains(t, doc.Pods, pod)
	// What the pod led before is its own again, and the status says so
	// (phase Active) for a while; a pod that led nothing has nothing to
	// report, and its status is gone or Active.
	if st, ok := doc.Status[pod]; ok || len(led) > 0 {
		assert.Equal(t, maintenance.PhaseActive, st.Phase)
	}
	if len(led) > 0 {
		// The snapshot is taken by the reconciler's own sweep: an election
		// in between may have changed what the pod led.
		st := doc.Status[pod]
		assert.NotEmpty(t, append(slices.Clone(st.GivenBack), notGivenGroups(st.NotGivenBack)...), "the give-back report")
	}
	waitFor(t, 10*time.Second, "/readyz 200 after DELETE", func() (bool, string) {
		code, body := running.readyz()
		return code == http.StatusOK, body
	})

	var twice prober.PodChange
	running.call(http.MethodDelete, "/pods/"+pod+"?wait=60s", "", http.StatusOK, &twice)
	assert.False(t, twice.Changed)
	assert.Equal(t, maintenance.PhaseActive, twice.Phase)
	running.requireClean()
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func testErrors(t *testing.T, running *liveApp) {
	running.requireClean()
	big := `{"reason":"` + strings.Repeat("x", prober.MaxBodyBytes) + `"}`
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
		allow                    string
	}{
		{"bad pod name", http.MethodPut, "/pods/Nats_1", "", http.StatusBadRequest, maintenance.EInvalid, ""},
		{"bad pod name on GET", http.MethodGet, "/pods/-nats", "", http.StatusBadRequest, maintenance.EInvalid, ""},
		{"bad dc name", http.MethodPut, "/dcs/dc!1", "", http.StatusBadRequest, maintenance.EInvalid, ""},
		{"NATS cluster names may hold upper case and _", http.MethodPut, "/dcs/US_East", "", http.StatusNotFound, maintenance.ENotFound, ""},
		{"unknown body field", http.MethodPut, "/pods/nats-0", `{"reason":"x","color":"red"}`, http.StatusBadRequest, maintenance.EInvalid, ""},
		{"bad ttl", http.MethodPut, "/pods/nats-0", `{"ttl":"soon"}`, http.StatusBadRequest, maintenance.EInvalid, ""},
		{"ttl below minimum", http.MethodPut, "/pods/nats-0", `{"ttl":"10ms"}`, http.StatusBadRequest, maintenance.EInvalid, ""},
		{"force without reason", http.MethodPut, "/pods/nats-0", `{"force":true}`, http.StatusBadRequest, maintenance.EInvalid, ""},
		{"bad wait", http.MethodPut, "/pods/nats-0?wait=forever", "", http.StatusBadRequest, maintenance.EInvalid, ""},
		{"dryRun on DELETE", http.MethodDelete, "/pods/nats-0?dryRun=true", "", http.StatusBadRequest, maintenance.EInvalid, ""},
		{"body on PUT /config", http.MethodPut, "/config", `{"pods":{}}`, http.StatusBadRequest, maintenance.EInvalid, ""},
		{"unknown pod GET", http.MethodGet, "/pods/nats-9", "", http.StatusNotFound, maintenance.ENotFound, ""},
		{"unknown pod PUT", http.MethodPut, "/pods/nats-9", "", http.StatusNotFound, maintenance.ENotFound, ""},
		{"unknown pod DELETE", http.MethodDelete, "/pods/nats-9", "", http.StatusNotFound, maintenance.ENotFound, ""},
		{"unknown dc GET", http.MethodGet, "/dcs/dc9", "", http.StatusNotFound, maintenance.ENotFound, ""},
		{"unknown dc PUT", http.MethodPut, "/dcs/dc9", "", http.StatusNotFound, maintenance.ENotFound, ""},
		{"unknown dc DELETE", http.MethodDelete, "/dcs/dc9", "", http.StatusNotFound, maintenance.ENotFound, ""},
		{"dc by substring", http.MethodPut, "/dcs/dc", "", http.StatusNotFound, maintenance.ENotFound, ""},
		{"unknown route", http.MethodGet, "/maintenance", "", http.StatusNotFound, maintenance.ENotFound, ""},
		{"POST pod", http.MethodPost, "/pods/nats-0", "", http.StatusMethodNotAllowed, maintenance.EMethod, "DELETE, GET, HEAD, PUT"},
		{"PATCH dc", http.MethodPatch, "/dcs/dc1", "", http.StatusMethodNotAllowed, maintenance.EMethod, "DELETE, GET, HEAD, PUT"},
		{"DELETE config", http.MethodDelete, "/config", "", http.StatusMethodNotAllowed, maintenance.EMethod, "GET, HEAD, PUT"},
		{"POST readyz", http.MethodPost, "/readyz", "", http.StatusMethodNotAllowed, maintenance.EMethod, "GET, HEAD"},
		{"large body PUT pod", http.MethodPut, "/pods/nats-0", big, http.StatusRequestEntityTooLarge, maintenance.ETooLarge, ""},
		{"large body PUT dc", http.MethodPut, "/dcs/dc1", big, http.StatusRequestEntityTooLarge, maintenance.ETooLarge, ""},
		{"large body PUT config", http.MethodPut, "/config", big, http.StatusRequestEntityTooLarge, maintenance.ETooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, header, b := running.do(tt.method, tt.path, tt.body)
			require.Equal(t, tt.status, code, "%s", b)
			assert.Equal(t, "application/json", header.Get("Content-Type"))
			var e struct {
				Error maintenance.Error `json:"error"`
			}
			require.NoError(t, json.Unmarshal(b, &e), "%s", b)
			assert.Equal(t, tt.code, e.Error.Code)
			assert.NotEmpty(t, e.Error.Message)
			assert.Equal(t, tt.allow, header.Get("Allow"))
		})
	}

	t.Run("dry run writes nothing", func(t *testing.T) {
		var dry prober.DryRunResponse
		running.call(http.MethodPut, "/pods/nats-0?dryRun=true", "", http.StatusOK, &dry)
		assert.True(t, dry.DryRun)
		assert.True(t, dry.Safe)
		assert.True(t, dry.Changed)
		assert.Empty(t, dry.Violations)
	})

	t.Run("bare PUT config is GET config", func(t *testing.T) {
		_, _, get := running.do(http.MethodGet, "/config", "")
		code, _, put := running.do(http.MethodPut, "/config", "")
		require.Equal(t, http.StatusOK, code, "%s", put)
		assert.JSONEq(t, string(get), string(put))
		var d maintenance.Document
		require.NoError(t, json.Unmarshal(put, &d))
		assert.NotEmpty(t, d.ResourceVersion)
	})

	// Not one of the refused requests changed anything.
	running.requireClean()
	for _, n := range running.Cluster().Nodes() {
		assert.False(t, isFenced(t, n), n.Name())
		assert.False(t, n.Quiesced(), n.Name())
	}
}

func testTTL(t *testing.T, running *liveApp) {
	const pod = "nats-2"
	running.requireClean()
	var in prober.PodChange
	running.call(http.MethodPut, "/pods/"+pod+"?wait=30s", `{"reason":"x","ttl":"2s"}`, http.StatusOK, &in)
	assert.Equal(t, maintenance.PhaseInMaintenance, in.Phase)
	require.NotNil(t, in.ExpiresAt)
	expiresAt := *in.ExpiresAt
	t.Logf("in maintenance %.2fs before expiry", time.Until(expiresAt).Seconds())

	// Nobody asks: the entry expires and the pod comes back by itself.
	var gone time.Time
	took := waitFor(t, 60*time.Second, "TTL expiry brings the pod back", func() (bool, string) {
		d := running.config()
		if _, ok := d.Pods[pod]; ok {
			return false, "entry still stored"
		}
		if gone.IsZero() {
			gone = time.Now()
		}
		if st, ok := d.Status[pod]; ok && st.Phase != maintenance.PhaseActive {
			return false, fmt.Sprintf("status %s: %s", st.Phase, st.Message)
		}
		return true, ""
	})
	assert.False(t, gone.Before(expiresAt), "entry removed at %s, before its expiry %s", gone, expiresAt)
	t.Logf("back to Active %.2fs after the PUT answered (entry gone %.2fs after expiry)",
		took.Seconds(), gone.Sub(expiresAt).Seconds())
	pv := running.pod(pod)
	assert.False(t, pv.InMaintenance)
	assert.Equal(t, maintenance.PhaseActive, pv.Phase)
	assert.False(t, isFenced(t, running.Cluster().Node(pod)))
	assert.False(t, running.Cluster().Node(pod).Quiesced())
	running.requireClean()
}

// acked is one acknowledged publish.
type acked struct {
	seq     uint64
	payload string
	at      time.Time
}

// publishTimeout bounds one synchronous publish. A publish that reaches
// the stream while its leadership moves is dropped by NATS without an
// answer and costs the publisher this long.
const publishTimeout = 2 * time.Second

// publisher publishes synchronously, one message at a time, and records
// every acknowledgement.
type publisher struct {
	mu     sync.Mutex
	acks   []acked
	errs   int
	last   error
	cancel context.CancelFunc
	done   chan struct{}
}

func startPublisher(t *testing.T, js jetstream.JetStream, subject string) *publisher {
	ctx, cancel := context.WithCancel(context.Background())
	p := &publisher{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		pace := time.NewTicker(5 * time.Millisecond) // ~200 msg/s, as in the design's measurements
		defer pace.Stop()
		for i := 0; ctx.Err() == nil; i++ {
			payload := fmt.Sprintf("load-%07d", i)
			pctx, pcancel := context.WithTimeout(ctx, publishTimeout)
			ack, err := js.Publish(pctx, subject, []byte(payload),
				jetstream.WithRetryWait(5*time.Millisecond), jetstream.WithRetryAttempts(400))
			pcancel()
			now := time.Now()
			p.mu.Lock()
			if err != nil {
				if ctx.Err() == nil {
					p.errs++
					p.last = err
				}
			} else {
				p.acks = append(p.acks, acked{seq: ack.Sequence, payload: payload, at: now})
			}
			p.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-pace.C:
			}
		}
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *publisher) stop() {
	p.cancel()
	<-p.done
}

func (p *publisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acks)
}

// waitAcks waits until n more acknowledgements than now have come.
func (p *publisher) waitAcks(t *testing.T, n int) {
	t.Helper()
	want := p.count() + n
	waitFor(t, 60*time.Second, fmt.Sprintf("%d acknowledged publishes", want), func() (bool, string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.acks) >= want, fmt.Sprintf("%d acks, %d errors, last %v", len(p.acks), p.errs, p.last)
	})
}

// maxGap returns the longest time between two acknowledgements in [from,
// to] and when, after from, it began.
func (p *publisher) maxGap(from, to time.Time) (gap, at time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 1; i < len(p.acks); i++ {
		a, b := p.acks[i-1], p.acks[i]
		if b.at.Before(from) || a.at.After(to) {
			continue
		}
		if g := b.at.Sub(a.at); g > gap {
			gap, at = g, a.at.Sub(from)
		}
	}
	return gap, at
}

func testPublishLoad(t *testing.T, running *liveApp, c *natsraft.Embedded) {
	running.requireClean()
	led := groupsFromLeaders(c)
	require.Contains(t, led, natsraft.DemoStream)
	target := led[natsraft.DemoStream].Leader
	var via, spare string
	for _, n := range c.Nodes() {
		switch {
		case n.Name() == target:
		case via == "":
			via = n.Name()
		default:
			spare = n.Name()
		}
	}
	t.Logf("stream leader %s enters and leaves maintenance; publishing through %s", target, via)
	nc, err := c.Dial(natsraft.AppAccount, target, spare)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	require.Equal(t, c.Node(via).ClientURL(), nc.ConnectedUrl())
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	pub := startPublisher(t, js, "demo.load")
	pub.waitAcks(t, 100)

	enterStart := time.Now()
	var in prober.PodChange
	code, _, b := running.do(http.MethodPut, "/pods/"+target+"?wait=60s", "")
	enterEnd := time.Now()
	if code == http.StatusConflict {
		lagging := true
		for _, v := range violationsByGroup(t, b) {
			for _, l := range v.Lost {
				lagging = lagging && (l.Name == target || l.Why == maintenance.LostNotCurrent)
			}
		}
		if lagging {
			require.FailNow(t, "PUT refused under write load",
				"the safety rule counted a healthy follower that was a few entries behind the leader "+
					"(NATS reports current only at lag 0) as lost: %s", b)
		}
	}
	require.Equal(t, http.StatusOK, code, "%s", b)
	require.NoError(t, json.Unmarshal(b, &in))
	require.Equal(t, maintenance.PhaseInMaintenance, in.Phase)
	requireFenced(t, c, target)
	pub.waitAcks(t, 100) // writes go on without the old leader

	leaveStart := time.Now()
	var out prober.PodChange
	running.call(http.MethodDelete, "/pods/"+target+"?wait=60s", "", http.StatusOK, &out)
	leaveEnd := time.Now()
	require.Equal(t, maintenance.PhaseActive, out.Phase)
	pub.waitAcks(t, 100)
	pub.stop()

	pub.mu.Lock()
	acks := slices.Clone(pub.acks)
	errs, last := pub.errs, pub.last
	pub.mu.Unlock()
	enterGap, enterAt := pub.maxGap(enterStart, enterEnd.Add(time.Second))
	leaveGap, leaveAt := pub.maxGap(leaveStart, leaveEnd.Add(time.Second))
	t.Logf("%d acknowledged, %d failed publishes (last: %v)", len(acks), errs, last)
	t.Logf("entering: PUT at %s took %.2fs, max write gap %.3fs from +%.3fs", enterStart.Format("15:04:05.000"), enterEnd.Sub(enterStart).Seconds(), enterGap.Seconds(), enterAt.Seconds())
	t.Logf("leaving: DELETE took %.2fs, max write gap %.3fs from +%.3fs", leaveEnd.Sub(leaveStart).Seconds(), leaveGap.Seconds(), leaveAt.Seconds())
	// Entering moves the stream's leadership: a publish in flight at that
	// moment may go unanswered (NATS drops it), but no second one in a row.
	assert.Less(t, enterGap, 2*publishTimeout, "entering stalled the writes")
	// Leaving, JetStream having been quiesced, the node rejoins without
	// deposing the leader; once caught up it gets its leaderships back
	// (the give-back), a move like the hand-off: a publish in flight at
	// that moment may go unanswered, but no second one in a row.
	assert.Less(t, leaveGap, 2*publishTimeout, "leaving stalled the writes")

	// Every sequence was acknowledged once, for one payload.
	bySeq := map[uint64]string{}
	var lastSeq uint64
	for _, a := range acks {
		if p, dup := bySeq[a.seq]; dup {
			require.Failf(t, "sequence acknowledged twice", "seq %d: %s and %s", a.seq, p, a.payload)
		}
		bySeq[a.seq] = a.payload
		lastSeq = max(lastSeq, a.seq)
	}

	// The three replicas converge on the same state, which holds every
	// acknowledged message.
	waitFor(t, 60*time.Second, "replicas of demo hold the same state", func() (bool, string) {
		states := streamStates(c, natsraft.DemoStream)
		if len(states) != 3 {
			return false, fmt.Sprintf("%d replicas report the stream: %v", len(states), states)
		}
		ref := states[target]
		for name, st := range states {
			if st.Msgs != ref.Msgs || st.LastSeq != ref.LastSeq || st.FirstSeq != ref.FirstSeq || st.Bytes != ref.Bytes {
				return false, fmt.Sprintf("%s msgs=%d first=%d last=%d bytes=%d, %s msgs=%d first=%d last=%d bytes=%d",
					name, st.Msgs, st.FirstSeq, st.LastSeq, st.Bytes, target, ref.Msgs, ref.FirstSeq, ref.LastSeq, ref.Bytes)
			}
		}
		if ref.LastSeq < lastSeq {
			return false, fmt.Sprintf("last seq %d < last acknowledged %d", ref.LastSeq, lastSeq)
		}
		return true, ""
	})
	ok, detail := currentEverywhere(c, target, demoGroups...)
	assert.True(t, ok, detail)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stream, err := js.Stream(ctx, natsraft.DemoStream)
	require.NoError(t, err)
	missing := 0
	for _, a := range acks {
		msg, err := stream.GetMsg(ctx, a.seq)
		if !assert.NoError(t, err, "seq %d (%s)", a.seq, a.payload) {
			missing++
			continue
		}
		if !assert.Equal(t, a.payload, string(msg.Data), "seq %d", a.seq) || !assert.Equal(t, "demo.load", msg.Subject) {
			missing++
		}
		if missing > 10 {
			require.FailNow(t, "too many acknowledged messages missing or wrong")
		}
	}
	running.requireClean()
}

// TestAppDCs runs a supercluster of three dcs of two nodes and takes a whole
// dc into maintenance and back.
func TestAppDCs(t *testing.T) {
	running := startApp(t, t.TempDir(), []int{2, 2, 2})
	c := running.Cluster()
	require.Equal(t, []string{"dc1", "dc2", "dc3"}, c.DCs())
	running.requireClean()
	dc2 := []string{"nats-dc2-0", "nats-dc2-1"}

	begin := time.Now()
	var in prober.DCChange
	running.call(http.MethodPut, "/dcs/dc2?wait=60s", `{"reason":"rack move"}`, http.StatusOK, &in)
	t.Logf("PUT /dcs/dc2 took %.2fs", time.Since(begin).Seconds())
	assert.Equal(t, "dc2", in.DC)
	assert.True(t, in.Changed)
	require.Len(t, in.Pods, 2)
	for i, pv := range in.Pods {
		assert.Equal(t, dc2[i], pv.Pod)
		assert.Equal(t, maintenance.PhaseInMaintenance, pv.Phase, pv.Pod)
		assert.Equal(t, maintenance.SourceDC, pv.Via, pv.Pod)
	}
	for _, pod := range dc2 {
		requireFenced(t, c, pod)
	}
	// No gateway of any other node leads to dc2 any more.
	for _, n := range c.Nodes() {
		if n.DC() == "dc2" {
			continue
		}
		for _, l := range gatewayLinks(n.Server()) {
			assert.NotContains(t, l, ":dc2:", "Gatewayz of %s", n.Name())
		}
	}
	meta := c.MetaLeader()
	assert.NotEmpty(t, meta)
	assert.NotContains(t, dc2, meta, "meta leader")
	doc := running.config()
	assert.Contains(t, doc.DCs, "dc2")
	assert.Empty(t, doc.Pods)
	assert.Equal(t, dc2, sortedKeys(doc.Status))

	// The demo stream, in dc1, keeps taking writes: from dc1 and over the
	// gateway from dc3.
	for _, via := range []string{"nats-dc1-0", "nats-dc3-1"} {
		var avoid []string
		for _, n := range c.Nodes() {
			if n.Name() != via {
				avoid = append(avoid, n.Name())
			}
		}
		nc, err := c.Dial(natsraft.AppAccount, avoid...)
		require.NoError(t, err)
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		ack, err := js.Publish(ctx, "demo.dc", []byte("via "+via), jetstream.WithRetryWait(10*time.Millisecond), jetstream.WithRetryAttempts(200))
		cancel()
		nc.Close()
		require.NoError(t, err, "publish via %s", via)
		assert.Equal(t, natsraft.DemoStream, ack.Stream)
	}

	// dc1 holds the whole demo stream (R2): it cannot go, neither can one of
	// its pods.
	code, _, b := running.do(http.MethodPut, "/dcs/dc1", "")
	require.Equal(t, http.StatusConflict, code, "%s", b)
	vs := violationsByGroup(t, b)
	require.Contains(t, vs, "demo")
	assert.Equal(t, []string{"nats-dc1-0", "nats-dc1-1"}, vs["demo"].Peers)
	assert.Equal(t, 2, vs["demo"].Quorum)
	assert.Contains(t, vs, "demo/demo-consumer")
	assert.Contains(t, vs, natsraft.MetaGroupName, "meta would keep 2 of 6")
	code, _, b = running.do(http.MethodPut, "/pods/nats-dc1-1", "")
	require.Equal(t, http.StatusConflict, code, "%s", b)
	assert.Contains(t, violationsByGroup(t, b), "demo")
	// A pod kept in maintenance by its dc cannot leave on its own.
	code, _, b = running.do(http.MethodDelete, "/pods/nats-dc2-0", "")
	require.Equal(t, http.StatusConflict, code, "%s", b)
	var conflict struct {
		Error maintenance.Error `json:"error"`
	}
	require.NoError(t, json.Unmarshal(b, &conflict), "%s", b)
	assert.Equal(t, maintenance.EConflict, conflict.Error.Code)

	begin = time.Now()
	var out prober.DCChange
	running.call(http.MethodDelete, "/dcs/dc2?wait=60s", "", http.StatusOK, &out)
	t.Logf("DELETE /dcs/dc2 took %.2fs", time.Since(begin).Seconds())
	assert.True(t, out.Changed)
	require.Len(t, out.Pods, 2)
	for _, pv := range out.Pods {
		assert.Equal(t, maintenance.PhaseActive, pv.Phase, pv.Pod)
		assert.False(t, pv.InMaintenance, pv.Pod)
	}
	for _, pod := range dc2 {
		requireLinked(t, c, pod)
		ok, detail := currentEverywhere(c, pod, natsraft.MetaGroupName)
		assert.True(t, ok, detail)
	}
	running.requireClean()
}

// TestAppRestart stops the whole app while a pod is half-way into, then
// half-way out of maintenance, and starts it again on the same data: the
// reconcilers pick up from the stored state and finish the job.
func TestAppRestart(t *testing.T) {
	const pod = "nats-1"
	dir := t.TempDir()

	t.Run("mid entering", func(t *testing.T) {
		running := startApp(t, dir, nil)
		running.requireClean()
		code, header, b := running.do(http.MethodPut, "/pods/"+pod, `{"reason":"restart test"}`)
		require.Equal(t, http.StatusAccepted, code, "%s", b)
		assert.Equal(t, "/pods/"+pod, header.Get("Location"))
		seen := waitStoredPhase(t, dir, pod, 30*time.Second, maintenance.PhaseHandingOff, maintenance.PhaseFencing)
		running.Stop()
		d, ok := readStoredDoc(dir)
		require.True(t, ok)
		stored := d.Status[pod]
		t.Logf("stopped on seeing %s (%s); stored after stop: %s (%s)", seen.Phase, seen.Message, stored.Phase, stored.Message)
		require.Contains(t, d.Pods, pod)
		require.Contains(t, []maintenance.Phase{maintenance.PhaseHandingOff, maintenance.PhaseFencing}, stored.Phase,
			"the app must have stopped half-way in")

		running = startApp(t, dir, nil)
		c := running.Cluster()
		took := waitFor(t, 60*time.Second, pod+" InMaintenance after restart", func() (bool, string) {
			pv := running.pod(pod)
			return pv.Phase == maintenance.PhaseInMaintenance, fmt.Sprintf("%s: %s", pv.Phase, pv.Message)
		})
		t.Logf("InMaintenance %.2fs after the restart", took.Seconds())
		requireFenced(t, c, pod)
		for name, g := range groupsFromLeaders(c) {
			assert.NotEqual(t, pod, g.Leader, "group %s", name)
		}
		code, body := running.readyz()
		assert.Equal(t, http.StatusServiceUnavailable, code, body)
		running.Stop()
	})

	t.Run("mid leaving", func(t *testing.T) {
		d, ok := readStoredDoc(dir)
		require.True(t, ok && d.Pods[pod].Reason != "", "needs the state that \"mid entering\" leaves")
		running := startApp(t, dir, nil)
		waitFor(t, 60*time.Second, pod+" InMaintenance after restart", func() (bool, string) {
			pv := running.pod(pod)
			return pv.Phase == maintenance.PhaseInMaintenance, fmt.Sprintf("%s: %s", pv.Phase, pv.Message)
		})
		code, header, b := running.do(http.MethodDelete, "/pods/"+pod, "")
		require.Equal(t, http.StatusAccepted, code, "%s", b)
		assert.Equal(t, "/pods/"+pod, header.Get("Location"))
		seen := waitStoredPhase(t, dir, pod, 30*time.Second, maintenance.PhaseUnfencing, maintenance.PhaseCatchingUp)
		running.Stop()
		d, ok = readStoredDoc(dir)
		require.True(t, ok)
		stored, has := d.Status[pod]
		t.Logf("stopped on seeing %s (%s); stored after stop: %s (%s)", seen.Phase, seen.Message, stored.Phase, stored.Message)
		require.NotContains(t, d.Pods, pod)
		require.True(t, has, "the app must have stopped half-way out")
		require.Contains(t, []maintenance.Phase{maintenance.PhaseUnfencing, maintenance.PhaseCatchingUp}, stored.Phase)

		running = startApp(t, dir, nil)
		c := running.Cluster()
		took := waitFor(t, 60*time.Second, pod+" Active after restart", func() (bool, string) {
			d := running.config()
			if st, ok := d.Status[pod]; ok && st.Phase != maintenance.PhaseActive {
				return false, fmt.Sprintf("status %s: %s", st.Phase, st.Message)
			}
			return true, ""
		})
		t.Logf("Active %.2fs after the restart", took.Seconds())
		pv := running.pod(pod)
		assert.Equal(t, maintenance.PhaseActive, pv.Phase)
		assert.False(t, pv.InMaintenance)
		requireLinked(t, c, pod)
		ok, detail := currentEverywhere(c, pod, demoGroups...)
		assert.True(t, ok, detail)
		running.requireClean()
	})
}

// notGivenGroups names the groups of a give-back report's notGivenBack.
func notGivenGroups(ns []natsraft.NotGivenBack) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Group
	}
	return out
}
