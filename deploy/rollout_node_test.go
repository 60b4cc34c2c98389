package deploy_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestNodeRolloutRestart restarts every pod of the StatefulSet, one at a
// time (`kubectl rollout restart`), under a publisher in a pod: each NATS
// container's preStop hook has its prober hand off, quiesce and move the
// clients before lame duck, so that no acknowledged message is lost, every
// hook succeeds, nothing is left in the maintenance ConfigMap, and every
// pod is Ready (caught up) at the end.
func TestNodeRolloutRestart(t *testing.T) {
	n := sharedNode(t)
	cs := clientset(t, n)
	// Earlier tests on the shared node (the Postman collection drains,
	// rolls and gives leaderships back) must have finished: no entry and
	// no unfinished rollout stored, every pod Ready.
	eventually(t, 2*time.Minute, "no maintenance entry or rollout left by earlier tests", func() (bool, string) {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), cmName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for k, v := range cm.Data {
			if strings.HasPrefix(k, "pod.") || strings.HasPrefix(k, "dc.") ||
				(strings.HasPrefix(k, "rollout.") && !strings.Contains(v, `"state":"Done"`) && !strings.Contains(v, `"state":"Stopped"`)) {
				return false, k
			}
		}
		return true, ""
	})
	waitAllReady(t, n, ns, selector)
	nc := natsConn(t, n)
	js, err := nc.JetStream(nats.MaxWait(10 * time.Second))
	require.NoError(t, err)
	_, err = js.AddStream(&nats.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Replicas: 3,
		Storage: nats.FileStorage, Duplicates: 5 * time.Minute})
	require.NoError(t, err)
	eventually(t, 90*time.Second, "the stream has a leader", func() (bool, string) {
		info, err := js.StreamInfo("ORDERS")
		return err == nil && info.Cluster != nil && info.Cluster.Leader != "", fmt.Sprint(err)
	})
	before, statusBefore := map[string]string{}, map[string]string{}
	for _, p := range []string{"nats-0", "nats-1", "nats-2"} {
		before[p] = string(pod(t, cs, ns, p).UID)
		// Earlier tests may leave a give-back report (phase Active), which
		// expires after a minute.
		statusBefore[p] = statusPhase(t, cs, ns, "prober-maintenance", p)
	}

	clientPod(t, n, ns, "rollout-publisher", "")
	pub := startPublisher(t, n, "rollout-publisher", "nats-2", "orders.rollout")
	pub.waitEvent(t, "publishing")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	begin := time.Now()
	out, err := n.Kubectl(ctx, "-n", ns, "rollout", "restart", "statefulset/nats")
	require.NoError(t, err, "%s", out)
	out, err = n.Kubectl(ctx, "-n", ns, "rollout", "status", "statefulset/nats", "--timeout=9m")
	require.NoError(t, err, "%s", out)
	took := time.Since(begin)
	waitAllReady(t, n, ns, selector)
	for p, uid := range before {
		assert.NotEqual(t, uid, string(pod(t, cs, ns, p).UID), "%s was recreated", p)
	}

	// The pods have new addresses: a new connection to stop the publisher
	// and read the stream.
	after := natsConn(t, n)
	ajs, err := after.JetStream(nats.MaxWait(10 * time.Second))
	require.NoError(t, err)
	t.Cleanup(func() { _ = ajs.DeleteStream("ORDERS") })
	sum := pub.stop(t, after)
	figure(t, "publisher in a pod during kubectl rollout restart statefulset/nats (%.0fs, prober preStop): %d acknowledged, max write gap %.3fs, %d failed attempts (retried), servers %v",
		took.Seconds(), sum.Acked, sum.MaxGap, sum.Failed, sum.Servers)
	assertKept(t, ajs, "ORDERS", sum)

	// Each old pod's prober said what its pre-stop did, on the pod: a
	// hook that failed names the steps that did.
	evs, err := cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	var failed []string
	handedOff := map[string]string{}
	for _, e := range evs.Items {
		old := before[e.InvolvedObject.Name] == string(e.InvolvedObject.UID)
		switch {
		case e.Reason == "FailedPreStopHook":
			failed = append(failed, e.InvolvedObject.Name+": "+e.Message)
		case e.Reason == "PreStopIncomplete" && old:
			failed = append(failed, e.InvolvedObject.Name+": "+e.Reason+": "+e.Message)
		case e.Reason == "PreStopHandedOff" && old:
			handedOff[e.InvolvedObject.Name] = e.Message
		}
	}
	assert.Empty(t, failed, "every preStop hook succeeded (hand-off, clients moved):\n%s", strings.Join(failed, "\n"))
	for p := range before {
		assert.Contains(t, handedOff, p, "the prober of the old %s recorded its hand-off on the pod", p)
		t.Logf("%s: PreStopHandedOff: %s", p, handedOff[p])
	}
	// Each restarted pod took its share of the leaderships once ready
	// (serve --balance-after-start): the last one restarted, which the
	// hand-offs left leading nothing, too.
	a := forward(t, n, ns, "nats-1")
	eventually(t, time.Minute, "leaderships spread over the restarted pods", func() (bool, string) {
		var rv raftView
		a.json(t, http.MethodGet, "/raft", "", http.StatusOK, &rv)
		for _, s := range rv.LeaderSkew {
			if s.Skew > 1 {
				return false, fmt.Sprintf("dc %s: skew %d: %v", s.DC, s.Skew, s.Leaders)
			}
		}
		t.Logf("leader skew after the rollout: %+v", rv.LeaderSkew)
		return len(rv.LeaderSkew) > 0, "no dc"
	})
	for _, p := range []string{"nats-0", "nats-1", "nats-2"} {
		if got := statusPhase(t, cs, ns, "prober-maintenance", p); got != "" {
			assert.Equal(t, statusBefore[p], got, "a restart is not maintenance: no status of %s but what was there before", p)
		}
	}
}
