package app_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/prober-dev/prober/app"
	"github.com/prober-dev/prober/kube"
	"github.com/prober-dev/prober/maintenance"
)

// testSidecarPreStop is a rolling restart of one pod as its sidecar sees
// it: the preStop hook's POST /local/prestop leaves the node leading
// nothing, with JetStream off and no maintenance entry stored; the
// reconciler does not switch JetStream back on while the server stops; the
// restarted server is ready once caught up, Active, and nothing was held at
// its boot.
func testSidecarPreStop(t *testing.T, e *scEnv) {
	e.requireClean(t)
	// The pod that leads the most groups, so that there is something to
	// hand off.
	count := map[string]int{}
	for _, g := range groupsFromLeaders(e.cluster) {
		count[g.Leader]++
	}
	pod := "nats-0"
	for name, n := range count {
		if n > count[pod] || (n == count[pod] && name < pod) {
			pod = name
		}
	}
	require.NotZero(t, count[pod], "some pod leads a group")
	sc := e.sidecars[pod]
	_, before := e.stored(t)

	// The sidecars of the test need a token on loopback too.
	code, body := e.call(t, sc, "", http.MethodPost, "/local/prestop", "")
	require.Equal(t, http.StatusUnauthorized, code, body)
	code, body = e.call(t, sc, e.operator, http.MethodPost, "/local/prestop?timeout=soon", "")
	require.Equal(t, http.StatusBadRequest, code, body)

	begin := time.Now()
	var rep maintenance.PreStopReport
	e.decode(t, sc, e.operator, http.MethodPost, "/local/prestop?timeout=20s", "", http.StatusOK, &rep)
	t.Logf("POST /local/prestop answered in %.2fs: %+v", time.Since(begin).Seconds(), rep)
	assert.Equal(t, pod, rep.Pod)
	assert.True(t, rep.Complete, "errors: %v", rep.Errors)
	assert.True(t, rep.HandedOff)
	assert.Empty(t, rep.Leads)
	assert.NotNil(t, rep.Leads, "read")
	assert.True(t, rep.Quiesced)
	assert.True(t, rep.ClientsMoved)

	// The pod says what its pre-stop did, where operators look (kubectl
	// describe pod): an Event written as the prober's ServiceAccount.
	evs, err := e.admin.CoreV1().Events(scNamespace).List(context.Background(), metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + pod + ",reason=" + app.ReasonPreStopHandedOff})
	require.NoError(t, err)
	require.Len(t, evs.Items, 1, "one Event for one pre-stop")
	ev := evs.Items[0]
	assert.Equal(t, "Normal", ev.Type)
	assert.Contains(t, ev.Message, "ready to stop in")
	assert.Equal(t, "Pod", ev.InvolvedObject.Kind)
	assert.NotEmpty(t, ev.InvolvedObject.UID, "kubectl describe matches Events by UID")
	assert.Equal(t, kube.EventSource, ev.Source.Component)

	node := e.cluster.Node(pod)
	assert.True(t, node.Quiesced(), "JetStream off")
	for name, g := range groupsFromLeaders(e.cluster) {
		assert.NotEqual(t, pod, g.Leader, "group %s", name)
	}
	for _, g := range demoGroups {
		waitFor(t, 15*time.Second, "group "+g+" led by a peer", func() (bool, string) {
			led, ok := groupsFromLeaders(e.cluster)[g]
			return ok && led.Leader != pod, fmt.Sprint(led.Leader)
		})
	}
	// A restart is not maintenance: nothing stored, not even a status. (A
	// give-back report of an earlier subtest may still be there, or may
	// have expired meanwhile: the reconcilers delete it after a minute.)
	_, after := e.stored(t)
	assert.Empty(t, after.Pods, "no entry")
	assert.Empty(t, after.DCs, "no entry")
	if st, ok := after.Status[pod]; ok {
		assert.Equal(t, before.Status[pod], st, "not even a status")
	}
	for name, st := range after.Status {
		assert.Equal(t, maintenance.PhaseActive, st.Phase, "status of %s: only give-back reports", name)
		assert.Equal(t, before.Status[name], st, "status of %s", name)
	}
	_, held := after.HeldAtBoot(pod, "", time.Now())
	assert.False(t, held, "the new pod boots normally")
	code, body = e.call(t, sc, "", http.MethodGet, "/readyz", "")
	assert.Equal(t, http.StatusServiceUnavailable, code, body)
	assert.Contains(t, body, "stopping")

	// The other probers count the pod as gone (its report says it is
	// stopping): a request that needs it for a quorum is refused.
	next := otherPod(pod)
	other := e.sidecars[next]
	nextPut := func() (int, string) {
		return e.call(t, other, e.operator, http.MethodPut, "/pods/"+next+"?dryRun=true", `{"reason":"the next pod"}`)
	}
	waitFor(t, 10*time.Second, "the other probers see "+pod+" stopping", func() (bool, string) {
		code, body := nextPut()
		return strings.Contains(body, `"safe": false`) && strings.Contains(body, pod+" stopping"), fmt.Sprint(code, " ", body)
	})

	// The paused reconciler leaves JetStream off for longer than its
	// resync (2s) would: the server stops as it is.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for end := time.After(3 * time.Second); ; {
		require.True(t, node.Quiesced(), "JetStream stays off until the server stops")
		select {
		case <-tick.C:
			continue
		case <-end:
		}
		break
	}

	// A second call (a retried hook) is harmless and finds the same.
	var again maintenance.PreStopReport
	e.decode(t, sc, e.operator, http.MethodPost, "/local/prestop", "", http.StatusOK, &again)
	assert.True(t, again.Complete, "errors: %v", again.Errors)
	assert.Empty(t, again.Leads)

	// The server stops and starts again (the container's restart).
	require.NoError(t, e.cluster.StopNode(pod))
	e.restartReady(t, sc, pod)
	assert.False(t, node.Quiesced(), "JetStream on")
	assert.Equal(t, maintenance.PhaseActive, sc.Reconciler().Phase())
	// Ready after its server's start, the pod takes its share of the
	// leaderships back (BalanceAfterStart): it led nothing after its
	// hand-off.
	waitFor(t, 30*time.Second, pod+" leads its share again", func() (bool, string) {
		led := map[string]int{}
		for _, g := range groupsFromLeaders(e.cluster) {
			led[g.Leader]++
		}
		return led[pod] >= 1, fmt.Sprint(led)
	})
	var pv maintenance.PodView
	e.decode(t, e.sidecars[otherPod(pod)], e.viewer, http.MethodGet, "/pods/"+pod, "", http.StatusOK, &pv)
	assert.False(t, pv.InMaintenance)
	// Back, it counts again.
	waitFor(t, 10*time.Second, pod+" no longer stopping", func() (bool, string) {
		code, body := nextPut()
		return code == http.StatusOK && strings.Contains(body, `"safe": true`), fmt.Sprint(code, " ", body)
	})
	e.requireClean(t)
}

// otherPod returns a pod of the demo other than pod.
func otherPod(pod string) string {
	pods := []string{"nats-0", "nats-1", "nats-2"}
	pods = slices.DeleteFunc(pods, func(p string) bool { return p == pod })
	return pods[0]
}
