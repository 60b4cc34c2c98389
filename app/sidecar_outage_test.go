package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/prober-dev/prober/maintenance"
	"github.com/prober-dev/prober/prober"
)

// testSidecarAPIServerDown stops the API server while a pod is in
// maintenance: writes answer 503, reads keep serving the last state, and
// no fence is lifted; once the API server is back, the pod leaves.
func testSidecarAPIServerDown(t *testing.T, e *scEnv) {
	const pod = "nats-1"
	e.requireClean(t)
	via := e.sidecars["nats-0"]

	var in prober.PodChange
	e.decode(t, via, e.operator, http.MethodPut, "/pods/"+pod+"?wait=30s", `{"reason":"outage drill"}`, http.StatusOK, &in)
	require.Equal(t, maintenance.PhaseInMaintenance, in.Phase)
	requireFenced(t, e.cluster, pod)
	// The operator's token and both verbs are now in the sidecar's auth
	// caches (10 s), so what follows exercises the store, not the reviews.
	code, body := e.call(t, via, e.operator, http.MethodGet, "/config", "")
	require.Equal(t, http.StatusOK, code, body)
	before := body

	require.NoError(t, e.kube.StopAPIServer())
	apiserverUp := false
	t.Cleanup(func() {
		if !apiserverUp {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			assert.NoError(t, e.kube.StartAPIServer(ctx))
		}
	})

	code, body = e.call(t, via, e.operator, http.MethodDelete, "/pods/"+pod, "")
	assert.Equal(t, http.StatusServiceUnavailable, code, "a write without the API server: %s", body)
	var errBody struct {
		Error maintenance.Error `json:"error"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &errBody), body)
	assert.Equal(t, maintenance.EUnavailable, errBody.Error.Code)

	code, body = e.call(t, via, e.operator, http.MethodGet, "/config", "")
	assert.Equal(t, http.StatusOK, code, "reads keep serving: %s", body)
	assert.JSONEq(t, before, body, "the last state, unchanged")
	var pv maintenance.PodView
	e.decode(t, via, e.operator, http.MethodGet, "/pods/"+pod, "", http.StatusOK, &pv)
	assert.True(t, pv.InMaintenance)
	assert.Equal(t, maintenance.PhaseInMaintenance, pv.Phase)

	// Two resync periods of the pod's reconciler without the API server:
	// the fence holds all along.
	node := e.cluster.Node(pod)
	deadline := time.Now().Add(2*2*time.Second + 500*time.Millisecond)
	for time.Now().Before(deadline) {
		require.True(t, isFenced(t, node), "the fence was lifted while the API server was down")
		require.True(t, node.Quiesced(), "JetStream came back while the API server was down")
		time.Sleep(100 * time.Millisecond) // sampling a state that must not change, not synchronising
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, e.kube.StartAPIServer(ctx))
	apiserverUp = true
	var out prober.PodChange
	e.decode(t, via, e.operator, http.MethodDelete, "/pods/"+pod+"?wait=60s", "", http.StatusOK, &out)
	assert.Equal(t, maintenance.PhaseActive, out.Phase)
	requireLinked(t, e.cluster, pod)
	waitFor(t, 30*time.Second, "no status left behind", func() (bool, string) {
		_, d := e.stored(t)
		left := inProgress(d)
		return len(left) == 0, fmt.Sprint(left)
	})
	e.requireClean(t)
}
